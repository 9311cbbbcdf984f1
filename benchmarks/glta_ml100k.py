"""GLTA, its ablations, LightGCN and BPR on MovieLens-100K over seeds: one evaluator, paired by seed.

    python3 benchmarks/glta_ml100k.py --seeds 3                    # GLTA, AR, FL, LightGCN, BPR x 3 seeds
    python3 benchmarks/glta_ml100k.py --seeds 3 --ablations all    # + w/o IA, w/o UA, w/o PF, w/o PD
    python3 benchmarks/glta_ml100k.py --seeds 1 --cold             # fresh cache: GGUF conversion, generation
    python3 benchmarks/glta_ml100k.py --glta glta_ua_epochs=4      # GLTA config overrides (every variant)
    python3 benchmarks/glta_ml100k.py --variant "head reset:glta_head_init=reset"   # an extra GLTA row
    python3 benchmarks/glta_ml100k.py --variant "GLTA probe only:glta_head_init=probe;glta_keep_initial=True"

Protocol: RecBole's ml-100k settings (per-user random 80/10/10 split, full ranking of all items with
the user's history masked), Recall/NDCG/Precision@5,10 on the test split, model selection on valid
NDCG@10. Seeds 2020, 2021, ...; the seed fixes the split, so the runs of one seed are paired. Per seed:
BPR (RecBole defaults), LightGCN trained like GLTA's stage 1 (``glta_graph_*`` of
properties/model/GLTA.yaml), GLTA with the embedded default whose stage 1 reuses that LightGCN's
checkpoint (``glta_graph_checkpoint``; ``--own-graph``: GLTA trains its own), and the ablations.
AR and FL are the paper's item prediction patterns (Figure 4): the trained GLTA's best weights scored
again with ``glta_inference: autoregressive`` / ``first_logit``; w/o IA/UA/PF/PD are trained anew.

Resumable: every finished run is written to the JSON at once and skipped when the command is run
again (``--fresh`` starts over). The markdown beside it: mean +- std over seeds, the change against
LightGCN with the paired t-test over seeds, per-seed rows, GLTA's stage times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, environment, parse_overrides, run_model, write_report

ABLATIONS = {
    "w/o IA": {"glta_item_alignment": False},
    "w/o UA": {"glta_user_alignment": False},
    "w/o PF": {"glta_profile_tokens": False},
    "w/o PD": {"glta_prediction_tokens": False},
}
RESCORED = {"AR": "autoregressive", "FL": "first_logit"}
ROW_ORDER = ["BPR", "LightGCN", "GLTA", "AR", "FL", *ABLATIONS]
COLUMNS = ["recall@10", "ndcg@5", "ndcg@10", "precision@5", "precision@10"]
KEY_METRIC = "ndcg@10"


def rescore(modes):
    """``on_trained`` callback: test metrics of the trained GLTA under other inference modes."""

    def on_trained(trainer, valid_data, test_data):
        out = {}
        model = trainer.model
        original = model.inference
        for label, mode in modes.items():
            model.set_inference(mode)
            t0 = time.perf_counter()
            result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            out[label] = {"test": {k: float(v) for k, v in result.items()}, "wall_seconds": time.perf_counter() - t0,
                          "inference": mode}
            print(f"== {label} ({mode}): {out[label]['wall_seconds']:.0f} s, test {out[label]['test']}", flush=True)
        model.set_inference(original)
        return out

    return on_trained


def lightgcn_config():
    """GLTA's stage-1 LightGCN settings from its YAML defaults: the baseline is trained like stage 1."""
    import yaml

    from recbole_llm.models.glta.settings import GLTA_SETTINGS
    from recbole_llm.models.glta.trainer import graph_overrides

    defaults = yaml.safe_load((REPO / "properties" / "model" / "GLTA.yaml").read_text())
    return {**graph_overrides(GLTA_SETTINGS.read(defaults)), "train_batch_size": defaults["train_batch_size"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds: 2020, 2021, ...")
    ap.add_argument("--first-seed", type=int, default=2020)
    ap.add_argument("--ablations", default="", help="comma-separated labels of " + ", ".join(ABLATIONS) + ", or 'all'")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL:KEY=VALUE[;KEY=VALUE]",
                    help="an extra GLTA row with these config switches, e.g. 'head reset:glta_head_init=reset'")
    ap.add_argument("--no-rescore", action="store_true", help="skip the AR / FL scorings")
    ap.add_argument("--cold", action="store_true", help="use an empty RECBOLE_LLM_CACHE (first-run timings)")
    ap.add_argument("--own-graph", action="store_true", help="GLTA trains its own LightGCN in stage 1")
    ap.add_argument("--skip-baselines", action="store_true", help="no BPR row (LightGCN still trains: GLTA's stage 1)")
    ap.add_argument("--glta", action="append", default=[], metavar="KEY=VALUE", help="GLTA config override")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "glta_ml100k"),
                    help="checkpoints (kept so that a resumed run finds each seed's LightGCN)")
    ap.add_argument("--fresh", action="store_true", help="ignore runs already in --out")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "glta_ml100k.json"))
    args = ap.parse_args(argv)
    ablations = list(ABLATIONS) if args.ablations == "all" else [a.strip() for a in args.ablations.split(",") if a.strip()]
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        ap.error(f"unknown ablation(s) {unknown}; choose from {list(ABLATIONS)} or 'all'")

    variants = {}
    for item in args.variant:
        label, sep, switches = item.partition(":")
        if not sep or not label.strip() or label.strip() in ROW_ORDER:
            ap.error(f"--variant {item!r}: expected LABEL:KEY=VALUE[;KEY=VALUE] with a label other than {ROW_ORDER}")
        variants[label.strip()] = parse_overrides([kv for kv in switches.split(";") if kv.strip()])
        if str(variants[label.strip()].get("glta_keep_initial")).lower() in ("true", "1") and "probe only" not in label:
            ap.error(f"--variant {item!r}: glta_keep_initial=True may keep an untrained state, which is not GLTA; "
                     "label the row 'GLTA probe only' (or another label containing 'probe only')")
    if args.cold:
        os.environ["RECBOLE_LLM_CACHE"] = tempfile.mkdtemp(prefix="recbole_llm_cold_")
    glta_overrides = parse_overrides(args.glta)
    seeds = [args.first_seed + i for i in range(args.seeds)]
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() and not args.fresh else {}
    if "runs" not in report:  # older single-seed files are replaced
        report = {}
    command = "python3 benchmarks/glta_ml100k.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["commands"] = [c for c in report.get("commands", []) if c != command] + [command]
    report.update({"cache_dir": os.environ.get("RECBOLE_LLM_CACHE", "(default)"), "glta_overrides": glta_overrides,
                   **environment()})
    runs = report.setdefault("runs", {})

    def save():
        write_report(report, out, to_markdown)

    for seed in seeds:
        protocol = {"metrics": ["Recall", "NDCG", "Precision"], "topk": [5, 10], "valid_metric": "NDCG@10",
                    "seed": seed, "reproducibility": True, "show_progress": False, "state": "INFO",
                    "checkpoint_dir": os.path.join(args.work_dir, f"seed{seed}")}
        report["protocol"] = {k: v for k, v in protocol.items() if k not in ("seed", "checkpoint_dir")}
        plan = ([] if args.skip_baselines else [("BPR", "BPR", {"epochs": 300, "stopping_step": 10})])
        plan.append(("LightGCN", "LightGCN", lightgcn_config()))
        plan.append(("GLTA", "GLTA", dict(glta_overrides)))
        plan += [(label, "GLTA", {**glta_overrides, **ABLATIONS[label]}) for label in ablations]
        plan += [(label, "GLTA", {**glta_overrides, **switches}) for label, switches in variants.items()]
        for label, model, extra in plan:
            key = f"{label}@{seed}"
            ckpt = runs.get(f"LightGCN@{seed}", {}).get("saved_model_file")
            ckpt_missing = not (ckpt and Path(ckpt).is_file())
            if key in runs and not (label == "LightGCN" and ckpt_missing):
                continue  # done (a LightGCN whose checkpoint is gone trains again: the GLTA runs need it)
            cfg = {**protocol, **extra}
            if model == "GLTA" and not args.own_graph and "glta_graph_checkpoint" not in cfg:
                cfg["glta_graph_checkpoint"] = ckpt
            callback = rescore(RESCORED) if label == "GLTA" and not args.no_rescore else None
            entry, result = run_model(model, "ml-100k", cfg, on_trained=callback)
            entry.update(config=extra, seed=seed, model=model)
            if model == "LightGCN":
                entry["saved_model_file"] = result["stats"]["saved_model_file"]
            if model == "GLTA":
                entry["stages"] = entry.pop("stage_stats")
                entry["graph_from"] = cfg.get("glta_graph_checkpoint") or "own LightGCN (stage 1)"
                for rlabel, r in (result.get("on_trained") or {}).items():
                    runs[f"{rlabel}@{seed}"] = {**r, "seed": seed, "model": "GLTA", "rescored_from": key}
            runs[key] = entry
            save()
    save()
    return report


def _by_row(runs):
    rows = {}
    for key, e in runs.items():
        label, _, seed = key.rpartition("@")
        rows.setdefault(label, {})[int(seed)] = e
    order = [r for r in ROW_ORDER if r in rows] + sorted(r for r in rows if r not in ROW_ORDER)
    return {r: rows[r] for r in order}


def to_markdown(report):
    from recbole_llm.benchmark.stats import TEST_NAME, mean_std, paired_ttest, stars

    rows = _by_row(report.get("runs", {}))
    refs = [r for r in ("LightGCN", "GLTA") if r in rows]
    ref_values = {r: {s: e["test"][KEY_METRIC] for s, e in rows[r].items()} for r in refs}
    lines = ["Commands (each resumes the same file): " + ", ".join(f"`{c}`" for c in report.get("commands", [])), "",
             "Test metrics, mean +- sample std over seeds (RS 80/10/10, full ranking). vs LightGCN / vs GLTA: "
             f"change of the mean {KEY_METRIC} on the seeds both have, and the {TEST_NAME} on them "
             "(* p < 0.05, ** p < 0.01).", "",
             "| model | seeds | " + " | ".join(COLUMNS)
             + "".join(f" | {KEY_METRIC} vs {r} | p" for r in refs) + " | wall s |",
             "|---" * (len(COLUMNS) + 3 + 2 * len(refs)) + "|"]
    for label, by_seed in rows.items():
        cells = []
        for c in COLUMNS:
            values = [e["test"][c] for e in by_seed.values() if c in e["test"]]
            m, sd = mean_std(values)
            cells.append(f"{m:.4f}" + (f" +- {sd:.4f}" if len(values) > 1 else "") if values else "-")
        mine = {s: e["test"][KEY_METRIC] for s, e in by_seed.items()}
        for ref in refs:
            if label == ref:
                cells += ["-", "-"]
                continue
            t = paired_ttest(mine, ref_values[ref])
            common = t["seeds"]
            rel = (100 * t["mean_diff"] / (sum(ref_values[ref][s] for s in common) / len(common))
                   if common else float("nan"))
            cells += [f"{rel:+.1f}%{stars(t['p'])}", f"{t['p']:.3f}" if t["p"] == t["p"] else (t["note"] or "-")]
        wall = mean_std([e["wall_seconds"] for e in by_seed.values()])[0]
        lines.append(f"| {label} | {','.join(str(s) for s in sorted(by_seed))} | " + " | ".join(cells) + f" | {wall:.0f} |")
    lines += ["", "AR and FL: the trained GLTA of the same seed (its best epoch) scored again with "
              "`glta_inference: autoregressive` / `first_logit`; their wall time is that scoring only.", "",
              "Per seed, " + KEY_METRIC + ":", "", "| model | " + " | ".join(str(s) for s in _seeds(rows)) + " |",
              "|---" * (1 + len(_seeds(rows))) + "|"]
    for label, by_seed in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{by_seed[s]['test'][KEY_METRIC]:.4f}" if s in by_seed else "-"
                                                   for s in _seeds(rows)) + " |")
    glta = rows.get("GLTA", {})
    if glta:
        stages = list(dict.fromkeys(k for e in glta.values() for k in (e.get("stage_times") or {})))
        lines += ["", "GLTA stage times (s) per seed, peak RSS:", "",
                  "| seed | " + " | ".join(stages) + " | peak RSS MB |", "|---" * (len(stages) + 2) + "|"]
        for s, e in sorted(glta.items()):
            st = e.get("stage_times") or {}
            lines.append(f"| {s} | " + " | ".join(f"{st[k]:.0f}" if k in st else "-" for k in stages)
                         + f" | {e.get('peak_rss_mb', 0):.0f} |")
    lines += [""] + [f"Note: {n}" for n in report.get("notes", [])] if report.get("notes") else []
    env = f"threads {report.get('threads')}, OMP_WAIT_POLICY {report.get('omp_wait_policy')}, " \
          f"load average at start {report.get('loadavg_start')}, at end {report.get('loadavg_end')}"
    lines += ["", env]
    return "\n".join(lines) + "\n"


def _seeds(rows):
    return sorted({s for by_seed in rows.values() for s in by_seed})


if __name__ == "__main__":
    main()
