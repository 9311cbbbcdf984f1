"""RecBole, made usable: the gate every recbole-llm module passes before it imports RecBole.

Importing this module applies :mod:`recbole_llm.compat` (once per process), so a module that
imports RecBole at module level writes, before its first ``import recbole``/``from recbole``::

    from recbole_llm import _recbole  # noqa: F401  (RecBole compat fixes; before any RecBole import)

A package's ``__init__`` may carry the gate for all its submodules (``recbole_llm.models``,
``recbole_llm.training``): a submodule import runs its package's ``__init__`` first.
``tests/test_packaging.py`` checks that no module reaches RecBole without the gate.

``import recbole_llm`` itself stays light (no torch, RecBole or ray): the package, the plugin
contract (``recbole_llm.hookspecs``) and the plugin host module load without RecBole.
"""

import importlib
from functools import lru_cache

from recbole_llm import compat

compat.apply()

_RECBOLE_MODEL_SUBMODULES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


@lru_cache(maxsize=1)
def recbole_model_names():
    """Sorted names of the model classes RecBole 1.2.1 exports.

    ``exlib_recommender`` (XGBoost/LightGBM) is listed only if its optional dependencies import.
    """
    from recbole.model.abstract_recommender import AbstractRecommender

    names = set()
    for sub in _RECBOLE_MODEL_SUBMODULES:
        try:
            module = importlib.import_module(f"recbole.model.{sub}")
        except ImportError:
            continue
        for attr, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, AbstractRecommender) and attr == obj.__name__:
                names.add(attr)
    return tuple(sorted(names))
