"""``recbole-llm benchmark``: run a suite, resume it, and write its tables and plots.

    recbole-llm benchmark --list
    recbole-llm benchmark --suite cpu_ml100k --dry-run
    recbole-llm benchmark --suite cpu_ml100k [--only SASRec] [--skip 'LightGCN@*'] [--seeds 2020,2021]
    recbole-llm benchmark --suite cpu_ml100k --tables-only
    recbole-llm benchmark --suite glta_table2 --scale paper      # the models' *-paper.yaml (CUDA)

Finished runs are never repeated (the results store is keyed by the hash of each run's
resolved config); failed runs are retried; interrupted runs resume. Several runners may
share one results directory.
"""

import argparse
import sys
from pathlib import Path


def _parser():
    p = argparse.ArgumentParser(
        prog="recbole-llm benchmark",
        description="Run a benchmark suite (models x datasets x seeds under one protocol) and write "
                    "paper-style tables (Markdown, LaTeX, CSV) and plots.",
    )
    p.add_argument("--suite", help="suite name (properties/benchmarks/NAME.yaml) or path to a suite YAML")
    p.add_argument("--results-dir", help="results directory (default: benchmarks/results/<suite>)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only models matching: Model, Label, Model@dataset, wildcards allowed; repeatable "
                        "or comma-separated")
    p.add_argument("--skip", action="append", default=[], metavar="PATTERN", help="skip matching runs (as --only)")
    p.add_argument("--seeds", help="comma-separated seeds replacing the suite's")
    p.add_argument("--protocol", help="for a suite with several protocols: comma-separated keys to run "
                                      "(default: all of them, one after the other)")
    p.add_argument("--tables-only", action="store_true", help="write tables and plots from the store; run nothing")
    p.add_argument("--list", action="store_true", help="list the shipped suites")
    p.add_argument("--no-retry-failed", action="store_true", help="leave failed runs failed")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run before it is killed and failed")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per run instead)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads per run (default: the environment's); 1 is fastest on a busy shared CPU")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's model checkpoint")
    p.add_argument("--scale", choices=SCALES, default="cpu",
                   help="cpu (default): every model's CPU defaults; paper: rows whose model has "
                        "properties/model/<Model>-paper.yaml run it (a CUDA GPU expected). Results of each scale "
                        "are kept apart (default results folder <suite>-paper)")
    p.add_argument("--force", action="store_true", help="run --scale paper on a machine without CUDA")
    return p


SCALES = ("cpu", "paper")


def cuda_available():
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _print_list():
    from recbole_llm.benchmark.suite import list_suites

    print("Benchmark suites (properties/benchmarks):")
    for name, path, title in list_suites():
        print(f"  {name:<22} {title}")
    print("\nRun one with: recbole-llm benchmark --suite NAME [--dry-run]")


def report_not_runnable(plan):
    """One line per absent dataset and per model-level problem (missing, incompatible, error)."""
    lines, seen = [], set()
    for r in plan.runs:
        if r.status == "no-data" and ("data", r.dataset) not in seen:
            seen.add(("data", r.dataset))
            lines.append(f"NO DATA: {r.reason}")
    for r in plan.runs:
        if r.status in ("missing", "incompatible", "error") and (r.label, r.status, r.reason) not in seen:
            seen.add((r.label, r.status, r.reason))
            where = f" on {r.dataset}" if r.status == "error" else ""
            lines.append(f"{r.status.upper()}: {r.label}{where} ({r.reason})")
    return lines


def _stored_rows(results_dir, keys):
    """The stored rows of ``keys`` without changing anything on disk (dry run): no store file
    means no rows; an existing one is opened read-only."""
    import sqlite3

    from recbole_llm.benchmark.store import STORE_FILENAME, ResultsStore

    path = Path(results_dir) / STORE_FILENAME
    keys = [k for k in keys if k]
    if not path.is_file() or not keys:
        return {}
    # Without a -wal file the database is complete and unchanging: read it as immutable, which
    # creates no -wal/-shm files. With one (a run in progress), a read-only connection shares it.
    wal = path.with_name(path.name + "-wal").exists()
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{'mode=ro' if wal else 'immutable=1'}", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM runs WHERE key IN ({','.join('?' * len(keys))})", keys).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    return {row["key"]: ResultsStore._decode(row) for row in rows}


def _paper_lines(plan):
    """Which rows load a paper config (scale paper), and which have none."""
    if plan.scale == "cpu":
        return []
    with_paper, without = {}, []
    for r in plan.runs:
        if r.paper_config:
            with_paper.setdefault(r.label, Path(r.paper_config).name)
        elif r.label not in without:
            without.append(r.label)
    lines = [f"scale {plan.scale}: " + (", ".join(f"{lab} <- {f}" for lab, f in with_paper.items()) or "no row has a paper config")]
    without = [lab for lab in without if lab not in with_paper]
    if without:
        lines.append("  no paper config (their defaults): " + ", ".join(without))
    return lines


def _plan_lines(plan, store=None, rows=None):
    """Lines describing every planned run, and counts by state."""
    if rows is None:
        rows = {row["key"]: row for row in store.rows(keys=[r.key for r in plan.runs if r.key])}
    counts = {}
    lines = []
    labels = {r.key: r.label for r in plan.runs if r.key}
    for r in plan.runs:
        if r.status == "ready":
            st = (rows.get(r.key) or {}).get("status", "new")
            if st == "pending":
                st = "new"
        else:
            st = r.status
        counts[st] = counts.get(st, 0) + 1
        extra = f"  [{r.reason}]" if r.reason else ""
        if r.trained_key:
            extra += f"  [scores {labels.get(r.trained_key, r.trained_key)}'s trained weights]"
        if r.needs:
            extra += "  [" + ", ".join(f"{k} <- {labels.get(v, v)}" for k, v in r.needs.items()) + "]"
        lines.append(f"  {st:<12} {r.label:<22} {r.dataset:<20} seed={r.seed:<6} {r.key or '':<20}{extra}")
    return lines, counts


def main(argv=None):
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from recbole_llm.benchmark.suite import SuiteError, load_suites
    from recbole_llm.errors import RecBoleLLMError

    if args.list:
        _print_list()
        return 0
    if not args.suite:
        print("recbole-llm benchmark: --suite NAME is required (see --list).", file=sys.stderr)
        return 2
    try:
        parts = [p.strip() for p in args.protocol.split(",") if p.strip()] if args.protocol else None
        suites = load_suites(args.suite, parts=parts)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else None
    except (SuiteError, ValueError) as exc:
        print(f"recbole-llm benchmark: {exc}", file=sys.stderr)
        return 2
    runs_something = not (args.dry_run or args.tables_only)
    if args.scale == "paper" and runs_something and not args.force and not cuda_available():
        print("recbole-llm benchmark: --scale paper runs the papers' GPU configs (7B LLMs, full budgets) and this "
              "machine has no CUDA device; use --scale cpu, look first with --dry-run, or add --force to run anyway.",
              file=sys.stderr)
        return 2
    codes = []
    for suite in suites:
        folder = (suite.family or suite.name) + ("" if args.scale == "cpu" else f"-{args.scale}")
        results_dir = Path(args.results_dir or Path("benchmarks") / "results" / folder)
        if suite.part:
            results_dir = results_dir / suite.part
        try:
            codes.append(_run_suite(args, suite, seeds, results_dir))
        except RecBoleLLMError as exc:  # the results store is corrupt, locked or cannot be created
            print(f"recbole-llm benchmark: error: {exc}", file=sys.stderr)
            return 2
        if codes[-1] == 130:
            break
    return max(codes)


def _run_suite(args, suite, seeds, results_dir):
    """Plan, run (or list) one suite and write its tables; the CLI's exit code."""
    from recbole_llm.benchmark.suite import plan_suite, select_runs, with_dependencies
    from recbole_llm.benchmark.runner import run_plan, run_tunings, tuned_params
    from recbole_llm.benchmark.store import ResultsStore
    from recbole_llm.benchmark.tables import write_tables

    print(f"suite {suite.name}: {suite.title}")
    print(f"results: {results_dir} (scale {args.scale})")
    stored = None
    if args.dry_run:
        plan = plan_suite(suite, seeds=seeds, scale=args.scale)
        stored = _stored_rows(results_dir, [r.key for r in plan.runs] + list(plan.tunings))
        if plan.tunings:  # the tuned rows' keys, from the finished tunings
            plan = plan_suite(suite, seeds=seeds, scale=args.scale, tuned=tuned_params(stored))
            stored = _stored_rows(results_dir, [r.key for r in plan.runs] + list(plan.tunings))
    else:
        store = ResultsStore(results_dir)
        plan = plan_suite(suite, seeds=seeds, scale=args.scale, tuned=tuned_params(store))

    # Missing models, absent datasets and inapplicable runs are reported up front, never
    # dropped silently.
    for line in report_not_runnable(plan):
        print("  " + line)

    selected = with_dependencies(select_runs(plan.runs, only=args.only, skip=args.skip), plan.runs)
    if args.dry_run:  # changes nothing on disk: no results folder, no store file
        for line in _paper_lines(plan):
            print(line)
        lines, counts = _plan_lines(plan, rows=stored)
        sel = {id(r) for r in selected}
        runnable = ("ready", "tune-pending")
        for key, task in plan.tunings.items():
            st = (stored.get(key) or {}).get("status", "new")
            mark = "*" if any(r.tune_key == key for r in selected) and st != "finished" else " "
            spec = ", ".join(f"{k} {v}" for k, v in task.spec.items() if v is not None and k != "space")
            print(f"{mark} tune {st:<9} {task.label:<22} {task.dataset:<20} ({spec}) {key}")
        print(f"{len(plan.runs)} runs in the suite, {sum(1 for r in selected if r.status in runnable)} selected and runnable:")
        for r, line in zip(plan.runs, lines):
            print(("* " if id(r) in sel and r.status in runnable else "  ") + line[2:])
        print("states: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        print("(* = would run unless finished; finished runs are skipped, failed ones retried; "
              "tune-pending runs follow their row's tuning)")
        return 0

    interrupted = False
    if not args.tables_only:
        import signal

        def _term(signum, frame):  # `kill PID`: stop like Ctrl-C (the current run goes back to pending)
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, _term)
        try:
            wanted = {r.tune_key for r in selected if r.tune_key}
            if wanted:
                tuned = run_tunings(plan, store, results_dir, keys=wanted, retry_failed=not args.no_retry_failed)
                if tuned["failed"]:
                    print(f"tuning failed for {len(tuned['failed'])} row(s); their runs wait (see runs.csv)")
                plan = plan_suite(suite, seeds=seeds, scale=args.scale, tuned=tuned_params(store))
                selected = with_dependencies(select_runs(plan.runs, only=args.only, skip=args.skip), plan.runs)
            summary = run_plan(selected, store, results_dir, isolate=True, timeout=args.timeout,
                               retry_failed=not args.no_retry_failed, progress=not args.no_progress,
                               keep_checkpoints=args.keep_checkpoints, threads=args.threads)
            print(f"finished {len(summary['finished'])}, failed {len(summary['failed'])}, "
                  f"already done {len(summary['skipped_finished'])}, run elsewhere {len(summary['taken_by_other'])}")
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted; writing tables from what has finished", file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous)

    text, tables = write_tables(plan, store, results_dir)
    print()
    print(text)
    if not args.no_plots:
        from recbole_llm.benchmark.plots import write_plots

        written = write_plots(plan, store, results_dir, tables=tables)
        print(f"plots: {len(written)} files under {results_dir / 'plots'}")
    print(f"tables: {results_dir / 'tables'} (md, tex, csv); summary: {results_dir / 'summary.md'}")
    if interrupted:
        return 130
    counts = store.counts()
    return 1 if counts.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
