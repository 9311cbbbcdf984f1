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


def check_output_folder(path, setting: str) -> None:
    """Raise :class:`~recbole_llm.errors.ConfigError` unless ``path`` is a folder this process can
    write, or one it can create: checked before a run starts, so a folder that is a file or lies on
    a read-only or foreign-owned path is one line naming ``setting``, not a traceback at the first
    save. Creates nothing."""
    from recbole_llm.errors import ConfigError

    path = Path(path)
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent  # the nearest part of the path that exists
    if os.path.lexists(probe) and not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise ConfigError(f"{setting}: {path} {what}, not a folder. Move the file away or choose another folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: {path} cannot be written ({probe} is not writable for this user, or is on a "
                          "read-only file system). Choose a folder you can write to.")


def check_output_folders(config) -> None:
    """The folders a run writes: ``checkpoint_dir``, RecBole's ``./log`` (and ``./log_tensorboard``
    when ``log_tensorboard`` is on), both relative to the working directory."""
    cwd = os.getcwd()
    check_output_folder(config["checkpoint_dir"], "checkpoint_dir (--checkpoint_dir=DIR)")
    check_output_folder(Path("log"), f"RecBole's log folder ./log (in the working directory {cwd}; run from another folder)")
    if config["log_tensorboard"] if "log_tensorboard" in config else False:
        check_output_folder(Path("log_tensorboard"), f"./log_tensorboard (in {cwd}; or set log_tensorboard: False)")
