r"""Hop distances of the training graph, capped at ``K``, and the graph attention bias R built from them.

GraphAttentiveGPT2 (Wang et al.) adds :math:`R = R_{conn} + R_{path}` (Eqs. 1-4) to the attention logits
of every pair of ID tokens. Both terms are functions of the hop distance P between the two nodes in
the bipartite user-item graph of the **training split** (never validation/test edges):

* :func:`hop_table` builds the ``N x N`` table of hop codes (``N = n_users + n_items``, users first,
  RecBole's internal ids, padding ids included as isolated nodes) as ``uint8``: the distance when it is
  at most ``K``, :data:`FAR` (255) beyond ``K`` or unreachable. It never runs Floyd-Warshall: in a
  bipartite graph a walk of length ``k`` between two nodes exists exactly when their distance is at most
  ``k`` and has the parity of ``k`` (walk back and forth along the last edge), so the distances follow
  from ``K`` reachability steps. Each step is ``reach_{k+1}[x] = OR_{y in N(x)} reach_k[y]`` over
  bit-packed rows (``numpy.bitwise_or.reduceat`` over the CSR neighbour lists): ``O(|E| * N/64)`` word
  operations per step. Item-sourced reachability gives the user-item (odd) and item-item (even) blocks,
  user-sourced reachability the user-user block.
* GraphAttentiveGPT2 caches the table on disk, keyed by the training split's fingerprint and ``K``
  (:func:`recbole_llm.models.graph_attentive_gpt2.hop_cache.cached_hop_table`).
* :func:`bias_lut` turns hop codes into R values (a 256-entry lookup table); :func:`graph_bias` is the
  vectorised batch lookup used in ``forward``: one gather ``H[node_q, node_k]`` and one LUT gather.

R's forms (``docs/graph-attentive-gpt2.md``, graph bias): ``linear`` (the authors' code): :math:`R_{path} = (1 - P/K)_+`;
``exp`` (the paper's wording): :math:`R_{path} = \delta^P` for :math:`P \le K`, else 0. :math:`R_{conn}`
is 1 for a training edge (P = 1). The sum is divided by a constant, its largest value (``2 - 1/K``
for ``linear``: the code's min-max whenever some pair is ``>= K`` hops apart, deterministic otherwise).
``ones``: R = 1 on every ID pair (the "meaningless injection" ablation); ``none``: no bias.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


#: Hop code of pairs more than ``K`` hops apart, or not connected at all.
FAR = 255
#: ``R`` forms: the graph (linear or exponential path term), ones on ID pairs, none.
BIAS_MODES = ("graph", "ones", "none")
R_PATH_FORMS = ("linear", "exp")

_CHUNK_WORDS = 1 << 19  # gathered uint64 words per reduceat call (4 MB)


@dataclass
class HopTable:
    """``codes[a, b]``: hop distance between nodes ``a`` and ``b`` (users ``0..n_users-1``, then items),
    :data:`FAR` beyond ``max_hops``."""

    codes: torch.Tensor  # uint8 [N, N]
    n_users: int
    n_items: int
    max_hops: int
    fingerprint: str = ""
    seconds: float = 0.0


def _pack(matrix: sp.csr_matrix) -> np.ndarray:
    """Rows of a 0/1 sparse matrix as bitsets: ``uint64 [rows, ceil(cols/64)]`` (bit j of the row = column j)."""
    rows, cols = matrix.shape
    words = (cols + 63) // 64
    dense = np.zeros((rows, words * 64), dtype=bool)
    coo = matrix.tocoo()
    dense[coo.row, coo.col] = True
    return np.packbits(dense, axis=1, bitorder="little").view(np.uint64).reshape(rows, words)


def _spread_rows(adj, reach, out, start, stop):
    indptr, indices = adj.indptr, adj.indices
    rows_per_chunk = max(1, _CHUNK_WORDS // max(1, reach.shape[1]))
    while start < stop:
        # rows [start, end) whose neighbour lists hold about rows_per_chunk entries together
        end = int(np.searchsorted(indptr, indptr[start] + rows_per_chunk, side="right")) - 1
        end = min(stop, max(end, start + 1))
        lo, hi = indptr[start], indptr[end]
        if hi > lo:
            nonempty = np.flatnonzero(np.diff(indptr[start : end + 1]))
            offsets = (indptr[start:end] - lo)[nonempty]
            out[start + nonempty] = np.bitwise_or.reduceat(reach[indices[lo:hi]], offsets, axis=0)
        start = end


def _spread(adj: sp.csr_matrix, reach: np.ndarray, threads: int = 0) -> np.ndarray:
    """``out[x] = OR over neighbours y of x (rows of adj) of reach[y]`` (bit-packed rows). numpy releases
    the GIL in the gather and the reduction, so row blocks run in ``threads`` threads."""
    n = adj.shape[0]
    out = np.zeros((n, reach.shape[1]), dtype=np.uint64)
    threads = threads or min(4, os.cpu_count() or 1)
    if threads <= 1 or adj.nnz < 100_000:
        _spread_rows(adj, reach, out, 0, n)
        return out
    # row blocks with equal numbers of neighbour entries
    cuts = np.searchsorted(adj.indptr, np.linspace(0, adj.nnz, threads + 1)[1:-1])
    bounds = [0] + sorted(set(int(c) for c in cuts if 0 < c < n)) + [n]
    with ThreadPoolExecutor(len(bounds) - 1) as pool:
        list(pool.map(lambda se: _spread_rows(adj, reach, out, *se), zip(bounds[:-1], bounds[1:])))
    return out


def _transpose_bits(reach: np.ndarray, cols: int) -> np.ndarray:
    """The transpose of a bit-packed 0/1 matrix with ``cols`` columns, bit-packed again."""
    bits = np.unpackbits(reach.view(np.uint8), axis=1, bitorder="little", count=cols)
    rows = bits.shape[0]
    padded = np.zeros((cols, ((rows + 63) // 64) * 64), dtype=np.uint8)
    padded[:, :rows] = bits.T
    return np.packbits(padded, axis=1, bitorder="little").view(np.uint64)


def _fill(block: np.ndarray, reach: np.ndarray, hop: int) -> None:
    """``block[reach bits] = hop`` (levels are filled from the largest hop down, so the smallest wins)."""
    cols = block.shape[1]
    bits = np.unpackbits(reach.view(np.uint8), axis=1, bitorder="little", count=cols).view(bool)
    block[bits] = hop


def hop_codes(matrix: sp.spmatrix, max_hops: int) -> np.ndarray:
    """Hop codes (``uint8 [U+I, U+I]``, users first) of the bipartite graph of the binary ``U x I``
    ``matrix``, capped at ``max_hops`` (:data:`FAR` beyond); see the module docstring.

    Item-sourced walks give the user-item block (odd lengths, rows users) and the item-item block
    (even lengths); the user-user block at even length ``2k`` spreads the transposed user-item reach
    of length ``2k-1`` over the items once more. Reachability is monotone in steps of two (walk back
    and forth), so once a level equals the level two steps before, every later level repeats it and
    the walk stops (on dense graphs such as ml-1m every pair is within 4 hops)."""
    if not 1 <= int(max_hops) < FAR:
        raise ValueError(f"max_hops must be between 1 and {FAR - 1}, got {max_hops}")
    a = sp.csr_matrix(matrix, dtype=np.float32)
    a.sum_duplicates()
    a.data[:] = 1
    at = a.T.tocsr()
    n_users, n_items = a.shape
    n = n_users + n_items
    codes = np.full((n, n), FAR, dtype=np.uint8)
    uu = codes[:n_users, :n_users]
    ui = codes[:n_users, n_users:]
    ii = codes[n_users:, n_users:]
    levels = {}  # hop -> reach (odd: users x items bits; even: items x items bits)
    reach = _pack(a)
    levels[1] = reach
    for hop in range(2, max_hops + 1):
        if hop >= 3 and np.array_equal(levels[hop - 1], levels.get(hop - 3, None) if hop > 3 else None):
            break  # level hop-1 repeats hop-3: all later levels repeat too
        levels[hop] = _spread(at if hop % 2 == 0 else a, levels[hop - 1])
    uu_levels = {}
    for hop in range(2, max_hops + 1, 2):
        if hop - 1 not in levels:
            break
        if hop >= 4 and hop - 3 in levels and np.array_equal(levels[hop - 1], levels[hop - 3]):
            break
        uu_levels[hop] = _spread(a, _transpose_bits(levels[hop - 1], n_items))  # rows users, bits users
    for hop in sorted(levels, reverse=True):
        _fill(ui if hop % 2 else ii, levels[hop], hop)
    for hop in sorted(uu_levels, reverse=True):
        _fill(uu, uu_levels[hop], hop)
    codes[n_users:, :n_users] = ui.T
    np.fill_diagonal(codes, 0)
    return codes


def hop_table(matrix: sp.spmatrix, max_hops: int, fingerprint: str = "") -> HopTable:
    """:func:`hop_codes` as a :class:`HopTable` (a torch ``uint8`` tensor)."""
    start = time.perf_counter()
    codes = hop_codes(matrix, max_hops)
    seconds = time.perf_counter() - start
    return HopTable(torch.from_numpy(codes), matrix.shape[0], matrix.shape[1], int(max_hops), fingerprint, seconds)


def bias_lut(mode: str = "graph", max_hops: int = 6, r_path: str = "linear", delta: float = 0.5) -> torch.Tensor:
    """``float32 [256]``: the R value of an ID pair whose hop code is the index (0 for :data:`FAR`).

    ``graph``: ``(R_conn + R_path) / max`` with ``R_conn = [P == 1]`` and ``R_path`` ``linear``
    ``(1 - P/K)_+`` or ``exp`` ``delta**P`` (``P <= K``); ``ones``: 1 for every code; ``none``: 0."""
    lut = torch.zeros(FAR + 1, dtype=torch.float32)
    if mode == "none":
        return lut
    if mode == "ones":
        return lut.fill_(1.0)
    if mode != "graph":
        raise ValueError(f"graph bias mode must be one of {BIAS_MODES}, got {mode!r}")
    hops = torch.arange(0, max_hops + 1, dtype=torch.float64)
    if r_path == "linear":
        path = (1.0 - hops / max_hops).clamp(min=0)
    elif r_path == "exp":
        path = torch.as_tensor(float(delta), dtype=torch.float64) ** hops
    else:
        raise ValueError(f"r_path must be one of {R_PATH_FORMS}, got {r_path!r}")
    values = path + (hops == 1).double()
    lut[: max_hops + 1] = (values / values.max()).float()
    return lut


def graph_bias(codes, lut: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """R for a batch: ``[B, T, T]`` from ``nodes`` ``[B, T]`` (graph node of each token, -1 for text and
    padding). Per prompt one row gather and one column gather in the hop table, then one LUT gather (no
    Python work per token pair); pairs with a non-ID token get 0. ``codes``
    None: ``lut[0]`` on every ID pair (the ``ones``/``none`` modes)."""
    valid = nodes >= 0
    pairs = valid[:, :, None] & valid[:, None, :]
    lut = lut.to(nodes.device)
    if codes is None:  # "ones"/"none": the value does not depend on the hop distance
        return lut[0] * pairs
    safe = nodes.clamp(min=0)
    out = torch.empty(nodes.shape + (nodes.shape[1],), dtype=lut.dtype, device=nodes.device)
    for b in range(nodes.shape[0]):  # per prompt: T contiguous rows, then T columns of them (cache friendly)
        hop = codes.index_select(0, safe[b]).index_select(1, safe[b])
        out[b] = lut[hop.int()]
    return out.masked_fill_(~pairs, 0.0)
