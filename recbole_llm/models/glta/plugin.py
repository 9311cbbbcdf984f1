"""GLTA's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files = builtin_hooks(
    models=["recbole_llm.models.glta.model:GLTA"],
    trainers={"GLTA": "recbole_llm.models.glta.trainer:GLTATrainer"},
    property_files={"GLTA": ["llm.yaml", "GLTA.yaml"]})
