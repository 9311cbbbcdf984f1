"""HeLLMPre, HeLLM, LightGCN and SASRec on MovieLens-100K: one leave-one-out split, one evaluator,
one process.

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/hellm_ml100k.py          # ~60-80 min on 2 shared cores
    python3 benchmarks/hellm_ml100k.py --hellm hellm_samples_per_epoch=3000 --pre epochs=30

Protocol (the paper's, Sec. 4.1): per user the last interaction by time is the test item, the
second-last the validation item, the rest training (RecBole ``LS: valid_and_test``, ``order: TO``);
full ranking over all items with the user's history masked (RecBole's evaluator, the same for every
model); Recall and NDCG at 10 and 20 on the test split; model selection on valid NDCG@20; seed 2020.

* HeLLMPre: its defaults (``properties/model/HeLLMPre.yaml``).
* LightGCN: RecBole's, with HeLLMPre's LightGCN part and budget (64-d, 2 layers, batch, learning
  rate, epochs, evaluation and patience of HeLLMPre.yaml), so it is HeLLMPre without hypergraphs.
* SASRec: RecBole's, with exactly the settings of HeLLM's SASRec stage (``hellm_sasrec_*``,
  ``MAX_ITEM_LIST_LENGTH`` of HeLLM.yaml).
* HeLLM: its defaults (``properties/model/HeLLM.yaml``), its stage 1 given the HeLLMPre and SASRec
  checkpoints trained just before (``hellm_graph_checkpoint``/``hellm_sasrec_checkpoint``; both are
  checked to be trained on this split), so HeLLM is compared with the very models it builds on.
  ``--own-stage1`` makes HeLLM train its own (what ``run_recbole_llm.py --model=HeLLM`` does).

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
    ap.add_argument("--own-stage1", action="store_true", help="HeLLM trains its own HeLLMPre and SASRec")
    ap.add_argument("--models", default="HeLLMPre,LightGCN,SASRec,HeLLM")
    ap.add_argument("--pre", action="append", default=[], metavar="KEY=VALUE", help="HeLLMPre (and LightGCN) override")
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
    pre_cfg = _overrides(args.pre)
    budget = {k: pre_cfg.get(k, pre_yaml[k]) for k in ("embedding_size", "epochs", "learning_rate", "train_batch_size",
                                                     "eval_step", "stopping_step")}
    lightgcn_cfg = {**budget, "n_layers": pre_cfg.get("hellmpre_ui_layers", pre_yaml["hellmpre_ui_layers"]),
                    "reg_weight": pre_cfg.get("hellmpre_reg_weight", pre_yaml["hellmpre_reg_weight"]),
                    "require_pow": False, "train_neg_sample_args": pre_yaml["train_neg_sample_args"]}
    h = {**hellm_yaml, **_overrides(args.hellm)}
    sasrec_cfg = {"epochs": h["hellm_sasrec_epochs"], "learning_rate": h["hellm_sasrec_learning_rate"],
                  "train_batch_size": h["hellm_sasrec_batch_size"], "stopping_step": h["hellm_sasrec_stopping_step"],
                  "eval_step": 1, "n_layers": h["hellm_sasrec_n_layers"], "n_heads": h["hellm_sasrec_n_heads"],
                  "hidden_size": h["embedding_size"], "inner_size": h["hellm_sasrec_inner_size"],
                  "hidden_dropout_prob": h["hellm_sasrec_dropout"], "attn_dropout_prob": h["hellm_sasrec_dropout"],
                  "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02, "loss_type": "CE",
                  "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": h["hellm_max_history"],
                  "learner": "adam", "weight_decay": 0.0}
    runs = {"HeLLMPre": pre_cfg, "LightGCN": lightgcn_cfg, "SASRec": sasrec_cfg, "HeLLM": _overrides(args.hellm)}
    report = {"protocol": {k: v for k, v in protocol.items() if k != "checkpoint_dir"},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"), "threads": torch.get_num_threads(),
              "loadavg_start": os.getloadavg(), "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
              "models": {}}
    saved = {}
    for name in [m for m in args.models.split(",") if m]:
        cfg = {**protocol, **runs[name]}
        if name == "HeLLM" and not args.own_stage1:
            if "HeLLMPre" in saved and "hellm_graph_checkpoint" not in cfg:
                cfg["hellm_graph_checkpoint"] = saved["HeLLMPre"]
            if "SASRec" in saved and "hellm_sasrec_checkpoint" not in cfg:
                cfg["hellm_sasrec_checkpoint"] = saved["SASRec"]
        reset_peak_rss()
        t0 = time.perf_counter()
        result = run_experiment(name, args.dataset, config_dict=cfg)
        wall = time.perf_counter() - t0
        stats = result["stats"]
        saved[name] = stats.get("saved_model_file")
        report["models"][name] = {
            "config": {k: v for k, v in cfg.items() if k not in protocol},
            "test": {k: float(v) for k, v in result["test_result"].items()},
            "valid": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
            "wall_seconds": wall, "best_epoch": stats.get("best_epoch"), "stage_times": stats.get("stage_times"),
            "stage_stats": stats.get("stage_stats"), "trainable_params": stats.get("trainable_params"),
            "peak_rss_mb": peak_rss_mb(), "loadavg_end": os.getloadavg(),
        }
        print(f"{name}: test {report['models'][name]['test']} ({wall:.0f} s)", flush=True)
        _write(report, Path(args.out))
    return report


def _write(report, out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    lines = ["# HeLLMPre, HeLLM, LightGCN, SASRec on ml-100k (leave-one-out, full ranking, history masked)", "",
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
