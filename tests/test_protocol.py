"""Evaluation protocols: history masking identical for every model type, named protocol files,
protocol-free model YAML files, one checkpoint folder per run, per-user test metrics."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recbole_llm import _recbole  # noqa: F401  (compat before RecBole)
import torch
from recbole.data import create_dataset, data_preparation
from recbole.model.abstract_recommender import GeneralRecommender, SequentialRecommender
from recbole.trainer import Trainer
from recbole.utils import InputType, init_seed

from recbole_llm import protocol
from recbole_llm.config import Config
from recbole_llm.errors import ConfigError
from recbole_llm.paths import properties_dir

REPO = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS, PER_USER = 30, 25, 9


def _score(user_token, item_token):
    """A fixed score, a function of the original tokens only, with no ties within a user."""
    return float((user_token * 7 + item_token * 13) % 97) + item_token / 1000.0


class _FixedScores:
    """Scores every (user, item) with :func:`_score`, whatever the model type."""

    input_type = InputType.POINTWISE

    def _init_scores(self, dataset):
        users = dataset.field2id_token[dataset.uid_field]
        items = dataset.field2id_token[dataset.iid_field]
        table = torch.full((len(users), len(items)), -1e9)
        for u, ut in enumerate(users):
            for i, it in enumerate(items):
                if u and i:  # id 0 is padding
                    table[u, i] = _score(int(ut), int(it))
        self.register_buffer("table", table)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def calculate_loss(self, interaction):
        return self.dummy.sum()

    def predict(self, interaction):
        return self.table[interaction[self.USER_ID], interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        return self.table[interaction[self.USER_ID]].reshape(-1)


class FixedGeneral(_FixedScores, GeneralRecommender):
    def __init__(self, config, dataset):
        GeneralRecommender.__init__(self, config, dataset)
        self._init_scores(dataset)


class FixedSequential(_FixedScores, SequentialRecommender):
    def __init__(self, config, dataset):
        SequentialRecommender.__init__(self, config, dataset)
        self.USER_ID = config["USER_ID_FIELD"]
        self._init_scores(dataset)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Users with distinct timestamps (a leave-one-out split by time is then the same for the
    general and the sequential pipeline) and a few repeated items."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "synth"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(1, N_USERS + 1):
        for j in range(PER_USER):
            item = (u * 3 + j) % N_ITEMS + 1
            if j == PER_USER - 1 and u % 4 == 0:
                item = (u * 3) % N_ITEMS + 1  # the test item is one of the training items
            lines.append(f"{u}\t{item}\t{1000 * u + j}")
    (folder / "synth.inter").write_text("\n".join(lines) + "\n")
    return root


def _evaluate(model_class, data_root, history_mask):
    cfg = {"data_path": str(data_root), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
           "metrics": ["Recall", "NDCG", "MRR", "Hit", "Precision"], "topk": [1, 3, 5], "valid_metric": "MRR@5",
           "history_mask": history_mask, "train_neg_sample_args": None, "state": "ERROR", "seed": 1,
           "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)"}
    config = Config(model=model_class, dataset="synth", config_dict=cfg)
    init_seed(config["seed"], True)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = model_class(config, train._dataset)
    trainer = Trainer(config, model)
    out = {}
    for phase, data in (("valid", valid), ("test", test)):
        with protocol.PerUserRecorder(trainer, data) as rec:
            out[phase] = dict(trainer.evaluate(data, load_best_model=False))
        out[phase + "_per_user"] = rec.result()
    out["loaders"] = (valid, test)
    return out


@pytest.mark.parametrize("mask", ["seen", "train"])
def test_general_and_sequential_models_with_equal_scores_get_equal_metrics(synth, mask):
    general = _evaluate(FixedGeneral, synth, mask)
    sequential = _evaluate(FixedSequential, synth, mask)
    assert general["valid"] == sequential["valid"]
    assert general["test"] == sequential["test"]
    assert general["test_per_user"] == sequential["test_per_user"]
    # RecBole alone would not mask the sequential rows: the metrics then differ (the test can fail)
    valid, test = sequential["loaders"]
    test.history_by_user = None
    trainer = Trainer(test.config, FixedSequential(test.config, test._dataset))
    unmasked = dict(trainer.evaluate(test, load_best_model=False))
    assert unmasked != general["test"]


def test_general_models_mask_as_recbole_does(synth):
    """With the default (seen), the history a general loader returns is RecBole's own."""
    out = _evaluate(FixedGeneral, synth, "seen")
    for loader in out["loaders"]:
        ours = [(u, sorted(h.tolist())) for u, h in enumerate(loader.history_by_user) if u in set(loader.uid_list.tolist())]
        recbole = [(u, sorted(loader.uid2history_item[u].tolist())) for u, _ in ours]
        assert ours == recbole


def test_train_only_mask_unmasks_validation_items_at_test(synth):
    seen, train = _evaluate(FixedGeneral, synth, "seen"), _evaluate(FixedGeneral, synth, "train")
    valid_s, test_s = seen["loaders"]
    valid_t, test_t = train["loaders"]
    assert [h.tolist() for h in valid_s.history_by_user] == [h.tolist() for h in valid_t.history_by_user]
    grew = [len(a) - len(b) for a, b in zip(test_s.history_by_user, test_t.history_by_user)]
    assert min(grew) >= 0 and sum(grew) > 0  # the validation items are masked under 'seen' only


def test_per_user_vectors_average_to_the_reported_metrics(synth):
    out = _evaluate(FixedSequential, synth, "seen")
    per_user = out["test_per_user"]
    assert len(per_user["users"]) == N_USERS
    for name, values in per_user["metrics"].items():
        assert round(sum(values) / len(values), 4) == pytest.approx(out["test"][name])


# -- protocol files ------------------------------------------------------------------------
def test_model_yaml_files_are_protocol_free():
    offenders = {}
    for path in sorted((properties_dir() / "model").glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        keys = sorted(set(data) & set(protocol.EVALUATION_KEYS))
        if keys:
            offenders[path.name] = keys
    assert offenders == {}, f"model YAML files set protocol keys (move them to properties/protocol/): {offenders}"


def test_every_protocol_file_loads_and_describes_itself():
    names = protocol.available_protocols()
    assert names
    for name in names:
        settings = protocol.load_protocol(name)
        line = protocol.describe(settings, name)
        assert "\n" not in line and name in line


def test_protocol_option_selects_the_file(synth):
    config = Config(model=FixedGeneral, dataset="synth",
                    config_dict={"data_path": str(synth), "protocol": "loo_time", "state": "ERROR",
                                 "load_col": {"inter": ["user_id", "item_id", "timestamp"]}})
    expected = protocol.load_protocol("loo_time")
    for key, value in expected.items():
        if key == "eval_args":  # RecBole expands mode into {valid: ..., test: ...}
            value = {**value, "mode": {"valid": value["mode"], "test": value["mode"]}}
        assert config[key] == value
    assert "leave-one-out" in protocol.describe(config)


@pytest.mark.parametrize("name", ["no_such_protocol", "../model/HeLLM", "loo_time.yaml"])
def test_unknown_protocol_is_a_config_error(name):
    with pytest.raises(ConfigError, match="protocol"):
        protocol.load_protocol(name)


def test_bad_history_mask_is_a_config_error(synth):
    with pytest.raises(ConfigError, match="history_mask"):
        _evaluate(FixedGeneral, synth, "everything")


@pytest.mark.slow
def test_cli_rejects_unknown_protocol_with_exit_2():
    proc = subprocess.run([sys.executable, str(REPO / "run_recbole_llm.py"), "--model=Pop", "--dataset=ml-100k",
                           "--protocol=nope"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "protocol 'nope'" in proc.stderr and "Traceback" not in proc.stderr


# -- checkpoints ---------------------------------------------------------------------------
def test_trainers_of_the_same_second_save_in_their_own_folders(synth, tmp_path, monkeypatch):
    import recbole.trainer.trainer as tr

    monkeypatch.setattr(tr, "get_local_time", lambda: "same-second")
    config = Config(model=FixedGeneral, dataset="synth",
                    config_dict={"data_path": str(synth), "checkpoint_dir": str(tmp_path), "state": "ERROR"})
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    a = Trainer(config, FixedGeneral(config, train._dataset))
    b = Trainer(config, FixedGeneral(config, train._dataset))
    assert a.saved_model_file != b.saved_model_file
    assert Path(a.saved_model_file).parent.parent == tmp_path == Path(b.saved_model_file).parent.parent


_CONCURRENT_RUN = """
import json, sys
import recbole_llm._recbole
import recbole.trainer.trainer as tr
tr.get_local_time = lambda: "same-second"   # both runs name their checkpoint alike
from recbole_llm.quick_start import run_experiment
lr, ckpt, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]
res = run_experiment("BPR", "ml-100k", config_dict={"epochs": 2, "learning_rate": lr, "checkpoint_dir": ckpt,
    "state": "ERROR", "show_progress": False, "eval_step": 1, "stopping_step": 5, "train_batch_size": 4096})
json.dump({"test": dict(res["test_result"]), "file": res["stats"]["saved_model_file"]}, open(out, "w"))
"""


def _start(lr, ckpt, out):
    return subprocess.Popen([sys.executable, "-c", _CONCURRENT_RUN, str(lr), str(ckpt), str(out)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_two_concurrent_runs_sharing_a_checkpoint_dir_report_their_own_metrics(tmp_path):
    import json

    alone = {}
    for lr in (0.001, 0.05):
        proc = _start(lr, tmp_path / f"alone{lr}", tmp_path / f"alone{lr}.json")
        assert proc.wait(timeout=600) == 0
        alone[lr] = json.loads((tmp_path / f"alone{lr}.json").read_text())["test"]
    assert alone[0.001] != alone[0.05]
    shared = tmp_path / "shared"
    procs = {lr: _start(lr, shared, tmp_path / f"both{lr}.json") for lr in (0.001, 0.05)}
    assert all(p.wait(timeout=600) == 0 for p in procs.values())
    both = {lr: json.loads((tmp_path / f"both{lr}.json").read_text()) for lr in procs}
    assert both[0.001]["file"] != both[0.05]["file"]
    for lr in procs:
        assert both[lr]["test"] == alone[lr]
