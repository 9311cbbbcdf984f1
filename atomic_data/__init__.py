"""Convert recommendation datasets from their official raw files to RecBole atomic files.

RecBole's own download storage is gone (RecBole issue #2218) and MovieLens' licence forbids
redistribution, so nothing converted is shipped: each user downloads the official files and
converts them locally. One module per source:

* ``atomic_data.movielens``   MovieLens-1M (``ml-1m.zip``)
* ``atomic_data.amazon2014``  Amazon 2014 5-core reviews + metadata (Beauty, Toys, Sports, Grocery)
* ``atomic_data.goodreads``   UCSD Book Graph, "History & Biography" genre subset
* ``atomic_data.mmrec``       MMRec's preprocessed multimodal folders (``x_label`` splits, ``.npy``)

This module holds what they share: the atomic-file writer (:class:`AtomicWriter`), readers for
gzipped JSON / Python-literal lines, the :class:`DatasetSpec` describing a downloadable dataset,
and :func:`prepare` (download if needed, convert into a staging folder, publish atomically).
Command line: ``python -m atomic_data {list,download,convert}``.

Dataset names are lowercase with hyphens, like RecBole's ``ml-100k``/``ml-1m``. The Amazon names
(``amazon-beauty`` ...) deliberately differ from RecBole's ``Amazon_Beauty``: that one is the full
ratings-only 2014 dump, these are the 5-core review subsets with item metadata and review texts.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import importlib
import json
import logging
import math
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from atomic_data.download import DownloadError, RemoteFile, download, manual_instructions

logger = logging.getLogger(__name__)

__all__ = [
    "AtomicWriter",
    "DatasetSpec",
    "DownloadError",
    "RemoteFile",
    "clean_text",
    "convert_into",
    "datasets",
    "fetch_raw",
    "get_spec",
    "is_converted",
    "iter_records",
    "match_raw_paths",
    "open_text",
    "parse_record",
    "prepare",
    "raw_dir_of",
    "read_atomic_header",
]

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SUFFIX_ORDER = ("item", "user", "review", "train.inter", "valid.inter", "test.inter", "inter")

# Control characters and Unicode line/paragraph separators: RecBole's reader splits fields on
# "\t" and records on newlines, so none of these may appear inside a value.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")


def clean_text(value) -> str:
    """A value as one line of text: control characters (tabs, newlines ...) become spaces, runs
    of spaces collapse, ends are stripped. ``None`` and NaN become ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = _BREAKING.sub(" ", str(value))
    return _SPACES.sub(" ", text).strip()


def _format_float(value) -> str:
    if value is None or value == "":
        return ""
    number = float(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):
        raise ValueError(f"infinite value {value!r} cannot be written to an atomic file")
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


class AtomicWriter:
    """Writes one RecBole atomic file: a ``name:type`` header, then tab-separated rows, UTF-8.

    Values are cleaned with :func:`clean_text`; a value containing a double quote is written
    CSV-quoted (enclosed in quotes, inner quotes doubled), which is exactly what RecBole's
    reader (pandas, python engine, default quoting) undoes, so titles that start with or
    contain quotes survive unchanged.
    ``token_seq``/``float_seq`` values may be lists (joined with ``seq_separator``; a separator
    inside an element becomes a space when the separator is not a space) or ready strings.
    The file appears under its final name only when the writer is closed without an error.
    """

    def __init__(self, path: Path, fields: Sequence, seq_separator: str = " "):
        import csv

        self.path = Path(path)
        self.fields = [self._parse_field(f) for f in fields]
        names = [n for n, _ in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        self.seq_separator = seq_separator
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".writing")
        self._fh = open(self._tmp, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh, delimiter="\t", quotechar='"', lineterminator="\n")
        self._fh.write("\t".join(f"{n}:{t}" for n, t in self.fields) + "\n")

    @staticmethod
    def _parse_field(spec):
        name, ftype = spec.split(":", 1) if isinstance(spec, str) else spec
        if ftype not in FIELD_TYPES:
            raise ValueError(f"field {name!r}: type {ftype!r} is not one of {FIELD_TYPES}")
        if not name or ":" in name or "\t" in name:
            raise ValueError(f"invalid field name {name!r}")
        return name, ftype

    def _format(self, value, ftype: str) -> str:
        if ftype == "token":
            return clean_text(value)
        if ftype == "float":
            return _format_float(value)
        if value is None or isinstance(value, str):
            return clean_text(value)
        if ftype == "float_seq":
            return self.seq_separator.join(_format_float(v) for v in value)
        parts = []
        for element in value:
            element = clean_text(element)
            if self.seq_separator != " ":
                element = element.replace(self.seq_separator, " ").strip()
            if element:
                parts.append(element)
        return self.seq_separator.join(parts)

    def write(self, row) -> None:
        """Write one row, given as a sequence in field order or a mapping ``{name: value}``."""
        if isinstance(row, Mapping):
            values = [row.get(name) for name, _ in self.fields]
        else:
            values = list(row)
            if len(values) != len(self.fields):
                raise ValueError(f"{self.path.name}: row has {len(values)} values, expected {len(self.fields)}")
        self._csv.writerow([self._format(v, t) for v, (_, t) in zip(values, self.fields)])
        self.rows += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def read_atomic_header(path: Path) -> list[tuple[str, str]]:
    """``[(field, type), ...]`` from an atomic file's first line."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n")
    return [tuple(col.split(":", 1)) for col in header.split("\t")]


def open_text(path: Path, encoding: str = "utf-8"):
    """Open a text file for reading, transparently gunzipping ``*.gz`` (by magic bytes)."""
    path = Path(path)
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding=encoding, errors="strict")
    return open(path, encoding=encoding)


def iter_records(path: Path, encoding: str = "utf-8") -> Iterator[dict]:
    """Yield one dict per non-empty line of a (gzipped) file of JSON or Python-literal lines.

    McAuley's 2014 Amazon metadata is written with Python's ``repr`` (single quotes, ``True``),
    not JSON; each line is tried as JSON first and then with :func:`ast.literal_eval` (which
    evaluates literals only, never code).
    """
    with open_text(path, encoding) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield parse_record(line, f"{path}:{lineno}")


def parse_record(line: str, where: str = "line") -> dict:
    """One JSON or Python-literal object (see :func:`iter_records`); ``where`` names the line
    in error messages."""
    line = line.strip()
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{where}: neither JSON nor a Python literal ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected one object per line, got {type(record).__name__}")
    return record


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset recbole-llm knows how to obtain.

    ``files`` are the official raw files (downloaded into ``<out>/<name>/raw/`` unless the user
    points at local copies); ``convert(raw, out_dir, name, **options)`` maps
    ``{filename: local path}`` to atomic files in ``out_dir`` and returns ``{file name: rows}``.
    ``downloadable=False`` marks formats without a stable public URL (MMRec's Google Drive
    folders): they can only be converted from local files.
    """

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    convert: Callable[..., dict]
    homepage: str
    licence: str = ""
    downloadable: bool = True
    options: Mapping = field(default_factory=dict)
    notes: str = ""

    def required_files(self) -> list[RemoteFile]:
        return [f for f in self.files if f.required]


_MODULES = ("atomic_data.movielens", "atomic_data.amazon2014", "atomic_data.goodreads", "atomic_data.mmrec")


def datasets() -> dict[str, DatasetSpec]:
    """Every dataset spec the converter modules declare (their ``SPECS`` lists), by name."""
    specs: dict[str, DatasetSpec] = {}
    for module_name in _MODULES:
        for spec in importlib.import_module(module_name).SPECS:
            if spec.name in specs:
                raise RuntimeError(f"dataset {spec.name!r} declared twice (second in {module_name})")
            specs[spec.name] = spec
    return specs


def get_spec(name: str) -> DatasetSpec:
    specs = datasets()
    if name not in specs:
        raise KeyError(f"Unknown dataset {name!r}. Known: {', '.join(sorted(specs))}.")
    return specs[name]


@contextlib.contextmanager
def _lock(path: Path):
    """Exclusive advisory lock (POSIX); two processes preparing one dataset take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(staging: Path, final: Path) -> list[str]:
    """Move converted files from ``staging`` into ``final``; ``*.inter`` last, so that the
    presence of ``<name>.inter`` means the conversion finished."""

    def rank(p: Path):
        for i, suffix in enumerate(SUFFIX_ORDER):
            if p.name.endswith("." + suffix):
                return i
        return -1  # other files (features, mappings) first

    final.mkdir(parents=True, exist_ok=True)
    moved = sorted(staging.iterdir(), key=lambda p: (rank(p), p.name))
    for path in moved:
        os.replace(path, final / path.name)
    return [p.name for p in moved]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _staging_name(name: str) -> str:
    return f".{name}.staging-{socket.gethostname()}-{os.getpid()}"


def clean_stale_staging(out_root: Path, name: str) -> list[Path]:
    """Remove ``out_root/.<name>.staging-[<host>-]<pid>`` folders left by killed conversions:
    those of this host (or of the old, host-less naming) whose process is gone. Folders of live
    processes, and of other hosts (a shared file system), are left alone. Returns what was removed."""
    removed = []
    prefix = f".{name}.staging-"
    host = socket.gethostname()
    try:
        entries = list(Path(out_root).iterdir())
    except OSError:
        return removed
    for path in entries:
        if not path.name.startswith(prefix) or not path.is_dir():
            continue
        rest = path.name[len(prefix):]
        owner, _, pid_text = rest.rpartition("-")
        if owner not in ("", host) or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            logger.info("Removed %s, left by an interrupted conversion (process %d is gone).", path, pid)
            removed.append(path)
    return removed


def check_dataset_name(name: str) -> str:
    """``name`` if it is one plain folder name (the dataset is written to ``out_root/<name>/``);
    else ``ValueError``: a name with a path separator or ``..`` would write outside ``--out``."""
    text = str(name)
    if (not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text or text.startswith(".")
            or Path(text).is_absolute()):
        raise ValueError(
            f"dataset name {text!r} is not a plain folder name: the converted files go to <out>/<name>/, and a "
            "name holding '/', '\\', '..' or starting with '.' would put them elsewhere. Give a name like "
            "'baby' or 'my-data' (--name), and the folder with --out."
        )
    return text


def convert_into(spec: DatasetSpec, raw: Mapping[str, Path], out_root: Path, name: str | None = None, **options) -> Path:
    """Convert local raw files into ``out_root/<name>/`` through a staging folder."""
    name = check_dataset_name(name or spec.name)
    out_root = Path(out_root)
    final = out_root / name
    clean_stale_staging(out_root, name)
    staging = out_root / _staging_name(name)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        report = spec.convert(dict(raw), staging, name, **{**dict(spec.options), **options})
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = ", ".join(f"{k}: {v} rows" for k, v in report.items())
    logger.info("Converted %s into %s (%s).", spec.name, final, summary)
    return final


def raw_dir_of(out_root: Path, name: str) -> Path:
    """Where downloaded raw files of dataset ``name`` are kept."""
    return Path(out_root) / name / "raw"


def is_converted(out_root: Path, name: str) -> bool:
    return (Path(out_root) / name / f"{name}.inter").is_file()


def fetch_raw(spec: DatasetSpec, raw_dir: Path, *, offline: bool | None = None, progress: bool = True,
              optional: Iterable[str] = ()) -> dict[str, Path]:
    """Download (or reuse) the spec's raw files into ``raw_dir``; return ``{filename: path}``.

    When some files cannot be fetched, the error lists every file still missing with its URL
    and destination, so an offline user can fetch them all in one go.
    """
    if not spec.downloadable:
        raise DownloadError(
            f"{spec.name} has no stable download URL; convert local files instead: "
            f"python -m atomic_data convert {spec.name} --raw PATH --out DIR ({spec.homepage})."
        )
    wanted = [f for f in spec.files if f.required or f.filename in set(optional)]
    raw_dir = Path(raw_dir)
    paths: dict[str, Path] = {}
    for i, remote in enumerate(wanted):
        destination = raw_dir / remote.filename
        try:
            paths[remote.filename] = download(remote, destination, offline=offline, progress=progress)
        except DownloadError as exc:
            still_missing = [r for r in wanted[i + 1:] if not (raw_dir / r.filename).exists()]
            if still_missing:
                more = "\n\nAlso needed (not fetched yet):\n" + "\n".join(
                    manual_instructions(r, raw_dir / r.filename) for r in still_missing
                )
                raise type(exc)(f"{exc}{more}") from exc
            raise
    return paths


def prepare(name_or_spec, out_root: Path, *, offline: bool | None = None, progress: bool = True,
            force: bool = False, optional: Iterable[str] = (), **options) -> Path:
    """Make ``out_root/<name>/<name>.inter`` (and the other atomic files) exist; return the folder.

    Already converted datasets are returned untouched (``force=True`` converts again). Raw files
    are downloaded into ``out_root/<name>/raw/`` (resumable, verified) and kept, so a later
    re-conversion needs no network. Concurrent calls for one dataset are serialised by a lock.
    ``options`` go to the converter (e.g. ``keep="read"`` for Goodreads).
    """
    spec = name_or_spec if isinstance(name_or_spec, DatasetSpec) else get_spec(name_or_spec)
    out_root = Path(out_root)
    with _lock(out_root / f".{spec.name}.lock"):
        if is_converted(out_root, spec.name) and not force:
            return out_root / spec.name
        raw = fetch_raw(spec, raw_dir_of(out_root, spec.name), offline=offline, progress=progress, optional=optional)
        return convert_into(spec, raw, out_root, **options)


def match_raw_paths(spec: DatasetSpec, paths: Sequence[Path]) -> dict[str, Path]:
    """Map user-given raw paths to the spec's file names (for ``convert --raw``).

    A directory is searched for each expected file name; a single path for a single-file spec
    is taken as that file whatever its name (e.g. an extracted ``ml-1m/`` folder); other files
    are matched by base name (with or without ``.gz``).
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
    expected = {f.filename: f for f in spec.files}
    if not expected:  # formats converted from a folder (MMRec)
        if len(paths) != 1:
            raise ValueError(f"{spec.name}: give exactly one --raw folder")
        return {"source": paths[0]}
    if len(paths) == 1 and len(spec.required_files()) == 1 and not paths[0].is_dir():
        return {spec.required_files()[0].filename: paths[0]}
    matched: dict[str, Path] = {}
    for p in paths:
        if p.is_dir():
            for filename in expected:
                for candidate in (p / filename, p / filename.removesuffix(".gz")):
                    if candidate.exists() and filename not in matched:
                        matched[filename] = candidate
            if not matched and len(spec.required_files()) == 1:
                matched[spec.required_files()[0].filename] = p
            continue
        for filename in expected:
            if p.name in (filename, filename.removesuffix(".gz")):
                matched[filename] = p
                break
        else:
            raise ValueError(f"{p.name} is not a raw file of {spec.name}; expected one of: {', '.join(expected)}")
    missing = [f.filename for f in spec.required_files() if f.filename not in matched]
    if missing:
        raise ValueError(f"{spec.name} needs {', '.join(missing)} (not found among {', '.join(map(str, paths))})")
    return matched
