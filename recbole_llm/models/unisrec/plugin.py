"""UniSRec's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.unisrec.model:UniSRec"],
    trainers={"UniSRec": "recbole_llm.models.unisrec.trainer:UniSRecTrainer"},
    property_files={"UniSRec": ["UniSRec.yaml"]},
    settings={"UniSRec": ["recbole_llm.models.unisrec.settings:UNISREC_SETTINGS"]})
