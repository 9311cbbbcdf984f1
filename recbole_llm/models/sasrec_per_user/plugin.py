"""SASRecPerUser's registration: the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.sasrec_per_user.model import SASRecPerUser

    return [SASRecPerUser]


@hookimpl
def register_trainers():
    from recbole_llm.models.sasrec_per_user.model import SASRecPerUserTrainer

    return {"SASRecPerUser": SASRecPerUserTrainer}


@hookimpl
def register_property_files():
    import recbole

    from pathlib import Path

    # SASRec's own defaults (RecBole's file), then the adapter's settings
    sasrec_yaml = Path(recbole.__file__).parent / "properties" / "model" / "SASRec.yaml"
    return {"SASRecPerUser": [str(sasrec_yaml), str(properties_dir() / "model" / "SASRecPerUser.yaml")]}
