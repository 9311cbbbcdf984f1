r"""CoLLM: collaborative embeddings of a conventional recommender, mapped into LLM input tokens
(Zhang et al., "CoLLM: Integrating Collaborative Embeddings into Large Language Models for
Recommendation"; authors' code github.com/zyang1580/CoLLM).

A RecBole sequential model (leave-one-out by time); the shared prompt machinery, LoRA and the
output forms are :class:`~recbole_llm.models.prompt_recommender.PromptRecommender`'s.

* Collaborative embeddings: RecBole's LightGCN trained on this run's training split only
  (:class:`~recbole_llm.models.collm.trainer.CoLLMTrainer`, stage ``graph``), kept as the frozen
  buffers ``user_graph_emb`` / ``item_graph_emb`` (the authors' ``freeze_rec: True``).
* CIE (collaborative information encoding): ``Linear(d, 10 d), ReLU, Dropout, Linear(10 d, H)``
  (the authors' ``proj_mid_times: 10``, one token per ID) maps a user's or item's embedding to one
  input embedding, injected at the ``{user}`` / ``{target}`` placeholders of the prompt (and after
  each history title with ``collm_history_ids: True``, the authors' ``<ItemIDList>`` variant).
* Prompts as the authors' ``collm_movie.txt`` / ``tallrec_movie.txt``: history titles, the user's
  ID token and, for the Yes/No form, the target title and ID token. The text-only prompts (no ID
  tokens) are those of stage ``lora`` (TALLRec tuning); stage ``cie`` trains the mapping with the
  hybrid prompts while LoRA stays frozen (the authors' two steps).
* LoRA (peft) on ``q_proj,v_proj``, r 8, alpha 16, dropout 0.05 (the authors' ``lora_config``).

Outputs (``collm_output``): ``item_head`` (default; full ranking through a trainable item head on
the last hidden state, as the HeLLM paper compares CoLLM; the prompt then asks for the next item
and names no target), ``yes_no`` (the authors' form: logit(Yes) - logit(No), BCE; evaluate with
``eval_args.mode: uni100``). Deviations from the authors' code: implicit feedback, so the Yes/No
negatives are uniformly sampled items instead of low-rated ones; no ``consitence_loss`` (unused in
their released configs).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from recbole_llm.errors import ConfigError
from recbole_llm.llm.prompts import PromptTemplate
from recbole_llm.models.prompt_recommender import ITEM_HEAD, YES_NO, PromptRecommender, projector
from recbole_llm.models.collm.settings import COLLM_SETTINGS
from recbole_llm.training.pretrain import load_frozen_tables

_FIELDS = {"history", "user", "target_title", "target"}


class CoLLM(PromptRecommender):
    """CoLLM (see the module docstring)."""

    ORIGINAL_OUTPUTS = (YES_NO,)
    other_parameter_name = ["graph_source"]

    def __init__(self, config, dataset, backbone=None):
        super().__init__(config, dataset, COLLM_SETTINGS, backbone=backbone)
        s = self.settings
        d = s.graph_embedding_size
        self.n_users = dataset.user_num
        self.register_buffer("user_graph_emb", torch.zeros(self.n_users, d))
        self.register_buffer("item_graph_emb", torch.zeros(self.n_items, d))
        self.cie = projector(d, d * s.proj_mid_times, self.hidden, s.proj_dropout, activation=nn.ReLU)
        kind = "next" if self.output == ITEM_HEAD else "yes_no"
        self.templates = {}
        for hybrid, key in ((True, f"prompt_{kind}"), (False, f"text_prompt_{kind}")):
            template = PromptTemplate(getattr(s, key))
            unknown = set(template.fields) - _FIELDS
            if unknown:
                raise ConfigError(f"CoLLM setting collm_{key}: unknown placeholders {sorted(unknown)}; use "
                                  f"{{history}}, {{user}}, {{target_title}}, {{target}}.")
            self.templates[hybrid] = template
        self.eval_hybrid = s.cie_epochs > 0  # without the CIE stage the mapping is untrained: text prompts
        self.graph_source = ""

    def set_graph_embeddings(self, user, item, source=""):
        """Copy LightGCN's ``[n_users, d]`` / ``[n_items, d]`` tables into the frozen buffers."""
        load_frozen_tables(self, {"user_graph_emb": user, "item_graph_emb": item}, "LightGCN",
                           "collm_graph_embedding_size must equal the pretrained LightGCN's embedding_size.")
        self.graph_source = source or self.graph_source

    def mapping_parameters(self):
        return list(self.cie.parameters())

    def prompt(self, interaction, rows, hybrid, targets=None):
        s = self.settings
        histories = self.histories(interaction)
        template = self.templates[hybrid]
        users = interaction[self.USER_ID].to(self.dev)
        user_vec = self.cie(self.user_graph_emb[users]) if hybrid and "user" in template.fields else None
        item_vec = {}
        if hybrid:
            wanted = set()
            if s.history_ids:
                wanted.update(i for h in histories for i in h)
            if targets is not None:
                wanted.update(targets.tolist())
            if wanted:
                ids = torch.tensor(sorted(wanted), device=self.dev)
                rows_of = {i: k for k, i in enumerate(ids.tolist())}
                mapped = self.cie(self.item_graph_emb[ids])
                item_vec = {i: mapped[k] for i, k in rows_of.items()}
        prompts = []
        for b in rows:
            history = []
            for j, item in enumerate(histories[b]):
                if j:
                    history.append(", ")
                history.append(self.titles[item])
                if hybrid and s.history_ids:
                    history.append(item_vec[item])
            values = {"history": history, "user": user_vec[b] if user_vec is not None else None}
            if targets is not None:
                t = int(targets[b])
                values["target_title"] = self.titles[t]
                values["target"] = item_vec.get(t) if hybrid else None
            else:
                values["target_title"] = values["target"] = None
            prompts.append(template.fill(**values))
        return prompts
