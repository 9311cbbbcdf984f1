"""Loading a file never runs code from it (issue 19, item 4).

Every path that read a malicious pickle before is given a file whose ``__reduce__`` would create a
marker file: the marker must not appear, and the error must name the file and the flag that loads a
trusted file. Genuine checkpoints still load (by default, and with ``trust=True``); resume state
that is not ours (another model's ``latest.pth``, a ``state.json`` that is a list or points outside
the checkpoint folder), a generation cache of random bytes and a dataset edited since training end
in one clear line.
"""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from recbole_llm import safe_pickle
from recbole_llm.cli import main as cli_main
from recbole_llm.errors import ConfigError, CorruptFileError, TrainingDataMismatchError, UntrustedFileError

from conftest import cli_error_line as _cli, fast_config, glta_cli_args as _glta_args

TRUST = "--trust_checkpoint"
LGCN = {"epochs": 1, "n_layers": 1, "reg_weight": 1e-4, "require_pow": False}  # LightGCN on BPR's split


class _Payload:
    """Pickles as a call of ``os.system`` that touches ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_file(path, marker, wrap=lambda p: {"state_dict": p, "config": p}):
    torch.save(wrap(_Payload(marker)), path)
    return Path(path)


def _assert_refused(excinfo, path, marker):
    text = str(excinfo.value)
    assert str(path) in text and TRUST in text and "\n" not in text, text
    assert not Path(marker).exists()


# --- the loader itself ------------------------------------------------------------------------------
def test_restricted_unpickler_refuses_calls_the_file_names(tmp_path):
    marker = tmp_path / "RAN"
    for i, payload in enumerate([_Payload(marker), {"x": [1, _Payload(marker)]}]):
        path = tmp_path / f"evil{i}.pth"
        torch.save(payload, path)
        with pytest.raises(UntrustedFileError) as excinfo:
            safe_pickle.load(path, "Checkpoint")
        _assert_refused(excinfo, path, marker)
    # a protocol-0 pickle, a raw (non-torch) pickle and protocol 4 are all refused the same way
    for protocol in (0, 2, 4):
        path = tmp_path / f"raw{protocol}.pth"
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
        with pytest.raises(CorruptFileError):
            safe_pickle.load(path, "Checkpoint")
        assert not marker.exists()


def test_allowlisted_classes_are_values_never_called(tiny_data):
    """Config and model classes may appear in a checkpoint, but calling one (Config.__init__
    evaluates strings; a model's __init__ reads paths from its config) or passing one to a
    rebuild helper is refused."""
    from recbole.model.general_recommender import BPR

    from recbole_llm.config import Config

    marker = tiny_data / "RAN"

    class CallsConfig:
        def __reduce__(self):
            return (Config, ("BPR", "tiny", None, {"x": f"__import__('os').system('touch {marker}')"}))

    class CallsModel:
        def __reduce__(self):
            return (BPR, (None, None))

    class ModelIntoHelper:
        def __reduce__(self):
            return (torch._utils._rebuild_parameter, (torch.zeros(1), False, {"hook": BPR}))

    for name, obj in [("config", CallsConfig()), ("model", CallsModel()), ("helper", ModelIntoHelper())]:
        path = tiny_data / f"{name}.pth"
        torch.save({"x": obj}, path)
        with pytest.raises(UntrustedFileError) as excinfo:
            safe_pickle.load(path, "Checkpoint")
        _assert_refused(excinfo, path, marker)


def test_numpy_and_torch_values_load_object_arrays_do_not(tmp_path):
    import numpy as np

    path = tmp_path / "plain.pth"
    torch.save({"a": np.arange(4), "s": np.array(["ab", "c"]), "f": np.float32(1.5), "t": torch.ones(2),
                "p": torch.nn.Parameter(torch.zeros(2)), "d": torch.device("cpu"), "b": b"xy", "set": {1, 2}}, path)
    blob = safe_pickle.load(path, "Cache", kind="cache")
    assert blob["a"].tolist() == [0, 1, 2, 3] and blob["s"].tolist() == ["ab", "c"] and blob["f"] == 1.5
    assert torch.equal(blob["t"], torch.ones(2)) and blob["b"] == b"xy" and blob["set"] == {1, 2}
    torch.save({"o": np.array([object()], dtype=object)}, path)
    with pytest.raises(UntrustedFileError, match="numpy dtype"):
        safe_pickle.load(path, "Cache", kind="cache")


def test_caches_admit_no_config_objects(tiny_data):
    from recbole_llm.config import Config

    config = Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data))
    path = tiny_data / "cache.pth"
    torch.save({"config": config}, path)
    with pytest.raises(UntrustedFileError, match="Delete .*cache.pth"):
        safe_pickle.load(path, "Pretraining cache", kind="cache")
    assert safe_pickle.load(path, "Checkpoint", kind="checkpoint")["config"]["model"] == "BPR"


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "script.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UntrustedFileError, match="TorchScript"):
        safe_pickle.load(path, "Checkpoint")


# --- load_data_and_model ------------------------------------------------------------------------------
@pytest.fixture
def bpr_checkpoint(tiny_data):
    from recbole_llm.quick_start import run_experiment

    result = run_experiment("BPR", "tiny", config_dict=fast_config(tiny_data))
    return Path(result["stats"]["saved_model_file"])


def test_load_data_and_model_refuses_a_malicious_file_and_loads_genuine_ones(tiny_data, bpr_checkpoint):
    from recbole_llm.quick_start import load_data_and_model

    marker = tiny_data / "RAN"
    evil = _evil_file(tiny_data / "evil.pth", marker)
    with pytest.raises(UntrustedFileError) as excinfo:
        load_data_and_model(str(evil))
    _assert_refused(excinfo, evil, marker)

    config, model, dataset, *_ = load_data_and_model(str(bpr_checkpoint))
    assert config["model"] == "BPR" and model.n_items == dataset.item_num
    config, model, *_ = load_data_and_model(str(bpr_checkpoint), trust=True)
    assert config["model"] == "BPR"
    assert set(config["dataset_fingerprint"]) == {"tiny.inter", "tiny.item"}


def test_load_data_and_model_refuses_a_dataset_edited_since_training(tiny_data, bpr_checkpoint):
    from recbole_llm.quick_start import load_data_and_model

    inter = tiny_data / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join(lines[:-3]) + "\n")  # three interactions removed
    with pytest.raises(TrainingDataMismatchError, match=r"dataset file\(s\) tiny\.inter .* changed since this model"):
        load_data_and_model(str(bpr_checkpoint))


def test_recbole_trainer_paths_load_safely(tiny_data, bpr_checkpoint):
    """compat gives RecBole's trainer the safe loader: resume_checkpoint and evaluate(model_file=)."""
    from recbole_llm.quick_start import load_data_and_model
    from recbole_llm.utils import get_trainer

    config, model, _, _, _, test_data = load_data_and_model(str(bpr_checkpoint))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    marker = tiny_data / "RAN"
    evil = _evil_file(tiny_data / "evil.pth", marker)
    for call in (lambda: trainer.resume_checkpoint(str(evil)),
                 lambda: trainer.evaluate(test_data, load_best_model=True, model_file=str(evil))):
        with pytest.raises(UntrustedFileError) as excinfo:
            call()
        _assert_refused(excinfo, evil, marker)
    assert trainer.evaluate(test_data, load_best_model=True, model_file=str(bpr_checkpoint))


def test_trust_flag_reaches_the_run(tiny_data, monkeypatch, capsys):
    import recbole_llm.quick_start as qs

    seen = {}
    monkeypatch.setattr(qs, "run_recbole_llm", lambda **kw: seen.update(kw) or None)
    assert cli_main(["--model=BPR", "--dataset=tiny", TRUST]) == 0
    assert seen["config_dict"]["trust_checkpoint"] is True
    assert cli_main(["--model=BPR", "--dataset=tiny"]) == 0
    assert "trust_checkpoint" not in (seen["config_dict"] or {})


def test_trusted_loading_loads_what_the_allowlist_refuses(tmp_path):
    from fractions import Fraction

    path = tmp_path / "fraction.pth"
    torch.save({"f": Fraction(1, 3)}, path)
    with pytest.raises(UntrustedFileError, match="fractions.Fraction"):
        safe_pickle.load(path, "Checkpoint")
    assert safe_pickle.load(path, "Checkpoint", trust=True)["f"] == Fraction(1, 3)
    with safe_pickle.trusted_loading():
        assert safe_pickle.load(path, "Checkpoint")["f"] == Fraction(1, 3)


# --- pretraining checkpoints and caches, hop table ------------------------------------------------------
@pytest.fixture
def bpr_split(tiny_data):
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.config import Config

    config = Config(model="BPR", dataset="tiny", config_dict=fast_config(tiny_data))
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, train, valid


def test_hellm_and_glta_graph_checkpoints_and_the_pretraining_cache(tiny_data, bpr_split, bpr_checkpoint):
    """``glta_graph_checkpoint``/``hellm_graph_checkpoint`` and the cache both reach
    ``pretrain_recbole_model``: a malicious file is refused, a BPR checkpoint is not a LightGCN."""
    from recbole_llm.training.pretrain import pretrain_recbole_model

    config, train, valid = bpr_split
    marker = tiny_data / "RAN"
    evil = _evil_file(tiny_data / "evil.pth", marker)
    for label in ("HeLLM graph", "GLTA graph"):
        with pytest.raises(UntrustedFileError) as excinfo:
            pretrain_recbole_model(config, train, valid, model="LightGCN", overrides=LGCN,
                                   work_dir=tiny_data / "w", label=label, checkpoint=str(evil))
        _assert_refused(excinfo, evil, marker)
    with pytest.raises(ConfigError, match=r"is a BPR checkpoint; this setting takes a LightGCN checkpoint"):
        pretrain_recbole_model(config, train, valid, model="LightGCN", overrides=LGCN,
                               work_dir=tiny_data / "w", label="GLTA graph", checkpoint=str(bpr_checkpoint))

    done = pretrain_recbole_model(config, train, valid, model="LightGCN", overrides=LGCN,
                                  work_dir=tiny_data / "w", label="graph")
    [cache] = list((tiny_data / "cache" / "pretrain").glob("LightGCN-*.pth"))
    assert not done.stats["reused"]
    _evil_file(cache, marker, wrap=lambda p: {"state_dict": p, "train_fingerprint": "x"})
    with pytest.raises(UntrustedFileError) as excinfo:
        pretrain_recbole_model(config, train, valid, model="LightGCN", overrides=LGCN,
                               work_dir=tiny_data / "w", label="graph")
    assert str(cache) in str(excinfo.value) and "Delete" in str(excinfo.value) and not marker.exists()


def test_hop_table_cache(tiny_data, bpr_split):
    from recbole_llm.models.graph_attentive_gpt2.hop_cache import cached_hop_table

    _, train, _ = bpr_split
    table = cached_hop_table(train.dataset, 3)
    [cache] = list((tiny_data / "cache" / "hops").glob("*.pth"))
    marker = tiny_data / "RAN"
    _evil_file(cache, marker, wrap=lambda p: {"codes": p})
    with pytest.raises(UntrustedFileError) as excinfo:
        cached_hop_table(train.dataset, 3)
    assert str(cache) in str(excinfo.value) and not marker.exists()
    cache.unlink()
    assert torch.equal(cached_hop_table(train.dataset, 3).codes, table.codes)


def test_generation_cache_of_random_bytes(tmp_path):
    from recbole_llm.llm.generation import GenerationCache

    path = tmp_path / "gen.jsonl"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CorruptFileError, match=r"generation cache .*gen\.jsonl, line \d+: not a cached answer"):
        GenerationCache(path)
    path.write_text('{"k": "a", "text": "b"}\n[1, 2]\n{"k": "c", "text": "d"}\n')
    with pytest.raises(CorruptFileError, match="line 2"):
        GenerationCache(path)
    path.write_text('{"k": "a", "text": "b"}\n{"k": "c", "te')  # the last row cut by a crash: kept out
    assert len(GenerationCache(path)) == 1


# --- stage resume (GLTA on the tiny Llama) ------------------------------------------------------------
def test_stage_resume_refuses_what_it_did_not_write(tiny_data, capsys):
    from recbole_llm.llm.testing import save_tiny_llama

    save_tiny_llama(tiny_data / "llm")
    assert _cli(_glta_args(tiny_data), capsys)[0] == 0
    [run_dir] = [p for p in (tiny_data / "saved").iterdir() if p.is_dir() and p.name.startswith("GLTA-tiny-")]
    state_file, latest = run_dir / "state.json", run_dir / "latest.pth"
    state = json.loads(state_file.read_text())
    genuine = latest.read_bytes()
    unfinished = dict(state, finished=False, completed=state["completed"][:-1], stage=state["completed"][-1], epoch=0)
    marker = tiny_data / "RAN"

    def attempt(state_value, latest_bytes=None, *extra):
        state_file.write_text(json.dumps(state_value))
        if latest_bytes is not None:
            latest.write_bytes(latest_bytes)
        return _cli(_glta_args(tiny_data, *extra), capsys)

    # a malicious latest.pth (resume state holds plain data only: refused even with the trust flag)
    evil = _evil_file(tiny_data / "evil.pth", marker).read_bytes()
    code, line = attempt(unfinished, evil)
    assert code == 2 and str(latest) in line and "stage_resume=False" in line and not marker.exists()
    code, line = attempt(unfinished, evil, TRUST)
    assert code == 2 and str(latest) in line and not marker.exists()
    # another model's latest.pth (a BPR checkpoint dropped into the run folder)
    from recbole_llm.quick_start import run_experiment

    bpr = run_experiment("BPR", "tiny", config_dict=fast_config(tiny_data))["stats"]["saved_model_file"]
    code, line = attempt(unfinished, Path(bpr).read_bytes())
    assert code == 2 and "resume checkpoint" in line and str(latest) in line
    # a state.json that is a list, and one whose saved_model_file points outside checkpoint_dir
    code, line = attempt([1, 2], genuine)
    assert code == 2 and "holds a list, not a mapping" in line
    outside = _evil_file(tiny_data / "outside.pth", marker)
    code, line = attempt(dict(unfinished, saved_model_file=str(outside)), genuine)
    assert code == 2 and "is outside the run folder" in line and not marker.exists()
    # the genuine state resumes and finishes
    code, _ = attempt(unfinished, genuine)
    assert code == 0 and not marker.exists()

    # glta_graph_checkpoint: a malicious file, and a BPR checkpoint offered as GLTA's LightGCN
    evil_path = tiny_data / "evil.pth"
    code, line = _cli(_glta_args(tiny_data, "--stage_resume=False", f"--glta_graph_checkpoint={evil_path}"), capsys)
    assert code == 2 and str(evil_path) in line and TRUST in line and not marker.exists()
    code, line = _cli(_glta_args(tiny_data, "--stage_resume=False", f"--glta_graph_checkpoint={bpr}"), capsys)
    assert code == 2 and "is a BPR checkpoint; this setting takes a LightGCN checkpoint" in line

    # a generation cache of random bytes, through the CLI
    [gen] = list((tiny_data / "cache").rglob("generations/*.jsonl"))
    gen.write_bytes(os.urandom(2048))
    code, line = _cli(_glta_args(tiny_data, "--stage_resume=False"), capsys)
    assert code == 2 and "generation cache" in line and str(gen) in line
    shutil.rmtree(run_dir)
