"""Registration of the multimodal baselines (VBPR, GRCN, LATTICE, SLMRec, BM3, FREEDOM): the same
hooks an outside plugin implements. FREEDOM and LATTICE use the multimodal trainer's per-epoch hook
(FREEDOM prunes its training graph, LATTICE rebuilds its learned item graph)."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files = builtin_hooks(
    models=[
        "recbole_llm.models.baselines.vbpr:VBPR",
        "recbole_llm.models.baselines.grcn:GRCN",
        "recbole_llm.models.baselines.lattice:LATTICE",
        "recbole_llm.models.baselines.slmrec:SLMRec",
        "recbole_llm.models.baselines.bm3:BM3",
        "recbole_llm.models.baselines.freedom:FREEDOM",
    ],
    trainers={
        "FREEDOM": "recbole_llm.models.baselines.multimodal:MultimodalTrainer",
        "LATTICE": "recbole_llm.models.baselines.multimodal:MultimodalTrainer",
    },
    property_files={
        "VBPR": ["VBPR.yaml"],
        "GRCN": ["GRCN.yaml"],
        "LATTICE": ["LATTICE.yaml"],
        "SLMRec": ["SLMRec.yaml"],
        "BM3": ["BM3.yaml"],
        "FREEDOM": ["FREEDOM.yaml"],
    },
)
