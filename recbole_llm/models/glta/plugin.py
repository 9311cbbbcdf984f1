"""GLTA's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.glta.model import GLTA

    return [GLTA]


@hookimpl
def register_trainers():
    from recbole_llm.models.glta.trainer import GLTATrainer

    return {"GLTA": GLTATrainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    return {"GLTA": [str(model_dir / "llm.yaml"), str(model_dir / "GLTA.yaml")]}
