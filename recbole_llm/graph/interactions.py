"""The training split as a graph: a sparse matrix, LightGCN's normalised adjacency, edges.

Every function takes the dataset RecBole hands a model (``train_data.dataset``, the training split
after RecBole's splitting), so nothing here can see validation or test interactions unless the
caller passes them in.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recbole_llm.data.interactions import training_pairs


def interaction_matrix(dataset, dtype=np.float32) -> sp.csr_matrix:
    """Binary ``n_users x n_items`` CSR matrix of the training interactions (duplicates count once)."""
    users, items = training_pairs(dataset)
    matrix = sp.csr_matrix((np.ones(len(users), dtype=dtype), (users, items)), shape=(dataset.user_num, dataset.item_num))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def normalized_adjacency(dataset, norm: str = "sym", self_loops: bool = False) -> torch.Tensor:
    r"""The bipartite user-item graph of the training split as a sparse COO tensor of size
    ``(n_users + n_items)^2`` (users first; isolated nodes get zero rows).

    ``norm="sym"``: LightGCN's :math:`D^{-1/2} A D^{-1/2}`; ``norm="left"``: the random-walk
    :math:`D^{-1} A` (NGCF/LATTICE). ``self_loops`` adds :math:`I` to :math:`A` before normalising
    (LATTICE's :math:`D^{-1}(A + I)`)."""
    if norm not in ("sym", "left"):
        raise ValueError(f"normalized_adjacency: norm must be 'sym' or 'left', got {norm!r}")
    r = interaction_matrix(dataset)
    n_users, n_items = r.shape
    n = n_users + n_items
    adj = sp.bmat([[None, r], [r.T, None]], format="coo", dtype=np.float32)
    if self_loops:
        adj = (adj + sp.eye(n, dtype=np.float32, format="coo")).tocoo()
    degree = np.asarray(adj.sum(axis=1)).ravel()
    nz = degree > 0
    if norm == "sym":
        inv_sqrt = np.zeros_like(degree)
        inv_sqrt[nz] = degree[nz] ** -0.5
        values = inv_sqrt[adj.row] * adj.data * inv_sqrt[adj.col]
    else:
        inv = np.zeros_like(degree)
        inv[nz] = 1.0 / degree[nz]
        values = inv[adj.row] * adj.data
    index = torch.from_numpy(np.vstack([adj.row, adj.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(values.astype(np.float32)), (n, n),
                                   check_invariants=False).coalesce()


def training_edges(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(users, items)`` LongTensors of the distinct training interactions (row-major order)."""
    r = interaction_matrix(dataset).tocoo()
    order = np.lexsort((r.col, r.row))
    return torch.from_numpy(r.row[order].astype(np.int64)), torch.from_numpy(r.col[order].astype(np.int64))


def edge_normalized_values(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    r""":math:`1/\sqrt{d_u d_i}` for each user-item edge, degrees counted over the given edges."""
    ones = torch.ones(len(users), dtype=torch.float32, device=users.device)
    du = torch.zeros(n_users, device=users.device).index_add(0, users, ones)
    di = torch.zeros(n_items, device=users.device).index_add(0, items, ones)
    return (du[users] * di[items]).clamp_min(1e-12).rsqrt()


def bipartite_adjacency(users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, n_users: int,
                        n_items: int) -> torch.Tensor:
    """Symmetric ``(n_users + n_items)^2`` sparse tensor with ``values`` on both edge directions."""
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    n = n_users + n_items
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.cat([values, values]), (n, n),
                                   check_invariants=False).coalesce()


def degree_sensitive_pruning(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int,
                             keep_ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""FREEDOM's degree-sensitive edge pruning of the training graph: keep
    ``int(n_edges * keep_ratio)`` edges sampled without replacement with probability
    :math:`\propto 1/\sqrt{d_u d_i}` (edges between high-degree nodes are dropped more often), then
    renormalise :math:`D^{-1/2} A D^{-1/2}` over the kept edges. Returns the symmetric sparse
    adjacency (users first)."""
    weights = edge_normalized_values(users, items, n_users, n_items)
    keep = int(len(users) * keep_ratio)
    idx = torch.multinomial(weights, keep, replacement=False, generator=generator)
    ku, ki = users[idx], items[idx]
    return bipartite_adjacency(ku, ki, edge_normalized_values(ku, ki, n_users, n_items), n_users, n_items)
