"""MMRec's preprocessed multimodal datasets (enoche/MMRec) to RecBole atomic files + features.

MMRec (FREEDOM, BM3, LATTICE ...; HeLLM's pre-training follows it) ships each dataset as a
folder (Google Drive, linked from MMRec's ``data/README.md``; no stable direct URL, so this
format is converted from a local folder only):

* ``<ds>.inter``: tab-separated with a plain header ``userID itemID rating timestamp x_label``;
  ids are already re-indexed to ``0..n-1``; ``x_label`` is the split (0 train, 1 valid, 2 test);
* ``text_feat.npy`` / ``image_feat.npy``: one row per ``itemID`` (row ``i`` = item ``i``);
* optionally ``i_id_mapping.csv`` (``asin itemID``) and ``u_id_mapping.csv`` (``user_id userID``).

Output in ``<out>/<name>/``:

* ``<name>.inter`` with ``user_id:token item_id:token`` (+ ``rating:float``,
  ``timestamp:float`` when present). The item token is MMRec's ``itemID`` as text, so feature
  row ``int(token)`` belongs to that item whatever ids RecBole remaps it to
  (``recbole_llm.data.features.item_image_features`` does that mapping).
* ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``: MMRec's split, for RecBole's
  ``benchmark_filename: [train, valid, test]``. ``x_label`` itself is not a feature in
  ``<name>.inter`` (a context-aware model would otherwise see the split).
* ``<name>.item`` (``item_id:token asin:token``) / ``<name>.user`` (``user_id:token
  reviewer_id:token``) when the mapping files exist.
* the ``*.npy`` feature files, copied unchanged, after checking that they have one row per item.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from atomic_data import AtomicWriter, DatasetSpec

SPLITS = {"0": "train", "1": "valid", "2": "test"}
FEATURE_FILES = ("text_feat.npy", "image_feat.npy")
_COLUMNS = {"userID": "user_id:token", "itemID": "item_id:token", "rating": "rating:float", "timestamp": "timestamp:float"}


def find_inter_file(folder: Path) -> Path:
    """The MMRec interaction file of ``folder``: ``<folder name>.inter`` or the only ``*.inter``."""
    folder = Path(folder)
    preferred = folder / f"{folder.name}.inter"
    if preferred.is_file():
        return preferred
    candidates = sorted(p for p in folder.glob("*.inter") if p.name.count(".") == 1)
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"{folder}: expected one MMRec interaction file (<name>.inter with columns userID itemID "
            f"... x_label), found {[p.name for p in candidates] or 'none'}"
        )
    return candidates[0]


def _read_mapping(path: Path, key_col: str, id_col: str) -> dict[str, str]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames is None or key_col not in reader.fieldnames or id_col not in reader.fieldnames:
            raise ValueError(f"{path}: expected tab-separated columns {key_col!r} and {id_col!r}, got {reader.fieldnames}")
        return {row[id_col]: row[key_col] for row in reader}


def check_feature_rows(path: Path, n_items: int) -> tuple[int, ...]:
    """Shape of a feature matrix, checked to have a row for every item id ``0..n_items-1``."""
    import numpy as np

    array = np.load(path, mmap_mode="r")
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-d [items, dim] array, got shape {array.shape}")
    if array.shape[0] < n_items:
        raise ValueError(
            f"{path} has {array.shape[0]} rows but the interactions use item ids up to {n_items - 1}: "
            f"row i must be the feature of MMRec itemID i."
        )
    return tuple(array.shape)


def convert_mmrec(source: Path, out_dir: Path, name: str) -> dict:
    """Convert an MMRec dataset folder into ``out_dir/<name>.*`` (+ copied ``.npy`` files)."""
    source, out_dir = Path(source), Path(out_dir)
    inter_path = find_inter_file(source)
    with open(inter_path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        header = reader.fieldnames or []
        for required in ("userID", "itemID", "x_label"):
            if required not in header:
                raise ValueError(f"{inter_path}: MMRec column {required!r} missing (header: {header})")
        columns = [c for c in _COLUMNS if c in header]
        fields = [_COLUMNS[c] for c in columns]
        writers = {"all": AtomicWriter(out_dir / f"{name}.inter", fields)}
        for split in SPLITS.values():
            writers[split] = AtomicWriter(out_dir / f"{name}.{split}.inter", fields)
        max_item = -1
        try:
            for lineno, row in enumerate(reader, 2):
                label = row["x_label"].strip()
                if label not in SPLITS:
                    raise ValueError(f"{inter_path}:{lineno}: x_label {label!r} is not 0, 1 or 2")
                values = [row[c] for c in columns]
                writers["all"].write(values)
                writers[SPLITS[label]].write(values)
                max_item = max(max_item, int(row["itemID"]))
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
    n_items = max_item + 1

    report = {}
    shapes = {f: check_feature_rows(source / f, n_items) for f in FEATURE_FILES if (source / f).is_file()}
    for filename in shapes:
        target = out_dir / filename
        try:
            os.link(source / filename, target)
        except OSError:
            shutil.copyfile(source / filename, target)
        report[filename] = shapes[filename][0]
    for mapping, key_col, id_col, suffix, fields in (
        ("i_id_mapping.csv", "asin", "itemID", "item", ["item_id:token", "asin:token"]),
        ("u_id_mapping.csv", "user_id", "userID", "user", ["user_id:token", "reviewer_id:token"]),
    ):
        if (source / mapping).is_file():
            ids = _read_mapping(source / mapping, key_col, id_col)
            with AtomicWriter(out_dir / f"{name}.{suffix}", fields) as writer:
                for internal in sorted(ids, key=int):
                    writer.write([internal, ids[internal]])
            report[writer.path.name] = writer.rows
    for key in ("train", "valid", "test", "all"):  # <name>.inter last
        writers[key].close()
        report[writers[key].path.name] = writers[key].rows
    return report


def _convert(raw: dict, out_dir: Path, name: str) -> dict:
    return convert_mmrec(raw["source"], out_dir, name)


SPECS = [
    DatasetSpec(
        name="mmrec",
        description="MMRec preprocessed multimodal folder (<ds>.inter with x_label, text_feat.npy, image_feat.npy); local conversion only",
        files=(),
        convert=_convert,
        homepage="https://github.com/enoche/MMRec/tree/master/data",
        downloadable=False,
        notes="Give --name: the folder's datasets (baby, sports, clothing ...) are named by the user.",
    )
]
