"""Graphs built from the training split only (pure graph maths: nothing here trains or caches).

* :mod:`~recbole_llm.graph.interactions`: the training interactions as a sparse user x item
  matrix, LightGCN's normalised bipartite adjacency, edge lists and edge pruning.
* :mod:`~recbole_llm.graph.hops`: GraphAttentiveGPT2's hop tables and graph-bias lookups.
* :mod:`~recbole_llm.graph.hypergraph`, :mod:`~recbole_llm.graph.knn`: HeLLM's hypergraphs, k-NN.

Also here: edge-list propagation (``edges``), edge dropout and the LightGCN layer mean (``sparse``).
The split's pairs, histories and fingerprint are data (:mod:`recbole_llm.data.interactions`).
"""

from recbole_llm.graph.interactions import interaction_matrix, normalized_adjacency

__all__ = ["interaction_matrix", "normalized_adjacency"]
