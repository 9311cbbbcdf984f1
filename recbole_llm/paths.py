"""Where recbole-llm finds its property files and keeps downloads and caches."""

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _candidate_properties_dirs():
    """Where ``properties/`` may be, best first.

    1. Inside the package: setup.py ships the repository's top-level ``properties/`` folder as
       ``recbole_llm/properties/``, so a wheel (``pip install .``) and a strict editable install
       (a link tree) have it here.
    2. Next to the package: a source checkout, run with ``PYTHONPATH`` or installed with
       ``pip install -e .`` (whose ``recbole_llm`` is the checkout's folder). Looking beside the
       imported package, not asking the import system, means a second checkout on ``PYTHONPATH``
       reads its own files, not those of another editable install.
    """
    yield _PACKAGE_DIR / "properties"
    yield _PACKAGE_DIR.parent / "properties"


def properties_dir() -> Path:
    """The ``properties/`` folder (``overall.yaml``, ``model/``, ``dataset/``, ``benchmarks/``)."""
    tried = list(_candidate_properties_dirs())
    for candidate in tried:
        if (candidate / "overall.yaml").is_file():
            return candidate
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
