"""GraphAttentiveGPT2's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.graph_attentive_gpt2.model import GraphAttentiveGPT2

    return [GraphAttentiveGPT2]


@hookimpl
def register_trainers():
    from recbole_llm.models.graph_attentive_gpt2.trainer import GraphAttentiveGPT2Trainer

    return {"GraphAttentiveGPT2": GraphAttentiveGPT2Trainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    return {"GraphAttentiveGPT2": [str(model_dir / "llm.yaml"), str(model_dir / "GraphAttentiveGPT2.yaml")]}
