"""UniSRec's two stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``pretrain``
    ``unisrec_pretrain_epochs`` epochs of :meth:`UniSRec.pretrain_loss` (text only) at
    ``unisrec_pretrain_learning_rate`` over RecBole's training sequences of this run's **training
    split** (``unisrec_pretrain_datasets: ""``) or of the **training splits** of the listed datasets
    (the paper: five other Amazon domains, then transfer; this dataset's name in the list means its
    own training split). Each dataset keeps its own item texts and encoded table; an epoch
    interleaves their batches (the authors merge the domains into one item space, so their in-batch
    negatives can come from other domains; ours come from the batch's domain). The item ID table
    (transductive mode) is not used. Skipped with 0 epochs.
``finetune``
    ``epochs`` epochs of :meth:`UniSRec.calculate_loss` at ``learning_rate``; with
    ``unisrec_freeze_encoder`` and a pre-training stage, the transformer and position embeddings
    are fixed first (the paper's fine-tuning). RecBole's validation, early stopping and best-model
    checkpoint.
"""

from __future__ import annotations

from recbole_llm.data.views import ViewSpec
from recbole_llm.training.staged import Stage, StagedTrainer


class UniSRecTrainer(StagedTrainer):
    """Runs UniSRec's stages (see the module docstring)."""

    def stages(self):
        m, s = self.model, self.model.settings
        stages = []
        if s.pretrain_epochs > 0:
            stages.append(Stage("pretrain", epochs=s.pretrain_epochs, train_epoch=self.pretrain_epoch,
                                parameters=lambda: [p for n, p in m.named_parameters()
                                                    if not n.startswith("item_embedding.")],
                                learning_rate=s.pretrain_learning_rate, begin=self.pretrain_begin, unit="batches"))
        stages.append(Stage("finetune", epochs=int(self.config["epochs"]), train_epoch=self.finetune_epoch,
                            parameters=lambda: [p for p in m.parameters() if p.requires_grad],
                            learning_rate=float(self.config["learning_rate"]),
                            weight_decay=float(self.config["weight_decay"] or 0.0), validate=True,
                            begin=self.finetune_begin, unit="batches", units_per_epoch=len(self.train_data)))
        return stages

    def _word_drop_view(self, config, texts):
        from recbole_llm.data.features import text_embeddings
        from recbole_llm.data.text import TEMPLATE_KEY
        from recbole_llm.models.unisrec.model import word_drop_texts

        s = self.model.settings
        if s.word_drop_ratio <= 0 or s.item_drop_coefficient >= 1:
            return None
        texts = word_drop_texts(texts, s.word_drop_ratio, seed=self.seed)
        texts[0] = ""
        tag = f"{config[TEMPLATE_KEY]}|word_drop={s.word_drop_ratio}|seed={self.seed}"
        return text_embeddings(config, texts, tag, what="word-dropped item texts")

    def pretrain_names(self):
        """The datasets whose training splits the pre-training stage reads (this run's by default)."""
        names = [n.strip() for n in self.model.settings.pretrain_datasets.split(",") if n.strip()]
        return names or [str(self.config["dataset"])]

    def data_views(self):
        """The training splits of the other pre-training datasets under this run's settings (split,
        sequence length, batch size; cross-entropy over all items, UniSRec's loss_type CE)."""
        if self.model.settings.pretrain_epochs <= 0:
            return {}
        keep = ("eval_args", "seed", "reproducibility", "checkpoint_dir", "device", "MAX_ITEM_LIST_LENGTH",
                "train_batch_size", "state")
        return {f"pretrain:{name}": ViewSpec("UniSRec", {"train_neg_sample_args": None}, dataset=name,
                                             drop_keys=("dataset",), drop_prefixes=(), copy_keys=keep)
                for name in self.pretrain_names() if name != str(self.config["dataset"])}

    def _other_dataset(self, name):
        """``(train dataloader, text table, word-drop table)`` of dataset ``name``'s training split (its view)."""
        from recbole_llm.data.features import item_text_embeddings
        from recbole_llm.data.text import item_texts

        config, train, _, _ = self.views[f"pretrain:{name}"]
        texts = item_texts(config, train.dataset, model_name=f"UniSRec (pre-training dataset {name})")
        device = self.model.plm_embedding.device
        plm = item_text_embeddings(config, train.dataset, texts=texts).to(device)
        aug = self._word_drop_view(config, texts)
        return train, plm, aug.to(device) if aug is not None else None

    def pretrain_begin(self, trainer):
        m = self.model
        names = self.pretrain_names()
        self._sources = []
        for name in names:
            if name == str(self.config["dataset"]):
                aug = self._word_drop_view(self.config, m.item_texts)
                m.prepare_pretraining(aug)  # the model's own tables
                self._sources.append((name, self.train_data, None, aug))
            else:
                self._sources.append((name, *self._other_dataset(name)))
        return {"datasets": names, "word_drop_view": all(src[3] is not None for src in self._sources),
                "batches_per_epoch": sum(len(src[1]) for src in self._sources)}

    def pretrain_epoch(self, trainer, epoch, optimizer):
        """One pass over every pre-training dataset's training batches, interleaved."""
        m = self.model
        iterators = [(iter(loader), plm, aug) for _, loader, plm, aug in self._sources]
        chunks = []
        while iterators:
            alive = []
            for it, plm, aug in iterators:
                batch = next(it, None)
                if batch is not None:
                    chunks.append((batch, plm, aug))
                    alive.append((it, plm, aug))
            iterators = alive

        def loss_of(chunk):
            batch, plm, aug = chunk
            if plm is None:  # this dataset: the model's own tables
                return m.pretrain_loss(batch.to(self.device))
            return m.pretrain_loss(batch.to(self.device), plm=plm, plm_aug=aug)

        return self.run_batches("pretrain", epoch, chunks, loss_of, optimizer)

    def finetune_begin(self, trainer):
        m, s = self.model, self.model.settings
        frozen = s.freeze_encoder and s.pretrain_epochs > 0
        if frozen:
            m.freeze_encoder()
        return {"encoder_frozen": frozen, "trainable_params": sum(p.numel() for p in m.parameters() if p.requires_grad)}

    def finetune_epoch(self, trainer, epoch, optimizer):
        return self.run_batches("finetune", epoch, self.train_data,
                                lambda batch: self.model.calculate_loss(batch.to(self.device)), optimizer)
