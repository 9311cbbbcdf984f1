"""CoLLM's stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``graph``
    RecBole's LightGCN on a general (pairwise) view of this run's split (``data_views``, built before
    training by :mod:`recbole_llm.data.views`), checked to hold exactly the pairs of CoLLM's training
    sequences, through :func:`~recbole_llm.training.lightgcn.pretrain_lightgcn` (cached by the
    training-split fingerprint; ``collm_graph_checkpoint`` reuses a LightGCN checkpoint of the same
    split). Its layer-averaged user and item embeddings become CoLLM's frozen buffers.
``lora``
    The authors' first step (TALLRec): LoRA (and the item head) on the text-only prompts, no ID
    tokens; ``collm_lora_epochs`` epochs, no validation (the mapping is not trained yet).
``cie``
    The second step: the CIE mapping (and the item head) on the hybrid prompts with LoRA frozen;
    ``collm_cie_epochs`` epochs with RecBole's validation, early stopping and best checkpoint.

Both tuning stages: AdamW (``learner``), per-step warmup + half cosine, a random
``collm_samples_per_epoch`` subset of the training samples per epoch.
"""

from __future__ import annotations

from recbole_llm.models.collm.settings import GRAPH_STAGE
from recbole_llm.training.lightgcn import pretrain_lightgcn
from recbole_llm.training.staged import Stage, StagedTrainer
from recbole_llm.data.views import ViewSpec


class CoLLMTrainer(StagedTrainer):
    """Runs CoLLM's stages (see the module docstring)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.s = model.settings

    def graph_overrides(self):
        return GRAPH_STAGE.overrides(self.s)

    def data_views(self):
        """LightGCN's general (pairwise) view of CoLLM's split, checked against CoLLM's training sequences."""
        return {"graph": ViewSpec.of_split("LightGCN", self.graph_overrides(), ("collm_",), "general",
                                           "CoLLM graph stage")}

    def graph_stage(self, trainer):
        s = self.s
        overrides = self.graph_overrides()
        view_config, gtrain, gvalid, _ = self.views["graph"]
        emb = pretrain_lightgcn(view_config, gtrain, gvalid, overrides=overrides, work_dir=self.run_dir,
                                label=self.label("graph"), checkpoint=s.graph_checkpoint or "", use_cache=s.graph_cache)
        self.model.set_graph_embeddings(emb.user, emb.item, source=emb.source)
        return {"source": emb.source, "train_pairs": len(gtrain.dataset), **emb.stats}

    def _tuning(self, name, epochs, lr, parameters, hybrid, validate):
        m, s = self.model, self.s

        def loss_of(interaction):
            m.train_hybrid = hybrid
            return m.calculate_loss(interaction)

        return self.sampled_stage(name, epochs=epochs, parameters=parameters, loss_of=loss_of, learning_rate=lr,
                                  weight_decay=s.weight_decay, batch_size=s.batch_size,
                                  samples_per_epoch=s.samples_per_epoch, min_learning_rate=s.min_learning_rate,
                                  warmup_epochs=s.warmup_epochs, validate=validate)

    def stages(self):
        m, s = self.model, self.s
        return [
            Stage("graph", run=self.graph_stage),
            self._tuning("lora", s.lora_epochs, s.lora_learning_rate,
                         lambda: m.lora_parameters() + m.head_parameters(), hybrid=False, validate=s.cie_epochs == 0),
            self._tuning("cie", s.cie_epochs, s.cie_learning_rate,
                         lambda: m.mapping_parameters() + m.head_parameters(), hybrid=True, validate=True),
        ]
