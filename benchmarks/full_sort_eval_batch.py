"""Cost of RecBole's full-ranking evaluation at several ``eval_batch_size`` values (issue 23).

RecBole's full-sort loader puts ``max(1, eval_batch_size // n_items)`` users in a batch: with RecBole's
default 4096 and ml-1m's 3,706 items that is one user per batch, 6,040 Python-level batches per
validation (collate, scoring, top-k, collector) for every LightGCN epoch of GLTA's stage 1. A batch is only
a grouping of users, so the metrics must not change; this script checks that they are equal and times one
validation of the same (freshly initialised, seeded) LightGCN per batch size, back to back.

    python3 benchmarks/full_sort_eval_batch.py --dataset ml-1m --data-path benchmarks/data/synthetic-s0 \
        --sizes 4096 409600
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import REPO, environment, write_report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data-path", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 409600])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from recbole_llm import _recbole  # noqa: F401
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.utils import get_model

    base = {"seed": 2020, "state": "WARNING"}
    if args.data_path:
        base["data_path"] = str(args.data_path)
    report = {"command": "python3 benchmarks/full_sort_eval_batch.py " + " ".join(argv or sys.argv[1:]),
              "dataset": args.dataset, **environment(), "rows": []}
    reference = None
    for size in args.sizes:
        config = Config(model="LightGCN", dataset=args.dataset, config_dict={**base, "eval_batch_size": size})
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)  # a RecBole dataset is built once per data_preparation
        _, valid, _ = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        model = get_model("LightGCN")(config, valid._dataset)
        trainer = Trainer(config, model)
        walls, cpus = [], []
        for _ in range(args.repeats):
            model.restore_user_e = model.restore_item_e = None  # propagate again, as after a training epoch
            w0, c0 = time.perf_counter(), time.process_time()
            result = trainer.evaluate(valid, load_best_model=False)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        result = {k: float(v) for k, v in result.items()}
        reference = reference or result
        row = {"eval_batch_size": size, "users_per_batch": max(1, size // dataset.item_num),
               "batches": len(valid), "wall_s": min(walls), "cpu_s": min(cpus), "load": os.getloadavg()[0],
               "metrics": result, "metrics_equal_first": result == reference}
        report["rows"].append(row)
        print(f"== eval_batch_size {size}: {row['batches']} batches, {row['wall_s']:.1f} s wall, "
              f"{row['cpu_s']:.1f} s CPU (best of {args.repeats}); metrics equal: {row['metrics_equal_first']}",
              flush=True)

    def to_markdown(rep):
        lines = [f"# Full-sort evaluation batch size: {rep['dataset']}", "", f"Command: `{rep['command']}`  ",
                 f"Load average {rep['loadavg_start'][0]:.1f} at start, {rep['loadavg_end'][0]:.1f} at end.", "",
                 "| eval_batch_size | users/batch | batches | wall s | CPU s | metrics equal to the first row |",
                 "|---|---|---|---|---|---|"]
        for r in rep["rows"]:
            lines.append(f"| {r['eval_batch_size']} | {r['users_per_batch']} | {r['batches']} | {r['wall_s']:.2f} | "
                         f"{r['cpu_s']:.2f} | {r['metrics_equal_first']} |")
        return "\n".join(lines) + "\n"

    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"full_sort_eval_batch_{args.dataset}.json"
    write_report(report, out, to_markdown)
    return 0 if all(r["metrics_equal_first"] for r in report["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
