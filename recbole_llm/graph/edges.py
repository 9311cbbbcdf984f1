"""Message passing over explicit edge lists, differentiable in the edge weights.

For graphs whose weights are computed in the forward pass (LATTICE's learned item graph, GRCN's
attention-refined user-item graph): the weights become the values of a sparse COO tensor and the
product is ``torch.sparse.mm`` (its backward reaches the values), so no ``n x n`` matrix and no
``edges x dim`` message tensor is materialised in the forward pass.
"""

from __future__ import annotations

import torch


def edge_propagate(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor, x: torch.Tensor,
                   n_out: int | None = None) -> torch.Tensor:
    """``out[d] = sum over edges (s -> d) of weight * x[s]`` (i.e. ``A @ x`` with ``A[d, s] = weight``)."""
    n_out = x.shape[0] if n_out is None else n_out
    adj = torch.sparse_coo_tensor(torch.stack([dst, src]), weight, (n_out, x.shape[0]), check_invariants=False)
    return torch.sparse.mm(adj, x)


def edge_softmax(scores: torch.Tensor, dst: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of edge ``scores`` over the edges that share a destination node (PyG's ``softmax``)."""
    top = torch.full((n,), float("-inf"), dtype=scores.dtype, device=scores.device)
    top = top.scatter_reduce(0, dst, scores.detach(), reduce="amax", include_self=True)
    e = (scores - top[dst]).exp()
    total = torch.zeros(n, dtype=scores.dtype, device=scores.device).index_add(0, dst, e)
    return e / total[dst].clamp_min(1e-16)
