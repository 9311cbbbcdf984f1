"""UniSRec's two stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``pretrain``
    ``unisrec_pretrain_epochs`` epochs of :meth:`UniSRec.pretrain_loss` (text only) over RecBole's
    training sequences of this run's **training split** at ``unisrec_pretrain_learning_rate``; the
    item ID table (transductive mode) is not used. The paper pre-trains on five other Amazon
    domains and transfers; pre-training on other datasets is not implemented here (it needs those
    domains' data and texts), so this is in-domain pre-training. Skipped with 0 epochs.
``finetune``
    ``epochs`` epochs of :meth:`UniSRec.calculate_loss` at ``learning_rate``; with
    ``unisrec_freeze_encoder`` and a pre-training stage, the transformer and position embeddings
    are fixed first (the paper's fine-tuning). RecBole's validation, early stopping and best-model
    checkpoint.
"""

from __future__ import annotations

from recbole_llm.training.staged import Stage, StagedTrainer

#: RecBole keys that define a UniSRec run besides the ``unisrec_*`` settings.
RUN_KEYS = ("n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob", "attn_dropout_prob",
            "MAX_ITEM_LIST_LENGTH", "learning_rate", "weight_decay", "text_encoder", "item_text_template",
            "item_text_fields", "item_text_max_tokens")


class UniSRecTrainer(StagedTrainer):
    """Runs UniSRec's stages (see the module docstring)."""

    settings_prefix = "unisrec_"

    def run_settings(self):
        keep = super().run_settings()
        keep.update({k: self.config[k] for k in RUN_KEYS})
        return keep

    def stages(self):
        m, s = self.model, self.model.settings
        stages = []
        if s.pretrain_epochs > 0:
            stages.append(Stage("pretrain", epochs=s.pretrain_epochs, train_epoch=self.pretrain_epoch,
                                parameters=lambda: [p for n, p in m.named_parameters() if not n.startswith("item_embedding.")],
                                learning_rate=s.pretrain_learning_rate, begin=self.pretrain_begin, unit="batches",
                                units_per_epoch=len(self.train_data)))
        stages.append(Stage("finetune", epochs=int(self.config["epochs"]), train_epoch=self.finetune_epoch,
                            parameters=lambda: [p for p in m.parameters() if p.requires_grad],
                            learning_rate=float(self.config["learning_rate"]),
                            weight_decay=float(self.config["weight_decay"] or 0.0), validate=True,
                            begin=self.finetune_begin, unit="batches", units_per_epoch=len(self.train_data)))
        return stages

    def pretrain_begin(self, trainer):
        from recbole_llm.data.features import text_embeddings
        from recbole_llm.data.text import TEMPLATE_KEY
        from recbole_llm.models.unisrec.model import word_drop_texts

        m, s = self.model, self.model.settings
        aug = None
        if s.word_drop_ratio > 0 and s.item_drop_coefficient < 1:
            texts = word_drop_texts(m.item_texts, s.word_drop_ratio, seed=self.seed)
            texts[0] = ""
            tag = f"{self.config[TEMPLATE_KEY]}|word_drop={s.word_drop_ratio}|seed={self.seed}"
            aug = text_embeddings(self.config, texts, tag, what="word-dropped item texts")
        m.prepare_pretraining(aug)
        return {"word_drop_view": aug is not None}

    def pretrain_epoch(self, trainer, epoch, optimizer):
        return self.run_batches("pretrain", epoch, self.train_data, self.model.pretrain_loss, optimizer)

    def finetune_begin(self, trainer):
        m, s = self.model, self.model.settings
        frozen = s.freeze_encoder and s.pretrain_epochs > 0
        if frozen:
            m.freeze_encoder()
        return {"encoder_frozen": frozen, "trainable_params": sum(p.numel() for p in m.parameters() if p.requires_grad)}

    def finetune_epoch(self, trainer, epoch, optimizer):
        return self.run_batches("finetune", epoch, self.train_data, self.model.calculate_loss, optimizer)
