"""CoLLM's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.collm.model import CoLLM

    return [CoLLM]


@hookimpl
def register_trainers():
    from recbole_llm.models.collm.trainer import CoLLMTrainer

    return {"CoLLM": CoLLMTrainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    return {"CoLLM": [str(model_dir / "llm.yaml"), str(model_dir / "CoLLM.yaml")]}
