"""Other RecBole models' views of a run's dataset and split, for pretraining them as a stage.

An LLM recommender that builds on a pretrained RecBole model (HeLLM: HeLLMPre and SASRec; CoLLM:
LightGCN; LLaRA: SASRec) needs that model's own data loaders (its batch size, its negative
sampling, a general pairwise view of a sequential dataset) on *exactly* the run's training split.
A trainer declares the views its stages read (``data_views()``: name -> :class:`ViewSpec`);
:func:`build_views` builds them once, after the run's ``data_preparation`` and before ``fit``
(``run_experiment`` hands them to the trainer), from the run's config (the user's settings minus
the run model's own). A ``general`` or ``sequential`` view is checked to hold the run's training
interactions and nothing else, so :func:`~recbole_llm.training.pretrain.pretrain_recbole_model`
never sees a validation or test interaction; UniSRec's pre-training views of *other* datasets have
no run split to compare with (``check=None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from recbole_llm.data.interactions import interaction_fingerprint
from recbole_llm.errors import TrainingDataMismatchError
from recbole_llm.random_state import kept_random_state

#: Settings of the run model that must not be handed to the pretrained model (its own training).
RUN_ONLY = ("model", "MAX_ITEM_LIST_LENGTH", "train_neg_sample_args", "epochs", "learning_rate", "train_batch_size",
            "stopping_step", "eval_step", "loss_type", "learner", "weight_decay", "embedding_size")

#: Settings copied from the run's final config so that the view splits and evaluates the same way.
SHARED = ("eval_args", "metrics", "topk", "valid_metric", "seed", "reproducibility", "checkpoint_dir", "device",
          "eval_batch_size", "state")


def sequence_training_pairs(dataset):
    """``{(user, item)}`` of RecBole's augmented sequential training split: every target and every
    item of every history list."""
    inter = dataset.inter_feat
    users = inter[dataset.uid_field].numpy()
    pairs = set(zip(users.tolist(), inter[dataset.iid_field].numpy().tolist()))
    lists = inter[dataset.item_id_list_field].numpy()
    for u, row in zip(users.tolist(), lists):
        pairs.update((u, int(i)) for i in row if i)
    return pairs


class View(NamedTuple):
    """A built view: its config and RecBole's three loaders."""

    config: object
    train: object
    valid: object
    test: object


@dataclass(frozen=True)
class ViewSpec:
    """What a view is: RecBole's ``model`` on ``dataset`` (None: the run's) with the user's settings,
    less ``drop_keys`` and keys starting with ``drop_prefixes``, plus ``copy_keys`` from the run's
    resolved config, plus ``extra``; ``check`` (``general``, ``sequential`` or None) is the
    training-split check, ``label`` names the stage in its error."""

    model: str
    extra: dict = field(default_factory=dict)
    check: Optional[str] = None
    label: str = ""
    dataset: Optional[str] = None
    drop_keys: tuple = RUN_ONLY
    drop_prefixes: tuple = ("llm_",)
    copy_keys: tuple = SHARED

    @classmethod
    def of_split(cls, model, extra, own_prefixes, check, label):
        """A view of the run's own split (the run model's ``own_prefixes`` settings and the LLM's left out)."""
        return cls(model, dict(extra), check, label, drop_prefixes=tuple(own_prefixes) + ("llm_",))


def build_view(config, spec: ViewSpec, train_data=None) -> View:
    """Build ``spec`` on ``config``'s run (random streams left untouched); with a ``check``, refuse a
    view whose training interactions are not exactly those of the run's ``train_data``."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.config import Config

    final = config.final_config_dict
    sub = {k: v for k, v in config.external_config_dict.items()
           if k not in spec.drop_keys and not k.startswith(spec.drop_prefixes)}
    for key in spec.copy_keys:
        sub[key] = final[key]
    sub.update(spec.extra)
    view_config = Config(model=spec.model, dataset=spec.dataset or config["dataset"], config_dict=sub)
    with kept_random_state():
        view = View(view_config, *data_preparation(view_config, create_dataset(view_config)))
    label = spec.label or config["model"]
    if spec.check == "general":
        ds = view.train.dataset
        general = set(zip(ds.inter_feat[ds.uid_field].numpy().tolist(), ds.inter_feat[ds.iid_field].numpy().tolist()))
        if general != sequence_training_pairs(train_data.dataset):
            raise TrainingDataMismatchError(
                f"{label}: the general view of the split used to pretrain {spec.model} does not hold exactly the "
                "interactions of the training sequences (different filtering or split settings); refusing to "
                "pretrain on it. Use a leave-one-out split (eval_args split LS, order TO).")
    elif spec.check == "sequential":
        if interaction_fingerprint(view.train.dataset) != interaction_fingerprint(train_data.dataset):
            raise TrainingDataMismatchError(f"{label}: {spec.model}'s view of the split differs from the run's "
                                            "training split; refusing to pretrain on it.")
    elif spec.check is not None:
        raise ValueError(f"view check {spec.check!r}: use 'general', 'sequential' or None")
    return view


def build_views(config, train_data, specs: dict) -> dict:
    """``{name: View}`` of the ``specs`` a trainer declared (``data_views()``), in their order."""
    return {name: build_view(config, spec, train_data) for name, spec in specs.items()}
