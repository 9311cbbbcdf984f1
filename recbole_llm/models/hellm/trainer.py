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

from recbole_llm.models.hellm.settings import GRAPH_STAGE, HELLMPRE_SETTINGS, SASREC_STAGE
from recbole_llm.training.pretrain import pretrain_recbole_model
from recbole_llm.training.staged import Stage, StagedTrainer
from recbole_llm.data.views import ViewSpec, sequence_training_pairs

__all__ = ["HeLLMTrainer", "sequence_training_pairs"]


class HeLLMTrainer(StagedTrainer):
    """Runs HeLLM's stages (see the module docstring)."""

    STAGES = ("graph", "sasrec", "finetune")

    def __init__(self, config, model):
        super().__init__(config, model)
        self.s = model.settings

    def stages(self):
        m, s = self.model, self.s
        stages = []
        if m.use_prefix or m.use_graph_id:
            stages.append(Stage("graph", run=self.graph_stage))
        if m.use_seq_id:
            stages.append(Stage("sasrec", run=self.sasrec_stage))
        stages.append(self.sampled_stage(
            "finetune", epochs=s.epochs, parameters=m.trainable_parameters, loss_of=m.calculate_loss,
            learning_rate=s.learning_rate, weight_decay=s.weight_decay, batch_size=s.batch_size,
            samples_per_epoch=s.samples_per_epoch, min_learning_rate=s.min_learning_rate,
            warmup_epochs=s.warmup_epochs, validate=True))
        return stages

    def data_views(self):
        """HeLLMPre's general (pairwise) view of HeLLM's leave-one-out split, checked against HeLLM's
        training sequences; SASRec's view with histories of at most ``hellm_max_history`` items
        (RecBole's ``MAX_ITEM_LIST_LENGTH`` comes from the dataset YAML), checked to hold the same
        training targets. Each only when its stage runs."""
        m, s, final = self.model, self.s, self.config.final_config_dict
        views = {}
        if m.use_prefix or m.use_graph_id:
            extra = {k: final[k] for k in HELLMPRE_SETTINGS.keys}
            extra.update(self.graph_overrides())
            views["graph"] = ViewSpec.of_split("HeLLMPre", extra, ("hellm_",), "general", "HeLLM graph stage")
        if m.use_seq_id:
            extra = {**self.sasrec_overrides(), "MAX_ITEM_LIST_LENGTH": s.max_history, "train_neg_sample_args": None}
            views["sasrec"] = ViewSpec.of_split("SASRec", extra, ("hellm_",), "sequential", "HeLLM sasrec stage")
        return views

    # ------------------------------------------------------------------------------------------
    def graph_overrides(self):
        """HeLLMPre's training settings from HeLLM's ``hellm_graph_*``."""
        return GRAPH_STAGE.overrides(self.config.final_config_dict)

    def pretrained_graph(self):
        """``(Pretrained HeLLMPre, its config, its test loader)``: trained, or from the cache/checkpoint."""
        s = self.s
        pre_config, gtrain, gvalid, gtest = self.views["graph"]
        overrides = {**self.graph_overrides(), **{k: pre_config[k] for k in HELLMPRE_SETTINGS.keys}}
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
        return SASREC_STAGE.overrides(self.s, hidden_size=self.model.graph_dim)

    def pretrained_sasrec(self):
        """``(Pretrained SASRec, its config, its test loader)``: trained, or from the cache/checkpoint."""
        s = self.s
        overrides = {**self.sasrec_overrides(), "MAX_ITEM_LIST_LENGTH": s.max_history}
        sas_config, strain, svalid, stest = self.views["sasrec"]
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
