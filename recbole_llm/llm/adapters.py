"""Changing a private copy of a backbone (loaded with ``shared=False``): peft LoRA adapters, and
keeping only the first decoder blocks."""

from __future__ import annotations

import torch

from recbole_llm.errors import ConfigError, RecBoleLLMError
from recbole_llm.llm.backbone import Backbone

#: LoRA target modules by model type when none are configured.
LORA_TARGETS = {"gpt2": ("c_attn",), "llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"),
                "qwen2": ("q_proj", "v_proj")}


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


def inject_lora(backbone: Backbone, r, alpha, dropout, targets=(), setting="lora_targets") -> dict:
    """Put peft LoRA adapters on the backbone's ``targets`` modules in place (a comma-separated string
    or a list of module names such as ``q_proj,v_proj``; empty: :data:`LORA_TARGETS` of the model type)
    and freeze everything else. Returns ``{name: parameter}`` of the LoRA weights, so that a model can register them (e.g. in an
    ``nn.ParameterDict``) and keep them in its ``state_dict`` while the LLM itself stays outside.
    A target the LLM lacks raises :class:`~recbole_llm.errors.ConfigError` naming ``setting``."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # pragma: no cover - peft is a dependency of the LoRA models only
        raise RecBoleLLMError("LoRA needs the 'peft' package: python3 -m pip install peft") from exc

    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t).strip() for t in targets]
    model_type = str(getattr(backbone.text_config, "model_type", ""))
    names = [t for t in names if t] or list(LORA_TARGETS.get(model_type, ()))
    if not names:
        raise ConfigError(f"setting {setting} is empty and there are no default LoRA target modules for model type "
                          f"{model_type!r}; name them, e.g. {setting}: q_proj,v_proj.")
    present = {n.rsplit(".", 1)[-1] for n, _ in backbone.model.named_modules()}
    missing = [t for t in names if t not in present]
    if missing:
        raise ConfigError(f"setting {setting}={targets!r}: the LLM has no module named {missing} "
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
