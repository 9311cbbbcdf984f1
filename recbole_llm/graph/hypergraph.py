r"""HeLLM's user and item hypergraphs, sparse throughout, from the training split only.

* **U2U** (users are nodes, training items are hyperedges): incidence :math:`H \in \{0,1\}^{U\times I}`
  (the training interactions), :math:`A_u = H H^\top` with the diagonal set to zero (so
  :math:`(A_u)_{uv}` = items shared by ``u`` and ``v``), row-normalised :math:`D^{-1} A_u`; rows
  without neighbours stay zero (MMHCL ``rw`` normalisation).
* **I2I** (items are nodes, per-modality kNN neighbourhoods are hyperedges): for each modality, the
  cosine similarity of the raw item features, each row's top-``K`` columns (self included)
  binarised to 1; the modalities' incidence matrices are concatenated along the hyperedge axis,
  :math:`A_I = H_I H_I^\top = \sum_m \tilde I^m \tilde I^{m\top}` (self-loops kept) and
  symmetrically normalised :math:`D^{-1/2} A_I D^{-1/2}`.

The authors build dense ``U x U`` / ``I x I`` matrices (about 5 GB for Amazon Sports' users); here
every product is a ``scipy.sparse`` product and the kNN is computed in row chunks, so no dense
``I x I`` matrix ever exists. Item features do not involve interactions; the U2U graph takes the
training split a RecBole model receives (``train_data.dataset``) and nothing else.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recbole_llm.graph.interactions import interaction_matrix
from recbole_llm.graph.knn import knn_neighbours


def to_torch_sparse(matrix: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced float32 ``torch.sparse_coo_tensor``."""
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, coo.shape, check_invariants=False).coalesce()


def user_hypergraph_from_matrix(h: sp.spmatrix) -> sp.csr_matrix:
    r"""Row-normalised :math:`H H^\top` without self-loops from a binary user x item incidence."""
    h = sp.csr_matrix(h, dtype=np.float32)
    adj = (h @ h.T).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.zeros_like(degree)
    inv[degree > 0] = 1.0 / degree[degree > 0]
    return (sp.diags(inv) @ adj).tocsr().astype(np.float32)


def linked_pair_share(u2u: sp.spmatrix) -> float:
    """Share of ordered pairs of real users (row/column 0 is RecBole's padding user) that the U2U
    adjacency links; near 1 the propagated user views collapse towards one vector."""
    users = u2u.shape[0] - 1
    return u2u.nnz / max(1, users * users)


def user_hypergraph(dataset) -> sp.csr_matrix:
    """The U2U hypergraph adjacency of the training split ``dataset`` (``user_num x user_num``)."""
    return user_hypergraph_from_matrix(interaction_matrix(dataset))


def knn_incidence(features: torch.Tensor, k: int, chunk_size: int = 4096, valid=None) -> sp.csr_matrix:
    r"""Binarised cosine kNN incidence of one modality: row ``i`` holds 1 at the ``k`` items most
    similar to ``i`` (itself included, :math:`S_{ii} = 1`).

    ``valid`` (bool ``[n]``) marks real items: other rows stay empty and are never neighbours
    (RecBole's padding item 0). All-zero feature rows (missing features) get the mean feature of
    the valid rows, as the authors' preprocessing does for missing images (a zero row would make
    the cosine undefined). Computed ``chunk_size`` rows at a time
    (:func:`recbole_llm.graph.knn.knn_neighbours`)."""
    n = features.shape[0]
    rows, cols = knn_neighbours(features.detach().float().cpu(), k, chunk_size, valid)
    r, c = rows.numpy(), cols.numpy()
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, n))


def item_hypergraph_from_incidences(incidences) -> sp.csr_matrix:
    r""":math:`D^{-1/2} H_I H_I^\top D^{-1/2}` with :math:`H_I` the modalities' incidences side by side."""
    h = sp.hstack([sp.csr_matrix(m, dtype=np.float32) for m in incidences], format="csr")
    adj = (h @ h.T).tocsr()
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    d = sp.diags(inv_sqrt)
    return (d @ adj @ d).tocsr().astype(np.float32)


def item_hypergraph(features: list, k: int, chunk_size: int = 4096) -> sp.csr_matrix:
    """The I2I hypergraph adjacency from a list of ``[item_num, dim]`` feature matrices (one per
    modality, indexed by RecBole's internal item id, row 0 = padding, never a node)."""
    n = features[0].shape[0]
    valid = torch.ones(n, dtype=torch.bool)
    valid[0] = False
    return item_hypergraph_from_incidences([knn_incidence(f, k, chunk_size, valid) for f in features])


def propagate(adj: torch.Tensor, x: torch.Tensor, layers: int) -> torch.Tensor:
    """``layers`` sparse products ``adj @ x``; the last layer's output (no mean, no weights)."""
    for _ in range(layers):
        x = torch.sparse.mm(adj, x)
    return x
