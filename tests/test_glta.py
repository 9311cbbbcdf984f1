"""GLTA: settings, stages, resume after a kill, determinism, no leakage, gradients, GLLM
loss masking, ablation switches, ranking output, planted structure.

A tiny generated dataset and a tiny random Llama (saved with save_pretrained, loaded through the
real llm_path code path); everything runs in seconds on CPU.
"""

import json
import logging
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import fast_config, glta_tiny_config, tiny_llm_env, write_tiny_dataset
from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config
from recbole_llm.errors import ConfigError, CorruptFileError, TrainingDataMismatchError
from recbole_llm.llm.testing import save_tiny_llama
from recbole_llm.models.glta import GLTA, GLTATrainer
from recbole_llm.models.glta.gllm import GLLMLayer, gllm_loss
from recbole_llm.quick_start import run_experiment

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PACKAGE = REPO / "recbole_llm" / "models" / "glta"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with tiny_llm_env(tmp_path_factory.mktemp("glta")) as root:
        yield root


def glta_config(root, **overrides):
    return glta_tiny_config(root, **overrides)


def build(root, **overrides):
    config = Config(model="GLTA", dataset="tiny", config_dict=glta_config(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = GLTA(config, train._dataset)
    return config, model, train, valid, test


def llm_fingerprint(model):
    return sum(float(p.double().sum()) for p in model.backbone.model.parameters())


def split_pairs(data):
    ds = data.dataset
    return set(zip(ds.inter_feat[ds.uid_field].tolist(), ds.inter_feat[ds.iid_field].tolist()))


# ----------------------------------------------------------- settings (registration: test_settings_registry.py)
@pytest.mark.parametrize("key,value,expected", [
    ("glta_inference", "best", "one of first_k, autoregressive, first_logit"),
    ("glta_ua_epochs", -1, "an integer >= 0"),
    ("glta_ua_learning_rate", 0.0, "a number > 0"),
    ("glta_slots", "many", "an integer >= 1"),
    ("glta_gllm_head", "deep", "one of linear, graph"),
    ("glta_ua_template", "no slots here", "must contain {slots}"),
    ("glta_infer_slots", 9, "between 0 (= glta_slots) and glta_slots (4)"),
])
def test_invalid_settings_name_key_value_and_what_is_allowed(env, key, value, expected):
    with pytest.raises(ConfigError) as err:
        build(env, **{key: value})
    message = str(err.value)
    assert key in message and expected in message and "Traceback" not in message


def test_invalid_setting_through_the_cli_exits_2(env, capsys):
    code = cli_main(["--model=GLTA", "--dataset=tiny", f"--data_path={env / 'data'}", f"--llm_path={env / 'llm'}",
                     "--glta_inference=best", "--state=WARNING"])
    err = capsys.readouterr().err
    assert code == 2 and "glta_inference='best'" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ end to end
def test_end_to_end_stages_logs_checkpoint_and_graph_cache(env, caplog, monkeypatch):
    with caplog.at_level(logging.INFO):
        result = run_experiment("GLTA", "tiny", config_dict=glta_config(env, state="INFO", glta_graph_epochs=3))
    stages = [k for k in result["stats"]["stage_times"] if k in GLTATrainer.STAGES]
    assert stages == ["graph", "item_text", "generate", "user_item"]
    assert set(result["stats"]["stage_stats"]) == set(stages)
    # one line per epoch of every epoch stage (LightGCN's inside the graph stage too): loss, speed, ETA
    text = caplog.text
    for label, epochs in (("GLTA graph (LightGCN)", 3), ("GLTA item_text", 1), ("GLTA user_item", 2)):
        lines = [line for line in text.splitlines() if re.search(re.escape(label) + r"\S* epoch \d+/" + str(epochs), line)]
        assert len(lines) == epochs, (label, lines)
        assert all("loss" in line and "/s" in line and "ETA" in line for line in lines), lines
    ckpt = torch.load(result["stats"]["saved_model_file"], map_location="cpu", weights_only=False)
    assert set(ckpt["state_dict"]) == {"item_projector.weight", "item_projector.bias", "user_projector.weight",
                                       "user_projector.bias", "gllm.proj", "gllm.bias", "user_graph_emb",
                                       "item_graph_emb"}  # no LLM weights
    assert set(ckpt["other_parameter"]) == {"user_profiles", "user_predictions", "graph_source"}
    assert sum(bool(p) for p in ckpt["other_parameter"]["user_profiles"]) == 30  # every user's text travels along
    assert result["stats"]["stage_stats"]["graph"]["reused"] is False
    # the next run on the same split reuses the cached LightGCN: no training, identical embeddings
    import recbole_llm.training.pretrain as pretrain

    monkeypatch.setattr(pretrain._LoggedTrainer, "fit", lambda *a, **k: pytest.fail("LightGCN trained again"))
    again = run_experiment("GLTA", "tiny", config_dict=glta_config(env, glta_graph_epochs=3, glta_ua_epochs=1))
    graph = again["stats"]["stage_stats"]["graph"]
    assert graph["reused"] is True and graph["source"].startswith("cache ")
    again_ckpt = torch.load(again["stats"]["saved_model_file"], map_location="cpu", weights_only=False)
    assert torch.equal(again_ckpt["state_dict"]["item_graph_emb"], ckpt["state_dict"]["item_graph_emb"])


def _run_glta_process(root, out, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, str(TESTS / "tests_support" / "glta_run.py"), str(root), str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=600)


def _prepare_root(root):
    write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
    save_tiny_llama(root / "llm")
    return root


@pytest.mark.slow
def test_same_seed_identical_metrics_and_resume_after_a_kill_mid_epoch(tmp_path):
    """Two fresh processes give identical metrics; a process SIGKILLed inside a user-item epoch is
    resumed by rerunning the same command, continues at that epoch, and ends with the same metrics."""
    runs = {}
    for name in ("a", "b"):
        root = _prepare_root(tmp_path / name)
        proc = _run_glta_process(root, root / "out.json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = json.loads((root / "out.json").read_text())
    assert runs["a"]["test"] == runs["b"]["test"] and runs["a"]["valid"] == runs["b"]["valid"]
    assert runs["a"]["user_item_epochs_run"] == [0, 1, 2]

    root = _prepare_root(tmp_path / "killed")
    # 30 users, 16 per batch: calls 1-2 are epoch 0, call 3 is the first batch of epoch 1
    killed = _run_glta_process(root, root / "out.json", "--kill-at-call", "3")
    assert killed.returncode == -9 and not (root / "out.json").exists()
    [run_dir] = (root / "saved").glob("GLTA-tiny-*")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["completed"] == ["graph", "item_text", "generate"]
    assert state["stage"] == "user_item" and state["epoch"] == 1
    resumed = _run_glta_process(root, root / "out.json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = json.loads((root / "out.json").read_text())
    assert out["stages_run"] == ["user_item"] and out["user_item_epochs_run"] == [1, 2]
    assert out["test"] == runs["a"]["test"] and out["valid"] == runs["a"]["valid"]


def test_corrupt_resume_state_and_caches_name_the_file_and_the_remedy(env, monkeypatch):
    cfg = glta_config(env, seed=11, glta_ua_epochs=1)
    config, model, train, valid, _ = build(env, **{k: v for k, v in cfg.items() if k.startswith("glta_")}, seed=11)
    trainer = GLTATrainer(config, model)
    monkeypatch.setattr(GLTATrainer, "user_item_epoch", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, valid)
    monkeypatch.undo()
    latest = trainer.run_dir / "latest.pth"
    latest.write_bytes(b"not a checkpoint")
    config2, model2, train2, valid2, _ = build(env, **{k: v for k, v in cfg.items() if k.startswith("glta_")}, seed=11)
    with pytest.raises(CorruptFileError) as err:
        GLTATrainer(config2, model2).fit(train2, valid2)
    assert str(latest) in str(err.value) and "stage_resume=False" in str(err.value)
    (trainer.run_dir / "state.json").write_text("{broken")
    with pytest.raises(CorruptFileError, match="state.json"):
        GLTATrainer(config2, model2).fit(train2, valid2)
    # a corrupt LightGCN cache is named with the way to train it anew
    caches = sorted((Path(env) / "cache" / "pretrain").glob("LightGCN-tiny-*.pth"))
    assert caches
    for c in caches:
        c.write_bytes(b"garbage")
    config3, model3, train3, valid3, _ = build(env, **{k: v for k, v in cfg.items() if k.startswith("glta_")},
                                               seed=11, stage_resume=False)
    with pytest.raises(CorruptFileError, match=r"cached LightGCN .*cannot be read.*Delete"):
        GLTATrainer(config3, model3).fit(train3, valid3)
    for c in caches:
        c.unlink()
    with pytest.raises(CorruptFileError, match="does not exist"):
        build_and_fit(env, glta_graph_checkpoint=str(env / "nope.pth"))


def build_and_fit(root, **overrides):
    config, model, train, valid, _ = build(root, **overrides)
    return GLTATrainer(config, model).fit(train, valid)


def test_graph_checkpoint_trained_on_another_split_is_refused(env):
    # a LightGCN baseline trained with another seed has another random split: its embeddings saw
    # interactions that are validation/test interactions of this run
    other = run_experiment("LightGCN", "tiny", config_dict=fast_config(env, seed=5, epochs=1))
    with pytest.raises(TrainingDataMismatchError, match="other interactions than this run's training split"):
        build_and_fit(env, glta_graph_checkpoint=other["stats"]["saved_model_file"], glta_ua_epochs=0,
                      glta_keep_initial=True)
    same = run_experiment("LightGCN", "tiny", config_dict=fast_config(env, epochs=1, embedding_size=64))
    config, model, train, valid, _ = build(env, glta_graph_checkpoint=same["stats"]["saved_model_file"],
                                           glta_ua_epochs=0, glta_ia_epochs=0, glta_keep_initial=True)
    trainer = GLTATrainer(config, model)
    trainer.fit(train, valid)
    assert trainer.stage_stats["graph"]["source"].startswith("checkpoint ")


# ------------------------------------------------------------------------------ no leakage
def test_no_validation_or_test_interaction_reaches_graph_prompts_targets_or_generation(env, monkeypatch):
    import recbole_llm.training.pretrain as pretrain

    config, model, train, valid, test = build(env, glta_ua_epochs=2, glta_graph_cache=False, stage_resume=False)
    train_pairs, held_out = split_pairs(train), split_pairs(valid) | split_pairs(test)
    assert held_out and not train_pairs & held_out
    graphs = []
    real_init = pretrain._LoggedTrainer.__init__
    monkeypatch.setattr(pretrain._LoggedTrainer, "__init__",
                        lambda self, cfg, net, label: (graphs.append(net), real_init(self, cfg, net, label))[1])
    seen_prompts, seen_targets = [], []
    real_ua = GLTA.ua_prompt
    monkeypatch.setattr(GLTA, "ua_prompt", lambda self, u, history, **kw: (
        seen_prompts.append((u, [int(i) for i in history])), real_ua(self, u, history, **kw))[1])
    real_loss = GLTA.user_item_loss
    monkeypatch.setattr(GLTA, "user_item_loss", lambda self, users, targets, histories, **kw: (
        seen_targets.extend((u, [int(i) for i in t]) for u, t in zip(users, targets)),
        real_loss(self, users, targets, histories, **kw))[1])
    trainer = GLTATrainer(config, model)
    users, contexts = trainer.generation_contexts()
    trainer.fit(train, valid)
    trainer.evaluate(test, load_best_model=False)
    # the LightGCN graph: exactly the training interactions
    [lightgcn] = graphs
    coo = lightgcn.interaction_matrix
    assert set(zip(coo.row.tolist(), coo.col.tolist())) == train_pairs
    # prompts (training and inference), targets and the texts the LLM read: training items only
    assert seen_prompts and seen_targets
    for u, items in seen_prompts + seen_targets:
        assert all((u, i) in train_pairs for i in items), (u, items)
    for u, context in zip(users, contexts):
        for (hu, i) in held_out:
            if hu == u:  # item texts are unique per item in the tiny data
                assert model.item_texts[i] not in context, (u, i)


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("item_alignment,head", [(True, "graph"), (False, "graph"), (True, "linear")])
def test_only_projectors_and_gllm_train(env, item_alignment, head):
    config, model, train, valid, test = build(env, glta_item_alignment=item_alignment, glta_gllm_head=head)
    wname = "gllm.weight" if head == "linear" else "gllm.proj"
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
    before_llm = llm_fingerprint(model)
    snap = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = GLTATrainer(config, model)
    optimizer = trainer._build_optimizer(params=model.trainable_parameters("user_item"), learning_rate=0.01)
    rng = np.random.default_rng(0)
    users = trainer.train_users()[:6]
    samples = [model.sample_user_targets(u, rng) for u in users]
    log = []  # slot states are kept only for a caller that hands a list (the head-only passes)
    loss = model.user_item_loss(users, [s[0] for s in samples], [s[1] for s in samples], slot_log=log)
    [(states, targets, weights)] = log
    assert states.shape == (len(targets), model.backbone.hidden_size) and not states.requires_grad
    assert (targets > 0).all() and weights.shape == targets.shape
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.model.parameters())
    assert model.user_projector.weight.grad.abs().sum() > 0 and model.gllm.bias.grad.abs().sum() > 0
    assert dict(model.named_parameters())[wname].grad.abs().sum() > 0
    optimizer.step()
    after = model.state_dict()
    assert llm_fingerprint(model) == before_llm
    assert not torch.equal(after["user_projector.weight"], snap["user_projector.weight"])
    assert not torch.equal(after[wname], snap[wname])
    assert torch.equal(after["user_graph_emb"], snap["user_graph_emb"])  # E_u, E_i frozen
    # the item projector is trained in the user-item stage only without item-text alignment
    assert torch.equal(after["item_projector.weight"], snap["item_projector.weight"]) == item_alignment
    names = {id(p) for p in model.trainable_parameters("item_text")}
    assert names == {id(p) for p in list(model.item_projector.parameters()) + list(model.gllm.parameters())}


# ------------------------------------------------------------------------------ GLLM layer and loss
def test_gllm_layer_modes():
    h, items = torch.randn(2, 3, 8), torch.randn(5, 4)
    graph = GLLMLayer(8, 5, 4, "graph")
    assert torch.allclose(graph(h, items), h @ graph.proj.T @ items.T + graph.bias, atol=1e-5)
    linear = GLLMLayer(8, 5, 4, "linear")
    assert torch.allclose(linear(h), h @ linear.weight.T + linear.bias, atol=1e-5)
    assert set(dict(linear.named_parameters())) == {"weight", "bias"}


def test_gllm_loss_masks_slots_past_k():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 9, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1], [-1, -1, -1, -1]])
    loss = gllm_loss(logits, targets)
    ce = torch.nn.functional.cross_entropy
    manual = (sum(ce(logits[0, t:t + 1], targets[0, t:t + 1]) for t in range(4)) / 4
              + sum(ce(logits[1, t:t + 1], targets[1, t:t + 1]) for t in range(2)) / 2) / 2
    assert torch.allclose(loss, manual)
    loss.backward()
    assert logits.grad[1, 2:].abs().sum() == 0 and logits.grad[2].abs().sum() == 0
    assert logits.grad[1, :2].abs().sum() > 0
    lg = logits.detach().clone()
    lg[..., 0] = float("-inf")  # -inf on the padding item does not produce NaN for masked slots
    assert torch.isfinite(gllm_loss(lg, targets))


def test_users_with_fewer_than_L_items(env):
    _, model, *_ = build(env, glta_slots=10)
    rng = np.random.default_rng(0)
    u = min(range(1, model.n_users), key=lambda x: len(model.user_items[x]))
    n = len(model.user_items[u])
    targets, history = model.sample_user_targets(u, rng)
    assert len(targets) == min(10, math.ceil(n * 0.5)) and not set(targets) & set(history)
    assert set(targets) | set(history) <= set(model.user_items[u].tolist())
    _, literal, *_ = build(env, glta_slots=10, glta_ua_targets_in_history=True)
    targets, history = literal.sample_user_targets(u, rng)
    assert len(targets) == min(10, n) and set(targets) <= set(history)


# ------------------------------------------------------------------------------ ablations
def _texts(prompt):
    return "".join(s for s in prompt if isinstance(s, str))


def _vector_names(prompt):
    return [s.name for s in prompt if not isinstance(s, str)]


def _stage_names(config, model):
    return [s.name for s in GLTATrainer(config, model).stages()]


def test_ablation_switches_change_the_prompt_and_the_stages(env):
    config, full, *_ = build(env)
    assert _stage_names(config, full) == ["graph", "item_text", "generate", "user_item"]
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
    assert _stage_names(config, no_ia) == ["graph", "generate", "user_item"]
    config, no_text, *_ = build(env, glta_profile_tokens=False, glta_prediction_tokens=False)
    assert _stage_names(config, no_text) == ["graph", "item_text", "user_item"]


def test_inference_modes(env, monkeypatch):
    _, model, *_ = build(env)
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
    users = [1, 2, 3]
    logits = model.slot_logits(users)
    first_k = model.score_users(users)
    cached = model.all_user_scores()[users].clone()
    model.set_inference("first_logit")  # what the FL row of the glta_ml100k suite scores (on_trained)
    fl = model.score_users(users)
    assert torch.allclose(fl, torch.log_softmax(logits[:, 0], -1))
    assert torch.allclose(model.all_user_scores()[users], fl) and not torch.allclose(cached, fl)  # not the cache
    with pytest.raises(ConfigError, match="unknown: use one of first_k, autoregressive, first_logit"):
        model.set_inference("beam")
    model.set_inference("autoregressive")
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
    top = first_k.topk(k, -1).indices
    for b, u in enumerate(users):
        picks = top[b].tolist()
        assert len(set(picks)) == k and not set(picks) & set(model.user_items[u].tolist()) and 0 not in picks
        assert picks[0] == int(logits[b, 0].masked_fill(model.history_mask[u], float("-inf")).argmax())


# ------------------------------------------------------------------------------ ranking output
def _manual_ndcg(scores, test):
    """NDCG@10 over the test users, from the scores, RecBole's history masks and positives."""
    values = []
    for interaction, history_index, positive_u, positive_i in test:
        users = interaction["user_id"]
        s = scores[users].clone()
        s[:, 0] = -math.inf
        s[history_index] = -math.inf
        top = s.topk(10, -1).indices
        for row in range(len(users)):
            pos = set(positive_i[positive_u == row].tolist())
            dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top[row].tolist()) if i in pos)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(pos), 10)))
            values.append(dcg / idcg)
    return float(np.mean(values))


def test_full_sort_predict_shape_masking_cache_and_metric(env):
    config, model, train, valid, test = build(env)
    model.set_graph_embeddings(torch.randn_like(model.user_graph_emb), torch.randn_like(model.item_graph_emb))
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
    assert result["ndcg@10"] == pytest.approx(_manual_ndcg(cached, test), abs=1e-4)
    # a DDP rank's shard: the scoring call is given its users (the model keeps no such setting)
    shard = tuple(int(u) for u in interaction[model.USER_ID][:3])
    part = model.full_sort_predict(interaction, users=shard).view(n, -1)
    assert torch.allclose(part[:3], cached[list(shard)], atol=1e-4) and torch.isinf(part[3:]).all()
    assert model.all_user_scores() is not model.all_user_scores(shard)
    assert trainer._scoring_users(test) is None  # one process: every user

    class Rank(GLTATrainer):  # a DDP rank without a process group: only where the users come from
        distributed = True

    rank = object.__new__(Rank)
    rank.model = model
    assert rank._scoring_users(types.SimpleNamespace(sampler=[0, 2], uid_list=[5, 3, 7])) == (5, 7)
    trainer._eval_users = shard  # the trainer's own record of the evaluation under way
    _, sharded, _, _ = trainer._full_sort_batch_eval(batch)
    assert torch.isinf(sharded[3:]).all() and torch.isfinite(sharded[:3]).any()


# ------------------------------------------------------------------------------ planted structure
def test_beats_pop_on_planted_structure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", n_users=60, n_items=40, per_user=(8, 14))
    save_tiny_llama(tmp_path / "llm")
    pop = run_experiment("Pop", "tiny", config_dict=glta_tiny_config(tmp_path))
    glta = run_experiment("GLTA", "tiny", config_dict=glta_tiny_config(tmp_path, glta_graph_epochs=20, glta_ua_epochs=5))
    assert glta["test_result"]["ndcg@10"] > 1.5 * pop["test_result"]["ndcg@10"], (glta["test_result"], pop["test_result"])
