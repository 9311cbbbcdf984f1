"""Frozen-backbone training step: measured FLOP rate against this machine's own matmul rate.

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/llm_step_flops.py            # embedded SmolLM2-135M
    python3 benchmarks/llm_step_flops.py --llm-path DIR_OR_GGUF --batch 8 --seq 128

A GLTA training step runs the frozen LLM forward and backward to ``inputs_embeds`` (the
projectors sit in front of it, the GLLM head behind it); the LLM's weights get no gradient.
FLOPs are counted analytically (``flops`` below: 2 x matmul parameters per token + attention,
doubled for the backward to the inputs) over the *real* tokens only, so padding and wasted work
lower the rate. Variants measured, each against the same useful work:

* ``naive``: ``AutoModelForCausalLM`` forward with vocabulary logits (what ``model(...)`` does),
  backward from the logits at the slot positions;
* ``decoder``: the decoder only (``Backbone.forward_embeds``: no 49k-wide LM head);
* ``padded`` / ``bucketed``: a batch of mixed lengths, in random order vs sorted by length;
* ``prefix uncached`` / ``prefix cached``: a GLTA-shaped prompt (fixed text prefix + trainable
  suffix); the cached variant reuses the prefix keys/values (``PrefixKVStore``) and runs only the
  suffix - its rate is counted on the full prompt's FLOPs (work avoided counts as done);
* ``bf16 autocast``: CPU autocast to bfloat16;
* threads: 1 vs the default.

The machine rate is the best of fp32 ``torch.matmul`` on GEMMs shaped like the model's
(tokens x hidden x intermediate) and a square 2048 GEMM, with the same thread count.
Results: ``benchmarks/results/llm_step_flops.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_llm.llm import PrefixKVStore, PromptBuilder, Vectors, load_backbone  # noqa: E402


def matmul_params(bb) -> int:
    """Parameters of backbone ``bb`` used in matrix products per token by the decoder (embeddings excluded)."""
    emb = bb.model.get_input_embeddings().weight
    total = sum(p.numel() for p in bb.decoder.parameters() if p.dim() >= 2)
    pos = getattr(bb.decoder, "wpe", None)  # GPT-2 learned positions
    total -= emb.numel() if emb.data_ptr() in {p.data_ptr() for p in bb.decoder.parameters()} else 0
    if pos is not None:
        total -= pos.weight.numel()
    return int(total)


def flops(bb, tokens: int, context: float = 0.0, backward: bool = False) -> float:
    """Estimated FLOPs of backbone ``bb``'s decoder on ``tokens`` tokens attending on average to
    ``context`` keys: 2 x matmul parameters per token, plus 4 x hidden x context per layer for the
    scores and the weighted sum; a backward to the inputs only (frozen weights) costs the same again,
    a backward with weight gradients twice again."""
    cfg = bb.text_config
    layers = bb.num_layers
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head")
    head_dim = getattr(cfg, "head_dim", None) or bb.hidden_size // heads
    per_token = 2 * matmul_params(bb) + 4 * layers * heads * head_dim * context
    factor = 1.0
    if backward:
        factor += 1.0 if not any(p.requires_grad for p in bb.model.parameters()) else 2.0
    return float(tokens * per_token * factor)


def matmul_rate(shapes, repeats=5):
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(2):
            a @ b
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        best = max(best, 2 * m * k * n / min(times))
    return best


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), sorted(times)[len(times) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm-path", default="")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--prefix", type=int, default=64, help="fixed-prefix tokens of the GLTA-shaped prompt")
    ap.add_argument("--suffix", type=int, default=32, help="trainable-suffix tokens of the GLTA-shaped prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "llm_step_flops.json"))
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    bb = load_backbone(args.llm_path)
    load_s = time.perf_counter() - t0
    H = bb.hidden_size
    inter = getattr(bb.text_config, "intermediate_size", 4 * H)
    default_threads = torch.get_num_threads()
    results = {"llm": bb.name, "load_seconds": load_s, "from_converted_cache": bb.report.from_converted_cache,
               "matmul_params": matmul_params(bb), "hidden": H, "layers": bb.num_layers,
               "batch": args.batch, "seq": args.seq, "threads_default": default_threads,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
               "cpu": platform.processor() or platform.machine(), "loadavg_start": os.getloadavg(), "rows": []}
    B, T = args.batch, args.seq
    shapes = [(B * T, H, inter), (B * T, inter, H), (B * T, H, H), (2048, 2048, 2048)]

    def row(name, seconds, flops, tokens, note="", threads=None):
        rate = flops / seconds
        entry = {"variant": name, "seconds": seconds, "useful_gflop": flops / 1e9, "gflops": rate / 1e9,
                 "tokens_per_s": tokens / seconds, "threads": threads or torch.get_num_threads(), "note": note}
        results["rows"].append(entry)
        print(f"{name:28s} {seconds:7.2f} s  {rate / 1e9:7.1f} GFLOP/s  {tokens / seconds:8.0f} tok/s  {note}", flush=True)

    for threads in sorted({1, default_threads}, reverse=True):
        torch.set_num_threads(threads)
        mm = matmul_rate(shapes)
        results[f"matmul_gflops_{threads}t"] = mm / 1e9
        print(f"--- {threads} thread(s): machine fp32 matmul {mm / 1e9:.1f} GFLOP/s", flush=True)
        x = torch.randn(B, T, H) * 0.02
        mask = torch.ones(B, T, dtype=torch.long)
        useful = flops(bb, B * T, context=T / 2, backward=True)

        def naive():
            xx = x.clone().requires_grad_(True)
            logits = bb.model(inputs_embeds=xx, attention_mask=mask).logits
            logits[:, -10:].float().logsumexp(-1).sum().backward()

        def decoder():
            xx = x.clone().requires_grad_(True)
            h = bb.forward_embeds(xx, attention_mask=mask).last_hidden_state
            h[:, -10:].sum().backward()

        def fwd_only():
            with torch.no_grad():
                bb.forward_embeds(x, attention_mask=mask)

        best, _ = timed(naive, args.repeats)
        row("naive (LM head logits)", best, useful, B * T, "useful work excludes the vocab projection", threads)
        best, _ = timed(decoder, args.repeats)
        row("decoder only", best, useful, B * T, "forward + backward to inputs_embeds", threads)
        best, _ = timed(fwd_only, args.repeats)
        row("decoder forward only", best, flops(bb, B * T, context=T / 2), B * T, "inference", threads)

        # mixed lengths: random order vs bucketed by length
        rng = random.Random(0)
        lengths = [rng.randint(T // 4, T) for _ in range(B * 4)]
        useful_mixed = sum(flops(bb, n, context=n / 2, backward=True) for n in lengths)

        def run_batches(order):
            for i in range(0, len(order), B):
                chunk = [lengths[j] for j in order[i : i + B]]
                width = max(chunk)
                xx = (torch.randn(len(chunk), width, H) * 0.02).requires_grad_(True)
                m = torch.zeros(len(chunk), width, dtype=torch.long)
                for b, n in enumerate(chunk):
                    m[b, :n] = 1
                bb.forward_embeds(xx, attention_mask=m).last_hidden_state.sum().backward()

        order = list(range(len(lengths)))
        best, _ = timed(lambda: run_batches(order), 1)
        row("mixed lengths, random", best, useful_mixed, sum(lengths), "padding to the batch max", threads)
        by_len = sorted(order, key=lambda j: lengths[j])
        best, _ = timed(lambda: run_batches(by_len), 1)
        row("mixed lengths, bucketed", best, useful_mixed, sum(lengths), "batches of similar length", threads)

        # GLTA-shaped prompt: fixed text prefix, trainable vectors after it
        P, S = args.prefix, args.suffix
        prefixes = [bb.tokenizer.decode(bb.encode(" ".join(str(rng.randint(0, 9999)) for _ in range(P)))[:P])
                    for _ in range(B)]
        vec = torch.randn(B, S, H) * 0.02

        def prompts():
            v = vec.clone().requires_grad_(True)
            return v, [[p, Vectors("suffix", v[b])] for b, p in enumerate(prefixes)]

        full = PromptBuilder(bb).build(prompts()[1])
        n_prompt = int(full.input_mask.sum())
        useful_prompt = flops(bb, n_prompt, context=n_prompt / B / 2, backward=True)

        def uncached():
            v, ps = prompts()
            builder = PromptBuilder(bb)
            batch = builder.build(ps)
            builder.forward(batch).sum().backward()

        store = PrefixKVStore(bb, storage_dtype=torch.float16)

        def cached():
            v, ps = prompts()
            builder = PromptBuilder(bb, prefix_store=store)
            batch = builder.build(ps)
            builder.forward(batch).sum().backward()

        best, _ = timed(uncached, args.repeats)
        row("GLTA prompt, uncached", best, useful_prompt, n_prompt, f"~{P} prefix + {S} suffix tokens", threads)
        best, _ = timed(cached, args.repeats)  # warm-up fills the store: the epoch-2+ steady state
        row("GLTA prompt, prefix cached", best, useful_prompt, n_prompt,
            "prefix keys/values reused (fp16), work avoided counted as done", threads)

        if not args.skip_bf16 and threads == default_threads:
            def bf16():
                xx = x.clone().requires_grad_(True)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    h = bb.forward_embeds(xx, attention_mask=mask).last_hidden_state
                h[:, -10:].float().sum().backward()

            t = time.perf_counter()
            bf16()
            first = time.perf_counter() - t
            if first < 120:
                best, _ = timed(bf16, 1)
            else:
                best = first
            row("decoder, bf16 autocast", best, useful, B * T, "no native bf16 on this CPU" if best > 60 else "", threads)

    torch.set_num_threads(default_threads)
    results["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"written {out}")
    return results


if __name__ == "__main__":
    main()
