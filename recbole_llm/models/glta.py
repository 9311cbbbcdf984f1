r"""GLTA: Training Large Recommendation Models via Graph-Language Token Alignment.

Yang et al., WWW Companion 2025 (https://doi.org/10.1145/3701716.3715583).

The model (this file) holds what GLTA learns and how it scores; :class:`GLTATrainer`
(``recbole_llm/trainers/glta_trainer.py``) runs the stages in order:

1. **Graph pretraining** - RecBole's LightGCN on the training split; its final (layer-averaged)
   user and item embeddings :math:`E_u, E_i` are copied into the frozen buffers
   ``user_graph_emb`` / ``item_graph_emb``.
2. **Item-text alignment** (Eq. 1) - ``item_projector`` :math:`V_i = W_i E_i + b_i` maps item nodes
   into the LLM's token-embedding space; trained with the GLLM head on the item-text template.
3. **Profile / prediction generation** - the frozen LLM writes a profile and a prediction for
   each user from the descriptions of the user's training-history items (two instructions, the
   paper's Fig. 1(c)/(d)); greedy, cached on disk, kept in the checkpoint.
4. **User-item alignment** (Eq. 2) - ``user_projector`` :math:`V_u = W_u E_u + b_u`; the template
   holds the profile and prediction texts, the user token, the user's history item tokens, and
   ``L`` prediction slots; trained with the GLLM head (Eq. 3).

**GLLM layer** (``gllm``, :class:`GLLMLayer`): a linear map from the last-layer hidden states at the
``L`` prediction slots to ``|I|`` item logits; ``glta_gllm_head: linear`` gives it a free ``|I| x H``
weight (the paper's wording), ``graph`` (the CPU default) factors the weight through the frozen item
node embeddings, ``W = E_i G``, as an LLM's tied LM head matches hidden states against its token
embeddings. Measured on ml-100k (valid NDCG@10 of the GLLM layer alone trained on frozen slot
states): 0.19 with the free weight, 0.22 factored. ``glta_head_epochs`` adds GLLM-only passes over
the slot states an epoch already computed (cheap: no LLM forward/backward). Loss (Eq. 3): cross-entropy at the first ``k`` slots against ``k``
ground-truth training items shuffled anew every epoch (``k = min(L, #targets)``); slots past ``k``
are masked, so users with fewer than ``L`` items are handled. Per user the loss is the mean over
its ``k`` slots, and the batch loss is the mean over users.

Only the projectors and the GLLM layer train; the LLM is frozen and lives outside the module
tree (``self.backbone`` is a plain object), so it is never in ``state_dict()`` or checkpoints.

**How we read the templates** (the paper's Fig. 2 is not in its text):

* *Item-text alignment* - "queries the LLM to reorder the item language information and match the
  token with the predicted logits". We give the LLM the descriptions of ``m`` items (numbered) and
  the ``m`` item tokens in a shuffled order, and ask for the item tokens in the order of the
  descriptions: slot ``j`` must be matched (through the GLLM logits, cross-entropy over all items)
  to the item of description ``j``. To solve it the LLM has to match each projected node token
  with its text, which is the alignment the stage is for. ``m = 1`` (``glta_ia_items_per_prompt``)
  reduces it to "description + item token -> which item".
* *User-item alignment* - "profile: ...\\nprediction: ...\\nUser <u> history: <i1> <i2> ...\\nNext:
  [slot_1] ... [slot_L]". Texts come first and trainable tokens last, so the keys/values of the
  text (fixed per user once generated) are computed once and cached; see
  :class:`recbole_llm.llm.prompts.PrefixKVStore`.
* A prediction slot's input is the embedding of the text ``glta_slot_token`` (mean of its tokens,
  one position per slot); slots differ by position only. Training and the default inference use
  these same inputs; AR feeds predicted item tokens back instead (the train/inference mismatch
  the paper blames for AR's weak results).
* In the user-item stage the sampled target items are kept out of the history shown in the
  prompt (``glta_ua_targets_in_history: false``), otherwise the cheapest solution is to copy
  history tokens, which the evaluator masks anyway; set it true for the literal reading.

**Scoring** (``full_sort_predict``, for RecBole's full-ranking evaluator):

* ``first_k`` (paper default): slot ``t`` (``t = 1..k``, ``k = glta_infer_slots`` or ``L``) picks the
  highest-logit item that is not a training item of the user and not picked by an earlier slot.
  Picked items get score ``1e4 + (k - t)`` (ranked in slot order); every other item gets the mean
  over the ``k`` slots of its log-softmax probability (so ranks past ``k`` are still meaningful).
* ``first_logit`` (FL): the log-softmax of the first slot, i.e. top-k of the first logit.
* ``autoregressive`` (AR): slot 1 as above, then the projected token of each picked item is fed
  back as the next input, ``k`` steps with a key/value cache; picks ranked first, the rest by
  slot 1's log-softmax.

RecBole sets the scores of the user's history items to ``-inf`` afterwards, as for any model.
Scores of all users are computed once per parameter state and reused (valid and test prompts are
identical: both are built from the training split only).

**Ablations** (config switches): ``glta_item_alignment: false`` (w/o IA: no stage 2; both
projectors train in stage 4), ``glta_user_alignment: false`` (w/o UA: the user's id as text
instead of the user token), ``glta_profile_tokens: false`` (w/o PF), ``glta_prediction_tokens:
false`` (w/o PD), ``glta_inference: autoregressive`` (AR) / ``first_logit`` (FL).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType, ModelType

from recbole_llm.errors import ConfigError
from recbole_llm.llm.backbone import backbone_from_config
from recbole_llm.llm.prompts import PrefixKVStore, PromptBuilder, PromptTemplate, Vectors

logger = logging.getLogger(__name__)

INFERENCE_MODES = ("first_k", "autoregressive", "first_logit")
PICK_BONUS = 1.0e4


def _cfg(config, key, default=None):
    try:
        value = config[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


class GLLMLayer(nn.Module):
    r"""Graph-Language Logits Matching layer: last-layer hidden states ``[..., H]`` -> ``|I|`` logits.

    ``linear``: a free linear layer (weight ``[|I|, H]``), the paper's literal description.
    ``graph``: the same linear map with its weight factored through the frozen item node
    embeddings, ``W = E_i G`` (``G``: ``[d, H]``, trained) plus a free bias - the way an LLM's
    (tied) LM head matches hidden states against its token embeddings, with the graph's item
    nodes as the "vocabulary". With 1-2k items and a few thousand users it generalises much
    better than |I| x H free weights (measured on ml-100k, see the README).
    """

    def __init__(self, hidden, n_items, graph_dim, mode="linear"):
        super().__init__()
        if mode not in ("linear", "graph"):
            raise ConfigError(f"glta_gllm_head must be 'linear' or 'graph', got {mode!r}")
        self.mode = mode
        if mode == "linear":
            self.weight = nn.Parameter(torch.empty(n_items, hidden))
        else:
            self.proj = nn.Parameter(torch.empty(graph_dim, hidden))
        self.bias = nn.Parameter(torch.zeros(n_items))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight if self.mode == "linear" else self.proj, std=0.02 if self.mode == "linear" else 0.01)
        nn.init.zeros_(self.bias)

    def forward(self, hidden, item_emb=None):
        if self.mode == "linear":
            return F.linear(hidden, self.weight, self.bias)
        return F.linear(F.linear(hidden, self.proj), item_emb.to(hidden)) + self.bias


class GLTA(GeneralRecommender):
    r"""GLTA (see the module docstring). Scores with the GLLM head over a frozen LLM."""

    type = ModelType.GENERAL
    # The training dataloader yields (user, pos, neg) triples: they train the stage-1 LightGCN.
    # The alignment stages iterate users themselves (GLTATrainer).
    input_type = InputType.PAIRWISE
    other_parameter_name = ["user_profiles", "user_predictions", "graph_source"]

    def __init__(self, config, dataset, backbone=None):
        super().__init__(config, dataset)
        self.config = config
        self.dataset_name = config["dataset"]
        # -- switches -------------------------------------------------------------------------
        self.item_alignment = bool(_cfg(config, "glta_item_alignment", True))
        self.user_alignment = bool(_cfg(config, "glta_user_alignment", True))
        self.profile_tokens = bool(_cfg(config, "glta_profile_tokens", True))
        self.prediction_tokens = bool(_cfg(config, "glta_prediction_tokens", True))
        self.inference = str(_cfg(config, "glta_inference", "first_k"))
        if self.inference not in INFERENCE_MODES:
            raise ConfigError(f"glta_inference {self.inference!r} is not one of {', '.join(INFERENCE_MODES)}.")
        self.n_slots = int(_cfg(config, "glta_slots", 10))
        self.infer_slots = int(_cfg(config, "glta_infer_slots", 0) or self.n_slots)
        if not 1 <= self.infer_slots <= self.n_slots and self.inference == "first_k":
            raise ConfigError(f"glta_infer_slots must be between 1 and glta_slots ({self.n_slots}).")
        self.history_len = int(_cfg(config, "glta_history_items", 10))
        self.targets_in_history = bool(_cfg(config, "glta_ua_targets_in_history", False))
        self.target_fraction = float(_cfg(config, "glta_ua_target_fraction", 0.5))
        self.ia_items_per_prompt = int(_cfg(config, "glta_ia_items_per_prompt", 4))
        self.graph_dim = int(_cfg(config, "glta_graph_embedding_size", 64))
        self.eval_batch_users = int(_cfg(config, "glta_eval_batch_size", 32))
        self.text_max_tokens = int(_cfg(config, "glta_text_max_tokens", 32))
        self.item_text_max_tokens = int(_cfg(config, "glta_item_text_max_tokens", 16))
        # -- training split (the dataset RecBole passes to a model is the training split) -----
        inter = dataset.inter_feat
        uids = inter[dataset.uid_field].numpy()
        iids = inter[dataset.iid_field].numpy()
        order = np.argsort(uids, kind="stable")  # keep each user's items in file/time order
        bounds = np.searchsorted(uids[order], np.arange(self.n_users + 1))
        self.user_items = [iids[order[bounds[u] : bounds[u + 1]]] for u in range(self.n_users)]
        self.register_buffer("history_mask", self._history_mask(), persistent=False)
        self.user_tokens_text = [str(t) for t in dataset.field2id_token[dataset.uid_field]]
        # -- the LLM (frozen, not a submodule) --------------------------------------------------
        self.backbone = backbone if backbone is not None else backbone_from_config(config)
        hidden = self.backbone.hidden_size
        self.item_texts = self._load_item_texts(config, dataset)
        # -- trainable parts --------------------------------------------------------------------
        self.item_projector = nn.Linear(self.graph_dim, hidden)  # Eq. 1
        self.user_projector = nn.Linear(self.graph_dim, hidden)  # Eq. 2
        self.gllm_head = str(_cfg(config, "glta_gllm_head", "linear"))
        self.gllm = GLLMLayer(hidden, self.n_items, self.graph_dim, self.gllm_head)  # GLLM layer
        self._init_weights()
        # -- frozen graph embeddings (filled by stage 1) ----------------------------------------
        self.register_buffer("user_graph_emb", torch.zeros(self.n_users, self.graph_dim))
        self.register_buffer("item_graph_emb", torch.zeros(self.n_items, self.graph_dim))
        slot_ids = torch.tensor(self.backbone.encode(str(_cfg(config, "glta_slot_token", " [item]"))) or (0,))
        with torch.no_grad():
            slot = self.backbone.embed(slot_ids).mean(0).detach().float().cpu()
        self.register_buffer("slot_embedding", slot, persistent=False)
        # -- texts generated by the LLM (stage 3), kept in checkpoints via other_parameter ----
        self.user_profiles = [""] * self.n_users
        self.user_predictions = [""] * self.n_users
        self.graph_source = ""
        # -- templates ------------------------------------------------------------------------
        self.ia_template = PromptTemplate(str(_cfg(config, "glta_ia_template",
            "Item descriptions:\n{descriptions}Item tokens:{item_tokens}\nItem tokens in the order of the descriptions:{slots}")))
        self.ia_description_format = str(_cfg(config, "glta_ia_description_format", "({n}) {text}\n"))
        self.ua_template = PromptTemplate(str(_cfg(config, "glta_ua_template",
            "{profile}{prediction}User{user} history:{history}\nNext:{slots}")))
        self.ua_profile_format = str(_cfg(config, "glta_ua_profile_format", "Profile: {text}\n"))
        self.ua_prediction_format = str(_cfg(config, "glta_ua_prediction_format", "Prediction: {text}\n"))
        self.ua_user_text_format = str(_cfg(config, "glta_ua_user_text_format", " user_{id}"))
        self.ua_empty_history = str(_cfg(config, "glta_ua_empty_history", " none"))
        # -- prompt machinery -------------------------------------------------------------------
        self.use_prefix_cache = bool(_cfg(config, "glta_prefix_cache", True))
        kv_dtype = str(_cfg(config, "glta_kv_cache_dtype", "float16"))
        self._kv_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(kv_dtype)
        if self._kv_dtype is None:
            raise ConfigError("glta_kv_cache_dtype must be float16, bfloat16 or float32.")
        self._stores: dict[str, PrefixKVStore] = {}
        self._score_cache_key = None
        self._score_cache = None
        self._recent_scores: dict = {}  # state key -> scores of the last few parameter states
        self.token_stats = {"ia": 0, "ua": 0, "infer": 0, "prefix": 0}
        self.keep_slot_states = False  # set by the trainer for head-only passes (glta_head_epochs)
        self.slot_state_log: list = []

    # ------------------------------------------------------------------------------------------
    # setup helpers
    # ------------------------------------------------------------------------------------------
    def _init_weights(self):
        for layer in (self.item_projector, self.user_projector):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.gllm.reset_parameters()

    def _history_mask(self):
        mask = torch.zeros(self.n_users, self.n_items, dtype=torch.bool)
        for u, items in enumerate(self.user_items):
            if len(items):
                mask[u, torch.as_tensor(items, dtype=torch.long)] = True
        return mask

    def _load_item_texts(self, config, dataset):
        from recbole_llm.data.text import item_texts

        texts = item_texts(config, dataset, model_name="GLTA", tokenizer=self.backbone.tokenizer)
        return [self.backbone.truncate_text(t, self.item_text_max_tokens) for t in texts]

    def set_graph_embeddings(self, user_emb, item_emb, source=""):
        """Copy the stage-1 (LightGCN) embeddings into the frozen buffers."""
        if tuple(user_emb.shape) != tuple(self.user_graph_emb.shape) or tuple(item_emb.shape) != tuple(self.item_graph_emb.shape):
            raise ConfigError(
                f"graph embeddings have shapes {tuple(user_emb.shape)}/{tuple(item_emb.shape)}, GLTA expects "
                f"{tuple(self.user_graph_emb.shape)}/{tuple(self.item_graph_emb.shape)} (glta_graph_embedding_size)."
            )
        with torch.no_grad():
            self.user_graph_emb.copy_(user_emb.to(self.user_graph_emb))
            self.item_graph_emb.copy_(item_emb.to(self.item_graph_emb))
        self.graph_source = source
        if bool(_cfg(self.config, "glta_projector_norm_match", True)):
            self.match_projector_norms()
        self.invalidate()

    @torch.no_grad()
    def match_projector_norms(self):
        """Scale the (freshly initialised) projectors so that projected node tokens have the mean
        norm of the LLM's own token embeddings: the frozen LLM then sees inputs of a familiar scale."""
        table = self.backbone.model.get_input_embeddings().weight
        target = float(table.float().norm(dim=1).mean())
        for proj, emb in ((self.item_projector, self.item_graph_emb[1:]), (self.user_projector, self.user_graph_emb[1:])):
            if emb.numel() == 0:
                continue
            current = float(proj(emb.to(proj.weight)).norm(dim=1).mean())
            if current > 0:
                proj.weight.mul_(target / current)
                proj.bias.mul_(target / current)

    def set_user_texts(self, profiles=None, predictions=None):
        if profiles is not None:
            self.user_profiles = list(profiles)
        if predictions is not None:
            self.user_predictions = list(predictions)
        self.store("ua").clear()
        self.invalidate()

    def invalidate(self):
        """Forget cached scores (called when anything they depend on changes)."""
        self._score_cache_key = None
        self._score_cache = None

    def load_other_parameter(self, para):
        before = (list(self.user_profiles), list(self.user_predictions))
        super().load_other_parameter(para)
        if (list(self.user_profiles), list(self.user_predictions)) != before:
            self.store("ua").clear()  # the cached prompt prefixes hold the old texts
            self.invalidate()

    def store(self, name) -> PrefixKVStore:
        if name not in self._stores:
            batch = int(_cfg(self.config, "glta_prefix_batch_size", 16))
            self._stores[name] = PrefixKVStore(self.backbone, storage_dtype=self._kv_dtype, batch_size=batch)
        return self._stores[name]

    def builder(self, name) -> PromptBuilder:
        return PromptBuilder(self.backbone, padding_side="right",
                             prefix_store=self.store(name) if self.use_prefix_cache else None)

    def total_parameter_count(self):
        return sum(p.numel() for p in self.parameters()) + self.backbone.parameter_count()

    def trainable_parameters(self, stage):
        """Parameters trained in ``stage`` (``item_text`` or ``user_item``), as in the paper."""
        if stage == "item_text":
            return list(self.item_projector.parameters()) + list(self.gllm.parameters())
        if stage == "user_item":
            params = list(self.gllm.parameters())
            if self.user_alignment:
                params += list(self.user_projector.parameters())
            if not self.item_alignment:  # w/o IA: both projectors train together here
                params += list(self.item_projector.parameters())
            return params
        raise ValueError(stage)

    # ------------------------------------------------------------------------------------------
    # tokens and templates
    # ------------------------------------------------------------------------------------------
    def _dev(self):
        return self.backbone.device

    def item_tokens(self, item_ids) -> torch.Tensor:
        """:math:`V_i = W_i E_i + b_i` (Eq. 1) for ``item_ids``."""
        ids = torch.as_tensor(item_ids, dtype=torch.long, device=self.item_graph_emb.device)
        return self.item_projector(self.item_graph_emb[ids]).to(self._dev())

    def user_tokens(self, user_ids) -> torch.Tensor:
        """:math:`V_u = W_u E_u + b_u` (Eq. 2) for ``user_ids``."""
        ids = torch.as_tensor(user_ids, dtype=torch.long, device=self.user_graph_emb.device)
        return self.user_projector(self.user_graph_emb[ids]).to(self._dev())

    def slot_inputs(self, n) -> torch.Tensor:
        return self.slot_embedding.to(self._dev(), self.backbone.dtype).unsqueeze(0).expand(n, -1)

    def ia_prompt(self, items, token_order, item_vectors):
        """Item-text alignment prompt for ``items`` (the descriptions' order = the targets' order);
        the item tokens appear in ``token_order`` (a permutation of ``range(len(items))``)."""
        descriptions = "".join(
            self.ia_description_format.format(n=j + 1, text=self.item_texts[i]) for j, i in enumerate(items)
        )
        values = {
            "descriptions": descriptions,
            "n": str(len(items)),
            "item_tokens": Vectors("item_tokens", item_vectors[token_order]),
            "slots": Vectors("slots", self.slot_inputs(len(items))),
        }
        return self.ia_template.fill(**{k: v for k, v in values.items() if k in self.ia_template.fields})

    def _user_text(self, texts, u, fmt, max_tokens):
        text = texts[u] if u < len(texts) else ""
        text = self.backbone.truncate_text(text, max_tokens) if text else ""
        return fmt.format(text=text) if text else ""

    def ua_prompt(self, u, history, user_vector=None, n_slots=None, slot_values=None):
        """User-item alignment prompt of user ``u`` with ``history`` (item ids, training split)."""
        values = {
            "profile": self._user_text(self.user_profiles, u, self.ua_profile_format, self.text_max_tokens)
            if self.profile_tokens else "",
            "prediction": self._user_text(self.user_predictions, u, self.ua_prediction_format, self.text_max_tokens)
            if self.prediction_tokens else "",
            "user": Vectors("user", user_vector) if self.user_alignment
            else self.ua_user_text_format.format(id=self.user_tokens_text[u]),
            "history": Vectors("history", self.item_tokens(history)) if len(history) else self.ua_empty_history,
            "slots": Vectors("slots", slot_values if slot_values is not None else self.slot_inputs(n_slots or self.n_slots)),
        }
        return self.ua_template.fill(**{k: v for k, v in values.items() if k in self.ua_template.fields})

    def inference_history(self, u):
        items = self.user_items[u]
        return items[-self.history_len :] if self.history_len > 0 else items[:0]

    def sample_user_targets(self, u, rng):
        """``(targets, history)`` of user ``u`` for one training epoch: ``k <= L`` training items in a
        random order, and the history shown in the prompt (random, at most ``glta_history_items``, in
        the original order; without the targets unless ``glta_ua_targets_in_history``)."""
        items = self.user_items[u]
        n = len(items)
        perm = rng.permutation(n)
        if self.targets_in_history:
            k = min(self.n_slots, n)
            targets = items[perm[:k]]
            pool = np.arange(n)
        else:
            k = min(self.n_slots, max(1, int(math.ceil(n * self.target_fraction))))
            targets = items[perm[:k]]
            pool = np.sort(perm[k:])
        if self.history_len > 0 and len(pool) > self.history_len:
            pool = np.sort(rng.choice(pool, self.history_len, replace=False))
        elif self.history_len <= 0:
            pool = pool[:0]
        return targets, items[pool]

    # ------------------------------------------------------------------------------------------
    # GLLM
    # ------------------------------------------------------------------------------------------
    def gllm_logits(self, slot_hidden) -> torch.Tensor:
        """``[B, L, H]`` last-layer hidden states at the slots -> ``[B, L, |I|]`` item logits (item 0,
        RecBole's padding id, gets ``-inf``)."""
        logits = self.gllm_forward(slot_hidden)
        logits[..., 0] = float("-inf")
        return logits

    def gllm_forward(self, hidden) -> torch.Tensor:
        """The GLLM layer on hidden states ``[..., H]`` -> ``[..., |I|]`` (no masking)."""
        return self.gllm(hidden.to(self.gllm.bias.dtype).to(self.gllm.bias.device), self.item_graph_emb)

    @staticmethod
    def gllm_loss(logits, targets) -> torch.Tensor:
        """Eq. 3 with masking: ``targets`` ``[B, L]`` holds item ids at the first ``k`` slots of each
        example and -1 after; mean over each example's valid slots, then over examples."""
        valid = targets >= 0
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.masked_fill(~valid, -100).flatten(),
                             reduction="none", ignore_index=-100).view_as(targets)
        per_example = ce.sum(1) / valid.sum(1).clamp(min=1)
        has = valid.any(1)
        return per_example[has].mean() if has.any() else logits.sum() * 0.0

    def _forward_slots(self, prompts, store_name, count_key):
        builder = self.builder(store_name)
        batch = builder.build(prompts)
        hidden = builder.forward(batch)
        self.token_stats[count_key] += batch.tokens
        return batch, batch.gather(hidden, "slots")

    # ------------------------------------------------------------------------------------------
    # losses of the two alignment stages
    # ------------------------------------------------------------------------------------------
    def item_text_loss(self, groups, orders):
        """Item-text alignment loss for item ``groups`` (lists of item ids) with token ``orders``."""
        flat = sorted({int(i) for g in groups for i in g})
        index = {i: j for j, i in enumerate(flat)}
        vectors = self.item_tokens(flat)
        prompts, targets = [], torch.full((len(groups), max(len(g) for g in groups)), -1, dtype=torch.long)
        for b, (items, order) in enumerate(zip(groups, orders)):
            rows = torch.tensor([index[int(i)] for i in items], device=vectors.device)
            prompts.append(self.ia_prompt(list(items), torch.as_tensor(order, device=vectors.device), vectors[rows]))
            targets[b, : len(items)] = torch.as_tensor(np.asarray(items), dtype=torch.long)
        batch, slot_hidden = self._forward_slots(prompts, "ia", "ia")
        logits = self.gllm_logits(slot_hidden)
        targets = targets.to(logits.device)
        targets[~(torch.arange(targets.shape[1], device=logits.device)[None] < batch.counts["slots"][:, None])] = -1
        self._keep(slot_hidden, targets)
        return self.gllm_loss(logits, targets)

    def _keep(self, slot_hidden, targets):
        """Keep the (detached) slot states and targets of the last loss for head-only passes."""
        if self.keep_slot_states:
            valid = targets >= 0
            self.slot_state_log.append((slot_hidden.detach()[valid].float().cpu(), targets[valid].cpu(),
                                        (1.0 / valid.sum(1).clamp(min=1).float())[:, None].expand_as(targets)[valid].cpu()))

    def user_item_loss(self, users, targets_list, histories):
        """User-item alignment loss (Eq. 3) for ``users`` with their epoch's targets and histories."""
        users = [int(u) for u in users]
        user_vecs = self.user_tokens(users) if self.user_alignment else [None] * len(users)
        prompts = [self.ua_prompt(u, h, user_vector=user_vecs[b]) for b, (u, h) in enumerate(zip(users, histories))]
        _, slot_hidden = self._forward_slots(prompts, "ua", "ua")
        logits = self.gllm_logits(slot_hidden)
        targets = torch.full((len(users), self.n_slots), -1, dtype=torch.long)
        for b, t in enumerate(targets_list):
            t = np.asarray(t)[: self.n_slots]
            targets[b, : len(t)] = torch.as_tensor(t, dtype=torch.long)
        targets = targets.to(logits.device)
        self._keep(slot_hidden, targets)
        return self.gllm_loss(logits, targets)

    def calculate_loss(self, interaction):
        """User-item alignment loss on the users of a RecBole training batch (lets RecBole's plain
        ``Trainer`` train the final stage; :class:`GLTATrainer` runs every stage instead)."""
        users = torch.unique(interaction[self.USER_ID]).tolist()
        rng = np.random.default_rng()
        users = [u for u in users if len(self.user_items[u])]
        samples = [self.sample_user_targets(u, rng) for u in users]
        return self.user_item_loss(users, [s[0] for s in samples], [s[1] for s in samples])

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------
    def _distinct_picks(self, logits, users, k):
        """``[B, k]`` items: slot t's best item that is neither a training item nor picked before."""
        excluded = self.history_mask[torch.as_tensor(users, device=self.history_mask.device)].to(logits.device).clone()
        excluded[:, 0] = True
        picks = []
        for t in range(k):
            row = logits[:, t].masked_fill(excluded, float("-inf"))
            pick = row.argmax(-1)
            picks.append(pick)
            excluded[torch.arange(len(users), device=logits.device), pick] = True
        return torch.stack(picks, 1)

    def _scores_from_picks(self, base, picks):
        scores = base.clone()
        k = picks.shape[1]
        bonus = PICK_BONUS + torch.arange(k, 0, -1, device=scores.device, dtype=scores.dtype) - 1
        scores.scatter_(1, picks, bonus.unsqueeze(0).expand(picks.shape[0], -1))
        return scores

    @torch.no_grad()
    def slot_logits(self, users):
        """``[B, L, |I|]`` GLLM logits of ``users`` on their inference prompts."""
        users = [int(u) for u in users]
        user_vecs = self.user_tokens(users) if self.user_alignment else [None] * len(users)
        prompts = [self.ua_prompt(u, self.inference_history(u), user_vector=user_vecs[b]) for b, u in enumerate(users)]
        _, slot_hidden = self._forward_slots(prompts, "ua", "infer")
        return self.gllm_logits(slot_hidden)

    @torch.no_grad()
    def _autoregressive_scores(self, users):
        users = [int(u) for u in users]
        k = self.infer_slots
        user_vecs = self.user_tokens(users) if self.user_alignment else [None] * len(users)
        prompts = [self.ua_prompt(u, self.inference_history(u), user_vector=user_vecs[b], n_slots=1)
                   for b, u in enumerate(users)]
        builder = self.builder("ua")
        batch = builder.build(prompts)
        out = self.backbone.forward_embeds(batch.inputs_embeds, attention_mask=batch.attention_mask,
                                           position_ids=batch.position_ids, past_key_values=batch.past_key_values,
                                           use_cache=True)
        self.token_stats["infer"] += batch.tokens
        hidden = batch.gather(out.last_hidden_state, "slots")[:, 0]
        cache, mask = out.past_key_values, batch.attention_mask
        next_pos = batch.position_ids.gather(1, batch.positions["slots"][:, :1]) + 1
        excluded = self.history_mask[torch.as_tensor(users, device=self.history_mask.device)].to(self._dev()).clone()
        excluded[:, 0] = True
        first_logits, picks = None, []
        rows = torch.arange(len(users), device=self._dev())
        for step in range(k):
            logits = self.gllm_logits(hidden.unsqueeze(1))[:, 0]
            if first_logits is None:
                first_logits = logits
            pick = logits.to(excluded.device).masked_fill(excluded, float("-inf")).argmax(-1)
            picks.append(pick)
            excluded[rows, pick] = True
            if step == k - 1:
                break
            token = self.item_tokens(pick).to(self.backbone.dtype).unsqueeze(1)
            mask = torch.cat([mask, torch.ones(len(users), 1, dtype=mask.dtype, device=mask.device)], 1)
            out = self.backbone.forward_embeds(token, attention_mask=mask, position_ids=next_pos,
                                               past_key_values=cache, use_cache=True)
            self.token_stats["infer"] += len(users)
            cache, hidden, next_pos = out.past_key_values, out.last_hidden_state[:, 0], next_pos + 1
        base = F.log_softmax(first_logits.float(), -1)
        return self._scores_from_picks(base, torch.stack(picks, 1))

    @torch.no_grad()
    def score_users(self, users) -> torch.Tensor:
        """``[B, |I|]`` scores of ``users`` (no caching)."""
        if self.inference == "autoregressive":
            return self._autoregressive_scores(users)
        logits = self.slot_logits(users).float()
        if self.inference == "first_logit":
            return F.log_softmax(logits[:, 0], -1)
        k = self.infer_slots
        base = F.log_softmax(logits[:, :k], -1).mean(1)
        picks = self._distinct_picks(logits, [int(u) for u in users], k)
        return self._scores_from_picks(base, picks)

    def _state_key(self):
        h = hashlib.sha1()
        for tensor in list(self.state_dict().values()):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        h.update(repr((self.inference, self.infer_slots, self.history_len)).encode())
        h.update(hashlib.sha1("\x00".join(self.user_profiles + self.user_predictions).encode()).digest())
        return h.hexdigest()

    @torch.no_grad()
    def all_user_scores(self) -> torch.Tensor:
        """``[n_users, |I|]`` scores of every user, computed once per parameter state."""
        key = self._state_key()
        if self._score_cache is not None and self._score_cache_key == key:
            return self._score_cache
        if key in self._recent_scores:  # e.g. the best epoch reloaded for the test evaluation
            self._score_cache, self._score_cache_key = self._recent_scores[key], key
            return self._score_cache
        was_training = self.training
        self.eval()
        scores = torch.full((self.n_users, self.n_items), float("-inf"))
        users = [u for u in range(1, self.n_users)]
        users.sort(key=lambda u: (len(self.inference_history(u)), u))  # similar lengths batch together
        start = time.perf_counter()
        for i in range(0, len(users), self.eval_batch_users):
            chunk = users[i : i + self.eval_batch_users]
            scores[torch.tensor(chunk)] = self.score_users(chunk).float().cpu()
        logger.info("GLTA scored %d users in %.1f s (%s)", len(users), time.perf_counter() - start, self.inference)
        self.train(was_training)
        self._score_cache, self._score_cache_key = scores, key
        self._recent_scores[key] = scores
        while len(self._recent_scores) > int(_cfg(self.config, "glta_score_cache_states", 3)):
            self._recent_scores.pop(next(iter(self._recent_scores)))
        return scores

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID].cpu()
        return self.all_user_scores()[users].to(self.device).flatten()

    def predict(self, interaction):
        users = interaction[self.USER_ID].cpu()
        items = interaction[self.ITEM_ID].cpu()
        return self.all_user_scores()[users, items].to(self.device)
