"""recbole-llm: LLM-based recommenders (GLTA, GraphAttentiveGPT2, HeLLM) as RecBole plugins.

Importing the package applies the RecBole-on-current-stack fixes (``recbole_llm.compat``).
The plugin contract is ``recbole_llm.hookspecs``; ``hookimpl`` is re-exported here so a plugin
writes ``@recbole_llm.hookimpl``.
"""

import warnings

__version__ = "0.1.0"

with warnings.catch_warnings():
    # ray (pinned by RecBole) imports pkg_resources, which warns about its own deprecation.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from recbole_llm import compat as _compat

    _compat.apply()

from recbole_llm.hookspecs import hookimpl  # noqa: E402

__all__ = ["hookimpl", "run_recbole_llm", "run_experiment", "load_data_and_model", "__version__"]


def __getattr__(name):
    # Lazy: importing the quick-start pulls in RecBole's data and trainer stacks.
    if name in {"run_recbole_llm", "run_experiment", "load_data_and_model"}:
        from recbole_llm import quick_start

        return getattr(quick_start, name)
    raise AttributeError(f"module 'recbole_llm' has no attribute {name!r}")
