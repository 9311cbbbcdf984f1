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


# --------------------------------------------------------------------------- GraphAttentiveGPT2
def test_graph_attentive_gpt2_ddp_evaluation_equals_single_process(tmp_path, monkeypatch):
    """No training: both runs rank the same seed-initialised model (DDP broadcasts rank 0's parameters),
    so the sharded scoring + all-gather of RecBole's DDP evaluation must reproduce one process."""
    from recbole_llm.llm.testing import save_tiny_llama
    from test_graph_attentive_gpt2 import gat_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", n_users=40, n_items=40, per_user=(6, 12))
    save_tiny_llama(tmp_path / "llm")
    cfg = gat_config(tmp_path, gat_content_epochs=0, gat_collab_epochs=0, gat_finetune_epochs=0)
    single = run_recbole_llm("GraphAttentiveGPT2", "tiny", config_dict=dict(cfg), saved=False)
    multi = run_recbole_llm("GraphAttentiveGPT2", "tiny", config_dict=dict(cfg), saved=False, nproc=2, port="29651")
    assert multi is not None
    # scores are bit-identical whatever users share a batch (fixed shapes); RecBole rounds each rank's
    # metrics to 4 decimals before the weighted all-reduce, hence up to ~1e-4 of rounding difference
    for key, value in single["test_result"].items():
        assert multi["test_result"][key] == pytest.approx(float(value), abs=1.5e-4), key
