"""GraphAttentiveGPT2 (graph-attentive causal LM recommender with edge information).

``model.py`` (the RecBole model: ID tokens and tables, graph bias, losses, scoring), ``corpus.py``
(pretraining prompts), ``trainer.py`` (the three stages), ``settings.py`` (what each ``gat_*`` key must
be; defaults in ``properties/model/GraphAttentiveGPT2.yaml``), ``plugin.py`` (registration). The hop
table and R live in ``recbole_llm/graph/hops.py``.
"""

from recbole_llm.models.graph_attentive_gpt2.model import GraphAttentiveGPT2
from recbole_llm.models.graph_attentive_gpt2.trainer import GraphAttentiveGPT2Trainer

__all__ = ["GraphAttentiveGPT2", "GraphAttentiveGPT2Trainer"]
