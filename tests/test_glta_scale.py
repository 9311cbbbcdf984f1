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

from conftest import glta_tiny_config, tiny_llm_env
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_llm.config import Config


from recbole_llm.models.glta import GLTA


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with tiny_llm_env(tmp_path_factory.mktemp("glta_scale")) as root:
        yield root


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


# ------------------------------------------------------------------------------ prefix K/V cache
def _prefix_prompts(bb, n):
    from recbole_llm.llm.prompts import Vectors

    return [[f"profile of user {u}: likes {'long ' * (u % 3)}films\nhistory:",
             Vectors("slots", torch.randn(2, bb.hidden_size, generator=torch.Generator().manual_seed(u)))]
            for u in range(n)]


def test_prefix_store_off_device_and_bounded_recomputes_what_does_not_fit():
    from recbole_llm.llm.prompts import PrefixKVStore, PromptBuilder
    from recbole_llm.llm.testing import tiny_llama_backbone

    bb = tiny_llama_backbone()
    prompts = _prefix_prompts(bb, 6)
    full = PrefixKVStore(bb, storage_dtype=torch.float32)
    ref_builder = PromptBuilder(bb, prefix_store=full)
    ref_batch = ref_builder.build(prompts)
    ref = ref_batch.gather(ref_builder.forward(ref_batch), "slots")
    one_entry = max(e.numel() * e.element_size() for e in full._kv.values())
    bounded = PrefixKVStore(bb, storage_dtype=torch.float32, storage_device="cpu", max_bytes=2 * one_entry)
    builder = PromptBuilder(bb, prefix_store=bounded)
    for _ in range(2):  # a second epoch recomputes the same entries again
        batch = builder.build(prompts)
        out = batch.gather(builder.forward(batch), "slots")
        assert torch.allclose(out, ref, atol=1e-5)
    assert 1 <= len(bounded) <= 2 and bounded.nbytes <= 2 * one_entry
    assert all(e.device.type == "cpu" for e in bounded._kv.values())
    assert bounded.recomputed_tokens > 0 and full.recomputed_tokens == 0
    # precomputation stops once the store is full instead of computing every prefix
    fresh = PrefixKVStore(bb, storage_dtype=torch.float32, max_bytes=2 * one_entry, batch_size=2)
    split = [PromptBuilder(bb).split_prefix(p)[0] for p in prompts]
    fresh.ensure(split, until_full=True)
    assert fresh.computed_tokens < full.computed_tokens


def test_glta_scores_equal_with_a_bounded_prefix_cache(env):
    _, model, _, _, test = build(env)
    interaction = next(iter(test))[0]
    ref = model.full_sort_predict(interaction)
    _, small, _, _, _ = build(env, glta_kv_cache_max_gb=2e-7)  # ~200 bytes: almost nothing fits
    small.load_state_dict(model.state_dict())
    out = small.full_sort_predict(interaction)
    assert small.store("ua").recomputed_tokens > 0
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(out))
    assert torch.allclose(out[finite], ref[finite], atol=1e-4)


# ------------------------------------------------------------------------------ half precision
def _alignment_loss(model, n=8):
    import numpy as np

    rng = np.random.default_rng(0)
    users = [u for u in range(1, model.n_users) if len(model.user_items[u])][:n]
    samples = [model.sample_user_targets(u, rng) for u in users]
    return model.user_item_loss(users, [t for t, _ in samples], [h for _, h in samples])


def test_float16_backward_uses_loss_scaling_and_small_gradients_survive(env):
    from recbole_llm.models.glta import GLTATrainer

    config, model, *_ = build(env, llm_dtype="float16", glta_user_alignment=True)
    assert model.backbone.dtype == torch.float16 and model.user_projector.weight.dtype == torch.float32
    trainer = GLTATrainer(config, model)
    assert trainer.grad_scaler.is_enabled()
    params = model.trainable_parameters("user_item")
    tiny = 1e-6  # a loss this small (late in training, a small learning signal) underflows in float16

    # plain backward: the gradient reaching the user projector through the float16 LLM underflows
    (_alignment_loss(model) * tiny).backward()
    plain = model.user_projector.weight.grad.clone()
    for p in params:
        p.grad = None
    # the trainer's step: scaled backward, unscaled gradients, a step that moves the projector
    opt = torch.optim.SGD(params, lr=1.0)
    before = model.user_projector.weight.detach().clone()
    captured = {}

    def keep_grad(*_):
        captured["grad"] = model.user_projector.weight.grad.clone()

    opt.register_step_pre_hook(keep_grad)
    trainer.clip_and_step(_alignment_loss(model) * tiny, opt)
    scaled = captured["grad"]
    assert torch.isfinite(scaled).all()
    assert (scaled != 0).float().mean() > 0.5
    assert (scaled != 0).float().mean() > (plain != 0).float().mean() + 0.3
    assert not torch.equal(model.user_projector.weight.detach(), before)

    # float32 and bfloat16 LLMs: no scaling (bfloat16 has float32's exponent range)
    for dtype in ("float32", "bfloat16"):
        cfg, m32, *_ = build(env, llm_dtype=dtype)
        assert not GLTATrainer(cfg, m32).grad_scaler.is_enabled()


# ------------------------------------------------------------------------------ backward to the inputs
class _InferenceOnlyLinear(torch.nn.Module):
    """Stands for a quantised kernel without a backward (ExLlama/Marlin style): its output is
    computed outside autograd."""

    def __init__(self, linear):
        super().__init__()
        self.inner = linear

    def forward(self, x):
        with torch.no_grad():
            return self.inner(x)


def test_backward_reaches_the_llm_inputs_or_loading_says_which_backend_to_use():
    from recbole_llm.errors import RecBoleLLMError
    from recbole_llm.llm.testing import tiny_llama_backbone

    bb = tiny_llama_backbone()
    assert bb.check_input_gradients() is True
    for layer in bb.model.model.layers:
        layer.mlp.down_proj = _InferenceOnlyLinear(layer.mlp.down_proj)
        layer.self_attn.o_proj = _InferenceOnlyLinear(layer.self_attn.o_proj)
    with pytest.raises(RecBoleLLMError, match="llm_gptq_backend: torch"):
        bb.check_input_gradients("a GPTQ model")


def test_gptq_loading_asks_for_the_torch_kernels(monkeypatch, tmp_path):
    """Without gptqmodel (not installed on this CPU machine) the loader cannot run; what it passes to
    transformers is checked instead: the checkpoint's bits, backend 'torch'."""
    import json

    from recbole_llm.llm import loading as bb_mod

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}}))
    seen = {}

    class FakeAuto:
        @staticmethod
        def from_pretrained(location, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop here")

    import transformers

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda *a, **k: None))
    with pytest.raises(RuntimeError, match="stop here"):
        bb_mod._load_tokenizer_and_model(str(tmp_path), None, torch.float16, "sdpa", True, False, "cuda",
                                         gptq_backend="torch")
    q = seen["quantization_config"]
    assert q.bits == 4 and str(getattr(q.backend, "value", q.backend)).lower() == "torch"


# ------------------------------------------------------------------------------ head initialisation
def test_probe_head_initialisation_is_the_same_map_for_both_heads(env):
    torch.manual_seed(0)
    emb = None
    logits = {}
    for head in ("graph", "linear"):
        _, model, *_ = build(env, glta_gllm_head=head, glta_head_init="probe")
        if emb is None:
            emb = (model.user_graph_emb.clone(), model.item_graph_emb.clone(),
                   {k: v.clone() for k, v in model.state_dict().items() if "projector" in k})
        model.set_graph_embeddings(emb[0], emb[1])
        model.load_state_dict({**model.state_dict(), **emb[2]})
        users = [u for u in range(1, model.n_users) if len(model.user_items[u])]
        before = model.slot_logits(users[:5]).clone()
        r2 = model.probe_init_head(users, ridge=1e-3)
        assert r2 <= 1.0
        logits[head] = model.slot_logits(users[:5])
        assert not torch.allclose(logits[head], before)
        # the graph head maps slot states to graph space: on the fitted users it predicts E_u
        if head == "graph":
            _, h = model._forward_slots(model.inference_prompts(users), "ua", "infer")
            pred = torch.nn.functional.linear(h.float(), model.gllm.proj)  # [U, L, d]: W^T h
            pred = pred - pred.mean((0, 1)) + model.user_graph_emb[users].mean(0)  # the intercept
            err = ((pred - model.user_graph_emb[users].unsqueeze(1)) ** 2).sum()
            base = ((model.user_graph_emb[users] - model.user_graph_emb[users].mean(0)) ** 2).sum() * pred.shape[1]
            assert float(1 - err / base) == pytest.approx(r2, abs=1e-3)
            # bias = E_i . intercept: the logits are (W^T h + intercept) . E_i
            logit = model.gllm_forward(h[:1, :1].float())[0, 0]
            want = pred[0, 0] @ model.item_graph_emb.T
            assert torch.allclose(logit, want, atol=1e-3)
    finite = torch.isfinite(logits["graph"])
    assert torch.allclose(logits["graph"][finite], logits["linear"][finite], atol=1e-3, rtol=1e-3)


def test_probe_initialised_state_is_validated_before_training_and_can_be_the_best(env, caplog):
    """With glta_head_init: probe the user-item stage validates the initialised state first; when
    training never beats it (learning rate so high that it diverges) the test evaluation uses it."""
    import logging
    import re

    from conftest import glta_tiny_config
    from recbole_llm.quick_start import run_experiment

    with caplog.at_level(logging.INFO):
        result = run_experiment("GLTA", "tiny", config_dict=glta_tiny_config(
            env, state="INFO", glta_head_init="probe", glta_ua_learning_rate=50.0, glta_ua_epochs=2,
            glta_head_epochs=0, stopping_step=5, glta_profile_tokens=False, glta_prediction_tokens=False,
            valid_metric="NDCG@10"))
    lines = [l for l in caplog.text.splitlines() if "user_item before epoch 1: valid" in l]
    assert len(lines) == 1
    initial = float(re.search(r"valid ndcg@10 ([0-9.]+)", lines[0], re.I).group(1))
    assert result["stats"]["stage_stats"]["user_item"]["head_init_r2"] <= 1.0
    assert result["best_valid_score"] >= initial - 1e-9
    ckpt = torch.load(result["stats"]["saved_model_file"], map_location="cpu", weights_only=False)
    if result["best_valid_score"] == pytest.approx(initial, abs=1e-9):
        assert ckpt["epoch"] == -1  # the initialised state was kept as the best model


@pytest.mark.parametrize("mode", ["carry", "reset"])
def test_head_init_reset_drops_the_item_text_head_and_keeps_its_item_projector(env, monkeypatch, mode):
    """glta_head_init: reset re-initialises the GLLM layer when user-item alignment starts (the
    item-text stage trained it; carry keeps it); the item projector keeps what item-text trained."""
    from conftest import glta_tiny_config
    from recbole_llm.models.glta.trainer import GLTATrainer
    from recbole_llm.quick_start import run_experiment

    seen = {}
    real_begin, real_end = GLTATrainer.user_item_begin, GLTATrainer.item_text_end

    def end(self, trainer):  # after item-text training
        seen["ia"] = {k: v.clone() for k, v in self.model.state_dict().items() if k.startswith(("gllm", "item_proj"))}
        return real_end(self, trainer)

    def begin(self, trainer):
        out = real_begin(self, trainer)
        seen["ua"] = {k: v.clone() for k, v in self.model.state_dict().items() if k.startswith(("gllm", "item_proj"))}
        return out

    monkeypatch.setattr(GLTATrainer, "item_text_end", end)
    monkeypatch.setattr(GLTATrainer, "user_item_begin", begin)
    run_experiment("GLTA", "tiny", config_dict=glta_tiny_config(
        env, glta_head_init=mode, glta_ia_epochs=1, glta_ua_epochs=1, glta_profile_tokens=False,
        glta_prediction_tokens=False, checkpoint_dir=str(env / f"saved_{mode}")), saved=False)
    ia, ua = seen["ia"], seen["ua"]
    assert bool(ia["gllm.bias"].abs().sum() > 0)  # item-text trained the head
    assert torch.equal(ua["item_projector.weight"], ia["item_projector.weight"])
    if mode == "reset":
        assert bool((ua["gllm.bias"] == 0).all()) and not torch.equal(ua["gllm.proj"], ia["gllm.proj"])
    else:
        assert all(torch.equal(ua[k], ia[k]) for k in ia)
