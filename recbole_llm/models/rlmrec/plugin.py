"""RLMRec-Con's and RLMRec-Gen's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files = builtin_hooks(
    models=["recbole_llm.models.rlmrec.model:RLMRecCon", "recbole_llm.models.rlmrec.model:RLMRecGen"],
    trainers={
        "RLMRecCon": "recbole_llm.models.rlmrec.trainer:RLMRecTrainer",
        "RLMRecGen": "recbole_llm.models.rlmrec.trainer:RLMRecTrainer",
    },
    property_files={
        "RLMRecCon": ["llm.yaml", "RLMRec.yaml", "RLMRecCon.yaml"],
        "RLMRecGen": ["llm.yaml", "RLMRec.yaml", "RLMRecGen.yaml"],
    },
)
