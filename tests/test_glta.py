"""GLTA: stages, resume, gradients, GLLM loss masking, ablation switches, ranking output.

A tiny generated dataset and a tiny random Llama (saved with save_pretrained, loaded through the
real llm_path code path); everything runs in seconds on CPU.
"""

import json
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

import recbole_llm  # noqa: F401
from recbole_llm.config import Config
from recbole_llm.llm.backbone import clear_backbones
from recbole_llm.llm.testing import save_tiny_llama
from recbole_llm.models.glta import GLTA
from recbole_llm.quick_start import run_experiment
from recbole_llm.trainers.glta_trainer import GLTATrainer
from recbole_llm.utils import get_model, get_trainer

from conftest import fast_config, write_tiny_dataset


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("glta")
    write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
    save_tiny_llama(root / "llm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBOLE_LLM_CACHE", str(root / "cache"))
        mp.chdir(root)
        yield root
    clear_backbones()


def glta_config(root, **overrides):
    cfg = fast_config(
        root,
        llm_path=str(root / "llm"),
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]},
        item_text_template="{movie_title} ({genre})",
        glta_graph_epochs=2,
        glta_ia_epochs=1,
        glta_ua_epochs=2,
        glta_gen_max_new_tokens=3,
        glta_slots=4,
        glta_history_items=5,
        glta_ia_items_per_prompt=3,
        glta_kv_cache_dtype="float32",
    )
    cfg.update(overrides)
    return cfg


def build(root, **overrides):
    config = Config(model="GLTA", dataset="tiny", config_dict=glta_config(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = GLTA(config, train._dataset)
    return config, model, train, valid, test


def llm_fingerprint(model):
    return sum(float(p.double().sum()) for p in model.backbone.model.parameters())


# ------------------------------------------------------------------------------ registration
def test_registered_with_trainer_and_properties(env):
    assert get_model("GLTA") is GLTA
    assert get_trainer(None, "GLTA") is GLTATrainer
    config = Config(model="GLTA", dataset="tiny", config_dict=glta_config(env))
    for key in ("glta_item_alignment", "glta_user_alignment", "glta_profile_tokens", "glta_prediction_tokens",
                "glta_inference", "llm_path", "glta_slots"):
        assert key in config.final_config_dict
    assert config["glta_inference"] == "first_k"


# ------------------------------------------------------------------------------ end to end
def test_end_to_end_stage_order_and_small_checkpoint(env):
    result = run_experiment("GLTA", "tiny", config_dict=glta_config(env))
    stages = [k for k in result["stats"]["stage_times"] if k in GLTATrainer.STAGES]
    assert stages == ["graph", "item_text", "generate", "user_item"]
    assert set(result["test_result"]) >= {"recall@10", "ndcg@10", "precision@5"}
    ckpt = torch.load(result["stats"]["saved_model_file"], map_location="cpu", weights_only=False)
    keys = set(ckpt["state_dict"])
    assert keys == {"item_projector.weight", "item_projector.bias", "user_projector.weight", "user_projector.bias",
                    "gllm.proj", "gllm.bias", "user_graph_emb", "item_graph_emb"}  # no LLM weights
    assert set(ckpt["other_parameter"]) == {"user_profiles", "user_predictions", "graph_source"}
    assert any(ckpt["other_parameter"]["user_profiles"])  # generated texts travel with the checkpoint
    # the LightGCN of stage 1 is cached and reused by the next run on the same split/settings
    again = run_experiment("GLTA", "tiny", config_dict=glta_config(env, glta_ua_epochs=1))
    assert again["stats"]["stage_times"]["graph"] < result["stats"]["stage_times"]["graph"] + 5
    from recbole_llm.quick_start import load_data_and_model

    _, model, _, _, test_data, _ = load_data_and_model(result["stats"]["saved_model_file"])[:6]
    assert isinstance(model, GLTA) and any(model.user_profiles)


def test_resume_at_stage_and_epoch(env, monkeypatch):
    cfg = glta_config(env, glta_ia_epochs=2, glta_ua_epochs=3, seed=7)
    config, model, train, valid, test = build(env, **{k: v for k, v in cfg.items() if k.startswith("glta_")}, seed=7)
    trainer = GLTATrainer(config, model)
    trainer.stopped_after = ("item_text", 1)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, valid)
    state = json.loads((trainer.run_dir / "state.json").read_text())
    assert state["completed"] == ["graph"] and state["stage"] == "item_text" and state["epoch"] == 1
    # second process: graph must not run again; item_text continues at epoch 1
    config2, model2, train2, valid2, _ = build(env, **{k: v for k, v in cfg.items() if k.startswith("glta_")}, seed=7)
    trainer2 = GLTATrainer(config2, model2)
    assert torch.equal(model2.user_graph_emb, torch.zeros_like(model2.user_graph_emb))
    monkeypatch.setattr(GLTATrainer, "_stage_graph", lambda *a, **k: pytest.fail("graph stage ran again"))
    seen = []
    real = GLTATrainer._stage_item_text
    monkeypatch.setattr(GLTATrainer, "_stage_item_text",
                        lambda self, start, opt, sp: (seen.append((start, opt is not None)), real(self, start, opt, sp))[1])
    trainer2.stopped_after = ("user_item", 2)
    with pytest.raises(KeyboardInterrupt):
        trainer2.fit(train2, valid2)
    assert seen == [(1, True)]  # resumed at epoch 1 with the optimizer state
    assert torch.equal(model2.user_graph_emb, model.user_graph_emb)  # stage-1 output restored
    state = json.loads((trainer2.run_dir / "state.json").read_text())
    assert state["completed"] == ["graph", "item_text", "generate"] and state["epoch"] == 2
    # third process finishes the last user_item epoch only
    config3, model3, train3, valid3, _ = build(env, **{k: v for k, v in cfg.items() if k.startswith("glta_")}, seed=7)
    trainer3 = GLTATrainer(config3, model3)
    epochs = []
    real_epoch = GLTATrainer._train_epoch
    monkeypatch.setattr(GLTATrainer, "_train_epoch",
                        lambda self, td, e, **kw: (epochs.append(e), real_epoch(self, td, e, **kw))[1])
    trainer3.fit(train3, valid3)
    assert epochs == [2] and json.loads((trainer3.run_dir / "state.json").read_text())["finished"]
    assert model3.user_profiles == model2.user_profiles


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("item_alignment,head", [(True, "graph"), (False, "graph"), (True, "linear")])
def test_only_projectors_and_gllm_train(env, item_alignment, head):
    config, model, train, valid, test = build(env, glta_item_alignment=item_alignment, glta_gllm_head=head)
    wname = "gllm.weight" if head == "linear" else "gllm.proj"
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
    before_llm = llm_fingerprint(model)
    snap = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = GLTATrainer(config, model)
    trainer.optimizer = trainer._build_optimizer(params=model.trainable_parameters("user_item"), learning_rate=0.01)
    rng = np.random.default_rng(0)
    users = trainer.train_users()[:6]
    samples = [model.sample_user_targets(u, rng) for u in users]
    loss = model.user_item_loss(users, [s[0] for s in samples], [s[1] for s in samples])
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.model.parameters())
    assert model.user_projector.weight.grad.abs().sum() > 0 and model.gllm.bias.grad.abs().sum() > 0
    assert dict(model.named_parameters())[wname].grad.abs().sum() > 0
    trainer.optimizer.step()
    after = model.state_dict()
    assert llm_fingerprint(model) == before_llm
    assert not torch.equal(after["user_projector.weight"], snap["user_projector.weight"])
    assert not torch.equal(after[wname], snap[wname])
    assert torch.equal(after["user_graph_emb"], snap["user_graph_emb"])  # E_u, E_i frozen
    # the item projector is trained in the user-item stage only without item-text alignment
    assert torch.equal(after["item_projector.weight"], snap["item_projector.weight"]) == item_alignment
    # item-text stage: item projector and GLLM
    names = {id(p) for p in model.trainable_parameters("item_text")}
    assert names == {id(p) for p in list(model.item_projector.parameters()) + list(model.gllm.parameters())}


# ------------------------------------------------------------------------------ GLLM layer and loss
def test_gllm_layer_modes():
    from recbole_llm.models.glta import GLLMLayer

    h, items = torch.randn(2, 3, 8), torch.randn(5, 4)
    graph = GLLMLayer(8, 5, 4, "graph")
    assert torch.allclose(graph(h, items), h @ graph.proj.T @ items.T + graph.bias, atol=1e-5)
    linear = GLLMLayer(8, 5, 4, "linear")
    assert linear(h).shape == (2, 3, 5) and set(dict(linear.named_parameters())) == {"weight", "bias"}



def test_gllm_loss_masks_slots_past_k():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 9, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1], [-1, -1, -1, -1]])
    loss = GLTA.gllm_loss(logits, targets)
    ce = torch.nn.functional.cross_entropy
    manual = (sum(ce(logits[0, t:t + 1], targets[0, t:t + 1]) for t in range(4)) / 4
              + sum(ce(logits[1, t:t + 1], targets[1, t:t + 1]) for t in range(2)) / 2) / 2
    assert torch.allclose(loss, manual)
    loss.backward()
    assert logits.grad[1, 2:].abs().sum() == 0 and logits.grad[2].abs().sum() == 0
    assert logits.grad[1, :2].abs().sum() > 0
    # -inf on the padding item does not produce NaN for masked slots
    lg = logits.detach().clone()
    lg[..., 0] = float("-inf")
    assert torch.isfinite(GLTA.gllm_loss(lg, targets))


def test_users_with_fewer_than_L_items(env):
    config, model, *_ = build(env, glta_slots=10)
    rng = np.random.default_rng(0)
    u = min(range(1, model.n_users), key=lambda x: len(model.user_items[x]))
    n = len(model.user_items[u])
    targets, history = model.sample_user_targets(u, rng)
    assert 1 <= len(targets) <= min(10, n) and not set(targets) & set(history)
    assert set(targets) | set(history) <= set(model.user_items[u])
    model.targets_in_history = True
    targets, history = model.sample_user_targets(u, rng)
    assert len(targets) == min(10, n)


# ------------------------------------------------------------------------------ ablations
def _texts(prompt):
    return "".join(s for s in prompt if isinstance(s, str))


def _vector_names(prompt):
    return [s.name for s in prompt if not isinstance(s, str)]


def test_ablation_switches_change_the_prompt(env):
    _, full, *_ = build(env)
    full.set_user_texts(["", *["likes comedies"] * (full.n_users - 1)], ["", *["more horror"] * (full.n_users - 1)])
    u, hist = 1, full.inference_history(1)
    p = full.ua_prompt(u, hist, user_vector=torch.zeros(full.backbone.hidden_size))
    assert "Profile: likes comedies" in _texts(p) and "Prediction: more horror" in _texts(p)
    assert _vector_names(p) == ["user", "history", "slots"]
    for switch, absent in (("glta_profile_tokens", "Profile:"), ("glta_prediction_tokens", "Prediction:")):
        _, m, *_ = build(env, **{switch: False})
        m.set_user_texts(full.user_profiles, full.user_predictions)
        assert absent not in _texts(m.ua_prompt(u, hist, user_vector=torch.zeros(m.backbone.hidden_size)))
    _, no_ua, *_ = build(env, glta_user_alignment=False)
    q = no_ua.ua_prompt(u, hist)
    assert "user" not in _vector_names(q) and f"user_{no_ua.user_tokens_text[u]}" in _texts(q)
    assert all(id(p) != id(no_ua.user_projector.weight) for p in no_ua.trainable_parameters("user_item"))
    config, no_ia, *_ = build(env, glta_item_alignment=False)
    assert "item_text" not in GLTATrainer(config, no_ia).active_stages()
    config, no_text, *_ = build(env, glta_profile_tokens=False, glta_prediction_tokens=False)
    assert "generate" not in GLTATrainer(config, no_text).active_stages()


def test_inference_modes(env, monkeypatch):
    _, model, *_ = build(env)
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
    users = [1, 2, 3]
    logits = model.slot_logits(users)
    first_k = model.score_users(users)
    model.inference = "first_logit"
    fl = model.score_users(users)
    assert torch.allclose(fl, torch.log_softmax(logits[:, 0], -1))
    model.inference = "autoregressive"
    fed = []
    real = model.item_tokens
    monkeypatch.setattr(model, "item_tokens", lambda ids: (fed.append(torch.as_tensor(ids).clone()), real(ids))[1])
    ar = model.score_users(users)
    k = model.infer_slots
    assert len(fed) >= k - 1  # predicted items fed back as input tokens
    top_ar = ar.topk(k, -1).indices
    for step, ids in enumerate(fed[-(k - 1):]):
        assert torch.equal(ids.view(-1), top_ar[:, step])  # the item picked at step t is the next input
    assert not torch.allclose(ar, first_k)
    # first_k picks: distinct, not training items, ranked in slot order
    top = first_k.topk(k, -1).indices
    for b, u in enumerate(users):
        picks = top[b].tolist()
        assert len(set(picks)) == k and not set(picks) & set(model.user_items[u].tolist()) and 0 not in picks
        assert picks[0] == int(logits[b, 0].masked_fill(model.history_mask[u], float("-inf")).argmax())


# ------------------------------------------------------------------------------ ranking output
def test_full_sort_predict_shape_masking_and_cache(env):
    config, model, train, valid, test = build(env)
    trainer = GLTATrainer(config, model)
    batch = next(iter(test))
    interaction, history_index, positive_u, positive_i = batch
    scores = model.full_sort_predict(interaction)
    n = len(interaction)
    assert scores.shape == (n * model.n_items,)
    cached = model.all_user_scores()
    assert model.all_user_scores() is cached  # valid and test reuse one computation
    trainer.tot_item_num = model.n_items
    _, masked, _, _ = trainer._full_sort_batch_eval(batch)
    assert masked.shape == (n, model.n_items)
    assert torch.isinf(masked[history_index]).all() and torch.isinf(masked[:, 0]).all()
    with torch.no_grad():
        model.gllm.bias.add_(1.0)  # any parameter change invalidates the cache
    assert model.all_user_scores() is not cached
    with torch.no_grad():
        model.gllm.bias.sub_(1.0)  # back to the earlier state (e.g. the best epoch reloaded): reused
    assert torch.equal(model.all_user_scores(), cached)
    result = trainer.evaluate(test, load_best_model=False)
    assert 0.0 <= result["ndcg@10"] <= 1.0
