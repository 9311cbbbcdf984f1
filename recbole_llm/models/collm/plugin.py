"""CoLLM's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.collm.model:CoLLM"],
    trainers={"CoLLM": "recbole_llm.models.collm.trainer:CoLLMTrainer"},
    property_files={"CoLLM": ["llm.yaml", "CoLLM.yaml"]},
    settings={"CoLLM": ["recbole_llm.models.collm.settings:COLLM_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]})
