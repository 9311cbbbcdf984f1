"""Registration of the multimodal baselines (VBPR, GRCN, LATTICE, SLMRec, BM3, FREEDOM): the same
hooks an outside plugin implements. FREEDOM and LATTICE use the multimodal trainer's per-epoch hook
(FREEDOM prunes its training graph, LATTICE rebuilds its learned item graph)."""

from recbole_llm.models.builtin import builtin_hooks

MODELS = ("VBPR", "GRCN", "LATTICE", "SLMRec", "BM3", "FREEDOM")  # module recbole_llm.models.baselines.<lower name>
TRAINER = "recbole_llm.models.baselines.multimodal:MultimodalTrainer"

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=[f"recbole_llm.models.baselines.{name.lower()}:{name}" for name in MODELS],
    trainers={"FREEDOM": TRAINER, "LATTICE": TRAINER},
    property_files={name: [f"{name}.yaml"] for name in MODELS},
    settings={name: [f"recbole_llm.models.baselines.{name.lower()}:{name.upper()}_SETTINGS"] for name in MODELS})
