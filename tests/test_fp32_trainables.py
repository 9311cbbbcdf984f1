"""Trainable weights stay float32 under a half-precision LLM (issue 21): peft casts LoRA adapters to
the base layer's dtype (bf16/fp16), where small Adam updates round away; the authors of HeLLM, CoLLM
and LLaRA train their adapters in fp32. Tested with a tiny random bf16 Llama on CPU."""

import torch

from recbole_llm.llm.adapters import inject_lora
from recbole_llm.llm.testing import tiny_llama_backbone


def _bf16_backbone():
    backbone = tiny_llama_backbone(seed=0)
    backbone.model.to(torch.bfloat16)
    return backbone


def test_lora_adapters_are_fp32_under_a_bf16_llm_and_the_loss_falls():
    backbone = _bf16_backbone()
    lora = inject_lora(backbone, r=4, alpha=8, dropout=0.0, targets="q_proj,v_proj")
    assert lora and all(p.dtype == torch.float32 and p.requires_grad for p in lora.values())
    frozen = [p for n, p in backbone.model.named_parameters() if "lora_" not in n]
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in frozen)
    torch.manual_seed(0)
    ids = torch.randint(3, 250, (4, 12))
    opt = torch.optim.Adam(list(lora.values()), lr=5e-2)
    losses = []
    for _ in range(15):
        out = backbone.model(input_ids=ids, labels=ids)
        assert out.logits.dtype == torch.bfloat16  # the frozen LLM still computes in bf16
        opt.zero_grad()
        out.loss.backward()
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lora.values())
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < losses[0] - 0.15 and all(b < a + 1e-3 for a, b in zip(losses, losses[1:])), losses


def test_fp32_adapters_keep_updates_that_bf16_adapters_round_away():
    """Why fp32: one small step on a bf16 weight of magnitude ~1 is lost to rounding."""
    w16 = torch.ones(8, dtype=torch.bfloat16)
    w32 = torch.ones(8, dtype=torch.float32)
    step = 1e-4
    assert torch.equal(w16 - step, w16) and not torch.equal(w32 - step, w32)
