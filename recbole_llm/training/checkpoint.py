"""Atomic writes and checked reads of the files a run leaves behind (checkpoints, caches, state).

Files are written with :func:`recbole_llm.files.write_atomic` (never half-written under the real
name); a file that cannot
be read raises :class:`~recbole_llm.errors.CorruptFileError` naming the file and the remedy. Reads
never run code from the file (:mod:`recbole_llm.safe_pickle`): a file asking for more than our
checkpoints and caches hold raises :class:`~recbole_llm.errors.UntrustedFileError`.
"""

from __future__ import annotations

import json
from pathlib import Path

from recbole_llm import safe_pickle
from recbole_llm.errors import CorruptFileError, UntrustedFileError
from recbole_llm.files import write_atomic


def save_atomic(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def write_json_atomic(data, path) -> Path:
    """``data`` as indented JSON with sorted keys, written to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True)))


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
