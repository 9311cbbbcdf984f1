"""Loading an LLM as a :class:`~recbole_llm.llm.backbone.Backbone`, from the ``llm_*`` settings.

``llm_dtype`` (``float32`` | ``bfloat16`` | ``float16`` | ``auto``) and ``llm_device`` (empty: the
RecBole ``device``) say how. A GGUF file is read by transformers through ``gguf`` and dequantised to
``llm_dtype``; converting is slow and reloading the converted weights is fast, so the first load
saves them (``save_pretrained``) under ``cache_dir()/llm/gguf-<name>-<dtype>-<key>/`` and later
loads use that copy (``llm_gguf_cache: False`` turns this off). Loaded backbones are shared within a
process (same source, dtype, device) unless ``shared=False``; a model that changes the LLM (LoRA,
truncated layers) asks for its own copy with ``shared=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import torch

from recbole_llm.llm.backbone import Backbone, LoadReport
from recbole_llm.llm.sources import (_DTYPES, DEFAULT_LLM, GPTQUnavailableError, LLMNotFoundError, LLMSource, file_key,
                                     gptq_requested, parse_dtype, require_gptqmodel, resolve_llm_path)
from recbole_llm.paths import cache_dir
from recbole_llm.settings import Bool, Choice, Int, Settings, Str

logger = logging.getLogger(__name__)

_BACKBONES: dict = {}
_LOAD_LOCK = threading.Lock()


def _load_tokenizer_and_model(location, gguf_file, dtype, attn_implementation, local_only, trust_remote_code,
                              device_map=None, gptq_backend=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": local_only}
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    model_kwargs = dict(kwargs)
    model_kwargs["dtype"] = dtype
    if attn_implementation:
        model_kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    if gptq_backend and gptq_backend != "auto":
        from transformers import AutoConfig, GPTQConfig

        saved = getattr(AutoConfig.from_pretrained(location, **kwargs), "quantization_config", None) or {}
        bits = saved.get("bits", 4) if isinstance(saved, dict) else getattr(saved, "bits", 4)
        # a loading attribute: the checkpoint's quantisation settings stay, only the kernel changes
        model_kwargs["quantization_config"] = GPTQConfig(bits=bits, backend=gptq_backend)
    model = AutoModelForCausalLM.from_pretrained(location, **model_kwargs)
    return tokenizer, model


def _save_converted(model, tokenizer, target: Path):
    """Save a dequantised GGUF model as safetensors + tokenizer files (atomic rename)."""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    quantizer = getattr(model, "hf_quantizer", None)
    qcfg = getattr(model.config, "quantization_config", None)
    try:
        model.hf_quantizer = None  # the weights are plain tensors now; the GGUF quantizer only blocks saving
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "recbole_llm_conversion.json").write_text(json.dumps({"complete": True, "created": time.time()}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        model.hf_quantizer = quantizer
        if qcfg is not None:
            model.config.quantization_config = qcfg


def _converted_dir(source: LLMSource, dtype: torch.dtype) -> Path:
    """Where the dequantised copy of a GGUF file is kept (``cache_dir()/llm/gguf-<name>-<dtype>-<key>``)."""
    gguf = Path(source.location) / source.gguf_file
    name = gguf.stem.replace(" ", "_")
    return cache_dir() / "llm" / f"gguf-{name}-{str(dtype).replace('torch.', '')}-{file_key(gguf)}"


def _load_gguf(source: LLMSource, dtype, attn_implementation, gguf_cache, trust_remote_code, report, tried):
    """``(tokenizer, model, fingerprint)`` of a GGUF file: from its converted copy when there is a
    readable one, else converted by transformers (and the copy saved when ``gguf_cache``)."""
    gguf_path = Path(source.location) / source.gguf_file
    fingerprint = f"gguf-{gguf_path.stem}-{file_key(gguf_path)}"
    conv = _converted_dir(source, dtype if isinstance(dtype, torch.dtype) else torch.float32)
    report.converted_dir = str(conv)
    if gguf_cache and (conv / "recbole_llm_conversion.json").is_file():
        tried.append(f"converted copy {conv}")
        try:
            tokenizer, model = _load_tokenizer_and_model(str(conv), None, dtype, attn_implementation, True, False)
            report.from_converted_cache = True
            return tokenizer, model, fingerprint
        except Exception as exc:  # noqa: BLE001 - fall back to the GGUF itself
            logger.warning("Converted copy %s unreadable (%s); converting the GGUF again.", conv, exc)
            shutil.rmtree(conv, ignore_errors=True)
    tried.append(str(gguf_path))
    try:
        tokenizer, model = _load_tokenizer_and_model(source.location, source.gguf_file, dtype, attn_implementation,
                                                     True, trust_remote_code)
    except Exception as exc:
        raise LLMNotFoundError(
            f"Could not load the GGUF file {gguf_path}: {type(exc).__name__}: {exc}. transformers reads GGUF "
            "files of supported architectures (llama, mistral, qwen2, gpt2, ...) through the 'gguf' package; "
            "check that it is installed and the file is complete."
        ) from exc
    if gguf_cache:
        try:
            conv.parent.mkdir(parents=True, exist_ok=True)
            _save_converted(model, tokenizer, conv)
        except Exception as exc:  # noqa: BLE001 - caching is an optimisation
            logger.warning("Could not cache the converted GGUF weights in %s: %s", conv, exc)
    return tokenizer, model, fingerprint


def _load_pretrained(source: LLMSource, dtype, device, gptq, attn_implementation, allow_download, trust_remote_code,
                     gptq_backend, tried):
    """``(tokenizer, model, fingerprint)`` of a local folder or hub id: the local copy first, then a
    download when ``allow_download``; GPTQ checkpoints through gptqmodel."""
    device_map = None
    if gptq:
        require_gptqmodel(device)
        device_map = str(device) if device.type != "cpu" else "cpu"
        if dtype == torch.float32 and device.type != "cpu":
            dtype = torch.float16
    attempts = [True] if source.kind == "local" else [True] + ([False] if allow_download else [])
    tokenizer = model = last_exc = None
    for local_only in attempts:
        tried.append(("local hub cache of " if local_only and source.kind == "hub" else "") + source.description
                     + ("" if local_only else " (download)"))
        try:
            tokenizer, model = _load_tokenizer_and_model(
                source.location, None, dtype, attn_implementation, local_only, trust_remote_code, device_map,
                gptq_backend=gptq_backend if gptq else None,
            )
            break
        except GPTQUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - collected into one message below
            last_exc = exc
    if model is None:
        how = (
            "Download it where there is network access (`huggingface-cli download "
            f"{source.location}`, or `save_pretrained` to a folder) and set llm_path to that folder, "
            if source.kind == "hub"
            else "Check the folder (config.json, weights, tokenizer files), "
        )
        raise LLMNotFoundError(
            f"Could not load LLM {source.requested!r}; tried: {'; '.join(tried)}. Last error: "
            f"{type(last_exc).__name__}: {last_exc}. {how}or set llm_path to a .gguf file, or leave it "
            f"empty for the embedded default ({DEFAULT_LLM})."
        ) from last_exc
    if source.kind == "local":
        cfg_file = Path(source.location) / "config.json"
        raw = f"{source.location}|{cfg_file.stat().st_mtime if cfg_file.exists() else 0}"
    else:
        raw = f"{source.location}|{getattr(model.config, '_commit_hash', '') or ''}"
    return tokenizer, model, f"{Path(source.location).name}-{hashlib.sha1(raw.encode()).hexdigest()[:12]}"


def load_backbone(
    llm_path=None,
    dtype="float32",
    device="cpu",
    quantization=None,
    attn_implementation=None,
    gguf_cache=True,
    allow_download=True,
    trust_remote_code=False,
    freeze=True,
    shared=True,
    gptq_backend="torch",
    check_gradients=None,
) -> Backbone:
    """Load an LLM as a :class:`Backbone` (:mod:`recbole_llm.llm.sources` says what ``llm_path`` may be).
    Frozen backbones are shared within the process (same source, dtype, device, options) when ``shared``."""
    source = resolve_llm_path(llm_path)
    device = torch.device(device or "cpu")
    torch_dtype = parse_dtype(dtype, device)
    key = (source.kind, source.location, source.gguf_file, str(torch_dtype), str(device), str(quantization), attn_implementation,
           gptq_backend)
    if shared and freeze:
        with _LOAD_LOCK:
            if key in _BACKBONES:
                return _BACKBONES[key]
    start = time.perf_counter()
    report = LoadReport(source=source.description)
    tried = []
    gptq = source.kind != "gguf" and gptq_requested(source, quantization, local_only=True)  # never downloads
    if source.kind == "gguf":
        tokenizer, model, fingerprint = _load_gguf(source, torch_dtype, attn_implementation, gguf_cache,
                                                   trust_remote_code, report, tried)
    else:
        tokenizer, model, fingerprint = _load_pretrained(source, torch_dtype, device, gptq, attn_implementation,
                                                         allow_download, trust_remote_code, gptq_backend, tried)
    if getattr(model, "hf_device_map", None) is None and next(model.parameters()).device != device:
        model.to(device)
    report.seconds = time.perf_counter() - start
    report.extra["tried"] = tried
    backbone = Backbone(model, tokenizer, name=source.requested or source.location, fingerprint=fingerprint,
                        report=report, freeze=freeze)
    logger.info("Loaded LLM %s in %.1f s (%s)", source.description, report.seconds,
                "converted copy" if report.from_converted_cache else "original")
    if check_gradients or (check_gradients is None and gptq):
        backbone.check_input_gradients(source.description)
    if shared and freeze:
        with _LOAD_LOCK:
            _BACKBONES.setdefault(key, backbone)
            backbone = _BACKBONES[key]
    return backbone


#: The ``llm_*`` settings every LLM model reads; their defaults live in ``properties/model/llm.yaml``,
#: which the LLM models' plugins register before their own YAML.
LLM_SETTINGS = Settings("LLM", yaml_hint="properties/model/llm.yaml", keys={
    "llm_path": Str(nullable=True, doc=(
        "the LLM: \"\" = embedded SmolLM2-135M-Instruct; or a .gguf file, a folder, a Hugging Face id")),
    "llm_dtype": Choice(*sorted(_DTYPES), "auto", doc=(
        "the LLM's weight dtype: float32 | bfloat16 | float16 | auto (keep float32 on CPUs without bf16)")),
    "llm_device": Str(nullable=True, doc="the LLM's device (\"\" = RecBole's device)", changes_results=False),
    "llm_quantization": Choice("gptq", "none", nullable=True, doc=(
        "quantised checkpoints: ~ = detect (GPTQ loads through gptqmodel) | gptq | none")),
    "llm_attn_implementation": Choice("sdpa", "eager", "flash_attention_2", nullable=True, doc=(
        "attention kernel: sdpa | eager | flash_attention_2")),
    "llm_gguf_cache": Bool(doc=(
        "keep the dequantised GGUF weights on disk (reloading is much faster than "
        "converting)"), changes_results=False),
    "llm_allow_download": Bool(doc="hub ids: try the hub when the local cache lacks them", changes_results=False),
    "llm_trust_remote_code": Bool(doc="run a hub model's own code (only for models that need it)"),
    "llm_num_threads": Int(min=0, doc=(
        "torch threads for the LLM (>0: torch.set_num_threads; 0: torch's default)"), changes_results=False),
    "llm_gptq_backend": Choice("torch", "triton", "auto", doc=(
        "GPTQ kernels: torch (has a backward to the inputs) | triton | auto (gptqmodel picks)")),
})


def backbone_from_config(config, shared=True, freeze=True) -> Backbone:
    """Load the backbone a RecBole ``Config`` describes (``llm_*`` keys, validated)."""
    s = LLM_SETTINGS.read(config)
    device = s.llm_device or config["device"] or "cpu"
    if s.llm_num_threads > 0:
        torch.set_num_threads(s.llm_num_threads)  # process-wide, like RecBole's own thread setting
    return load_backbone(
        llm_path=s.llm_path or "",
        dtype=s.llm_dtype,
        device=device,
        quantization=s.llm_quantization,
        attn_implementation=s.llm_attn_implementation or None,
        gguf_cache=s.llm_gguf_cache,
        allow_download=s.llm_allow_download,
        trust_remote_code=s.llm_trust_remote_code,
        freeze=freeze,
        shared=shared,
        gptq_backend=s.llm_gptq_backend,
    )


def clear_backbones():
    """Forget the process-wide shared backbones (tests, memory)."""
    with _LOAD_LOCK:
        _BACKBONES.clear()
