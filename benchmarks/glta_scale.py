"""The mission command's stages at ml-1m scale: ``--model=GLTA --dataset=ml-1m`` with the embedded default,
stage by stage, with wall time, CPU time (all threads of this process) and peak RSS per stage, and the test
metrics (issue 23).

    python3 benchmarks/glta_scale.py                                  # full ml-1m shape, every stage
    python3 benchmarks/glta_scale.py --users 604 --profile            # 1/10 of the users, cProfile per stage
    python3 benchmarks/glta_scale.py --fraction 0.5 --stages graph    # half the users, LightGCN stage only
    python3 benchmarks/glta_scale.py --set train_batch_size=8192      # config overrides (KEY=VALUE, JSON values)

Data: the real ``ml-1m`` when its atomic files are found (``--data-path``, ``RECBOLE_LLM_DATA`` or
recbole-llm's dataset cache, where ``python -m atomic_data download ml-1m --out ...`` puts them), else the
generated ml-1m-shaped dataset of ``benchmarks/ml1m_shaped.py`` (``--synthetic`` forces it), written under
``benchmarks/data/`` (git-ignored). ``--users N`` / ``--fraction F`` keep a random share of the users (same
draw for a given ``--data-seed``), so a reduced run is the same population at a smaller size.

Stages: ``data`` (RecBole's dataset and split), ``model_init`` (GLTA and its LLM), the trainer's ``graph``,
``item_text``, ``generate`` and ``user_item``, and ``test`` (full-ranking test evaluation of the best state).
``--stages`` names the trainer stages to run; ``graph`` always runs (everything needs its embeddings) and
``user_item`` brings ``item_text`` and ``generate`` with it (without them it would be an ablation), and
``test`` runs only after ``user_item``. Caches start empty (a fresh ``RECBOLE_LLM_CACHE`` under
``benchmarks/data/``) unless ``--cache DIR`` reuses one, so a default run is cold: GGUF conversion,
LightGCN, generation, text embeddings all included.

``--profile``: one cProfile per stage, written as ``.prof`` plus the top functions by total and cumulative
time into ``<out>.profile/``. The report (``--out``, default ``benchmarks/results/glta_scale_<tag>.json``
and ``.md``) records the load average before and after every stage: the machine is shared, so compare
runs taken back to back.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

from _common import REPO, environment, parse_overrides, write_report

import ml1m_shaped

TRAINER_STAGES = ("graph", "item_text", "generate", "user_item")
ALL_STAGES = TRAINER_STAGES + ("test",)
METRICS = ["recall@10", "ndcg@10", "precision@5", "precision@10", "ndcg@5"]


def fail(msg: str):
    print(f"glta_scale: {msg}", file=sys.stderr)
    raise SystemExit(2)


def stages_to_run(requested: str) -> list[str]:
    """The trainer stages that run for ``--stages`` (see the module docstring)."""
    names = [s.strip() for s in requested.split(",") if s.strip()]
    unknown = [s for s in names if s not in ALL_STAGES]
    if unknown or not names:
        fail(f"--stages {requested!r}: unknown stage(s) {unknown}; choose from {', '.join(ALL_STAGES)}")
    chosen = set(names) | {"graph"}
    if "test" in chosen:
        chosen.add("user_item")
    if "user_item" in chosen:
        chosen |= {"item_text", "generate"}
    return [s for s in TRAINER_STAGES if s in chosen]


def find_real_ml1m(data_path: str | None) -> Path | None:
    """The folder holding ``ml-1m/ml-1m.inter`` (real MovieLens-1M), or None."""
    from recbole_llm.paths import cache_dir

    candidates = [data_path, os.environ.get("RECBOLE_LLM_DATA"), str(Path(cache_dir()) / "datasets")]
    for root in candidates:
        if root and (Path(root) / "ml-1m" / "ml-1m.inter").is_file():
            return Path(root)
    return None


def read_inter(folder: Path):
    """The real ml-1m's interactions as the arrays ``ml1m_shaped`` works with (to subsample users)."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv(folder / "ml-1m" / "ml-1m.inter", sep="\t", header=0)
    df.columns = [c.split(":")[0] for c in df.columns]
    return {"user": df["user_id"].to_numpy(), "item": df["item_id"].to_numpy(),
            "rating": df["rating"].to_numpy(), "timestamp": df["timestamp"].to_numpy(np.int64)}


def prepare_data(args) -> tuple[Path, dict]:
    """``(data_path, description)``: where ``ml-1m/ml-1m.inter`` of this run lies, and what it is."""
    n_users = args.users
    if args.fraction is not None:
        n_users = max(1, round(ml1m_shaped.N_USERS * args.fraction))
    real = None if args.synthetic else find_real_ml1m(args.data_path)
    kind = "real ml-1m" if real else f"generated ml-1m shape (benchmarks/ml1m_shaped.py, seed {args.data_seed})"
    if real and n_users is None:
        return real, {"kind": kind, "source": str(real)}
    tag = ("real" if real else f"synthetic-s{args.data_seed}") + (f"-u{n_users}" if n_users else "")
    target = REPO / "benchmarks" / "data" / tag
    marker = target / "ml-1m" / "describe.json"
    if marker.is_file():
        return target, json.loads(marker.read_text())
    t0 = time.perf_counter()
    if real:
        import shutil

        inter = read_inter(real)
        items_file = real / "ml-1m" / "ml-1m.item"
        (target / "ml-1m").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(items_file, target / "ml-1m" / "ml-1m.item")
        items = None
    else:
        inter, items = ml1m_shaped.generate(args.data_seed)
    try:
        inter = ml1m_shaped.select_users(inter, n_users, args.data_seed)
    except ValueError as exc:
        fail(str(exc))
    if items is None:
        from atomic_data import AtomicWriter
        from atomic_data.movielens import INTER_FIELDS

        with AtomicWriter(target / "ml-1m" / "ml-1m.inter", INTER_FIELDS) as fh:
            for row in zip(*(inter[k].tolist() for k in ("user", "item", "rating", "timestamp"))):
                fh.write([str(row[0]), str(row[1]), float(row[2]), float(row[3])])
    else:
        ml1m_shaped.write_atomic(inter, items, target)
    desc = {"kind": kind, "source": str(target.relative_to(REPO)), **ml1m_shaped.describe(inter),
            "generate_seconds": time.perf_counter() - t0}
    marker.write_text(json.dumps(desc, indent=1) + "\n")
    return target, desc


class StageMeter:
    """Wall time, CPU time, peak RSS, load average and (optionally) a cProfile of each named stage."""

    def __init__(self, profile_dir: Path | None):
        self.profile_dir = profile_dir
        self.rows: dict[str, dict] = {}
        self._open = None

    def start(self, name):
        from recbole_llm.memory import reset_peak_rss

        reset_peak_rss()
        prof = cProfile.Profile() if self.profile_dir else None
        self._open = (name, time.perf_counter(), time.process_time(), os.getloadavg()[0], prof)
        if prof:
            prof.enable()

    def stop(self, extra=None):
        from recbole_llm.memory import peak_rss_mb

        name, w0, c0, load0, prof = self._open
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        row = {"wall_s": wall, "cpu_s": cpu, "cpu_per_wall": cpu / wall if wall else 0.0, "peak_rss_mb": peak_rss_mb(),
               "load_start": load0, "load_end": os.getloadavg()[0]}
        if extra:
            row["stats"] = extra
        if prof:
            row["profile"] = self._write_profile(name, prof)
        self.rows[name] = row
        self._open = None
        print(f"== {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {row['peak_rss_mb']:.0f} MiB, "
              f"load {load0:.1f}->{row['load_end']:.1f}", flush=True)

    def _write_profile(self, name, prof) -> dict:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / f"{name}.prof"
        prof.dump_stats(str(path))
        out = {"file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)}
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(order).print_stats(25)
            text = buf.getvalue()
            (self.profile_dir / f"{name}.{order}.txt").write_text(text)
        return out


def run(args, data_path: Path, stage_names: list[str], meter: StageMeter) -> dict:
    from recbole_llm import _recbole  # noqa: F401  (compat fixes before RecBole)
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger, init_seed

    from recbole_llm.config import Config
    from recbole_llm.utils import get_model, get_trainer

    run_dir = REPO / "benchmarks" / "data" / "runs" / args.tag
    config_dict = {"data_path": str(data_path), "seed": args.seed, "stage_resume": False,
                   "checkpoint_dir": str(run_dir), "show_progress": False, **parse_overrides(args.set)}
    meter.start("data")
    config = Config(model="GLTA", dataset="ml-1m", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    meter.stop({"train": len(train_data.dataset), "valid": len(valid_data.dataset), "test": len(test_data.dataset)})

    meter.start("model_init")
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model("GLTA")(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], "GLTA")(config, model)
    meter.stop()

    all_stages = trainer.stages
    trainer.stages = lambda: [s for s in all_stages() if s.name in stage_names]
    begin, end = trainer._begin, trainer._end

    def _begin(stage):
        meter.start(stage.name)
        begin(stage)

    def _end(stage, stats):
        end(stage, stats)
        meter.stop(trainer.stage_stats.get(stage.name))

    trainer._begin, trainer._end = _begin, _end
    best_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    out = {"config": {k: config[k] for k in ("seed", "train_batch_size", "eval_batch_size", "device")},
           "overrides": parse_overrides(args.set), "stages_run": stage_names}
    if "user_item" in stage_names:
        out["valid"] = {k: float(v) for k, v in (best_valid or {}).items()}
        meter.start("test")
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        meter.stop()
        out["test"] = {k: float(v) for k, v in test.items()}
    return out


def to_markdown(report) -> str:
    d, stages = report["data"], report["stages"]
    lines = [f"# GLTA at ml-1m scale: {report['tag']}", "",
             f"Command: `{report['command']}`  ", f"Commit: {report['commit']}; {report['started']}; "
             f"{report['env']['threads']} torch threads; load average {report['env']['loadavg_start'][0]:.1f} "
             f"at start, {report['loadavg_end'][0]:.1f} at end (2-core machine shared with other jobs: compare "
             "runs taken back to back).", "",
             f"Data: {d['kind']}: {d.get('users', '?')} users, {d.get('items', '?')} items, "
             f"{d.get('ratings', '?')} ratings.", "",
             "| stage | wall s | CPU s | CPU/wall | peak RSS MiB | load start -> end |", "|---|---|---|---|---|---|"]
    for name, row in stages.items():
        lines.append(f"| {name} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['cpu_per_wall']:.2f} | "
                     f"{row['peak_rss_mb']:.0f} | {row['load_start']:.1f} -> {row['load_end']:.1f} |")
    total = sum(r["wall_s"] for r in stages.values())
    lines.append(f"| **total** | {total:.1f} | {sum(r['cpu_s'] for r in stages.values()):.1f} | | "
                 f"{max(r['peak_rss_mb'] for r in stages.values()):.0f} | |")
    if report["result"].get("test"):
        shown = [m for m in METRICS if m in report["result"]["test"]] or sorted(report["result"]["test"])
        lines += ["", "| split | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        for split in ("valid", "test"):
            vals = report["result"].get(split) or {}
            lines.append(f"| {split} | " + " | ".join(f"{vals.get(m, float('nan')):.4f}" for m in shown) + " |")
    lines += ["", "Stage counters (the trainer's own):", ""]
    for name, row in stages.items():
        if row.get("stats"):
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row["stats"].items()}
            lines.append(f"- {name}: `{json.dumps(shown, default=str)}`")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--users", type=int, default=None, help="keep this many users (random draw)")
    size.add_argument("--fraction", type=float, default=None, help="keep this share of the users")
    ap.add_argument("--stages", default=",".join(ALL_STAGES), help="comma-separated: " + ", ".join(ALL_STAGES))
    ap.add_argument("--synthetic", action="store_true", help="the generated dataset even when real ml-1m is present")
    ap.add_argument("--data-path", default=None, help="a folder holding ml-1m/ml-1m.inter (real MovieLens-1M)")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the generator and of the user draw")
    ap.add_argument("--seed", type=int, default=2020, help="the run's seed (split, initialisations)")
    ap.add_argument("--cache", default=None, help="RECBOLE_LLM_CACHE to reuse (default: a fresh one, cold)")
    ap.add_argument("--profile", action="store_true", help="cProfile every stage (slower; proportions, not totals)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--tag", default=None, help="name of this run (default from size and options)")
    ap.add_argument("--out", default=None, help="report JSON (markdown beside it)")
    args = ap.parse_args(argv)
    if args.users is not None and args.users < 1:
        fail(f"--users must be >= 1, got {args.users}")
    if args.fraction is not None and not 0 < args.fraction <= 1:
        fail(f"--fraction must be in (0, 1], got {args.fraction}")
    try:
        parse_overrides(args.set)
    except SystemExit as exc:
        fail(str(exc))
    stage_names = stages_to_run(args.stages)
    size_tag = f"u{args.users}" if args.users else (f"f{args.fraction:g}" if args.fraction else "full")
    args.tag = args.tag or f"{size_tag}-{'+'.join(stage_names)}" + ("-profile" if args.profile else "")
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"glta_scale_{args.tag}.json"

    if args.cache:
        os.environ["RECBOLE_LLM_CACHE"] = str(Path(args.cache).resolve())
    else:
        os.environ["RECBOLE_LLM_CACHE"] = str(REPO / "benchmarks" / "data" / "cache" / f"{args.tag}-{int(time.time())}")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    env = environment()
    data_path, desc = prepare_data(args)
    meter = StageMeter(out.with_suffix(".profile") if args.profile else None)
    t0 = time.perf_counter()
    result = run(args, data_path, stage_names, meter)
    import subprocess

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {"tag": args.tag, "command": "python3 benchmarks/glta_scale.py " + " ".join(argv or sys.argv[1:]),
              "commit": commit, "started": started, "env": env, "data": desc,
              "cache": os.environ["RECBOLE_LLM_CACHE"], "wall_s": time.perf_counter() - t0,
              "stages": meter.rows, "result": result}
    write_report(report, out, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
