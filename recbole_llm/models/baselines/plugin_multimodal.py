"""Registration of the multimodal baselines (VBPR, GRCN, LATTICE, SLMRec, BM3, FREEDOM): the same
hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir

MODELS = ("VBPR", "GRCN", "LATTICE", "SLMRec", "BM3", "FREEDOM")


@hookimpl
def register_models():
    from recbole_llm.models.baselines.bm3 import BM3
    from recbole_llm.models.baselines.freedom import FREEDOM
    from recbole_llm.models.baselines.grcn import GRCN
    from recbole_llm.models.baselines.lattice import LATTICE
    from recbole_llm.models.baselines.slmrec import SLMRec
    from recbole_llm.models.baselines.vbpr import VBPR

    return [VBPR, GRCN, LATTICE, SLMRec, BM3, FREEDOM]


@hookimpl
def register_trainers():
    # per-epoch hook: FREEDOM prunes its training graph, LATTICE rebuilds its learned item graph
    from recbole_llm.models.baselines.multimodal import MultimodalTrainer

    return {"FREEDOM": MultimodalTrainer, "LATTICE": MultimodalTrainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    return {name: [str(model_dir / f"{name}.yaml")] for name in MODELS}
