"""LLaRA's stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``sasrec``
    RecBole's SASRec on a view of this run's split with histories of ``llara_max_history`` items
    (``data_views``, built before training by :mod:`recbole_llm.data.views`), checked to hold the
    same training interactions, through :func:`~recbole_llm.training.pretrain.pretrain_recbole_model` (cached by the
    training-split fingerprint; ``llara_sasrec_checkpoint`` reuses a SASRec checkpoint of the same
    split). Its item embedding table becomes LLaRA's frozen ``item_seq_emb``.
``finetune``
    LoRA, projector and item head: ``llara_epochs`` epochs over a random ``llara_samples_per_epoch``
    subset of the training samples, AdamW (``learner``), per-step warmup + half cosine; each batch
    draws its prompt form from the curriculum (hybrid with probability ``step / total_steps``, a
    stream seeded by the run seed and the step); RecBole's validation, early stopping and best
    checkpoint.
"""

from __future__ import annotations

import numpy as np

from recbole_llm.models.llara.settings import SASREC_STAGE
from recbole_llm.training.pretrain import pretrain_recbole_model
from recbole_llm.training.staged import Stage, StagedTrainer
from recbole_llm.data.views import ViewSpec


def curriculum_hybrid(seed, step, total_steps):
    """Whether training step ``step`` of ``total_steps`` uses the hybrid prompt: with probability
    ``(step + 1) / total_steps`` (the authors' ``cur_step / max_step``), deterministic per seed and step."""
    p = (step + 1) / max(1, total_steps)
    return bool(np.random.default_rng([seed, step]).random() < p)


class LLaRATrainer(StagedTrainer):
    """Runs LLaRA's stages (see the module docstring)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.s = model.settings

    def sasrec_overrides(self):
        return SASREC_STAGE.overrides(self.s, MAX_ITEM_LIST_LENGTH=self.s.max_history)

    def data_views(self):
        """SASRec's view of LLaRA's split with ``llara_max_history`` items, checked to hold the same
        training interactions."""
        return {"sasrec": ViewSpec.of_split("SASRec", {**self.sasrec_overrides(), "train_neg_sample_args": None},
                                            ("llara_",), "sequential", "LLaRA sasrec stage")}

    def sasrec_stage(self, trainer):
        s = self.s
        overrides = self.sasrec_overrides()
        view_config, strain, svalid, _ = self.views["sasrec"]
        done = pretrain_recbole_model(view_config, strain, svalid, model="SASRec", overrides=overrides,
                                      work_dir=self.run_dir, label=self.label("sasrec"),
                                      checkpoint=s.sasrec_checkpoint or "", use_cache=s.sasrec_cache,
                                      architecture_keys=("hidden_size", "n_layers", "n_heads"))
        self.model.set_item_embeddings(done.model.item_embedding.weight.detach().cpu().float(), source=done.source)
        return {"source": done.source, "max_len": s.max_history, **done.stats}

    def stages(self):
        m, s = self.model, self.s
        hybrid_steps = []

        def before_batch(step, total):
            m.train_hybrid = curriculum_hybrid(self.seed, step, total) if s.curriculum else True
            hybrid_steps.append(m.train_hybrid)

        def end(trainer):
            m.train_hybrid = True
            return {"hybrid_batches": int(sum(hybrid_steps)), "text_batches": len(hybrid_steps) - int(sum(hybrid_steps))}

        finetune = self.sampled_stage(
            "finetune", epochs=s.epochs, loss_of=m.calculate_loss,
            parameters=lambda: m.lora_parameters() + m.mapping_parameters() + m.head_parameters(),
            learning_rate=s.learning_rate, weight_decay=s.weight_decay, batch_size=s.batch_size,
            samples_per_epoch=s.samples_per_epoch, min_learning_rate=s.min_learning_rate,
            warmup_epochs=s.warmup_epochs, validate=True, before_batch=before_batch)
        finetune.end = end
        return [Stage("sasrec", run=self.sasrec_stage), finetune]
