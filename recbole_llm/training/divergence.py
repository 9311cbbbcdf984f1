"""Stopping a run that diverged: a NaN or infinite training loss, or weights that are no longer
finite, end the run with :class:`~recbole_llm.errors.TrainingDivergedError` (one line, exit 2 from
the CLI) instead of RecBole's bare ``ValueError`` or, worse, metrics of a model of NaNs.

:class:`FiniteTraining` is a trainer mixin on RecBole's ``_check_nan`` / ``_valid_epoch`` hooks
(StagedTrainer's ``clip_and_step`` calls the same ``_check_nan``); ``run_experiment`` puts it in
front of every model's trainer (:func:`recbole_llm.training.epoch_record.with_run_hooks`) and
the nested pretraining's trainer has it as a base."""


def _non_finite(model):
    import torch

    for name, tensor in list(model.named_parameters()):
        if tensor.layout == torch.strided and tensor.is_floating_point() and not bool(torch.isfinite(tensor.detach()).all()):
            return name
    return None


def check_finite_weights(model, config, when):
    """:class:`TrainingDivergedError` if a weight of ``model`` is NaN or infinite (evaluating such
    a model prints metrics of noise)."""
    from recbole_llm.errors import TrainingDivergedError

    name = _non_finite(model)
    if name is not None:
        raise TrainingDivergedError(
            f"{config['model']} diverged: its weight {name} holds NaN or infinite values {when} "
            f"(learning_rate={config['learning_rate']}); no metrics are reported for it. Lower the learning rate.")


class FiniteTraining:
    """Trainer mixin: a loss that turns NaN/inf (RecBole's trainer only checks NaN, with a bare
    ``ValueError``) and weights that are no longer finite before a validation stop the run."""

    def _check_nan(self, loss):
        import torch

        from recbole_llm.errors import TrainingDivergedError

        loss = torch.as_tensor(loss).detach()
        if not bool(torch.isfinite(loss).all()):
            raise TrainingDivergedError(
                f"{self.config['model']} diverged: the training loss became {float(loss.sum())} "
                f"(learning_rate={self.config['learning_rate']}); the run stops without metrics. "
                "Lower the learning rate.")

    def _valid_epoch(self, *args, **kwargs):
        check_finite_weights(self.model, self.config, "before validation")
        return super()._valid_epoch(*args, **kwargs)
