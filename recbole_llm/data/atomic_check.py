"""Check RecBole atomic files (``<ds>.inter``, ``.user``, ``.item``, ``.kg``, ``.link``, additional
suffixes) before RecBole loads them, so that bad data is one line naming file, line and column and
what to do, instead of a traceback from deep inside RecBole or pandas, or a silently wrong run.

Checked, for every file RecBole would load (a source missing from a ``load_col`` mapping is not
loaded and not checked), as RecBole's reader (pandas' python engine, the csv module) will read it:

* the header: every field is ``name:type`` with a type RecBole knows, fields separated by
  ``field_separator``; the user and item id columns are present and loaded;
* the rows: the header's field count, valid ``encoding``, quotes that close on their line, fields
  within the csv module's 131,072-character limit; at least one row;
* float columns that are loaded: numbers; text and infinities are refused; a missing value is
  refused in ``.inter`` and mean-filled (RecBole's rule, stated) elsewhere;
* ``.inter``: rows repeating a user-item pair are removed by RecBole's ``rm_dup_inter`` (set to
  ``first`` when the user has not set it, stated), so no pair is in two splits; a per-user split
  needs some user with two interactions.

Rules applied instead of an error come back as notes, which ``run_experiment`` logs. Rows are
scanned in binary with numpy and the id and float columns read once with pandas' C reader:
``benchmarks/results/atomic_check_speed.md`` has the time on 1M rows (a fraction of RecBole's read).
"""

from __future__ import annotations

import csv
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


def check_rows(path, n_fields: int, sep: bytes, encoding: str = "utf-8") -> list[int]:
    """Check every line after the header as RecBole's reader (pandas' python engine, which uses
    the csv module) will see it; raise :class:`DataFormatError` naming file, line and column for

    * a line whose field count differs from the header's;
    * bytes that are not valid ``encoding``;
    * a quote that opens a field and does not close on the same line (the reader would swallow
      the following lines into one field, or fail at the end of the file);
    * a field longer than the csv module's limit (131,072 characters; RecBole's reader stops there).

    Returns the numbers of blank lines (the readers skip them), so rows can be mapped to lines.
    Read in binary, 16 MiB at a time; newlines, separators and quotes are located with numpy, so
    the Python-level work is per chunk (and per line holding a quote), not per line."""
    import numpy as np

    path = Path(path)
    if len(sep) != 1:
        return _scan_lines(path, n_fields, sep, encoding)
    sep_byte = sep[0]
    blank_lines: list[int] = []
    limit = csv.field_size_limit()
    with open(path, "rb") as fh:
        first_line = 1 + (1 if fh.readline() else 0)  # number of the first line in the next chunk
        tail = b""
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                if not tail:
                    return blank_lines
                body, tail = tail + b"\n", b""  # last line without a newline
            else:
                chunk = tail + chunk
                cut = chunk.rfind(b"\n") + 1
                body, tail = chunk[:cut], chunk[cut:]
            if not body:
                continue
            _check_decodes(path, body, first_line, sep, encoding)
            arr = np.frombuffer(body, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10)
            is_sep = arr == sep_byte
            seps_before = np.searchsorted(np.flatnonzero(is_sep), ends)
            counts = np.diff(seps_before, prepend=0)
            starts = np.concatenate(([0], ends[:-1] + 1))
            lengths = ends - starts
            has_cr = lengths > 0
            has_cr[has_cr] = arr[ends[has_cr] - 1] == 13
            blank = (lengths - has_cr) == 0
            quoted = np.zeros(len(ends), dtype=bool)
            quotes = np.flatnonzero(arr == 34)
            if quotes.size:
                quoted[np.unique(np.searchsorted(ends, quotes))] = True
            bad = np.flatnonzero(~blank & ~quoted & (counts != n_fields - 1))
            for i in np.flatnonzero(quoted):  # rare: parsed like the reader parses them
                line = bytes(body[starts[i] : ends[i]])
                found = _check_quoted_line(path, first_line + int(i), line, sep, encoding)
                if found != n_fields and (not bad.size or i < bad[0]):
                    _raise_row(path, first_line + int(i), found, n_fields, sep, line)
            if bad.size:
                i = int(bad[0])
                line = bytes(body[starts[i] : ends[i]])
                _raise_row(path, first_line + i, int(counts[i]) + 1, n_fields, sep, line)
            # Field lengths in bytes (an upper bound of characters): distances between delimiters.
            delims = np.flatnonzero(is_sep | (arr == 10))
            widths = np.diff(delims, prepend=-1) - 1
            for j in np.flatnonzero(widths > limit):
                start, stop = int(delims[j] - widths[j]), int(delims[j])
                text = bytes(body[start:stop]).decode(encoding, "replace").rstrip("\r")
                if len(text) > limit:
                    i = int(np.searchsorted(ends, start))
                    column = int(np.count_nonzero(is_sep[starts[i] : start])) + 1
                    raise DataFormatError(
                        f"{path}, line {first_line + i}, column {column}: a field of {len(text):,} characters; "
                        f"RecBole's reader (the csv module) takes at most {limit:,}. Shorten the value or drop the "
                        "column from the file."
                    )
            blank_lines += (first_line + np.flatnonzero(blank)).tolist()
            first_line += len(ends)


def _check_decodes(path, body: bytes, first_line: int, sep: bytes, encoding: str) -> None:
    try:
        body.decode(encoding)
    except UnicodeDecodeError as exc:
        line_start = body.rfind(b"\n", 0, exc.start) + 1
        lineno = first_line + body.count(b"\n", 0, exc.start)
        column = body.count(sep, line_start, exc.start) + 1
        bad = body[exc.start : exc.end].hex(" ")
        raise DataFormatError(
            f"{path}, line {lineno}, column {column}: byte(s) {bad} are not valid {encoding}. Save the file as "
            f"{encoding}, or set the file's real encoding, e.g. --encoding=latin-1."
        ) from None
    except LookupError:
        raise DataFormatError(f"encoding={encoding!r} is not a text encoding Python knows (reading {path}). "
                              "Use e.g. utf-8 or latin-1.") from None


def _check_quoted_line(path, lineno: int, line: bytes, sep: bytes, encoding: str) -> int:
    """Parse one line holding a double quote as RecBole's reader does (csv, strict quoting); return
    its field count, or raise naming the column of the quote that does not close on the line."""
    text = line.decode(encoding, "replace").rstrip("\r")
    delimiter = sep.decode(encoding)
    try:
        rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        column = 1
        for k, field in enumerate(text.split(delimiter), start=1):
            if field.startswith('"') and not (len(field) > 1 and field.endswith('"')):
                column = k
                break
        else:
            column = next((k for k, f in enumerate(text.split(delimiter), 1) if '"' in f), 1)
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise DataFormatError(
            f"{path}, line {lineno}, column {column}: a double quote opens a quoted field that does not close "
            f"on this line ({exc}): {shown!r}. RecBole's reader would join the following lines into it. Remove "
            'the quote, or quote the whole field ("..." with inner quotes doubled).'
        ) from None
    return len(rows[0]) if rows else 0


def _scan_lines(path, n_fields, sep, encoding="utf-8"):
    blank_lines = []
    with open(path, "rb") as fh:
        fh.readline()
        for lineno, line in enumerate(fh, start=2):
            _check_decodes(path, line, lineno, sep, encoding)
            if not line.strip(b"\r\n"):
                blank_lines.append(lineno)
                continue
            found = _check_quoted_line(path, lineno, line.rstrip(b"\n"), sep, encoding) if b'"' in line \
                else line.count(sep) + 1
            if found != n_fields:
                _raise_row(path, lineno, found, n_fields, sep, line)
    return blank_lines


def _raise_row(path, lineno, found, n_fields, sep, line):
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    if len(text) > 120:
        text = text[:117] + "..."
    raise DataFormatError(
        f"{path}, line {lineno}: {found} fields, but the header has {n_fields} "
        f"(separator {_describe_sep(sep.decode())}): {text!r}. Fix or remove the line."
    )


_BOM = b"\xef\xbb\xbf"
_UTF8 = {"utf-8", "utf8", "utf_8"}
# What pandas (RecBole's reader) takes as a missing value in a float column, besides a blank.
_MISSING = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
            "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def _line_numbers(rows, blank_lines):
    """Line numbers of data rows ``rows`` (0-based, in file order) given the blank lines skipped."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.int64)
    lines = rows + 2
    for blank in blank_lines:  # few or none
        lines = lines + (lines >= blank)
    return lines


def _read_columns(path, sep, encoding, fields, ids):
    """The id columns ``ids`` (as categories) and the float columns of ``fields`` of ``path``, read
    once with pandas' C reader (the rows were checked above, so field counts, quotes and encoding
    agree with RecBole's reader). Float columns come as numbers when every value parses, else as
    text for :func:`check_values` to locate the bad ones; missing or infinite numbers are also
    handed over as text, so that the message can quote them."""
    import numpy as np
    import pandas as pd

    floats = [f"{n}:{t}" for n, t in fields if t == "float"]
    seqs = [f"{n}:{t}" for n, t in fields if t == "float_seq"]
    id_cols = [f"{n}:{t}" for n, t in fields if n in ids and t in ("token", "float")]
    wanted = id_cols + [c for c in floats + seqs if c not in id_cols]
    if not wanted:
        return None, True
    dtype = {c: "category" for c in id_cols}
    dtype.update({c: np.float64 for c in floats if c not in id_cols})
    dtype.update({c: str for c in seqs})
    options = dict(sep=sep, usecols=wanted, encoding=encoding, engine="c", quotechar='"', skip_blank_lines=True)
    try:
        frame = pd.read_csv(path, dtype=dtype, **options)
        clean = all(np.isfinite(frame[c].to_numpy()).all() for c in floats if c not in id_cols) and not seqs
    except ValueError:  # text in a float column
        clean = False
    if clean:
        return frame, True
    as_text = pd.read_csv(path, dtype=str, na_filter=False, keep_default_na=False, **options)
    for c in id_cols:
        as_text[c] = as_text[c].astype("category")
    return as_text, False


def check_values(path, frame, fields, blank_lines, source, seq_separator=" "):
    """Float columns hold numbers. Text (``five``, a date) and ``inf`` are refused naming line and
    column. A missing value (blank, ``nan``) is refused in ``.inter`` (ratings, timestamps, labels
    drive labels and split order; RecBole would replace it by the column mean without a word) and,
    elsewhere, left to RecBole's documented rule (the column mean), which is returned as a note."""
    import numpy as np
    import pandas as pd

    notes = []
    names = [f"{n}:{t}" for n, t in fields]
    for k, (name, ftype) in enumerate(fields, start=1):
        if ftype not in ("float", "float_seq") or names[k - 1] not in frame:
            continue
        raw = frame[names[k - 1]]
        if ftype == "float_seq":
            parts = raw.str.split(seq_separator).explode()
            parts = parts[parts.str.strip() != ""]  # RecBole drops empty pieces
            values = pd.to_numeric(parts.str.strip(), errors="coerce")
            text = parts.str.strip()
            missing = text.isin(_MISSING - {""})
        else:
            text = raw.str.strip()
            values = pd.to_numeric(text, errors="coerce")
            missing = text.isin(_MISSING)
        where = lambda rows: _line_numbers(rows, blank_lines)  # noqa: E731
        bad = np.flatnonzero(values.isna().to_numpy() & ~missing.to_numpy())
        if bad.size:
            row = int(np.asarray(text.index)[bad[0]])
            raise DataFormatError(
                f"{path}, line {int(where([row])[0])}, column {k} ({name}:{ftype}): {text.iloc[bad[0]]!r} is not a "
                f"number ({bad.size:,} such value(s) in the column). Fix the value, or declare the column "
                f"{name}:token if it holds labels."
            )
        inf = np.flatnonzero(np.isinf(values.to_numpy(dtype=float, na_value=np.nan)))
        if inf.size:
            row = int(np.asarray(text.index)[inf[0]])
            raise DataFormatError(
                f"{path}, line {int(where([row])[0])}, column {k} ({name}:{ftype}): {text.iloc[inf[0]]!r} is infinite "
                f"({inf.size:,} such value(s)). Give a finite number or remove the row."
            )
        gaps = np.flatnonzero(missing.to_numpy())
        if not gaps.size:
            continue
        row = int(np.asarray(text.index)[gaps[0]])
        first = int(where([row])[0])
        if gaps.size == len(raw) and ftype == "float":
            raise DataFormatError(
                f"{path}, column {k} ({name}:{ftype}): every value is missing (blank or nan, first at line {first}). "
                f"Fill the column, or leave it out: load_col: {{{source}: [...without {name}]}}."
            )
        if source == "inter":
            raise DataFormatError(
                f"{path}, line {first}, column {k} ({name}:{ftype}): the value is missing ({text.iloc[gaps[0]]!r}; "
                f"{gaps.size:,} missing in the column). Interactions need every loaded value: fill it, remove "
                f"the row, or leave the column out of load_col.inter."
            )
        notes.append(
            f"{path}: {gaps.size:,} missing value(s) in column {name} (first at line {first}) are filled with "
            "the column mean (RecBole's rule for float features)."
        )
    return notes


def _id_fields(config, source):
    uid = config["USER_ID_FIELD"] if "USER_ID_FIELD" in config else None
    iid = config["ITEM_ID_FIELD"] if "ITEM_ID_FIELD" in config else None
    return {"inter": [("USER_ID_FIELD", uid), ("ITEM_ID_FIELD", iid)], "user": [("USER_ID_FIELD", uid)],
            "item": [("ITEM_ID_FIELD", iid)]}.get(source, [])


def _check_id_columns(id_fields, path, source, fields, loaded):
    """``id_fields``: ``{config key: field}`` the file must hold and load (see :func:`_id_fields`)."""
    names = [n for n, _ in fields]
    for key, field in id_fields.items():
        if field is None:
            continue
        if field not in names:
            raise DataFormatError(
                f"{path}, line 1 (header): no column {field!r} ({key}); the header has {', '.join(names)}. "
                f"Add the column, or set {key} to the column that holds the ids (--{key}=...)."
            )
        if field not in loaded:
            raise DataFormatError(
                f"{path}: column {field!r} ({key}) is not loaded: load_col.{source} / unload_col leave it out. "
                f"Add {field} to load_col.{source}."
            )


def _pair_keys(config, frame, fields):
    """One int64 per row for its (user, item) pair, and the user codes; rows whose user or item id
    is missing (RecBole drops them) are left out."""
    import numpy as np

    types = dict(fields)
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    users = frame[f"{uid}:{types[uid]}"].cat.codes.to_numpy().astype(np.int64)
    items = frame[f"{iid}:{types[iid]}"].cat.codes.to_numpy().astype(np.int64)
    valid = (users >= 0) & (items >= 0)
    keys = np.where(valid, users * (int(items.max(initial=0)) + 1) + items, -1)
    return keys, users, valid


def _duplicates(config, path, frame, fields, blank_lines, user_keys, notes):
    """Apply or state the rule for rows repeating a user-item pair (RecBole's ``rm_dup_inter``)."""
    import numpy as np
    import pandas as pd

    keys, _, valid = _pair_keys(config, frame, fields)
    dup = pd.Series(keys).duplicated(keep="first").to_numpy() & valid
    n_dup = int(dup.sum())
    if not n_dup:
        return
    first = int(_line_numbers([int(np.flatnonzero(dup)[0])], blank_lines)[0])
    keep = config["rm_dup_inter"] if "rm_dup_inter" in config else None
    time_field = config["TIME_FIELD"] if "TIME_FIELD" in config else None
    types = dict(fields)
    load, unload = _load_and_unload(config, "inter")
    loaded_time = time_field in types and (load is None or time_field in load) and not (unload and time_field in unload)
    order = f"by {time_field}" if loaded_time else "in file order"
    if keep is None and "rm_dup_inter" in user_keys:
        notes.append(
            f"{path}: {n_dup:,} row(s) repeat an earlier user-item pair (first at line {first}); kept, as "
            "rm_dup_inter is set to None: the same pair can be in training and in validation/test."
        )
        return
    if keep is None:
        config["rm_dup_inter"] = keep = "first"
        rule = "rm_dup_inter is not set, so recbole-llm sets rm_dup_inter=first"
    else:
        rule = f"rm_dup_inter={keep}"
    which = "earliest" if keep == "first" else "latest"
    notes.append(
        f"{path}: {n_dup:,} row(s) repeat an earlier user-item pair (first at line {first}); removed before "
        f"the split, keeping the {which} of each pair {order} ({rule}; set rm_dup_inter: last to keep the latest)."
    )


def _check_split_possible(config, path, frame, fields):
    """Splitting each user's interactions (group_by user) needs a user with two or more of them."""
    import numpy as np

    eval_args = config["eval_args"] if "eval_args" in config else None
    if not isinstance(eval_args, dict) or eval_args.get("group_by", "user") not in ("user", None):
        return
    keys, users, valid = _pair_keys(config, frame, fields)
    if config["rm_dup_inter"] is not None:  # one row per pair remains
        _, first = np.unique(keys[valid], return_index=True)
        users = users[valid][first]
    else:
        users = users[valid]
    if users.size and int(np.bincount(users).max()) <= 1:
        split = eval_args.get("split")
        raise DataFormatError(
            f"{path}: every user has a single interaction, so splitting each user's interactions "
            f"(eval_args.group_by 'user', split {split}) leaves validation and test empty. Use data with several "
            "interactions per user, or split over all interactions: eval_args: {group_by: none, split: {RS: [0.8, 0.1, 0.1]}}."
        )


def _has_rows(path) -> bool:
    """Whether ``path`` has a non-blank line after its header."""
    with open(path, "rb") as fh:
        fh.readline()
        return any(line.strip(b"\r\n") for line in fh)


_CACHE: dict = {}  # the last few files checked (a suite plans many runs on one dataset)
_CACHE_SIZE = 4


def _check_file(path, source, sep, encoding, seq_sep, load, unload, id_fields):
    """Header, rows and values of one file: ``(fields, blank_lines, frame, notes)``. Kept for the
    same unchanged file and reading settings, so building many configs reads a file once."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size, sep, encoding, seq_sep, source,
           None if load is None else frozenset(load), frozenset(unload or ()), id_fields)
    if key in _CACHE:
        return _CACHE[key]
    with open(path, "rb") as fh:
        raw = fh.readline()
    try:
        header = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise DataFormatError(f"{path}, line 1 (header): cannot be decoded as {encoding} ({exc}). "
                              "Save the file as UTF-8 or set encoding.") from None
    header = header.lstrip("\ufeff")
    fields = check_header(path, header, sep, load=load, unload=unload)
    blank_lines = check_rows(path, len(fields), sep.encode("utf-8" if encoding == "utf-8-sig" else encoding), encoding)
    loaded = [(n, t) for n, t in fields if (load is None or n in load) and not (unload and n in unload)]
    _check_id_columns(dict(id_fields), path, source, fields, {n for n, _ in loaded})
    if not _has_rows(path):
        raise DataFormatError(f"{path} has a header but no rows. Add the {source} rows, or remove the file.")
    frame, clean = _read_columns(path, sep, encoding, loaded, {field for _, field in id_fields if field})
    notes = [] if clean else check_values(path, frame, fields, blank_lines, source, seq_sep)
    while len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = result = (fields, blank_lines, frame, notes)
    return result


def check_atomic_files(config, data_path, user_keys=()) -> list[str]:
    """Check every atomic file RecBole will load, as RecBole's reader will read it; raise
    :class:`DataFormatError` naming file, line and column for the first problem.

    Some inputs are handled by an explicit rule instead, which may set ``config`` keys and is
    described in the returned notes (to be logged): a UTF-8 byte-order mark (read as
    ``utf-8-sig``), rows repeating a user-item pair (``rm_dup_inter``, see :func:`_duplicates`),
    missing float features outside ``.inter`` (the column mean). ``user_keys`` are the settings
    the user gave (an explicit ``rm_dup_inter: ~`` keeps duplicates)."""
    sep = config["field_separator"] if "field_separator" in config else "\t"
    sep = "\t" if sep is None else str(sep)
    encoding = (config["encoding"] if "encoding" in config else None) or "utf-8"
    seq_sep = (config["seq_separator"] if "seq_separator" in config else None) or " "
    notes = []
    files = [(path, source) for path, source in atomic_files(config, data_path)
             if _load_and_unload(config, source)[0] != set()]  # load == set(): RecBole does not load it
    if encoding.lower() in _UTF8:
        with_bom = []
        for path, _ in files:
            with open(path, "rb") as fh:
                if fh.read(3) == _BOM:
                    with_bom.append(path)
        if with_bom:
            encoding = config["encoding"] = "utf-8-sig"
            notes.append(f"{', '.join(map(str, with_bom))}: the file starts with a UTF-8 byte-order mark; "
                         "all atomic files are read as utf-8-sig (the mark is skipped).")
    inter_frames = []
    for path, source in files:
        load, unload = _load_and_unload(config, source)
        id_fields = tuple(_id_fields(config, source))
        fields, blank_lines, frame, file_notes = _check_file(path, source, sep, encoding, seq_sep, load, unload,
                                                             id_fields)
        notes += file_notes
        if source == "inter":
            inter_frames.append((path, frame, fields, blank_lines))
    benchmark = config["benchmark_filename"] if "benchmark_filename" in config else None
    if inter_frames and not benchmark and all(k for _, k in _id_fields(config, "inter")):
        path, frame, fields, blank_lines = inter_frames[0]
        _duplicates(config, path, frame, fields, blank_lines, set(user_keys), notes)
        _check_split_possible(config, path, frame, fields)
    return notes


__all__ = ["FEATURE_TYPES", "atomic_files", "check_atomic_files", "check_header", "check_rows", "check_values"]
