"""``StagedTrainer``: a RecBole trainer that runs a model's named stages in order.

A model with several training stages (GLTA: graph -> item_text -> generate -> user_item;
GraphAttentiveGPT2: three; HeLLM: two) subclasses :class:`StagedTrainer` and returns its
:class:`Stage` list from ``stages()``; everything else is shared:

* **Stages**: a one-shot stage runs ``run(trainer)`` once; an epoch stage runs ``train_epoch``
  ``epochs`` times with its own optimiser (RecBole's ``learner``) over ``parameters()`` at its own
  ``learning_rate``/``weight_decay``. ``validate=True`` adds RecBole's validation every
  ``eval_step`` epochs, early stopping after ``stopping_step`` and the best-model checkpoint
  (``saved_model_file``) that ``evaluate`` reloads.
* **Resume**: the run folder ``<checkpoint_dir>/<Model>-<dataset>-<data key>/`` (the data key
  hashes the model, dataset and training/validation interactions) holds ``state.json`` (completed
  stages, current stage, next epoch, the run key and the settings it hashes, the best model's file
  name) and ``latest.pth`` (trainable state, other parameters, optimiser, best validation so far),
  both written atomically after every epoch and stage, and the best-model file; paths inside are
  relative, so a copied run folder works on its own copy. Rerunning the same command after a kill
  (between or inside epochs) continues at that stage and epoch; an epoch cut short is run again
  from its start, with the same random stream (stages seed their epochs from the run seed and the
  epoch index). The run key hashes every resolved setting that changes results (a model's own
  settings by their schema's ``changes_results`` flag, general ones unless listed in
  :data:`GENERAL_KEYS_NOT_CHANGING_RESULTS`: paths, logging, device), plus the interactions:
  rerunning with any other setting that changes results is refused with the keys named, never half
  applied. ``stage_resume: False`` starts over; a finished run starts over when launched again (its
  caches make that cheaper).
* **Distributed** (RecBole's DDP, ``--nproc``): every rank builds the same chunk list from the
  same seed; :meth:`run_batches` gives each rank its round-robin share (padded so that all ranks
  take the same number of steps), gradients are averaged across ranks before clipping and the
  step, so the ranks' weights stay identical; state and checkpoints are written by rank 0 only;
  a model that declares ``scores_shards`` is asked, in each full-ranking evaluation call, for the
  scores of the users its shard holds (``full_sort_predict(interaction, users=...)``).
* **Logging and statistics**: one line per epoch of every stage (loss, speed, ETA), progress
  lines inside long epochs (:class:`~recbole_llm.training.progress.StepProgress`), and per stage
  ``stage_times`` / ``stage_stats`` (seconds, peak RSS, the stage's own counters), which
  ``run_experiment`` reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from recbole.trainer import Trainer
from recbole.utils import dict2str, early_stopping, set_color
import torch
from torch.nn.utils.clip_grad import clip_grad_norm_

from recbole_llm.data.interactions import interaction_fingerprint
from recbole_llm.data.views import build_views
from recbole_llm.errors import CorruptFileError, ResumeSettingsError
from recbole_llm.memory import peak_rss_mb, reset_peak_rss
from recbole_llm.training import distributed as collective
from recbole_llm.training.checkpoint import load_checked, read_json_checked, save_atomic, write_json_atomic
from recbole_llm.training.progress import EpochLog, StepProgress
from recbole_llm.training.schedule import set_learning_rate, warmup_cosine

#: RecBole's and recbole-llm's general settings (those outside every model's schema) that do not change
#: what a run computes, so the run key leaves them out: where files go and how much is logged, the
#: trust flag, the resume switch, device placement (where a run computes is not a setting of its
#: method) and DDP rendezvous details (which rank, address, port; ``nproc``/``world_size`` stay in:
#: training shards the batches and pads the last round, so tests/test_ddp.py finds metrics close, not
#: equal). Every other general setting is in. A model's own settings are in or out by their schema's
#: ``changes_results`` flag (:func:`keys_not_changing_results`), not by this table.
#: Epoch counts are in: a stage's learning-rate schedule spans all its epochs (``warmup_cosine`` over
#: ``epochs * steps``) and it validates at its last epoch, so a run resumed with more epochs would not
#: be the run those epochs describe.
GENERAL_KEYS_NOT_CHANGING_RESULTS = frozenset({
    # paths and folders (the dataset's content is keyed by its fingerprints, not its folder)
    "checkpoint_dir", "data_path", "dataset_save_path", "dataloaders_save_path", "save_dataset",
    "save_dataloaders", "run_id", "benchmark_results_dir",
    # logging and verbosity
    "state", "show_progress", "log_wandb", "wandb_project", "stage_log_interval", "log_root", "tensorboard",
    # resume and trust switches
    "stage_resume", "trust_checkpoint",
    # device placement and DDP rendezvous
    "device", "gpu_id", "use_gpu", "local_rank", "ip", "port", "offset",
})


def model_settings_schemas(model_name) -> list:
    """The :class:`~recbole_llm.settings.Settings` schemas registered for ``model_name`` (hook
    ``register_settings``); empty for RecBole's own models."""
    from recbole_llm.plugins import get_registry

    return list(get_registry().settings.get(str(model_name), []))


def keys_not_changing_results(model_name) -> frozenset:
    """The settings a run key of ``model_name`` leaves out: its schemas' keys flagged
    ``changes_results=False`` and :data:`GENERAL_KEYS_NOT_CHANGING_RESULTS`."""
    own = {key for schema in model_settings_schemas(model_name)
           for key, spec in schema.keys.items() if not spec.changes_results}
    return GENERAL_KEYS_NOT_CHANGING_RESULTS | own


def run_settings(config) -> dict:
    """``config``'s resolved settings as plain values, less :func:`keys_not_changing_results`: what
    defines a staged run (its run key is their hash plus the training/validation interactions')."""
    from recbole_llm.plain import plain

    final = config.final_config_dict
    left_out = keys_not_changing_results(final.get("model"))
    return {key: plain(final[key]) for key in sorted(final) if key not in left_out}


def run_key_of(settings: dict, fingerprints=()) -> str:
    """The run key: hash of :func:`run_settings`'s dict and the interactions' fingerprints."""
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for fingerprint in fingerprints:
        h.update(fingerprint.encode())
    return h.hexdigest()[:12]


def settings_differences(stored: dict, current: dict) -> list:
    """The keys whose values differ between two :func:`run_settings` dicts (sorted)."""
    return sorted(k for k in set(stored) | set(current) if stored.get(k, "<unset>") != current.get(k, "<unset>"))


@dataclass
class Stage:
    """One named stage of a :class:`StagedTrainer`.

    One-shot: give ``run(trainer) -> stats dict``. Epoch loop: give ``epochs``,
    ``train_epoch(trainer, epoch, optimizer) -> loss`` and ``parameters() -> list`` (what the
    stage's optimiser trains: tensors, or torch parameter-group dicts such as ``[{"params": ids,
    "lr": 1e-3}, {"params": backbone, "lr": 1e-4}]`` for parts with their own learning rate;
    ``learning_rate`` is then the default of groups without one); ``begin``/``end`` (``trainer ->
    stats dict``) run before the first and after the last epoch, also when resuming."""

    name: str
    run: Optional[Callable] = None
    epochs: int = 0
    train_epoch: Optional[Callable] = None
    parameters: Optional[Callable] = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    validate: bool = False
    begin: Optional[Callable] = None
    end: Optional[Callable] = None
    unit: str = "users"
    units_per_epoch: int = 0
    validate_initial: bool = False  # also validate the state before the first epoch (it may be the best)

    def __post_init__(self):
        if (self.run is None) == (self.train_epoch is None):
            raise ValueError(f"stage {self.name!r}: give either run (one-shot) or train_epoch (epochs)")
        if self.train_epoch is not None and self.parameters is None:
            raise ValueError(f"stage {self.name!r}: an epoch stage needs parameters()")


class StagedTrainer(Trainer):
    """Runs ``self.stages()`` in order (see the module docstring)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.logger = getLogger()
        self.model_name = str(config["model"])
        self.seed = int(config["seed"] or 0)
        self.resume = bool(config["stage_resume"]) if config["stage_resume"] is not None else True
        interval = config["stage_log_interval"]
        self.log_interval = float(interval) if interval is not None else 0.1
        self.stage_times: dict[str, float] = {}
        self.stage_stats: dict[str, dict] = {}
        self.run_dir: Path | None = None
        self._state: dict | None = None
        self._stage_start = 0.0
        self._stage_peak_reset = False
        self._grad_scaler = None
        self._eval_users = None  # this rank's users in the evaluation under way (DDP, scores_shards)
        self.views: dict | None = None  # the data views of data_views(), handed over before fit

    # ------------------------------------------------------------------------------------------
    # what a subclass provides
    # ------------------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def data_views(self) -> dict:
        """``{name: ViewSpec}``: other models' views of the run's data that the stages read from
        ``self.views`` (:mod:`recbole_llm.data.views`); built once before ``fit``."""
        return {}

    def trainer_state(self) -> dict:
        """Extra state of the subclass kept in ``latest.pth`` (e.g. optimisers outside the stages)."""
        return {}

    def load_trainer_state(self, state: dict) -> None:
        """Restore what :meth:`trainer_state` returned."""

    def run_settings(self) -> dict:
        """The settings that define a run: the resolved settings that change results, as plain values
        (:func:`run_settings`; hashed into the run key and stored in the run's state)."""
        return run_settings(self.config)

    # ------------------------------------------------------------------------------------------
    # run folder, state and latest checkpoint
    # ------------------------------------------------------------------------------------------
    def _data_fingerprints(self, train_data, valid_data):
        prints = [interaction_fingerprint(train_data.dataset)]
        if valid_data is not None:
            prints.append(interaction_fingerprint(valid_data.dataset))
        return prints

    def run_key(self, train_data, valid_data=None) -> str:
        """Hash of :meth:`run_settings` and the training/validation interactions."""
        return run_key_of(self.run_settings(), self._data_fingerprints(train_data, valid_data))

    def run_folder_key(self, train_data, valid_data=None) -> str:
        """Names the run folder: model, dataset and its training/validation interactions, not the
        other settings, so that rerunning a command with a changed setting finds the unfinished run
        and refuses to mix the two (``_open_run``) instead of silently starting another one."""
        h = hashlib.sha1(json.dumps([self.model_name, str(self.config["dataset"])]).encode())
        for fingerprint in self._data_fingerprints(train_data, valid_data):
            h.update(fingerprint.encode())
        return h.hexdigest()[:12]

    def _restart_hint(self):
        return (f"Delete the folder {self.run_dir} (or pass --stage_resume=False) to start this run anew; "
                "cached pretraining and generated texts are kept elsewhere and are reused.")

    def _write_state(self, **changes):
        self._state.update(changes)
        if self.rank == 0:
            write_json_atomic(self._state, self.run_dir / "state.json")

    def _save_latest(self, stage, next_epoch, optimizer=None):
        if self.rank != 0:
            return
        m = self.model
        save_atomic({
            "model": self.model_name,
            "stage": stage,
            "next_epoch": next_epoch,
            "state_dict": m.state_dict(),
            "other_parameter": m.other_parameter(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result,
            "cur_step": self.cur_step,
            "train_loss_dict": self.train_loss_dict,
            "stage_times": self.stage_times,
            "stage_stats": self.stage_stats,
            "trainer_state": self.trainer_state(),
            "grad_scaler": self._grad_scaler.state_dict() if self._grad_scaler is not None else None,
        }, self.run_dir / "latest.pth")

    def _load_latest(self):
        path = self.run_dir / "latest.pth"
        if not path.is_file():
            return None
        what = f"{self.model_name}'s resume checkpoint"
        blob = load_checked(path, what, self._restart_hint(), kind="cache")  # we wrote it: tensors and plain data
        if not isinstance(blob, dict) or "stage" not in blob or blob.get("model", self.model_name) != self.model_name:
            found = (f"a {type(blob).__name__}" if not isinstance(blob, dict) else
                     "not a staged trainer's checkpoint" if "stage" not in blob else f"a {blob.get('model')} checkpoint")
            raise CorruptFileError(f"{what} {path} is {found}, not {self.model_name}'s resume state. "
                                   f"{self._restart_hint()}")
        try:
            self.model.load_state_dict(blob["state_dict"])
            self.model.load_other_parameter(blob["other_parameter"])
            self.best_valid_score = blob["best_valid_score"]
            self.best_valid_result = blob["best_valid_result"]
            self.cur_step = blob["cur_step"]
            self.train_loss_dict.update(blob.get("train_loss_dict") or {})
            self.stage_times.update(blob.get("stage_times") or {})
            self.stage_stats.update(blob.get("stage_stats") or {})
            self.load_trainer_state(blob.get("trainer_state") or {})
            if blob.get("grad_scaler") and self.grad_scaler.is_enabled():
                self.grad_scaler.load_state_dict(blob["grad_scaler"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CorruptFileError(f"{what} {path} does not fit this {self.model_name} model ({reason}). "
                                   f"{self._restart_hint()}") from None
        return blob

    def _checked_state(self, state, state_file):
        """``state.json`` as this trainer wrote it: a mapping with these keys and types, and a
        ``saved_model_file`` inside the run folder (anything else is refused, never loaded)."""
        types = {"completed": list, "stage": (str, type(None)), "epoch": int, "finished": bool,
                 "saved_model_file": (str, type(None)), "run_key": str}
        problem = None
        if not isinstance(state, dict):
            problem = f"it holds a {type(state).__name__}, not a mapping"
        else:
            for key, kind in types.items():
                if key in state and not isinstance(state[key], kind):
                    problem = f"{key} is {state[key]!r}"
                    break
            saved = state.get("saved_model_file")
            if problem is None and saved:
                # stored relative to the run folder (a copied run folder keeps its own best model)
                root = self.run_dir.resolve()
                if Path(saved).is_absolute() or root not in (root / saved).resolve().parents:
                    problem = f"saved_model_file {saved} is outside the run folder {root}"
            if problem is None and not isinstance(state.get("settings", {}), dict):
                problem = f"settings is {state['settings']!r}"
        if problem:
            raise CorruptFileError(f"{self.model_name}'s run state {state_file} is not one this trainer wrote "
                                   f"({problem}). {self._restart_hint()}")
        return state

    def _open_run(self, train_data, valid_data):
        """Create or reopen the run folder; return the latest checkpoint to resume from, or None.

        An unfinished run is resumed only under the settings it started with (its ``state.json``
        keeps them): with any result-affecting setting changed, :class:`ResumeSettingsError` names
        the keys. A finished run, or one that saved nothing yet, starts over. The best model is
        kept inside the run folder and its path stored relative to it."""
        key = self.run_key(train_data, valid_data)
        settings = self.run_settings()
        folder = f"{self.model_name}-{self.config['dataset']}-{self.run_folder_key(train_data, valid_data)}"
        self.run_dir = Path(self.checkpoint_dir) / folder
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state_file = self.run_dir / "state.json"
        state = None
        if self.resume and state_file.is_file():
            state = self._checked_state(read_json_checked(state_file, f"{self.model_name}'s run state",
                                                          self._restart_hint()), state_file)
        self.barrier()  # every rank has read the state before rank 0 may replace it
        if state is not None and not state.get("finished"):
            started = bool(state.get("completed")) or (self.run_dir / "latest.pth").is_file()
            if state.get("run_key") != key and started:
                self._refuse_changed_settings(state, settings)
            if state.get("run_key") == key:
                blob = self._load_latest()
                if blob is not None or not state.get("completed"):
                    self._state = state
                    if state.get("saved_model_file"):
                        self.saved_model_file = str(self.run_dir / state["saved_model_file"])
                    self.logger.info(set_color(f"{self.model_name} resumes", "green") + f" run {self.run_dir}: "
                                     f"completed {state.get('completed')}, next: {state.get('stage')} "
                                     f"epoch {state.get('epoch', 0)}")
                    return blob
                # completed stages but no latest.pth: the run folder lost its checkpoint
                load_checked(self.run_dir / "latest.pth", f"{self.model_name}'s resume checkpoint", self._restart_hint())
        # starting over: a previous run's latest.pth must not be resumed into (or taken as progress of) this one
        if self.rank == 0:
            (self.run_dir / "latest.pth").unlink(missing_ok=True)
        # the best model goes into the run folder, named by this trainer's run id (unique per run)
        best = f"{self.model_name}-{Path(self.saved_model_file).parent.name}.pth"
        self.saved_model_file = str(self.run_dir / best)
        self._state = {"run_key": key, "settings": settings, "completed": [], "stage": None, "epoch": 0,
                       "finished": False, "saved_model_file": best}
        self._write_state()
        return None

    def _refuse_changed_settings(self, state, settings):
        stored = state.get("settings")
        if isinstance(stored, dict):
            keys = settings_differences(stored, settings)
            shown = ", ".join(f"{k} ({stored.get(k, '<unset>')!r} -> {settings.get(k, '<unset>')!r})"
                              for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        else:
            shown = "settings this version cannot compare (its state.json names none)"
        raise ResumeSettingsError(
            f"{self.model_name}'s unfinished run {self.run_dir} was started with other settings: {shown}. "
            f"Resuming would mix the two. Rerun with its settings to resume it, or start fresh: pass another "
            f"--checkpoint_dir, --stage_resume=False, or delete {self.run_dir}.")

    # ------------------------------------------------------------------------------------------
    # distributed training (RecBole's DDP)
    # ------------------------------------------------------------------------------------------
    @property
    def distributed(self) -> bool:
        return collective.active(self.config)

    @property
    def world_size(self) -> int:
        return collective.world_size() if self.distributed else 1

    @property
    def rank(self) -> int:
        return collective.rank() if self.distributed else 0

    def barrier(self):
        collective.barrier()

    def shard(self, items) -> list:
        """``[(index, item)]``: this rank's round-robin share of ``items`` (a list every rank built
        identically), padded by wrapping around so that every rank gets the same number (as
        ``DistributedSampler`` does); all of ``items`` in one process."""
        items = list(items)
        n, w = len(items), self.world_size
        if w == 1 or n == 0:
            return list(enumerate(items))
        total = -(-n // w) * w
        return [(i % n, items[i % n]) for i in range(self.rank, total, w)]

    all_gather_objects = staticmethod(collective.all_gather_objects)
    all_reduce_mean = staticmethod(collective.all_reduce_mean)

    def all_reduce_gradients(self, optimizer):
        """Average the gradients of ``optimizer``'s parameters over the ranks."""
        collective.all_reduce_gradients([p for group in optimizer.param_groups for p in group["params"]])

    def _scoring_users(self, eval_data):
        """The users RecBole's distributed sampler gives this rank in ``eval_data``, as a sorted tuple,
        for a model that scores shards (``scores_shards``); None: all users (one process)."""
        if not self.distributed or not getattr(self.model, "scores_shards", False):
            return None
        sampler, uid_list = getattr(eval_data, "sampler", None), getattr(eval_data, "uid_list", None)
        if sampler is None or uid_list is None:
            return None
        return tuple(sorted({int(uid_list[i]) for i in sampler}))

    def _valid_epoch(self, valid_data, show_progress=False):
        self._eval_users = self._scoring_users(valid_data)
        return super()._valid_epoch(valid_data, show_progress=show_progress)

    def _full_sort_batch_eval(self, batched_data):
        """RecBole's full-ranking batch, except that a model scoring shards is passed this rank's users."""
        if self._eval_users is None:
            return super()._full_sort_batch_eval(batched_data)
        interaction, history_index, positive_u, positive_i = batched_data
        scores = self.model.full_sort_predict(interaction.to(self.device), users=self._eval_users)
        scores = scores.view(-1, self.tot_item_num)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        return interaction, scores, positive_u, positive_i

    # ------------------------------------------------------------------------------------------
    # stage bookkeeping
    # ------------------------------------------------------------------------------------------
    def label(self, stage_name):
        return f"{self.model_name} {stage_name}"

    def progress(self, stage_name, total, unit="batches", epoch=None, **options):
        """A :class:`StepProgress` for a loop of ``total`` steps inside a stage (``options``: its
        ``total_work``, ``min_seconds``...)."""
        label = self.label(stage_name) + (f" epoch {epoch + 1}" if epoch is not None else "")
        return StepProgress(label, total, unit=unit, interval=self.log_interval, logger=self.logger,
                            rest=self._stage_rest(epoch), **options)

    def _stage_rest(self, epoch):
        """For an epoch's loop: ``rest(loop_seconds)``, the seconds its stage has after it (the epochs
        left, at this epoch's time, and the planned validation passes at their measured mean), None
        while a planned pass is still unmeasured; None outside an epoch loop."""
        log = getattr(self, "_epoch_log", None)
        if epoch is None or log is None:
            return None

        def rest(loop_seconds):
            pending = log.validations_left()
            mean_valid = log.mean_validation()
            if pending and mean_valid is None:
                return None
            return max(0, log.epochs - (epoch + 1)) * loop_seconds + pending * (mean_valid or 0.0)

        return rest

    def _begin(self, stage):
        self._stage_start = time.perf_counter()
        self._stage_peak_reset = reset_peak_rss()
        self.logger.info(set_color(self.label(stage.name), "green") + " starts")

    def _end(self, stage, stats):
        seconds = time.perf_counter() - self._stage_start
        self.stage_times[stage.name] = self.stage_times.get(stage.name, 0.0) + seconds
        entry = dict(self.stage_stats.get(stage.name, {}))
        entry.update(stats or {})
        entry["seconds"] = self.stage_times[stage.name]
        entry["peak_rss_mb"] = max(entry.get("peak_rss_mb", 0.0), peak_rss_mb())
        entry["peak_rss_is_stage_peak"] = bool(self._stage_peak_reset)
        self.stage_stats[stage.name] = entry
        self.logger.info(set_color(self.label(stage.name), "green") + f" done in {seconds:.1f} s: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))

    # ------------------------------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.eval_collector.data_collect(train_data)
        self.train_data, self.valid_data = train_data, valid_data
        if self.views is None:  # not handed over by run_experiment (a trainer used on its own)
            self.views = build_views(self.config, train_data, self.data_views())
        blob = self._open_run(train_data, valid_data)
        for stage in self.stages():
            if stage.name in self._state["completed"]:
                continue
            start_epoch = self._state.get("epoch", 0) if self._state.get("stage") == stage.name else 0
            opt_state = blob.get("optimizer") if blob and blob.get("stage") == stage.name else None
            self._write_state(stage=stage.name, epoch=start_epoch)
            self._begin(stage)
            stats = dict(stage.begin(self) or {}) if stage.begin else {}
            if stage.run is not None:
                stats.update(stage.run(self) or {})
            else:
                stats.update(self._run_epochs(stage, start_epoch, opt_state, valid_data, verbose, saved,
                                              show_progress, callback_fn))
            if stage.end:
                stats.update(stage.end(self) or {})
            self._end(stage, stats)
            self._save_latest(stage.name, None)
            self._write_state(completed=self._state["completed"] + [stage.name], stage=None, epoch=0)
        self._write_state(finished=True)
        return self.best_valid_score, self.best_valid_result

    def _run_epochs(self, stage, start_epoch, opt_state, valid_data, verbose, saved, show_progress, callback_fn):
        optimizer = self._build_optimizer(params=stage.parameters(), learning_rate=stage.learning_rate,
                                          weight_decay=stage.weight_decay)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        if stage.validate:
            self.optimizer = optimizer
        eval_step = min(int(self.config["eval_step"]), stage.epochs) if stage.epochs else 0
        validating = bool(stage.validate and valid_data and eval_step > 0)
        epoch_log = EpochLog(self.label(stage.name), stage.epochs, unit=stage.unit, upper_bound=validating,
                             logger=self.logger,
                             validates=lambda e: validating and ((e + 1) % eval_step == 0 or e + 1 == stage.epochs),
                             first_epoch=start_epoch)
        self._epoch_log = epoch_log
        if stage.validate and saved and start_epoch >= stage.epochs:
            self._save_checkpoint(-1, verbose=verbose)
        losses, train_seconds, valid_seconds, valid_scores = [], 0.0, 0.0, []
        if stage.validate and stage.validate_initial and start_epoch == 0 and valid_data and eval_step > 0:
            _, valid_score, seconds = self._validate(valid_data, -1, saved, verbose, show_progress, callback_fn)
            valid_seconds += seconds
            epoch_log.validation_done(seconds, planned=False)
            self.logger.info(f"{self.label(stage.name)} before epoch 1: valid {self.config['valid_metric']} "
                             f"{valid_score:.4f} ({seconds:.1f} s)")
        for epoch in range(start_epoch, stage.epochs):
            t0 = time.perf_counter()
            self.model.train()
            self._epoch_stage, self._epoch_optimizer = stage, optimizer
            # the validated stage goes through RecBole's _train_epoch hook, so tools that wrap it
            # (run_experiment's epoch timer) see its epochs as they see any RecBole model's
            loss = self._train_epoch(self.train_data, epoch) if stage.validate else stage.train_epoch(self, epoch, optimizer)
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            losses.append(float(loss))
            if stage.validate:
                self.train_loss_dict[epoch] = loss
            stop, extra = False, ""
            if not stage.validate:
                pass
            elif eval_step <= 0 or not valid_data:
                if saved:
                    self._save_checkpoint(epoch, verbose=verbose)
            elif (epoch + 1) % eval_step == 0 or epoch + 1 == stage.epochs:
                stop, valid_score, seconds_v = self._validate(valid_data, epoch, saved, verbose, show_progress, callback_fn)
                valid_seconds += seconds_v
                epoch_log.validation_done(seconds_v)
                valid_scores.append(float(valid_score))
                extra = f"valid {self.config['valid_metric']} {valid_score:.4f} ({seconds_v:.1f} s)"
            epoch_log.epoch_done(epoch, loss, seconds, units=stage.units_per_epoch or None, extra=extra)
            self._save_latest(stage.name, epoch + 1, optimizer)
            self._write_state(epoch=epoch + 1)
            if stop:
                if verbose:
                    self.logger.info(f"Finished training, best eval result in epoch {epoch - self.cur_step * eval_step}")
                break
        return {"epochs": stage.epochs, "losses": losses, "train_seconds": train_seconds,
                "valid_seconds": valid_seconds, "valid_scores": valid_scores}

    def _validate(self, valid_data, epoch, saved, verbose, show_progress, callback_fn):
        """RecBole's validation after ``epoch`` (-1: before the first): early stopping, best-model
        checkpoint, callback. Returns ``(stop, valid_score, seconds)``."""
        v0 = time.perf_counter()
        valid_score, valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
        self.best_valid_score, self.cur_step, stop, update = early_stopping(
            valid_score, self.best_valid_score, self.cur_step, max_step=self.stopping_step,
            bigger=self.valid_metric_bigger)
        if verbose:
            self.logger.info(set_color("valid result", "blue") + ": \n" + dict2str(valid_result))
        if update:
            if saved:
                self._save_checkpoint(epoch, verbose=verbose)
            self.best_valid_result = valid_result
        if callback_fn:
            callback_fn(epoch, valid_score)
        return stop, valid_score, time.perf_counter() - v0

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return self._epoch_stage.train_epoch(self, epoch_idx, self._epoch_optimizer)

    @property
    def grad_scaler(self):
        """Dynamic loss scaling (``torch.amp.GradScaler``) for half-precision backward.

        ``stage_loss_scaling: auto`` (default) turns it on when the model's LLM (``model.backbone``)
        computes in float16, whose 5-bit exponent lets small gradients underflow to zero on their
        way back through the frozen layers; bfloat16 has float32's range and needs none. ``True`` /
        ``False`` force it. The trainable parameters must be float32 (they are: only the frozen LLM
        is half precision)."""
        if self._grad_scaler is None:
            mode = self.config["stage_loss_scaling"]
            backbone = getattr(self.model, "backbone", None)
            half = getattr(backbone, "dtype", None) == torch.float16
            enabled = half if mode is None or str(mode).lower() == "auto" else bool(mode)
            device = getattr(backbone, "device", None) or torch.device("cpu")
            self._grad_scaler = torch.amp.GradScaler(torch.device(device).type, enabled=enabled)
        return self._grad_scaler

    def run_batches(self, stage_name, epoch, chunks, loss_of, optimizer, before_step=None):
        """One pass of an epoch stage over ``chunks``: ``loss_of(chunk)``, backward, clipping, step,
        progress lines; returns the mean loss. ``before_step(step)`` runs before each step (e.g. a
        learning-rate schedule) with the step's position in ``chunks``: under DDP the index of the
        first batch of the group the ranks step on together, the same on every rank (with each
        rank's own batch index the ranks would take different learning rates and drift apart)."""
        mine = self.shard(chunks)  # all of them in one process; this rank's share under DDP
        progress = self.progress(stage_name, len(mine), epoch=epoch)
        total = 0.0
        for k, (_, chunk) in enumerate(mine):
            if before_step is not None:
                before_step(min(k * self.world_size, len(chunks) - 1))
            optimizer.zero_grad()
            loss = loss_of(chunk)
            self.clip_and_step(loss, optimizer)
            value = float(loss.detach())
            total += value
            progress.step(loss=value)
        return self.all_reduce_mean(total / max(1, len(mine)))

    def sampled_stage(self, name, *, epochs, parameters, loss_of, learning_rate, weight_decay, batch_size,
                      samples_per_epoch=0, min_learning_rate=0.0, warmup_epochs=0.0, validate=False,
                      before_batch=None) -> Stage:
        """An epoch :class:`Stage` over RecBole's training samples (the rows of
        ``train_data.dataset.inter_feat``; for a sequential model every prefix of every training
        sequence): each epoch a random ``samples_per_epoch`` subset (0 = all) in batches of
        ``batch_size``, ``loss_of(interaction)`` per batch, per-step linear warmup over
        ``warmup_epochs`` then a half cosine to ``min_learning_rate``. The order and the dropout
        stream depend only on the run seed and the epoch (resume-safe). ``before_batch(step,
        total_steps)`` runs before each batch with the stage's global step (e.g. a curriculum)."""
        n = len(self.train_data.dataset)
        per_epoch = min(samples_per_epoch, n) if samples_per_epoch else n
        steps = -(-per_epoch // batch_size)
        inter = self.train_data.dataset.inter_feat

        def train_epoch(trainer, epoch, optimizer):
            order = np.random.default_rng(self.seed * 7919 + epoch).permutation(n)[:per_epoch]
            chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            total, warmup = epochs * steps, int(round(warmup_epochs * steps))
            torch.manual_seed(self.seed * 104729 + epoch)  # dropout stream per epoch (resume-safe)

            def before_step(step):
                set_learning_rate(optimizer, warmup_cosine(epoch * steps + step, total, warmup, learning_rate,
                                                           min_learning_rate))
                if before_batch is not None:
                    before_batch(epoch * steps + step, total)

            return self.run_batches(name, epoch, chunks, lambda chunk: loss_of(inter[torch.as_tensor(chunk)]),
                                    optimizer, before_step=before_step)

        return Stage(name, epochs=epochs, train_epoch=train_epoch, parameters=parameters, learning_rate=learning_rate,
                     weight_decay=weight_decay, validate=validate, unit="samples", units_per_epoch=per_epoch)

    def clip_and_step(self, loss, optimizer):
        """``backward``, RecBole's gradient clipping and NaN check, ``step`` (for ``train_epoch``);
        with :attr:`grad_scaler` enabled the loss is scaled, the gradients unscaled before clipping,
        and a step whose gradients overflowed is skipped (the scale then shrinks). Under DDP the
        (scaled) gradients are averaged over the ranks first, so every rank takes the same step."""
        self._check_nan(loss)
        scaler = self.grad_scaler  # disabled: scale/unscale_/update do nothing, step calls optimizer.step()
        scaler.scale(loss).backward()
        self.all_reduce_gradients(optimizer)
        scaler.unscale_(optimizer)
        if self.clip_grad_norm:
            clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and not (model_file or os.path.isfile(self.saved_model_file)):
            load_best_model = False  # nothing saved (e.g. saved=False or epochs=0): evaluate the current state
        self._eval_users = self._scoring_users(eval_data)
        return super().evaluate(eval_data, load_best_model=load_best_model, model_file=model_file,
                                show_progress=show_progress)
