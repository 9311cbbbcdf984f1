"""Bad data files and I/O through the CLI (issue 19): each input is refused with exit code 2 and one
line naming file, line and column and what to do, or handled by a rule the log states (a UTF-8
byte-order mark, rows repeating a user-item pair, missing item features); never a traceback."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config
from recbole_llm.errors import DataFormatError

from conftest import fast_config, write_tiny_dataset
from test_bad_input import REPO, _cli, _env, _inter

FULL_LOAD = "--load_col={'inter':['user_id','item_id','rating','timestamp'],'item':['item_id','movie_title','genre']}"
LOO = "--eval_args={'split':{'LS':'valid_and_test'},'order':'TO','group_by':'user','mode':'full'}"


def _rows(tmp):
    return _inter(tmp).read_text().split("\n")


def _edit_field(tmp, lineno, column, value):
    """Set field ``column`` (1-based) of line ``lineno`` of tiny.inter."""
    lines = _rows(tmp)
    parts = lines[lineno - 1].split("\t")
    parts[column - 1] = value
    lines[lineno - 1] = "\t".join(parts)
    _inter(tmp).write_text("\n".join(lines))


def _one_line_error(code, text):
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("recbole-llm: error: ")]
    assert len(errors) == 1, text  # (other lines: RecBole's deprecation warnings, not ours)
    return errors[0]


# --- refused: file, line, column, remedy -----------------------------------------------------
@pytest.mark.parametrize("value, column, expected", [
    ("five", 3, "line 10, column 3 (rating:float): 'five' is not a number"),
    ("2020-01-02", 4, "line 10, column 4 (timestamp:float): '2020-01-02' is not a number"),
    ("nan", 3, "line 10, column 3 (rating:float): the value is missing ('nan'"),
    ("", 3, "line 10, column 3 (rating:float): the value is missing (''"),
    ("inf", 4, "line 10, column 4 (timestamp:float): 'inf' is infinite"),
    ("-inf", 3, "line 10, column 3 (rating:float): '-inf' is infinite"),
])
def test_bad_float_value_names_file_line_column(tiny_data, capsys, value, column, expected):
    _edit_field(tiny_data, 10, column, value)
    line = _one_line_error(*_cli([FULL_LOAD], capsys, tiny_data))
    assert "tiny.inter, " + expected in line


def test_every_rating_blank_is_refused(tiny_data, capsys):
    lines = _rows(tiny_data)
    _inter(tiny_data).write_text("\n".join([lines[0]] + ["\t".join(l.split("\t")[:2] + ["", l.split("\t")[3]])
                                                         for l in lines[1:] if l]) + "\n")
    line = _one_line_error(*_cli([FULL_LOAD], capsys, tiny_data))
    assert "tiny.inter, column 3 (rating:float): every value is missing" in line and "load_col" in line


def test_columns_not_loaded_are_not_judged(tiny_data):
    _edit_field(tiny_data, 10, 3, "five")  # rating is not loaded by this config: RecBole never parses it
    Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data, load_col={"inter": ["user_id", "item_id"]}))


def test_bad_value_deep_in_a_large_file_is_located(tiny_data, capsys):
    rows = [f"{1 + i % 500}\t{1 + i % 997}\t4\t{880000000 + i}" for i in range(100_000)]
    rows[50_000] = "7\t8\tfour\t880000000"  # line 50,002 (after the header)
    _inter(tiny_data).write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n")
    line = _one_line_error(*_cli([FULL_LOAD], capsys, tiny_data))
    assert "tiny.inter, line 50002, column 3 (rating:float): 'four' is not a number" in line


def test_blank_lines_do_not_shift_reported_line_numbers(tiny_data):
    lines = _rows(tiny_data)
    lines.insert(3, "")
    lines.insert(5, "")
    _inter(tiny_data).write_text("\n".join(lines))
    _edit_field(tiny_data, 12, 3, "x")
    with pytest.raises(DataFormatError, match=r"tiny\.inter, line 12, column 3 \(rating:float\): 'x'"):
        Config(model="BPR", dataset="tiny", config_dict=fast_config(
            tiny_data, load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]}))


def test_header_only_inter_is_refused(tiny_data, capsys):
    _inter(tiny_data).write_text(_rows(tiny_data)[0] + "\n")
    line = _one_line_error(*_cli([], capsys, tiny_data))
    assert "tiny.inter has a header but no rows" in line


def test_inter_without_item_column_is_refused(tiny_data, capsys):
    lines = [l.split("\t") for l in _rows(tiny_data) if l]
    _inter(tiny_data).write_text("\n".join("\t".join([p[0]] + p[2:]) for p in lines) + "\n")
    line = _one_line_error(*_cli(["--load_col=None"], capsys, tiny_data))
    assert "tiny.inter, line 1 (header): no column 'item_id' (ITEM_ID_FIELD)" in line and "--ITEM_ID_FIELD" in line
    write_tiny_dataset(tiny_data / "data")
    line = _one_line_error(*_cli(["--load_col={'inter':['user_id','rating']}"], capsys, tiny_data))
    assert "column 'item_id' (ITEM_ID_FIELD) is not loaded" in line and "load_col.inter" in line


def test_non_utf8_byte_names_line_and_column(tiny_data, capsys):
    data = _inter(tiny_data).read_bytes().split(b"\n")
    parts = data[9].split(b"\t")
    parts[2] = b"\xff4"
    data[9] = b"\t".join(parts)
    _inter(tiny_data).write_bytes(b"\n".join(data))
    line = _one_line_error(*_cli([], capsys, tiny_data))
    assert "tiny.inter, line 10, column 3: byte(s) ff are not valid utf-8" in line and "--encoding=" in line


def test_stray_quote_names_line_and_column(tiny_data, capsys):
    lines = _rows(tiny_data)
    lines[9] = lines[9].replace("\t", '\t"', 1)
    _inter(tiny_data).write_text("\n".join(lines))
    line = _one_line_error(*_cli([], capsys, tiny_data))
    assert "tiny.inter, line 10, column 2: a double quote opens a quoted field that does not close" in line


def test_well_formed_quotes_are_read_like_recbole(tiny_data):
    """A quoted field holding the separator, and quotes inside an unquoted field, are valid CSV."""
    item = tiny_data / "data" / "tiny" / "tiny.item"
    lines = item.read_text().split("\n")
    lines[2] = '2\t"Movie\t2, the ""best"""\t1992\tComedy'
    lines[3] = '3\tMovie "3" story\t1993\tDrama'
    item.write_text("\n".join(lines))
    cfg = fast_config(tiny_data, load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "movie_title"]})
    Config(model="BPR", dataset="tiny", config_dict=cfg)


def test_two_megabyte_field_is_refused(tiny_data, capsys):
    item = tiny_data / "data" / "tiny" / "tiny.item"
    lines = item.read_text().split("\n")
    parts = lines[3].split("\t")
    parts[1] = "x" * 2_000_000
    lines[3] = "\t".join(parts)
    item.write_text("\n".join(lines))
    line = _one_line_error(*_cli([FULL_LOAD], capsys, tiny_data))
    assert "tiny.item, line 4, column 2: a field of 2,000,000 characters" in line and "131,072" in line


@pytest.mark.parametrize("split", ["", LOO])
def test_every_user_with_one_interaction_is_refused(tiny_data, capsys, split):
    seen, keep = set(), []
    for row in _rows(tiny_data)[1:]:
        if row and row.split("\t")[0] not in seen:
            seen.add(row.split("\t")[0])
            keep.append(row)
    _inter(tiny_data).write_text(_rows(tiny_data)[0] + "\n" + "\n".join(keep) + "\n")
    line = _one_line_error(*_cli([FULL_LOAD] + ([split] if split else []), capsys, tiny_data))
    assert "tiny.inter: every user has a single interaction" in line and "group_by: none" in line


def test_missing_item_feature_is_mean_filled_and_stated(tiny_data):
    item = tiny_data / "data" / "tiny" / "tiny.item"
    item.write_text(item.read_text().replace("release_year:token", "release_year:float").replace("\t1993\t", "\t\t"))
    config = Config(model="BPR", dataset="tiny", config_dict=fast_config(
        tiny_data, load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "release_year"]}))
    assert any("missing value(s) in column release_year" in n and "column mean" in n for n in config.data_notes)


# --- handled by a stated rule ------------------------------------------------------------------
def test_utf8_byte_order_mark_is_skipped_and_stated(tiny_data, capsys, caplog):
    _inter(tiny_data).write_bytes(b"\xef\xbb\xbf" + _inter(tiny_data).read_bytes())
    code, text = _cli([FULL_LOAD], capsys, tiny_data)
    assert code == 0, text
    assert "test result: recall@10" in text
    assert any("byte-order mark" in r.getMessage() and "utf-8-sig" in r.getMessage() for r in caplog.records)


def _split_pairs(tiny_data, **overrides):
    from recbole.data import create_dataset, data_preparation

    config = Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data, **overrides))
    train, valid, test = data_preparation(config, create_dataset(config))

    def pairs(loader):
        inter = loader._dataset.inter_feat
        return set(zip(inter["user_id"].tolist(), inter["item_id"].tolist()))

    return config, pairs(train), pairs(valid), pairs(test)


@pytest.mark.parametrize("split", [{"RS": [0.8, 0.1, 0.1]}, {"LS": "valid_and_test"}])
def test_duplicated_rows_never_reach_two_splits(tiny_data, split):
    lines = [l for l in _rows(tiny_data) if l]
    _inter(tiny_data).write_text("\n".join(lines + lines[1:]) + "\n")  # every row twice
    load = {"inter": ["user_id", "item_id", "rating", "timestamp"]}
    eval_args = {"split": split, "order": "TO" if "LS" in split else "RO", "group_by": "user", "mode": "full"}
    config, train, valid, test = _split_pairs(tiny_data, load_col=load, eval_args=eval_args)
    assert config["rm_dup_inter"] == "first"
    assert any(f"{len(lines) - 1:,} row(s) repeat an earlier user-item pair" in n and "rm_dup_inter=first" in n
               for n in config.data_notes)
    assert test and valid and not (test & train) and not (valid & train) and not (test & valid)
    # An explicit rm_dup_inter: ~ keeps them, and the note says what that means.
    config, train, _, test = _split_pairs(tiny_data, load_col=load, eval_args=eval_args, rm_dup_inter=None)
    assert config["rm_dup_inter"] is None and test & train
    assert any("kept, as rm_dup_inter is set to None" in n for n in config.data_notes)


@pytest.mark.slow
def test_rules_are_in_the_log_of_the_real_cli(tmp_path):
    """Through run_recbole_llm.py: the byte-order mark and duplicate rules are printed and in ./log."""
    write_tiny_dataset(tmp_path / "data")
    lines = [l for l in _rows(tmp_path) if l]
    _inter(tmp_path).write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines + lines[1:4]) + "\n").encode())
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_llm.py"), "--model=BPR", "--dataset=tiny", "--epochs=1",
         f"--data_path={tmp_path / 'data'}", "--state=WARNING", "--show_progress=False", FULL_LOAD],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    log = "".join(p.read_text() for p in (tmp_path / "log").rglob("*.log"))
    for text in (proc.stdout + proc.stderr, log):
        assert "3 row(s) repeat an earlier user-item pair" in text and "rm_dup_inter=first" in text
        assert "byte-order mark" in text and "utf-8-sig" in text


# --- output folders and writes -----------------------------------------------------------------
def test_output_folder_that_is_a_file_is_refused(tiny_data, capsys):
    (tiny_data / "saved").write_text("not a folder")
    line = _one_line_error(*_cli([], capsys, tiny_data))
    assert "checkpoint_dir (--checkpoint_dir=DIR): " in line and "saved is a file, not a folder" in line
    line = _one_line_error(*_cli([f"--checkpoint_dir={tiny_data / 'saved' / 'sub'}"], capsys, tiny_data))
    assert "cannot be created: " in line and "saved is a file" in line
    (tiny_data / "saved").unlink()
    (tiny_data / "log").write_text("a file where RecBole puts its logs")
    line = _one_line_error(*_cli([], capsys, tiny_data))
    assert "RecBole's log folder ./log" in line and "is a file, not a folder" in line


def test_unwritable_output_folder_is_refused(tiny_data, capsys, monkeypatch):
    locked = tiny_data / "readonly"
    locked.mkdir()
    real_access = os.access
    # Root can write anywhere, so the test denies access to one folder the way a read-only mount does.
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == locked else real_access(p, mode))
    line = _one_line_error(*_cli([f"--checkpoint_dir={locked / 'ckpt'}"], capsys, tiny_data))
    assert f"{locked / 'ckpt'} cannot be written ({locked} is not writable" in line


def test_unwritable_output_folder_real_permissions(tmp_path):
    """A folder without write permission for the user running the CLI (as 'nobody' when run by root)."""
    write_tiny_dataset(tmp_path / "data")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    for p in [tmp_path, tmp_path / "data", tmp_path / "data" / "tiny"]:
        p.chmod(0o755)
    for p in (tmp_path / "data" / "tiny").iterdir():
        p.chmod(0o644)
    as_root = os.geteuid() == 0
    env = _env()
    env["HOME"] = str(tmp_path)
    env["RECBOLE_LLM_CACHE"] = str(tmp_path / "cache")
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO / "run_recbole_llm.py"), "--model=BPR", "--dataset=tiny",
             f"--data_path={tmp_path / 'data'}", f"--checkpoint_dir={locked / 'ckpt'}", "--state=WARNING"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
            preexec_fn=(lambda: os.setuid(65534)) if as_root else None)
    except PermissionError:
        pytest.skip("user 'nobody' cannot run this Python installation")
    if as_root and "Permission denied" in proc.stderr and "recbole-llm: error" not in proc.stderr:
        pytest.skip("user 'nobody' cannot read the installation")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and f"{locked / 'ckpt'} cannot be written" in proc.stderr


def test_disk_full_during_a_save_is_one_line(tiny_data, capsys, monkeypatch):
    import recbole.trainer.trainer as recbole_trainer

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(recbole_trainer.torch, "save", full)
    line = _one_line_error(*_cli([], capsys, tiny_data))
    assert "cannot write a checkpoint, log or cache file: No space left on device" in line
    assert "--checkpoint_dir" in line


# --- the benchmark store -----------------------------------------------------------------------
def test_corrupt_benchmark_store_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "results.sqlite").write_bytes(os.urandom(8192))
    assert cli_main(["benchmark", "--suite", "gat_gpt2_table", "--results-dir", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "results store" in err and "results.sqlite cannot be used (file is not a database)" in err


@pytest.mark.slow
def test_locked_benchmark_store_is_one_line_after_a_short_wait(tmp_path, monkeypatch, capsys):
    from recbole_llm.benchmark.store import ResultsStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    ResultsStore(tmp_path / "res").close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(120)",
         str(tmp_path / "res" / "results.sqlite")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(ResultsStore.__init__, "__defaults__", (60.0, 2.0))
        start = time.monotonic()
        assert cli_main(["benchmark", "--suite", "gat_gpt2_table", "--results-dir", str(tmp_path / "res")]) == 2
        assert time.monotonic() - start < 30
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "stayed locked by another process for 2 s" in err and "--results-dir" in err
    with ResultsStore(tmp_path / "res") as store:  # usable again once the lock is gone
        assert store.counts() == {}


# --- atomic_data -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../X", "../X", "a/b", "..", "/abs", ".hidden"])
def test_atomic_data_name_cannot_leave_out(tmp_path, capsys, name):
    from atomic_data.__main__ import main as data_main
    from test_atomic_data import write_ml1m_zip

    raw = write_ml1m_zip(tmp_path / "ml-1m.zip")
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert data_main(["convert", "ml-1m", "--raw", str(raw), "--out", str(out), "--name", name]) == 2
    err = capsys.readouterr().err
    assert f"dataset name {name!r} is not a plain folder name" in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert data_main(["convert", "ml-1m", "--raw", str(raw), "--out", str(out), "--name", "my-ml"]) == 0
    assert (out / "my-ml" / "my-ml.inter").is_file()


# --- distributed: checked before the processes start -------------------------------------------
@pytest.mark.slow
def test_nproc_2_with_bad_data_is_one_line(tmp_path):
    write_tiny_dataset(tmp_path / "data")
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().split("\n")
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\tyesterday"
    inter.write_text("\n".join(lines))
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_llm.py"), "--model=BPR", "--dataset=tiny", "--nproc=2",
         f"--data_path={tmp_path / 'data'}", "--state=WARNING", FULL_LOAD.replace(",'item':['item_id','movie_title','genre']", "")],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "tiny.inter, line 5, column 4 (timestamp:float): 'yesterday' is not a number" in proc.stderr
