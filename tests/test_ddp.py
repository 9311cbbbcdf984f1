"""RecBole's distributed path through our CLI/API, on CPU with the gloo backend (2 processes)."""

import json

import pytest

from recbole_llm.quick_start import run_recbole_llm

from conftest import fast_config, write_tiny_dataset


@pytest.fixture
def ddp_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny_dataset(tmp_path / "data", n_users=80, n_items=60)
    return tmp_path


@pytest.mark.slow
def test_ddp_evaluation_equals_single_process(ddp_data):
    """No training: both runs rank the same seed-initialised model (DDP broadcasts rank 0's
    parameters), so sharded evaluation + all-gather must reproduce the single-process metrics."""
    cfg = fast_config(ddp_data, epochs=0)
    single = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=False)
    multi = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=False, nproc=2, port="29631")
    assert multi is not None
    for key, value in single["test_result"].items():
        assert multi["test_result"][key] == pytest.approx(float(value), abs=1e-4), key


@pytest.mark.slow
def test_ddp_training_runs_and_agrees_closely(ddp_data):
    """Training shards data and negative sampling per rank, so metrics are close, not bit-equal."""
    cfg = fast_config(ddp_data, epochs=3)
    single = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=False)
    multi = run_recbole_llm("BPR", "tiny", config_dict=dict(cfg), saved=True, nproc=2, port="29632")
    assert multi is not None and set(multi["test_result"]) == set(single["test_result"])
    assert multi["test_result"]["ndcg@10"] == pytest.approx(float(single["test_result"]["ndcg@10"]), abs=0.03)
    assert list((ddp_data / "saved").glob("*/BPR-*.pth"))  # rank 0 saved (under the run id the ranks share) the best model and reloaded it


# --------------------------------------------------------------------------- GraphAttentiveGPT2
@pytest.mark.slow
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


# --------------------------------------------------------------------------- staged LLM trainers
def test_staged_trainer_shards_chunks_round_robin_with_equal_counts():
    from recbole_llm.training.staged import StagedTrainer

    class FakeWorld(StagedTrainer):  # only the sharding arithmetic: no process group needed
        world_size, rank = 3, 0

    chunks = list("abcdefg")
    shares = []
    for rank in range(3):
        t = object.__new__(FakeWorld)
        t.rank = rank
        shares.append(t.shard(chunks))
    assert [len(s) for s in shares] == [3, 3, 3]  # padded: every rank takes the same number of steps
    assert sorted({i for s in shares for i, _ in s}) == list(range(7))  # every chunk is trained
    assert shares[1] == [(1, "b"), (4, "e"), (0, "a")]  # (global index, chunk); schedules get the step
    single = object.__new__(StagedTrainer)
    single.config = {"single_spec": True}
    assert single.shard(chunks) == list(enumerate(chunks))


def test_schedule_steps_are_the_same_on_every_rank():
    """``before_step`` (learning-rate schedules) must see the same step on every rank: with each
    rank's own batch index the ranks took different learning rates and their weights drifted apart."""
    import types

    import torch

    from recbole_llm.training.staged import StagedTrainer

    class FakeWorld(StagedTrainer):  # no process group: rank and world size as plain attributes
        world_size, rank = 3, 0

        def progress(self, *a, **k):
            return types.SimpleNamespace(step=lambda **kw: None)

        def clip_and_step(self, loss, optimizer):
            pass

        def all_reduce_mean(self, value):
            return value

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    seen = []
    for rank in range(3):
        t = object.__new__(FakeWorld)
        t.rank = rank
        steps = []
        t.run_batches("s", 0, list(range(7)), lambda chunk: torch.tensor(0.0), optimizer, before_step=steps.append)
        seen.append(steps)
    assert seen[0] == seen[1] == seen[2] == [0, 3, 6]
    class Single(FakeWorld):
        world_size = 1

    single = object.__new__(Single)
    steps = []
    single.run_batches("s", 0, list(range(7)), lambda chunk: torch.tensor(0.0), optimizer, before_step=steps.append)
    assert steps == list(range(7))


def _glta_config(root):
    from conftest import glta_tiny_config

    return glta_tiny_config(root, glta_ua_epochs=3, glta_ia_epochs=1)


def _gat_config(root):
    from test_graph_attentive_gpt2 import gat_config

    return gat_config(root, gat_finetune_epochs=3)


def _hellm_config(root):
    from test_hellm import tiny_config

    return tiny_config(root, hellm_epochs=3)


@pytest.mark.slow
@pytest.mark.parametrize("model, make_config, port", [
    ("GLTA", _glta_config, "29661"),
    ("GraphAttentiveGPT2", _gat_config, "29662"),
    ("HeLLM", _hellm_config, "29663"),
])
def test_staged_llm_model_trains_under_ddp_with_identical_ranks(tmp_path, model, make_config, port):
    """Two ranks train on their shares of the batches with averaged gradients. Evaluation is
    sharded by user, each rank scoring its users with its own weights, so the DDP test metrics equal
    a single process evaluating rank 0's final weights only if both ranks hold the same weights
    (without the gradient all-reduce they differ)."""
    import torch

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.utils import get_model, get_trainer
    from conftest import tiny_llm_env

    with tiny_llm_env(tmp_path):
        cfg = dict(make_config(tmp_path), metric_decimal_place=12)
        multi = run_recbole_llm(model, "tiny", config_dict=dict(cfg), saved=False, nproc=2, port=port)
        assert multi is not None
        [run_dir] = (tmp_path / "saved").glob(f"{model}-tiny-*")
        blob = torch.load(run_dir / "latest.pth", weights_only=False)
        assert json.loads((run_dir / "state.json").read_text())["finished"]

        config = Config(model=model, dataset="tiny", config_dict=dict(cfg))
        init_seed(config["seed"], config["reproducibility"])  # the same split as the run's
        train, valid, test = data_preparation(config, create_dataset(config))
        net = get_model(model)(config, train._dataset)
        net.load_state_dict(blob["state_dict"])
        net.load_other_parameter(blob["other_parameter"])
        single = get_trainer(config["MODEL_TYPE"], model)(config, net).evaluate(test, load_best_model=False)
    assert set(single) == set(multi["test_result"])
    for key, value in single.items():
        assert multi["test_result"][key] == pytest.approx(float(value), abs=1e-6), key
