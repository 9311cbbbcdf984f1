"""``recbole-llm tune``: an Optuna study over one model's search space, on validation only.

* **Trials** run in this process through :func:`recbole_llm.quick_start.run_experiment` with
  ``test=False`` (the test split is never evaluated) and ``checkpoint_dir`` set to the trial's own
  folder ``<out>/trials/<number>/`` (removed when the trial ends unless ``keep_checkpoints``), so
  parallel workers never share a file. The objective is the best ``valid_metric`` score the
  trainer's early stopping kept.
* **Pruning**: the trainer's ``callback_fn`` (RecBole's ``fit`` and :class:`StagedTrainer` stages
  alike call it after every validation) reports the score as step 0, 1, 2, ... and raises
  :class:`optuna.TrialPruned` when the pruner says so.
* **Sampling**: TPE, seeded per trial from ``seed`` and the trial's number, so a single worker's study
  is reproducible, a resumed one does not replay its first draws and parallel workers differ.
  The first trial of a new study is the model's defaults (when they lie in the space): the
  "untuned" reference under the same protocol.
* **Storage**: any Optuna storage: an SQLite file (default ``<out>/study.db``), a database URL, or
  a journal file (``journal:PATH``). Workers started with the same command share the study;
  ``n_trials`` counts finished (complete or pruned) trials of the whole study.
* **Crashes**: a worker records host, pid and a heartbeat on its running trial. A trial left
  RUNNING by a dead worker (same host: its process is gone; any host: no heartbeat for
  ``stale_after`` seconds) is marked FAIL and its parameters are enqueued again, so a killed study
  resumes without losing or repeating a finished trial.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from recbole_llm.errors import ConfigError, RecBoleLLMError

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
MAX_CONSECUTIVE_FAILURES = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class TuneOptions:
    model: str
    dataset: str
    n_trials: int | None = 20
    budget_hours: float | None = None
    space_file: str | None = None
    storage: str | None = None
    study_name: str | None = None
    out: str | None = None
    config_files: list | None = None
    overrides: dict = field(default_factory=dict)
    seed: int = 2020
    pruner: str = "median"
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 3
    default_trial: bool = True
    keep_checkpoints: bool = False
    stale_after: float = STALE_AFTER_S
    plot: bool = True


class _TrialSeededTPE(optuna.samplers.BaseSampler):
    """TPE seeded by ``seed`` and the trial's number: a study is reproducible with one worker, a resumed
    study does not replay its first draws, and workers sharing a study (same history, same moment)
    still draw different parameters, since no two trials share a number."""

    def __init__(self, seed):
        self.seed, self._number, self._tpe = int(seed), None, None

    def _for(self, trial):
        if trial.number != self._number:
            self._number = trial.number
            self._tpe = optuna.samplers.TPESampler(seed=(self.seed * 100003 + trial.number) % (2**32))
        return self._tpe

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._for(trial).after_trial(study, trial, state, values)


class _Surplus(Exception):
    """Another worker already started the study's last trial."""


class _Reporter:
    """``callback_fn`` for a trainer's ``fit``: report every validation to the trial; prune."""

    def __init__(self, trial):
        self.trial, self.step = trial, 0

    def __call__(self, epoch, valid_score):
        score = float(valid_score)
        self.trial.report(score, self.step)
        self.step += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at validation {self.step} (epoch {epoch + 1}): {score:.4f}")


# ----------------------------------------------------------------------------------------------
# storage
# ----------------------------------------------------------------------------------------------
def open_storage(storage, out: Path):
    """``(storage, lock file)`` from ``--storage``: None -> ``<out>/study.db``; ``journal:PATH`` or a
    ``.journal``/``.log`` path -> a journal file; a ``.db``/``.sqlite`` path -> SQLite; any other
    ``scheme://`` -> that database (SQLAlchemy URL). The lock file (beside a local storage) lets
    workers on one machine create the study and enqueue its first trial once."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(out / 'study.db').resolve()}"
    text = str(storage)
    journal = None
    if text.startswith("journal:"):
        journal = text[len("journal:"):]
    elif "://" not in text and text.endswith((".journal", ".log")):
        journal = text
    elif "://" not in text and text.endswith((".db", ".sqlite", ".sqlite3")):
        text = f"sqlite:///{Path(text).resolve()}"
    elif "://" not in text:
        raise ConfigError(f"--storage {storage!r}: give a database URL (sqlite:///study.db, "
                          "postgresql://user@host/db), an SQLite file ending .db, or a journal file "
                          "(journal:PATH or a path ending .journal).")
    if journal is not None:
        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return JournalStorage(JournalFileBackend(str(journal))), Path(f"{journal}.lock")
    lock = out / ".study.lock"
    if text.startswith("sqlite:///"):
        lock = Path(f"{text[len('sqlite:///'):]}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
    # SQLite: wait for a busy database instead of failing at once (several local workers)
    kwargs = {"connect_args": {"timeout": 60}} if text.startswith("sqlite") else {}
    for attempt in range(3):
        try:
            with _FileLock(lock):  # local workers create the schema one at a time
                return RDBStorage(text, engine_kwargs=kwargs), lock
        except Exception as exc:  # a wrong URL, a missing driver, an unreachable server
            error = exc
            time.sleep(1.0 + attempt)  # or another process (elsewhere) was creating the schema: retry
    raise ConfigError(f"--storage {storage!r} cannot be opened: {type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}.") from None


class _FileLock:
    """An exclusive ``flock`` on ``path`` (workers on one machine creating the study together)."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ----------------------------------------------------------------------------------------------
# workers, heartbeat, recovery
# ----------------------------------------------------------------------------------------------
def _process_start(pid):
    """Start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _this_worker():
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _alive(worker) -> bool:
    pid = worker.get("pid")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    start = worker.get("start")
    return start is None or _process_start(pid) in (None, start)


class _Heartbeat:
    """Writes ``heartbeat`` (epoch seconds) into the running trial's user attributes."""

    def __init__(self, storage, trial_id, interval=HEARTBEAT_S):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # the trial finished meanwhile, or the database is briefly busy
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def recover_stale_trials(study, stale_after=STALE_AFTER_S, log=print) -> list:
    """Fail trials left RUNNING by dead workers and enqueue their parameters again; return the
    numbers of the trials failed. Dead: on this host, its process is gone; on any host, no
    heartbeat for ``stale_after`` seconds."""
    host, now, failed = socket.gethostname(), time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        beat = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else now)
        dead = (worker.get("host") == host and not _alive(worker)) or now - float(beat) > stale_after
        if not dead:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "killed", True)
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, **_carried_attrs(t)})
        failed.append(t.number)
        log(f"trial {t.number} was left running by a dead worker ({worker.get('host')} pid {worker.get('pid')}): "
            "marked failed, its parameters queued again")
    return failed


def _carried_attrs(trial):
    return {k: trial.user_attrs[k] for k in ("default",) if k in trial.user_attrs}


# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------
class Tuner:
    def __init__(self, opts: TuneOptions, log=print):
        self.opts, self.log = opts, log
        self.out = Path(opts.out or Path("tune") / f"{opts.model}-{opts.dataset}")
        self._prepare()

    # --- set-up -----------------------------------------------------------------------------
    def _prepare(self):
        from recbole_llm.config import Config
        from recbole_llm.tune.space import check_against_config, find_space

        o = self.opts
        if o.n_trials is None and o.budget_hours is None:
            raise ConfigError("Give --trials N or --budget-hours H (or both: whichever ends first).")
        if o.n_trials is not None and o.n_trials < 0:
            raise ConfigError(f"--trials must be >= 0, got {o.n_trials}.")
        if o.budget_hours is not None and not o.budget_hours > 0:
            raise ConfigError(f"--budget-hours must be > 0, got {o.budget_hours}.")
        from recbole_llm.utils import get_model

        get_model(o.model)  # an unknown model is named as such, not as a model without a space
        self.space = find_space(o.model, o.space_file)
        config = Config(model=o.model, dataset=o.dataset, config_file_list=o.config_files,
                        config_dict={**self.space.fixed, **o.overrides})
        check_against_config(self.space, config, o.overrides)
        cfg = config.final_config_dict
        if not cfg.get("eval_step") or int(cfg["eval_step"]) <= 0:
            raise ConfigError(f"tuning needs validation, but eval_step is {cfg.get('eval_step')!r}; "
                              "remove --eval_step=0 (or set eval_step >= 1).")
        self.model = str(cfg["model"])
        self.metric = str(cfg["valid_metric"]).lower()
        self.bigger = bool(cfg["valid_metric_bigger"])
        # the settings this tuning adds to the model's defaults, as the Config resolved them
        self.overrides = {k: cfg[k] for k in o.overrides}
        self.defaults = {name: cfg.get(name) for name in self.space.params}
        self.study_name = o.study_name or f"{self.model}-{o.dataset}"
        self.storage, self.lock_path = open_storage(o.storage, self.out)
        self.storage_label = o.storage or str(self.out / "study.db")

    def _sampler(self):
        return _TrialSeededTPE(int(self.opts.seed))

    def _pruner(self):
        if self.opts.pruner == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.opts.pruner_startup_trials,
                                           n_warmup_steps=self.opts.pruner_warmup_steps)

    def _identity(self):
        return {"model": self.model, "dataset": self.opts.dataset, "space": self.space.describe(),
                "overrides": json.loads(json.dumps(self.overrides, default=str, sort_keys=True)),
                "config_files": [str(Path(f).resolve()) for f in self.opts.config_files or []],
                "valid_metric": self.metric}

    def open_study(self):
        direction = "maximize" if self.bigger else "minimize"
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress line reports each trial
        with _FileLock(self.lock_path):
            study = optuna.create_study(storage=self.storage, study_name=self.study_name, direction=direction,
                                        sampler=self._sampler(), pruner=self._pruner(),
                                        load_if_exists=True)
            identity = self._identity()
            stored = study.user_attrs.get("identity")
            if stored is None:
                study.set_user_attr("identity", identity)
                study.set_user_attr("seed", int(self.opts.seed))
                self._enqueue_default(study)
            elif stored != identity:
                changed = sorted(k for k in identity if identity[k] != stored.get(k))
                raise ConfigError(
                    f"study {self.study_name!r} in {self.storage_label} was created with another "
                    f"{', '.join(changed)}; resume it with the same settings, or start a new one with "
                    "--study-name=NAME (or another --storage/--out).")
            if study.direction.name.lower() != direction:
                raise ConfigError(f"study {self.study_name!r} {study.direction.name.lower()}s, but "
                                  f"{self.metric} wants {direction}; use another --study-name.")
        return study

    def _enqueue_default(self, study):
        if not self.opts.default_trial:
            return
        values, outside = {}, []
        for name, param in self.space.params.items():
            value = param.optuna_value(self.defaults[name])
            if value is None:
                outside.append(f"{name}={self.defaults[name]!r}")
            values[name] = value
        if outside:
            self.log(f"no default trial: the defaults {', '.join(outside)} lie outside the space")
            return
        study.enqueue_trial(values, user_attrs={"default": True})

    # --- one trial --------------------------------------------------------------------------
    def _objective(self, study):
        from recbole_llm.quick_start import run_experiment

        def objective(trial):
            self._last_number = trial.number
            target = self.opts.n_trials
            if target is not None:
                before = [t for t in study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,))
                          if t.number < trial.number]
                if len(before) >= target:
                    trial.set_user_attr("surplus", True)
                    raise _Surplus()
            trial.set_user_attr("worker", _this_worker())
            trial.set_user_attr("heartbeat", time.time())
            params = self.space.suggest(trial)
            run_dir = self.out / "trials" / f"{trial.number:04d}"
            settings = {"state": "warning", "show_progress": False}
            settings.update(self.space.fixed)
            settings.update(self.opts.overrides)
            settings.update(params)
            settings["checkpoint_dir"] = str(run_dir)
            reporter = _Reporter(trial)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                with _Heartbeat(study._storage, trial._trial_id):
                    result = run_experiment(self.model, self.opts.dataset, config_file_list=self.opts.config_files,
                                            config_dict=settings, saved=False, callback_fn=reporter, test=False)
            except (RecBoleLLMError, ValueError, RuntimeError) as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
                raise
            finally:
                trial.set_user_attr("wall_s", round(time.perf_counter() - wall0, 2))
                trial.set_user_attr("cpu_s", round(time.process_time() - cpu0, 2))
                trial.set_user_attr("validations", reporter.step)
                if not self.opts.keep_checkpoints:
                    shutil.rmtree(run_dir, ignore_errors=True)
            score = result["best_valid_score"]
            if result["best_valid_result"] is None or score is None or not math.isfinite(float(score)):
                raise ValueError(f"no validation result (best valid score {score!r})")
            stats = result["stats"]
            trial.set_user_attr("best_epoch", stats.get("best_epoch"))
            trial.set_user_attr("valid", {str(k): float(v) for k, v in result["best_valid_result"].items()})
            return float(score)

        return objective

    # --- the loop ---------------------------------------------------------------------------
    def _spent_hours(self, trials):
        return sum(float(t.user_attrs.get("wall_s") or 0.0) for t in trials) / 3600.0

    def run(self):
        o = self.opts
        study = self.open_study()
        objective = self._objective(study)
        failures = 0
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress line reports each trial
        while True:
            recover_stale_trials(study, o.stale_after, self.log)
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.state in FINISHED]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if o.n_trials is not None and len(done) + len(running) >= o.n_trials:
                break
            if o.budget_hours is not None and self._spent_hours(trials) >= o.budget_hours:
                self.log(f"budget of {o.budget_hours:g} h of trial time spent ({self._spent_hours(trials):.2f} h)")
                break
            self._last_number = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's "fixed parameter out of range", experimental APIs
                study.optimize(objective, n_trials=1, catch=(_Surplus, RecBoleLLMError, ValueError, RuntimeError),
                               gc_after_trial=True)
            last = None if self._last_number is None else study.get_trials(deepcopy=False)[self._last_number]
            if last is not None and last.user_attrs.get("surplus"):
                break
            if last is not None:
                self._progress(study, last)
                failures = failures + 1 if last.state == TrialState.FAIL else 0
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    self.write_outputs(study)
                    raise RecBoleLLMError(f"{failures} trials in a row failed; the last: "
                                          f"{last.user_attrs.get('error', 'see the log')}. Fix the space or settings "
                                          f"and rerun the same command (finished trials are kept).")
            self.write_outputs(study, plot=False)
        self.write_outputs(study)
        return study

    # --- reporting --------------------------------------------------------------------------
    def _best(self, study):
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done:
            return None
        return (max if self.bigger else min)(done, key=lambda t: t.value)

    def _progress(self, study, t):
        trials = study.get_trials(deepcopy=False)
        n_done = sum(1 for x in trials if x.state in FINISHED)
        of = f"/{self.opts.n_trials}" if self.opts.n_trials is not None else ""
        best = self._best(study)
        value = f"{t.value:.4f}" if t.value is not None else "-"
        what = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "FAILED"}.get(t.state, t.state.name)
        extra = f" ({t.user_attrs['error']})" if t.state == TrialState.FAIL and t.user_attrs.get("error") else ""
        params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        tag = " [defaults]" if t.user_attrs.get("default") else ""
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "best -"
        self.log(f"[tune {self.model} {self.opts.dataset}] trial {t.number}{tag} {what}{extra}: {self.metric} {value}, "
                 f"{t.user_attrs.get('wall_s', 0):.0f} s, {t.user_attrs.get('validations', 0)} validations | "
                 f"{n_done}{of} finished, {best_text} | {params}")

    def best_config(self, study):
        best = self._best(study)
        if best is None:
            return None, None
        cfg = dict(self.space.fixed)
        cfg.update(self.overrides)
        cfg.update({name: p.decode(best.params[name]) for name, p in self.space.params.items()})
        return best, cfg

    def summary(self, study) -> dict:
        """What the study found and what it cost (for tables that show tuning budgets): best trial,
        its value and configuration, the defaults' value, trial counts, trial wall and CPU seconds."""
        trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
        best, cfg = self.best_config(study)
        default = next((t for t in trials if t.user_attrs.get("default") and t.state == TrialState.COMPLETE), None)
        count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
        return {
            "model": self.model, "dataset": self.opts.dataset, "study": self.study_name,
            "storage": self.storage_label, "out": str(self.out), "valid_metric": self.metric,
            "best_trial": best.number if best else None, "best_value": best.value if best else None,
            "best_config": json.loads(json.dumps(cfg, default=str)) if cfg is not None else None,
            "default_value": default.value if default else None,
            "trials_complete": count(TrialState.COMPLETE), "trials_pruned": count(TrialState.PRUNED),
            "trials_failed": count(TrialState.FAIL), "trials_running": count(TrialState.RUNNING),
            "trial_wall_s": round(sum(float(t.user_attrs.get("wall_s") or 0) for t in trials), 1),
            "trial_cpu_s": round(sum(float(t.user_attrs.get("cpu_s") or 0) for t in trials), 1),
        }

    def write_outputs(self, study, plot=True):
        import yaml

        self.out.mkdir(parents=True, exist_ok=True)
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        _write_atomic(self.out / "trials.csv", _trials_csv(trials, self.space))
        _write_atomic(self.out / "summary.json", json.dumps(self.summary(study), indent=1) + "\n")
        best, cfg = self.best_config(study)
        if best is not None:
            finished = [t for t in trials if t.state in FINISHED]
            default = next((t for t in trials if t.user_attrs.get("default") and t.state == TrialState.COMPLETE), None)
            header = [
                f"recbole-llm tune: best of study {self.study_name!r} ({self.storage_label}), trial {best.number}:",
                f"valid {self.metric} {best.value:.4f} over {len(finished)} finished trials "
                f"({sum(t.state == TrialState.PRUNED for t in finished)} pruned), "
                f"{self._spent_hours(trials):.2f} h of trial time"
                + (f"; the defaults (trial {default.number}): {default.value:.4f}" if default else "") + ".",
                f"Use: recbole-llm --model={self.model} --dataset={self.opts.dataset} --config_files={self.out / 'best.yaml'}",
            ]
            text = "".join(f"# {line}\n" for line in header)
            text += yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False, default_flow_style=False)
            _write_atomic(self.out / "best.yaml", text)
        if plot and any(t.state == TrialState.COMPLETE for t in trials):
            self._plot(study)

    def _plot(self, study):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization.matplotlib import plot_optimization_history

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = plot_optimization_history(study, target_name=f"valid {self.metric}")
        ax.set_title(f"{self.model} on {self.opts.dataset}: optimisation history")
        fig = ax.figure
        fig.set_size_inches(7, 4)
        fig.tight_layout()
        tmp = self.out / "history.png.tmp"
        fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        os.replace(tmp, self.out / "history.png")


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _trials_csv(trials, space):
    import io

    names = list(space.params)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["number", "state", "value", *names, "default", "retry_of", "best_epoch", "validations",
                "wall_s", "cpu_s", "datetime_start", "error"])
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        w.writerow([t.number, t.state.name, "" if t.value is None else repr(t.value),
                    *[t.params.get(n, "") for n in names], bool(t.user_attrs.get("default")),
                    t.user_attrs.get("retry_of", ""), t.user_attrs.get("best_epoch", ""),
                    t.user_attrs.get("validations", ""), t.user_attrs.get("wall_s", ""), t.user_attrs.get("cpu_s", ""),
                    t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else "",
                    t.user_attrs.get("error", "")])
    return buf.getvalue()


def _write_atomic(path, text):
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def tune(opts: TuneOptions, log=print) -> dict:
    """Run (or resume, or join) the study described by ``opts``; return :meth:`Tuner.summary`
    (also written to ``<out>/summary.json`` beside best.yaml, trials.csv and history.png)."""
    tuner = Tuner(opts, log=log)
    return tuner.summary(tuner.run())
