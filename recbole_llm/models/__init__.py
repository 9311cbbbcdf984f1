"""recbole-llm's built-in models, registered through the plugin hooks like any plugin's."""

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
from recbole_llm.hookspecs import hookimpl
from recbole_llm.models.glta import GLTA
from recbole_llm.paths import properties_dir

__all__ = ["GLTA"]


@hookimpl
def register_models():
    return [GLTA]


@hookimpl
def register_trainers():
    from recbole_llm.trainers.glta_trainer import GLTATrainer

    return {"GLTA": GLTATrainer}


@hookimpl
def register_property_files():
    return {"GLTA": [str(properties_dir() / "model" / "GLTA.yaml")]}
