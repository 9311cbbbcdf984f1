"""HeLLMPre's and HeLLM's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.hellm.model import HeLLM
    from recbole_llm.models.hellm.pre import HeLLMPre

    return [HeLLMPre, HeLLM]


@hookimpl
def register_trainers():
    from recbole_llm.models.hellm.trainer import HeLLMTrainer

    return {"HeLLM": HeLLMTrainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    # HeLLM's stage 1 is HeLLMPre: its hellmpre_* defaults are part of HeLLM's settings too
    return {
        "HeLLMPre": [str(model_dir / "HeLLMPre.yaml")],
        "HeLLM": [str(model_dir / "llm.yaml"), str(model_dir / "HeLLMPre.yaml"), str(model_dir / "HeLLM.yaml")],
    }
