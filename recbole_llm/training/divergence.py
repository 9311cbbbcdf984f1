"""Stopping a run that diverged: a NaN or infinite training loss, or weights that are no longer
finite, end the run with :class:`~recbole_llm.errors.TrainingDivergedError` (one line, exit 2 from
the CLI) instead of RecBole's bare ``ValueError`` or, worse, metrics of a model of NaNs.

``guard_finite_training(trainer)`` installs the checks on any RecBole trainer (StagedTrainer
included: its ``clip_and_step`` calls the same ``_check_nan``); ``run_experiment`` and the nested
pretraining use it."""


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


def guard_finite_training(trainer):
    """Stop a run whose loss turns NaN/inf (RecBole's trainer only checks NaN, with a bare
    ``ValueError``) and one whose weights are no longer finite before a validation."""
    import torch

    from recbole_llm.errors import TrainingDivergedError

    config = trainer.config

    def check_loss(loss):
        if not bool(torch.isfinite(torch.as_tensor(loss).detach()).all()):
            raise TrainingDivergedError(
                f"{config['model']} diverged: the training loss became {float(torch.as_tensor(loss).detach().sum())} "
                f"(learning_rate={config['learning_rate']}); the run stops without metrics. Lower the learning rate.")

    trainer._check_nan = check_loss
    valid_epoch = trainer._valid_epoch

    def checked_valid_epoch(*args, **kwargs):
        check_finite_weights(trainer.model, config, "before validation")
        return valid_epoch(*args, **kwargs)

    trainer._valid_epoch = checked_valid_epoch
