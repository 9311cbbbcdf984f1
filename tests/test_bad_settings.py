"""Settings are parsed, never evaluated, and a bad one ends in one line and exit code 2.

Issue 19, items 5 and 6 (config side): RecBole's Config passes string settings to ``eval``; ours
parses them as literals, so neither ``--key=value`` nor a benchmark suite's ``config:`` block can
run code. Misspelt keys, nested ``eval_args`` keys, empty test splits, bad distributed arguments,
impossible cut-offs, a diverging run and a GPU request without a GPU are each refused clearly.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import recbole_llm
from recbole_llm import plugins
from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config, parse_setting
from recbole_llm.errors import ConfigError, TrainingDivergedError

from conftest import cli_in_process as _cli, fast_config

REPO = Path(__file__).resolve().parent.parent


def _error_line(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("recbole-llm: error: ")]
    assert len(lines) == 1, text
    return lines[0]


# --- item 5: parsed, never evaluated -----------------------------------------------------------
def test_settings_are_literals_with_recboles_meaning():
    assert parse_setting("5") == 5 and parse_setting("1e-3") == 0.001 and parse_setting("None") is None
    assert parse_setting("[5, 10]") == [5, 10]
    assert parse_setting("{'split': {'RS': [0.8, 0.1, 0.1]}}") == {"split": {"RS": [0.8, 0.1, 0.1]}}
    assert parse_setting("TRUE") is True and parse_setting("false") is False
    assert parse_setting("{movie_title} ({genre})") == "{movie_title} ({genre})"
    assert parse_setting("1/1000") == "1/1000"  # an expression stays text: nothing is computed
    assert parse_setting("[" * 100000) == "[" * 100000


def test_cli_injection_runs_nothing(tiny_data, capsys):
    marker = tiny_data / "INJECTED"
    payload = f"__import__('os').system('touch {marker}')"
    code, text = _cli([f"--learning_rate={payload}"], capsys, tiny_data)
    assert not marker.exists()
    assert code == 2 and "learning_rate=" in _error_line(text)
    # a string setting nothing type-checks keeps the text itself
    config = Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data, wandb_project=payload))
    assert config["wandb_project"] == payload and not marker.exists()


def test_suite_config_injection_runs_nothing_under_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "INJECTED"
    suite = tmp_path / "evil_suite.yaml"
    suite.write_text(
        "name: evil_suite\ntitle: Evil\nseeds: [2020]\n"
        "protocol:\n  eval_args: {split: {RS: [0.8, 0.1, 0.1]}, order: RO, group_by: user, mode: full}\n"
        "  metrics: [NDCG]\n  topk: [10]\n  valid_metric: NDCG@10\n"
        "columns: [ndcg@10]\ndatasets:\n  - {name: ml-100k, label: ML-100K}\n"
        f"config:\n  show_progress: \"__import__('os').system('touch {marker}')\"\n"
        "groups:\n  - name: MF\n    models: [BPR]\n")
    cli_main(["benchmark", "--suite", str(suite), "--dry-run", "--results-dir", str(tmp_path / "res")])
    capsys.readouterr()
    assert not marker.exists()


# --- item 6: misspelt and nested keys ----------------------------------------------------------
@pytest.mark.parametrize("arg,expected", [
    ("--learning_rat=0.1", "unknown setting 'learning_rat'; did you mean 'learning_rate'?"),
    ("--epoch=3", "unknown setting 'epoch'; did you mean 'epochs'?"),
    ("--eval_args={'spilt': {'RS': [0.8, 0.1, 0.1]}}", "unknown key 'spilt' in eval_args; did you mean 'split'?"),
    ("--train_neg_sample_args={'distribution': 'uniform', 'sampel_num': 2}",
     "unknown key 'sampel_num' in train_neg_sample_args; did you mean 'sample_num'?"),
    ("--eval_args={'split': {'RS': [1.0, 0, 0]}}", "the test ratio is 0"),
    ("--eval_args={'split': {'RS': [0.9, 0, 0.1]}}", "the validation ratio is 0 but the run validates"),
    ("--load_col=inter", "Setting load_col='inter' is invalid"),
    ("--learning_rate=1e400", "Setting learning_rate=inf is invalid: expected a number > 0, not infinite or NaN"),
])
def test_bad_setting_one_line_exit_2(tiny_data, capsys, arg, expected):
    code, text = _cli([arg], capsys, tiny_data)
    assert code == 2 and expected in _error_line(text), text


def test_split_without_validation_is_fine_without_validating(tiny_data):
    Config(model="BPR", dataset="tiny", config_dict=fast_config(
        tiny_data, eval_step=0, eval_args={"split": {"RS": [0.9, 0, 0.1]}, "order": "RO", "mode": "full"}))


def test_recbole_model_setting_type(tiny_data, capsys):
    code, text = _cli(["--n_layers=abc"], capsys, tiny_data, model="LightGCN")
    assert code == 2 and "Setting n_layers='abc' is invalid: LightGCN expects an integer" in _error_line(text)
    code, text = _cli(["--n_layers=2.5"], capsys, tiny_data, model="LightGCN")
    assert code == 2 and "n_layers=2.5" in _error_line(text)


def test_plugin_declares_the_keys_it_reads(tiny_data):
    class DeclaringPlugin:
        @recbole_llm.hookimpl
        def register_setting_keys(self):
            return ["my_plugin_threshold"]

    cfg = fast_config(tiny_data, my_plugin_threshold=3)
    with pytest.raises(ConfigError, match="unknown setting 'my_plugin_threshold'"):
        Config(model="BPR", dataset="tiny", config_dict=cfg)
    saved = plugins.get_registry()
    try:
        registry = plugins.set_registry(plugins.build_registry(extra_plugins=[("declaring", DeclaringPlugin())]))
        assert registry.setting_keys["my_plugin_threshold"] == "declaring"
        assert Config(model="BPR", dataset="tiny", config_dict=cfg)["my_plugin_threshold"] == 3
    finally:
        plugins.set_registry(saved)


@pytest.mark.slow
def test_every_shipped_suite_uses_known_settings(tmp_path, monkeypatch, capsys):
    """The unknown-key check must not refuse our own suites (their config/protocol blocks)."""
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    from recbole_llm.benchmark.suite import load_suites, plan_suite

    for path in sorted((REPO / "properties" / "benchmarks").glob("*.yaml")):
        for suite in load_suites(str(path)):
            plan = plan_suite(suite)
            problems = [r for r in plan.runs if "unknown setting" in str(r.reason or "")]
            assert not problems, (path.name, [(r.label, r.reason) for r in problems])


# --- distributed arguments, checked before any process starts ----------------------------------
@pytest.mark.parametrize("args,expected", [
    (["--nproc=0"], "--nproc=0 is invalid"),
    (["--nproc=-3"], "--nproc=-3 is invalid"),
    (["--nproc=2", "--world_size=3"], "--world_size=3 asks for 1 process(es) beyond this machine's --nproc=2"),
    (["--nproc=2", "--world_size=1"], "--world_size=1 has ranks 0..0"),
    (["--nproc=2", "--port=99999"], "--port='99999' is invalid"),
])
def test_distributed_arguments_refused_before_spawning(tiny_data, capsys, args, expected):
    code, text = _cli(args, capsys, tiny_data)
    assert code == 2 and expected in _error_line(text), text


@pytest.mark.slow
def test_world_size_beyond_nproc_exits_quickly_through_the_real_cli(tmp_path):
    """Issue 19: this used to hang for 12 minutes."""
    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    proc = subprocess.run([sys.executable, str(REPO / "run_recbole_llm.py"), "--model=BPR", "--dataset=tiny",
                           f"--data_path={tmp_path / 'data'}", "--nproc=2", "--world_size=3", f"--port={port}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "--world_size=3" in proc.stderr


# --- data-dependent limits ---------------------------------------------------------------------
def test_topk_beyond_the_item_count(tiny_data, capsys):
    code, text = _cli(["--topk=100000", "--valid_metric=NDCG@100000", "--metrics=['NDCG']"], capsys, tiny_data)
    assert code == 2 and "Setting topk=[100000] is invalid: tiny has 60 items" in _error_line(text), text


def test_glta_slots_bounded_before_anything_is_allocated(tiny_data):
    from conftest import glta_tiny_config
    from recbole_llm.quick_start import run_experiment

    with pytest.raises(ConfigError, match=r"glta_slots=100000 is invalid: .* at most the 60 items of tiny"):
        run_experiment("GLTA", "tiny", config_dict=glta_tiny_config(tiny_data, glta_slots=100000))


# --- divergence ---------------------------------------------------------------------------------
def test_huge_learning_rate_reports_no_metrics(tiny_data, capsys):
    code, text = _cli(["--learning_rate=1e308"], capsys, tiny_data)
    assert code == 2 and "BPR diverged" in _error_line(text)
    assert "test result" not in text


def test_non_finite_loss_stops_recbole_and_staged_trainers(tiny_data):
    """The divergence guard is a trainer mixin on RecBole's hooks: a NaN/inf loss and non-finite
    weights before a validation stop the run; the trainer run_experiment builds has it in its class
    and no method patched onto the instance."""
    import inspect

    import torch
    from recbole.trainer import Trainer

    from recbole_llm.training.divergence import FiniteTraining
    from recbole_llm.training.epoch_record import with_run_hooks
    from recbole_llm.training.staged import StagedTrainer

    class _Base:
        def _valid_epoch(self):
            return "validated"

    class _Holder(FiniteTraining, _Base):
        config = {"model": "X", "learning_rate": 0.1}
        model = torch.nn.Linear(2, 1)

    trainer = _Holder()
    trainer._check_nan(torch.tensor(1.0))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TrainingDivergedError, match="the training loss became"):
            trainer._check_nan(torch.tensor(bad))
    assert trainer._valid_epoch() == "validated"
    with torch.no_grad():
        trainer.model.weight[0, 0] = float("inf")
    with pytest.raises(TrainingDivergedError, match="weight weight holds NaN or infinite values before validation"):
        trainer._valid_epoch()
    # StagedTrainer routes every step's loss through _check_nan (the hook the mixin overrides)
    assert "self._check_nan(loss)" in inspect.getsource(StagedTrainer.clip_and_step)
    for cls in (Trainer, StagedTrainer):
        hooked = with_run_hooks(cls)
        assert hooked._check_nan is FiniteTraining._check_nan and issubclass(hooked, cls)
    # a real run: the guard comes from the trainer's class, nothing is set on the instance
    from conftest import fast_config
    from recbole_llm.quick_start import run_experiment

    seen = {}
    run_experiment("BPR", "tiny", config_dict=fast_config(tiny_data, epochs=1), saved=False,
                   on_trained=lambda t, *_: seen.update(cls=type(t), own=set(vars(t))))
    assert issubclass(seen["cls"], FiniteTraining) and not {"_check_nan", "_valid_epoch", "_train_epoch"} & seen["own"]


# --- devices --------------------------------------------------------------------------------------
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("arg", ["--device=cuda", "--device=cuda:0", "--use_gpu=True"])
def test_cuda_request_without_cuda(tiny_data, capsys, arg):
    code, text = _cli([arg], capsys, tiny_data)
    assert code == 2 and "asks for a CUDA GPU, but torch sees none" in _error_line(text)


def test_default_use_gpu_still_runs_on_cpu(tiny_data):
    config = Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data))
    assert config["use_gpu"] is True  # RecBole's default: a GPU if there is one


@pytest.mark.slow
def test_port_in_use_fails_every_rank_with_one_line(tiny_data, capsys):
    """Rank 0 cannot listen on a port another program holds: the run ends (the other rank, which
    waits for rank 0, is stopped too) with one line naming the address."""
    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, text = _cli(["--nproc=2", f"--port={port}"], capsys, tiny_data)
    assert code == 2 and f"could not start at localhost:{port}" in _error_line(text), text
