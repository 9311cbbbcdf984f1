"""Where recbole-llm finds its property files and keeps downloads and caches."""

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def properties_dir() -> Path:
    """The ``properties/`` folder: inside the package when installed from a wheel, else the
    repository's top-level ``properties/`` (source checkout and editable install)."""
    for candidate in (_PACKAGE_DIR / "properties", _PACKAGE_DIR.parent / "properties"):
        if (candidate / "overall.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "recbole-llm cannot find its properties/ folder (looked in "
        f"{_PACKAGE_DIR / 'properties'} and {_PACKAGE_DIR.parent / 'properties'}). "
        "Reinstall the package with `pip install -e .` from the repository root."
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
