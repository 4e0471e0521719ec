"""Typed config dataclasses that are also the CLI and the saved YAML (as in litgpt).

A recipe declares one dataclass (fields may be nested dataclasses); `command_from_config`
turns every leaf field into a `--section.field` option whose help is the field's attribute
docstring (the string written under it); a `Literal` type lists its choices, a `list` is
comma-separated on the command line and a list in the YAML. `--config run/config.yaml`
replays a saved run, with any option given on the command line overriding it.

Each dataclass checks its own values in `__post_init__` (with `check` and `choice`);
`from_dict` checks their types and names the option of any bad value, so a wrong option
fails with one line and exit status 2 before a recipe has done anything.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import os
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
import yaml

from revcurse.errors import UserError
from revcurse.memory import memory_cap

C = TypeVar("C")

EXIT_BAD_INPUT = 2  # the exit status of every error a user's input caused
# Readers, dequantised GGUF models and error logs: one folder, moved with REVCURSE_CACHE
CACHE = Path(os.environ.get("REVCURSE_CACHE", "~/.cache/revcurse")).expanduser()


def fail(message: str) -> NoReturn:
    typer.echo(message, err=True)  # plain: FILE:LINE: lines must never be wrapped
    raise typer.Exit(EXIT_BAD_INPUT)


class ConfigError(UserError):
    """A bad value of one field; `from_dict` puts the option's full name before it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check(ok: bool, field: str, message: str) -> None:
    """For `__post_init__`: raise ConfigError(field, message) unless `ok`."""
    if not ok:
        raise ConfigError(field, message)


def choice(value: str, field: str, options: Sequence[str]) -> None:
    check(value in options, field, f"must be one of {', '.join(options)}, got {value!r}")


def option_name(path: Sequence[str]) -> str:
    return "--" + ".".join(p.replace("_", "-") for p in path)


def negative_option(path: Sequence[str]) -> str:
    """The flag that turns a boolean option off: --remedies.hebbian-memit.no-keep."""
    return option_name([*path[:-1], "no_" + path[-1]])


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring, the string written under it (as litgpt's configs
    and Sphinx read them): the option's help; a subclass's own first, then its bases'."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # object, or a class made at run time
            continue
        (node,) = ast.parse(source).body
        body = node.body if isinstance(node, ast.ClassDef) else []
        for field, doc in itertools.pairwise(body):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)
            ):
                docs[field.target.id] = inspect.cleandoc(doc.value.value)
    return docs


def _leaves(
    config: Any, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any, Any, str]]:
    """(path, type, default, help) of every non-dataclass field of a default config, depth first."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for field in dataclasses.fields(cls):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, (*prefix, field.name))
        else:
            yield (*prefix, field.name), hints[field.name], value, docs.get(field.name, "")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-able values (paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return plain(dataclasses.asdict(config))


def _options(kind: Any) -> tuple[Any, ...]:
    """The types of a union (`X | None`, `list[int] | Literal[...]`), or `kind` alone."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return typing.get_args(kind) if union else (kind,)


def choices(kind: Any) -> tuple[Any, ...]:
    """The values of the Literal a field's type is or holds (() if none)."""
    literals = [o for o in _options(kind) if typing.get_origin(o) is typing.Literal]
    return tuple(value for literal in literals for value in typing.get_args(literal))


def list_item(kind: Any) -> Any:
    """The item type of the list a field's type is or holds (None if none)."""
    lists = [o for o in _options(kind) if typing.get_origin(o) is list]
    return typing.get_args(lists[0])[0] if lists else None


def _typed(value: Any, kind: Any, path: tuple[str, ...]) -> Any:
    """`value` as a field of type `kind` wants it (a YAML int for a float, a str for a
    Path; for a list, a YAML list, one item, or the comma-separated words the command line
    gives); UserError naming the option when it is of another type, or not one of a
    Literal's values."""
    options = _options(kind)
    if value is None and type(None) in options:
        return None
    allowed = choices(kind)
    if isinstance(value, str) and value in allowed:
        return value
    item = list_item(kind)
    if item is not None:
        words = value.split(",") if isinstance(value, str) else value
        try:
            return [
                _typed(_from_word(word, item), item, path)
                for word in (words if isinstance(words, list) else [words])
            ]
        except UserError:
            what = f"{item.__name__}s"
            raise UserError(
                f"{option_name(path)}: expected "
                + (f"{', '.join(allowed)} or " if allowed else "")
                + f"a list of {what} (comma-separated), got {value!r}"
            ) from None
    if allowed:
        shown = ", ".join(map(str, allowed))
        raise UserError(f"{option_name(path)}: must be one of {shown}, got {value!r}")
    if Path in options and isinstance(value, str | Path):
        return Path(value)
    if float in options and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in options):
        return value
    wanted = " or ".join(getattr(t, "__name__", str(t)) for t in options if t is not type(None))
    raise UserError(f"{option_name(path)}: expected {wanted}, got {value!r}")


def _from_word(word: Any, item: type) -> Any:
    """A comma-separated word as the list's item type wants it ('-1': -1), else as it is."""
    if not isinstance(word, str):
        return word
    try:
        return item(word.strip())
    except ValueError:
        return word


def typed_options(
    defaults: dict[str, Any], words: str, handled: Sequence[str] = ()
) -> dict[str, Any]:
    """The `KEY=VALUE ...` words of a sweep's setting, each value of the type of its key's
    default (1 or 0 for a boolean), but for the keys the caller `handled` itself; UserError
    for a key that is neither."""
    options: dict[str, Any] = {}
    for word in words.split():
        key, value = word.split("=", 1)
        if key in handled:
            continue
        if key not in defaults:
            known = ", ".join([*handled, *defaults])
            raise UserError(f"unknown option {key} (known: {known})")
        kind = type(defaults[key])
        if kind is list:  # from_dict reads its comma-separated words
            options[key] = value
        else:
            options[key] = value == "1" if kind is bool else kind(value)
    return options


def from_dict(cls: type[C], values: Any, source: str = "config", path: tuple[str, ...] = ()) -> C:
    """Build `cls` from nested dicts, refusing unknown keys (typos), values of the wrong
    type and values its `__post_init__` rejects, each with the option's name."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: {option_name(path)} must be a section of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(key) for key in set(values) - names)  # YAML keys may be numbers
    if unknown:
        where = ".".join(path) or "top level"
        raise UserError(
            f"{source}: unknown key(s) {', '.join(unknown)} in {where} "
            f"(known: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[name] = from_dict(kind, {} if value is None else value, source, (*path, name))
        else:
            kwargs[name] = _typed(value, kind, (*path, name))
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise UserError(f"{option_name((*path, error.field))}: {error.message}") from None


def changed_leaves(
    values: dict[str, Any], defaults: dict[str, Any], prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every leaf of `values` (a `to_dict`) that differs from `defaults`:
    the options a user gave."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += changed_leaves(value, defaults[key], (*prefix, key))
        elif value != defaults[key]:
            out.append(((*prefix, key), value))
    return out


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def _yaml_problem(raw: bytes, err: Exception) -> tuple[int, str]:
    """(line, what is wrong) of a config file YAML cannot read, in one line (0: no line)."""
    if isinstance(err, UnicodeDecodeError):
        return raw.count(b"\n", 0, err.start) + 1, f"not UTF-8 (byte 0x{raw[err.start]:02x})"
    if isinstance(err, RecursionError):  # PyYAML recurses once a level of nesting
        return 0, "nested too deeply"
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML forbids, at a character
        line = raw.decode("utf-8")[: err.position].count("\n") + 1
        return line, f"{err.reason} (character #x{err.character:04x})"
    mark = getattr(err, "problem_mark", None)  # where a YAML syntax error was seen
    reason = getattr(err, "problem", None) or str(err).split("\n")[0]
    return (mark.line + 1 if mark else 0), reason


def load_yaml(cls: type[C], path: Path) -> C:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read config: {err}") from err
    try:
        values = yaml.safe_load(raw.decode("utf-8")) or {}
    except (UnicodeDecodeError, RecursionError, yaml.YAMLError, ValueError) as err:  # PyYAML:
        # a scalar tagged !!float that is no number raises a ValueError
        line, reason = _yaml_problem(raw, err)
        where = f"{path}:{line}" if line else str(path)
        raise UserError(f"{where}: cannot read config: {reason}") from err
    if not isinstance(values, dict):
        raise UserError(f"{path}:1: expected a mapping of config keys")
    try:
        return from_dict(cls, values, str(path))
    except ValueError as error:
        message = str(error)
        raise UserError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None


def set_leaf(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def pretrained_defaults(cls: type, model: str | None = None) -> dict[tuple[str, ...], Any]:
    """A recipe's defaults for pretrained models (`--model` other than tiny), by option
    path: its class attribute PRETRAINED, {"train.lr": 1e-4, ...}, then, for `model`, its
    PRETRAINED_BY_MODEL[model] (a rate that suits one model wrecks another). The tiny
    model's defaults (hundreds of steps of 256 sequences at a rate of 3e-3) would wreck a
    pretrained model, or run it out of memory. Options given on the command line win."""
    merged = {**getattr(cls, "PRETRAINED", {})}
    merged.update(getattr(cls, "PRETRAINED_BY_MODEL", {}).get(model, {}))
    return {tuple(key.split(".")): value for key, value in merged.items()}


def default_values(cls: type, model: str = "tiny") -> dict[str, Any]:
    """`to_dict(cls())`, with the recipe's pretrained defaults where `model` is not tiny:
    what a run with no option but `--model` uses."""
    values = to_dict(cls())
    if model != "tiny":
        for path, value in pretrained_defaults(cls, model).items():
            set_leaf(values, path, value)
    return values


def shown(value: Any) -> str:
    """A default as the command line writes it (a list comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


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
        ),
        inspect.Parameter(
            "max_memory",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--max-memory",
                help=(
                    "GiB of memory the run may hold: past it, the run ends with one line "
                    "and exit status 3 (a resumable run is kept), not the kernel's kill  "
                    "[default: what it holds at the start plus 90% of the memory available]"
                ),
            ),
            annotation=float | None,
        ),
    ]
    leaves = list(_leaves(cls()))
    pretrained = pretrained_defaults(cls)
    for path, kind, default, help_text in leaves:
        flag = option_name(path)
        negative = negative_option(path)
        allowed, item = choices(kind), list_item(kind)
        facts = [f"one of: {', '.join(map(str, allowed))}"] if allowed and item is None else []
        facts.append(f"default: {shown(default)}")
        if path in pretrained:
            facts.append(f"pretrained models: {shown(pretrained[path])}")
        for model, values in getattr(cls, "PRETRAINED_BY_MODEL", {}).items():
            if ".".join(path) in values:
                facts.append(f"{model}: {shown(values['.'.join(path)])}")
        decls = [f"{flag}/{negative}"] if kind is bool else [flag]
        # choices and lists arrive as words; from_dict checks and splits them
        annotation = str if allowed or item is not None else kind
        params.append(
            inspect.Parameter(
                "__".join(path),
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, *decls, help=f"{help_text}  [{'; '.join(facts)}]"),
                annotation=annotation | None,
            )
        )

    def command(**kwargs: Any) -> None:
        config_path = kwargs.pop("config")
        max_memory = kwargs.pop("max_memory")
        if max_memory is not None and not max_memory > 0:
            fail(f"--max-memory: must be positive (GiB), got {max_memory}")
        try:
            if config_path:  # a replayed config has its own values, pretrained or not
                base = to_dict(load_yaml(cls, config_path))
            else:
                base = default_values(cls, kwargs.get("model") or "tiny")
            for path, *_ in leaves:
                value = kwargs["__".join(path)]
                if value is not None:
                    set_leaf(base, path, value)
            config = from_dict(cls, base)
        except ValueError as error:  # every check, before the recipe does anything
            fail(str(error))
        with memory_cap(max_memory):
            run(config)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command
