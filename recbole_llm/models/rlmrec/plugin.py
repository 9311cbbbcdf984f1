"""RLMRec-Con's and RLMRec-Gen's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

MODULE = "recbole_llm.models.rlmrec"

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=[f"{MODULE}.model:RLMRecCon", f"{MODULE}.model:RLMRecGen"],
    trainers={name: f"{MODULE}.trainer:RLMRecTrainer" for name in ("RLMRecCon", "RLMRecGen")},
    property_files={name: ["llm.yaml", "RLMRec.yaml", f"{name}.yaml"] for name in ("RLMRecCon", "RLMRecGen")},
    settings={"RLMRecCon": [f"{MODULE}.settings:RLMREC_CON_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"],
              "RLMRecGen": [f"{MODULE}.settings:RLMREC_GEN_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]})
