"""Atomic writes and checked reads of the files a run leaves behind (checkpoints, caches, state).

A file is written under a temporary name in its folder and moved into place only when complete,
so a killed process never leaves a half-written checkpoint under the real name; a file that cannot
be read raises :class:`~recbole_llm.errors.CorruptFileError` naming the file and the remedy. Reads
never run code from the file (:mod:`recbole_llm.safe_pickle`): a file asking for more than our
checkpoints and caches hold raises :class:`~recbole_llm.errors.UntrustedFileError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from recbole_llm import safe_pickle
from recbole_llm.errors import CorruptFileError, UntrustedFileError


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def save_atomic(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json_atomic(data, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def load_checked(path, what: str, remedy: str, map_location="cpu", kind: str = "checkpoint", trust=None):
    """Load a file we (or RecBole) wrote, safely (:func:`recbole_llm.safe_pickle.load`; ``kind``
    ``"cache"`` admits tensors and plain data only, ``"checkpoint"`` RecBole's Config and model
    classes too; ``trust`` as there). A missing or unreadable file raises :class:`CorruptFileError`
    with ``what`` it is and ``remedy`` (how to start that part anew); a refused one
    :class:`UntrustedFileError`."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{what} {path} does not exist. {remedy}")
    try:
        return safe_pickle.load(path, what, kind=kind, trust=trust, map_location=map_location, remedy=remedy)
    except UntrustedFileError:
        raise
    except Exception as exc:  # pickle, zip and EOF errors all mean the same to the user
        raise CorruptFileError(
            f"{what} {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
            f"{remedy}"
        ) from None


def read_json_checked(path, what: str, remedy: str):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptFileError(f"{what} {path} does not exist. {remedy}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CorruptFileError(f"{what} {path} cannot be read ({exc}). {remedy}") from None
