"""The one atomic file writer: a file is written under a temporary name in its folder and moved into
place only when complete, so a killed process never leaves a half-written file under the real name."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path, write) -> Path:
    """Call ``write(tmp)`` with a temporary path next to ``path`` (folders created), then move the
    result to ``path``; the temporary file is removed if ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
