"""``recbole-llm tune``: search spaces, pruning (RecBole's trainer and StagedTrainer), validation
only, a plugin's model and space, a killed study resumed, two workers sharing one study."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

import recbole_llm
from recbole_llm import plugins
from recbole_llm.cli import main as cli_main
from recbole_llm.errors import ConfigError
from recbole_llm.training.staged import Stage, StagedTrainer
from recbole_llm.tune.space import parse_space, read_space_file
from recbole_llm.tune.study import TuneOptions, Tuner

from tests_support.outside_plugin import make_outside_plugin
from tests_support.reload import REPO_ROOT, fresh_env

TINY = {"epochs": 8, "stopping_step": 100, "train_batch_size": 256, "eval_batch_size": 4096, "embedding_size": 16,
        "metrics": ["NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"}}


# ------------------------------------------------------------------------------------------------
# spaces
# ------------------------------------------------------------------------------------------------
def test_space_parses_every_distribution_and_reads_1e_minus_4_as_a_number(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("fixed: {epochs: 5}\nsearch:\n  learning_rate: {loguniform: [1e-4, 1e-2]}\n"
                    "  n_layers: {int: [1, 4]}\n  hidden: {choice: [[64], [128, 64]]}\n"
                    "  dropout_prob: {uniform: [0, 0.5]}\n  embedding_size: {logint: [16, 128]}\n")
    space = read_space_file(path)
    assert space.fixed == {"epochs": 5}
    assert {n: (p.kind, p.args) for n, p in space.params.items()} == {
        "learning_rate": ("loguniform", [1e-4, 1e-2]), "n_layers": ("int", [1, 4]),
        "hidden": ("choice", [[64], [128, 64]]), "dropout_prob": ("uniform", [0.0, 0.5]),
        "embedding_size": ("logint", [16, 128])}
    # defaults inside/outside the space (for the study's first trial)
    assert space.params["hidden"].optuna_value([128, 64]) == "[128, 64]"
    assert space.params["hidden"].decode("[128, 64]") == [128, 64]
    assert space.params["n_layers"].optuna_value(5) is None and space.params["n_layers"].optuna_value(2) == 2
    assert space.params["learning_rate"].optuna_value(0.001) == 0.001


@pytest.mark.parametrize("text, expected", [
    ("search: {lr: {normal: [0, 1]}}", "unknown distribution 'normal'"),
    ("search: {learning_rate: {loguniform: [0, 1.0e-2]}}", "loguniform needs 0 < low < high"),
    ("search: {n_layers: {int: [4, 1]}}", "int needs low <= high"),
    ("search: {n_layers: {int: [1.5, 3]}}", "int takes integers"),
    ("search: {x: {choice: []}}", "choice takes a list"),
    ("search: {x: [1, 2]}", "must be one distribution"),
    ("search: {}", "'search' must be a non-empty mapping"),
    ("serach: {x: {choice: [1]}}", "unknown section(s) ['serach']"),
    ("fixed: {x: 1}\nsearch: {x: {choice: [1, 2]}}", "both fixed and searched"),
    ("search: {x: {choice: [1, 1]}}", "the same value twice"),
])
def test_bad_space_raises_a_config_error_naming_the_problem(text, expected):
    with pytest.raises(ConfigError) as err:
        parse_space(yaml.safe_load(text), "s.yaml")
    assert expected in str(err.value) and "search space s.yaml" in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("search: {learning_rat: {loguniform: [1.0e-4, 1.0e-2]}}", "search.learning_rat is not a setting of BPR"),
    ("search: {learning_rate: {uniform: [1, 0]}}", "uniform needs low < high"),
    ("search: [1, 2", "not valid YAML"),
])
def test_cli_bad_space_exits_2_with_one_line(tiny_data, capsys, text, expected):
    (tiny_data / "s.yaml").write_text(text)
    code = cli_main(["tune", "--model=BPR", "--dataset=tiny", "--trials=1", "--space=s.yaml",
                     f"--data_path={tiny_data / 'data'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("recbole-llm tune: error:"), err
    assert expected in err


def test_cli_searched_key_also_on_the_command_line_exits_2(tiny_data, capsys):
    (tiny_data / "s.yaml").write_text("search: {learning_rate: {loguniform: [1.0e-4, 1.0e-2]}}")
    code = cli_main(["tune", "--model=BPR", "--dataset=tiny", "--space=s.yaml", "--learning_rate=0.01",
                     f"--data_path={tiny_data / 'data'}"])
    err = capsys.readouterr().err
    assert code == 2 and "--learning_rate is given on the command line but is also searched" in err


def test_cli_unknown_model_and_missing_space_exit_2(tiny_data, capsys):
    assert cli_main(["tune", "--model=NoSuchModel", "--dataset=tiny", f"--data_path={tiny_data / 'data'}"]) == 2
    assert "NoSuchModel" in capsys.readouterr().err
    assert cli_main(["tune", "--model=Pop", "--dataset=tiny", f"--data_path={tiny_data / 'data'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No search space for Pop" in err and "--space=FILE" in err


def test_every_shipped_space_names_its_source_knows_its_keys_and_holds_the_defaults():
    """Each properties/search file: a header comment citing where its ranges come from, keys that are
    settings of the model, and the model's defaults inside the space (the study's first trial)."""
    from recbole_llm.config import Config
    from recbole_llm.tune.space import check_against_config

    files = sorted((REPO_ROOT / "properties" / "search").glob("*.yaml"))
    assert {"BPR", "LightGCN", "SASRec", "MultiVAE", "NeuMF", "GLTA", "HeLLM", "GraphAttentiveGPT2"} <= {
        f.stem for f in files}
    for f in files:
        header = [line for line in f.read_text().splitlines() if line.startswith("#")]
        assert len(header) >= 2 and any(k in " ".join(header) for k in ("http", "et al.", "properties/model/")), f
        space = read_space_file(f)
        config = Config(model=f.stem, dataset="ml-100k", config_dict=dict(space.fixed))
        check_against_config(space, config, {})
        outside = {n: config[n] for n, p in space.params.items() if p.optuna_value(config[n]) is None}
        assert not outside, (f.stem, outside)


# ------------------------------------------------------------------------------------------------
# pruning, validation only: RecBole's trainer and a StagedTrainer
# ------------------------------------------------------------------------------------------------
class StagedMF(GeneralRecommender):
    """Matrix factorisation trained by :class:`StagedMFTrainer` (one validated epoch stage)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.user_emb = torch.nn.Embedding(self.n_users, config["embedding_size"])
        self.item_emb = torch.nn.Embedding(self.n_items, config["embedding_size"])
        torch.nn.init.normal_(self.user_emb.weight, std=0.1)
        torch.nn.init.normal_(self.item_emb.weight, std=0.1)

    def calculate_loss(self, interaction):
        u = self.user_emb(interaction[self.USER_ID])
        pos = (u * self.item_emb(interaction[self.ITEM_ID])).sum(-1)
        neg = (u * self.item_emb(interaction[self.NEG_ITEM_ID])).sum(-1)
        return -torch.nn.functional.logsigmoid(pos - neg).mean()

    def predict(self, interaction):
        return (self.user_emb(interaction[self.USER_ID]) * self.item_emb(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        return (self.user_emb(interaction[self.USER_ID]) @ self.item_emb.weight.T).view(-1)


class StagedMFTrainer(StagedTrainer):
    def stages(self):
        return [
            Stage("warm", run=lambda trainer: {}),
            Stage("train", epochs=int(self.config["epochs"]), validate=True,
                  learning_rate=float(self.config["learning_rate"]),
                  parameters=lambda: list(self.model.parameters()),
                  train_epoch=lambda tr, epoch, opt: tr.run_batches(
                      "train", epoch, tr.train_data, lambda b: tr.model.calculate_loss(b.to(tr.device)), opt)),
        ]


class _StagedPlugin:
    @recbole_llm.hookimpl
    def register_models(self):
        return [StagedMF]

    @recbole_llm.hookimpl
    def register_trainers(self):
        return {"StagedMF": StagedMFTrainer}


@pytest.fixture
def staged_registry():
    plugins.set_registry(plugins.build_registry(extra_plugins=[("staged", _StagedPlugin())], load_entry_points=False))
    yield
    plugins.set_registry(None)


class _NoTest:
    """Stands in for the test split: touching it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"tuning touched the test split ({name})")

    def __iter__(self):
        raise AssertionError("tuning iterated over the test split")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["BPR", "StagedMF"])
def test_a_trial_whose_first_epochs_are_bad_is_pruned_and_test_is_never_evaluated(tiny_data, monkeypatch,
                                                                                  staged_registry, model):
    import recbole_llm.quick_start as qs

    real = qs.data_preparation
    monkeypatch.setattr(qs, "data_preparation", lambda config, dataset: (*real(config, dataset)[:2], _NoTest()))
    (tiny_data / "s.yaml").write_text("search: {learning_rate: {choice: [0.05, 1.0e-7]}}")
    lines = []
    tuner = Tuner(TuneOptions(model=model, dataset="tiny", n_trials=3, space_file="s.yaml", out=str(tiny_data / "t"),
                              overrides=dict(TINY, data_path=str(tiny_data / "data")), pruner_startup_trials=2,
                              pruner_warmup_steps=1, default_trial=False), log=lines.append)
    study = tuner.open_study()
    for lr in (0.05, 0.05, 1e-7):  # two good trials set the median, then one that cannot learn
        study.enqueue_trial({"learning_rate": lr})
    tuner.run()
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"], lines
    assert [t.user_attrs["validations"] for t in trials[:2]] == [8, 8]
    stopped = trials[2].user_attrs["validations"]  # one warm-up validation, then pruned within two more
    assert 2 <= stopped <= 3 and len(trials[2].intermediate_values) == stopped
    assert trials[2].intermediate_values[stopped - 1] < min(t.intermediate_values[stopped - 1] for t in trials[:2])
    assert all(set(t.user_attrs["valid"]) == {"ndcg@10"} for t in trials[:2])
    assert "pruned" in lines[2] and "best" in lines[2]
    # best.yaml is a config file a normal run takes: the best trial's settings come back from it
    from recbole_llm.config import Config

    best = Config(model=model, dataset="tiny", config_file_list=[str(tiny_data / "t" / "best.yaml")],
                  config_dict={"data_path": str(tiny_data / "data")})
    assert (best["learning_rate"], best["epochs"], best["valid_metric"], best["eval_args"]["order"]) == (
        0.05, 8, "NDCG@10", "RO")
    assert not (tiny_data / "t" / "trials").exists() or not any((tiny_data / "t" / "trials").iterdir())


# ------------------------------------------------------------------------------------------------
# subprocess workers: a plugin's model and space, kill and resume, two workers
# ------------------------------------------------------------------------------------------------
SPACE_HOOK = '''

@recbole_llm.hookimpl
def register_search_spaces():
    return {"PopPlusMF": str(Path(__file__).with_name("PopPlusMF-space.yaml"))}
'''


def _worker(root, out, n_trials, storage=None, extra=(), model="BPR", space="s.yaml", site=None, settings=TINY,
            **changes):
    settings = {**settings, **changes}
    cmd = [sys.executable, "-m", "recbole_llm.cli", "tune", f"--model={model}", "--dataset=tiny",
           f"--trials={n_trials}", f"--out={out}", f"--data_path={root / 'data'}",
           *[f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()], *extra]
    if space:
        cmd.append(f"--space={space}")
    if storage:
        cmd.append(f"--storage={storage}")
    env = fresh_env()
    env["OMP_NUM_THREADS"] = "1"
    if site:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _rows(out):
    with open(Path(out) / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_plugin_model_is_tuned_with_the_space_its_plugin_registers(tiny_data):
    site = make_outside_plugin(tiny_data / "site")
    pkg = site / "outside_plugin"
    (pkg / "plugin.py").write_text((pkg / "plugin.py").read_text() + SPACE_HOOK)
    (pkg / "PopPlusMF-space.yaml").write_text(
        "# test space\nfixed: {epochs: 3}\nsearch:\n  learning_rate: {choice: [0.01, 0.05]}\n"
        "  embedding_size: {choice: [8, 12]}\n")
    out = tiny_data / "plugin-study"
    # embedding_size is searched by the plugin's space, epochs fixed there (a --key=value would win)
    settings = {k: v for k, v in TINY.items() if k not in ("embedding_size", "epochs")}
    log = _finish(_worker(tiny_data, out, 3, model="PopPlusMF", space=None, site=site, settings=settings))
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3, log
    # the first trial is the plugin's own defaults (PopPlusMF.yaml: lr 0.01, embedding_size 12)
    assert (rows[0]["default"], rows[0]["learning_rate"], rows[0]["embedding_size"]) == ("True", "0.01", "12")
    assert all(int(r["validations"]) == 3 for r in rows)  # the space's fixed epochs: 3
    best = yaml.safe_load((out / "best.yaml").read_text())
    best_row = max(rows, key=lambda r: float(r["value"]))
    assert best["learning_rate"] == float(best_row["learning_rate"]) and best["epochs"] == 3
    assert best["valid_metric"] == "NDCG@10"
    assert (out / "history.png").stat().st_size > 1000
    assert log.count("[tune PopPlusMF tiny] trial") == 3


def _wait_for(predicate, timeout=300, every=0.2):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def _study(out):
    import optuna

    return optuna.load_study(study_name="BPR-tiny", storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.slow
def test_a_killed_study_resumes_without_losing_or_repeating_a_finished_trial(tiny_data):
    from optuna.trial import TrialState

    (tiny_data / "s.yaml").write_text("search: {learning_rate: {loguniform: [1.0e-3, 1.0e-1]}}")
    out = tiny_data / "study"
    proc = _worker(tiny_data, out, 4, epochs=30)

    def running_after_a_finished_one():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        if not (out / "study.db").exists():
            return None
        try:
            trials = _study(out).get_trials()
        except Exception:
            return None
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        return (done, running[0]) if done and running else None

    done_before, killed = _wait_for(running_after_a_finished_one)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _study(out).trials[killed.number].state == TrialState.RUNNING  # left behind by the dead worker
    log = _finish(_worker(tiny_data, out, 4, epochs=30))
    trials = sorted(_study(out).get_trials(), key=lambda t: t.number)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4, log
    # the trials finished before the kill are kept as they were
    for t in done_before:
        assert trials[t.number].state == TrialState.COMPLETE and trials[t.number].value == t.value
    # the killed one failed and ran again once, with its parameters
    assert trials[killed.number].state == TrialState.FAIL and trials[killed.number].user_attrs["killed"]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params and retries[0].state in (TrialState.COMPLETE,
                                                                                              TrialState.PRUNED)
    assert "left running by a dead worker" in log
    # nothing repeated: every finished trial has its own parameters
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 4
    assert len(_rows(out)) == len(trials)


@pytest.mark.slow
def test_two_workers_on_one_journal_storage_split_the_trials_without_duplicates(tiny_data):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    (tiny_data / "s.yaml").write_text("search: {learning_rate: {loguniform: [1.0e-3, 1.0e-1]}}")
    journal = tiny_data / "shared.journal"
    procs = [_worker(tiny_data, tiny_data / f"w{i}", 6, storage=f"journal:{journal}", epochs=6)
             for i in range(2)]
    logs = [_finish(p) for p in procs]
    study = optuna.load_study(study_name="BPR-tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 6, logs
    assert len({t.number for t in finished}) == 6
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 6
    assert sum(bool(t.user_attrs.get("default")) for t in trials) == 1  # the defaults ran once, not per worker
    pids = {t.user_attrs["worker"]["pid"] for t in finished}
    assert len(pids) == 2 and all(p.pid in pids for p in procs)
    assert sum(log.count("[tune BPR tiny] trial") for log in logs) == len([t for t in trials if "worker" in t.user_attrs])
