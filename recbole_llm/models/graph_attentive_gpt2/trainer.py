"""GraphAttentiveGPT2's three stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``content`` (stage 1, crowd-context pretraining, Eq. 5)
    ``gat_content_epochs`` epochs over the prompts of ``gat_corpus`` (``corpus.py``: item text fields,
    second-order groups, reviews, interaction events; training edges only), ``gat_content_prompts`` of
    them drawn anew each epoch (0: all); next-token loss on the main part (words: the backbone's head,
    items: the tied item head).
``collab`` (stage 2, collaborative pretraining)
    ``gat_collab_epochs`` epochs over the interaction events ("user_u has interacted with" -> shuffled
    chunks of the user's training items; ``gat_collab_prompts`` of them per epoch, 0: all) with the
    item-only softmax through the tied head.
``finetune`` (stage 3, Eq. 6)
    ``gat_finetune_epochs`` epochs over the users (``gat_finetune_users`` drawn per epoch, 0: all): the
    personalised prompt with a random ``gat_hide_fraction`` of the training items hidden, multinomial
    loss over the user's bag of training items (``gat_finetune_target``); RecBole's validation, early
    stopping and best-model checkpoint.

``gat_pretrain: False`` drops stages 1-2 (NoPretrain), ``gat_collab_pretrain: False`` stage 2,
``gat_finetune: False`` stage 3 (NoFineTune: the last pretraining stage is validated and the model is
scored as after fine-tuning, at the last token of the fine-tuning prompt). Every stage trains the ID
tables at ``gat_id_learning_rate`` and the backbone's trainable part (``gat_trainable``) at
``gat_backbone_learning_rate`` (two optimiser parameter groups). Each epoch draws its randomness from
``(seed, stage, epoch)``, so a resumed epoch repeats the same stream.
"""

from __future__ import annotations

import numpy as np

from recbole_llm.errors import ConfigError
from recbole_llm.models.graph_attentive_gpt2.corpus import Corpus
from recbole_llm.training.staged import Stage, StagedTrainer

_STAGE_SEED = {"content": 1, "collab": 2, "finetune": 3}


class GraphAttentiveGPT2Trainer(StagedTrainer):
    """Runs GraphAttentiveGPT2's stages (see the module docstring)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.s = model.settings
        self._corpus = None

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = Corpus(self.model, self.train_data.dataset, self.config)
        return self._corpus

    def rng(self, stage, epoch):
        return np.random.default_rng([self.seed, _STAGE_SEED[stage], epoch])

    def stages(self):
        m, s = self.model, self.s
        groups = lambda: m.parameter_groups(s.id_learning_rate, s.backbone_learning_rate)  # noqa: E731
        common = dict(parameters=groups, learning_rate=s.id_learning_rate, weight_decay=s.weight_decay)
        stages = []
        if s.pretrain and s.corpus:
            stages.append(Stage("content", epochs=s.content_epochs, train_epoch=self.content_epoch, unit="prompts",
                                begin=lambda t: self.content_begin(), **common))
        if s.pretrain and s.collab_pretrain:
            stages.append(Stage("collab", epochs=s.collab_epochs, train_epoch=self.collab_epoch, unit="prompts", **common))
        if s.finetune:
            stages.append(Stage("finetune", epochs=s.finetune_epochs, train_epoch=self.finetune_epoch, unit="users",
                                units_per_epoch=len(self.train_users()), **common))
        stages[-1].validate = True
        return stages

    def train_users(self):
        return [u for u in range(1, self.model.n_users) if len(self.model.user_items[u])]

    def content_begin(self):
        """The corpora's sizes; refuses corpora that give no stage-1 prompt (e.g. NoGHIP's reviews only
        on a dataset without a ``.review`` file) instead of 'pretraining' on nothing."""
        if not self.corpus.stage1(self.rng("content", 0)):
            raise ConfigError(
                f"GraphAttentiveGPT2: gat_corpus={list(self.s.corpus)} gives no pretraining prompt on dataset "
                f"{self.config['dataset']!r} (sizes: {self.corpus.stats}); 'review' needs a "
                f"{self.config['dataset']}.review file (Amazon converter). Use a dataset with reviews or other corpora.")
        return dict(self.corpus.stats)

    # ------------------------------------------------------------------------------------------
    def _steps(self, name, epoch, chunks, loss_of, optimizer):
        self.model.train()
        return self.run_batches(name, epoch, chunks, loss_of, optimizer)

    def _pair_batches(self, pairs, batch_size, rng, limit=0):
        order = rng.permutation(len(pairs))
        if limit:
            order = order[:limit]
        m, cap = self.model, self.s.main_max_tokens
        samples = [m.sample(*pairs[i], main_max_tokens=cap) for i in order]
        return [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]

    def content_epoch(self, trainer, epoch, optimizer):
        rng = self.rng("content", epoch)
        batches = self._pair_batches(self.corpus.stage1(rng), self.s.content_batch_size, rng, self.s.content_prompts)
        return self._steps("content", epoch, batches, lambda b: self.model.lm_loss(b), optimizer)

    def collab_epoch(self, trainer, epoch, optimizer):
        rng = self.rng("collab", epoch)
        batches = self._pair_batches(self.corpus.events(rng), self.s.collab_batch_size, rng, self.s.collab_prompts)
        return self._steps("collab", epoch, batches, lambda b: self.model.lm_loss(b, word_targets=False), optimizer)

    def finetune_epoch(self, trainer, epoch, optimizer):
        m, s = self.model, self.s
        rng = self.rng("finetune", epoch)
        users = rng.permutation(self.train_users())
        if s.finetune_users:
            users = users[: s.finetune_users]
        examples = [(int(u),) + m.finetune_example(u, rng) for u in users]
        chunks = [examples[i : i + s.finetune_batch_size] for i in range(0, len(examples), s.finetune_batch_size)]

        def loss_of(chunk):
            return m.finetune_loss([c[0] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk])

        return self._steps("finetune", epoch, chunks, loss_of, optimizer)
