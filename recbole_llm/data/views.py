"""Other RecBole models' views of a run's dataset and split, for pretraining them as a stage.

An LLM recommender that builds on a pretrained RecBole model (HeLLM: HeLLMPre and SASRec; CoLLM:
LightGCN; LLaRA: SASRec) needs that model's own data loaders (its batch size, its negative
sampling, a general pairwise view of a sequential dataset) on *exactly* the run's training split.
:func:`split_view` builds them from the run's config (the user's settings minus the run model's
own), :func:`general_view` and :func:`sequential_view` also check that the view holds the run's
training interactions and nothing else, so :func:`~recbole_llm.training.pretrain.pretrain_recbole_model`
never sees a validation or test interaction.
"""

from __future__ import annotations

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


def split_view(config, model, extra, own_prefixes=()):
    """``(config, train, valid, test)`` of RecBole's ``model`` on the dataset and split of the run's
    ``config``: the user's own settings, minus :data:`RUN_ONLY` and keys starting with
    ``own_prefixes`` or ``llm_``, plus ``extra``. Random streams are left untouched."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.config import Config

    final = config.final_config_dict
    drop = tuple(own_prefixes) + ("llm_",)
    sub = {k: v for k, v in config.external_config_dict.items() if k not in RUN_ONLY and not k.startswith(drop)}
    for key in SHARED:
        sub[key] = final[key]
    sub.update(extra)
    view_config = Config(model=model, dataset=config["dataset"], config_dict=sub)
    with kept_random_state():
        train, valid, test = data_preparation(view_config, create_dataset(view_config))
    return view_config, train, valid, test


def general_view(config, train_data, model, extra, own_prefixes=(), label=""):
    """A general (pairwise) ``model``'s view of a *sequential* run's split, refused unless its
    training pairs are exactly those of the run's training sequences."""
    view_config, train, valid, test = split_view(config, model, extra, own_prefixes)
    ds = train.dataset
    general = set(zip(ds.inter_feat[ds.uid_field].numpy().tolist(), ds.inter_feat[ds.iid_field].numpy().tolist()))
    if general != sequence_training_pairs(train_data.dataset):
        raise TrainingDataMismatchError(
            f"{label or config['model']}: the general view of the split used to pretrain {model} does not hold exactly "
            "the interactions of the training sequences (different filtering or split settings); refusing to pretrain "
            "on it. Use a leave-one-out split (eval_args split LS, order TO).")
    return view_config, train, valid, test


def sequential_view(config, train_data, model, extra, own_prefixes=(), label=""):
    """A sequential ``model``'s view of a sequential run's split (e.g. another history length),
    refused unless it holds the same training interactions."""
    view_config, train, valid, test = split_view(config, model, extra, own_prefixes)
    if interaction_fingerprint(train.dataset) != interaction_fingerprint(train_data.dataset):
        raise TrainingDataMismatchError(f"{label or config['model']}: {model}'s view of the split differs from the "
                                        "run's training split; refusing to pretrain on it.")
    return view_config, train, valid, test
