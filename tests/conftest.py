"""Shared fixtures: tiny generated datasets in RecBole's atomic format, and isolation of
RecBole's side effects (log/, saved/ and caches written under a temporary directory)."""

import random
from contextlib import contextmanager
from pathlib import Path

import pytest

from recbole_llm import compat

# Tests use RecBole directly (create_dataset, trainers): apply the fixes before any of them.
# (``import recbole_llm`` alone is light and applies nothing.)
compat.apply()


def write_tiny_dataset(root, name="tiny", n_users=40, n_items=60, per_user=(8, 20), seed=0, with_text=True):
    """Write ``root/name/name.inter`` (+ ``.item`` with text fields) and return ``root``.

    Users prefer items of 'their' genre so that a real model beats random ranking.
    """
    rng = random.Random(seed)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["Action", "Comedy", "Drama", "Horror"]
    item_genre = {i: genres[i % len(genres)] for i in range(1, n_items + 1)}
    rows = []
    t = 880000000
    for u in range(1, n_users + 1):
        liked = genres[u % len(genres)]
        pool_fav = [i for i in item_genre if item_genre[i] == liked]
        pool_other = [i for i in item_genre if item_genre[i] != liked]
        k = rng.randint(*per_user)
        items = set()
        while len(items) < k:
            items.add(rng.choice(pool_fav) if rng.random() < 0.8 else rng.choice(pool_other))
        for i in items:
            t += rng.randint(1, 500)
            rows.append(f"{u}\t{i}\t{rng.randint(3, 5)}\t{t}")
    (folder / f"{name}.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n"
    )
    if with_text:
        lines = [
            f"{i}\tMovie {i} {item_genre[i].lower()} story\t{1990 + i % 10}\t{item_genre[i]}"
            for i in range(1, n_items + 1)
        ]
        (folder / f"{name}.item").write_text(
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n" + "\n".join(lines) + "\n"
        )
    return Path(root)


def write_ring_dataset(root, n_users=60, n_items=24, length=12, seed=0):
    """Every user walks a ring of items: the next item is always (previous + 1) mod n_items."""
    rng = random.Random(seed)
    folder = Path(root) / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    rows, t = [], 880000000
    for u in range(1, n_users + 1):
        start = rng.randrange(n_items)
        for j in range(length):
            t += 1
            rows.append(f"{u}\t{(start + j) % n_items + 1}\t4\t{t}")
    (folder / "tiny.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n")
    lines = [f"{i}\tMovie {i}\t1990\tDrama" for i in range(1, n_items + 1)]
    (folder / "tiny.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n"
                                      + "\n".join(lines) + "\n")


def fast_config(tmp_path, **overrides):
    """Settings that keep a RecBole run on a tiny dataset to a second or two."""
    cfg = {
        "data_path": str(tmp_path / "data"),
        "checkpoint_dir": str(tmp_path / "saved"),
        "epochs": 2,
        "train_batch_size": 256,
        "eval_batch_size": 4096,
        "show_progress": False,
        "state": "WARNING",
        "seed": 2020,
        "reproducibility": True,
        "embedding_size": 16,
        "metrics": ["Recall", "NDCG", "Precision"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
    }
    cfg.update(overrides)
    return cfg


def glta_tiny_config(root, **overrides):
    """GLTA on ``tiny`` with the tiny random Llama saved under ``root/llm`` (a few seconds on CPU)."""
    cfg = fast_config(
        root,
        llm_path=str(Path(root) / "llm"),
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]},
        item_text_template="{movie_title} ({genre})",
        glta_graph_epochs=2,
        glta_ia_epochs=1,
        glta_ua_epochs=2,
        glta_gen_max_new_tokens=3,
        glta_slots=4,
        glta_history_items=5,
        glta_ia_items_per_prompt=3,
        glta_kv_cache_dtype="float32",
    )
    cfg.update(overrides)
    return cfg


@contextmanager
def tiny_llm_env(root):
    """``root`` with the tiny dataset (30 users, 40 items) and a tiny random Llama under ``llm/``;
    caches and the working directory moved into it while the block runs (for module fixtures)."""
    from recbole_llm.llm.loading import clear_backbones
    from recbole_llm.llm.testing import save_tiny_llama

    root = Path(root)
    write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
    save_tiny_llama(root / "llm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBOLE_LLM_CACHE", str(root / "cache"))
        mp.chdir(root)
        yield root
    clear_backbones()


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A tiny dataset named ``tiny`` under ``tmp_path/data``; cwd and caches moved to tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data")
    return tmp_path


def cli_in_process(args, capsys, tmp, model="BPR"):
    """The CLI in-process on the tiny dataset: (exit code, stdout + stderr); never a traceback."""
    base = [f"--model={model}", "--dataset=tiny", f"--data_path={tmp / 'data'}", "--epochs=1", "--state=WARNING",
            "--show_progress=False", f"--checkpoint_dir={tmp / 'saved'}"]
    given = {a.split("=", 1)[0] for a in args}
    from recbole_llm.cli import main as cli_main

    code = cli_main([a for a in base if a.split("=", 1)[0] not in given] + list(args))
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return code, text


def glta_cli_args(root, *extra, **changes):
    """``--key=value`` arguments of the tiny GLTA run (:func:`glta_tiny_config` with ``changes``)."""
    args = ["--model=GLTA", "--dataset=tiny", "--state=WARNING", "--show_progress=False"]
    for key, value in glta_tiny_config(root, **changes).items():
        args.append(f"--{key}={value!r}" if not isinstance(value, str) else f"--{key}={value}")
    return args + list(extra)


def cli_error_line(args, capsys):
    """Run the CLI in-process: (exit code, its one error line, else all it printed); never a traceback."""
    from recbole_llm.cli import main as cli_main

    code = cli_main(args)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("recbole-llm: error: ")]
    return code, (lines[0] if len(lines) == 1 else text)


def import_benchmarks(monkeypatch, *names):
    """Fresh imports of ``benchmarks/<name>.py`` scripts (``_common`` reloaded too), as ``{name: module}``."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    for name in ("_common", *names):
        sys.modules.pop(name, None)
    return {name: importlib.import_module(name) for name in names}
