"""HeLLM's per-sample prefixes (Eq. 11): prefix hidden vectors through each layer's frozen
``k_proj``/``v_proj``, and a decoder run with them in front of every layer's keys and values."""

from __future__ import annotations

import torch

from recbole_llm.errors import RecBoleLLMError
from recbole_llm.llm.backbone import BackboneOutput

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
