"""Run a suite's runs, each in its own subprocess, recording everything in the store.

Each run is a child ``python .../recbole_llm/benchmark/runner.py JOB RESULT``: memory is
returned to the system after every run, the child's peak RSS is measured by the parent
(``wait4``), and a crash (segfault, OOM kill, timeout) fails that run only. The child dies
with its parent (``PR_SET_PDEATHSIG``), so killing a runner leaves no orphan training.

The run function is injectable (``run_fn``: a ``"module:function"`` string or a top-level
function) with the signature of :func:`recbole_llm.quick_start.run_experiment`; tests pass a
fast fake one.
"""

import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from recbole_llm.plain import plain

# Keep this module's top-level imports to the standard library: the run subprocess executes
# this file by path, so a fake run function in a test starts in milliseconds instead of
# importing recbole_llm (and with it torch and RecBole).

DEFAULT_RUN_FN = "recbole_llm.quick_start:run_experiment"
#: Runs of ``on_trained`` rows: the same signature plus ``trained_checkpoint`` (the weights to score).
DEFAULT_RESCORE_FN = "recbole_llm.quick_start:rescore_experiment"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def fn_path(fn):
    """``"module:qualname"`` of a run function (a string is returned unchanged)."""
    if isinstance(fn, str):
        return fn
    module, qualname = fn.__module__, fn.__qualname__
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(f"run function {qualname} must be a module-level function to run in a subprocess")
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        if main_file:
            module = Path(main_file).stem
    return f"{module}:{qualname}"


def load_fn(path):
    import importlib

    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def versions():
    """Versions of the stack a run used."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("recbole_llm", "recbole", "torch", "transformers", "numpy", "pandas", "scipy"):
        mod = sys.modules.get(name)
        if mod is None:
            try:
                from importlib.metadata import version

                out[name] = version(name.replace("_", "-"))
            except Exception:
                out[name] = None
            continue
        out[name] = getattr(mod, "__version__", None)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        out["git"] = rev.stdout.strip() or None
    except Exception:
        out["git"] = None
    return out


#: How a run's results become JSON (:func:`recbole_llm.plain.plain`): numpy/torch scalars as numbers,
#: anything else as its ``repr``, dicts in their own order.
RESULT_JSON = {"numbers": True, "fallback": repr, "sort_keys": False}


def normalize_result(res):
    """Map a run function's return value to the store's fields."""
    res = res or {}
    stats = res.get("stats") or {}
    epoch_times = [float(t) for t in (stats.get("epoch_times") or [])]
    out = {
        "valid": plain(dict(res.get("best_valid_result") or {}), **RESULT_JSON),
        "test": plain(dict(res.get("test_result") or {}), **RESULT_JSON),
        "best_valid_score": res.get("best_valid_score"),
        "best_epoch": stats.get("best_epoch"),
        "epoch_times": epoch_times,
        "stage_times": plain(dict(stats.get("stage_times") or {}), **RESULT_JSON),
        "trainable_params": stats.get("trainable_params"),
        "total_params": stats.get("total_params"),
        "extra": {"child_peak_rss_mb": stats.get("peak_rss_mb")},
        "per_user": stats.get("per_user_test"),
    }
    if stats.get("saved_model_file"):
        out["extra"]["saved_model_file"] = str(stats["saved_model_file"])
    if stats.get("rescored_from"):
        out["extra"]["rescored_from"] = str(stats["rescored_from"])
    if stats.get("scoring_seconds") is not None:  # a rescoring: its wall time is the scoring alone
        out["wall_time_s"] = float(stats["scoring_seconds"])
    try:
        out["best_valid_score"] = None if out["best_valid_score"] is None else float(out["best_valid_score"])
    except (TypeError, ValueError):
        out["best_valid_score"] = None
    return out


# -- the child -------------------------------------------------------------------------
def _die_with_parent():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def child_main(job_path, result_path):
    """Entry point of a run's subprocess: run the job, write the result JSON atomically."""
    t_start = time.perf_counter()
    _die_with_parent()
    job = json.loads(Path(job_path).read_text())
    if job.get("parent_pid") and os.getppid() != job["parent_pid"]:
        sys.exit(3)  # parent already gone
    sys.argv = sys.argv[:1]  # RecBole must not read the runner's arguments as config
    out = {"ok": False}
    try:
        fn = load_fn(job["run_fn"])
        t_import = time.perf_counter()
        extra = {"trained_checkpoint": job["trained_checkpoint"]} if job.get("trained_checkpoint") else {}
        res = fn(model=job["model"], dataset=job["dataset"], config_file_list=job.get("config_files") or None,
                 config_dict=job["config_dict"], saved=job.get("saved", True), **extra)
        out.update(ok=True, result=plain(res, **RESULT_JSON))
        out["child_times"] = {"startup": t_import - t_start, "run": time.perf_counter() - t_import}
    except BaseException as exc:  # report everything, KeyboardInterrupt included
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    out["versions"] = versions()
    from recbole_llm.files import write_atomic

    write_atomic(result_path, lambda tmp: tmp.write_text(json.dumps(out, default=repr)))
    return 0 if out["ok"] else 1


# -- the parent ------------------------------------------------------------------------
def _tail(path, n=25):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except (ValueError, TypeError):
        return str(code)


def execute_isolated(run, run_fn, results_dir, store, owner, timeout=None, saved=True, keep_checkpoints=False,
                     extra_env=None, trained_checkpoint=None):
    """Run one :class:`RunSpec` in a subprocess; return ``(ok, result_fields, error)``. Its checkpoint
    folder is removed afterwards unless ``keep_checkpoints`` or another run needs it
    (``run.keep_checkpoint``); ``trained_checkpoint``: see :func:`run_plan` (on_trained rows)."""
    keep_checkpoints = keep_checkpoints or run.keep_checkpoint
    results_dir = Path(results_dir)
    jobs, logs = results_dir / "jobs", results_dir / "logs"
    jobs.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    ckpt = results_dir / "checkpoints" / run.key
    cfg = dict(run.config_dict)
    cfg.setdefault("checkpoint_dir", str(ckpt))
    cfg.setdefault("show_progress", False)
    job = {"model": run.model, "dataset": run.dataset, "config_files": run.config_files, "config_dict": cfg,
           "run_fn": fn_path(run_fn), "saved": saved, "parent_pid": os.getpid(), "key": run.key,
           "trained_checkpoint": trained_checkpoint}
    job_path, result_path = jobs / f"{run.key}.json", jobs / f"{run.key}.result.json"
    log_path = logs / f"{run.key}.log"
    job_path.write_text(json.dumps(job, default=repr, indent=1))
    result_path.unlink(missing_ok=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra_env or {})
    t0 = time.perf_counter()
    with open(log_path, "ab") as log:
        log.write(f"\n===== {run.name} key={run.key} {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(job_path), str(result_path)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    rusage, status, timed_out = None, None, False
    last_beat = time.monotonic()
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            now = time.monotonic()
            if now - last_beat > HEARTBEAT_S:
                store.heartbeat(run.key, owner)
                last_beat = now
            if timeout and time.perf_counter() - t0 > timeout:
                timed_out = True
                proc.kill()
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    except BaseException:  # KeyboardInterrupt/SystemExit: do not leave the child running
        proc.kill()
        try:
            os.wait4(proc.pid, 0)
        except ChildProcessError:
            pass
        proc.returncode = -9
        if not keep_checkpoints:
            shutil.rmtree(ckpt, ignore_errors=True)
        raise
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = rusage.ru_maxrss / 1024.0 if rusage is not None else None  # Linux: KiB

    fields = {"wall_time_s": wall, "peak_rss_mb": peak_mb, "log_path": str(log_path), "versions": None}
    child = None
    if result_path.is_file():
        try:
            child = json.loads(result_path.read_text())
        except ValueError:
            child = None
    if child is not None:
        fields["versions"] = child.get("versions")
    if not keep_checkpoints:
        shutil.rmtree(ckpt, ignore_errors=True)
    if child is not None and child.get("ok"):
        norm = normalize_result(child.get("result"))
        extra = norm.pop("extra") or {}
        fields.update(norm)
        fields["stage_times"] = dict(fields.get("stage_times") or {})
        fields["stage_times"].update({f"subprocess_{k}": v for k, v in (child.get("child_times") or {}).items()})
        fields["stage_times"]["subprocess_total"] = wall
        fields["extra"] = extra
        for p in (job_path, result_path):
            p.unlink(missing_ok=True)
        return True, fields, None
    if timed_out:
        error = f"timed out after {timeout:.0f} s (killed)"
    elif child is not None:
        error = child.get("error") or "failed"
        tb = child.get("traceback")
        if tb:
            error += "\n" + tb[-4000:]
    else:
        code = proc.returncode
        how = f"killed by {_signal_name(code)}" if code < 0 else f"exit status {code}"
        error = f"subprocess died ({how}) without a result; last log lines:\n{_tail(log_path)}"
    return False, fields, error


def execute_inprocess(run, run_fn, trained_checkpoint=None):
    """Run one run in this process (tests, debugging); memory is this process's peak."""
    import resource

    fn = load_fn(run_fn) if isinstance(run_fn, str) else run_fn
    extra = {"trained_checkpoint": trained_checkpoint} if trained_checkpoint else {}
    t0 = time.perf_counter()
    try:
        res = fn(model=run.model, dataset=run.dataset, config_file_list=run.config_files or None,
                 config_dict=dict(run.config_dict), saved=True, **extra)
    except Exception as exc:
        return False, {"wall_time_s": time.perf_counter() - t0}, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    fields = {"wall_time_s": time.perf_counter() - t0}
    fields.update(normalize_result(res))
    fields.update(versions=versions(),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return True, fields, None


def _checkpoint_of(row):
    """The kept checkpoint file of a finished stored row, or ``None``."""
    if not row or row.get("status") != "finished":
        return None
    path = (row.get("extra") or {}).get("saved_model_file")
    return path if path and Path(path).is_file() else None


def _dependencies_first(todo):
    """``todo`` reordered so that a run comes after the runs of ``todo`` it depends on (stable)."""
    by_key = {r.key: r for r in todo}
    depth = {}

    def level(run):
        if run.key not in depth:
            depth[run.key] = 0  # cycles are refused when the suite is parsed
            depth[run.key] = 1 + max((level(by_key[k]) for k in run.dependencies() if k in by_key), default=-1)
        return depth[run.key]

    return sorted(todo, key=level)


def run_plan(runs, store, results_dir, run_fn=DEFAULT_RUN_FN, isolate=True, timeout=None, retry_failed=True,
             progress=True, owner=None, stale_after=STALE_AFTER_S, keep_checkpoints=False, log=print, threads=None,
             rescore_fn=DEFAULT_RESCORE_FN):
    """Execute the ``ready`` runs among ``runs`` (skipping finished ones); return a summary.

    A run with ``needs`` (a row's ``checkpoints``) gets the kept checkpoint file of each run it needs
    in those settings; an ``on_trained`` run calls ``rescore_fn`` with the trained run's checkpoint
    (``trained_checkpoint=``). They run after the runs they need; a finished needed run whose
    checkpoint is gone runs again first, if it is among ``runs`` (the CLI adds it,
    :func:`recbole_llm.benchmark.suite.with_dependencies`), else the dependent run fails saying so. A run
    whose needed run another runner is training is left alone (``taken_by_other``); it runs next time.

    ``store`` is a :class:`ResultsStore` (or a path). Safe to call from several processes on
    one store: each run is claimed atomically, so no key runs twice at the same time.
    ``threads`` sets OMP/MKL threads of each run subprocess (on a shared or oversubscribed
    CPU, 1 thread avoids OpenMP spin-waiting; it changes timings, not results).
    """
    extra_env = None
    if threads:
        extra_env = {v: str(int(threads)) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    from tqdm import tqdm

    from recbole_llm.benchmark.store import ResultsStore, make_owner

    if not isinstance(store, ResultsStore):
        store = ResultsStore(store)
    owner = owner or make_owner()
    ready = [r for r in runs if r.status == "ready"]
    for r in ready:
        store.register(r.key, suite=r.suite, label=r.label, model=r.model, dataset=r.dataset, seed=r.seed,
                       config=r.resolved)
    rows = {row["key"]: row for row in store.rows(keys=[r.key for r in ready])}
    waiting = {k for r in ready if rows.get(r.key, {}).get("status") != "finished" for k in r.dependencies()}
    gone = [r for r in ready if r.key in waiting and rows.get(r.key, {}).get("status") == "finished"
            and _checkpoint_of(rows[r.key]) is None]
    if gone:  # a run still needs their checkpoints: train them again (they were kept, but are gone)
        store.reset(keys=[r.key for r in gone])
        for r in gone:
            rows[r.key]["status"] = "pending"
            if log:
                log(f"{r.name}: its checkpoint is gone and a run needs it; it trains again")
    done_before = [r for r in ready if rows.get(r.key, {}).get("status") == "finished"]
    todo = _dependencies_first([r for r in ready if rows.get(r.key, {}).get("status") != "finished"])
    summary = {"finished": [], "failed": [], "skipped_finished": [r.key for r in done_before],
               "taken_by_other": [], "interrupted": None}
    bar = tqdm(total=len(ready), initial=len(done_before), desc="benchmark", unit="run", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        for i, run in enumerate(todo):
            bar.set_postfix_str(f"{run.label}@{run.dataset} s={run.seed}")
            busy = [row for row in map(store.get, run.dependencies())
                    if row and row["status"] == "running" and not store.is_stale(row, stale_after)]
            if busy:  # another runner is training a row this one needs: leave this run to that runner
                summary["taken_by_other"].append(run.key)
                bar.update(1)
                continue
            if not store.claim(run.key, owner, retry_failed=retry_failed, stale_after=stale_after,
                               meta={"suite": run.suite, "label": run.label, "model": run.model,
                                     "dataset": run.dataset, "seed": run.seed, "config": run.resolved}):
                summary["taken_by_other"].append(run.key)
                bar.update(1)
                continue
            try:
                job = run
                paths = {setting: _checkpoint_of(store.get(key)) for setting, key in run.needs.items()}
                trained = _checkpoint_of(store.get(run.trained_key)) if run.trained_key else None
                missing = [s for s, p in paths.items() if p is None]
                if run.trained_key and not trained:
                    missing.append("on_trained")
                if paths:
                    job = dataclasses.replace(run, config_dict={**run.config_dict, **paths})
                fn = rescore_fn if run.trained_key else run_fn
                if missing:
                    ok, fields = False, {}
                    error = (f"needs the kept checkpoint of run(s) {sorted(set(run.dependencies()))} "
                             f"({', '.join(missing)}), which have not finished or whose checkpoint is gone; run "
                             "those rows first (--only adds them)")
                elif isolate:
                    ok, fields, error = execute_isolated(job, fn, results_dir, store, owner, timeout=timeout,
                                                         keep_checkpoints=keep_checkpoints, extra_env=extra_env,
                                                         trained_checkpoint=trained)
                else:
                    ok, fields, error = execute_inprocess(job, fn, trained_checkpoint=trained)
            except BaseException as exc:
                store.release(run.key, owner)
                summary["interrupted"] = run.key
                bar.close()
                log(f"interrupted during {run.name}; it is pending again and reruns next time "
                    f"({type(exc).__name__}). Finished runs are kept.")
                raise
            fields["config"] = run.resolved
            if threads:
                fields["extra"] = dict(fields.get("extra") or {}, threads=int(threads))
            if ok:
                store.finish(run.key, owner, fields)
                summary["finished"].append(run.key)
                test = fields.get("test") or {}
                shown = ", ".join(f"{k}={v:.4f}" for k, v in list(test.items())[:4] if isinstance(v, (int, float)))
                msg = f"done   {run.name} in {fields.get('wall_time_s', 0):.1f} s: {shown}"
            else:
                store.fail(run.key, owner, error, fields)
                summary["failed"].append(run.key)
                msg = f"FAILED {run.name}: {error.splitlines()[0] if error else 'unknown error'}"
            if progress:
                bar.write(msg)
            elif log:
                log(msg)
            bar.update(1)
    finally:
        bar.close()
    return summary


# -- tuned rows --------------------------------------------------------------------------
def tuned_params(store):
    """``tuned`` for :func:`recbole_llm.benchmark.suite.plan_suite`: a finished tuning's best
    parameters from ``store`` (a :class:`ResultsStore`, or ``{key: row}`` of stored rows)."""

    def lookup(key):
        row = store.get(key)
        if not row or row.get("status") != "finished":
            return None
        return ((row.get("extra") or {}).get("tune") or {}).get("params")

    return lookup


def _tuning_device(task):
    """``cuda`` when the trials ran on a GPU (RecBole's use_gpu and a visible CUDA device), else ``cpu``."""
    if task.config_dict.get("use_gpu") is False:
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def run_tunings(plan, store, results_dir, keys=None, owner=None, retry_failed=True, stale_after=STALE_AFTER_S,
                log=print):
    """Tune the plan's tuned rows (``keys``: only these tune keys) with :mod:`recbole_llm.tune`, each on
    validation only, its Optuna study under ``<results_dir>/tune/<key>/``, its outcome (best parameters,
    trials, CPU/GPU seconds) a finished row of ``store`` keyed by the tune key. A tuning another runner
    holds is left to it; an interrupted one is released and its study resumes on the next call.
    Returns ``{"finished": [...], "failed": [...], "skipped": [...]}``."""
    from recbole_llm.benchmark.store import ResultsStore, make_owner
    from recbole_llm.tune.study import TuneOptions, tune

    if not isinstance(store, ResultsStore):
        store = ResultsStore(store)
    owner = owner or make_owner()
    out = {"finished": [], "failed": [], "skipped": []}
    for key, task in plan.tunings.items():
        if keys is not None and key not in keys:
            continue
        row = store.get(key)
        if row and row["status"] == "finished":
            continue
        meta = {"suite": plan.suite.name, "label": f"{task.label} (tuning)", "model": task.model,
                "dataset": task.dataset, "seed": None, "config": task.identity}
        if not store.claim(key, owner, retry_failed=retry_failed, stale_after=stale_after, meta=meta):
            out["skipped"].append(key)
            continue
        spec = task.spec
        budget = " and ".join(x for x in (f"{spec['trials']} trials" if spec.get("trials") else "",
                                          f"{spec['budget_hours']:g} h" if spec.get("budget_hours") else "") if x)
        log(f"tuning {task.label}@{task.dataset} ({budget}, validation only)")
        opts = TuneOptions(model=task.model, dataset=task.dataset, n_trials=spec.get("trials"),
                           budget_hours=spec.get("budget_hours"), space_file=spec.get("space"),
                           study_name=f"{task.label}-{task.dataset}", out=str(Path(results_dir) / "tune" / key),
                           config_files=list(task.config_files) or None, overrides=dict(task.config_dict),
                           seed=int(task.config_dict.get("seed", 2020)), plot=False)
        t0 = time.perf_counter()
        try:
            summary = tune(opts, log=log)
        except KeyboardInterrupt:
            store.release(key, owner)
            raise
        except Exception as exc:
            store.fail(key, owner, f"{type(exc).__name__}: {exc}", {"wall_time_s": time.perf_counter() - t0})
            out["failed"].append(key)
            log(f"FAILED tuning {task.label}@{task.dataset}: {exc}")
            continue
        best = summary.get("best_config")
        if best is None:
            store.fail(key, owner, "no trial completed", {"wall_time_s": time.perf_counter() - t0})
            out["failed"].append(key)
            log(f"FAILED tuning {task.label}@{task.dataset}: no trial completed")
            continue
        device = _tuning_device(task)
        trials = summary["trials_complete"] + summary["trials_pruned"] + summary["trials_failed"]
        record = {"params": {k: best[k] for k in task.params if k in best}, "trials": trials,
                  "trials_complete": summary["trials_complete"], "trials_pruned": summary["trials_pruned"],
                  "trials_failed": summary["trials_failed"], "wall_s": summary["trial_wall_s"],
                  "cpu_s": summary["trial_cpu_s"], "device": device,
                  "seconds": summary["trial_wall_s"] if device == "cuda" else summary["trial_cpu_s"],
                  "best_value": summary["best_value"], "default_value": summary["default_value"],
                  "valid_metric": summary["valid_metric"], "best_trial": summary["best_trial"],
                  "study": str(Path(results_dir) / "tune" / key)}
        store.finish(key, owner, {"best_valid_score": summary["best_value"], "wall_time_s": time.perf_counter() - t0,
                                  "config": task.identity, "extra": {"tune": record}})
        out["finished"].append(key)
        log(f"tuned  {task.label}@{task.dataset}: best valid {summary['valid_metric']} {summary['best_value']:.4f} "
            f"over {trials} trials ({record['seconds']:.0f} {'GPU' if device == 'cuda' else 'CPU'}-s); "
            f"{record['params']}")
    return out


if __name__ == "__main__":
    # Run by path: drop this folder from sys.path so its modules (stats, suite, ...) cannot
    # shadow top-level packages of the same name.
    _here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(_here)]
    sys.exit(child_main(sys.argv[1], sys.argv[2]))
