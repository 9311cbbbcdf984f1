"""The item-text layer: one text per item, built the same way for every LLM model.

Texts come from the dataset's item features (the ``.item`` atomic file) through a template
set in the dataset properties (``properties/dataset/<dataset>.yaml``) or any config:

``item_text_template`` (str)
    Python format string over item fields, e.g. ``"{movie_title}[[ ({release_year})]]"``.
    A ``[[ ... ]]`` section is dropped when every field inside it is empty (missing brand,
    unknown year ...), so templates never produce dangling punctuation.
``item_text_fields`` (list)
    Used only when there is no template: the non-empty values are joined with ``". "``.
``item_text_seq_join`` (str or {field: str})
    How the tokens of a ``token_seq`` field are joined back (default ``" "``: right for titles
    split into words; genres and categories read better with ``", "``).
``item_text_max_tokens`` (int)
    Token budget per text: cut with the model's tokenizer when one is passed, else by
    whitespace-separated words. ``None``/``0``: no limit.

RecBole loads only the item fields listed in ``load_col['item']``; the text fields must be
listed there. When a model needs text and the dataset has none, :class:`MissingItemTextError`
names the model, the dataset, the missing fields and the settings that fix it.

Values are the ones RecBole loaded: token fields map back through ``dataset.field2id_token``;
float fields are shown as loaded (after RecBole's normalisation if enabled, and with missing
values filled by the column mean; keep floats out of templates unless that is wanted).
"""

from __future__ import annotations

import logging
import math
import re
import string
from pathlib import Path

import numpy as np

from recbole_llm.errors import RecBoleLLMError

logger = logging.getLogger(__name__)

TEMPLATE_KEY = "item_text_template"
FIELDS_KEY = "item_text_fields"
SEQ_JOIN_KEY = "item_text_seq_join"
MAX_TOKENS_KEY = "item_text_max_tokens"

_SECTION = re.compile(r"\[\[(.*?)\]\]", re.S)
_WHITESPACE = re.compile(r"\s+")
_PAD = "[PAD]"


class MissingItemTextError(RecBoleLLMError, ValueError):
    """A model needs item texts that the dataset (as configured) does not provide."""


def template_fields(template: str) -> list[str]:
    """Field names a template uses, in order of first use (sections included)."""
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(template.replace("[[", "").replace("]]", "")):
        if name is not None:
            if not name or not re.fullmatch(r"[A-Za-z_][\w]*", name):
                raise ValueError(f"item_text_template {template!r}: '{{{name}}}' is not a field name")
            if name not in names:
                names.append(name)
    return names


def render(template: str, values: dict[str, str]) -> str:
    """Fill a template; drop ``[[...]]`` sections whose fields are all empty; tidy whitespace.

    Each piece of the template is formatted once, so braces inside values stay literal.
    """
    parts, position = [], 0
    for match in _SECTION.finditer(template):
        parts.append(template[position : match.start()].format_map(values))
        inner = match.group(1)
        fields = template_fields(inner)
        if not fields or any(values.get(f) for f in fields):
            parts.append(inner.format_map(values))
        position = match.end()
    parts.append(template[position:].format_map(values))
    return _WHITESPACE.sub(" ", "".join(parts)).strip()


def truncate(text: str, max_tokens: int | None, tokenizer=None) -> str:
    """Cut ``text`` to ``max_tokens`` tokens of ``tokenizer`` (a Hugging Face tokenizer), or to
    ``max_tokens`` whitespace-separated words without one. A fast tokenizer cuts the original
    string at the end of the last kept token (casing and spacing preserved); a slow one
    decodes the kept ids."""
    if not max_tokens or max_tokens <= 0 or not text:
        return text
    if tokenizer is not None:
        try:  # fast tokenizers: cut the original text where token max_tokens ends
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        except (NotImplementedError, TypeError, KeyError, ValueError):
            offsets = None
        if offsets is not None:
            return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]].rstrip()
        ids = tokenizer.encode(text, add_special_tokens=False)  # slow tokenizers: decode the ids kept
        if len(ids) <= max_tokens:
            return text
        return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip()
    words = text.split()
    return text if len(words) <= max_tokens else " ".join(words[:max_tokens])


def _format_number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _column(dataset, field: str) -> np.ndarray:
    feat = dataset.item_feat
    column = feat[field]
    if hasattr(column, "numpy"):  # torch tensor (Interaction, after dataset building)
        return column.numpy()
    return np.asarray(list(column.values), dtype=object)  # pandas, before building


def field_texts(dataset, field: str, seq_join: str = " ") -> list[str]:
    """The values of one item field as strings, indexed by RecBole's internal item id."""
    from recbole.utils import FeatureType

    ftype = dataset.field2type[field]
    column = _column(dataset, field)
    if ftype == FeatureType.TOKEN:
        vocab = dataset.field2id_token[field]
        return ["" if int(i) == 0 or vocab[int(i)] == _PAD else str(vocab[int(i)]) for i in column]
    if ftype == FeatureType.TOKEN_SEQ:
        vocab = dataset.field2id_token[field]
        out = []
        for row in column:
            tokens = [str(vocab[int(i)]) for i in np.atleast_1d(row) if int(i) != 0]
            out.append(seq_join.join(t for t in tokens if t != _PAD))
        return out
    if ftype == FeatureType.FLOAT:
        return [_format_number(v) for v in column.reshape(len(column), -1)[:, 0]]
    if ftype == FeatureType.FLOAT_SEQ:
        return [seq_join.join(_format_number(v) for v in np.atleast_1d(row)) for row in column]
    raise TypeError(f"item field {field!r} has unsupported type {ftype}")


def _item_file_fields(config, dataset_name: str) -> tuple[Path, list[str] | None]:
    path = Path(config["data_path"] or ".") / f"{dataset_name}.item"
    if not path.is_file():
        return path, None
    with open(path, encoding=config["encoding"] or "utf-8") as fh:
        header = fh.readline().rstrip("\n").split(config["field_separator"] or "\t")
    return path, [col.split(":", 1)[0] for col in header]


def _missing_text_error(config, dataset, model_name, fields, missing, template) -> MissingItemTextError:
    name = config["dataset"]
    iid = dataset.iid_field
    path, file_fields = _item_file_fields(config, name)
    model = model_name or config["model"] or "this model"
    if not fields:
        problem = (
            f"Model {model!r} needs item texts, but dataset {name!r} defines none: neither "
            f"'{TEMPLATE_KEY}' nor '{FIELDS_KEY}' is set."
        )
    else:
        problem = (
            f"Model {model!r} needs item texts, but dataset {name!r} lacks the item field(s) "
            f"{missing} used by " + (f"{TEMPLATE_KEY} {template!r}." if template else f"{FIELDS_KEY} {fields}.")
        )
    if file_fields is None:
        where = f"The dataset has no item file ({path}); item texts need one with text fields."
    else:
        where = f"Its item file {path} has the fields {file_fields}."
    loaded = list(dataset.item_feat.columns) if dataset.item_feat is not None else []
    example_fields = [f for f in (fields or []) if file_fields is None or f in file_fields]
    if not example_fields and file_fields:
        example_fields = [f for f in file_fields if f != iid][:3]
    load_col = config["load_col"] if isinstance(config["load_col"], dict) else {}
    inter_cols = load_col.get("inter") or [dataset.uid_field, iid]
    suggested = template or " ".join("{" + f + "}" for f in example_fields or ["title"])
    fix = (
        f"RecBole loads only the item fields listed in load_col (loaded now: {loaded or 'none'}). "
        f"Set, e.g. in a config file or properties/dataset/{name}.yaml:\n"
        f"  load_col:\n    inter: [{', '.join(inter_cols)}]\n"
        f"    item: [{', '.join([iid] + example_fields)}]\n"
        f"  {TEMPLATE_KEY}: \"{suggested}\""
    )
    return MissingItemTextError(f"{problem}\n{where}\n{fix}")


def _seq_join(config, field: str) -> str:
    setting = config[SEQ_JOIN_KEY]
    if isinstance(setting, dict):
        return setting.get(field, " ")
    return setting if isinstance(setting, str) else " "


def item_texts(config, dataset, model_name: str | None = None, tokenizer=None) -> list[str]:
    """One text per item, indexed by RecBole's internal item id; index 0 (padding) is ``""``.

    ``model_name`` is only used in error messages (default: ``config["model"]``); ``tokenizer``
    (Hugging Face style) makes ``item_text_max_tokens`` count that tokenizer's tokens.
    Items whose fields are all empty get ``""``.
    """
    template = config[TEMPLATE_KEY]
    if template:
        fields = template_fields(template)
    else:
        fields = list(config[FIELDS_KEY] or [])
    loaded = set(dataset.item_feat.columns) if dataset.item_feat is not None else set()
    missing = [f for f in fields if f not in loaded]
    if not fields or missing:
        raise _missing_text_error(config, dataset, model_name, fields, missing, template)

    columns = {f: field_texts(dataset, f, _seq_join(config, f)) for f in fields}
    max_tokens = config[MAX_TOKENS_KEY]
    texts = [""]
    empty = 0
    for item in range(1, dataset.item_num):
        values = {f: columns[f][item] for f in fields}
        if template:
            text = render(template, values)
        else:
            text = ". ".join(v for v in values.values() if v)
        text = truncate(text, max_tokens, tokenizer)
        empty += not text
        texts.append(text)
    if empty:
        logger.warning("%d of %d items of %s have an empty text (no values in %s).", empty, dataset.item_num - 1, config["dataset"], fields)
    return texts


def load_reviews(config, dataset, suffix: str = "review"):
    """The optional user-item text file ``<dataset>.<suffix>`` (Amazon/Goodreads reviews) as a
    pandas DataFrame, with ``user_id``/``item_id`` mapped to RecBole's internal ids.

    Rows whose user or item is not in the (filtered) dataset are dropped. Text columns are kept
    as strings (``""`` when empty), float columns as floats.
    """
    import pandas as pd

    name = config["dataset"]
    path = Path(config["data_path"] or ".") / f"{name}.{suffix}"
    if not path.is_file():
        raise FileNotFoundError(
            f"Dataset {name!r} has no {suffix} file ({path}). The Amazon and Goodreads converters write it "
            f"(python -m atomic_data convert ...; for Goodreads pass the reviews file too)."
        )
    sep = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    with open(path, encoding=encoding) as fh:
        header = [col.split(":", 1) for col in fh.readline().rstrip("\n").split(sep)]
    # Same reader settings as RecBole's (python engine, default quoting) so quoted texts match.
    frame = pd.read_csv(path, sep=sep, dtype=str, engine="python", encoding=encoding, keep_default_na=False)
    frame.columns = [name for name, _ in header]
    for name, ftype in header:
        if ftype == "float":
            frame[name] = pd.to_numeric(frame[name].replace("", np.nan), errors="coerce")
    uid, iid = dataset.uid_field, dataset.iid_field
    users = frame[uid].map(dataset.field2token_id[uid])
    items = frame[iid].map(dataset.field2token_id[iid])
    keep = users.notna() & items.notna()
    frame = frame[keep].copy()
    frame[uid] = users[keep].astype(np.int64)
    frame[iid] = items[keep].astype(np.int64)
    return frame.reset_index(drop=True)
