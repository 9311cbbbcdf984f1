"""GraphAttentiveGPT2: the hop table and R, R inside every attention layer
(sdpa and eager, by hand), no leakage of validation edges into R, single ID tokens, ablation switches,
what trains, planted structure vs Pop, checkpoint reload, bad input.

A tiny generated dataset and tiny random Llama/GPT-2 backbones; everything runs in seconds on CPU.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed
from scipy.sparse.csgraph import shortest_path

from conftest import fast_config, tiny_llm_env, write_tiny_dataset
from recbole_llm.config import Config
from recbole_llm.data.text import MissingItemTextError
from recbole_llm.errors import ConfigError
from recbole_llm.graph.hops import FAR, bias_lut, graph_bias, hop_codes
from recbole_llm.graph.interactions import interaction_matrix

from recbole_llm.llm.testing import save_tiny_llama, tiny_gpt2_backbone, tiny_llama_backbone
from recbole_llm.models.graph_attentive_gpt2 import GraphAttentiveGPT2, GraphAttentiveGPT2Trainer
from recbole_llm.models.graph_attentive_gpt2.model import ITEM, USER, WORD, Batch
from recbole_llm.quick_start import run_experiment

PACKAGE = Path(__file__).resolve().parent.parent / "recbole_llm" / "models" / "graph_attentive_gpt2"
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}


def gat_config(root, **overrides):
    cfg = fast_config(root, llm_path=str(Path(root) / "llm"), load_col=LOAD_COL, gat_llm_layers=0,
                      gat_content_epochs=1, gat_collab_epochs=1, gat_finetune_epochs=2, gat_content_prompts=0)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with tiny_llm_env(tmp_path_factory.mktemp("gat")) as root:
        yield root


def build(root, backbone=None, dataset="tiny", **overrides):
    config = Config(model="GraphAttentiveGPT2", dataset=dataset, config_dict=gat_config(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    model = GraphAttentiveGPT2(config, train._dataset, backbone=backbone)
    return config, model, train, valid, test


def pairs_of(data):
    ds = data.dataset
    return list(zip(ds.inter_feat[ds.uid_field].tolist(), ds.inter_feat[ds.iid_field].tolist()))


# ------------------------------------------------------------------------------ hop table and R
@pytest.mark.parametrize("shape,edges,k", [((30, 40, 150), 0, 6), ((50, 20, 60), 1, 3), ((7, 9, 10), 2, 6), ((12, 9, 80), 3, 6)])
def test_hop_table_equals_shortest_paths_capped_at_k(shape, edges, k):
    rng = np.random.default_rng(edges)
    u, i, e = shape
    a = sp.csr_matrix((np.ones(e), (rng.integers(0, u, e), rng.integers(0, i, e))), shape=(u, i))
    codes = hop_codes(a, k)
    dist = shortest_path(sp.bmat([[None, a], [a.T, None]]).tocsr(), unweighted=True)
    expected = np.where(dist <= k, dist, FAR).astype(np.uint8)
    assert codes.dtype == np.uint8 and codes.shape == (u + i, u + i)
    np.testing.assert_array_equal(codes, expected)


def test_bias_lut_forms():
    lin = bias_lut("graph", 6, "linear")
    np.testing.assert_allclose(lin[:7].numpy(), [6 / 11, 1, 4 / 11, 3 / 11, 2 / 11, 1 / 11, 0], atol=1e-7)
    assert float(lin[FAR]) == 0.0 and float(lin.max()) == 1.0  # the code's min-max, as a constant
    exp = bias_lut("graph", 4, "exp", delta=0.5)
    np.testing.assert_allclose(exp[:6].numpy(), [1 / 1.5, 1.5 / 1.5, 0.25 / 1.5, 0.125 / 1.5, 0.0625 / 1.5, 0], atol=1e-7)
    assert torch.all(bias_lut("ones") == 1) and torch.all(bias_lut("none") == 0)
    codes = torch.tensor([[0, 1, 2], [1, 0, FAR], [2, FAR, 0]], dtype=torch.uint8)
    nodes = torch.tensor([[0, -1, 1, 2]])
    r = graph_bias(codes, lin, nodes)[0]
    assert r[1].abs().sum() == 0 and r[:, 1].abs().sum() == 0  # text tokens get 0
    assert float(r[0, 2]) == 1.0 and float(r[0, 3]) == pytest.approx(4 / 11) and float(r[2, 3]) == 0.0
    assert float(r[0, 0]) == pytest.approx(6 / 11)


def test_r_built_from_the_training_split_only(env):
    """A validation edge that would change hop distances leaves the model's table unchanged."""
    _, model, train, valid, test = build(env)
    train_matrix = interaction_matrix(train.dataset)
    expected = hop_codes(train_matrix, model.settings.max_hops)
    np.testing.assert_array_equal(model.hop_codes.numpy(), expected)
    n_users = model.n_users
    train_pairs = set(pairs_of(train))
    changed = 0
    for u, i in pairs_of(valid) + pairs_of(test):
        if (u, i) in train_pairs:
            continue
        assert model.hop_codes[u, n_users + i] != 1  # never an edge of R_conn
        leaky = train_matrix.tolil()
        leaky[u, i] = 1
        changed += int((hop_codes(leaky.tocsr(), 6) != expected).any())
        if changed >= 3:
            break
    assert changed >= 1  # the held-out edges would have changed hop counts: the test can see a leak


# ------------------------------------------------------------------------------ tokens and prompts
def test_id_tokens_are_single_tokens_and_history_is_cut_from_the_oldest_side(env):
    _, model, train, _, _ = build(env, gat_max_history=4)
    kinds, ids = model.encode("user_3 has interacted with item_5 item_12, user_3 will interact with")
    assert [(k, i) for k, i in zip(kinds, ids) if k != WORD] == [(USER, 3), (ITEM, 5), (ITEM, 12), (USER, 3)]
    words = [i for k, i in zip(kinds, ids) if k == WORD]
    text = model.backbone.tokenizer.decode(words)
    assert "user_" not in text and "item_" not in text and "interacted" in text
    user = max(range(1, model.n_users), key=lambda u: len(model.user_items[u]))
    items = model.user_items[user]
    assert len(items) > 4
    times = train.dataset.inter_feat
    hist = model.history(user)
    np.testing.assert_array_equal(hist, items[-4:])  # newest four, in time order
    sample = model.finetune_prompt(user, hist)
    item_ids = [i for k, i in zip(sample.kinds, sample.ids) if k == ITEM]
    assert item_ids == list(hist)
    trigger = model.encode(f"user_{user} has interacted with item_1, user_{user} will interact with")
    tail = len(trigger[0]) - trigger[0].index(ITEM) - 1
    assert sample.kinds[-tail:] == trigger[0][-tail:] and sample.ids[-tail:] == trigger[1][-tail:]
    del times
    with pytest.raises(ValueError, match="item_999"):
        model.encode("item_999")


def test_finetune_example_hides_a_share_and_targets_the_bag(env):
    _, model, *_ = build(env, gat_max_history=100)
    rng = np.random.default_rng(0)
    user = 1
    items = model.user_items[user]
    visible, target = model.finetune_example(user, rng)
    hidden = set(items) - set(visible)
    assert len(hidden) == max(1, int(0.2 * len(items)))
    assert set(target) == set(items)
    _, model_h, *_ = build(env, gat_finetune_target="hidden", gat_max_history=100)
    visible, target = model_h.finetune_example(user, np.random.default_rng(0))
    assert set(target) == set(items) - set(visible)


# ------------------------------------------------------------------------------ R in every layer
def _attention_by_hand(attn, hidden, bias, mask):
    """GPT-2 attention output computed by hand: softmax(QK^T/sqrt(d) + R + causal/padding) V, c_proj."""
    b, t, h = hidden.shape
    heads = attn.num_heads
    d = h // heads
    q, k, v = attn.c_attn(hidden).split(h, dim=2)
    q, k, v = (x.view(b, t, heads, d).transpose(1, 2) for x in (q, k, v))
    scores = q @ k.transpose(-1, -2) / d ** 0.5 + bias  # bias [B, 1, T, T], shared by the heads
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :].bool()
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h)
    return attn.c_proj(out)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_attention_equals_softmax_qk_plus_r_by_hand_in_every_layer(env, impl):
    backbone = tiny_gpt2_backbone(layers=3)
    backbone.model.set_attn_implementation(impl)
    _, model, *_ = build(env, backbone=backbone, gat_trainable="frozen")
    u = 1
    items = model.user_items[u]
    samples = [model.finetune_prompt(u, items[:5]), model.sample(f"These items item_{items[0]} item_{items[1]} item_7 are:")]
    batch = model.batch(samples)
    bias = model.attention_bias(batch.kinds, batch.ids)
    assert bias.shape == (2, 1, batch.kinds.shape[1], batch.kinds.shape[1]) and bias.abs().sum() > 0
    values = bias.unique().double().numpy()
    for v in (1.0, 4 / 11, 6 / 11):  # training edge, two items of the user, an item with itself
        assert np.isclose(values, v, atol=1e-6).any(), (v, values)
    captured = []
    blocks = backbone.decoder.h
    hooks = []
    for block in blocks:
        def pre(mod, args, kwargs):
            mod._gat_input = (args[0] if args else kwargs["hidden_states"]).detach()

        def post(mod, args, kwargs, output):
            captured.append((mod, mod._gat_input, output[0].detach()))

        hooks.append(block.attn.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(block.attn.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    assert len(captured) == len(blocks) == 3
    valid = batch.mask.bool()
    for attn, hidden, output in captured:
        with torch.no_grad():
            expected = _attention_by_hand(attn, hidden, bias, batch.mask)
            without_r = _attention_by_hand(attn, hidden, torch.zeros_like(bias), batch.mask)
        torch.testing.assert_close(output[valid], expected[valid], atol=2e-5, rtol=1e-4)
        assert (output[valid] - without_r[valid]).abs().max() > 1e-4  # R really changed the layer


def test_graph_bias_same_in_sdpa_and_eager_on_llama(env):
    outs = []
    for impl in ("sdpa", "eager"):
        backbone = tiny_llama_backbone()
        backbone.model.set_attn_implementation(impl)
        _, model, *_ = build(env, backbone=backbone, gat_trainable="frozen")
        batch = model.batch([model.finetune_prompt(1, model.user_items[1]), model.finetune_prompt(2, model.user_items[2][:3])])
        with torch.no_grad():
            outs.append(model(batch)[batch.mask.bool()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ ablations and trainable parts
def test_each_ablation_changes_what_it_names(env):
    _, model, train, *_ = build(env)
    batch = model.batch([model.finetune_prompt(1, model.user_items[1][:4])])
    r_graph = model.attention_bias(batch.kinds, batch.ids)
    ids_mask = (batch.kinds >= USER)
    pair = (ids_mask[:, :, None] & ids_mask[:, None, :])[:, None]
    _, ones, *_ = build(env, gat_graph_bias="ones")
    r_ones = ones.attention_bias(batch.kinds, batch.ids)
    assert torch.equal(r_ones, pair.float()) and not torch.equal(r_ones, r_graph)  # meaningless: 1 on ID pairs
    _, none, *_ = build(env, gat_graph_bias="none")
    assert none.attention_bias(batch.kinds, batch.ids) is None  # NoGKIA: plain attention
    with torch.no_grad():
        assert not torch.allclose(none(batch), model(batch))

    def stages(**kw):
        config, m, tr, *_ = build(env, **kw)
        trainer = GraphAttentiveGPT2Trainer(config, m)
        trainer.train_data = tr
        return trainer, [(s.name, s.validate) for s in trainer.stages()]

    assert stages()[1] == [("content", False), ("collab", False), ("finetune", True)]
    assert stages(gat_pretrain=False)[1] == [("finetune", True)]  # NoPretrain
    assert stages(gat_finetune=False)[1] == [("content", False), ("collab", True)]  # NoFineTune
    # NoGHIP: users' reviews only (paper Sec. 4.2.2), no collaborative stage; refused without a review file
    trainer, names = stages(gat_corpus=["review"], gat_collab_pretrain=False)
    assert names == [("content", False), ("finetune", True)]
    with pytest.raises(ConfigError, match=r"gat_corpus=\['review'\] gives no pretraining prompt .*tiny.review"):
        trainer.content_begin()
    folder = env / "data" / "tinyrev"
    folder.mkdir(exist_ok=True)
    for suffix in ("inter", "item"):
        (folder / f"tinyrev.{suffix}").write_text((env / "data" / "tiny" / f"tiny.{suffix}").read_text())
    inter = [line.split("\t")[:2] for line in (folder / "tinyrev.inter").read_text().splitlines()[1:]]
    (folder / "tinyrev.review").write_text("user_id:token\titem_id:token\treview_text:token_seq\n"
                                           + "".join(f"{u}\t{i}\tgood one\n" for u, i in inter))
    trainer, _ = stages(gat_corpus=["review"], gat_collab_pretrain=False, dataset="tinyrev")
    prompts = [p for p, _ in trainer.corpus.stage1(np.random.default_rng(0))]
    assert prompts and all("wrote the following review" in p for p in prompts)
    assert trainer.content_begin()["reviews"] == len(prompts)
    both = [p for p, _ in stages(gat_corpus=["review", "events"], dataset="tinyrev")[0].corpus.stage1(np.random.default_rng(0))]
    assert any("has interacted" in p for p in both) and not any("These items" in p or "The title of" in p
                                                                for p in both)  # w/o both (Fig. 4)
    full = [p for p, _ in stages()[0].corpus.stage1(np.random.default_rng(0))]
    assert any("These items" in p for p in full) and any("has interacted" in p for p in full)
    no2 = [p for p, _ in stages(gat_corpus=["content", "events"])[0].corpus.stage1(np.random.default_rng(0))]
    assert not any("These items" in p for p in no2) and any("The title of" in p for p in no2)  # w/o 2nd order
    noc = [p for p, _ in stages(gat_corpus=["second_order", "events"])[0].corpus.stage1(np.random.default_rng(0))]
    assert not any("The title of" in p for p in noc) and any("These items" in p for p in noc)  # w/o item content


@pytest.mark.parametrize("trainable", ["frozen", "full", "lora"])
def test_gradients_reach_only_the_trainable_parts(env, trainable):
    config, model, *_ = build(env, gat_trainable=trainable)
    params = [p for g in model.parameter_groups(1e-3, 1e-4) for p in g["params"]]
    loss = model.finetune_loss([1, 2], [model.user_items[1][:3], model.user_items[2][:3]],
                               [model.user_items[1], model.user_items[2]])
    loss.backward()
    backbone_params = dict(model.backbone.model.named_parameters())
    with_grad = {n for n, p in backbone_params.items() if p.grad is not None and p.grad.abs().sum() > 0}
    state = model.state_dict()
    if trainable == "frozen":
        assert not with_grad and not any(k.startswith("llm.") for k in state)
        assert len(params) == 2
    elif trainable == "full":
        assert with_grad and any(k.startswith("llm.") for k in state)
    else:
        assert with_grad and all("lora_" in n for n in with_grad)
        assert any("lora_" in k for k in state)
    assert model.item_embedding.weight.grad.abs().sum() > 0 and model.user_embedding.weight.grad.abs().sum() > 0
    groups = model.parameter_groups(1e-3, 1e-4)
    assert groups[0]["lr"] == 1e-3 and all(g["lr"] == 1e-4 for g in groups[1:])
    # the loss reads only the bag: unrelated users' embeddings get no gradient
    assert model.user_embedding.weight.grad[3:].abs().sum() == 0


def test_stage_optimiser_has_separate_learning_rates_for_ids_and_backbone(env):
    config, model, train, *_ = build(env, gat_id_learning_rate=0.005, gat_backbone_learning_rate=0.0002)
    trainer = GraphAttentiveGPT2Trainer(config, model)
    trainer.train_data = train
    stage = trainer.stages()[-1]
    opt = trainer._build_optimizer(params=stage.parameters(), learning_rate=stage.learning_rate,
                                   weight_decay=stage.weight_decay)
    assert [g["lr"] for g in opt.param_groups] == [0.005, 0.0002]
    assert opt.param_groups[0]["params"] == [model.user_embedding.weight, model.item_embedding.weight]


def test_lm_loss_only_on_the_main_part(env):
    _, model, *_ = build(env, gat_trainable="frozen")
    prompt = "user_1 has interacted with"
    main_items = model.user_items[1][:3]
    s = model.sample(prompt, " " + model.items_text(main_items))
    assert s.prompt_len == len(model.encode(prompt)[0])
    loss = model.lm_loss([s], word_targets=False)
    hidden = model(model.batch([s]))[0]
    logits = model.item_logits(hidden[s.prompt_len - 1 : len(s) - 1])
    expected = torch.nn.functional.cross_entropy(logits, torch.as_tensor(main_items))
    torch.testing.assert_close(loss, expected)


def test_full_sort_predict_scores_the_current_weights(env):
    from recbole.data.interaction import Interaction

    _, model, *_ = build(env, gat_trainable="frozen")
    model.eval()
    inter = Interaction({model.USER_ID: torch.tensor([2, 1])})
    first = model.full_sort_predict(inter).view(2, -1)
    assert torch.equal(first, model.score_users([2, 1])) and torch.isinf(first[:, 0]).all()
    state = model.state_dict()
    state["item_embedding.weight"] = state["item_embedding.weight"].flip(0)
    model.load_state_dict(state)  # new weights: the all-user score cache is dropped
    second = model.full_sort_predict(inter).view(2, -1)
    assert not torch.equal(first, second) and torch.equal(second, model.score_users([2, 1]))
    with torch.no_grad():
        model.item_embedding.weight.mul_(2.0)
    model.train()  # training may change the weights: the cache is dropped
    model.eval()
    assert torch.equal(model.full_sort_predict(inter).view(2, -1), model.score_users([2, 1]))


# ------------------------------------------------------------------------------ bad input
def test_missing_item_text_fields_fail_at_start_naming_the_fields_and_the_switch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", name="notext", with_text=False)
    save_tiny_llama(tmp_path / "llm")
    with pytest.raises(MissingItemTextError) as err:
        build(tmp_path, dataset="notext", load_col={"inter": LOAD_COL["inter"]})
    message = str(err.value)
    assert "movie_title" in message and "gat_corpus" in message and "w/o item content" in message
    _, model, *_ = build(tmp_path, dataset="notext", load_col={"inter": LOAD_COL["inter"]},
                         gat_corpus=["events"])  # runs without item content
    assert model.n_items > 1


def test_flash_attention_is_refused_with_the_settings_that_work(env):
    backbone = tiny_llama_backbone()
    backbone.model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match=r"flash_attention_2.*llm_attn_implementation: sdpa"):
        build(env, backbone=backbone)


# ------------------------------------------------------------------------------ end to end
def test_planted_structure_beats_pop_and_checkpoint_reload_gives_identical_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", n_users=60, n_items=40, per_user=(8, 14))
    save_tiny_llama(tmp_path / "llm")
    pop = run_experiment("Pop", "tiny", config_dict=fast_config(tmp_path))
    cfg = gat_config(tmp_path, gat_finetune_epochs=12, gat_id_learning_rate=0.01, gat_backbone_learning_rate=0.001,
                     stopping_step=20)
    gat = run_experiment("GraphAttentiveGPT2", "tiny", config_dict=cfg)
    assert gat["test_result"]["ndcg@10"] > 1.5 * pop["test_result"]["ndcg@10"], (gat["test_result"], pop["test_result"])
    # reload the best checkpoint into a fresh model: identical scores (the fine-tuned backbone is in it)
    path = gat["stats"]["saved_model_file"]
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert any(k.startswith("llm.") for k in ckpt["state_dict"])
    config, fresh, train, valid, test = build(tmp_path, **{k: v for k, v in cfg.items() if k.startswith("gat_")})
    users = list(range(1, fresh.n_users))
    before = fresh.score_users(users)
    fresh.load_state_dict(ckpt["state_dict"])
    after = fresh.score_users(users)
    assert not torch.equal(before, after)
    config2, again, *_ = build(tmp_path, **{k: v for k, v in cfg.items() if k.startswith("gat_")})
    again.load_state_dict(ckpt["state_dict"])
    assert torch.equal(after, again.score_users(users))
    assert Batch  # noqa: B018 - exported helper

