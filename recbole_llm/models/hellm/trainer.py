"""HeLLM's stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``graph``
    HeLLMPre (stage 1 of the paper) on this run's training split, through
    :func:`~recbole_llm.training.pretrain.pretrain_recbole_model` (cached by the training-split
    fingerprint; ``hellm_graph_checkpoint`` reuses a HeLLMPre checkpoint trained on the same
    split). HeLLM's own data are sequences, so HeLLMPre gets a general (pairwise) view of the same
    dataset and split; before training, its training pairs are checked to be exactly the pairs of
    HeLLM's training sequences (no validation or test item). Its fused item embeddings become the
    frozen ``item_graph_emb``. Skipped when neither the prefix nor the graph ids are used.
``sasrec``
    RecBole's SASRec on HeLLM's own training sequences (the same pretraining cache); its item
    embedding table becomes ``item_seq_emb``. Skipped under w/o Seq_ID.
``finetune``
    LoRA, prefix encoders, item MLP, W and item head: ``hellm_epochs`` epochs over (a random
    ``hellm_samples_per_epoch`` subset of) RecBole's training samples (every prefix of every user's
    training sequence), AdamW (``learner``), per-step linear warmup over ``hellm_warmup_epochs``
    then a half cosine to ``hellm_min_learning_rate``; RecBole's validation, early stopping and
    best-model checkpoint (selection on validation, never on test).
"""

from __future__ import annotations

import numpy as np
import torch

from recbole_llm.errors import TrainingDataMismatchError
from recbole_llm.models.hellm.settings import HELLMPRE_SETTINGS
from recbole_llm.training.pretrain import pretrain_recbole_model
from recbole_llm.training.schedule import set_learning_rate, warmup_cosine
from recbole_llm.training.staged import Stage, StagedTrainer

#: Settings of HeLLM's config that must not be handed to the HeLLMPre stage (HeLLM's own training).
_NOT_FOR_PRE = ("model", "MAX_ITEM_LIST_LENGTH", "train_neg_sample_args", "epochs", "learning_rate", "train_batch_size",
                "stopping_step", "eval_step", "loss_type", "learner", "weight_decay", "embedding_size")


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


def _split_view(config, model, extra):
    """``(config, train, valid, test)`` of RecBole's ``model`` on the dataset and split of HeLLM's ``config``
    (the user's own settings, minus HeLLM's, plus ``extra``); random streams left untouched."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.config import Config

    final = config.final_config_dict
    sub = {k: v for k, v in config.external_config_dict.items()
           if k not in _NOT_FOR_PRE and not k.startswith(("hellm_", "llm_"))}
    for key in ("eval_args", "metrics", "topk", "valid_metric", "seed", "reproducibility", "checkpoint_dir",
                "device", "eval_batch_size", "state"):
        sub[key] = final[key]
    sub.update(extra)
    view_config = Config(model=model, dataset=config["dataset"], config_dict=sub)
    state = (torch.get_rng_state(), np.random.get_state())
    try:
        train, valid, test = data_preparation(view_config, create_dataset(view_config))
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
    return view_config, train, valid, test


def general_split_for(config, train_data):
    """``(config, train, valid, test, overrides)`` of HeLLMPre on the same dataset and leave-one-out split as
    HeLLM (a general, pairwise view), checked against HeLLM's training sequences."""
    final = config.final_config_dict
    graph = {"epochs": final["hellm_graph_epochs"], "learning_rate": final["hellm_graph_learning_rate"],
             "train_batch_size": final["hellm_graph_batch_size"], "stopping_step": final["hellm_graph_stopping_step"],
             "eval_step": final["hellm_graph_eval_step"], "weight_decay": 0.0, "learner": "adam"}
    extra = {k: final[k] for k in HELLMPRE_SETTINGS.keys}
    extra.update(graph)
    pre_config, gtrain, gvalid, gtest = _split_view(config, "HeLLMPre", extra)
    ds = gtrain.dataset
    general = set(zip(ds.inter_feat[ds.uid_field].numpy().tolist(), ds.inter_feat[ds.iid_field].numpy().tolist()))
    if general != sequence_training_pairs(train_data.dataset):
        raise TrainingDataMismatchError(
            "HeLLM graph stage: the general view of the split used to pretrain HeLLMPre does not hold exactly the "
            "interactions of HeLLM's training sequences (different filtering or split settings); refusing to "
            "pretrain on it. Use a leave-one-out split (eval_args split LS, order TO) for HeLLM.")
    return pre_config, gtrain, gvalid, gtest, graph


def sasrec_split_for(config, train_data, overrides, max_len):
    """SASRec's view of HeLLM's split with histories of at most ``max_len`` items (RecBole's
    ``MAX_ITEM_LIST_LENGTH`` comes from the dataset YAML), checked to hold the same training targets."""
    from recbole_llm.graph.interactions import interaction_fingerprint

    sas_config, strain, svalid, stest = _split_view(config, "SASRec", {**overrides, "MAX_ITEM_LIST_LENGTH": max_len,
                                                                "train_neg_sample_args": None})
    if interaction_fingerprint(strain.dataset) != interaction_fingerprint(train_data.dataset):
        raise TrainingDataMismatchError("HeLLM sasrec stage: SASRec's view of the split differs from HeLLM's "
                                        "training split; refusing to pretrain on it.")
    return sas_config, strain, svalid, stest


class HeLLMTrainer(StagedTrainer):
    """Runs HeLLM's stages (see the module docstring)."""

    STAGES = ("graph", "sasrec", "finetune")
    settings_prefix = "hellm_"

    def __init__(self, config, model):
        super().__init__(config, model)
        self.s = model.settings

    def run_settings(self):
        keep = super().run_settings()
        keep.update({k: self.config.final_config_dict.get(k) for k in HELLMPRE_SETTINGS.keys})
        return keep

    def stages(self):
        m, s = self.model, self.s
        stages = []
        if m.use_prefix or m.use_graph_id:
            stages.append(Stage("graph", run=self.graph_stage))
        if m.use_seq_id:
            stages.append(Stage("sasrec", run=self.sasrec_stage))
        self._n_samples = len(self.train_data.dataset)
        per_epoch = min(s.samples_per_epoch, self._n_samples) if s.samples_per_epoch else self._n_samples
        self._steps_per_epoch = -(-per_epoch // s.batch_size)
        stages.append(Stage("finetune", epochs=s.epochs, train_epoch=self.finetune_epoch,
                            parameters=m.trainable_parameters, learning_rate=s.learning_rate,
                            weight_decay=s.weight_decay, validate=True, unit="samples", units_per_epoch=per_epoch))
        return stages

    # ------------------------------------------------------------------------------------------
    def pretrained_graph(self):
        """``(Pretrained HeLLMPre, its config, its test loader)``: trained, or from the cache/checkpoint."""
        s = self.s
        pre_config, gtrain, gvalid, gtest, graph = general_split_for(self.config, self.train_data)
        overrides = {**graph, **{k: pre_config[k] for k in HELLMPRE_SETTINGS.keys}}
        done = pretrain_recbole_model(pre_config, gtrain, gvalid, model="HeLLMPre", overrides=overrides,
                                      work_dir=self.run_dir, label=self.label("graph"),
                                      checkpoint=s.graph_checkpoint or "", use_cache=s.graph_cache)
        done.stats["train_pairs"] = len(gtrain.dataset)
        return done, pre_config, gtest

    def graph_stage(self, trainer):
        done, _, _ = self.pretrained_graph()
        done.model.eval()
        _, items = done.model.final_embeddings()
        self.model.set_item_embeddings(graph=items.cpu(), graph_source=done.source)
        return {"source": done.source, **done.stats}

    def sasrec_overrides(self):
        s = self.s
        return {"epochs": s.sasrec_epochs, "learning_rate": s.sasrec_learning_rate, "train_batch_size": s.sasrec_batch_size,
                "stopping_step": s.sasrec_stopping_step, "eval_step": 1, "weight_decay": 0.0, "learner": "adam",
                "loss_type": "CE",
                "n_layers": s.sasrec_n_layers, "n_heads": s.sasrec_n_heads, "hidden_size": self.model.graph_dim,
                "inner_size": s.sasrec_inner_size, "hidden_dropout_prob": s.sasrec_dropout,
                "attn_dropout_prob": s.sasrec_dropout, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                "initializer_range": 0.02}

    def pretrained_sasrec(self):
        """``(Pretrained SASRec, its config, its test loader)``: trained, or from the cache/checkpoint."""
        s = self.s
        overrides = {**self.sasrec_overrides(), "MAX_ITEM_LIST_LENGTH": s.max_history}
        sas_config, strain, svalid, stest = sasrec_split_for(self.config, self.train_data, overrides, s.max_history)
        done = pretrain_recbole_model(sas_config, strain, svalid, model="SASRec",
                                      overrides=overrides, work_dir=self.run_dir,
                                      label=self.label("sasrec"), checkpoint=s.sasrec_checkpoint or "",
                                      use_cache=s.sasrec_cache, architecture_keys=("hidden_size", "n_layers", "n_heads"))
        return done, sas_config, stest

    def sasrec_stage(self, trainer):
        done, _, _ = self.pretrained_sasrec()
        table = done.model.item_embedding.weight.detach().cpu().float()
        self.model.set_item_embeddings(seq=table, seq_source=done.source)
        return {"source": done.source, "max_len": self.s.max_history, **done.stats}

    # ------------------------------------------------------------------------------------------
    def finetune_epoch(self, trainer, epoch, optimizer):
        m, s = self.model, self.s
        inter = self.train_data.dataset.inter_feat
        rng = np.random.default_rng(self.seed * 7919 + epoch)
        order = rng.permutation(self._n_samples)
        if s.samples_per_epoch:
            order = order[: s.samples_per_epoch]
        chunks = [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        total_steps = s.epochs * self._steps_per_epoch
        warmup = int(round(s.warmup_epochs * self._steps_per_epoch))
        torch.manual_seed(self.seed * 104729 + epoch)  # dropout stream per epoch (resume-safe)

        def schedule(step):
            set_learning_rate(optimizer, warmup_cosine(epoch * self._steps_per_epoch + step, total_steps, warmup,
                                                       s.learning_rate, s.min_learning_rate))

        return self.run_batches("finetune", epoch, chunks, lambda chunk: m.calculate_loss(inter[torch.as_tensor(chunk)]),
                                optimizer, before_step=schedule)
