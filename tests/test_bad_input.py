"""Bad input never gives a traceback: malformed atomic files, invalid settings, broken YAML,
corrupt checkpoints, duplicate plugins, missing optional libraries, stale staging folders and
dry runs each end in one message (what, where, what to do) and exit code 2 through the CLI."""

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import atomic_data
from recbole_llm import plugins
from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config
from recbole_llm.errors import ConfigError, CorruptFileError, DataFormatError, MissingDependencyError

from conftest import cli_in_process as _cli, fast_config, write_tiny_dataset

REPO = Path(__file__).resolve().parent.parent


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("RECBOLE_LLM_DEBUG", None)
    return env


def _inter(tmp):
    return tmp / "data" / "tiny" / "tiny.inter"


def _set_line(path, lineno, text):
    lines = path.read_text().split("\n")
    lines[lineno - 1] = text
    path.write_text("\n".join(lines))


# --- 1. atomic files -------------------------------------------------------------------------
def test_header_without_types_names_file_and_line(tiny_data, capsys):
    _set_line(_inter(tiny_data), 1, "user_id\titem_id\trating\ttimestamp")
    code, text = _cli([], capsys, tiny_data)
    assert code == 2
    assert "tiny.inter, line 1 (header)" in text and "'user_id' is not written 'name:type'" in text
    assert text.count("\n") <= 2  # one short message


def test_header_with_commas_names_the_separator(tiny_data, capsys):
    _set_line(_inter(tiny_data), 1, "user_id:token,item_id:token,rating:float,timestamp:float")
    code, text = _cli([], capsys, tiny_data)
    assert code == 2
    assert "tiny.inter, line 1 (header)" in text and "separated by commas" in text and "field_separator" in text


def test_header_unknown_type(tiny_data, capsys):
    _set_line(_inter(tiny_data), 1, "user_id:token\titem_id:token\trating:int\ttimestamp:float")
    code, text = _cli([], capsys, tiny_data)
    assert code == 2
    assert "tiny.inter, line 1" in text and "'rating' has unknown type 'int'" in text and "token_seq" in text


def test_item_file_header_is_checked_too(tiny_data, capsys):
    item = tiny_data / "data" / "tiny" / "tiny.item"
    _set_line(item, 1, "item_id:token\tmovie_title\trelease_year:token\tgenre:token_seq")
    code, text = _cli(["--load_col={'inter':['user_id','item_id'],'item':['item_id','genre']}"], capsys, tiny_data)
    assert code == 2 and "tiny.item, line 1" in text and "'movie_title'" in text


def test_row_with_wrong_field_count_names_line(tiny_data, capsys):
    _set_line(_inter(tiny_data), 7, "3\t4\t5")
    code, text = _cli([], capsys, tiny_data)
    assert code == 2
    assert "tiny.inter, line 7: 3 fields, but the header has 4" in text


def test_files_not_loaded_are_not_checked_and_comma_separator_works(tiny_data):
    # A broken .item is ignored when load_col does not load items (RecBole skips the file).
    _set_line(tiny_data / "data" / "tiny" / "tiny.item", 1, "item_id movie_title")
    cfg = fast_config(tiny_data, load_col={"inter": ["user_id", "item_id"]})
    Config(model="BPR", dataset="tiny", config_dict=cfg)
    # A comma-separated file is fine with field_separator ','.
    inter = _inter(tiny_data)
    inter.write_text(inter.read_text().replace("\t", ","))
    Config(model="BPR", dataset="tiny", config_dict=dict(cfg, field_separator=","))
    with pytest.raises(DataFormatError, match=r"tiny\.inter, line 1 .*separated by commas"):
        Config(model="BPR", dataset="tiny", config_dict=cfg)


def test_row_check_of_a_million_lines_finds_the_last_line(tmp_path):
    """Chunked reading keeps line numbers across chunks (time: benchmarks/atomic_check_speed.py)."""
    from recbole_llm.data.atomic_check import check_rows

    path = tmp_path / "big.inter"
    row = b"12\t345\t4\t880000000\n"
    path.write_bytes(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + row * 1_000_000 + b"1\t2\n")
    with pytest.raises(DataFormatError, match=r"big\.inter, line 1000002: 2 fields"):
        check_rows(path, 4, b"\t")
    path.write_bytes(b"h:token\n" + b"1\t2\n" * 3 + b"\n" + b"1\t2")  # blank line, no final newline
    check_rows(path, 2, b"\t")


# --- 2. settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arg, expected",
    [
        ("--learning_rate=abc", "learning_rate='abc' is invalid: expected a number > 0"),
        ("--learning_rate=0", "learning_rate=0 is invalid"),
        ("--epochs=-1", "epochs=-1 is invalid: expected an integer >= 0"),
        ("--epochs=1.5", "epochs=1.5 is invalid"),
        ("--train_batch_size=0", "train_batch_size=0 is invalid: expected an integer >= 1"),
        ("--eval_batch_size=big", "eval_batch_size='big' is invalid"),
        ("--stopping_step=-1", "stopping_step=-1 is invalid"),
        ("--eval_step=-2", "eval_step=-2 is invalid"),
        ("--embedding_size=0", "embedding_size=0 is invalid"),
        ("--weight_decay=-0.1", "weight_decay=-0.1 is invalid: expected a number >= 0"),
        ("--seed=abc", "seed='abc' is invalid: expected an integer"),
        ("--topk=[0,10]", "topk=[0, 10] is invalid"),
        ("--metrics=['Recall','Foo']", "unknown metric 'Foo'"),
        ("--valid_metric=NDCG@20", "valid_metric='NDCG@20' is invalid: k=20 is not in topk [10]"),
        ("--valid_metric=AUC", "'AUC' is not one of the evaluated metrics"),
        ("--eval_args={'split':{'XS':[0.8,0.1,0.1]}}", "eval_args.split={'XS': [0.8, 0.1, 0.1]} is invalid"),
        ("--eval_args={'split':{'RS':[0.8,0.2]}}", "eval_args.split.RS=[0.8, 0.2] is invalid: expected 3"),
        ("--eval_args={'split':{'LS':'valid'}}", "eval_args.split.LS='valid' is invalid"),
        ("--eval_args={'mode':'uni'}", "eval_args.mode='uni' is invalid: expected 'full', 'labeled'"),
        ("--eval_args={'order':'XO'}", "eval_args.order='XO' is invalid"),
        (("--metrics=['AUC']", "--valid_metric=AUC"), "eval_args.mode='full' is invalid: value metrics ['AUC'] need labeled"),
        (("--metrics=['AUC']",), "valid_metric='MRR@10' is invalid: 'MRR' is not one of the evaluated metrics ['AUC']; add it to metrics or pick one of them. Example: --valid_metric=AUC."),
        ("--eval_args={'group_by':'item'}", "eval_args.group_by='item' is invalid"),
        ("--train_neg_sample_args={'distribution':'zipf'}", "train_neg_sample_args.distribution='zipf'"),
        ("--train_neg_sample_args={'distribution':'uniform','sample_num':0}", "train_neg_sample_args.sample_num=0"),
    ],
)
def test_invalid_setting_names_key_value_and_allowed(tiny_data, capsys, arg, expected):
    code, text = _cli([arg] if isinstance(arg, str) else list(arg), capsys, tiny_data)
    assert code == 2
    assert "recbole-llm: error: Setting " in text and expected in text, text


def test_valid_recbole_settings_are_accepted(tiny_data):
    base = fast_config(tiny_data)
    for extra in [
        {"epochs": 0, "stopping_step": 0, "eval_step": 0, "weight_decay": 0, "learning_rate": 1},
        {"topk": 10, "metrics": "NDCG", "valid_metric": "ndcg@10"},
        {"metrics": ["Recall", "GAUC", "ItemCoverage"], "valid_metric": "GAUC", "topk": [5, 10]},
        {"eval_args": {"split": {"RS": [8, 1, 1]}, "order": "RO", "group_by": "none", "mode": "uni100"}},
        {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "RO", "mode": {"valid": "pop50", "test": "full"}}},
        {"train_neg_sample_args": None},
        {"train_neg_sample_args": {"distribution": "popularity", "sample_num": 2, "alpha": 0.5, "dynamic": False}},
    ]:
        Config(model="BPR", dataset="tiny", config_dict=dict(base, **extra))
    # CLI strings, as RecBole converts them
    Config(model="BPR", dataset="tiny", config_dict=dict(base, learning_rate="1e-3", epochs="3", topk="[5,10]"))


def test_epochs_zero_evaluates_without_training(tiny_data, capsys):
    code, text = _cli(["--epochs=0"], capsys, tiny_data)
    assert code == 0
    assert "no training happened" in text and "test result: " in text and "ndcg@10" in text


def test_missing_config_file_exits_2_and_names_it(tiny_data, capsys):
    code, text = _cli(["--config_files=missing.yaml"], capsys, tiny_data)
    assert code == 2
    assert "config file missing.yaml not found" in text and "--config_files" in text
    assert text.count("\n") <= 1


@pytest.mark.parametrize("arg, expected", [
    ("--epochs", "'--epochs' has no value (write --epochs=VALUE)"),
    ("epochs=3", "'epochs=3' lacks the leading dashes (write --epochs=3)"),
    ("stray", "'stray' is not a --key=value setting"),
])
def test_malformed_setting_exits_2_with_the_form_to_use(tiny_data, capsys, arg, expected):
    code, text = _cli([arg], capsys, tiny_data)
    assert code == 2
    assert expected in text and "--key=value" in text
    assert text.count("\n") <= 1


def test_setting_given_twice_with_different_values_exits_2(tiny_data, capsys):
    code, text = _cli(["--learning_rate=0.1", "--learning_rate=0.2"], capsys, tiny_data)
    assert code == 2
    assert "--learning_rate is given twice with different values ('0.1', '0.2')" in text


def test_run_script_malformed_setting_exit_code_is_2():
    """The real entry point (a subprocess): exit status 2 and one line on stderr, no traceback."""
    proc = subprocess.run([sys.executable, str(REPO / "run_recbole_llm.py"), "--model=BPR", "--dataset=ml-100k",
                           "epochs=3"], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2
    assert "lacks the leading dashes" in proc.stderr and "Traceback" not in proc.stderr


# --- 3. YAML -----------------------------------------------------------------------------------
def test_invalid_yaml_config_file_names_file_and_line(tiny_data, capsys):
    bad = tiny_data / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: 0.01\nmetrics: [Recall, NDCG\ntopk: 10\n")
    code, text = _cli([f"--config_files={bad}"], capsys, tiny_data)
    assert code == 2
    assert f"Config file {bad}, line 4" in text and "not valid YAML" in text


def test_yaml_config_file_not_a_mapping(tiny_data, capsys):
    bad = tiny_data / "list.yaml"
    bad.write_text("- epochs: 1\n- topk: 10\n")
    code, text = _cli([f"--config_files={bad}"], capsys, tiny_data)
    assert code == 2
    assert f"Config file {bad}, line 1: the top level is a list, not a mapping" in text


def test_invalid_yaml_property_file_names_file_and_line(tiny_data, monkeypatch):
    bad = tiny_data / "tiny.yaml"
    bad.write_text("field_separator: \"\\t\"\nload_col:\n  inter: [user_id, item_id\n")
    monkeypatch.setattr(Config, "_dataset_files", lambda self, dataset: [str(bad)])
    with pytest.raises(ConfigError, match=rf"Property file {bad}, line \d+, column \d+: not valid YAML"):
        Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data))
    bad.write_text("just a string\n")
    with pytest.raises(ConfigError, match=rf"Property file {bad}, line 1: the top level is a str"):
        Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data))


# --- 4. checkpoints ----------------------------------------------------------------------------
def test_load_data_and_model_missing_or_corrupt_checkpoint(tmp_path):
    from recbole_llm.quick_start import load_data_and_model

    missing = tmp_path / "BPR-missing.pth"
    with pytest.raises(CorruptFileError, match=r"Model checkpoint .*BPR-missing\.pth does not exist"):
        load_data_and_model(str(missing))
    corrupt = tmp_path / "BPR-corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CorruptFileError, match=r"Model checkpoint .*BPR-corrupt\.pth cannot be read"):
        load_data_and_model(str(corrupt))
    import torch

    other = tmp_path / "other.pth"
    torch.save({"weights": 1}, other)
    with pytest.raises(CorruptFileError, match=r"other\.pth is not a RecBole checkpoint"):
        load_data_and_model(str(other))


# --- 5. plugins --------------------------------------------------------------------------------
class _FakeDist:
    def __init__(self, name):
        self.name = name


class _FakeEP:
    def __init__(self, name, value, dist):
        self.name, self.value, self.dist = name, value, _FakeDist(dist)

    def load(self):
        return importlib.import_module(self.value)



def test_two_entry_points_with_one_name_are_reported(monkeypatch):
    eps = [
        _FakeEP("dup", "tests_support.plugin_models", "pkg-one"),
        _FakeEP("dup", "tests_support.other_plugin", "pkg-two"),
    ]
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group=None: eps)
    with pytest.warns(plugins.PluginWarning):
        registry = plugins.build_registry()
    problems = [e for e in registry.errors if "named 'dup'" in e]
    assert problems, registry.errors
    assert "pkg-one" in problems[0] and "pkg-two" in problems[0]
    assert "tests_support.plugin_models" in problems[0] and "tests_support.other_plugin" in problems[0]
    assert registry.plugins.count("dup") == 1


# --- 6. optional libraries ---------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("faiss") is not None, reason="faiss is installed")
def test_model_with_missing_library_names_pip_package(tiny_data, capsys):
    code, text = _cli(["--model=NCL"], capsys, tiny_data)
    assert code == 2
    assert "Model 'NCL' needs the optional library 'faiss'" in text and "pip install faiss-cpu" in text


@pytest.mark.skipif(importlib.util.find_spec("xgboost") is not None, reason="xgboost is installed")
def test_get_model_exlib_missing_library():
    from recbole_llm.utils import get_model

    with pytest.raises(MissingDependencyError, match="XGBoost.*pip install xgboost"):
        get_model("XGBoost")


@pytest.mark.skipif(importlib.util.find_spec("faiss") is not None, reason="faiss is installed")
def test_lazy_import_during_training_is_mapped(tiny_data, monkeypatch):
    """NCL imports faiss only when training starts: that path is mapped too."""
    from recbole_llm import utils
    from recbole_llm.quick_start import run_experiment

    monkeypatch.setattr(utils, "RECBOLE_OPTIONAL_DEPENDENCIES", {})
    with pytest.raises(MissingDependencyError, match="Model 'NCL' needs the optional library 'faiss'.*faiss-cpu"):
        run_experiment("NCL", "tiny", config_dict=fast_config(tiny_data, epochs=1), saved=False)


# --- 7. staging folders ------------------------------------------------------------------------
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path):
    import socket

    dead = _dead_pid()
    host = socket.gethostname()
    stale_old = tmp_path / f".tiny.staging-{dead}"
    stale_new = tmp_path / f".tiny.staging-{host}-{dead}"
    live = [tmp_path / f".tiny.staging-{os.getpid()}", tmp_path / f".tiny.staging-{host}-{os.getppid()}"]
    other_host = tmp_path / f".tiny.staging-some-other-host-{dead}"
    other_dataset = tmp_path / f".other.staging-{dead}"
    for folder in [stale_old, stale_new, other_host, other_dataset] + live:
        folder.mkdir()
        (folder / "tiny.inter").write_text("half")

    def convert(raw, out_dir, name):
        (Path(out_dir) / f"{name}.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
        return {f"{name}.inter": 1}

    spec = atomic_data.DatasetSpec(name="tiny", description="", files=(), convert=convert, homepage="")
    final = atomic_data.convert_into(spec, {}, tmp_path)
    assert (final / "tiny.inter").is_file()
    assert not stale_old.exists() and not stale_new.exists()
    assert all(folder.exists() for folder in live)
    assert other_host.exists() and other_dataset.exists()
    assert not any(p.name.startswith(".tiny.staging-") and p.name.endswith(f"-{os.getpid()}") and host in p.name
                   for p in tmp_path.iterdir())


# --- 8. benchmark dry run ----------------------------------------------------------------------
def _listing(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


@pytest.mark.slow
def test_benchmark_dry_run_writes_nothing(tmp_path, monkeypatch, capsys):
    # The cache root lies outside the compared folder: recbole_llm.paths creates it on lookup.
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    checkout_store = REPO / "benchmarks" / "results" / "gat_gpt2_table" / "results.sqlite"
    existed = checkout_store.exists()
    before = _listing(tmp_path)
    assert cli_main(["benchmark", "--suite", "gat_gpt2_table", "--dry-run"]) == 0
    assert cli_main(["benchmark", "--suite", "gat_gpt2_table", "--dry-run",
                     "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "states:" in out
    assert _listing(tmp_path) == before
    assert checkout_store.exists() == existed

    # An existing store is read (a failed run shows as failed) and left as it was.
    from recbole_llm.benchmark.store import ResultsStore
    from recbole_llm.benchmark.suite import load_suite, plan_suite

    ready = [r for r in plan_suite(load_suite("gat_gpt2_table")).runs if r.status == "ready"]
    with ResultsStore(tmp_path / "res") as store:
        store.register(ready[0].key, label=ready[0].label, model=ready[0].model, dataset=ready[0].dataset,
                       seed=ready[0].seed)
        store.claim(ready[0].key, "me")
        store.fail(ready[0].key, "me", "boom")
    before = _listing(tmp_path)
    assert cli_main(["benchmark", "--suite", "gat_gpt2_table", "--dry-run",
                     "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "failed=1" in out
    assert _listing(tmp_path) == before


# --- 9. safety net -----------------------------------------------------------------------------
def test_user_file_errors_are_mapped_bugs_keep_their_traceback(tiny_data, monkeypatch, capsys):
    import recbole_llm.quick_start as qs

    def missing(**kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/tiny.kg")

    monkeypatch.setattr(qs, "run_recbole_llm", missing)
    assert cli_main(["--model=BPR", "--dataset=tiny"]) == 2
    err = capsys.readouterr().err
    assert "recbole-llm: error: /nowhere/tiny.kg not found" in err and "Traceback" not in err

    def bad_yaml(**kwargs):
        import yaml

        yaml.safe_load(open(tiny_data / "broken.yaml"))

    (tiny_data / "broken.yaml").write_text("a: [1, 2\nb: 3\n")
    monkeypatch.setattr(qs, "run_recbole_llm", bad_yaml)
    assert cli_main(["--model=BPR", "--dataset=tiny"]) == 2
    err = capsys.readouterr().err
    assert "recbole-llm: error: invalid YAML (" in err and "broken.yaml, line 2)" in err and "Traceback" not in err

    def bug(**kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(qs, "run_recbole_llm", bug)
    with pytest.raises(KeyError):
        cli_main(["--model=BPR", "--dataset=tiny"])

    def bad_setting(**kwargs):
        raise ConfigError("Setting x=1 is invalid")

    monkeypatch.setattr(qs, "run_recbole_llm", bad_setting)
    monkeypatch.setenv("RECBOLE_LLM_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli_main(["--model=BPR", "--dataset=tiny"])


# --- the real command line ---------------------------------------------------------------------
@pytest.mark.slow
def test_subprocess_bad_header_and_bad_setting_exit_2(tmp_path):
    write_tiny_dataset(tmp_path / "data")
    _set_line(_inter(tmp_path), 1, "user_id\titem_id\trating\ttimestamp")
    base = [sys.executable, str(REPO / "run_recbole_llm.py"), "--model=BPR", "--dataset=tiny",
            f"--data_path={tmp_path / 'data'}", "--state=WARNING"]
    proc = subprocess.run(base, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "tiny.inter, line 1 (header)" in proc.stderr

    write_tiny_dataset(tmp_path / "data")
    proc = subprocess.run(base + ["--learning_rate=abc"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "learning_rate='abc'" in proc.stderr


def test_kg_file_checked_only_for_knowledge_models(tiny_data):
    kg = tiny_data / "data" / "tiny" / "tiny.kg"
    kg.write_text("head_id:token\trelation_id\ttail_id:token\n1\tr\t2\n")
    (tiny_data / "data" / "tiny" / "tiny.link").write_text("item_id:token\tentity_id:token\n1\t1\n")
    cfg = fast_config(tiny_data, load_col=None)
    Config(model="BPR", dataset="tiny", config_dict=cfg)  # RecBole does not read .kg for BPR
    with pytest.raises(DataFormatError, match=r"tiny\.kg, line 1 \(header\): field 'relation_id'"):
        Config(model="CKE", dataset="tiny", config_dict=cfg)


@pytest.mark.slow
def test_distributed_run_reraises_the_ranks_error(tiny_data):
    """With nproc=2 the error happens in spawned ranks; the caller gets its type and message."""
    from recbole_llm.quick_start import run_recbole_llm

    import socket

    with socket.socket() as sock:  # a free port: other test runs may share this machine
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    cfg = fast_config(tiny_data, learning_rate="abc")
    with pytest.raises(ConfigError, match="Setting learning_rate='abc' is invalid"):
        run_recbole_llm("BPR", "tiny", config_dict=cfg, saved=False, nproc=2, port=port)
