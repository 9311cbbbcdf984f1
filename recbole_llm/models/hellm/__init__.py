"""HeLLM (hypergraph-enhanced LLM learning for recommendation) and its stage 1, HeLLMPre.

``pre.py`` (HeLLMPre: U2U/I2I hypergraphs, LightGCN, fusion, contrastive losses; a RecBole
general model usable alone), ``model.py`` (HeLLM: graph prefixes, graph+SASRec item tokens, LoRA,
item head), ``trainer.py`` (HeLLM's stages on the shared StagedTrainer), ``settings.py`` (what
each ``hellmpre_*``/``hellm_*`` key must be; defaults in ``properties/model/HeLLMPre.yaml`` and
``HeLLM.yaml``), ``plugin.py`` (registration through the plugin hooks).
"""

from recbole_llm.models.hellm.pre import HeLLMPre

__all__ = ["HeLLMPre"]
