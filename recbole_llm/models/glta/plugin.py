"""GLTA's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.glta.model:GLTA"],
    trainers={"GLTA": "recbole_llm.models.glta.trainer:GLTATrainer"},
    property_files={"GLTA": ["llm.yaml", "GLTA.yaml"]},
    settings={"GLTA": ["recbole_llm.models.glta.settings:GLTA_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]})
