"""RecBole's distributed path through our CLI/API, on CPU with the gloo backend (2 processes)."""

import pytest

from recbole_llm.quick_start import run_recbole_llm

from conftest import fast_config, write_tiny_dataset


@pytest.fixture
def ddp_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny_dataset(tmp_path / "data", n_users=80, n_items=60)
    return tmp_path


def test_ddp_evaluation_equals_single_process(ddp_data):
    """No training: both runs rank the same seed-initialised model (DDP broadcasts rank 0's
    parameters), so sharded evaluation + all-gather must reproduce the single-process metrics."""
    cfg = fast_config(ddp_data, epochs=0)
    single = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=False)
    multi = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=False, nproc=2, port="29631")
    assert multi is not None
    for key, value in single["test_result"].items():
        assert multi["test_result"][key] == pytest.approx(float(value), abs=1e-4), key


def test_ddp_training_runs_and_agrees_closely(ddp_data):
    """Training shards data and negative sampling per rank, so metrics are close, not bit-equal."""
    cfg = fast_config(ddp_data, epochs=3)
    single = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=False)
    multi = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=True, nproc=2, port="29632")
    assert multi is not None and set(multi["test_result"]) == set(single["test_result"])
    assert multi["test_result"]["ndcg@10"] == pytest.approx(float(single["test_result"]["ndcg@10"]), abs=0.03)
    assert list((ddp_data / "saved").glob("BPR-*.pth"))  # rank 0 saved the best model and reloaded it
