"""LLaRA's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.llara.model import LLaRA

    return [LLaRA]


@hookimpl
def register_trainers():
    from recbole_llm.models.llara.trainer import LLaRATrainer

    return {"LLaRA": LLaRATrainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    return {"LLaRA": [str(model_dir / "llm.yaml"), str(model_dir / "LLaRA.yaml")]}
