"""A causal LM and its tokenizer as a :class:`Backbone`, run on ``inputs_embeds``.

The backbone is frozen (``requires_grad=False``, eval mode) unless it was loaded with
``freeze=False``; gradients still flow *through* it to ``inputs_embeds``, which is what the models
that put trainable vectors in front of the LLM train. :class:`Backbone` is a plain object, not an
``nn.Module``: a recommender that stores one as an attribute does not get the LLM into its
``state_dict``/``parameters()``/checkpoints. Loading is :mod:`recbole_llm.llm.loading`; LoRA and
layer truncation are :mod:`recbole_llm.llm.adapters`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import torch

from recbole_llm.errors import ConfigError, RecBoleLLMError

#: Attention implementations that add a float 4D ``attention_mask`` to the scaled logits.
ADDITIVE_MASK_ATTENTION = ("sdpa", "eager")


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

    def freeze(self):
        self.model.requires_grad_(False)
        self.model.eval()
        return self

    def to(self, device=None, dtype=None):
        self.model.to(device=device, dtype=dtype)
        return self

    @property
    def attention_implementation(self) -> str:
        """The attention implementation the decoder runs (``sdpa``, ``eager``, ``flash_attention_2`` ...)."""
        return str(getattr(self.text_config, "_attn_implementation", None) or "sdpa")

    def check_additive_mask(self, what: str):
        """Refuse an attention implementation that cannot add a float bias to the attention logits
        (``what`` names the feature that needs it)."""
        impl = self.attention_implementation
        if impl not in ADDITIVE_MASK_ATTENTION:
            raise ConfigError(
                f"{what} adds a bias to the attention logits, which needs an attention implementation that takes "
                f"an additive float mask ({' or '.join(ADDITIVE_MASK_ATTENTION)}); the backbone runs {impl!r}. Set "
                "llm_attn_implementation: sdpa (or eager); flash attention cannot add an arbitrary bias.")

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
            self.check_additive_mask("attention_bias")
            base = self.causal_mask_4d(attention_mask, q_len, past_len, dtype=inputs_embeds.dtype)
            mask = (base + attention_bias.to(base.dtype)).clamp(min=torch.finfo(base.dtype).min)
        if position_ids is None and past_len:
            position_ids = (torch.arange(q_len, device=inputs_embeds.device) + past_len).unsqueeze(0).expand(bsz, -1)
        out = self.decoder(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            cache=past_key_values,
            use_cache=use_cache,
        )
        return BackboneOutput(out.last_hidden_state, out.cache if use_cache else None)

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
