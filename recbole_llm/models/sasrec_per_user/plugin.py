"""SASRecPerUser's registration: the same hooks an outside plugin implements.

SASRec's own defaults (RecBole's file) come first, then the adapter's settings."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.sasrec_per_user.model:SASRecPerUser"],
    trainers={"SASRecPerUser": "recbole_llm.models.sasrec_per_user.model:SASRecPerUserTrainer"},
    property_files={"SASRecPerUser": ["recbole:SASRec.yaml", "SASRecPerUser.yaml"]},
    settings={"SASRecPerUser": ["recbole_llm.models.sasrec_per_user.model:SASREC_PER_USER_SETTINGS"]})
