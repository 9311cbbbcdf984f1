"""Small operations on the sparse (``torch.sparse_coo_tensor``) graphs of the graph layer."""

from __future__ import annotations

import torch


def drop_edges(adj: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """Edge dropout of a coalesced sparse adjacency: each stored entry is kept with probability
    ``keep_rate`` and kept entries are scaled by ``1 / keep_rate`` (so the expected product
    ``adj @ x`` is unchanged), the augmentation of SGL/HCCF/RLMRec's graph encoders.
    ``keep_rate >= 1`` returns ``adj`` itself."""
    if keep_rate >= 1.0:
        return adj
    if not 0.0 < keep_rate:
        raise ValueError(f"drop_edges: keep_rate must be in (0, 1], got {keep_rate}")
    values = adj._values()
    mask = torch.rand(values.shape[0], device=values.device) < keep_rate
    return torch.sparse_coo_tensor(adj._indices()[:, mask], values[mask] / keep_rate, adj.shape,
                                   is_coalesced=True, check_invariants=False)
