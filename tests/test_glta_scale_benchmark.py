"""The scale benchmark's pieces (benchmarks/ml1m_shaped.py, benchmarks/glta_scale.py): the generated
dataset has the promised shape and planted structure and is read back by RecBole's atomic format; the
``--stages`` rules; bad options exit with code 2."""


import numpy as np
import pytest

from conftest import import_benchmarks



@pytest.fixture
def mods(monkeypatch):
    loaded = import_benchmarks(monkeypatch, "ml1m_shaped", "glta_scale")
    return loaded["ml1m_shaped"], loaded["glta_scale"]


def test_generated_data_has_the_requested_shape_and_is_seeded(mods):
    gen, _ = mods
    inter, items = gen.generate(seed=3, n_users=60, n_items=200, n_ratings=3000)
    assert len(inter["user"]) == 3000
    users, per_user = np.unique(inter["user"], return_counts=True)
    assert users.tolist() == list(range(1, 61)) and per_user.min() >= gen.MIN_PER_USER
    assert inter["item"].min() >= 1 and inter["item"].max() <= 200
    pairs = set(zip(inter["user"].tolist(), inter["item"].tolist()))
    assert len(pairs) == 3000  # no repeated (user, item)
    assert set(np.unique(inter["rating"]).tolist()) <= {1, 2, 3, 4, 5}
    assert gen.T_START <= inter["timestamp"].min() and inter["timestamp"].max() <= gen.T_END
    for u in (1, 30, 60):  # each user's rows are in time order
        assert np.all(np.diff(inter["timestamp"][inter["user"] == u]) >= 0)
    assert len(items) == 200 and all(1 <= len(g) <= 3 and set(g) <= set(gen.GENRES) for _, _, _, g in items)
    again, _ = gen.generate(seed=3, n_users=60, n_items=200, n_ratings=3000)
    other, _ = gen.generate(seed=4, n_users=60, n_items=200, n_ratings=3000)
    assert all(np.array_equal(inter[k], again[k]) for k in inter)
    assert not np.array_equal(inter["item"], other["item"])


def test_popularity_is_skewed_and_users_share_genre_taste(mods):
    gen, _ = mods
    inter, items = gen.generate(seed=0, n_users=200, n_items=1500, n_ratings=12000)  # ml-1m-like density
    stats = gen.describe(inter)
    assert stats["top10pct_items_share"] > 0.25  # uniform choice would give about 0.1
    # planted structure: a user's items concentrate on a few genres more than the same ratings dealt to
    # users at random (same popularity, no taste) do
    genres = {i: set(g) for i, _, _, g in items}

    def mean_top_genre_share(users, item_ids):
        shares = []
        for u in np.unique(users):
            counts = {}
            for i in item_ids[users == u].tolist():
                for g in genres[i]:
                    counts[g] = counts.get(g, 0) + 1
            shares.append(max(counts.values()) / sum(counts.values()))
        return float(np.mean(shares))

    shuffled = np.random.default_rng(0).permutation(inter["item"])
    assert mean_top_genre_share(inter["user"], inter["item"]) > mean_top_genre_share(inter["user"], shuffled) + 0.015


def test_atomic_files_round_trip_and_user_draw(mods, tmp_path):
    import pandas as pd

    gen, _ = mods
    inter, items = gen.generate(seed=1, n_users=50, n_items=120, n_ratings=2000)
    part = gen.select_users(inter, 10, seed=1)
    assert len(np.unique(part["user"])) == 10
    written = gen.write_atomic(part, items, tmp_path)
    df = pd.read_csv(tmp_path / "ml-1m" / "ml-1m.inter", sep="\t")
    assert list(df.columns) == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    assert len(df) == written["ratings"] == len(part["user"])
    it = pd.read_csv(tmp_path / "ml-1m" / "ml-1m.item", sep="\t")
    assert list(it.columns) == ["item_id:token", "movie_title:token_seq", "release_year:token", "genre:token_seq"]
    assert set(df["item_id:token"]) == set(it["item_id:token"])  # only the items the kept users rated
    with pytest.raises(ValueError, match="between 1 and 50"):
        gen.select_users(inter, 51)


def test_stage_selection_rules_and_bad_options(mods):
    _, scale = mods
    assert scale.stages_to_run("graph") == ["graph"]
    assert scale.stages_to_run("generate") == ["graph", "generate"]
    assert scale.stages_to_run("user_item") == ["graph", "item_text", "generate", "user_item"]
    assert scale.stages_to_run("test") == ["graph", "item_text", "generate", "user_item"]
    with pytest.raises(SystemExit) as exc:
        scale.stages_to_run("graph,warmup")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        scale.main(["--fraction", "1.5", "--stages", "graph"])
    assert exc.value.code == 2
