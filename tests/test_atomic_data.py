"""Converters: tiny files written in each source's official raw layout -> RecBole atomic files.

Each source is checked for row counts, field types and a few exact rows, then RecBole (through
recbole-llm's Config) loads the result and BPR trains for one epoch on it.
"""

import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import atomic_data
from atomic_data import AtomicWriter, read_atomic_header
from atomic_data.__main__ import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def read_rows(path):
    """Data rows of an atomic file as RecBole reads them (pandas, python engine)."""
    import pandas as pd

    header = read_atomic_header(path)
    frame = pd.read_csv(path, sep="\t", dtype=str, engine="python", keep_default_na=False)
    assert list(frame.columns) == [f"{n}:{t}" for n, t in header]
    return [list(row) for row in frame.itertuples(index=False)]


def train_bpr(tmp_path, monkeypatch, dataset, data_root, **config):
    """Load the converted dataset with recbole-llm's Config and train BPR for one epoch."""
    from recbole_llm.quick_start import run_recbole_llm

    monkeypatch.chdir(tmp_path)  # RecBole writes ./log and ./saved
    settings = {
        "data_path": str(data_root),
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "show_progress": False,
        "state": "ERROR",
        "eval_args": {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"},
        "topk": [5],
        "metrics": ["Recall", "NDCG"],
        "valid_metric": "NDCG@5",
        "checkpoint_dir": str(tmp_path / "saved"),
    }
    settings.update(config)
    result = run_recbole_llm(model="BPR", dataset=dataset, config_dict=settings, saved=False)
    assert set(result["test_result"]) == {"recall@5", "ndcg@5"}
    return result


# --------------------------------------------------------------------------------------------
# MovieLens-1M
# --------------------------------------------------------------------------------------------
ML_MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi",
    '3::"Great Performances" Cats (1998)::Musical',
    "4::Untitled Project::Drama",
    "5::Heat (1995)::Action|Crime|Thriller",
    "6::Sabrina (1995)::Comedy|Romance",
]
ML_USERS = [f"{u}::{'F' if u % 2 else 'M'}::{[1, 18, 25, 35, 45, 56][u % 6]}::{u + 3}::4806{u}" for u in range(1, 9)]


def ml_ratings():
    rows = []
    for u in range(1, 9):
        for m in range(1, 7):
            if (u + m) % 5 != 0:  # a few gaps, every user keeps >= 4 ratings
                rows.append(f"{u}::{m}::{1 + (u * m) % 5}::{978300000 + 100 * u + m}")
    return rows


def write_ml1m_zip(path: Path, folder="ml-1m"):
    """The GroupLens layout: ml-1m/{movies,users,ratings}.dat, '::'-separated, Latin-1."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/movies.dat", ("\n".join(ML_MOVIES) + "\n").encode("latin-1"))
        zf.writestr(f"{folder}/users.dat", ("\n".join(ML_USERS) + "\n").encode("latin-1"))
        zf.writestr(f"{folder}/ratings.dat", ("\n".join(ml_ratings()) + "\n").encode("latin-1"))
        zf.writestr(f"{folder}/README", b"MovieLens 1M sample")
    return path


def test_split_title():
    from atomic_data.movielens import split_title

    assert split_title("Toy Story (1995)") == ("Toy Story", "1995")
    assert split_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "City of Lost Children, The (Cité des enfants perdus, La)",
        "1995",
    )
    assert split_title("Untitled Project") == ("Untitled Project", "")


def test_ml1m_converter(tmp_path, monkeypatch):
    raw = write_ml1m_zip(tmp_path / "ml-1m.zip")
    out = tmp_path / "data"
    assert cli_main(["convert", "ml-1m", "--raw", str(raw), "--out", str(out)]) == 0
    folder = out / "ml-1m"
    assert sorted(p.name for p in folder.iterdir()) == ["ml-1m.inter", "ml-1m.item", "ml-1m.user"]

    assert read_atomic_header(folder / "ml-1m.inter") == [
        ("user_id", "token"), ("item_id", "token"), ("rating", "float"), ("timestamp", "float")]
    assert read_atomic_header(folder / "ml-1m.item") == [
        ("item_id", "token"), ("movie_title", "token_seq"), ("release_year", "token"), ("genre", "token_seq")]
    assert read_atomic_header(folder / "ml-1m.user") == [
        ("user_id", "token"), ("age", "token"), ("gender", "token"), ("occupation", "token"), ("zip_code", "token")]

    inter, items, users = (read_rows(folder / f"ml-1m.{s}") for s in ("inter", "item", "user"))
    assert len(inter) == len(ml_ratings()) and len(items) == 6 and len(users) == 8
    assert inter[0] == ["1", "1", "2", "978300101"]
    assert items[0] == ["1", "Toy Story", "1995", "Animation Children's Comedy"]
    assert items[1] == ["2", "City of Lost Children, The (Cité des enfants perdus, La)", "1995", "Adventure Sci-Fi"]
    assert items[2] == ["3", '"Great Performances" Cats', "1998", "Musical"]  # quotes survive
    assert items[3] == ["4", "Untitled Project", "", "Drama"]
    assert users[0] == ["1", "18", "F", "4", "48061"]
    # Latin-1 in, UTF-8 out
    assert "Cité".encode("utf-8") in (folder / "ml-1m.item").read_bytes()

    result = train_bpr(tmp_path, monkeypatch, "ml-1m", out)
    assert result["best_valid_result"] is not None


def test_ml1m_converter_accepts_extracted_folder(tmp_path):
    with zipfile.ZipFile(write_ml1m_zip(tmp_path / "ml-1m.zip")) as zf:
        zf.extractall(tmp_path / "extracted")
    folder = atomic_data.convert_into(
        atomic_data.get_spec("ml-1m"), atomic_data.match_raw_paths(atomic_data.get_spec("ml-1m"), [tmp_path / "extracted"]), tmp_path / "out"
    )
    assert len(read_rows(folder / "ml-1m.item")) == 6


# --------------------------------------------------------------------------------------------
# Amazon 2014
# --------------------------------------------------------------------------------------------
AM_ITEMS = ["B0001", "B0002", "B0003", "B0004", "B0005"]


def write_amazon_raw(folder: Path, category="Beauty"):
    """reviews_<Cat>_5.json.gz: JSON lines; meta_<Cat>.json.gz: Python-literal lines."""
    folder.mkdir(parents=True, exist_ok=True)
    reviews = []
    for u in range(6):
        for k, asin in enumerate(AM_ITEMS):
            if (u + k) % 4 == 3:
                continue
            reviews.append({
                "reviewerID": f"AU{u:03d}", "asin": asin, "reviewerName": f"Reviewer {u}",
                "helpful": [u % 3, 3], "reviewText": f"Review {u}-{asin}\twith a tab\nand a newline",
                "overall": float(1 + (u + k) % 5), "summary": f"Summary {u}", "unixReviewTime": 1390000000 + 1000 * u + k,
                "reviewTime": "01 17, 2014",
            })
    with gzip.open(folder / f"reviews_{category}_5.json.gz", "wt", encoding="utf-8") as fh:
        for r in reviews:
            fh.write(json.dumps(r) + "\n")
    meta = [
        {"asin": "B0001", "title": "Shea Butter Cream", "price": 12.99, "imUrl": "http://img/1.jpg",
         "salesRank": {"Beauty": 2417}, "brand": "Acme", "related": {"also_bought": ["B0002"]},
         "categories": [["Beauty", "Skin Care", "Body"], ["Beauty", "Skin Care", "Face"]],
         "description": 'Rich "whipped"\tcream.\nFor dry skin.'},
        {"asin": "B0002", "title": "Lip Balm", "categories": [["Beauty", "Makeup", "Lips"]], "salesRank": {"Beauty": 15}},
        {"asin": "B9999", "title": "Not in the 5-core", "categories": [["Beauty"]]},
        {"asin": "B0003", "title": "Nail Polish | Red", "brand": "Glossy", "price": 5.0, "categories": [["Beauty", "Makeup, Nails"]]},
        {"asin": "B0005", "title": "Eye Liner", "description": "Black.", "categories": []},
        # B0004 has no metadata line at all
    ]
    with gzip.open(folder / f"meta_{category}.json.gz", "wt", encoding="utf-8") as fh:
        for m in meta:
            fh.write(repr(m) + "\n")  # Python literal, as in McAuley's metadata files
    return reviews


def test_amazon_converter(tmp_path, monkeypatch):
    reviews = write_amazon_raw(tmp_path / "raw")
    out = tmp_path / "data"
    code = cli_main(["convert", "amazon-beauty", "--raw", str(tmp_path / "raw"), "--out", str(out)])
    assert code == 0
    folder = out / "amazon-beauty"
    assert sorted(p.name for p in folder.iterdir()) == ["amazon-beauty.inter", "amazon-beauty.item", "amazon-beauty.review"]
    assert [t for _, t in read_atomic_header(folder / "amazon-beauty.item")] == [
        "token", "token", "token", "token_seq", "token", "float", "token", "float", "token"]
    assert [n for n, _ in read_atomic_header(folder / "amazon-beauty.item")] == [
        "item_id", "title", "brand", "categories", "description", "price", "sales_type", "sales_rank", "image_url"]

    inter = read_rows(folder / "amazon-beauty.inter")
    items = {row[0]: row for row in read_rows(folder / "amazon-beauty.item")}
    review_rows = read_rows(folder / "amazon-beauty.review")
    assert len(inter) == len(reviews) == len(review_rows)
    assert inter[0] == ["AU000", "B0001", "1", "1390000000"]
    assert sorted(items) == AM_ITEMS  # B9999 is not in the 5-core; B0004 kept without metadata
    assert items["B0001"] == ["B0001", "Shea Butter Cream", "Acme", "Beauty|Skin Care|Body|Face",
                              'Rich "whipped" cream. For dry skin.', "12.99", "Beauty", "2417", "http://img/1.jpg"]
    assert items["B0003"][1:4] == ["Nail Polish | Red", "Glossy", "Beauty|Makeup, Nails"]
    assert items["B0004"] == ["B0004"] + [""] * 8
    assert review_rows[0] == ["AU000", "B0001", "1390000000", "Summary 0", "Review 0-B0001 with a tab and a newline", "0", "3", "Reviewer 0"]

    train_bpr(tmp_path, monkeypatch, "amazon-beauty", out)


def test_amazon_without_reviews_file(tmp_path):
    write_amazon_raw(tmp_path / "raw", category="Toys_and_Games")
    out = tmp_path / "data"
    assert cli_main(["convert", "amazon-toys", "--raw", str(tmp_path / "raw"), "--out", str(out), "--no-reviews"]) == 0
    assert not (out / "amazon-toys" / "amazon-toys.review").exists()
    assert (out / "amazon-toys" / "amazon-toys.inter").is_file()


# --------------------------------------------------------------------------------------------
# Goodreads (UCSD Book Graph, history_biography subset)
# --------------------------------------------------------------------------------------------
def write_goodreads_raw(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    interactions = []
    for u in range(6):
        for b in range(8):
            if (u + b) % 8 >= 6:  # each user shelves 6 of the 8 books
                continue
            rating = 0 if (u + b) % 6 == 5 else 1 + (u + b) % 5
            interactions.append({
                "user_id": f"user{u}", "book_id": str(100 + b), "review_id": f"r{u}{b}", "is_read": rating > 0 or b == 0,
                "rating": rating, "review_text_incomplete": "", "date_added": f"Fri Sep 0{1 + b} 10:44:2{u} -0700 2017",
                "date_updated": "Fri Sep 08 10:44:24 -0700 2017", "read_at": "", "started_at": "",
            })
    books = [
        {"book_id": "100", "title": "SPQR (History)", "title_without_series": "SPQR", "description": "Rome.\nAncient.",
         "authors": [{"author_id": "7", "role": ""}, {"author_id": "8", "role": "Translator"}], "publisher": "Liveright",
         "publication_year": "2015", "language_code": "eng", "format": "Hardcover", "num_pages": "608",
         "average_rating": "4.05", "ratings_count": "1234", "popular_shelves": [{"count": "50", "name": "history"}, {"count": "3", "name": "rome"}],
         "isbn": "0871404230", "isbn13": "9780871404237", "url": "https://www.goodreads.com/book/show/100", "image_url": "http://img/100.jpg"},
        {"book_id": "101", "title": "Team of Rivals", "authors": [{"author_id": "9", "role": ""}], "num_pages": "",
         "popular_shelves": [], "description": ""},
        {"book_id": "102", "title": "The Guns of August", "authors": []},
        {"book_id": "103", "title": "Longitude", "authors": [{"author_id": "10", "role": ""}]},
        {"book_id": "104", "title": "1776", "authors": [{"author_id": "11", "role": ""}]},
        {"book_id": "999", "title": "Never shelved here", "authors": []},
    ]
    authors = [{"author_id": "7", "name": "Mary Beard"}, {"author_id": "8", "name": "A. Translator"},
               {"author_id": "9", "name": "Doris Kearns Goodwin"}, {"author_id": "10", "name": "Dava Sobel"},
               {"author_id": "11", "name": "David McCullough"}]
    for name, records in (("goodreads_interactions_history_biography.json.gz", interactions),
                          ("goodreads_books_history_biography.json.gz", books),
                          ("goodreads_book_authors.json.gz", authors)):
        with gzip.open(folder / name, "wt", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    return interactions


def test_goodreads_date():
    from atomic_data.goodreads import parse_goodreads_date

    assert parse_goodreads_date("Fri Sep 08 10:44:24 -0700 2017") == 1504892664.0
    assert parse_goodreads_date("") is None


def test_goodreads_converter(tmp_path, monkeypatch):
    interactions = write_goodreads_raw(tmp_path / "raw")
    out = tmp_path / "data"
    assert cli_main(["convert", "goodreads-history", "--raw", str(tmp_path / "raw"), "--out", str(out)]) == 0
    folder = out / "goodreads-history"
    inter = read_rows(folder / "goodreads-history.inter")
    items = {row[0]: row for row in read_rows(folder / "goodreads-history.item")}
    assert len(inter) == sum(1 for r in interactions if r["rating"] > 0)  # keep="rated"
    assert inter[0] == ["user0", "100", "1", "1504287860", "1"]
    assert sorted(items) == [str(100 + b) for b in range(8)]  # 105-107 have no metadata: empty rows
    assert items["107"][1:3] == ["", ""]
    header = dict(read_atomic_header(folder / "goodreads-history.item"))
    assert header["authors"] == "token_seq" and header["num_pages"] == "float" and header["description"] == "token"
    names = [n for n, _ in read_atomic_header(folder / "goodreads-history.item")]
    row = dict(zip(names, items["100"]))
    assert row["title"] == "SPQR (History)" and row["description"] == "Rome. Ancient."
    assert row["authors"] == "Mary Beard|A. Translator (Translator)"
    assert row["shelves"] == "history|rome" and row["isbn"] == "9780871404237" and row["num_pages"] == "608"
    assert dict(zip(names, items["101"]))["num_pages"] == ""

    assert cli_main(["convert", "goodreads-history", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "all"),
                     "--keep", "all"]) == 0
    assert len(read_rows(tmp_path / "all" / "goodreads-history" / "goodreads-history.inter")) == len(interactions)

    train_bpr(tmp_path, monkeypatch, "goodreads-history", out)


# --------------------------------------------------------------------------------------------
# MMRec preprocessed folders
# --------------------------------------------------------------------------------------------
def write_mmrec_folder(folder: Path, n_users=8, n_items=6, feature_rows=None):
    """MMRec's layout: <ds>.inter (plain header, 0-based ids, x_label), *_feat.npy, id maps."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(n_users):
        items = [(u + k) % n_items for k in range(5)]
        for pos, i in enumerate(items):
            label = 0 if pos < 3 else (1 if pos == 3 else 2)
            lines.append(f"{u}\t{i}\t{1 + (u + i) % 5}.0\t{1300000000 + 10 * u + pos}\t{label}")
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n")
    rows = n_items if feature_rows is None else feature_rows
    np.save(folder / "image_feat.npy", np.arange(rows * 4, dtype=np.float32).reshape(rows, 4))
    np.save(folder / "text_feat.npy", -np.arange(rows * 3, dtype=np.float32).reshape(rows, 3))
    (folder / "i_id_mapping.csv").write_text("asin\titemID\n" + "".join(f"B{i:04d}\t{i}\n" for i in range(n_items)))
    (folder / "u_id_mapping.csv").write_text("user_id\tuserID\n" + "".join(f"AU{u}\t{u}\n" for u in range(n_users)))
    return len(lines) - 1


def test_mmrec_converter(tmp_path, monkeypatch):
    n = write_mmrec_folder(tmp_path / "baby")
    out = tmp_path / "data"
    assert cli_main(["convert", "mmrec", "--raw", str(tmp_path / "baby"), "--out", str(out)]) == 0
    folder = out / "baby"
    assert sorted(p.name for p in folder.iterdir()) == [
        "baby.inter", "baby.item", "baby.test.inter", "baby.train.inter", "baby.user", "baby.valid.inter",
        "image_feat.npy", "text_feat.npy"]
    assert read_atomic_header(folder / "baby.inter") == [
        ("user_id", "token"), ("item_id", "token"), ("rating", "float"), ("timestamp", "float")]
    counts = {s: len(read_rows(folder / f"baby.{s}.inter")) for s in ("train", "valid", "test")}
    assert counts == {"train": 24, "valid": 8, "test": 8} and sum(counts.values()) == n
    assert read_rows(folder / "baby.inter")[0] == ["0", "0", "1", "1300000000"]
    assert read_rows(folder / "baby.item")[2] == ["2", "B0002"]
    assert np.array_equal(np.load(folder / "image_feat.npy"), np.load(tmp_path / "baby" / "image_feat.npy"))

    # MMRec's own split through RecBole's benchmark files
    train_bpr(tmp_path, monkeypatch, "baby", out, benchmark_filename=["train", "valid", "test"],
              eval_args={"split": None, "order": "RO", "group_by": "user", "mode": "full"})


def test_mmrec_feature_rows_must_cover_items(tmp_path):
    write_mmrec_folder(tmp_path / "sports", feature_rows=4)
    assert cli_main(["convert", "mmrec", "--raw", str(tmp_path / "sports"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o" / "sports").exists()  # nothing half-converted is published


# --------------------------------------------------------------------------------------------
# Shared writer, CLI
# --------------------------------------------------------------------------------------------
def test_atomic_writer_round_trips_through_recbole_reader(tmp_path):
    path = tmp_path / "x.item"
    with AtomicWriter(path, ["item_id:token", "name:token", "tags:token_seq", "score:float"], seq_separator="|") as w:
        w.write(["1", '"Quoted" start', ["a|b", "c d", ""], 2.0])
        w.write({"item_id": "2", "name": "tab\there\x85and\u2028lines", "tags": None, "score": float("nan")})
        w.write(["3", None, "x|y", 0.125])
    assert w.rows == 3 and not (tmp_path / "x.item.writing").exists()
    assert read_rows(path) == [["1", '"Quoted" start', "a b|c d", "2"], ["2", "tab here and lines", "", ""], ["3", "", "x|y", "0.125"]]
    with pytest.raises(ValueError, match="type"):
        AtomicWriter(tmp_path / "bad.inter", ["a:string"])


def test_writer_publishes_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with AtomicWriter(tmp_path / "y.inter", ["user_id:token"]) as w:
            w.write(["1"])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_cli_list_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "atomic_data", "list"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("ml-1m", "amazon-beauty", "amazon-toys", "amazon-sports", "amazon-grocery", "goodreads-history", "mmrec"):
        assert f"\n{name}\n" in "\n" + proc.stdout
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in proc.stdout


def test_cli_rejects_wrong_raw_file(tmp_path, capsys):
    bogus = tmp_path / "ratings.csv"
    bogus.write_text("x")
    assert cli_main(["convert", "amazon-beauty", "--raw", str(bogus), "--out", str(tmp_path)]) == 2
    assert "reviews_Beauty_5.json.gz" in capsys.readouterr().err
