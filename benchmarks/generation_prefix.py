"""GLTA's two LLM text stages before and after the shared-prefix pre-fill (and, in generation, both
instructions decoded in one call), back to back on the embedded SmolLM2-135M-Instruct (issue 23): same
outputs, how much faster.

    python3 benchmarks/generation_prefix.py                          # 100 users, 100 item prompts, 3 rounds
    python3 benchmarks/generation_prefix.py --users 943 --ia-prompts 0 --rounds 1 --tag ml100k-all

Workloads, built exactly as ``python run_recbole_llm.py --model=GLTA --dataset=ml-100k`` builds them (its
default settings, RecBole's split with seed 2020):

* ``generate``: the profile and prediction texts of ``--users`` users with training items (after the first
  ``--skip-users``)
  (``GLTATrainer.generation_contexts``, ``glta_gen_*``), through ``generate_answers`` with the on-disk
  cache off (a fresh temporary cache file per run, read back for the raw texts);
* ``item_text``: the prefix keys/values of the first ``--ia-prompts`` item-text prompts
  (``GLTATrainer.item_groups`` / ``ia_prompt``, split as ``_precompute_prefixes`` splits them) through a
  fresh ``PrefixKVStore`` (batch ``glta_prefix_batch_size``), stored in float32 here so the comparison
  sees the raw difference (GLTA stores float16; the float16 difference is reported too).

Each round runs ``plain`` (``share_prefix=False``, ``merge_instructions=False``: the code path before the
change) and ``shared`` (both on, the default), in
alternating order (plain first in odd rounds), so both see the same background load; the load average is
recorded around every run. Checks: the raw generated texts of both variants are equal text for text, and
the key/value entries' largest absolute difference. Report: ``benchmarks/results/generation_prefix_<tag>.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, environment, write_report


def build_workloads(args):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.models.glta import GLTA, GLTATrainer

    config = Config(model="GLTA", dataset="ml-100k", config_dict={"show_progress": False, "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    model = GLTA(config, train._dataset)
    trainer = GLTATrainer(config, model)
    users, contexts = trainer.generation_contexts()
    contexts = contexts[args.skip_users :]
    n_users = len(contexts) if args.users <= 0 else min(args.users, len(contexts))
    s = model.settings
    instructions = [s.profile_instruction, s.prediction_instruction]
    groups = trainer.item_groups()
    n_ia = len(groups) if args.ia_prompts < 0 else min(args.ia_prompts, len(groups))
    builder = model.builder("ia")
    prefixes = []
    with torch.no_grad():
        dummy = torch.zeros(s.ia_items_per_prompt, model.backbone.hidden_size, device=model.backbone.device)
        for g in groups[:n_ia]:
            prefix, rest = builder.split_prefix(model.ia_prompt(g, torch.arange(len(g)), dummy[: len(g)]))
            prefixes.append(prefix[:-1] if prefix and not rest else prefix)
    gen = dict(max_new_tokens=s.gen_max_new_tokens, batch_size=s.gen_batch_size, chat=s.gen_chat_template,
               system=s.gen_system_prompt or None)
    return model.backbone, contexts[:n_users], instructions, gen, prefixes, s.prefix_batch_size


def run_generate(backbone, contexts, instructions, gen, share):
    from recbole_llm.llm.generation import GenerationCache, GenerationStats, generate_answers

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gen.jsonl"
        stats = GenerationStats()
        load0, w0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
        generate_answers(backbone, contexts, instructions, cache=True, cache_path=path, stats=stats,
                         share_prefix=share, merge_instructions=share, **gen)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        texts = dict(GenerationCache(path)._data)
    prompt_tokens = stats.extra["prompt_tokens"]
    return {"wall_s": wall, "cpu_s": cpu, "load_start": load0, "load_end": os.getloadavg()[0],
            "texts": stats.generated, "new_tokens": stats.new_tokens, "prompt_tokens": prompt_tokens,
            "prefill_tokens_computed": stats.prefill_tokens,
            "shared_prefix_tokens": stats.extra.get("shared_prefix_tokens", 0),
            "new_tokens_per_s": stats.new_tokens / wall,
            "prompt_and_new_tokens_per_s": (prompt_tokens + stats.new_tokens) / wall}, texts


def run_item_text(backbone, prefixes, batch_size, share):
    import torch

    from recbole_llm.llm.prompts import PrefixKVStore

    store = PrefixKVStore(backbone, storage_dtype=torch.float32, batch_size=batch_size, share_prefix=share)
    load0, w0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    store.ensure(prefixes, until_full=True)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    tokens = sum(len(p) for p in set(prefixes))
    return {"wall_s": wall, "cpu_s": cpu, "load_start": load0, "load_end": os.getloadavg()[0],
            "prompts": len(set(prefixes)), "prefix_tokens": tokens, "shared_prefix_tokens": store.shared_tokens,
            "prefix_tokens_per_s": tokens / wall}, store._kv


def summarise(runs):
    out = {}
    for key in ("wall_s", "cpu_s", "new_tokens_per_s", "prompt_and_new_tokens_per_s", "prefix_tokens_per_s"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def to_markdown(report) -> str:
    lines = [f"# Shared-prefix pre-fill and merged decoding in GLTA's text stages ({report['tag']})", "",
             "plain: the code before the change (share_prefix=False, merge_instructions=False); shared: both "
             "on (the default).", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['env']['threads']} torch threads, shared; load average (1 min) at start "
             f"{report['env']['loadavg_start'][0]:.2f}, at end {report['loadavg_end'][0]:.2f}. Variants alternate "
             "within each round, so both see the same background load.", ""]
    w = report["workloads"]
    if report["generate"]:
        lines += ["## generate", "",
                  f"{w['users']} users of ml-100k (after the first {w.get('skip_users', 0)}) x 2 instructions "
                  f"({w['texts']} texts), greedy, "
                  f"{w['prompt_tokens']} prompt tokens; shared prefix {w['gen_shared_prefix_tokens']} tokens.", "",
                  "| round | variant | wall s | CPU s | load start -> end | prefill tokens computed | new tokens | "
                  "new tok/s | (prompt + new) tok/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in report["generate"]:
            lines.append(f"| {r['round']} | {r['variant']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{r['load_start']:.1f} -> {r['load_end']:.1f} | {r['prefill_tokens_computed']} | "
                         f"{r['new_tokens']} | {r['new_tokens_per_s']:.1f} | {r['prompt_and_new_tokens_per_s']:.1f} |")
        lines += ["", _ratio_line(report, "generate"), "",
                  f"Texts equal (raw, before cleaning): **{report['checks']['texts_equal']}** "
                  f"({report['checks']['texts_compared']} texts per run; every run against the first plain run; "
                  f"{report['checks']['texts_different']} differ).", ""]
    if report["item_text"]:
        lines += ["## item_text (prefix keys/values)", "",
                  f"{w['ia_prompts']} item-text prompts of ml-100k, {w['ia_prefix_tokens']} prefix tokens; shared "
                  f"prefix {w['ia_shared_prefix_tokens']} tokens.", "",
                  "| round | variant | wall s | CPU s | load start -> end | prefix tok/s |", "|---|---|---|---|---|---|"]
        for r in report["item_text"]:
            lines.append(f"| {r['round']} | {r['variant']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{r['load_start']:.1f} -> {r['load_end']:.1f} | {r['prefix_tokens_per_s']:.1f} |")
        c = report["checks"]
        lines += ["", _ratio_line(report, "item_text"), "",
                  f"Keys/values, shared vs plain (float32): largest absolute difference {c['kv_max_abs_diff']:.3g} "
                  f"(largest |entry| {c['kv_max_abs']:.3g}; relative to it {c['kv_max_rel_diff']:.3g}); after the "
                  f"float16 storage GLTA uses: {c['kv_fp16_elements_different']} of {c['kv_elements']} elements differ, "
                  f"largest difference {c['kv_fp16_max_abs_diff']:.3g}.", ""]
    return "\n".join(lines) + "\n"


def _ratio_line(report, stage):
    s = report["summary"][stage]
    p, q = s["plain"], s["shared"]
    return (f"Median wall: plain {p['wall_s']['median']:.1f} s, shared {q['wall_s']['median']:.1f} s "
            f"(x{p['wall_s']['median'] / q['wall_s']['median']:.2f}); median CPU: plain {p['cpu_s']['median']:.1f} s, "
            f"shared {q['cpu_s']['median']:.1f} s (x{p['cpu_s']['median'] / q['cpu_s']['median']:.2f}).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100, help="N users with training items (0: all)")
    ap.add_argument("--skip-users", type=int, default=0, help="start after the first K users with training items")
    ap.add_argument("--ia-prompts", type=int, default=100, help="first N item-text prompts (-1: all, 0: skip)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--tag", default="ml100k-u100")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch

    env = environment()
    backbone, contexts, instructions, gen, prefixes, prefix_batch = build_workloads(args)
    report = {"tag": args.tag, "command": "python3 benchmarks/generation_prefix.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "env": env, "generate": [], "item_text": [], "checks": {}, "summary": {}}
    reference, different, compared, equal = None, 0, 0, True
    kv_ref = None
    kv_stats = {"kv_max_abs_diff": 0.0, "kv_max_abs": 0.0, "kv_fp16_elements_different": 0, "kv_elements": 0,
                "kv_fp16_max_abs_diff": 0.0}
    work = {"users": len(contexts), "skip_users": args.skip_users}
    for rnd in range(1, args.rounds + 1):
        order = (False, True) if rnd % 2 else (True, False)
        for share in order:
            variant = "shared" if share else "plain"
            if not args.skip_generate and contexts:
                row, texts = run_generate(backbone, contexts, instructions, gen, share)
                print(f"round {rnd} generate {variant}: {row['wall_s']:.1f} s wall, load {row['load_start']:.1f}",
                      flush=True)
                report["generate"].append({"round": rnd, "variant": variant, **row})
                work.update(texts=row["texts"], prompt_tokens=row["prompt_tokens"])
                if share:
                    work["gen_shared_prefix_tokens"] = row["shared_prefix_tokens"]
                if reference is None:
                    reference = texts
                else:
                    diff = sum(texts.get(k) != v for k, v in reference.items()) + len(set(texts) - set(reference))
                    different += diff
                    compared = len(reference)
                    equal = equal and diff == 0
            if prefixes:
                row, kv = run_item_text(backbone, prefixes, prefix_batch, share)
                print(f"round {rnd} item_text {variant}: {row['wall_s']:.1f} s wall, load {row['load_start']:.1f}",
                      flush=True)
                report["item_text"].append({"round": rnd, "variant": variant, **row})
                work.update(ia_prompts=row["prompts"], ia_prefix_tokens=row["prefix_tokens"])
                if share:
                    work["ia_shared_prefix_tokens"] = row["shared_prefix_tokens"]
                if kv_ref is None:
                    kv_ref = kv
                else:
                    for key, entry in kv_ref.items():
                        other = kv[key]
                        kv_stats["kv_max_abs_diff"] = max(kv_stats["kv_max_abs_diff"], float((entry - other).abs().max()))
                        kv_stats["kv_max_abs"] = max(kv_stats["kv_max_abs"], float(entry.abs().max()))
                        a, b = entry.to(torch.float16), other.to(torch.float16)
                        kv_stats["kv_fp16_elements_different"] += int((a != b).sum())
                        kv_stats["kv_elements"] += entry.numel()
                        kv_stats["kv_fp16_max_abs_diff"] = max(kv_stats["kv_fp16_max_abs_diff"],
                                                               float((a.float() - b.float()).abs().max()))
    kv_stats["kv_max_rel_diff"] = kv_stats["kv_max_abs_diff"] / kv_stats["kv_max_abs"] if kv_stats["kv_max_abs"] else 0.0
    report["workloads"] = work
    report["checks"] = {"texts_equal": equal, "texts_different": different, "texts_compared": compared, **kv_stats}
    for stage in ("generate", "item_text"):
        if report[stage]:
            report["summary"][stage] = {v: summarise([r for r in report[stage] if r["variant"] == v])
                                        for v in ("plain", "shared")}
    out = args.out or REPO / "benchmarks" / "results" / f"generation_prefix_{args.tag}.json"
    write_report(report, out, to_markdown)


if __name__ == "__main__":
    main()
