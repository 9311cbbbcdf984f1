"""Check RecBole atomic files (``<ds>.inter``, ``.user``, ``.item``, ``.kg``, ``.link``, additional
suffixes) before RecBole loads them, so that a malformed header or row is reported with its file
and line instead of a traceback from deep inside RecBole or pandas.

Checked, for every file RecBole would load (a source missing from a ``load_col`` mapping is not
loaded and not checked):

* the header: every field is ``name:type`` with a type RecBole knows (token, token_seq, float,
  float_seq), fields separated by ``field_separator`` (a comma-separated header is named as such).
  RecBole parses the whole header even when ``load_col`` loads only some of its columns;
* the rows: every non-blank line has as many fields as the header. Files are read in binary,
  16 MiB at a time, and newlines and separators are located with numpy (no Python loop per line),
  so the check stays cheap beside RecBole's own loading.
"""

from __future__ import annotations

from pathlib import Path

from recbole_llm.errors import DataFormatError

FEATURE_TYPES = ("token", "token_seq", "float", "float_seq")
_CHUNK = 1 << 24  # 16 MiB


def _describe_sep(sep: str) -> str:
    return {"\t": "tab ('\\t')", ",": "comma (',')", " ": "space (' ')", ";": "semicolon (';')"}.get(sep, repr(sep))


def atomic_files(config, data_path) -> list[tuple[Path, str]]:
    """``(path, source)`` of the atomic files RecBole will load for this config."""
    data_path = Path(data_path)
    dataset = config["dataset"]
    files = []
    benchmark = config["benchmark_filename"] if "benchmark_filename" in config else None
    if benchmark:
        files += [(data_path / f"{dataset}.{part}.inter", "inter") for part in benchmark]
    else:
        files.append((data_path / f"{dataset}.inter", "inter"))
    suffixes = ["user", "item"]
    model_type = config["MODEL_TYPE"] if "MODEL_TYPE" in config else None
    if getattr(model_type, "name", model_type) == "KNOWLEDGE":
        suffixes += ["kg", "link"]  # only knowledge-aware models (KnowledgeBasedDataset) read them
    extra = config["additional_feat_suffix"] if "additional_feat_suffix" in config else None
    if isinstance(extra, str):
        extra = [extra]
    suffixes += [s for s in (extra or []) if s not in suffixes]
    files += [(data_path / f"{dataset}.{s}", s) for s in suffixes]
    return [(p, s) for p, s in files if p.is_file()]


def _load_and_unload(config, source):
    """RecBole's ``Dataset._get_load_and_unload_col``: (load set or None, unload set or None);
    ``load`` is ``set()`` when the file is not loaded at all."""
    load_col = config["load_col"] if "load_col" in config else None
    unload_col = config["unload_col"] if "unload_col" in config else None
    if load_col is None:
        load = None
    elif not isinstance(load_col, dict) or source not in load_col:
        load = set()
    elif load_col[source] == "*":
        load = None
    else:
        value = load_col[source]
        load = set([value] if isinstance(value, str) else (value or []))
    unload = None
    if isinstance(unload_col, dict) and source in unload_col:
        value = unload_col[source]
        unload = set([value] if isinstance(value, str) else (value or []))
    return load, unload


def check_header(path, header: str, sep: str, load=None, unload=None) -> list[tuple[str, str]]:
    """Parse one header line; return ``[(field, type), ...]`` or raise :class:`DataFormatError`."""
    path = Path(path)
    where = f"{path}, line 1 (header)"
    header = header.rstrip("\r\n")
    if not header.strip():
        raise DataFormatError(f"{where} is empty. An atomic file starts with a header like 'user_id:token{sep}item_id:token'.")
    parts = header.split(sep)
    if len(parts) == 1 and sep != "," and "," in header and all(":" in p for p in header.split(",")):
        raise DataFormatError(
            f"{where}: fields are separated by commas ({header!r}), but field_separator is "
            f"{_describe_sep(sep)}. Separate the columns with {_describe_sep(sep)} or set "
            "field_separator: ',' in a config file (--field_separator=\",\")."
        )
    fields = []
    for part in parts:
        if part.count(":") != 1 or not part.split(":")[0]:
            raise DataFormatError(
                f"{where}: field {part!r} is not written 'name:type' (header {header!r}). Give every "
                f"column a type, e.g. 'user_id:token{_sep_text(sep)}item_id:token{_sep_text(sep)}rating:float'; "
                f"types: {', '.join(FEATURE_TYPES)}. Columns are separated by {_describe_sep(sep)} (field_separator)."
            )
        name, ftype = part.split(":")
        if ftype not in FEATURE_TYPES:
            raise DataFormatError(
                f"{where}: field {name!r} has unknown type {ftype!r}. RecBole's types are "
                f"{', '.join(FEATURE_TYPES)}."
            )
        fields.append((name, ftype))
    # Columns load_col names but the file lacks are skipped by RecBole without complaint (shared
    # config files list e.g. timestamp for datasets without one), so they are not an error here.
    return fields


def _sep_text(sep):
    return "\\t" if sep == "\t" else sep


def check_rows(path, n_fields: int, sep: bytes) -> None:
    """Every non-blank line after the header has ``n_fields`` fields; else raise naming the line.

    Read in binary, 16 MiB at a time; newlines and separators are located with numpy, so the
    Python-level work is per chunk, not per line."""
    import numpy as np

    path = Path(path)
    if len(sep) != 1:
        return _scan_lines(path, n_fields, sep)
    sep_byte = sep[0]
    with open(path, "rb") as fh:
        first_line = 1 + (1 if fh.readline() else 0)  # number of the first line in the next chunk
        tail = b""
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                if not tail:
                    return
                body, tail = tail + b"\n", b""  # last line without a newline
            else:
                chunk = tail + chunk
                cut = chunk.rfind(b"\n") + 1
                body, tail = chunk[:cut], chunk[cut:]
            if not body:
                continue
            arr = np.frombuffer(body, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10)
            seps_before = np.searchsorted(np.flatnonzero(arr == sep_byte), ends)
            counts = np.diff(seps_before, prepend=0)
            starts = np.concatenate(([0], ends[:-1] + 1))
            lengths = ends - starts
            has_cr = lengths > 0
            has_cr[has_cr] = arr[ends[has_cr] - 1] == 13
            blank = (lengths - has_cr) == 0
            bad = np.flatnonzero(~blank & (counts != n_fields - 1))
            if bad.size:
                i = int(bad[0])
                line = bytes(body[starts[i] : ends[i]])
                _raise_row(path, first_line + i, int(counts[i]) + 1, n_fields, sep, line)
            first_line += len(ends)


def _scan_lines(path, n_fields, sep):
    with open(path, "rb") as fh:
        fh.readline()
        for lineno, line in enumerate(fh, start=2):
            if not line.strip(b"\r\n"):
                continue
            found = line.count(sep) + 1
            if found != n_fields:
                _raise_row(path, lineno, found, n_fields, sep, line)


def _raise_row(path, lineno, found, n_fields, sep, line):
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    if len(text) > 120:
        text = text[:117] + "..."
    raise DataFormatError(
        f"{path}, line {lineno}: {found} fields, but the header has {n_fields} "
        f"(separator {_describe_sep(sep.decode())}): {text!r}. Fix or remove the line."
    )


def check_atomic_files(config, data_path) -> None:
    """Check the headers and rows of every atomic file RecBole will load; raise
    :class:`DataFormatError` naming file and line for the first problem."""
    sep = config["field_separator"] if "field_separator" in config else "\t"
    sep = "\t" if sep is None else str(sep)
    encoding = (config["encoding"] if "encoding" in config else None) or "utf-8"
    for path, source in atomic_files(config, data_path):
        load, unload = _load_and_unload(config, source)
        if load == set():
            continue  # RecBole does not load this file
        with open(path, "rb") as fh:
            raw = fh.readline()
        try:
            header = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataFormatError(f"{path}, line 1 (header): cannot be decoded as {encoding} ({exc}). "
                                  "Save the file as UTF-8 or set encoding.") from None
        fields = check_header(path, header, sep, load=load, unload=unload)
        check_rows(path, len(fields), sep.encode(encoding))


__all__ = ["FEATURE_TYPES", "atomic_files", "check_atomic_files", "check_header", "check_rows"]
