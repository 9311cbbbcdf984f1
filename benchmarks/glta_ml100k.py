"""GLTA vs LightGCN vs BPR on MovieLens-100K: one split, one evaluator, one process.

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/glta_ml100k.py              # ~35-45 min on 2 cores
    python3 benchmarks/glta_ml100k.py --cold       # fresh cache dir: converts the GGUF, generates texts
    python3 benchmarks/glta_ml100k.py --glta glta_ua_epochs=4 --glta glta_inference=first_logit

Protocol: RecBole's ml-100k settings (per-user random 80/10/10 split, full ranking of all items
with the user's history masked), Recall/NDCG/Precision@5,10 on the test split, model selection on
valid NDCG@10, seed 2020. BPR (RecBole defaults), LightGCN with GLTA's stage-1 settings
(``glta_graph_*`` of properties/model/GLTA.yaml), then GLTA with its embedded default
(properties/model/GLTA.yaml). By default GLTA's stage 1 reuses the LightGCN checkpoint trained
just before (``glta_graph_checkpoint``), so GLTA is compared with the very LightGCN it builds on;
``--own-graph`` makes GLTA train its own (what ``run_recbole_llm.py --model=GLTA`` does).

Reported per model: test metrics, fit/test time, peak RSS (VmHWM reset before each model); for
GLTA per stage: seconds, peak RSS, tokens and tokens/s (training tokens are forward+backward,
prefix and inference tokens forward only, generation = prefill + new tokens).
Results: ``benchmarks/results/glta_ml100k.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _common import REPO, environment, metric_rows, parse_overrides, run_model, write_report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--cold", action="store_true", help="use an empty RECBOLE_LLM_CACHE (first-run timings)")
    ap.add_argument("--own-graph", action="store_true", help="GLTA trains its own LightGCN in stage 1")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--glta", action="append", default=[], metavar="KEY=VALUE", help="GLTA config override")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "glta_ml100k.json"))
    args = ap.parse_args(argv)

    if args.cold:
        os.environ["RECBOLE_LLM_CACHE"] = tempfile.mkdtemp(prefix="recbole_llm_cold_")
    work = tempfile.mkdtemp(prefix="glta_ml100k_")
    protocol = {
        "metrics": ["Recall", "NDCG", "Precision"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "state": "INFO",
        "checkpoint_dir": os.path.join(work, "saved"),
    }
    import yaml

    glta_defaults = yaml.safe_load((REPO / "properties" / "model" / "GLTA.yaml").read_text())
    lightgcn_cfg = {
        "embedding_size": glta_defaults["glta_graph_embedding_size"],
        "n_layers": glta_defaults["glta_graph_n_layers"],
        "reg_weight": glta_defaults["glta_graph_reg_weight"],
        "learning_rate": glta_defaults["glta_graph_learning_rate"],
        "epochs": glta_defaults["glta_graph_epochs"],
        "stopping_step": glta_defaults["glta_graph_stopping_step"],
    }
    runs = []
    if not args.skip_baselines:
        runs.append(("BPR", {"epochs": 300, "stopping_step": 10}))
        runs.append(("LightGCN", lightgcn_cfg))
    runs.append(("GLTA", parse_overrides(args.glta)))

    report = {"command": "python3 benchmarks/glta_ml100k.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "protocol": protocol, "cache_dir": os.environ.get("RECBOLE_LLM_CACHE", "(default)"),
              **environment(), "models": {}}
    lightgcn_ckpt = None
    for name, extra in runs:
        cfg = dict(protocol)
        cfg.update(extra)
        if name == "GLTA" and lightgcn_ckpt and not args.own_graph and "glta_graph_checkpoint" not in cfg:
            cfg["glta_graph_checkpoint"] = lightgcn_ckpt
        entry, result = run_model(name, "ml-100k", cfg)
        stats = result["stats"]
        entry["config"] = extra
        if name == "LightGCN":
            lightgcn_ckpt = stats["saved_model_file"]
            entry["saved_model_file"] = lightgcn_ckpt
        if name == "GLTA":
            entry["stages"] = entry.pop("stage_stats")
            entry["graph_from"] = cfg.get("glta_graph_checkpoint", "own LightGCN (stage 1)")
        report["models"][name] = entry
    write_report(report, args.out, to_markdown)
    return report


def to_markdown(report):
    cols = ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "precision@5", "precision@10"]
    lines = metric_rows(report["models"], cols, extra=[("wall s", lambda e: f"{e['wall_seconds']:.0f}"),
                                                       ("peak RSS MB", lambda e: f"{e['peak_rss_mb']:.0f}")])
    glta = report["models"].get("GLTA")
    if glta and glta.get("stages"):
        lines += ["", "| GLTA stage | seconds | peak RSS MB | tokens | tokens/s | notes |", "|---|---|---|---|---|---|"]
        for stage, s in glta["stages"].items():
            if stage == "generate":
                tokens = s.get("prefill_tokens", 0) + s.get("new_tokens", 0)
                rate = s.get("tokens_per_s", 0.0)
                note = f"{s.get('generated', 0)} generated, {s.get('cached', 0)} from cache, {s.get('new_tokens', 0)} new tokens"
            elif stage in ("item_text", "user_item"):
                tokens = s.get("train_tokens", 0)
                rate = s.get("train_tokens_per_s", 0.0)
                note = (f"fwd+bwd; prefix {s.get('prefix_tokens', 0)} tok at {s.get('prefix_tokens_per_s', 0):.0f} tok/s (fwd)")
                if stage == "user_item":
                    note += (f"; inference {s.get('infer_tokens', 0)} tok at {s.get('infer_tokens_per_s', 0):.0f} tok/s; "
                             f"valid {s.get('valid_seconds', 0):.0f} s")
            else:
                tokens, rate, note = 0, 0.0, str(s.get("source", ""))
            lines.append(f"| {stage} | {s.get('seconds', 0):.0f} | {s.get('peak_rss_mb', 0):.0f} | {tokens} | {rate:.0f} | {note} |")
        st = glta["stage_times"]
        lines.append("")
        lines.append("GLTA stage_times (s): " + ", ".join(f"{k}={v:.0f}" for k, v in st.items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
