"""RLMRec-Con, RLMRec-Gen and UniSRec: settings, profiles from the training split only,
what trains and what stays frozen, losses, planted structure, missing item texts.

Tiny generated datasets and a tiny random Llama (the real llm_path loading and generation path,
with its disk cache); everything runs in seconds on CPU.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import fast_config, tiny_llm_env, write_tiny_dataset
from recbole_llm.config import Config
from recbole_llm.data.text import MissingItemTextError
from recbole_llm.errors import ConfigError
from recbole_llm.llm.profiles import user_profile_contexts
from recbole_llm.models.hellm.trainer import sequence_training_pairs
from recbole_llm.models.rlmrec.model import RLMRecCon, RLMRecGen, SemanticNotReadyError
from recbole_llm.models.rlmrec.trainer import RLMRecTrainer
from recbole_llm.models.unisrec.model import UniSRec
from recbole_llm.models.unisrec.trainer import UniSRecTrainer
from recbole_llm.quick_start import load_data_and_model, run_experiment
from tests_support.baselines import assert_beats_pop, assert_loss_falls, loss_trace

ROOT = Path(__file__).resolve().parent.parent
LOO = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}
MODELS = {"RLMRecCon": RLMRecCon, "RLMRecGen": RLMRecGen, "UniSRec": UniSRec}


def rlmrec_config(root, **overrides):
    cfg = fast_config(root, load_col=LOAD_COL, item_text_template="{movie_title} ({genre})",
                      llm_path=str(Path(root) / "llm"), rlmrec_gen_max_new_tokens=3, epochs=5, eval_step=5,
                      learning_rate=0.01, train_batch_size=64)
    cfg.update(overrides)
    return cfg


def unisrec_config(root, **overrides):
    cfg = fast_config(root, load_col=LOAD_COL, item_text_template="{movie_title} ({genre})", eval_args=LOO,
                      hidden_size=32, inner_size=64, train_neg_sample_args=None, train_batch_size=256,
                      MAX_ITEM_LIST_LENGTH=20,
                      unisrec_pretrain_epochs=1, epochs=1, eval_step=1, learning_rate=0.005)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with tiny_llm_env(tmp_path_factory.mktemp("rlmrec")) as root:
        yield root


def build(root, model, dataset="tiny", **overrides):
    make = unisrec_config if model == "UniSRec" else rlmrec_config
    config = Config(model=model, dataset=dataset, config_dict=make(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, MODELS[model](config, train._dataset), train, valid, test


# ----------------------------------------------------------- settings (registration: test_settings_registry.py)
@pytest.mark.parametrize("model,key,value,expected", [
    ("RLMRecCon", "rlmrec_profile_source", "chatgpt", "one of generated, generated_users, item_text"),
    ("RLMRecGen", "rlmrec_mask_ratio", 0.0, "a number > 0"),
    ("UniSRec", "unisrec_mode", "both", "one of inductive, transductive"),
])
def test_invalid_settings_name_key_value_and_what_is_allowed(env, model, key, value, expected):
    with pytest.raises(ConfigError) as err:
        build(env, model, **{key: value})
    assert key in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("model", ["RLMRecCon", "UniSRec"])
def test_missing_item_text_is_a_clear_error(env, model):
    with pytest.raises(MissingItemTextError, match=rf"(?s)Model '{model}' needs item texts.*load_col"):
        build(env, model, load_col={"inter": LOAD_COL["inter"]}, item_text_template="{movie_title} ({genre})")


# ------------------------------------------------------------------------------ RLMRec
def _change_held_out(root, name):
    """Copy ``tiny`` as ``name`` with the item of every user's last two interactions (validation and
    test under leave-one-out by time) replaced; the training interactions stay as they are."""
    src = Path(root) / "data" / "tiny"
    dst = Path(root) / "data" / name
    dst.mkdir(parents=True, exist_ok=True)
    (dst / f"{name}.item").write_text((src / "tiny.item").read_text())
    header, *rows = (src / "tiny.inter").read_text().splitlines()
    rows = [r.split("\t") for r in rows]
    last = {}
    for index, row in enumerate(rows):  # timestamps grow with the row index
        last.setdefault(row[0], []).append(index)
    for indices in last.values():
        for index in indices[-2:]:
            rows[index][1] = str(int(rows[index][1]) % 40 + 1)
    (dst / f"{name}.inter").write_text("\n".join([header] + ["\t".join(r) for r in rows]) + "\n")
    return name


def _by_user_token(train, values):
    tokens = train.dataset.field2id_token[train.dataset.uid_field]
    return {str(tokens[u]): v for u, v in values.items()}


def test_profiles_come_from_training_interactions_only(env):
    changed = _change_held_out(env, "tiny_changed")
    seen = {}
    for dataset in ("tiny", changed):
        # rm_dup_inter: ~ keeps a held-out pair that repeats a training pair, so the training split stays as it was
        config, model, train, valid, test = build(env, "RLMRecCon", dataset=dataset, eval_args=LOO, rm_dup_inter=None)
        if dataset == "tiny":  # (the changed copy may repeat a training item in valid/test)
            held = {(u, i) for data in (valid, test) for u, i in zip(
                data.dataset.inter_feat[data.dataset.uid_field].tolist(),
                data.dataset.inter_feat[data.dataset.iid_field].tolist())}
            assert held and not any(i in set(model.histories[u].tolist()) for u, i in held)
        model.build_semantic()
        from recbole_llm.llm.loading import backbone_from_config

        users, contexts = user_profile_contexts(backbone_from_config(config), model.item_texts, model.histories,
                                                model.profile_spec())
        assert users
        seen[dataset] = {
            "contexts": _by_user_token(train, dict(zip(users, contexts))),
            "profiles": _by_user_token(train, {u: model.user_profiles[u] for u in users}),
            "semantic": _by_user_token(train, {u: model.user_semantic[u] for u in users}),
        }
        assert model.item_has_semantic[1:].all() and all(model.item_profiles[1:])
    before, after = seen["tiny"], seen[changed]
    assert before["contexts"] == after["contexts"]
    assert before["profiles"] == after["profiles"]
    assert before["semantic"].keys() == after["semantic"].keys()
    assert all(torch.equal(before["semantic"][u], after["semantic"][u]) for u in before["semantic"])


@pytest.mark.parametrize("name", ["RLMRecCon", "RLMRecGen"])
def test_rlmrec_only_graph_and_alignment_parameters_train_and_loss_falls(env, name):
    config, model, train, _, _ = build(env, name)
    batches = [b for _, b in zip(range(3), train)]
    with pytest.raises(SemanticNotReadyError, match="build_semantic"):
        model.calculate_loss(batches[0])
    model.build_semantic()
    expected = {"user_embedding.weight", "item_embedding.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight",
                "mlp.2.bias"} | ({"mask_token"} if name == "RLMRecGen" else set())
    assert {n for n, _ in model.named_parameters()} == expected  # no LLM, no sentence encoder inside
    semantic = model.user_semantic.clone(), model.item_semantic.clone()
    loss = model.calculate_loss(batches[0])
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert set(model.last_losses) == ({"bpr", "reg", "kd"} if name == "RLMRecCon" else {"bpr", "reg", "recon"})
    assert model.last_losses["kd" if name == "RLMRecCon" else "recon"] > 0
    model.zero_grad()
    assert_loss_falls(loss_trace(model, batches, steps=30, lr=0.01))
    assert torch.equal(model.user_semantic, semantic[0]) and torch.equal(model.item_semantic, semantic[1])


def test_rlmrec_generated_profiles_end_to_end_beat_pop(env):
    pop = run_experiment("Pop", "tiny", config_dict=rlmrec_config(env, eval_step=1))
    for name in ("RLMRecCon", "RLMRecGen"):
        result = run_experiment(name, "tiny", config_dict=rlmrec_config(env, epochs=8))
        profiles = result["stats"]["stage_stats"]["profiles"]
        assert profiles["profile_source"] == "generated" and profiles["prompts"] == 30 + 40
        assert profiles["generated"] + profiles["cached"] == profiles["prompts"]
        assert_beats_pop(result, pop, "ndcg@10", margin=1.5)
    # the checkpoint holds the profile embeddings: the reloaded model gets the same test metrics
    config, model, _, _, _, test = load_data_and_model(result["stats"]["saved_model_file"])
    assert bool(model.semantic_ready) and model.user_semantic.abs().sum() > 0
    again = RLMRecTrainer(config, model).evaluate(test, load_best_model=False)
    assert dict(again) == pytest.approx(dict(result["test_result"]))


# ------------------------------------------------------------------------------ UniSRec
def test_unisrec_text_encoder_frozen_inductive_has_no_item_ids(env):
    _, inductive, train, _, _ = build(env, "UniSRec", unisrec_mode="inductive")
    _, transductive, _, _, _ = build(env, "UniSRec", unisrec_mode="transductive")
    assert inductive.item_embedding is None
    assert not any(n.startswith("item_embedding") for n, _ in inductive.named_parameters())
    assert transductive.item_embedding.weight.shape[0] == transductive.n_items
    for model in (inductive, transductive):
        # the text encoder's output is a buffer; the encoder itself is not part of the model
        assert "plm_embedding" in dict(model.named_buffers())
        assert not any("plm" in n or "encoder.auto_model" in n for n, _ in model.named_parameters())
    # inductive scores depend on the texts only: other texts give other scores, ids do not enter
    batch = next(iter(train))
    inductive.eval()
    with torch.no_grad():
        scores = inductive.full_sort_predict(batch)
        inductive.plm_embedding[1:] = inductive.plm_embedding[1:].roll(1, dims=0)
        assert not torch.allclose(scores, inductive.full_sort_predict(batch))


def test_unisrec_pretrains_on_training_sequences_then_finetunes_with_the_encoder_fixed(env, monkeypatch):
    config, model, train, valid, test = build(env, "UniSRec", unisrec_pretrain_epochs=2, epochs=2,
                                              unisrec_item_drop_coefficient=0.5)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    plm = model.plm_embedding.clone()
    seen_pairs, snapshots, losses = set(), {}, []
    real_pretrain, real_begin = model.pretrain_loss, UniSRecTrainer.finetune_begin

    def pretrain_spy(interaction):
        seqs = interaction[model.ITEM_SEQ].tolist()
        for u, target, seq in zip(interaction[model.USER_ID].tolist(), interaction[model.POS_ITEM_ID].tolist(), seqs):
            seen_pairs.update((u, i) for i in [target] + seq if i)
        loss = real_pretrain(interaction)
        losses.append(float(loss))
        return loss

    def begin_spy(self, trainer):
        snapshots.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return real_begin(self, trainer)

    monkeypatch.setattr(model, "pretrain_loss", pretrain_spy)
    monkeypatch.setattr(UniSRecTrainer, "finetune_begin", begin_spy)
    trainer = UniSRecTrainer(config, model)
    trainer.fit(train, valid, saved=False)
    assert seen_pairs and seen_pairs <= sequence_training_pairs(train.dataset)
    assert trainer.stage_stats["pretrain"]["word_drop_view"] is True
    after = dict(model.named_parameters())
    # pre-training trained the transformer (not the unused ID table); fine-tuning left it fixed
    assert not torch.equal(snapshots["trm_encoder.layer.0.multi_head_attention.query.weight"],
                           init["trm_encoder.layer.0.multi_head_attention.query.weight"])
    assert torch.equal(snapshots["item_embedding.weight"], init["item_embedding.weight"])
    for n, p in after.items():
        frozen = n.startswith(("trm_encoder.", "position_embedding."))
        assert p.requires_grad is not frozen, n
        if frozen:
            assert torch.equal(p, snapshots[n]), n
    assert not torch.equal(after["moe_adaptor.experts.0.lin.weight"], snapshots["moe_adaptor.experts.0.lin.weight"])
    assert not torch.equal(after["item_embedding.weight"], snapshots["item_embedding.weight"])
    assert torch.equal(model.plm_embedding, plm)
    assert np.isfinite(losses).all()


def test_unisrec_pretrains_on_the_training_split_of_another_dataset(env, monkeypatch):
    write_tiny_dataset(env / "data", name="other", n_users=20, n_items=30, per_user=(6, 10), seed=5)
    _, _, other_train, _, _ = build(env, "UniSRec", dataset="other")
    config, model, train, valid, _ = build(env, "UniSRec", unisrec_pretrain_datasets="other", unisrec_pretrain_epochs=1)
    seen, real = [], model.pretrain_loss

    def spy(interaction, plm=None, plm_aug=None):
        seen.append((plm, interaction))
        return real(interaction, plm=plm, plm_aug=plm_aug)

    monkeypatch.setattr(model, "pretrain_loss", spy)
    trainer = UniSRecTrainer(config, model)
    trainer.fit(train, valid, saved=False)
    assert trainer.stage_stats["pretrain"]["datasets"] == ["other"]
    assert seen and all(plm is not None and plm.shape[0] == other_train.dataset.item_num for plm, _ in seen)
    pairs = {(u, t) for _, b in seen for u, t in zip(b[model.USER_ID].tolist(), b[model.POS_ITEM_ID].tolist())}
    assert len(pairs) == len(other_train.dataset.inter_feat)  # every training sequence of 'other', nothing else
    assert pairs <= sequence_training_pairs(other_train.dataset)


def test_unisrec_losses_fall_and_beat_pop_on_planted_structure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", n_users=80, n_items=40, per_user=(10, 16))
    config = Config(model="UniSRec", dataset="tiny", config_dict=unisrec_config(tmp_path))
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    model = UniSRec(config, train._dataset)
    batches = [b for _, b in zip(range(2), train)]
    assert_loss_falls(loss_trace(model, batches, steps=15, lr=0.005))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    pre = []
    for step in range(20):
        loss = model.pretrain_loss(batches[step % len(batches)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        pre.append(float(loss))
    assert_loss_falls(pre)
    pop = run_experiment("Pop", "tiny", config_dict=unisrec_config(tmp_path))
    ours = run_experiment("UniSRec", "tiny", config_dict=unisrec_config(tmp_path, unisrec_pretrain_epochs=0, epochs=8,
                                                                          eval_step=8))
    assert_beats_pop(ours, pop, "ndcg@10", margin=1.5)
