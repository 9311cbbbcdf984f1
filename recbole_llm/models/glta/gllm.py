r"""The GLLM layer (Graph-Language Logits Matching) and GLTA's slot loss (Eq. 3)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class GLLMLayer(nn.Module):
    r"""Last-layer hidden states ``[..., H]`` -> ``|I|`` item logits.

    ``linear``: a free linear layer (weight ``[|I|, H]``), the paper's literal description.
    ``graph``: the same linear map with its weight factored through the frozen item node
    embeddings, ``W = E_i G`` (``G``: ``[d, H]``, trained) plus a free bias - the way an LLM's
    (tied) LM head matches hidden states against its token embeddings, with the graph's item
    nodes as the "vocabulary" (why: ``docs/glta.md``)."""

    def __init__(self, hidden, n_items, graph_dim, mode="linear"):
        super().__init__()
        self.mode = mode
        if mode == "linear":
            self.weight = nn.Parameter(torch.empty(n_items, hidden))
        elif mode == "graph":
            self.proj = nn.Parameter(torch.empty(graph_dim, hidden))
        else:
            raise ValueError(f"GLLM head mode must be 'linear' or 'graph', got {mode!r}")
        self.bias = nn.Parameter(torch.zeros(n_items))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight if self.mode == "linear" else self.proj, std=0.02 if self.mode == "linear" else 0.01)
        nn.init.zeros_(self.bias)

    def forward(self, hidden, item_emb=None):
        if self.mode == "linear":
            return F.linear(hidden, self.weight, self.bias)
        return F.linear(F.linear(hidden, self.proj), item_emb.to(hidden)) + self.bias


def gllm_loss(logits, targets) -> torch.Tensor:
    """Eq. 3 with masking: ``targets`` ``[B, L]`` holds item ids at the first ``k`` slots of each
    example and -1 after; mean over each example's valid slots, then over examples."""
    valid = targets >= 0
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.masked_fill(~valid, -100).flatten(),
                         reduction="none", ignore_index=-100).view_as(targets)
    per_example = ce.sum(1) / valid.sum(1).clamp(min=1)
    has = valid.any(1)
    return per_example[has].mean() if has.any() else logits.sum() * 0.0
