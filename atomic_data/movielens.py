"""MovieLens-1M (``ml-1m.zip`` from GroupLens) to RecBole atomic files.

Raw layout (GroupLens README): ``ml-1m/ratings.dat`` (``UserID::MovieID::Rating::Timestamp``),
``ml-1m/movies.dat`` (``MovieID::Title::Genres``, genres ``|``-separated, Latin-1 text) and
``ml-1m/users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``; age and occupation are the
README's codes). Output, with RecBole's field names (RUCAIBox/RecSysDatasets), UTF-8:

* ``ml-1m.inter``  ``user_id:token item_id:token rating:float timestamp:float`` (file order)
* ``ml-1m.item``   ``item_id:token movie_title:token_seq release_year:token genre:token_seq``;
  the title is split from the year at its last ``(`` (``"City of Lost Children, The (Cité des
  enfants perdus, La) (1995)"`` -> title with the alternative name kept, year ``1995``); a title
  without a trailing ``(YYYY)`` is kept whole with an empty year.
* ``ml-1m.user``   ``user_id:token age:token gender:token occupation:token zip_code:token``

The licence forbids redistribution: the zip is downloaded from GroupLens by each user.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from atomic_data import AtomicWriter, DatasetSpec
from atomic_data.download import RemoteFile

ML1M_ZIP = RemoteFile(
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    filename="ml-1m.zip",
    # md5: the value GroupLens publishes next to the file (ml-1m.zip.md5). sha256: the value
    # pinned by several independent projects (TensorFlow Model Garden, Keras-RS examples).
    # Both were taken from those public sources, not recomputed here (no download in CI).
    md5="c4d9eecfca2ab87c1945afe126590906",
    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    homepage="https://grouplens.org/datasets/movielens/1m/",
    verified_by="GroupLens' published ml-1m.zip.md5; sha256 as pinned by TensorFlow Model Garden and Keras-RS",
)

SEPARATOR = "::"
ENCODING = "latin-1"
_TITLE_YEAR = re.compile(r"^(?P<title>.*)\((?P<year>\d{4})\)\s*$")

INTER_FIELDS = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
ITEM_FIELDS = ["item_id:token", "movie_title:token_seq", "release_year:token", "genre:token_seq"]
USER_FIELDS = ["user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"]


def split_title(raw_title: str) -> tuple[str, str]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", "1995")``: split at the last ``(``."""
    match = _TITLE_YEAR.match(raw_title.strip())
    if not match:
        return raw_title.strip(), ""
    return match["title"].strip(), match["year"]


class _Source:
    """``ratings.dat`` & co. from the zip (any folder depth) or from an extracted folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._zip = None if self.path.is_dir() else zipfile.ZipFile(self.path)

    def lines(self, basename: str):
        if self._zip is None:
            matches = sorted(self.path.rglob(basename))
            if not matches:
                raise FileNotFoundError(f"{basename} not found under {self.path}")
            with open(matches[0], encoding=ENCODING, newline="") as fh:
                yield from fh
            return
        members = sorted(n for n in self._zip.namelist() if n.rsplit("/", 1)[-1] == basename)
        if not members:
            raise FileNotFoundError(f"{basename} not found in {self.path}")
        with self._zip.open(members[0]) as raw:
            yield from io.TextIOWrapper(raw, encoding=ENCODING, newline="")

    def close(self):
        if self._zip is not None:
            self._zip.close()


def _records(source: _Source, basename: str, n_fields: int):
    for lineno, line in enumerate(source.lines(basename), 1):
        line = line.rstrip("\r\n")
        if not line:
            continue
        parts = line.split(SEPARATOR)
        if len(parts) != n_fields:
            raise ValueError(f"{basename}:{lineno}: expected {n_fields} '::'-separated fields, got {len(parts)}")
        yield parts


def convert_ml1m(source: Path, out_dir: Path, name: str = "ml-1m") -> dict:
    """Convert ``ml-1m.zip`` (or its extracted folder) into ``out_dir/<name>.{inter,item,user}``.

    Returns ``{file name: rows written}``.
    """
    out_dir = Path(out_dir)
    src = _Source(source)
    try:
        with AtomicWriter(out_dir / f"{name}.item", ITEM_FIELDS) as items:
            for movie_id, raw_title, genres in _records(src, "movies.dat", 3):
                title, year = split_title(raw_title)
                items.write([movie_id, title, year, [g for g in genres.split("|") if g]])
        with AtomicWriter(out_dir / f"{name}.user", USER_FIELDS) as users:
            for user_id, gender, age, occupation, zip_code in _records(src, "users.dat", 5):
                users.write([user_id, age, gender, occupation, zip_code])
        with AtomicWriter(out_dir / f"{name}.inter", INTER_FIELDS) as inter:
            for user_id, movie_id, rating, timestamp in _records(src, "ratings.dat", 4):
                inter.write([user_id, movie_id, rating, timestamp])
    finally:
        src.close()
    return {f"{name}.inter": inter.rows, f"{name}.item": items.rows, f"{name}.user": users.rows}


def _convert(raw: dict, out_dir: Path, name: str) -> dict:
    return convert_ml1m(raw["ml-1m.zip"], out_dir, name)


SPECS = [
    DatasetSpec(
        name="ml-1m",
        description="MovieLens-1M: 1,000,209 ratings, 6,040 users, 3,706 rated movies; titles, years, genres, user demographics",
        files=(ML1M_ZIP,),
        convert=_convert,
        homepage="https://grouplens.org/datasets/movielens/1m/",
        licence="GroupLens research licence: no redistribution; cite Harper & Konstan (2015).",
    )
]
