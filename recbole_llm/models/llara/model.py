r"""LLaRA: sequential-recommender embeddings as a modality of the LLM's prompt, hybrid item tokens
and curriculum prompt tuning (Liao et al., "LLaRA: Large Language-Recommendation Assistant";
authors' code github.com/ljy0ustc/LLaRA).

A RecBole sequential model (leave-one-out by time); the shared prompt machinery, LoRA and the
output forms are :class:`~recbole_llm.models.prompt_recommender.PromptRecommender`'s.

* Item embeddings: RecBole's SASRec trained on this run's training sequences only
  (:class:`~recbole_llm.models.llara.trainer.LLaRATrainer`, stage ``sasrec``); its item table is
  the frozen buffer ``item_seq_emb`` (the authors' ``rec_model.cacu_x``: the item embedding).
* Projector: ``Linear(d, H), GELU, Linear(H, H)`` (the authors' ``MlpProjector``;
  ``llara_proj_hidden`` > 0 sets another hidden size).
* Hybrid item representation: every history item is its title followed by its projected SASRec
  embedding (``"Title [emb]"``); text-only prompts have the titles alone (the authors put a
  ``[PH]`` token there; here the slot is left out).
* Curriculum (``llara_curriculum``): each training batch uses the hybrid prompt with probability
  ``step / total_steps`` and the text-only prompt otherwise (the authors' ``TrainCollater``);
  text-only batches do not touch the projector. Evaluation always uses hybrid prompts.
* LoRA (peft) on the attention and feed-forward projections, r 8, alpha 32, dropout 0.1 (the
  authors' defaults).

Outputs (``llara_output``): ``item_head`` (default; full ranking through a trainable item head on
the last hidden state, as the HeLLM paper compares LLaRA) or ``candidates`` (the authors' LM loss
on the next item's title; a candidate's score is the mean log-likelihood of its title after the
prompt, a simpler equivalent of generating a title from a listed candidate set, since RecBole's
``predict`` scores one (user, item) pair at a time; evaluate with ``eval_args.mode: uni100``).
"""

from __future__ import annotations

import torch

from recbole_llm.errors import ConfigError
from recbole_llm.llm.prompts import PromptTemplate
from recbole_llm.models.prompt_recommender import CANDIDATES, PromptRecommender, projector
from recbole_llm.models.llara.settings import LLARA_SETTINGS
from recbole_llm.training.pretrain import load_frozen_tables


class LLaRA(PromptRecommender):
    """LLaRA (see the module docstring)."""

    ORIGINAL_OUTPUTS = (CANDIDATES,)
    other_parameter_name = ["seq_source"]

    def __init__(self, config, dataset, backbone=None):
        super().__init__(config, dataset, LLARA_SETTINGS, backbone=backbone)
        s = self.settings
        d = s.sasrec_hidden_size
        self.register_buffer("item_seq_emb", torch.zeros(self.n_items, d))
        self.projector = projector(d, s.proj_hidden or self.hidden, self.hidden)
        self.template = PromptTemplate(s.prompt)
        if set(self.template.fields) != {"history"}:
            raise ConfigError(f"LLaRA setting llara_prompt={s.prompt!r} must have exactly one placeholder, "
                              "{history} (where the history's hybrid item tokens go).")
        self.seq_source = ""

    def set_item_embeddings(self, table, source=""):
        """Copy SASRec's ``[n_items, d]`` item table into the frozen buffer."""
        load_frozen_tables(self, {"item_seq_emb": table}, "SASRec",
                           "llara_sasrec_hidden_size must equal SASRec's hidden_size.")
        self.seq_source = source or self.seq_source

    def mapping_parameters(self):
        return list(self.projector.parameters())

    def prompt(self, interaction, rows, hybrid, targets=None):
        histories = self.histories(interaction)
        vec = {}
        if hybrid:
            ids = torch.tensor(sorted({i for h in histories for i in h}), device=self.dev, dtype=torch.long)
            mapped = self.projector(self.item_seq_emb[ids])
            vec = {i: mapped[k] for k, i in enumerate(ids.tolist())}
        prompts = []
        for b in rows:
            history = []
            for j, item in enumerate(histories[b]):
                if j:
                    history.append(self.settings.item_separator)
                history.append(self.titles[item])
                if hybrid:
                    history.append(vec[item])
            prompts.append(self.template.fill(history=history))
        return prompts
