r"""Item-item kNN graphs from item features, sparse and chunked (LATTICE, FREEDOM, HeLLM's I2I).

MMRec builds these graphs densely: ``build_sim`` (the full ``n x n`` cosine similarity),
``build_knn_neighbourhood`` (each row's top-``k`` values scattered into a dense ``n x n`` zero
matrix) and ``compute_normalized_laplacian`` (:math:`D^{-1/2} A D^{-1/2}`, :math:`D` the row
sums). For 18k items that is 1.3 GB per matrix. Here the top-``k`` search runs ``chunk_size``
rows at a time (only a ``chunk_size x n`` similarity block exists at once) and the graph is
kept as an edge list / ``torch.sparse`` tensor with ``n * k`` entries; the result equals the
dense construction (``tests/test_baselines_multimodal.py`` checks it).

Conventions (shared with :func:`recbole_llm.graph.hypergraph.knn_incidence`): rows where
``valid`` is False (RecBole's padding item 0) get no edges and are never neighbours; all-zero
feature rows of valid items (a missing feature) get the mean feature of the valid rows, since a
zero row has no cosine; every valid row's neighbours include itself (its similarity forced to
the top, so duplicates cannot push it out).
"""

from __future__ import annotations

import torch


def similarity_block(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of one chunk of (normalised) rows against all reference rows."""
    return query @ reference.T


def prepare_features(features: torch.Tensor, valid=None):
    """``(normalised features, valid mask)`` with missing (all-zero) valid rows mean-filled.

    Differentiable in ``features`` (LATTICE learns its graph from projected features)."""
    feats = features.float()
    n = feats.shape[0]
    valid = torch.ones(n, dtype=torch.bool, device=feats.device) if valid is None else \
        torch.as_tensor(valid, dtype=torch.bool, device=feats.device)
    zero = (feats.detach().abs().sum(1) == 0) & valid
    if zero.any() and (valid & ~zero).any():
        feats = torch.where(zero[:, None], feats[valid & ~zero].mean(0, keepdim=True), feats)
    return torch.nn.functional.normalize(feats, dim=1), valid


@torch.no_grad()
def knn_neighbours(features: torch.Tensor, k: int, chunk_size: int = 4096, valid=None):
    """``(rows, cols)`` (LongTensors of length ``n_valid * k``): for each valid row ``i`` its ``k``
    most cosine-similar valid rows, itself first. Computed ``chunk_size`` rows at a time."""
    feats, valid = prepare_features(features.detach(), valid)
    n = feats.shape[0]
    cols = torch.nonzero(valid).flatten()
    k = min(int(k), len(cols))
    ref = feats[cols]
    rows_out, cols_out = [], []
    for start in range(0, n, chunk_size):
        idx = torch.arange(start, min(n, start + chunk_size), device=feats.device)
        idx = idx[valid[idx]]
        if not len(idx) or k == 0:
            continue
        sim = similarity_block(feats[idx], ref)
        sim[torch.arange(len(idx), device=feats.device), torch.searchsorted(cols, idx)] = float("inf")
        top = sim.topk(k, dim=1).indices
        rows_out.append(idx[:, None].expand(-1, k).reshape(-1))
        cols_out.append(cols[top].reshape(-1))
    if not rows_out:
        empty = torch.zeros(0, dtype=torch.long, device=feats.device)
        return empty, empty.clone()
    return torch.cat(rows_out), torch.cat(cols_out)


def cosine_values(features: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, valid=None) -> torch.Tensor:
    """Cosine similarity of each listed pair (differentiable in ``features``; ``n * k`` products,
    never ``n x n``)."""
    feats, _ = prepare_features(features, valid)
    return (feats[rows] * feats[cols]).sum(1)


def symmetric_normalize(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    r"""Values of :math:`D^{-1/2} A D^{-1/2}` for the edge list ``A`` (``D`` = row sums, as MMRec's
    ``compute_normalized_laplacian``); rows whose sum is not positive get zero weights (MMRec
    would produce inf/NaN there). Differentiable in ``values``."""
    degree = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, rows, values)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt[rows] * values * inv_sqrt[cols]


def sparse_adjacency(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """A coalesced ``n x n`` sparse COO tensor (duplicate edges summed)."""
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()


def knn_graph(features: torch.Tensor, k: int, chunk_size: int = 4096, valid=None, weighted: bool = True):
    r"""The normalised kNN graph of one modality as an ``n x n`` sparse tensor (no gradient).

    ``weighted=True``: edge weights are the cosine similarities (LATTICE's ``build_sim`` +
    ``build_knn_neighbourhood``); ``False``: binary edges (FREEDOM's ``get_knn_adj_mat``). Both
    then :func:`symmetric_normalize`."""
    rows, cols = knn_neighbours(features, k, chunk_size, valid)
    with torch.no_grad():
        values = cosine_values(features.detach(), rows, cols, valid) if weighted else \
            torch.ones(len(rows), device=rows.device)
        values = symmetric_normalize(rows, cols, values, features.shape[0])
    return sparse_adjacency(rows, cols, values, features.shape[0])
