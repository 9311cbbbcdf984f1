"""CoLLM and LLaRA: bad settings, vectors injected at exactly their placeholders, only
the intended parameters train, pretrained LightGCN/SASRec from the training split only, loss falls,
planted structure, and the authors' output forms (Yes/No, candidate title likelihood) under uni100.

Tiny generated datasets and a tiny random Llama (saved with save_pretrained, loaded through the
real llm_path code path); everything runs in seconds on CPU.
"""

from pathlib import Path

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import fast_config, tiny_llm_env, write_ring_dataset
from recbole_llm.config import Config
from recbole_llm.errors import ConfigError
from recbole_llm.llm.loading import backbone_from_config
from recbole_llm.llm.testing import save_tiny_llama
from recbole_llm.models.collm.model import CoLLM
from recbole_llm.models.collm.settings import COLLM_SETTINGS
from recbole_llm.models.collm.trainer import CoLLMTrainer
from recbole_llm.models.llara.model import LLaRA
from recbole_llm.models.llara.settings import LLARA_SETTINGS
from recbole_llm.models.llara.trainer import LLaRATrainer, curriculum_hybrid
from recbole_llm.quick_start import run_experiment
from recbole_llm.data.views import sequence_training_pairs
from tests_support.baselines import assert_beats_pop, assert_loss_falls, loss_trace

ROOT = Path(__file__).resolve().parent.parent / "recbole_llm" / "models"
LOO = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}
SMALL = {
    "CoLLM": dict(collm_graph_epochs=2, collm_graph_eval_step=1, collm_graph_batch_size=256,
                  collm_graph_embedding_size=16, collm_lora_epochs=1, collm_cie_epochs=1, collm_samples_per_epoch=48,
                  collm_batch_size=16, collm_max_history=4, collm_proj_mid_times=2, collm_title_max_tokens=0),
    "LLaRA": dict(llara_sasrec_epochs=2, llara_sasrec_hidden_size=16, llara_sasrec_inner_size=32, llara_epochs=1,
                  llara_samples_per_epoch=48, llara_batch_size=16, llara_max_history=4, llara_proj_hidden=32,
                  llara_title_max_tokens=0),
}
MODELS = {"CoLLM": (CoLLM, CoLLMTrainer, COLLM_SETTINGS), "LLaRA": (LLaRA, LLaRATrainer, LLARA_SETTINGS)}


def tiny_config(root, model, **overrides):
    cfg = fast_config(root, load_col=LOAD_COL, item_text_template="{movie_title}", eval_args=LOO,
                      metrics=["Recall", "NDCG"], topk=[10, 20], valid_metric="NDCG@20", llm_path=str(Path(root) / "llm"))
    cfg.update(SMALL[model])
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with tiny_llm_env(tmp_path_factory.mktemp("collm_llara")) as root:
        yield root


def build(root, model, **overrides):
    config = Config(model=model, dataset="tiny", config_dict=tiny_config(root, model, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, MODELS[model][0](config, train._dataset), train, valid, test


def randomise(model):
    """Buffers and head as after pretraining and the first steps (the head starts at zero)."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("_emb"):
                buf.normal_()
        if hasattr(model, "head"):
            model.head.weight.normal_(std=0.1)


def pairs(data):
    ds = data.dataset
    return set(zip(ds.inter_feat[ds.uid_field].tolist(), ds.inter_feat[ds.iid_field].tolist()))


# ----------------------------------------------------------- settings (registration: test_settings_registry.py)
def test_bad_settings_and_inputs_get_short_errors(env):
    with pytest.raises(ConfigError, match="collm_output.*one of item_head, yes_no"):
        build(env, "CoLLM", collm_output="candidates")
    with pytest.raises(ConfigError, match=r"llara_lora_targets.*no module named \['c_attn'\]"):
        build(env, "LLaRA", llara_lora_targets="c_attn")
    with pytest.raises(ConfigError, match=r"unknown placeholders \['item'\]"):
        build(env, "CoLLM", collm_prompt_next="User {user} liked {item}")
    with pytest.raises(ConfigError, match=r"collm_output=yes_no .* cannot rank all items.*uni100"):
        build(env, "CoLLM", collm_output="yes_no")  # under full ranking: refused before any training
    with pytest.raises(Exception, match="movie_title"):  # no item text: the missing fields are named
        build(env, "LLaRA", load_col={"inter": LOAD_COL["inter"]})


# ------------------------------------------------------------------------------ injection
def _token_rows(model, batch):
    """Mask ``[B, T]`` of positions whose input embedding is a row of the LLM's token table."""
    table = model.backbone.model.get_input_embeddings().weight
    emb = batch.inputs_embeds
    dist = torch.cdist(emb.reshape(-1, emb.shape[-1]), table, compute_mode="donot_use_mm_for_euclid_dist").min(1).values.reshape(emb.shape[:2])
    return dist < 1e-5


@pytest.mark.parametrize("hybrid", [True, False])
def test_collm_vectors_reach_exactly_the_placeholders(env, hybrid):
    # the yes/no prompts name the user, the history items (collm_history_ids) and a target item
    _, model, train, _, _ = build(env, "CoLLM", collm_history_ids=True, collm_output="yes_no",
                                  eval_args={**LOO, "mode": "uni100"})
    randomise(model)
    inter = train.dataset.inter_feat[torch.arange(5)]
    targets = torch.tensor([3, 4, 5, 6, 7])
    with torch.no_grad():
        batch = model.build(inter, hybrid=hybrid, targets=targets)
        is_token = _token_rows(model, batch)
        real = batch.input_mask.bool()
        if not hybrid:
            assert batch.positions == {} and torch.equal(is_token & real, real)
            return
        users = inter[model.USER_ID]
        user_pos = batch.positions["user"]
        assert user_pos.shape == (5, 1)
        expected_user = model.cie(model.user_graph_emb[users])
        got = batch.inputs_embeds.gather(1, user_pos[..., None].expand(-1, -1, model.hidden))[:, 0]
        assert torch.allclose(got, expected_user, atol=1e-6)
        got_target = batch.gather(batch.inputs_embeds, "target")[:, 0]
        assert torch.allclose(got_target, model.cie(model.item_graph_emb[targets]), atol=1e-6)
        histories = model.histories(inter)
        for b, hist in enumerate(histories):
            assert int(batch.counts["history"][b]) == len(hist)
            rows = batch.inputs_embeds[b, batch.positions["history"][b, : len(hist)]]
            assert torch.allclose(rows, model.cie(model.item_graph_emb[torch.tensor(hist)]), atol=1e-6)
        vector = torch.zeros_like(real)
        for name in ("user", "target", "history"):
            for b in range(5):
                vector[b, batch.positions[name][b, : int(batch.counts[name][b])]] = True
        # every other real position is a token embedding of the frozen table, every vector position is not
        assert torch.equal(is_token & real, real & ~vector) and not (vector & ~real).any()


def test_llara_hybrid_item_tokens_follow_each_title(env):
    _, model, train, _, _ = build(env, "LLaRA")
    randomise(model)
    inter = train.dataset.inter_feat[torch.arange(6)]
    with torch.no_grad():
        batch = model.build(inter, hybrid=True)
        text = model.build(inter, hybrid=False)
    histories = model.histories(inter)
    is_token, real = _token_rows(model, batch), batch.input_mask.bool()
    for b, hist in enumerate(histories):
        pos = batch.positions["history"][b, : len(hist)]
        assert int(batch.counts["history"][b]) == len(hist) and len(hist) >= 1
        assert torch.allclose(batch.inputs_embeds[b, pos], model.projector(model.item_seq_emb[torch.tensor(hist)]), atol=1e-6)
        vector = torch.zeros_like(real[b])
        vector[pos] = True
        assert torch.equal(is_token[b] & real[b], real[b] & ~vector)
        # the token right before each item vector ends that item's title
        ids = model.backbone.tokenizer(model.titles[hist[0]], add_special_tokens=False).input_ids
        table = model.backbone.model.get_input_embeddings().weight
        assert torch.equal(batch.inputs_embeds[b, pos[0] - 1], table[ids[-1]])
    # the text-only prompt is the hybrid one without its vectors
    assert text.positions == {}
    assert int(text.input_mask.sum()) == int(batch.input_mask.sum()) - sum(len(h) for h in histories)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name", ["CoLLM", "LLaRA"])
def test_stages_train_only_the_intended_parameters_on_training_split_embeddings(env, monkeypatch, name):
    import recbole_llm.training.lightgcn as lightgcn_module
    import recbole_llm.models.llara.trainer as llara_trainer

    module = lightgcn_module if name == "CoLLM" else llara_trainer
    seen = {}
    real = module.pretrain_recbole_model

    def spy(config, train_data, valid_data, *, model, **kwargs):
        ds = train_data.dataset
        seen[model] = sequence_training_pairs(ds) if model == "SASRec" else pairs(train_data)
        return real(config, train_data, valid_data, model=model, **kwargs)

    monkeypatch.setattr(module, "pretrain_recbole_model", spy)
    config, model, train, valid, test = build(env, name)
    fresh = backbone_from_config(config, shared=False)
    snapshots = {}
    trainer = MODELS[name][1](config, model)
    end = trainer._end

    def record(stage, stats):
        snapshots[stage.name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return end(stage, stats)

    monkeypatch.setattr(trainer, "_end", record)
    trainer.fit(train, valid, saved=False)
    # pretrained on exactly the training interactions
    train_pairs = sequence_training_pairs(train.dataset)
    held_out = (pairs(valid) | pairs(test)) - train_pairs
    assert held_out
    pretrained = "LightGCN" if name == "CoLLM" else "SASRec"
    assert seen[pretrained] == train_pairs
    # the LLM's own weights never move and never require gradients
    base = {n.replace(".base_layer", ""): p for n, p in model.backbone.model.named_parameters() if "lora_" not in n}
    for n, p in fresh.model.named_parameters():
        assert not base[n].requires_grad and torch.equal(base[n], p), n

    def changed(a, b, prefix):
        return {k for k in snapshots[a] if k.startswith(prefix) and not torch.equal(snapshots[a][k], snapshots[b][k])}

    def keys(prefix):
        return {k for k in snapshots["graph" if name == "CoLLM" else "sasrec"] if k.startswith(prefix)}

    if name == "CoLLM":
        assert model.user_graph_emb.abs().sum() > 0
        # lora stage: LoRA and head move, the CIE mapping does not; cie stage: mapping and head, LoRA frozen
        assert changed("graph", "lora", "lora") and changed("graph", "lora", "head") == keys("head")
        assert not changed("graph", "lora", "cie")
        assert changed("lora", "cie", "cie") == keys("cie") and not changed("lora", "cie", "lora")
        frozen = ("user_graph_emb", "item_graph_emb")
        assert not changed("graph", "cie", frozen)
    else:
        assert model.item_seq_emb.abs().sum() > 0
        assert changed("sasrec", "finetune", "lora") and changed("sasrec", "finetune", "head") == keys("head")
        assert changed("sasrec", "finetune", "projector") == keys("projector")  # the curriculum reached hybrid batches
        assert not changed("sasrec", "finetune", "item_seq_emb")
    assert not any(k.startswith("backbone") for k in model.state_dict())


def test_curriculum_goes_from_text_to_hybrid():
    draws = [curriculum_hybrid(7, step, 200) for step in range(200)]
    assert sum(draws[:50]) < sum(draws[150:])
    assert draws == [curriculum_hybrid(7, step, 200) for step in range(200)]  # deterministic per seed and step
    assert curriculum_hybrid(7, 199, 200)


@pytest.mark.parametrize("name", ["CoLLM", "LLaRA"])
def test_loss_falls(env, name):
    _, model, train, _, _ = build(env, name)
    randomise(model)
    model.train()
    inter = train.dataset.inter_feat
    batches = [inter[torch.arange(i, i + 16)] for i in (0, 16)]
    assert_loss_falls(loss_trace(model, batches, steps=16, lr=0.01))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Every user walks a ring of items (conftest.write_ring_dataset: the next item is always the
    previous + 1); Pop's result on it. RecBole's sequential evaluation does not mask history items."""
    root = tmp_path_factory.mktemp("planted")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("RECBOLE_LLM_CACHE", str(root / "cache"))
        write_ring_dataset(root / "data", n_users=40, n_items=30, length=10)
        save_tiny_llama(root / "llm")
        pop = run_experiment("Pop", "tiny", config_dict=tiny_config(root, "CoLLM"))
        yield root, pop, mp


def planted_settings(name):
    """CoLLM's or LLaRA's settings for the planted-data runs (also tests_support/parity_metrics.py)."""
    # short prompts: in a random 2-layer LLM attention is near uniform, so every text token dilutes the items
    return (dict(collm_graph_epochs=20, collm_graph_learning_rate=0.01, collm_lora_epochs=1, collm_cie_epochs=8,
                collm_cie_learning_rate=0.01, collm_lora_learning_rate=0.005, collm_samples_per_epoch=0,
                collm_history_ids=True, collm_prompt_next="In:{history} U:{user} Out:",
                collm_text_prompt_next="In:{history} Out:")
           if name == "CoLLM" else
           dict(llara_sasrec_epochs=5, llara_epochs=5, llara_learning_rate=0.005, llara_samples_per_epoch=0,
                llara_curriculum=False, llara_lora_targets="q_proj,v_proj", llara_prompt="In:{history} Out:"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["CoLLM", "LLaRA"])
def test_beats_pop_on_planted_structure(planted, name):
    root, pop, _ = planted
    extra = planted_settings(name)
    ours = run_experiment(name, "tiny", config_dict=tiny_config(root, name, stopping_step=10, **extra))
    assert_beats_pop(ours, pop, metric="ndcg@20")


# ------------------------------------------------------------------------------ the authors' output forms
def test_collm_yes_no_scores_are_the_lm_heads_yes_minus_no(env):
    _, model, train, _, _ = build(env, "CoLLM", collm_output="yes_no", eval_args={**LOO, "mode": "uni100"})
    randomise(model)
    model.eval()
    inter = train.dataset.inter_feat[torch.arange(4)]
    items = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        scores = model.yes_no_scores(inter, items, hybrid=True)
        batch = model.build(inter, hybrid=True, targets=items)
        logits = model.backbone.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                                      position_ids=batch.position_ids).logits[:, -1]
    yes, no = model.answer_ids
    assert torch.allclose(scores, logits[:, yes] - logits[:, no], atol=1e-5)
    with pytest.raises(ConfigError, match="uni100"):
        model.full_sort_predict(inter)


@pytest.mark.slow
@pytest.mark.parametrize("name,option", [("CoLLM", {"collm_output": "yes_no"}), ("LLaRA", {"llara_output": "candidates"})])
def test_original_output_forms_run_under_uni100(env, name, option):
    # a short run (no validation pass) through RecBole's sampled evaluator
    small = {f"{name.lower()}_samples_per_epoch": 16, "eval_step": 0}
    cfg = tiny_config(env, name, eval_args={**LOO, "mode": "uni100"}, **option, **small)
    result = run_experiment(name, "tiny", config_dict=cfg)
    assert set(result["test_result"]) >= {"recall@10", "ndcg@20"}
    assert 0 < result["test_result"]["recall@20"] < 1
    config, model, train, valid, test = build(env, name, eval_args={**LOO, "mode": "uni100"}, **option)
    randomise(model)
    model.eval()
    inter = train.dataset.inter_feat[torch.arange(3)].repeat_interleave(2)
    inter.update(type(inter)({model.ITEM_ID: torch.tensor([1, 2, 1, 2, 1, 2])}))
    scores = model.predict(inter)
    assert scores.shape == (6,) and torch.isfinite(scores).all() and not torch.allclose(scores[0::2], scores[1::2])
    with pytest.raises(ConfigError, match="uni100"):
        model.full_sort_predict(inter)
