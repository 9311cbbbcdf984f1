"""Model and trainer resolution: the plugin registry first, RecBole second.

This is RecBole-GNN's extension pattern: RecBole's own ``get_model``/``get_trainer`` are
reused for RecBole's models, nothing of them is copied.
"""

import importlib.util

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_llm._recbole import recbole_model_names
from recbole_llm.errors import MissingDependencyError, RecBoleLLMError
from recbole_llm.plugins import get_registry


class UnknownModelError(RecBoleLLMError, ValueError):
    """``--model`` names no registered plugin model and no RecBole model."""


def list_models():
    """``{"recbole_llm": [...], "recbole": [...]}``: the names ``--model`` accepts."""
    return {
        "recbole_llm": sorted(get_registry().models),
        "recbole": list(recbole_model_names()),
    }


def _unknown_model_message(name):
    models = list_models()
    registered = ", ".join(models["recbole_llm"]) or "(none)"
    lowered = {n.lower(): n for n in models["recbole_llm"] + models["recbole"]}
    hint = f" Did you mean {lowered[name.lower()]!r}?" if name.lower() in lowered else ""
    message = (
        f"Unknown model {name!r}.{hint}\n"
        f"Models registered by recbole-llm plugins: {registered}\n"
        f"RecBole models: {', '.join(models['recbole'])}\n"
        "A third-party model must be registered by a plugin (entry-point group 'recbole_llm'); "
        "see README, 'Writing a plugin'."
    )
    errors = get_registry().errors
    if errors:
        message += "\nPlugin problems:\n  " + "\n  ".join(errors)
    return message


#: Import name -> pip package of the optional libraries some RecBole models need.
PIP_PACKAGES = {
    "faiss": "faiss-cpu",
    "dgl": "dgl",
    "torch_scatter": "torch-scatter",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}
#: RecBole models that import an optional library (at construction or during training).
RECBOLE_OPTIONAL_DEPENDENCIES = {
    "NCL": "faiss",
    "KGAT": "dgl",
    "KGIN": "torch_scatter",
    "MCCLK": "torch_scatter",
    "XGBoost": "xgboost",
    "LightGBM": "lightgbm",
}


def missing_dependency_error(model_name, module):
    """The :class:`MissingDependencyError` for ``model_name`` needing import ``module``."""
    top = (module or "").split(".")[0]
    pip = PIP_PACKAGES.get(top, top)
    who = f"Model {model_name!r}" if model_name else "This model"
    return MissingDependencyError(
        f"{who} needs the optional library {top!r}, which is not installed. "
        f"Install it with: pip install {pip}"
    )


def _check_optional_dependency(model_name):
    module = RECBOLE_OPTIONAL_DEPENDENCIES.get(model_name)
    if module is None:
        return
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise missing_dependency_error(model_name, module)


def get_model(model_name):
    """Return the model class for ``model_name``: a plugin's, else RecBole's.

    A RecBole model whose optional library (faiss, dgl, torch_scatter, xgboost, lightgbm) is not
    installed raises :class:`MissingDependencyError` naming the pip package."""
    if not isinstance(model_name, str):
        raise TypeError(f"model name must be a string, got {type(model_name).__name__}")
    registry = get_registry()
    if model_name in registry.models:
        return registry.models[model_name]
    _check_optional_dependency(model_name)
    if model_name in recbole_model_names():
        try:
            return recbole_get_model(model_name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in PIP_PACKAGES:
                raise
            raise missing_dependency_error(model_name, exc.name) from None
    raise UnknownModelError(_unknown_model_message(model_name))


def get_trainer(model_type, model_name):
    """Return the trainer class: a plugin's trainer for this model, else RecBole's choice."""
    registry = get_registry()
    if model_name in registry.trainers:
        return registry.trainers[model_name]
    return recbole_get_trainer(model_type, model_name)


def model_name_of(model):
    """Name of a model given as a string or a class."""
    return model if isinstance(model, str) else model.__name__
