"""LLaRA's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files = builtin_hooks(
    models=["recbole_llm.models.llara.model:LLaRA"],
    trainers={"LLaRA": "recbole_llm.models.llara.trainer:LLaRATrainer"},
    property_files={"LLaRA": ["llm.yaml", "LLaRA.yaml"]})
