"""GLTA at scale (issue 11): what keeps the paper configuration within one GPU and hours within
minutes, tested on CPU with the tiny random Llama.

* scores cached by a parameter-version counter (no state-dict hashing per ``full_sort_predict``);
* the prefix key/value cache kept off the LLM's device and bounded (what does not fit is
  recomputed per batch);
* half-precision backward with loss scaling (float16) ;
* the backend check that gradients reach the LLM's inputs (GPTQ kernels without backward).
"""

import pytest
import torch

from conftest import glta_tiny_config, write_tiny_dataset
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_llm.config import Config
from recbole_llm.llm.backbone import clear_backbones
from recbole_llm.llm.testing import save_tiny_llama
from recbole_llm.models.glta import GLTA


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("glta_scale")
    write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
    save_tiny_llama(root / "llm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBOLE_LLM_CACHE", str(root / "cache"))
        mp.chdir(root)
        yield root
    clear_backbones()


def build(root, **overrides):
    config = Config(model="GLTA", dataset="tiny", config_dict=glta_tiny_config(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = GLTA(config, train._dataset)
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
    return config, model, train, valid, test


# ------------------------------------------------------------------------------ score cache
def test_scores_cached_by_parameter_version_not_by_hashing(env, monkeypatch):
    _, model, _, _, test = build(env)
    interaction = next(iter(test))[0]
    hashes = []
    real_hash = model._state_hash
    monkeypatch.setattr(model, "_state_hash", lambda: hashes.append(1) or real_hash())
    first = model.full_sort_predict(interaction)
    n0 = model.score_computations
    for _ in range(50):  # RecBole calls full_sort_predict once per evaluation batch
        assert torch.equal(model.full_sort_predict(interaction), first)
    assert model.score_computations == n0 and len(hashes) <= 1  # one content hash per new scoring

    # an optimiser step bumps the version: scores are recomputed
    opt = model.watch_optimizer(torch.optim.SGD(model.gllm.parameters(), lr=0.5))
    version = model.parameter_version
    model.gllm.bias.grad = torch.ones_like(model.gllm.bias)
    model.gllm.bias.grad[1] = -50.0
    opt.step()
    assert model.parameter_version > version
    after_step = model.full_sort_predict(interaction)
    assert model.score_computations == n0 + 1 and not torch.equal(after_step, first)

    # an in-place change made outside any optimiser is seen through the tensors' own versions
    with torch.no_grad():
        model.gllm.bias.zero_()
    model.full_sort_predict(interaction)
    assert model.score_computations == n0 + 2

    # new texts and new graph embeddings invalidate
    model.set_user_texts(profiles=["likes tests"] * model.n_users)
    model.full_sort_predict(interaction)
    assert model.score_computations == n0 + 3
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
    model.full_sort_predict(interaction)
    assert model.score_computations == n0 + 4


def test_reloading_a_scored_state_reuses_its_scores(env):
    _, model, _, _, test = build(env)
    interaction = next(iter(test))[0]
    best = {k: v.clone() for k, v in model.state_dict().items()}
    best_scores = model.full_sort_predict(interaction)
    with torch.no_grad():
        model.gllm.bias.add_(torch.randn_like(model.gllm.bias))
    model.full_sort_predict(interaction)
    n = model.score_computations
    model.load_state_dict(best)  # what RecBole does before the test evaluation
    assert torch.equal(model.full_sort_predict(interaction), best_scores)
    assert model.score_computations == n  # served from the recent states, not recomputed
    # the reused scores are those a fresh computation gives
    model.invalidate()
    model._recent_scores.clear()
    assert torch.equal(model.full_sort_predict(interaction), best_scores)
