"""LLaRA's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.llara.model:LLaRA"],
    trainers={"LLaRA": "recbole_llm.models.llara.trainer:LLaRATrainer"},
    property_files={"LLaRA": ["llm.yaml", "LLaRA.yaml"]},
    settings={"LLaRA": ["recbole_llm.models.llara.settings:LLARA_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]})
