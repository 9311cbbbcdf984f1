"""GraphAttentiveGPT2 vs MultiVAE, LightGCN (and SASRec) on MovieLens-100K, the paper's protocol, one process.

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/gat_gpt2_ml100k.py            # ~20-30 min on 2 shared cores
    python3 benchmarks/gat_gpt2_ml100k.py --gat gat_finetune_epochs=8 --skip-sasrec

Protocol (``properties/protocol/graph_attentive_gpt2.yaml``, the paper's): ratings > 3 are interactions,
5-core, per-user random 80/10/10 split (RecBole ``RS`` + ``RO``, seed 2020), full ranking over all items
with the user's training items masked, Recall@20, Recall@40, NDCG@100 on the test split, model selection
on validation NDCG@100. MultiVAE and LightGCN run with RecBole's defaults (up to 300 epochs, early
stopping after 10 evaluations without gain); GraphAttentiveGPT2 with its embedded default
(``properties/model/GraphAttentiveGPT2.yaml``: SmolLM2-135M cut to 4 blocks, three stages).

SASRec: RecBole's sequential models refuse a random (``RO``) split, so SASRec cannot run on the same
split; it is run on the same filtered data with the per-user **chronological** 80/10/10 split (``TO``)
and reported in its own row as not comparable (``--skip-sasrec`` leaves it out).

Results: ``benchmarks/results/gat_gpt2_ml100k.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recbole_llm.memory import peak_rss_mb, reset_peak_rss  # noqa: E402

COLUMNS = ["recall@20", "recall@40", "ndcg@100"]


def _value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--skip-sasrec", action="store_true")
    ap.add_argument("--gat", action="append", default=[], metavar="KEY=VALUE", help="GraphAttentiveGPT2 override")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gat_gpt2_ml100k.json"))
    args = ap.parse_args(argv)

    import torch
    import yaml

    import recbole_llm  # noqa: F401
    from recbole_llm.models.graph_attentive_gpt2 import GraphAttentiveGPT2Trainer
    from recbole_llm.quick_start import run_experiment

    work = Path(tempfile.mkdtemp(prefix="gat_ml100k_"))
    protocol = yaml.safe_load((REPO / "properties" / "protocol" / "graph_attentive_gpt2.yaml").read_text())
    protocol.update({"seed": args.seed, "reproducibility": True, "show_progress": False, "state": "INFO",
                     "checkpoint_dir": str(work / "saved")})
    baseline = {"epochs": 300, "stopping_step": 10}
    gat_cfg = {}
    for item in args.gat:
        key, _, value = item.partition("=")
        gat_cfg[key] = _value(value)
    runs = []
    if not args.skip_baselines:
        runs += [("MultiVAE", dict(baseline), False), ("LightGCN", dict(baseline), False)]
    runs.append(("GraphAttentiveGPT2", gat_cfg, False))
    if not args.skip_baselines and not args.skip_sasrec:
        sasrec = dict(baseline, train_neg_sample_args=None, loss_type="CE",
                      eval_args=dict(protocol["eval_args"], order="TO"))
        runs.append(("SASRec", sasrec, True))

    captured = {}
    real_fit = GraphAttentiveGPT2Trainer.fit

    def fit(self, *a, **k):
        captured["trainer"] = self
        return real_fit(self, *a, **k)

    GraphAttentiveGPT2Trainer.fit = fit
    report = {"command": "OMP_WAIT_POLICY=PASSIVE python3 benchmarks/gat_gpt2_ml100k.py " + " ".join(argv or sys.argv[1:]),
              "protocol": {k: v for k, v in protocol.items() if k not in ("checkpoint_dir", "state", "show_progress")},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"), "threads": torch.get_num_threads(),
              "loadavg_start": os.getloadavg(), "models": {}}
    for name, extra, other_split in runs:
        cfg = dict(protocol)
        cfg.update(extra)
        reset_peak_rss()
        t0 = time.perf_counter()
        result = run_experiment(name, "ml-100k", config_dict=cfg)
        wall = time.perf_counter() - t0
        stats = result["stats"]
        entry = {
            "config": {k: v for k, v in extra.items()},
            "split": "per-user chronological 80/10/10 (TO): not the same split" if other_split else "per-user random 80/10/10 (RO)",
            "test": {k: float(v) for k, v in result["test_result"].items()},
            "valid": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
            "wall_seconds": wall,
            "best_epoch": stats.get("best_epoch"),
            "peak_rss_mb": peak_rss_mb(),
            "trainable_params": stats.get("trainable_params"),
        }
        if name == "GraphAttentiveGPT2":
            trainer = captured.get("trainer")
            entry["stages"] = trainer.stage_stats if trainer else {}
            entry["token_stats"] = dict(trainer.model.token_stats) if trainer else {}
        report["models"][name] = entry
        print(f"== {name}: {wall:.0f} s, test {entry['test']}", flush=True)
    report["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    md = to_markdown(report)
    out.with_suffix(".md").write_text(md)
    print(md)
    return report


def to_markdown(report):
    lines = [
        "# GraphAttentiveGPT2 on ml-100k (the paper's protocol)",
        "",
        f"Command: `{report['command'].strip()}`; load average {report['loadavg_start'][0]:.1f} at start, "
        f"{report['loadavg_end'][0]:.1f} at the end (2 cores shared with other jobs).",
        "",
        "Ratings > 3, 5-core, per-user random 80/10/10 (seed 2020), full ranking, test split; selection on valid NDCG@100.",
        "",
        "| model | split | " + " | ".join(COLUMNS) + " | valid ndcg@100 | wall s | peak RSS MB |",
        "|---|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for name, e in report["models"].items():
        split = "TO (not comparable)" if "TO" in e["split"] else "RO"
        lines.append(f"| {name} | {split} | " + " | ".join(f"{e['test'].get(c, float('nan')):.4f}" for c in COLUMNS)
                     + f" | {e['valid'].get('ndcg@100', float('nan')):.4f} | {e['wall_seconds']:.0f} | {e['peak_rss_mb']:.0f} |")
    gat = report["models"].get("GraphAttentiveGPT2")
    if gat and gat.get("stages"):
        lines += ["", "| GraphAttentiveGPT2 stage | seconds | epochs | losses | valid s |", "|---|---|---|---|---|"]
        for stage, s in gat["stages"].items():
            losses = ", ".join(f"{x:.3f}" for x in s.get("losses", []))
            lines.append(f"| {stage} | {s.get('seconds', 0):.0f} | {s.get('epochs', '')} | {losses} | {s.get('valid_seconds', 0):.0f} |")
        lines.append("")
        lines.append(f"Tokens: {gat.get('token_stats')}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
