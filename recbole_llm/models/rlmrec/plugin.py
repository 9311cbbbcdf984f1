"""RLMRec-Con's and RLMRec-Gen's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.rlmrec.model import RLMRecCon, RLMRecGen

    return [RLMRecCon, RLMRecGen]


@hookimpl
def register_trainers():
    from recbole_llm.models.rlmrec.trainer import RLMRecTrainer

    return {"RLMRecCon": RLMRecTrainer, "RLMRecGen": RLMRecTrainer}


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    shared = [str(model_dir / "llm.yaml"), str(model_dir / "RLMRec.yaml")]
    return {"RLMRecCon": shared + [str(model_dir / "RLMRecCon.yaml")],
            "RLMRecGen": shared + [str(model_dir / "RLMRecGen.yaml")]}
