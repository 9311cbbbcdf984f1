"""HeLLMPre's and HeLLM's registration: the same hooks an outside plugin implements.

HeLLM's stage 1 is HeLLMPre: its hellmpre_* defaults are part of HeLLM's settings too."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files = builtin_hooks(
    models=["recbole_llm.models.hellm.pre:HeLLMPre", "recbole_llm.models.hellm.model:HeLLM"],
    trainers={"HeLLM": "recbole_llm.models.hellm.trainer:HeLLMTrainer"},
    property_files={"HeLLMPre": ["HeLLMPre.yaml"], "HeLLM": ["llm.yaml", "HeLLMPre.yaml", "HeLLM.yaml"]})
