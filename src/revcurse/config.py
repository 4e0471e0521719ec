"""Typed config dataclasses that are also the CLI and the saved YAML (as in litgpt).

A recipe declares one dataclass (fields may be nested dataclasses); `command_from_config`
turns every leaf field into a `--section.field` option whose help is the comment written
beside its default, and `--config run/config.yaml` replays a saved run, with any option
given on the command line overriding it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
import yaml

C = TypeVar("C")


def _field_comments(cls: type) -> dict[str, str]:
    """The `# comment` beside each field's default: it is the option's help."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = re.findall(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE)
    return dict(found)


def _leaves(
    config: Any, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any, Any, str]]:
    """(path, type, default, help) of every non-dataclass field of a default config, depth first."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for field in dataclasses.fields(cls):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, (*prefix, field.name))
        else:
            yield (*prefix, field.name), hints[field.name], value, comments.get(field.name, "")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-able values (paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return plain(dataclasses.asdict(config))


def from_dict(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
    """Build `cls` from nested dicts, refusing unknown keys (typos) with their location."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = from_dict(kind, value or {}, f"{source}.{name}")
        elif value is not None and Path in (*typing.get_args(kind), kind):
            kwargs[name] = Path(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def load_yaml(cls: type[C], path: Path) -> C:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read config: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path}:1: expected a mapping of config keys")
    return from_dict(cls, values, str(path))


def _set(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def command_from_config(cls: type[C], run: Callable[[C], None], doc: str) -> Callable[..., None]:
    """A typer command whose options are `cls`'s fields; it builds the config and calls run."""
    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None, "--config", help="Replay a saved config.yaml; options given here override it."
            ),
            annotation=Path | None,
        )
    ]
    leaves = list(_leaves(cls()))
    for path, kind, default, help_text in leaves:
        words = [p.replace("_", "-") for p in path]
        flag = "--" + ".".join(words)
        negative = "--" + ".".join([*words[:-1], "no-" + words[-1]])
        decls = [f"{flag}/{negative}"] if kind is bool else [flag]
        params.append(
            inspect.Parameter(
                "__".join(path),
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, *decls, help=help_text, show_default=str(default)),
                annotation=kind | None,
            )
        )

    def command(**kwargs: Any) -> None:
        config_path = kwargs.pop("config")
        try:
            base = to_dict(load_yaml(cls, config_path)) if config_path else to_dict(cls())
        except ValueError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from error
        for path, *_ in leaves:
            value = kwargs["__".join(path)]
            if value is not None:
                _set(base, path, value)
        run(from_dict(cls, base))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command
