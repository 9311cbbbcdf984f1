"""Losses shared by the models and baselines: BPR, embedding L2, InfoNCE.

One home so that LightGCN+/HCCF+/RLMRec-Con/SLMRec/BM3 and friends do not each carry a copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(pos - neg) (Rendle et al.), numerically stable via softplus."""
    return F.softplus(neg_scores - pos_scores).mean()


def l2_reg(*tensors: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """0.5 * sum of squared entries of ``tensors``, divided by ``batch_size`` when given
    (the form LightGCN's and MMRec's code regularise the batch's ego embeddings with)."""
    total = sum(t.pow(2).sum() for t in tensors) * 0.5
    return total / batch_size if batch_size else total


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float, symmetric: bool = False,
             normalize: bool = True) -> torch.Tensor:
    """InfoNCE with in-batch negatives: row ``i`` of ``anchor`` should match row ``i`` of
    ``positive`` against every other row of ``positive``. ``symmetric`` averages both directions."""
    if anchor.shape != positive.shape:
        raise ValueError(f"info_nce: anchor {tuple(anchor.shape)} and positive {tuple(positive.shape)} differ")
    if normalize:
        anchor, positive = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1)
    logits = anchor @ positive.T / temperature
    labels = torch.arange(anchor.shape[0], device=anchor.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels))
    return loss


def norm_reg(*tensors: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Sum of the L2 (Frobenius) norms of ``tensors``, not squared, divided by ``batch_size`` when
    given: MMRec's ``EmbLoss``, the regulariser VBPR's and BM3's tuned ``reg_weight`` values refer to."""
    total = sum(t.norm(p=2) for t in tensors)
    return total / batch_size if batch_size else total
