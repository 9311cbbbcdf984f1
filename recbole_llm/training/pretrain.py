"""Pretraining a RecBole model on the training split as one stage of another model, cached by a
fingerprint of the training interactions.

GLTA's stage 1 (LightGCN) uses it through :func:`recbole_llm.training.lightgcn.pretrain_lightgcn`;
HeLLM's SASRec item tokens and the LLM baselines' graph encoders use it the same way. The model is
trained by RecBole's own ``Trainer`` (early stopping on the validation split, best epoch reloaded)
with one progress line per epoch. A cache file or a reused checkpoint is accepted only if it was
trained on exactly this run's training interactions; otherwise
:class:`~recbole_llm.errors.TrainingDataMismatchError` says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from logging import getLogger
from pathlib import Path

import torch
from recbole.trainer import Trainer

from recbole_llm.data.interactions import interaction_fingerprint
from recbole_llm.errors import ConfigError, TrainingDataMismatchError
from recbole_llm.paths import cache_dir
from recbole_llm.plain import plain
from recbole_llm.random_state import kept_random_state
from recbole_llm.training import distributed
from recbole_llm.training.checkpoint import load_checked, save_atomic
from recbole_llm.training.divergence import FiniteTraining
from recbole_llm.training.progress import EpochLog

#: Settings of the pretrained model that shape its cache key (besides the overrides given).
_KEY_SETTINGS = ("dataset", "seed", "train_batch_size", "train_neg_sample_args", "valid_metric", "metrics",
                 "topk", "eval_args", "learner", "weight_decay", "MAX_ITEM_LIST_LENGTH")


@dataclass
class Pretrained:
    """A pretrained RecBole model, where it came from, and its statistics."""

    model: torch.nn.Module
    source: str
    stats: dict = field(default_factory=dict)


class _LoggedTrainer(FiniteTraining, Trainer):
    """RecBole's Trainer, plus one progress line per epoch even with ``verbose=False`` and the
    divergence guard."""

    def __init__(self, config, model, label):
        super().__init__(config, model)
        # RecBole validates after every eval_step-th epoch (not forced after the last)
        self.epoch_log = EpochLog(label, config["epochs"], unit="interactions", upper_bound=True,
                                  validates=lambda e: self.eval_step > 0 and (e + 1) % self.eval_step == 0)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_log.epoch_done(epoch_idx, loss, time.perf_counter() - start, units=len(train_data.dataset))
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.epoch_log.validation_done(time.perf_counter() - start)
        return result


def derived_config(config, overrides: dict):
    """A shallow copy of a RecBole ``Config`` with ``overrides`` applied to its final settings."""
    sub = copy.copy(config)
    sub.final_config_dict = dict(config.final_config_dict)
    sub.final_config_dict.update(overrides)
    return sub


def checkpoint_training_fingerprint(checkpoint: dict, path) -> str:
    """Fingerprint of the training split a RecBole checkpoint was trained on.

    Taken from the checkpoint when it stores one; otherwise the split is rebuilt from the Config
    pickled in it (RecBole's splitting is deterministic for a given config and seed)."""
    if checkpoint.get("train_fingerprint"):
        return checkpoint["train_fingerprint"]
    ck_config = checkpoint.get("config")
    if ck_config is None:
        raise ConfigError(f"{path} holds no RecBole config, so the split it was trained on cannot be checked. "
                          "Use a checkpoint saved by RecBole or recbole-llm.")
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    try:
        with kept_random_state():  # rebuilding the split must not change this run's random streams
            init_seed(ck_config["seed"], ck_config["reproducibility"])
            train, _, _ = data_preparation(ck_config, create_dataset(ck_config))
    except Exception as exc:
        raise ConfigError(f"cannot rebuild the training split of checkpoint {path} to check it "
                          f"({type(exc).__name__}: {exc}). Is its dataset still at {ck_config['data_path']}?") from None
    return interaction_fingerprint(train.dataset)


def pretrain_recbole_model(config, train_data, valid_data, *, model: str, overrides: dict, work_dir,
                           label: str, checkpoint: str = "", use_cache: bool = True,
                           architecture_keys=("embedding_size",)) -> Pretrained:
    """Train (or reuse) RecBole's ``model`` on this run's training split.

    ``overrides`` are the model's settings on top of the run's config (``epochs``, ``learning_rate``,
    ...); ``checkpoint`` reuses a RecBole checkpoint of that model (its ``architecture_keys`` settings
    are taken from it), refused if it was trained on other interactions. Otherwise a cache under
    ``<cache_dir>/pretrain/`` keyed by the settings and the training/validation fingerprints is
    used when present and written after training."""
    from recbole_llm.utils import get_model  # plugin models (HeLLMPre) first, then RecBole

    logger = getLogger()
    model_class = get_model(model)
    sub = derived_config(config, {**overrides, "model": model, "checkpoint_dir": str(work_dir)})
    train_fp = interaction_fingerprint(train_data.dataset)
    valid_fp = interaction_fingerprint(valid_data.dataset) if valid_data is not None else ""
    if checkpoint:
        blob = load_checked(checkpoint, f"{label}: the {model} checkpoint",
                            "Pass a readable RecBole checkpoint or leave the setting empty to train one.",
                            trust=bool(config["trust_checkpoint"]))
        ck_model = blob.get("config")["model"] if isinstance(blob, dict) and blob.get("config") is not None else None
        if not isinstance(blob, dict) or "state_dict" not in blob or (ck_model is not None and ck_model != model):
            what = f"a {ck_model} checkpoint" if ck_model else "not a RecBole checkpoint (no state_dict)"
            raise ConfigError(f"{label}: checkpoint {checkpoint} is {what}; this setting takes a {model} checkpoint "
                              f"(a {model} run's .pth under checkpoint_dir). Leave it empty to train {model} here.")
        found = checkpoint_training_fingerprint(blob, checkpoint)
        if found != train_fp:
            raise TrainingDataMismatchError(
                f"{label}: checkpoint {checkpoint} was trained on other interactions than this run's training "
                f"split (different dataset, split, seed or filtering); its embeddings could contain this run's "
                "validation/test interactions. Train it anew (leave the checkpoint setting empty) or pass a "
                "checkpoint trained with the same dataset, eval_args and seed.")
        ck_config = blob.get("config")
        for key in architecture_keys:
            if ck_config is not None and ck_config[key] is not None:
                sub.final_config_dict[key] = ck_config[key]
        net = model_class(sub, train_data.dataset)
        net.load_state_dict(blob["state_dict"])
        return Pretrained(net, f"checkpoint {checkpoint}", {"reused": True})

    keep = {k: sub.final_config_dict.get(k) for k in _KEY_SETTINGS}
    keep.update(overrides)
    keep["model"] = model
    h = hashlib.sha1(json.dumps(plain(keep), sort_keys=True).encode())
    h.update(train_fp.encode())
    h.update(valid_fp.encode())
    cache_file = Path(cache_dir()) / "pretrain" / f"{model}-{config['dataset']}-{h.hexdigest()[:16]}.pth"
    remedy = f"Delete {cache_file} (or turn the cache off) to train {model} anew."
    if use_cache and cache_file.is_file():
        blob = load_checked(cache_file, f"{label}: cached {model}", remedy, kind="cache")
        if not isinstance(blob, dict) or blob.get("train_fingerprint") != train_fp:
            raise TrainingDataMismatchError(
                f"{label}: cache {cache_file} was trained on other interactions than this run's training split. {remedy}")
        net = model_class(sub, train_data.dataset)
        net.load_state_dict(blob["state_dict"])
        return Pretrained(net, f"cache {cache_file}", {"reused": True, "best_valid_score": blob.get("best_valid_score")})

    net = model_class(sub, train_data.dataset).to(sub["device"])
    trainer = _LoggedTrainer(sub, net, label=f"{label} ({model})")
    best, best_result = trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
    # under DDP only rank 0 saved the best epoch (its file name has rank 0's clock): every rank loads that file
    distributed.barrier()
    best_file = distributed.broadcast_object(trainer.saved_model_file)
    if valid_data is not None and Path(best_file).is_file():
        state = load_checked(best_file, f"{label}: best {model} epoch", remedy, trust=bool(config["trust_checkpoint"]))
        net.load_state_dict(state["state_dict"])
    if use_cache and distributed.rank() == 0:
        save_atomic({"state_dict": net.state_dict(), "train_fingerprint": train_fp, "valid_fingerprint": valid_fp,
                     "best_valid_score": best, "best_valid_result": dict(best_result or {}),
                     "settings": plain(keep)}, cache_file)
    logger.info(f"{label}: {model} best valid {best}: {best_result}")
    return Pretrained(net, f"trained ({cache_file})" if use_cache else "trained",
                      {"reused": False, "best_valid_score": best, "epochs": len(trainer.train_loss_dict)})


def load_frozen_tables(module, tables: dict, who: str, fix: str) -> None:
    """Copy pretrained tables (``{buffer name: tensor}``, ``None`` values skipped; e.g. LightGCN's
    user and item embeddings) into ``module``'s frozen buffers. Every shape is checked before any
    buffer changes; a mismatch is a :class:`ConfigError` saying ``who`` produced what and ``fix``."""
    tables = {name: value for name, value in tables.items() if value is not None}
    for name, value in tables.items():
        buf = getattr(module, name)
        if tuple(value.shape) != tuple(buf.shape):
            raise ConfigError(f"{type(module).__name__} {name} has shape {tuple(buf.shape)}, {who} produced "
                              f"{tuple(value.shape)}: {fix}")
    with torch.no_grad():
        for name, value in tables.items():
            buf = getattr(module, name)
            buf.copy_(value.to(buf))
