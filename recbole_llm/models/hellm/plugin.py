"""HeLLMPre's and HeLLM's registration: the same hooks an outside plugin implements.

HeLLM's stage 1 is HeLLMPre: its hellmpre_* defaults are part of HeLLM's settings too."""

from recbole_llm.models.builtin import builtin_hooks

SETTINGS = "recbole_llm.models.hellm.settings"

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.hellm.pre:HeLLMPre", "recbole_llm.models.hellm.model:HeLLM"],
    trainers={"HeLLM": "recbole_llm.models.hellm.trainer:HeLLMTrainer"},
    property_files={"HeLLMPre": ["HeLLMPre.yaml"], "HeLLM": ["llm.yaml", "HeLLMPre.yaml", "HeLLM.yaml"]},
    settings={"HeLLMPre": [f"{SETTINGS}:HELLMPRE_SETTINGS"],
              "HeLLM": [f"{SETTINGS}:HELLM_SETTINGS", f"{SETTINGS}:HELLMPRE_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]})
