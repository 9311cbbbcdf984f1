"""RecBole's documented reload flow, in a fresh process, for every kind of model.

``load_data_and_model(checkpoint)`` then ``trainer.evaluate(test_data)`` must give exactly the
test metrics the run reported when it saved the checkpoint (same weights, same split).
"""

import pytest

from conftest import fast_config
from tests_support.outside_plugin import make_outside_plugin
from tests_support.reload import saved_and_reloaded

SEQUENTIAL = {
    "MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1,
    "train_neg_sample_args": None, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
}


def _check(saved, reloaded):
    print("saved   ", saved)  # shown with -s or on failure
    print("reloaded", reloaded)
    assert set(reloaded) == set(saved) == {f"{m}@{k}" for m in ("recall", "ndcg", "precision") for k in (5, 10)}
    assert reloaded == pytest.approx(saved, abs=1e-9, rel=0)
    assert any(v > 0 for v in saved.values())  # a real ranking was measured, not an empty split


@pytest.mark.slow
@pytest.mark.parametrize("model,extra", [("BPR", {}), ("LightGCN", {}), ("SASRec", SEQUENTIAL)])
def test_reloaded_checkpoint_evaluates_to_saved_metrics(tiny_data, model, extra):
    saved, reloaded = saved_and_reloaded(model, fast_config(tiny_data, **extra))
    _check(saved, reloaded)


def test_reloaded_outside_plugin_checkpoint_evaluates_to_saved_metrics(tiny_data):
    site = make_outside_plugin(tiny_data / "site")
    saved, reloaded = saved_and_reloaded("PopPlusMF", fast_config(tiny_data), extra_paths=[site])
    _check(saved, reloaded)


def test_reloaded_glta_checkpoint_evaluates_to_saved_metrics(tiny_data):
    """GLTA's checkpoint holds only its trainable state, graph embeddings and generated texts; the
    frozen LLM is loaded again from llm_path, and the scores must come out the same."""
    from conftest import glta_tiny_config
    from recbole_llm.llm.testing import save_tiny_llama

    save_tiny_llama(tiny_data / "llm")
    saved, reloaded = saved_and_reloaded("GLTA", glta_tiny_config(tiny_data))
    _check(saved, reloaded)
