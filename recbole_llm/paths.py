"""Where recbole-llm finds its property files and keeps downloads and caches."""

import importlib.util
import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _candidate_properties_dirs():
    """Where ``properties/`` may be, best first.

    1. Inside the package: setup.py ships the repository's top-level ``properties/`` folder as
       the package ``recbole_llm.properties``, so a wheel (``pip install .``) has it here.
    2. Next to the package: a source checkout (``PYTHONPATH`` or ``pip install -e .``, whose
       ``recbole_llm`` is the checkout's folder). This copy wins over 3 so that a second
       checkout on ``PYTHONPATH`` reads its own files, not those of an editable install.
    3. Wherever the import system puts ``recbole_llm.properties`` (an editable install's
       finder maps it to the checkout's ``properties/``).
    """
    yield _PACKAGE_DIR / "properties"
    yield _PACKAGE_DIR.parent / "properties"
    try:
        spec = importlib.util.find_spec("recbole_llm.properties")
    except Exception:  # a broken finder must not hide the error message below
        spec = None
    # properties/ has no __init__.py: a namespace package, whose locations are real folders.
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        yield Path(location)


def properties_dir() -> Path:
    """The ``properties/`` folder (``overall.yaml``, ``model/``, ``dataset/``, ``benchmarks/``)."""
    tried = []
    for candidate in _candidate_properties_dirs():
        if (candidate / "overall.yaml").is_file():
            return candidate
        if candidate not in tried:
            tried.append(candidate)
    raise FileNotFoundError(
        "recbole-llm cannot find its properties/ folder (looked in "
        f"{', '.join(str(t) for t in tried)}). The installation is incomplete: reinstall with "
        "`pip install .` (or `pip install -e .` for development) from the repository root."
    )


def cache_dir() -> Path:
    """Root of recbole-llm's caches (converted LLM weights, text embeddings, generated texts).

    ``RECBOLE_LLM_CACHE`` overrides the default ``~/.cache/recbole_llm``.
    """
    root = os.environ.get("RECBOLE_LLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "recbole_llm"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_dir() -> Path:
    """Where downloaded and converted datasets live unless ``data_path`` says otherwise.

    ``RECBOLE_LLM_DATA`` overrides the default ``<cache_dir>/datasets``.
    """
    root = os.environ.get("RECBOLE_LLM_DATA")
    path = Path(root) if root else cache_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path
