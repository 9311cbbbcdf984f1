"""Run statistics through a trainer hook: each training epoch's seconds and each validation's score.

``run_experiment`` reports them (``stats["epoch_times"]``, ``stats["best_epoch"]``) for every model,
plugin or RecBole's own, so the hook is a mixin put in front of whatever trainer class the model
uses (:func:`with_run_hooks`, which also puts the divergence guard
:class:`~recbole_llm.training.divergence.FiniteTraining` there). It sits on RecBole's
``_train_epoch`` / ``_valid_epoch``: epochs that bypass them are not recorded (a StagedTrainer sends
only its validated stage through them; its other stages report through ``stage_times``).
"""

from __future__ import annotations

import functools
import time

from recbole_llm.training.divergence import FiniteTraining


class EpochRecord:
    """What the hook saw: ``epoch_times`` (seconds) and ``valid_scores`` (epoch index, score)."""

    def __init__(self):
        self.epoch_times = []
        self.valid_scores = []
        self._last_epoch = -1

    def trained(self, epoch_idx, seconds):
        self.epoch_times.append(seconds)
        self._last_epoch = epoch_idx

    def validated(self, score):
        self.valid_scores.append((self._last_epoch, score))

    def best_epoch(self, best_score):
        """Last epoch whose validation score equals the best one (RecBole's early stopping
        keeps the later of equal scores)."""
        epochs = [epoch for epoch, score in self.valid_scores if score == best_score]
        if epochs:
            return epochs[-1]
        return self._last_epoch if self.epoch_times else None


class RecordedEpochs:
    """Trainer mixin: reports to ``self.epoch_record`` (an :class:`EpochRecord`, when set) and returns
    what the trainer's own methods return."""

    epoch_record = None

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        finally:
            if self.epoch_record is not None:
                self.epoch_record.trained(epoch_idx, time.perf_counter() - start)

    def _valid_epoch(self, *args, **kwargs):
        score, result = super()._valid_epoch(*args, **kwargs)
        if self.epoch_record is not None:
            self.epoch_record.validated(score)
        return score, result


@functools.lru_cache(maxsize=None)
def with_run_hooks(trainer_class):
    """``trainer_class`` with :class:`RecordedEpochs` and :class:`FiniteTraining` in front (same name,
    module and docstring): what ``run_experiment`` trains with, so no trainer method is patched."""
    if issubclass(trainer_class, RecordedEpochs) and issubclass(trainer_class, FiniteTraining):
        return trainer_class
    return type(trainer_class.__name__, (RecordedEpochs, FiniteTraining, trainer_class),
                {"__module__": trainer_class.__module__, "__qualname__": trainer_class.__qualname__,
                 "__doc__": trainer_class.__doc__})
