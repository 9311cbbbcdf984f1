"""Goodreads "History & Biography" (UCSD Book Graph, Wan & McAuley) to RecBole atomic files.

GLTA evaluates on "history books" from Goodreads. The public source is the UCSD Book Graph's
genre subsets (https://mengtingwan.github.io/data/goodreads.html), served from
``https://datarepo.eng.ucsd.edu/mcauley_group/gdrive/goodreads/``:

* ``byGenre/goodreads_interactions_history_biography.json.gz``: shelf interactions, one JSON
  object per line (``user_id, book_id, review_id, is_read, rating (0 = not rated),
  review_text_incomplete, date_added, date_updated, read_at, started_at``);
* ``byGenre/goodreads_books_history_biography.json.gz``: book metadata (``title, description,
  authors [{author_id, role}], publisher, publication_year, popular_shelves, ...``);
* ``goodreads_book_authors.json.gz``: author names (``author_id, name``);
* ``byGenre/goodreads_reviews_history_biography.json.gz`` (optional, large): review texts.

GLTA reports 10,131 users / 10,725 items / 478,334 interactions but does not publish how it
sampled them from this subset, so that exact subset cannot be rebuilt; filter the converted
data with RecBole's settings (``user_inter_num_interval``, ``item_inter_num_interval``, ...).
By default only rated shelf entries are kept (``keep="rated"``; ``"read"`` keeps entries marked
read, ``"all"`` every shelf entry). Timestamps are ``date_added`` as Unix seconds.

Output (UTF-8; ``token_seq`` fields use ``|``, set as ``seq_separator`` in the properties):

* ``<name>.inter``  ``user_id:token item_id:token rating:float timestamp:float is_read:float``
* ``<name>.item``   ``item_id:token title:token title_without_series:token description:token
  authors:token_seq publisher:token publication_year:token language_code:token format:token
  num_pages:float average_rating:float ratings_count:float shelves:token_seq isbn:token
  url:token image_url:token`` (authors as names, "Name (Role)" when a role is given;
  shelves: the ten most popular shelf names)
* ``<name>.review`` (when the reviews file is given) ``user_id:token item_id:token
  timestamp:float rating:float review_text:token n_votes:float``
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from atomic_data import AtomicWriter, DatasetSpec, iter_records, open_text, parse_record
from atomic_data.download import RemoteFile

logger = logging.getLogger(__name__)

BASE_URL = "https://datarepo.eng.ucsd.edu/mcauley_group/gdrive/goodreads"
HOMEPAGE = "https://mengtingwan.github.io/data/goodreads.html"
GENRE = "history_biography"
SEQ_SEPARATOR = "|"
MAX_SHELVES = 10


def _remote(path: str, required: bool = True) -> RemoteFile:
    # No checksums are published for the Book Graph files: completeness is checked only.
    return RemoteFile(url=f"{BASE_URL}/{path}", filename=path.rsplit("/", 1)[-1], homepage=HOMEPAGE, required=required)


INTERACTIONS = _remote(f"byGenre/goodreads_interactions_{GENRE}.json.gz")
BOOKS = _remote(f"byGenre/goodreads_books_{GENRE}.json.gz")
AUTHORS = _remote("goodreads_book_authors.json.gz")
REVIEWS = _remote(f"byGenre/goodreads_reviews_{GENRE}.json.gz", required=False)

INTER_FIELDS = ["user_id:token", "item_id:token", "rating:float", "timestamp:float", "is_read:float"]
ITEM_FIELDS = [
    "item_id:token",
    "title:token",
    "title_without_series:token",
    "description:token",
    "authors:token_seq",
    "publisher:token",
    "publication_year:token",
    "language_code:token",
    "format:token",
    "num_pages:float",
    "average_rating:float",
    "ratings_count:float",
    "shelves:token_seq",
    "isbn:token",
    "url:token",
    "image_url:token",
]
REVIEW_FIELDS = ["user_id:token", "item_id:token", "timestamp:float", "rating:float", "review_text:token", "n_votes:float"]

KEEP_MODES = ("rated", "read", "all")
_MONTHS = {m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}
_BOOK_ID = re.compile(r'"book_id"\s*:\s*"([^"]+)"')


def parse_goodreads_date(text: str | None) -> float | None:
    """``"Fri Sep 08 10:44:24 -0700 2017"`` -> Unix seconds (locale-independent); ``None`` if empty."""
    if not text:
        return None
    try:
        _, month, day, clock, offset, year = text.split()
        hour, minute, second = (int(x) for x in clock.split(":"))
        sign = -1 if offset.startswith("-") else 1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        return datetime(int(year), _MONTHS[month], int(day), hour, minute, second, tzinfo=tz).timestamp()
    except (ValueError, KeyError) as exc:
        raise ValueError(f"unrecognised Goodreads date {text!r}") from exc


def _keep(record, mode: str) -> bool:
    if mode == "all":
        return True
    if mode == "read":
        return bool(record.get("is_read"))
    return (record.get("rating") or 0) > 0


def _author_names(path: Path | None, wanted: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    if path is None:
        return names
    for record in iter_records(path):
        author_id = str(record.get("author_id", ""))
        if author_id in wanted:
            names[author_id] = record.get("name") or author_id
    return names


def _books(path: Path, wanted) -> dict[str, dict]:
    found: dict[str, dict] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            match = _BOOK_ID.search(line)
            if match is None or match.group(1) not in wanted:
                continue
            record = parse_record(line, f"{path}:{lineno}")
            found[str(record.get("book_id"))] = record
    return found


def _authors_text(book: dict, names: dict[str, str]) -> list[str]:
    result = []
    for author in book.get("authors") or []:
        author_id = str(author.get("author_id", ""))
        name = names.get(author_id, author_id)
        role = (author.get("role") or "").strip()
        if name:
            result.append(f"{name} ({role})" if role else name)
    return result


def convert_goodreads(
    interactions: Path,
    books: Path,
    out_dir: Path,
    name: str,
    authors: Path | None = None,
    reviews: Path | None = None,
    keep: str = "rated",
) -> dict:
    """Convert the genre subset into ``out_dir/<name>.*``; returns ``{file name: rows}``."""
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    out_dir = Path(out_dir)
    items_in_data: dict[str, None] = {}
    inter = AtomicWriter(out_dir / f"{name}.inter", INTER_FIELDS)
    writers = [inter]
    try:
        for record in iter_records(interactions):
            if not _keep(record, keep):
                continue
            user, item = record.get("user_id"), str(record.get("book_id", ""))
            if not user or not item:
                continue
            items_in_data.setdefault(item, None)
            inter.write([user, item, record.get("rating"), parse_goodreads_date(record.get("date_added")), int(bool(record.get("is_read")))])

        book_records = _books(books, items_in_data)
        author_ids = {str(a.get("author_id", "")) for b in book_records.values() for a in b.get("authors") or []}
        names = _author_names(authors, author_ids)
        missing = len(items_in_data) - len(book_records)
        if missing:
            logger.warning("%s: %d of %d books have no metadata; their item rows are empty.", name, missing, len(items_in_data))
        items = AtomicWriter(out_dir / f"{name}.item", ITEM_FIELDS, seq_separator=SEQ_SEPARATOR)
        writers.append(items)
        for book_id in items_in_data:
            book = book_records.get(book_id, {})
            shelves = [s.get("name") for s in (book.get("popular_shelves") or [])[:MAX_SHELVES]]
            items.write(
                {
                    "item_id": book_id,
                    "title": book.get("title"),
                    "title_without_series": book.get("title_without_series"),
                    "description": book.get("description"),
                    "authors": _authors_text(book, names),
                    "publisher": book.get("publisher"),
                    "publication_year": book.get("publication_year"),
                    "language_code": book.get("language_code"),
                    "format": book.get("format"),
                    "num_pages": book.get("num_pages") or None,
                    "average_rating": book.get("average_rating") or None,
                    "ratings_count": book.get("ratings_count") or None,
                    "shelves": shelves,
                    "isbn": book.get("isbn13") or book.get("isbn"),
                    "url": book.get("url") or book.get("link"),
                    "image_url": book.get("image_url"),
                }
            )

        if reviews is not None:
            review_writer = AtomicWriter(out_dir / f"{name}.review", REVIEW_FIELDS)
            writers.append(review_writer)
            for record in iter_records(reviews):
                item = str(record.get("book_id", ""))
                if item in items_in_data and record.get("user_id"):
                    review_writer.write(
                        [
                            record["user_id"],
                            item,
                            parse_goodreads_date(record.get("date_added")),
                            record.get("rating"),
                            record.get("review_text"),
                            record.get("n_votes"),
                        ]
                    )
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for writer in reversed(writers):  # .inter last: its presence marks a finished conversion
        writer.close()
    return {w.path.name: w.rows for w in writers}


def _convert(raw: dict, out_dir: Path, name: str, keep: str = "rated") -> dict:
    return convert_goodreads(
        raw[INTERACTIONS.filename],
        raw[BOOKS.filename],
        out_dir,
        name,
        authors=raw.get(AUTHORS.filename),
        reviews=raw.get(REVIEWS.filename),
        keep=keep,
    )


SPECS = [
    DatasetSpec(
        name="goodreads-history",
        description="Goodreads 'History & Biography' (UCSD Book Graph): rated shelf entries; title, authors, description, shelves",
        files=(INTERACTIONS, BOOKS, AUTHORS, REVIEWS),
        convert=_convert,
        homepage=HOMEPAGE,
        licence="UCSD Book Graph: academic use only; cite Wan & McAuley (RecSys 2018) and Wan et al. (ACL 2019).",
        notes="GLTA's own sample of this subset is not published; filter with RecBole's interaction-count settings.",
    )
]
