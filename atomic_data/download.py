"""Downloading a dataset's raw files from their official source: resumable and verified.

Only the standard library (``urllib``) and ``tqdm`` are used, so the converters work in any
environment that has this repository. The protocol for one file:

1. A complete file at the destination that passes verification is reused (nothing is fetched).
   One that fails verification is deleted and fetched again.
2. Bytes are streamed into ``<destination>.part``. When a ``.part`` file exists from an earlier,
   interrupted attempt, the request asks for the rest with an HTTP ``Range`` header; a server that
   answers ``206 Partial Content`` with the matching ``Content-Range`` gets the bytes appended,
   any other answer (``200``: no range support; a mismatching range) restarts from byte 0.
3. The finished ``.part`` is verified (size, then sha256 and/or md5 where known) and renamed to
   the destination. A *resumed* file that fails verification is deleted and downloaded once
   more from scratch (the stale part may come from an older version of the file); a fresh
   download that fails verification raises :class:`ChecksumMismatchError`.

When the network is unreachable (no route, refused, DNS failure, timeout, HTTP error) the
:class:`DownloadError` says which URL to fetch, where to put the file and how to resume.
Checksums are recorded only where they are published or confirmed by independent sources
(see the ``RemoteFile`` declarations next to each converter); ``checksum=None`` means "size
check only, not verified", and that is logged each time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

USER_AGENT = "recbole-llm-atomic-data/0.1 (+https://github.com/; urllib)"
CHUNK_SIZE = 1 << 16


class DownloadError(RuntimeError):
    """A raw file could not be fetched; the message says what to fetch from where, to where."""


class ChecksumMismatchError(DownloadError):
    """A downloaded file does not match its recorded size or checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """One raw file of a dataset as its publisher distributes it.

    ``md5``/``sha256``/``size`` are ``None`` where we have no published or independently
    confirmed value; ``verified_by`` says where a recorded value comes from (it is shown when a
    check fails). ``homepage`` is the human-readable page that links the file (for the offline
    message: licences often require users to fetch the file themselves from that page).
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    homepage: str | None = None
    verified_by: str | None = None
    required: bool = True

    @property
    def has_checksum(self) -> bool:
        return bool(self.md5 or self.sha256)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile) -> str | None:
    """Check ``path`` against what ``remote`` records; return ``None`` if it passes, else a reason.

    With no recorded checksum only the size (if recorded) is checked, and a warning is logged
    that the file is not verified.
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        return f"size is {actual_size} bytes, expected {remote.size}"
    for algorithm in ("sha256", "md5"):
        expected = getattr(remote, algorithm)
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.lower():
                return f"{algorithm} is {actual}, expected {expected}"
    if not remote.has_checksum:
        logger.warning(
            "%s has no recorded checksum: checked %s only, content NOT verified (%d bytes).",
            path.name,
            "its size" if remote.size is not None else "nothing",
            actual_size,
        )
    return None


def manual_instructions(remote: RemoteFile, destination: Path) -> str:
    """How to put the file in place by hand (used in every error about a missing raw file)."""
    lines = [f"  fetch:   {remote.url}"]
    if remote.homepage:
        lines.append(f"  (linked from {remote.homepage})")
    lines.append(f"  save as: {destination}")
    lines.append(f"  e.g.     curl -L -C - -o '{destination}' '{remote.url}'")
    return "\n".join(lines)


def _offline_error(remote: RemoteFile, destination: Path, reason: str) -> DownloadError:
    part = destination.with_name(destination.name + ".part")
    resume = (
        f"\nA partial download is kept at {part}; the next attempt resumes from it."
        if part.exists() and part.stat().st_size > 0
        else ""
    )
    return DownloadError(
        f"Could not download {remote.url}: {reason}.\n"
        f"Without network access, fetch the file on another machine and put it in place:\n"
        f"{manual_instructions(remote, destination)}\n"
        f"then run the same command again.{resume}"
    )


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range_start(header: str | None) -> int | None:
    """First byte position of a ``Content-Range: bytes A-B/N`` header, else ``None``."""
    if not header or not header.strip().startswith("bytes"):
        return None
    try:
        return int(header.split()[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _total_size(response, start: int, partial: bool) -> int | None:
    if partial:
        rng = response.headers.get("Content-Range", "")
        total = rng.rsplit("/", 1)[-1] if "/" in rng else ""
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _fetch_into_part(remote: RemoteFile, part: Path, timeout: float, progress: bool) -> bool:
    """Stream the URL into ``part``, resuming if it has bytes. Return True if it resumed."""
    from tqdm import tqdm

    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(remote.url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or start == 0:
            raise
        # "Range not satisfiable": complete if the server's size equals the part's, else the
        # part is stale (longer than the file): fetch the whole file again.
        total = (exc.headers.get("Content-Range") or "").rsplit("/", 1)[-1]
        if total.isdigit() and int(total) == start:
            logger.info("%s: the partial download already holds all %d bytes.", remote.filename, start)
            return True
        logger.info("%s: partial download does not match the file; restarting from byte 0.", remote.filename)
        start = 0
        response = _open(remote.url, 0, timeout)
    status = getattr(response, "status", None) or response.getcode()
    resumed = False
    if start > 0:
        if status == 206 and _content_range_start(response.headers.get("Content-Range")) == start:
            resumed = True
            logger.info("Resuming %s at byte %d.", remote.filename, start)
        else:
            logger.info("Server did not resume %s (HTTP %s); restarting from byte 0.", remote.filename, status)
            if status == 206:  # some other range: ask for the whole file instead
                response.close()
                response = _open(remote.url, 0, timeout)
            start = 0
    with response:
        total = _total_size(response, start, resumed)
        if total is None and remote.size is not None:
            total = remote.size
        mode = "ab" if resumed else "wb"
        with open(part, mode) as out, tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=remote.filename,
            disable=not progress,
            leave=False,
        ) as bar:
            while True:
                block = response.read(CHUNK_SIZE)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
        written = part.stat().st_size
        if total is not None and written < total:
            raise DownloadError(f"the connection closed after {written} of {total} bytes")
    return resumed


def download(
    remote: RemoteFile,
    destination: Path,
    *,
    timeout: float = 60.0,
    progress: bool = True,
    offline: bool | None = None,
) -> Path:
    """Make ``destination`` hold ``remote``'s verified bytes; return ``destination``.

    ``offline=True`` (or the environment variable ``RECBOLE_LLM_OFFLINE=1``) never touches the
    network: a missing file raises :class:`DownloadError` with the manual instructions.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if offline is None:
        offline = os.environ.get("RECBOLE_LLM_OFFLINE", "").lower() in {"1", "true", "yes"}

    if destination.exists():
        problem = verify(destination, remote)
        if problem is None:
            return destination
        logger.warning("%s exists but %s; downloading it again.", destination, problem)
        destination.unlink()

    if offline:
        raise _offline_error(remote, destination, "offline mode (--offline or RECBOLE_LLM_OFFLINE=1)")

    part = destination.with_name(destination.name + ".part")
    for attempt in (1, 2):
        try:
            resumed = _fetch_into_part(remote, part, timeout, progress)
        except urllib.error.HTTPError as exc:
            raise _offline_error(remote, destination, f"HTTP {exc.code} {exc.reason}") from exc
        except DownloadError as exc:
            raise _offline_error(remote, destination, str(exc)) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _offline_error(remote, destination, f"{type(exc).__name__}: {reason}") from exc
        problem = verify(part, remote)
        if problem is None:
            os.replace(part, destination)
            return destination
        part.unlink()
        if resumed and attempt == 1:
            logger.warning(
                "Resumed download of %s failed verification (%s); restarting from byte 0.",
                remote.filename,
                problem,
            )
            continue
        raise ChecksumMismatchError(
            f"{remote.url} downloaded, but its {problem}"
            + (f" (recorded value from {remote.verified_by})" if remote.verified_by else "")
            + ". The file was deleted. If the publisher changed the file, check its homepage"
            + (f" ({remote.homepage})" if remote.homepage else "")
            + f"; otherwise retry. Manual fetch:\n{manual_instructions(remote, destination)}"
        )
    raise AssertionError("unreachable")  # pragma: no cover
