"""recbole-llm: LLM-based recommenders (GLTA, GraphAttentiveGPT2, HeLLM) as RecBole plugins.

Importing the package is light: it loads neither torch nor RecBole (nor ray). The RecBole fixes
(``recbole_llm.compat``) are applied where RecBole is first used, by ``recbole_llm._recbole``,
which every module importing RecBole imports first (``recbole_llm.config``, ``.utils``,
``.quick_start``, ``.models``, ``.training``, and the plugin host before it loads plugins).
A program that uses RecBole directly, before any of those, calls ``recbole_llm.compat.apply()``.

The plugin contract is ``recbole_llm.hookspecs``; ``hookimpl`` is re-exported here so a plugin
writes ``@recbole_llm.hookimpl``.
"""

import os

# OpenMP threads that spin while waiting make torch much slower on a shared CPU. Set before
# torch loads (it reads the variable once); a user's explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from recbole_llm.hookspecs import hookimpl  # noqa: E402

__version__ = "0.1.0"

__all__ = ["hookimpl", "run_recbole_llm", "run_experiment", "load_data_and_model", "__version__"]


def __getattr__(name):
    # Lazy: importing the quick-start pulls in torch and RecBole's data and trainer stacks.
    if name in {"run_recbole_llm", "run_experiment", "load_data_and_model"}:
        from recbole_llm import quick_start

        return getattr(quick_start, name)
    raise AttributeError(f"module 'recbole_llm' has no attribute {name!r}")
