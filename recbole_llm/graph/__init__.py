"""Graphs built from the training split only.

* :mod:`~recbole_llm.graph.interactions`: the training interactions as pairs, a sparse user x item
  matrix, LightGCN's normalised bipartite adjacency, and a fingerprint of the training split that
  keys every cache and checks every reused artefact; each user's training items (``user_histories``).
* :mod:`~recbole_llm.graph.lightgcn`: LightGCN pretraining (GLTA's stage 1, RLMRec/CoLLM's graph
  encoder) with a cache keyed by that fingerprint.

Also here: GraphAttentiveGPT2's hop tables and graph bias (``hops``), HeLLM's U2U/I2I hypergraphs
(``hypergraph``), chunked kNN item graphs (``knn``), edge-list propagation (``edges``), edge dropout
(``sparse``).
"""

from recbole_llm.graph.interactions import (
    interaction_fingerprint,
    interaction_matrix,
    normalized_adjacency,
    training_pairs,
    user_histories,
)

__all__ = ["interaction_fingerprint", "interaction_matrix", "normalized_adjacency", "training_pairs", "user_histories"]
