"""Amazon product reviews 2014 (McAuley et al.): 5-core reviews + item metadata to atomic files.

Raw files (per category, from http://jmcauley.ucsd.edu/data/amazon/links.html):

* ``reviews_<Category>_5.json.gz``: the 5-core review subset, one JSON object per line
  (``reviewerID, asin, reviewerName, helpful [up, total], reviewText, overall, summary,
  unixReviewTime, reviewTime``);
* ``meta_<Category>.json.gz``: item metadata, one object per line written with Python's
  ``repr`` (not JSON: read with :func:`ast.literal_eval` via :func:`atomic_data.iter_records`):
  ``asin, title, price, imUrl, related, salesRank {category: rank}, brand, categories
  [[path], ...], description``.

Output (field names follow RecBole's Amazon datasets where they exist, UTF-8):

* ``<name>.inter``   ``user_id:token item_id:token rating:float timestamp:float`` (review order)
* ``<name>.item``    ``item_id:token title:token brand:token categories:token_seq
  description:token price:float sales_type:token sales_rank:float image_url:token`` for every
  item of the 5-core (items missing from the metadata get a row with empty fields; counted
  in the log). ``categories`` joins the de-duplicated category paths with ``|`` (names contain
  spaces, e.g. ``Skin Care``): the dataset properties set ``seq_separator: "|"``.
* ``<name>.review``  (optional, ``write_reviews``) ``user_id:token item_id:token
  timestamp:float summary:token review_text:token helpful_votes:float total_votes:float
  reviewer_name:token``: the user-item texts the graph-attentive GPT-2 turns into prompts.
  RecBole ignores it unless asked (``additional_feat_suffix``); ``recbole_llm.data.text``
  reads it directly.

Paper statistics check: HeLLM's Beauty/Toys/Sports user and item counts (22,363/12,101;
19,412/11,924; 35,598/18,357) are exactly the 5-core files', and its interaction counts are the
5-core totals minus one held-out interaction per user.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from atomic_data import AtomicWriter, DatasetSpec, iter_records, open_text, parse_record
from atomic_data.download import RemoteFile

logger = logging.getLogger(__name__)

BASE_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
HOMEPAGE = "http://jmcauley.ucsd.edu/data/amazon/links.html"
SEQ_SEPARATOR = "|"

INTER_FIELDS = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
ITEM_FIELDS = [
    "item_id:token",
    "title:token",
    "brand:token",
    "categories:token_seq",
    "description:token",
    "price:float",
    "sales_type:token",
    "sales_rank:float",
    "image_url:token",
]
REVIEW_FIELDS = [
    "user_id:token",
    "item_id:token",
    "timestamp:float",
    "summary:token",
    "review_text:token",
    "helpful_votes:float",
    "total_votes:float",
    "reviewer_name:token",
]

#: dataset name -> category as spelled in the official file names.
CATEGORIES = {
    "amazon-beauty": "Beauty",
    "amazon-toys": "Toys_and_Games",
    "amazon-sports": "Sports_and_Outdoors",
    "amazon-grocery": "Grocery_and_Gourmet_Food",
}

_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def remote_files(category: str) -> tuple[RemoteFile, RemoteFile]:
    """The two official files of one category. No checksums are published for them, so they
    are recorded as unverified (``checksum=None``): only completeness is checked."""
    return (
        RemoteFile(url=f"{BASE_URL}/reviews_{category}_5.json.gz", filename=f"reviews_{category}_5.json.gz", homepage=HOMEPAGE),
        RemoteFile(url=f"{BASE_URL}/meta_{category}.json.gz", filename=f"meta_{category}.json.gz", homepage=HOMEPAGE),
    )


def flatten_categories(paths) -> list[str]:
    """``[["Beauty", "Skin Care"], ["Beauty", "Makeup"]]`` -> ``["Beauty", "Skin Care", "Makeup"]``."""
    seen, result = set(), []
    for path in paths or []:
        for category in [path] if isinstance(path, str) else path:
            category = str(category).strip()
            if category and category not in seen:
                seen.add(category)
                result.append(category)
    return result


def _sales_rank(record) -> tuple[str | None, float | None]:
    ranks = record.get("salesRank") or {}
    if not isinstance(ranks, dict) or not ranks:
        return None, None
    kind, rank = next(iter(ranks.items()))
    return kind, rank


def _helpful(record) -> tuple[int | None, int | None]:
    helpful = record.get("helpful")
    if isinstance(helpful, (list, tuple)) and len(helpful) == 2:
        return helpful[0], helpful[1]
    return None, None


def _read_metadata(meta: Path, wanted) -> dict[str, dict]:
    """Metadata records of the ``wanted`` asins. The file covers every product of the category
    (millions of lines for some), so a regex on the raw line skips other products before the
    costly literal evaluation."""
    found: dict[str, dict] = {}
    with open_text(meta) as fh:
        for lineno, line in enumerate(fh, 1):
            match = _ASIN.search(line)
            if match is None or match.group(1) not in wanted:
                continue
            record = parse_record(line, f"{meta}:{lineno}")
            if record.get("asin") in wanted:
                found[record["asin"]] = record
    return found


def convert_amazon2014(reviews: Path, meta: Path | None, out_dir: Path, name: str, write_reviews: bool = True) -> dict:
    """Convert one category's 5-core reviews (+ metadata) into ``out_dir/<name>.*``.

    Returns ``{file name: rows written}``. ``meta=None`` writes item rows with ids only.
    """
    out_dir = Path(out_dir)
    items_in_core: dict[str, None] = {}  # insertion-ordered set of asins
    inter = AtomicWriter(out_dir / f"{name}.inter", INTER_FIELDS)
    writers = [inter]
    try:
        review_writer = None
        if write_reviews:
            review_writer = AtomicWriter(out_dir / f"{name}.review", REVIEW_FIELDS)
            writers.append(review_writer)
        for record in iter_records(reviews):
            user, item = record.get("reviewerID"), record.get("asin")
            if not user or not item:
                continue
            items_in_core.setdefault(item, None)
            timestamp = record.get("unixReviewTime")
            inter.write([user, item, record.get("overall"), timestamp])
            if review_writer is not None:
                up, total = _helpful(record)
                review_writer.write(
                    [user, item, timestamp, record.get("summary"), record.get("reviewText"), up, total, record.get("reviewerName")]
                )

        found = _read_metadata(meta, items_in_core) if meta is not None else {}
        missing = len(items_in_core) - len(found)
        if missing:
            logger.warning("%s: %d of %d 5-core items have no metadata; their item rows are empty.", name, missing, len(items_in_core))
        items = AtomicWriter(out_dir / f"{name}.item", ITEM_FIELDS, seq_separator=SEQ_SEPARATOR)
        writers.append(items)
        for asin in items_in_core:
            record = found.get(asin, {})
            sales_type, sales_rank = _sales_rank(record)
            items.write(
                [
                    asin,
                    record.get("title"),
                    record.get("brand"),
                    flatten_categories(record.get("categories")),
                    record.get("description"),
                    record.get("price"),
                    sales_type,
                    sales_rank,
                    record.get("imUrl"),
                ]
            )
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for writer in reversed(writers):  # .inter last: its presence marks a finished conversion
        writer.close()
    return {f"{w.path.name}": w.rows for w in writers}


def _converter(category: str):
    reviews_name, meta_name = (f.filename for f in remote_files(category))

    def convert(raw: dict, out_dir: Path, name: str, write_reviews: bool = True) -> dict:
        return convert_amazon2014(raw[reviews_name], raw.get(meta_name), out_dir, name, write_reviews=write_reviews)

    convert.__name__ = f"convert_{category.lower()}"
    convert.__qualname__ = convert.__name__
    return convert


SPECS = [
    DatasetSpec(
        name=name,
        description=f"Amazon 2014 '{category.replace('_', ' ')}' 5-core reviews with title, brand, categories, description, price; review texts",
        files=remote_files(category),
        convert=_converter(category),
        homepage=HOMEPAGE,
        licence="Amazon review data (McAuley et al., 2015; He & McAuley, 2016): for research use; cite the papers.",
        notes="No checksums are published for these files: downloads are checked for completeness only.",
    )
    for name, category in CATEGORIES.items()
]
