"""GraphAttentiveGPT2 vs SASRec, MultiVAE and LightGCN on MovieLens-100K: the paper's protocol, one process.

    OMP_NUM_THREADS=1 nice -n 10 python3 benchmarks/gat_gpt2_ml100k.py   # ~40-50 min, shared CPU
    python3 benchmarks/gat_gpt2_ml100k.py --gat gat_finetune_epochs=8 --skip-baselines

Protocol (``properties/protocol/graph_attentive_gpt2.yaml``, the paper's): ratings > 3 are interactions,
5-core, per-user random 80/10/10 split (RecBole ``RS`` + ``RO``, seed 2020), full ranking over all items
with the user's training items masked and all of the user's held-out items as positives, Recall@20,
Recall@40, NDCG@100 on the test split, model selection on validation NDCG@100. Every model sees the
same split and RecBole's general full-ranking evaluator.

* MultiVAE, LightGCN: RecBole's defaults (up to 300 epochs, early stopping after 10 evaluations without gain).
* SASRec: RecBole refuses a random split for sequential models, and its sequential evaluation scores
  each held-out interaction as its own sample (not this metric). ``SASRecPerUser``
  (``recbole_llm/models/sasrec_per_user``) runs RecBole's SASRec unchanged (its defaults, CE loss) on the
  time-ordered prefixes of each user's training items (``MAX_ITEM_LIST_LENGTH`` 50) and scores a user
  from their newest training items, through the general evaluator: the same split and metric as the
  general models. Same epochs/early stopping as above.
* GraphAttentiveGPT2: its embedded default (``properties/model/GraphAttentiveGPT2.yaml``: SmolLM2-135M
  cut to 4 blocks, three stages), ``--gat KEY=VALUE`` to override.

Results (written from the runs' own return values): ``benchmarks/results/gat_gpt2_ml100k.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import REPO, environment, metric_rows, parse_overrides, run_model, write_report

COLUMNS = ["recall@20", "recall@40", "ndcg@100"]
BASELINE = {"epochs": 300, "stopping_step": 10}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--skip-sasrec", action="store_true")
    ap.add_argument("--gat", action="append", default=[], metavar="KEY=VALUE", help="GraphAttentiveGPT2 override")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gat_gpt2_ml100k.json"))
    args = ap.parse_args(argv)

    import yaml

    work = Path(tempfile.mkdtemp(prefix="gat_ml100k_"))
    protocol = yaml.safe_load((REPO / "properties" / "protocol" / "graph_attentive_gpt2.yaml").read_text())
    protocol.update({"seed": args.seed, "reproducibility": True, "show_progress": False, "state": "INFO",
                     "checkpoint_dir": str(work / "saved")})
    runs = []
    if not args.skip_baselines:
        runs += [("MultiVAE", dict(BASELINE)), ("LightGCN", dict(BASELINE))]
        if not args.skip_sasrec:
            runs.append(("SASRecPerUser", dict(BASELINE)))
    runs.append(("GraphAttentiveGPT2", parse_overrides(args.gat)))

    report = {"command": "python3 benchmarks/gat_gpt2_ml100k.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "protocol": {k: v for k, v in protocol.items() if k not in ("checkpoint_dir", "state", "show_progress")},
              **environment(), "models": {}}
    for name, extra in runs:
        entry, _ = run_model(name, "ml-100k", {**protocol, **extra})
        entry["config"] = extra
        report["models"][name] = entry
        write_report(report, args.out, to_markdown)  # after every model: a stopped run keeps what it measured
    return report


def to_markdown(report):
    gat = report["models"].get("GraphAttentiveGPT2")
    lines = [
        "# GraphAttentiveGPT2 vs SASRec, MultiVAE, LightGCN on ml-100k (the paper's protocol)",
        "",
        f"Command: `{report['command'].strip()}` (OMP_NUM_THREADS={report.get('omp_num_threads')}, "
        f"{report.get('threads')} torch threads); load average {report['loadavg_start'][0]:.1f} at the start, "
        f"{report['loadavg_end'][0]:.1f} at the end (2 cores shared with other jobs).",
        "",
        "Ratings > 3, 5-core, per-user random 80/10/10 (seed 2020), one split for all models, RecBole's general "
        "full-ranking evaluator (training items masked, all held-out items of a user are positives), test split; "
        "model selection on valid NDCG@100. SASRec = `SASRecPerUser` (RecBole's SASRec on the training split's "
        "time-ordered prefixes, scored per user).",
        "",
    ]
    lines += metric_rows(report["models"], COLUMNS, extra=[
        ("valid ndcg@100", lambda e: f"{e['valid'].get('ndcg@100', float('nan')):.4f}"),
        ("best epoch / run", lambda e: f"{e.get('best_epoch')} / {e.get('epochs_run')}"),
        ("wall s", lambda e: f"{e['wall_seconds']:.0f}"),
        ("peak RSS MB", lambda e: f"{e['peak_rss_mb']:.0f}"),
    ])
    if gat and gat.get("stage_stats"):
        lines += ["", "| GraphAttentiveGPT2 stage | seconds | epochs | loss per epoch | valid ndcg@100 per epoch | valid s |",
                  "|---|---|---|---|---|---|"]
        order = [k for k in gat.get("stage_times", {}) if k in gat["stage_stats"]]  # run order
        for stage in order + [k for k in gat["stage_stats"] if k not in order]:
            s = gat["stage_stats"][stage]
            losses = ", ".join(f"{x:.3f}" for x in s.get("losses", []))
            valid = ", ".join(f"{x:.4f}" for x in s.get("valid_scores", []))
            lines.append(f"| {stage} | {s.get('seconds', 0):.0f} | {s.get('epochs', '')} | {losses} | {valid} | "
                         f"{s.get('valid_seconds', 0):.0f} |")
        lines += ["", "GraphAttentiveGPT2 stage_times (s): "
                  + ", ".join(f"{k}={v:.0f}" for k, v in gat.get("stage_times", {}).items()),
                  f"GraphAttentiveGPT2 overrides: {gat.get('config') or '(embedded default)'}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
