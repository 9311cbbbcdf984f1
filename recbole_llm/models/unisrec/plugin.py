"""UniSRec's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.unisrec.model import UniSRec

    return [UniSRec]


@hookimpl
def register_trainers():
    from recbole_llm.models.unisrec.trainer import UniSRecTrainer

    return {"UniSRec": UniSRecTrainer}


@hookimpl
def register_property_files():
    return {"UniSRec": [str(properties_dir() / "model" / "UniSRec.yaml")]}
