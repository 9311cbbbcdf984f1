"""GLTA's stage 1 (RecBole's LightGCN, ``glta_graph_*`` of properties/model/GLTA.yaml) at other training batch
sizes with a matched learning rate: embedding quality (validation metrics of the best epoch, and test) and
cost (epochs, wall and CPU seconds, seconds per epoch) per seed (issue 23).

RecBole's LightGCN propagates the whole graph once per batch, so an epoch costs about
``batches x propagation``: a larger batch divides the propagations per epoch; the question is whether the
embeddings stay as good. The stage's batch is the run's ``train_batch_size`` (GLTA's own stages batch by
``glta_*_batch_size``), so a variant is ``train_batch_size`` plus ``glta_graph_learning_rate``.

    python3 benchmarks/glta_graph_batch.py --variant 2048:0.005 --variant 16384:0.02 --seeds 2020 2021 2022
    python3 benchmarks/glta_graph_batch.py --dataset ml-1m --data-path benchmarks/data/synthetic-s0 \
        --variant 2048:0.005 --variant 16384:0.02 --seeds 2020 --set glta_graph_epochs=2   # cost per epoch

Decisions use the validation metrics; test is reported beside them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import REPO, environment, parse_overrides, write_report

COLUMNS = ["ndcg@10", "recall@10", "precision@10"]


def run_one(dataset, data_path, seed, batch, lr, extra) -> dict:
    from recbole_llm import _recbole  # noqa: F401
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.models.glta.settings import GLTA_SETTINGS
    from recbole_llm.models.glta.trainer import graph_overrides
    from recbole_llm.training.pretrain import derived_config, pretrain_recbole_model

    cfg = {"seed": seed, "state": "WARNING", "train_batch_size": batch, "glta_graph_learning_rate": lr, **extra}
    if data_path:
        cfg["data_path"] = str(data_path)
    config = Config(model="GLTA", dataset=dataset, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    overrides = graph_overrides(GLTA_SETTINGS.read(config))
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    done = pretrain_recbole_model(config, train, valid, model="LightGCN", overrides=overrides,
                                  work_dir=REPO / "benchmarks" / "data" / "runs" / "graph_batch",
                                  label="graph", use_cache=False, architecture_keys=("embedding_size", "n_layers"))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    trainer = Trainer(derived_config(config, {**overrides, "model": "LightGCN"}), done.model)
    valid_result = trainer.evaluate(valid, load_best_model=False)
    test_result = trainer.evaluate(test, load_best_model=False)
    epochs = int(done.stats.get("epochs") or 0)
    row = {"seed": seed, "train_batch_size": batch, "learning_rate": lr, "epochs": epochs,
           "batches_per_epoch": len(train), "wall_s": wall, "cpu_s": cpu,
           "wall_s_per_epoch": wall / epochs if epochs else None, "load_start": load0, "load_end": os.getloadavg()[0],
           "valid": {k: float(v) for k, v in valid_result.items()}, "test": {k: float(v) for k, v in test_result.items()}}
    print(f"== B={batch} lr={lr} seed={seed}: {epochs} epochs, {wall:.0f} s ({cpu:.0f} s CPU), valid ndcg@10 "
          f"{row['valid']['ndcg@10']:.4f}, load {load0:.1f}", flush=True)
    return row


def time_batches(dataset, data_path, batch, lr, extra, n_batches) -> dict:
    """Cost of ``n_batches`` training steps of stage 1's LightGCN at ``batch`` (and of one validation), for
    the cost per epoch on a dataset where whole runs take too long: ``batches/epoch x s/batch + validation``."""
    from recbole_llm import _recbole  # noqa: F401
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.models.glta.settings import GLTA_SETTINGS
    from recbole_llm.models.glta.trainer import graph_overrides
    from recbole_llm.training.pretrain import derived_config
    from recbole_llm.utils import get_model

    cfg = {"seed": 2020, "state": "WARNING", "train_batch_size": batch, "glta_graph_learning_rate": lr, **extra}
    if data_path:
        cfg["data_path"] = str(data_path)
    config = Config(model="GLTA", dataset=dataset, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    sub = derived_config(config, {**graph_overrides(GLTA_SETTINGS.read(config)), "model": "LightGCN"})
    c0 = time.process_time()
    model = get_model("LightGCN")(sub, train.dataset)
    init_cpu = time.process_time() - c0
    opt = __import__("torch").optim.Adam(model.parameters(), lr=lr)
    load0 = os.getloadavg()[0]
    done, w0, c0 = 0, time.perf_counter(), time.process_time()
    for interaction in train:
        loss = model.calculate_loss(interaction)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        if done == n_batches:
            break
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    trainer = Trainer(sub, model)
    v0, vc0 = time.perf_counter(), time.process_time()
    trainer.evaluate(valid, load_best_model=False)
    vwall, vcpu = time.perf_counter() - v0, time.process_time() - vc0
    row = {"train_batch_size": batch, "learning_rate": lr, "batches_timed": done, "batches_per_epoch": len(train),
           "cpu_s_per_batch": cpu / done, "wall_s_per_batch": wall / done, "validation_cpu_s": vcpu,
           "validation_wall_s": vwall, "model_init_cpu_s": init_cpu, "eval_batch_size": config["eval_batch_size"],
           "epoch_cpu_s_projected": cpu / done * len(train) + vcpu, "load_start": load0, "load_end": os.getloadavg()[0]}
    print(f"== B={batch}: {row['cpu_s_per_batch']:.3f} s CPU/batch x {len(train)} batches + validation {vcpu:.1f} s "
          f"= {row['epoch_cpu_s_projected']:.0f} s CPU/epoch (LightGCN init {init_cpu:.0f} s), load {load0:.1f}",
          flush=True)
    return row


def to_markdown(report) -> str:
    if report.get("batch_timing"):
        lines = [f"# GLTA stage 1 (LightGCN) cost per epoch: {report['dataset']}", "",
                 f"Command: `{report['command']}`  ", f"Load average {report['loadavg_start'][0]:.1f} at start, "
                 f"{report['loadavg_end'][0]:.1f} at end (shared 2-core machine; variants back to back).", "",
                 "| batch | lr | eval_batch_size | batches/epoch | CPU s/batch | validation CPU s | projected CPU s/epoch | "
                 "LightGCN init CPU s |", "|---|---|---|---|---|---|---|---|"]
        for r in report["runs"]:
            lines.append(f"| {r['train_batch_size']} | {r['learning_rate']} | {r['eval_batch_size']} | "
                         f"{r['batches_per_epoch']} | {r['cpu_s_per_batch']:.3f} | {r['validation_cpu_s']:.1f} | "
                         f"{r['epoch_cpu_s_projected']:.0f} | {r['model_init_cpu_s']:.0f} |")
        return "\n".join(lines) + "\n"

    import numpy as np

    lines = [f"# GLTA stage 1 (LightGCN) batch size: {report['dataset']}", "",
             f"Command: `{report['command']}`  ", f"Load average {report['loadavg_start'][0]:.1f} at start, "
             f"{report['loadavg_end'][0]:.1f} at end (shared 2-core machine; runs of one seed back to back).", "",
             "| batch | lr | seed | epochs | batches/epoch | wall s | CPU s | CPU s/epoch | valid " +
             " | valid ".join(COLUMNS) + " | test ndcg@10 |", "|---" * (10 + len(COLUMNS) - 2) + "|"]
    for r in report["runs"]:
        lines.append(f"| {r['train_batch_size']} | {r['learning_rate']} | {r['seed']} | {r['epochs']} | "
                     f"{r['batches_per_epoch']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                     f"{r['cpu_s'] / max(r['epochs'], 1):.2f} | "
                     + " | ".join(f"{r['valid'][c]:.4f}" for c in COLUMNS) + f" | {r['test']['ndcg@10']:.4f} |")
    lines += ["", "Mean over seeds:", "", "| batch | lr | runs | epochs | CPU s | valid ndcg@10 (mean +- std) | "
              "test ndcg@10 |", "|---|---|---|---|---|---|---|"]
    groups = {}
    for r in report["runs"]:
        groups.setdefault((r["train_batch_size"], r["learning_rate"]), []).append(r)
    for (b, lr), rows in groups.items():
        v = np.array([r["valid"]["ndcg@10"] for r in rows])
        t = np.array([r["test"]["ndcg@10"] for r in rows])
        lines.append(f"| {b} | {lr} | {len(rows)} | {np.mean([r['epochs'] for r in rows]):.1f} | "
                     f"{np.mean([r['cpu_s'] for r in rows]):.0f} | {v.mean():.4f} +- {v.std(ddof=1) if len(v) > 1 else 0:.4f} | "
                     f"{t.mean():.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data-path", default=None)
    ap.add_argument("--variant", action="append", required=True, metavar="BATCH:LR")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="render one table from reports of earlier runs (e.g. one per seed, run in parallel)")
    ap.add_argument("--batches", type=int, default=0,
                    help="only time this many training batches and one validation per variant (cost per epoch)")
    args = ap.parse_args(argv)
    variants = []
    for v in args.variant:
        b, sep, lr = v.partition(":")
        try:
            variants.append((int(b), float(lr)))
        except ValueError:
            print(f"glta_graph_batch: --variant {v!r} is not BATCH:LR (e.g. 16384:0.02)", file=sys.stderr)
            return 2
    extra = parse_overrides(args.set)
    if args.merge:
        import json

        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        report = {"command": " ; ".join(p["command"] for p in parts), "dataset": parts[0]["dataset"],
                  "loadavg_start": parts[0]["loadavg_start"], "merged_from": args.merge,
                  "runs": sorted((r for p in parts for r in p["runs"]),
                                 key=lambda r: (-r["train_batch_size"], r["learning_rate"], r["seed"]))}
        write_report(report, Path(args.out or args.merge[0]), to_markdown)
        return 0
    report = {"command": "python3 benchmarks/glta_graph_batch.py " + " ".join(argv or sys.argv[1:]),
              "dataset": args.dataset, **environment(), "runs": []}
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"glta_graph_batch_{args.dataset}.json"
    if args.batches > 0:
        report["batch_timing"] = True
        for b, lr in variants:
            report["runs"].append(time_batches(args.dataset, args.data_path, b, lr, extra, args.batches))
            write_report(dict(report), out, to_markdown)
        return 0
    for seed in args.seeds:
        for b, lr in variants:
            report["runs"].append(run_one(args.dataset, args.data_path, seed, b, lr, extra))
            write_report(dict(report), out, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
