"""HeLLMPre and HeLLM: settings, hypergraphs by hand, training-split-only graphs and
pretraining, losses, ablation switches, prefixes in every layer, gradients, planted structure,
checkpoint reload.

Tiny generated datasets and a tiny random Llama (saved with save_pretrained, loaded through the
real llm_path code path); everything runs in seconds on CPU.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import fast_config, tiny_llm_env, write_ring_dataset, write_tiny_dataset
from recbole_llm.graph.sparse import lightgcn_layer_mean
from recbole_llm.config import Config
from recbole_llm.data.views import ViewSpec, build_view, build_views
from recbole_llm.errors import ConfigError, TrainingDataMismatchError
from recbole_llm.graph.hypergraph import (item_hypergraph, item_hypergraph_from_incidences, knn_incidence,
                                          user_hypergraph, user_hypergraph_from_matrix)
from recbole_llm.data.interactions import interaction_fingerprint
from recbole_llm.graph.interactions import interaction_matrix
from recbole_llm.models.hellm.prefix import forward_with_prefix, prefix_key_values
from recbole_llm.llm.testing import save_tiny_llama
from recbole_llm.models.hellm.model import HeLLM
from recbole_llm.models.hellm.pre import HeLLMPre, contrastive_loss
from recbole_llm.models.hellm.trainer import HeLLMTrainer, sequence_training_pairs
from recbole_llm.quick_start import run_experiment
from recbole_llm.training.schedule import warmup_cosine

PACKAGE = Path(__file__).resolve().parent.parent / "recbole_llm" / "models" / "hellm"
LOO = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}


def tiny_config(root, **overrides):
    cfg = fast_config(root, load_col=LOAD_COL, item_text_template="{movie_title} ({genre})", eval_args=LOO,
                      metrics=["Recall", "NDCG"], topk=[10, 20], valid_metric="NDCG@20",
                      llm_path=str(Path(root) / "llm"), hellm_graph_epochs=2, hellm_graph_eval_step=1,
                      hellm_graph_batch_size=256, hellm_sasrec_epochs=2, hellm_epochs=2, hellm_samples_per_epoch=0,
                      hellm_prefix_hidden=32, hellm_prefix_len=3, hellm_batch_size=16, hellm_max_history=8)
    cfg.pop("embedding_size")  # the models' YAML (64) or an override below
    cfg["embedding_size"] = 16
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with tiny_llm_env(tmp_path_factory.mktemp("hellm")) as root:
        yield root


def build(root, model="HeLLMPre", **overrides):
    config = Config(model=model, dataset="tiny", config_dict=tiny_config(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    cls = HeLLMPre if model == "HeLLMPre" else HeLLM
    return config, cls(config, train._dataset), train, valid, test


def pairs(data):
    ds = data.dataset
    return set(zip(ds.inter_feat[ds.uid_field].tolist(), ds.inter_feat[ds.iid_field].tolist()))


# ----------------------------------------------------------- settings (registration: test_settings_registry.py)
@pytest.mark.parametrize("key,value,expected", [
    ("hellmpre_temperature", 0.0, "a number > 0"),
    ("hellmpre_modalities", "audio", "one of auto, text, image, text+image"),
    ("hellmpre_u2u", "yes", "True or False"),
])
def test_invalid_settings_name_key_value_and_what_is_allowed(env, key, value, expected):
    with pytest.raises(ConfigError) as err:
        build(env, **{key: value})
    assert key in str(err.value) and expected in str(err.value)


# ------------------------------------------------------------------------------ hypergraphs by hand
def test_hypergraph_matrices_equal_a_hand_computation():
    # 4 users x 5 items: u0 {0,1,2}, u1 {1,2}, u2 {2,3}, u3 {4}
    h = sp.csr_matrix(np.array([[1, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    # H H^T without the diagonal: shared items u0-u1 2, u0-u2 1, u1-u2 1, u3 none
    expected = np.array([[0, 2 / 3, 1 / 3, 0], [2 / 3, 0, 1 / 3, 0], [1 / 2, 1 / 2, 0, 0], [0, 0, 0, 0]])
    assert np.allclose(user_hypergraph_from_matrix(h).toarray(), expected)
    # I2I: 5 items (row 0 = RecBole padding + 4 real), one modality, k = 2
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    inc = knn_incidence(f, 2, chunk_size=2, valid=torch.tensor([False, True, True, True, True])).toarray()
    assert np.array_equal(inc, np.array([[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1],
                                         [0, 0, 0, 1, 1]]))
    # two modalities concatenated along the hyperedge axis: A = I1 I1^T + I2 I2^T, D^-1/2 A D^-1/2
    inc2 = np.zeros((5, 5))
    inc2[1, [1, 3]] = inc2[2, [2, 1]] = inc2[3, [3, 4]] = inc2[4, [4, 2]] = 1
    a = inc @ inc.T + inc2 @ inc2.T
    d = a.sum(1)
    inv = np.where(d > 0, d ** -0.5, 0)
    got = item_hypergraph_from_incidences([sp.csr_matrix(inc), sp.csr_matrix(inc2)]).toarray()
    assert np.allclose(got, inv[:, None] * a * inv[None, :])
    assert got[0].sum() == 0 and np.allclose(np.diag(a)[1:], 2 * 2)  # self-loops kept: 2K on the diagonal
    assert np.array_equal(item_hypergraph([f], 2).toarray() > 0, (inc @ inc.T) > 0)


def test_linked_pair_share_counts_real_user_pairs_only():
    from recbole_llm.graph.hypergraph import linked_pair_share

    # row 0 = RecBole's padding user (no items) + the 4 users above: 6 of their 16 ordered pairs are linked
    h = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0],
                                [0, 0, 0, 0, 1]], dtype=np.float32))
    assert linked_pair_share(user_hypergraph_from_matrix(h)) == pytest.approx(6 / 16)


def test_knn_in_chunks_equals_the_dense_computation_and_missing_features_get_the_mean():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(50, 8, generator=g)
    f[7] = 0  # a missing feature row
    valid = torch.ones(50, dtype=torch.bool)
    valid[0] = False
    chunked = knn_incidence(f, 4, chunk_size=7, valid=valid).toarray()
    filled = f.clone()
    filled[7] = f[valid & (f.abs().sum(1) > 0)].mean(0)
    z = torch.nn.functional.normalize(filled, dim=1)
    sim = z @ z.T
    sim[:, 0] = -float("inf")
    sim.fill_diagonal_(float("inf"))
    dense = np.zeros((50, 50))
    for i in range(1, 50):
        dense[i, sim[i].topk(4).indices.numpy()] = 1
    assert np.array_equal(chunked, dense) and chunked[0].sum() == 0 and chunked.sum(1)[1:].tolist() == [4] * 49


def test_contrastive_loss_in_chunks_equals_the_formula():
    g = torch.Generator().manual_seed(1)
    e, h = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    tau = 0.5
    z1, z2 = torch.nn.functional.normalize(e, dim=1), torch.nn.functional.normalize(h, dim=1)
    between, within = torch.exp(z1 @ z2.T / tau), torch.exp(z1 @ z1.T / tau)
    expected = -torch.log(between.diag() / (between.sum(1) + within.sum(1) - within.diag())).mean()
    e.requires_grad_(True)
    got = contrastive_loss(e, h, tau, chunk_size=4)
    assert torch.allclose(got, expected, atol=1e-5)
    got.backward()
    assert e.grad is not None and torch.isfinite(e.grad).all()


# ------------------------------------------------------------------------------ training split only
def test_no_validation_or_test_interaction_in_any_graph(env):
    config, model, train, valid, test = build(env)
    train_pairs = pairs(train)
    held_out = (pairs(valid) | pairs(test)) - train_pairs
    assert held_out
    r = interaction_matrix(train.dataset)
    assert set(zip(*r.nonzero())) == train_pairs
    ui = model.ui_adj.to_dense()
    for u, i in held_out:
        assert ui[u, model.n_users + i] == 0 and ui[model.n_users + i, u] == 0
    assert torch.allclose(model.u2u_adj.to_dense(), torch.from_numpy(user_hypergraph(train.dataset).toarray()))
    # the I2I graph comes from item features only: building it never sees an interaction
    from recbole_llm.data.features import item_modalities

    feats = [f for _, f in item_modalities(config, train.dataset, "text", model="HeLLMPre")]
    assert torch.allclose(model.i2i_adj.to_dense(), torch.from_numpy(item_hypergraph(feats, 10).toarray()))


def test_hellm_stage1_sees_the_training_split_only(env, monkeypatch):
    import recbole_llm.models.hellm.trainer as trainer_module

    seen = {}
    real = trainer_module.pretrain_recbole_model

    def spy(config, train_data, valid_data, *, model, **kwargs):
        seen[model] = (interaction_fingerprint(train_data.dataset), sequence_training_pairs(train_data.dataset)
                       if model == "SASRec" else pairs(train_data))
        return real(config, train_data, valid_data, model=model, **kwargs)

    monkeypatch.setattr(trainer_module, "pretrain_recbole_model", spy)
    config, model, train, valid, test = build(env, "HeLLM", hellm_epochs=0)
    trainer = HeLLMTrainer(config, model)
    specs = trainer.data_views()
    assert list(specs) == ["graph", "sasrec"]
    # the views are built once, before training, and handed over: fit builds no dataset
    trainer.views = build_views(config, train, specs)
    import recbole.data

    monkeypatch.setattr(recbole.data, "create_dataset", lambda *a, **k: pytest.fail("a dataset was built in fit"))
    trainer.fit(train, valid, saved=False)
    monkeypatch.undo()
    # a view holding other interactions than the run's training split is refused (both checks)
    for name, spec in specs.items():
        other = ViewSpec.of_split(spec.model, {**spec.extra, "user_inter_num_interval": "[9,inf)"}, ("hellm_",),
                                  spec.check, spec.label)
        with pytest.raises(TrainingDataMismatchError, match=spec.label):
            build_view(config, other, train)
    train_pairs = sequence_training_pairs(train.dataset)
    held_out = {(u, i) for u, i in pairs(valid) | pairs(test)} - train_pairs
    assert held_out
    assert seen["SASRec"][0] == interaction_fingerprint(train.dataset)
    for name in ("HeLLMPre", "SASRec"):
        assert seen[name][1] == train_pairs and not (seen[name][1] & held_out), name
    assert model.item_graph_emb.abs().sum() > 0 and model.item_seq_emb.abs().sum() > 0


# ------------------------------------------------------------------------------ HeLLMPre behaviour
def test_hellmpre_ablations_change_what_they_name(env):
    batch_of = lambda train: next(iter(train))  # noqa: E731
    _, full, train, _, _ = build(env)
    full.calculate_loss(batch_of(train))
    assert set(full.last_losses) == {"bpr", "reg", "cl_user", "cl_item"}
    _, no_u2u, train, _, _ = build(env, hellmpre_u2u=False)
    no_u2u.calculate_loss(batch_of(train))
    assert not hasattr(no_u2u, "user_hyper") and "cl_user" not in no_u2u.last_losses
    _, no_i2i, train, _, _ = build(env, hellmpre_i2i=False)
    no_i2i.calculate_loss(batch_of(train))
    assert not hasattr(no_i2i, "item_hyper") and "cl_item" not in no_i2i.last_losses
    _, no_cl, train, _, _ = build(env, hellmpre_cl=False)
    no_cl.calculate_loss(batch_of(train))
    assert hasattr(no_cl, "user_hyper") and hasattr(no_cl, "item_hyper") and set(no_cl.last_losses) == {"bpr", "reg"}
    # fused embedding = LightGCN + normalised hypergraph view (Eq. 6)
    with torch.no_grad():
        users, items, h_u, h_i = full.forward()
        lg_u, lg_i = lightgcn_layer_mean(full.ui_adj, full.user_ui.weight, full.item_ui.weight, full.settings.ui_layers)
    assert torch.allclose(users, lg_u + torch.nn.functional.normalize(h_u, dim=1))
    assert torch.allclose(items, lg_i + torch.nn.functional.normalize(h_i, dim=1))


def test_dataset_without_item_features_gets_a_clear_error_or_runs_without_i2i(env):
    with pytest.raises(ConfigError, match=r"hellmpre_i2i=False"):
        build(env, item_text_template=None, load_col={"inter": LOAD_COL["inter"]})
    _, model, _, _, _ = build(env, item_text_template=None, load_col={"inter": LOAD_COL["inter"]}, hellmpre_i2i=False)
    assert not hasattr(model, "i2i_adj")


def test_hellmpre_loss_falls_and_beats_pop_on_planted_structure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", n_users=80, n_items=40, per_user=(10, 16))
    cfg = tiny_config(tmp_path, epochs=20, eval_step=5, stopping_step=20, train_batch_size=256, learning_rate=0.01)
    pop = run_experiment("Pop", "tiny", config_dict=tiny_config(tmp_path))
    pre = run_experiment("HeLLMPre", "tiny", config_dict=cfg)
    assert pre["test_result"]["ndcg@20"] > 1.3 * pop["test_result"]["ndcg@20"], (pre["test_result"], pop["test_result"])


def test_hellmpre_loss_falls(env):
    config, model, train, _, _ = build(env)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next(iter(train))
    first = None
    for _ in range(30):
        loss = model.calculate_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss)
    assert float(loss) < 0.9 * first


# ------------------------------------------------------------------------------ HeLLM
def test_prefixes_reach_every_layer_and_change_the_output(env):
    _, model, train, _, _ = build(env, "HeLLM")
    bb = model.backbone
    g = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 5, bb.hidden_size, generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    keys = torch.randn(2, bb.num_layers, 3, bb.hidden_size, generator=g)
    values = torch.randn(2, bb.num_layers, 3, bb.hidden_size, generator=g)
    with torch.no_grad():
        base = forward_with_prefix(bb, embeds, mask, prefix_key_values(bb, keys, values)).last_hidden_state
        plain = bb.forward_embeds(embeds, attention_mask=mask,
                                  position_ids=(mask.cumsum(1) - 1).clamp(min=0)).last_hidden_state
        assert not torch.allclose(base[:, -1], plain[:, -1])
        for layer in range(bb.num_layers):
            k2 = keys.clone()
            k2[:, layer] += 1.0
            out = forward_with_prefix(bb, embeds, mask, prefix_key_values(bb, k2, values)).last_hidden_state
            assert not torch.allclose(out[:, -1], base[:, -1]), layer
            v2 = values.clone()
            v2[:, layer] += 1.0
            out = forward_with_prefix(bb, embeds, mask, prefix_key_values(bb, keys, v2)).last_hidden_state
            assert not torch.allclose(out[:, -1], base[:, -1]), layer
        # the prefix has no rotary position: its keys are exactly k_proj(K) of that layer
        kv = prefix_key_values(bb, keys, values)
        attn = bb.decoder.layers[0].self_attn
        assert torch.allclose(kv[0][0].transpose(1, 2).flatten(2), attn.k_proj(keys[:, 0]))
    # through the model: every layer gets a per-user prefix that depends on the user's history
    batch = train.dataset.inter_feat[torch.arange(4)]
    with torch.no_grad():
        seq, lens = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
        model.item_graph_emb.normal_()
        mask = (torch.arange(seq.shape[1])[None] < lens[:, None]).float()
        k, v = model.prefix_vectors(seq, mask)
        assert k.shape == (4, bb.num_layers, 3, bb.hidden_size)
        assert not torch.allclose(k[0], k[1]) or torch.equal(seq[0], seq[1])
        # padding never enters the pooling (Eq. 9): junk behind the length changes nothing
        junk = seq.clone()
        junk[junk == 0] = 5
        assert torch.allclose(model.graph_features(seq, mask), model.graph_features(junk, mask))


@pytest.mark.parametrize("head", ["linear", "stage1"])
def test_only_the_intended_parameters_get_gradients(env, head):
    _, model, train, _, _ = build(env, "HeLLM", hellm_head=head)
    assert torch.count_nonzero(model.head.weight) == 0  # zero-initialised head: loss log|I| at the start
    with torch.no_grad():
        model.item_graph_emb.normal_()
        model.item_seq_emb.normal_()
        model.head.weight.normal_()  # as after the first steps: gradients then reach everything behind it
    model.train()
    loss = model.calculate_loss(train.dataset.inter_feat[torch.arange(8)])
    loss.backward()
    names = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    prefixes = {n.split(".")[0] for n in names}
    assert prefixes == {"lora", "bilinear", "prefix_k", "prefix_v", "prefix_bias_k", "prefix_bias_v", "norm_pre_k",
                        "norm_post_k", "norm_pre_v", "norm_post_v", "item_mlp", "head"}
    lora_b = [n for n in names if n.startswith("lora") and "lora_B" in n]
    assert lora_b and all(re.search(r"(gate|up|down)_proj", n) for n in names if n.startswith("lora"))
    for name, p in model.backbone.model.named_parameters():
        assert ("lora_" in name) == p.requires_grad, name
        if "lora_" not in name:
            assert p.grad is None, name
    assert not any(k.startswith("backbone") for k in model.state_dict())
    assert {"item_graph_emb", "item_seq_emb"} <= set(model.state_dict())


def test_stage1_head_is_p_over_the_frozen_item_tables(env):
    _, model, train, _, _ = build(env, "HeLLM", hellm_head="stage1", hellm_seq_id=False)
    d = 16
    assert model.head.weight.shape == (d, model.backbone.hidden_size)  # P only: no [n_items, hidden] matrix
    batch = train.dataset.inter_feat[torch.arange(8)]
    with torch.no_grad():
        model.item_graph_emb.normal_()
        model.item_seq_emb.normal_()
    model.train()
    loss = model.calculate_loss(batch)
    assert torch.isclose(loss, torch.log(torch.tensor(model.n_items - 1.0)))  # P starts at zero
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0  # zero P still learns: the item tables are not zero
    assert model.item_graph_emb.grad is None and not model.item_graph_emb.requires_grad
    with torch.no_grad():
        model.head.weight.normal_()
        h = torch.randn(3, model.backbone.hidden_size)
        scores = model.item_logits(h)
        assert torch.allclose(scores, (h @ model.head.weight.T) @ model.item_graph_emb.T, atol=1e-5)
        # moving one item's graph row moves that item's column only
        model.item_graph_emb[7] += 1.0
        moved = model.item_logits(h)
        changed = (~torch.isclose(moved, scores)).any(0).nonzero().flatten().tolist()
        assert changed == [7]
        # SASRec's table is not in this head (w/o Seq_ID): it changes nothing
        model.item_seq_emb.normal_()
        assert torch.allclose(model.item_logits(h), moved)


def test_hellm_ablations_change_what_they_name(env, monkeypatch):
    import recbole_llm.models.hellm.model as model_module

    batch = None
    _, full, train, _, _ = build(env, "HeLLM")
    batch = train.dataset.inter_feat[torch.arange(6)]
    # w/o GNN_PEFT: no prefix modules, the LLM runs without past keys/values
    _, no_peft, _, _, _ = build(env, "HeLLM", hellm_graph_prefix=False)
    assert not hasattr(no_peft, "prefix_k") and hasattr(full, "prefix_k")
    monkeypatch.setattr(model_module, "forward_with_prefix", lambda *a, **k: pytest.fail("prefix used"))
    no_peft.eval()
    no_peft.full_sort_predict(batch)
    monkeypatch.undo()
    # w/o GNN_ID: item tokens from SASRec embeddings only; w/o Seq_ID: from graph embeddings only
    _, no_gid, _, _, _ = build(env, "HeLLM", hellm_graph_id=False)
    _, no_sid, _, _, _ = build(env, "HeLLM", hellm_seq_id=False)
    d = 16
    assert full.item_mlp[0].in_features == 2 * d and no_gid.item_mlp[0].in_features == d == no_sid.item_mlp[0].in_features
    seq = batch[full.ITEM_SEQ]
    for m in (no_gid, no_sid):
        m.eval()
        with torch.no_grad():
            m.item_graph_emb.normal_()
            m.item_seq_emb.normal_()
            m.head.weight.normal_()  # the head starts at zero: every score would be equal
    with torch.no_grad():
        before = no_gid.item_tokens(seq).clone()
        no_gid.item_graph_emb.normal_()
        assert torch.allclose(no_gid.item_tokens(seq), before)
        scores = no_sid.full_sort_predict(batch).clone()
        no_sid.item_seq_emb.normal_()
        assert torch.allclose(no_sid.full_sort_predict(batch), scores)  # SASRec no longer matters at all
        no_sid.item_graph_emb.normal_()
        assert not torch.allclose(no_sid.full_sort_predict(batch), scores)
    # stages follow the switches; W = I (the authors' code) has no W parameter
    config, m, train, valid, _ = build(env, "HeLLM", hellm_seq_id=False, hellm_bilinear=False)
    trainer = HeLLMTrainer(config, m)
    trainer.train_data = train
    assert [s.name for s in trainer.stages()] == ["graph", "finetune"] and m.bilinear is None
    with pytest.raises(ConfigError, match="hellm_graph_id and hellm_seq_id"):
        build(env, "HeLLM", hellm_graph_id=False, hellm_seq_id=False)


def test_prefix_norms_are_the_rms_norm_formula_to_the_bit():
    """HeLLM's prefix norms are torch's nn.RMSNorm (it replaced a hand-written one): outputs and
    gradients equal ``x * rsqrt(mean(x^2) + eps) * w`` exactly."""
    torch.manual_seed(0)
    norm = torch.nn.RMSNorm(32, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(32))
    x = (torch.randn(4, 3, 32) * 3).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    out = norm(x)
    ref = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.detach()
    assert torch.equal(out, ref)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    assert torch.equal(x.grad, y.grad)


def test_warmup_cosine_schedule():
    lrs = [warmup_cosine(s, 100, 10, 1.0, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def test_hellm_beats_pop_on_planted_structure_and_checkpoint_reload_gives_identical_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_ring_dataset(tmp_path / "data", n_users=40, n_items=50, length=10)
    save_tiny_llama(tmp_path / "llm")
    # a short prompt: in a random 2-layer LLM attention is near uniform, so every text token dilutes the items
    cfg = tiny_config(tmp_path, hellm_epochs=5, hellm_learning_rate=0.005, hellm_sasrec_epochs=5, hellm_graph_epochs=2,
                      hellm_prompt_head="In:", hellm_prompt_tail="Out:", stopping_step=10)
    pop = run_experiment("Pop", "tiny", config_dict=tiny_config(tmp_path))
    result = run_experiment("HeLLM", "tiny", config_dict=cfg)
    assert result["test_result"]["ndcg@10"] > 2 * pop["test_result"]["ndcg@10"] + 0.05, (result["test_result"],
                                                                                        pop["test_result"])
    # a fresh model (fresh LLM copy) loaded from the best checkpoint scores exactly like the trained one
    config = Config(model="HeLLM", dataset="tiny", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    ckpt = torch.load(result["stats"]["saved_model_file"], map_location="cpu", weights_only=False)
    batch = test.dataset.inter_feat[torch.arange(10)]
    scores = []
    for _ in range(2):
        torch.manual_seed(len(scores))  # different random init each time: the checkpoint must override it
        model = HeLLM(config, train._dataset)
        model.load_state_dict(ckpt["state_dict"])
        model.load_other_parameter(ckpt.get("other_parameter"))
        model.eval()
        scores.append(model.full_sort_predict(batch))
    assert torch.equal(scores[0], scores[1])
    assert ckpt["other_parameter"]["graph_source"] and ckpt["other_parameter"]["seq_source"]


@pytest.mark.slow
def test_ddp_evaluation_equals_single_process(tmp_path, monkeypatch):
    """No fine-tuning: both runs rank the same seed-initialised model (DDP broadcasts rank 0's
    parameters), so sharded evaluation + all-gather must reproduce the single-process metrics.
    (Training under DDP, with sharded batches and averaged gradients, is checked in test_ddp.py.)"""
    from recbole_llm.quick_start import run_recbole_llm

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", n_users=40, n_items=30, per_user=(6, 10))
    save_tiny_llama(tmp_path / "llm")
    cfg = tiny_config(tmp_path, hellm_epochs=0, hellm_graph_epochs=0, hellm_sasrec_epochs=0)
    single = run_recbole_llm("HeLLM", "tiny", config_dict=dict(cfg), saved=False)
    multi = run_recbole_llm("HeLLM", "tiny", config_dict=dict(cfg), saved=False, nproc=2, port="29655")
    assert multi is not None
    for key, value in single["test_result"].items():
        assert multi["test_result"][key] == pytest.approx(float(value), abs=1e-4), key


def test_paper_i2i_without_image_features_is_refused_in_one_line_unless_text_only(env):
    """HeLLM-paper.yaml asks for text+image I2I hyperedges (the paper's); a dataset without image
    features is refused, naming the file and hellmpre_modalities: text; text only then builds."""
    from recbole_llm.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        build(env, hellmpre_modalities="text+image")
    message = str(err.value)
    assert "\n" not in message and "image_feat.npy" in message and "hellmpre_modalities: text" in message
    _, model, *_ = build(env, hellmpre_modalities="text")
    assert model.graph_info["modalities"] == ["text"]


def test_trainable_weights_are_fp32_under_a_bf16_llm(env):
    """HeLLM-paper runs LLaMA in bf16: LoRA adapters, prefix/item projectors and the head still train
    in fp32 (peft would leave the adapters in bf16), while the frozen LLM stays bf16."""
    _, model, train, *_ = build(env, model="HeLLM", llm_dtype="bfloat16")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora" in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values()), \
        {n: p.dtype for n, p in trainable.items() if p.dtype != torch.float32}
    assert model.backbone.dtype == torch.bfloat16
