"""HeLLM, its two stage-1 models (HeLLMPre, SASRec) and LightGCN on MovieLens-100K: one leave-one-out
split, one evaluator, one process.

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/hellm_ml100k.py            # HeLLM's time + ~5 min
    python3 benchmarks/hellm_ml100k.py --pre-standalone                    # + HeLLMPre with its own YAML
    python3 benchmarks/hellm_ml100k.py --hellm hellm_samples_per_epoch=3000

Protocol (the paper's, Sec. 4.1): per user the last interaction by time is the test item, the
second-last the validation item, the rest training (RecBole ``LS: valid_and_test``, ``order: TO``);
full ranking over all items with the user's history masked, the same for every model type
(``history_mask``, ``recbole_llm/protocol.py``; results committed before issue 22 did not mask the
sequential rows, HeLLM and SASRec); Recall and NDCG at 10 and 20 on the test split; model selection on valid NDCG@20; seed 2020.

* HeLLM: its defaults (``properties/model/HeLLM.yaml``), i.e. what ``run_recbole_llm.py --model=HeLLM
  --dataset=ml-100k`` runs, stage 1 included (its HeLLMPre and SASRec come from the pretraining cache
  when a run with the same settings and split trained them before).
* HeLLMPre (HeLLM stage 1) and SASRec (HeLLM stage 1): the very models HeLLM's stage 1 pretrained
  (best validation epoch), evaluated on the test split of their own view of the same split.
* LightGCN: RecBole's, with HeLLMPre's LightGCN part and HeLLM's stage-1 budget (64-d, 2 layers,
  ``hellm_graph_*`` epochs, batch, learning rate, evaluation, patience), i.e. HeLLMPre without
  hypergraphs.
* ``--pre-standalone``: HeLLMPre with its own defaults (``properties/model/HeLLMPre.yaml``), and
  LightGCN with that budget.

Results: ``benchmarks/results/hellm_ml100k.json`` and ``.md`` (test and best-valid metrics, wall
time, per-stage seconds and peak RSS, the load average, the exact configs).
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

COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def _value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(items):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = _value(value)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every model")
    ap.add_argument("--pre-standalone", action="store_true", help="also HeLLMPre with its own YAML (and LightGCN alike)")
    ap.add_argument("--pre", action="append", default=[], metavar="KEY=VALUE", help="override for --pre-standalone")
    ap.add_argument("--hellm", action="append", default=[], metavar="KEY=VALUE", help="HeLLM override")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hellm_ml100k.json"))
    args = ap.parse_args(argv)
    import torch
    import yaml

    import recbole_llm  # noqa: F401
    from recbole_llm.quick_start import run_experiment

    work = Path(tempfile.mkdtemp(prefix="hellm_ml100k_"))
    protocol = {
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [10, 20], "valid_metric": "NDCG@20",
        "seed": args.seed, "reproducibility": True, "show_progress": False, "state": "INFO",
        "checkpoint_dir": str(work / "saved"), **_overrides(args.set),
    }
    pre_yaml = yaml.safe_load((REPO / "properties" / "model" / "HeLLMPre.yaml").read_text())
    hellm_yaml = yaml.safe_load((REPO / "properties" / "model" / "HeLLM.yaml").read_text())
    hellm_cfg = _overrides(args.hellm)
    h = {**pre_yaml, **hellm_yaml, **hellm_cfg}

    def lightgcn(budget):
        return {**budget, "embedding_size": h["embedding_size"], "n_layers": h["hellmpre_ui_layers"],
                "reg_weight": h["hellmpre_reg_weight"], "require_pow": False,
                "train_neg_sample_args": pre_yaml["train_neg_sample_args"]}

    runs = [("LightGCN", "LightGCN", lightgcn({"epochs": h["hellm_graph_epochs"], "learning_rate": h["hellm_graph_learning_rate"],
                                               "train_batch_size": h["hellm_graph_batch_size"],
                                               "eval_step": h["hellm_graph_eval_step"],
                                               "stopping_step": h["hellm_graph_stopping_step"]}))]
    if args.pre_standalone:
        pre_cfg = _overrides(args.pre)
        runs.append(("HeLLMPre (own YAML)", "HeLLMPre", pre_cfg))
        runs.append(("LightGCN (HeLLMPre budget)", "LightGCN", lightgcn(
            {k: pre_cfg.get(k, pre_yaml[k]) for k in ("epochs", "learning_rate", "train_batch_size", "eval_step",
                                                      "stopping_step")})))
    runs.append(("HeLLM", "HeLLM", hellm_cfg))
    report = {"protocol": {k: v for k, v in protocol.items() if k != "checkpoint_dir"},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"), "threads": torch.get_num_threads(),
              "loadavg_start": os.getloadavg(), "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
              "models": {}}
    from recbole_llm.models.hellm.trainer import HeLLMTrainer

    captured = {}
    real_fit = HeLLMTrainer.fit

    def fit(self, *a, **k):
        captured["trainer"] = self
        return real_fit(self, *a, **k)

    HeLLMTrainer.fit = fit
    for label, name, extra in runs:
        cfg = {**protocol, **extra}
        reset_peak_rss()
        t0 = time.perf_counter()
        result = run_experiment(name, args.dataset, config_dict=cfg)
        wall = time.perf_counter() - t0
        stats = result["stats"]
        report["models"][label] = {
            "config": {k: v for k, v in cfg.items() if k not in protocol},
            "test": {k: float(v) for k, v in result["test_result"].items()},
            "valid": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
            "wall_seconds": wall, "best_epoch": stats.get("best_epoch"), "stage_times": stats.get("stage_times"),
            "stage_stats": stats.get("stage_stats"), "trainable_params": stats.get("trainable_params"),
            "peak_rss_mb": peak_rss_mb(), "loadavg_end": os.getloadavg(),
        }
        print(f"{label}: test {report['models'][label]['test']} ({wall:.0f} s)", flush=True)
        _write(report, Path(args.out))
    # the stage-1 models HeLLM used, on the test split of their own view of the same split
    from recbole.trainer import Trainer

    trainer = captured["trainer"]
    for label, getter in (("HeLLMPre (HeLLM stage 1)", trainer.pretrained_graph),
                          ("SASRec (HeLLM stage 1)", trainer.pretrained_sasrec)):
        t0 = time.perf_counter()
        done, sub_config, test_data = getter()
        if not done.stats.get("reused"):
            raise RuntimeError(f"{label}: expected HeLLM's cached stage-1 model, got {done.source}")
        done.model.eval()
        test = Trainer(sub_config, done.model).evaluate(test_data, load_best_model=False)
        report["models"][label] = {"source": done.source, "test": {k: float(v) for k, v in test.items()},
                                   "valid": {"ndcg@20": float(done.stats.get("best_valid_score") or float("nan"))},
                                   "wall_seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                                   "stage_stats": trainer.stage_stats.get("graph" if "Pre" in label else "sasrec")}
        print(f"{label}: test {report['models'][label]['test']}", flush=True)
        _write(report, Path(args.out))
    return report


def _write(report, out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    lines = ["# HeLLM, its stage-1 HeLLMPre and SASRec, and LightGCN on ml-100k (leave-one-out, full ranking, history masked)", "",
             f"Command: `{report['command']}`; OMP_WAIT_POLICY={report['omp_wait_policy']}, torch threads "
             f"{report['threads']}, load average at start {tuple(round(x, 2) for x in report['loadavg_start'])} "
             "(2 cores shared with other jobs: times are inflated by contention).", "",
             "| model | " + " | ".join(c.replace("recall", "R").replace("ndcg", "N") for c in COLUMNS)
             + " | valid N@20 | wall s | peak RSS MB |", "|---" * (len(COLUMNS) + 4) + "|"]
    for name, entry in report["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{entry['test'].get(c, float('nan')):.4f}" for c in COLUMNS)
                     + f" | {entry['valid'].get('ndcg@20', float('nan')):.4f} | {entry['wall_seconds']:.0f} | "
                     f"{entry['peak_rss_mb']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
