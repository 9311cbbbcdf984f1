"""Small operations on the sparse (``torch.sparse_coo_tensor``) graphs of the graph layer."""

from __future__ import annotations

import torch


def drop_edges(adj: torch.Tensor, keep_rate: float, rescale: bool = True) -> torch.Tensor:
    """Edge dropout of a coalesced sparse adjacency: each stored entry is kept with probability
    ``keep_rate``, the augmentation of SGL/HCCF/RLMRec's graph encoders. ``rescale``: kept entries
    are scaled by ``1 / keep_rate`` (so the expected product ``adj @ x`` is unchanged; HCCF); RLMRec's
    authors keep the values as they are. ``keep_rate >= 1`` returns ``adj`` itself."""
    if keep_rate >= 1.0:
        return adj
    if not 0.0 < keep_rate:
        raise ValueError(f"drop_edges: keep_rate must be in (0, 1], got {keep_rate}")
    values = adj._values()
    mask = torch.rand(values.shape[0], device=values.device) < keep_rate
    # a subset of a coalesced tensor's entries is still sorted and duplicate-free
    return torch.sparse_coo_tensor(adj._indices()[:, mask], values[mask] / keep_rate if rescale else values[mask],
                                   adj.shape, is_coalesced=True, check_invariants=False)


def lightgcn_layer_mean(adj: torch.Tensor, users: torch.Tensor, items: torch.Tensor, layers: int):
    """LightGCN: the mean of ``[users; items]`` and its ``layers`` propagations over the sparse
    ``adj`` (users first); returns ``(users, items)``."""
    ego = torch.cat([users, items])
    out = [ego]
    for _ in range(layers):
        ego = torch.sparse.mm(adj, ego)
        out.append(ego)
    mean = torch.stack(out).mean(0)
    return mean[: users.shape[0]], mean[users.shape[0]:]
