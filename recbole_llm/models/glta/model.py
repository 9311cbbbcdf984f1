r"""GLTA: Training Large Recommendation Models via Graph-Language Token Alignment.

Yang et al., WWW Companion 2025 (https://doi.org/10.1145/3701716.3715583).

The model holds what GLTA learns and how it scores; :class:`~recbole_llm.models.glta.trainer.GLTATrainer`
runs its stages (graph pretraining, item-text alignment, profile/prediction generation, user-item
alignment). Only the projectors (Eqs. 1-2, :math:`V = W E + b` from LightGCN node embeddings into the
LLM's token space) and the GLLM layer (``gllm.py``) train; the LLM is frozen and lives outside the
module tree (``self.backbone`` is a plain object), so it is never in ``state_dict()`` or checkpoints.

Eq. 3: cross-entropy at the first ``k`` prediction slots against ``k`` training items of the user
shuffled anew every epoch (``k = min(L, #targets)``); slots past ``k`` are masked. A slot's input is
the embedding of the text ``glta_slot_token``; slots differ by position only. In the user-item stage
the sampled targets are kept out of the history shown in the prompt (``glta_ua_targets_in_history:
false``), otherwise the cheapest solution is to copy history tokens, which the evaluator masks
anyway. Prompts: ``prompts.py``; scoring modes: ``scoring.py``; settings: ``settings.py`` (defaults
in ``properties/model/GLTA.yaml``).

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

from recbole_llm.data.interactions import user_histories
from recbole_llm.errors import ConfigError
from recbole_llm.llm.loading import backbone_from_config
from recbole_llm.llm.prompts import PrefixKVStore, PromptBuilder
from recbole_llm.models.glta.gllm import GLLMLayer, gllm_loss
from recbole_llm.models.glta.prompts import GLTAPrompts
from recbole_llm.models.glta.scoring import autoregressive_scores, first_k_scores, first_logit_scores
from recbole_llm.models.glta.settings import GLTA_SETTINGS, INFERENCE_MODES
from recbole_llm.models.score_cache import ScoreCache
from recbole_llm.training.pretrain import load_frozen_tables
from recbole_llm.training.progress import StepProgress

logger = logging.getLogger(__name__)

_KV_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class GLTA(ScoreCache, GeneralRecommender):
    r"""GLTA (see the module docstring). Scores with the GLLM head over a frozen LLM."""

    type = ModelType.GENERAL
    # The training dataloader yields (user, pos, neg) triples: they train the stage-1 LightGCN.
    # The alignment stages iterate users themselves (GLTATrainer).
    input_type = InputType.PAIRWISE
    #: StagedTrainer passes a DDP rank's evaluation users to ``full_sort_predict`` (``users=``).
    scores_shards = True
    other_parameter_name = ["user_profiles", "user_predictions", "graph_source"]

    def __init__(self, config, dataset, backbone=None):
        super().__init__(config, dataset)
        self.config = config
        s = self.settings = GLTA_SETTINGS.read(config)
        self.item_alignment, self.user_alignment = s.item_alignment, s.user_alignment
        self.profile_tokens, self.prediction_tokens = s.profile_tokens, s.prediction_tokens
        self.inference = s.inference
        self.n_slots = s.slots
        self.infer_slots = s.infer_slots or s.slots
        if self.inference == "first_k" and self.infer_slots > self.n_slots:
            raise ConfigError(f"GLTA setting glta_infer_slots={s.infer_slots} is invalid: it must be between 0 "
                              f"(= glta_slots) and glta_slots ({self.n_slots}).")
        if self.n_slots > dataset.item_num - 1:
            raise ConfigError(f"GLTA setting glta_slots={self.n_slots} is invalid: a user's slots name distinct items, "
                              f"so at most the {dataset.item_num - 1} items of {config['dataset']} (the paper uses 10 to 30).")
        self.history_len = s.history_items
        self.graph_dim = s.graph_embedding_size
        # -- training split (the dataset RecBole passes to a model is the training split) -----
        self.user_items = user_histories(dataset)  # each user's items in file/time order
        self.register_buffer("history_mask", self._history_mask(), persistent=False)
        self.user_tokens_text = [str(t) for t in dataset.field2id_token[dataset.uid_field]]
        # -- the LLM (frozen, not a submodule) --------------------------------------------------
        self.backbone = backbone if backbone is not None else backbone_from_config(config)
        hidden = self.backbone.hidden_size
        self.item_texts = self._load_item_texts(config, dataset)
        # -- trainable parts --------------------------------------------------------------------
        self.item_projector = nn.Linear(self.graph_dim, hidden)  # Eq. 1
        self.user_projector = nn.Linear(self.graph_dim, hidden)  # Eq. 2
        self.gllm = GLLMLayer(hidden, self.n_items, self.graph_dim, s.gllm_head)  # GLLM layer
        self._init_weights()
        # -- frozen graph embeddings (filled by stage 1) ----------------------------------------
        self.register_buffer("user_graph_emb", torch.zeros(self.n_users, self.graph_dim))
        self.register_buffer("item_graph_emb", torch.zeros(self.n_items, self.graph_dim))
        slot_ids = torch.tensor(self.backbone.encode(s.slot_token) or (0,))
        with torch.no_grad():
            slot = self.backbone.embed(slot_ids).mean(0).detach().float().cpu()
        self.register_buffer("slot_embedding", slot, persistent=False)
        # -- texts generated by the LLM (stage 3), kept in checkpoints via other_parameter ----
        self.user_profiles = [""] * self.n_users
        self.user_predictions = [""] * self.n_users
        self.graph_source = ""
        self.prompts = GLTAPrompts(s, self.backbone, self.item_texts, self.user_tokens_text)
        # -- prompt machinery and caches --------------------------------------------------------
        self._kv_dtype = _KV_DTYPES[s.kv_cache_dtype]
        self._stores: dict[str, PrefixKVStore] = {}
        self._recent_scores: dict = {}  # content hash -> scores of the last few parameter states
        self._content_key = None  # content hash of the current state, when known (after a load)
        self.score_computations = 0  # all-user scorings done (tests, logs)
        self.parameter_version = 0  # bumped by optimiser steps, loads, new graph embeddings / texts
        self.token_stats = {"ia": 0, "ua": 0, "infer": 0, "prefix": 0}

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
        return [self.backbone.truncate_text(t, self.settings.item_text_max_tokens) for t in texts]

    def set_graph_embeddings(self, user_emb, item_emb, source=""):
        """Copy the stage-1 (LightGCN) embeddings into the frozen buffers."""
        load_frozen_tables(self, {"user_graph_emb": user_emb, "item_graph_emb": item_emb}, "LightGCN",
                           "glta_graph_embedding_size must equal the pretrained LightGCN's embedding_size.")
        self.graph_source = source
        if self.settings.projector_norm_match:
            self.match_projector_norms()
        self.invalidate()

    @torch.no_grad()
    def match_projector_norms(self):
        """Scale the (freshly initialised) projectors so that projected node tokens have the mean
        norm of the LLM's own token embeddings: the frozen LLM then sees inputs of a familiar scale."""
        table = self.backbone.model.get_input_embeddings().weight
        target = float(table.float().norm(dim=1).mean())
        center = self.settings.projector_center
        for proj, emb in ((self.item_projector, self.item_graph_emb[1:]), (self.user_projector, self.user_graph_emb[1:])):
            if emb.numel() == 0:
                continue
            emb = emb.to(proj.weight)
            if center:
                # V = W (E - mean) (+ bias 0): the affine map of Eqs. 1-2 with the bias set to -W mean,
                # so the LLM sees what tells nodes apart (LightGCN embeddings share a large mean)
                mean = emb.mean(0)
                current = float(F.linear(emb - mean, proj.weight).norm(dim=1).mean())
                if current > 0:
                    proj.weight.mul_(target / current)
                    proj.bias.copy_(-F.linear(mean, proj.weight))
                continue
            current = float(proj(emb).norm(dim=1).mean())
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
        """Forget cached scores (called when anything they depend on changes): bumps
        :attr:`parameter_version`."""
        self.parameter_version += 1
        self.forget_cached()
        self._content_key = None

    def watch_optimizer(self, optimizer):
        """Bump :attr:`parameter_version` after every ``optimizer.step()`` (idempotent per optimiser)."""
        if not getattr(optimizer, "_glta_watched", False):
            optimizer.register_step_post_hook(lambda *_: self.invalidate())
            optimizer._glta_watched = True
        return optimizer

    def load_state_dict(self, state_dict, strict=True, assign=False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.invalidate()
        # a reloaded state (e.g. the best epoch before the test evaluation) may have been scored
        # already: its content hash, computed once here, finds those scores
        self._content_key = self._state_hash()
        return result

    def load_other_parameter(self, para):
        before = (list(self.user_profiles), list(self.user_predictions))
        super().load_other_parameter(para)
        if (list(self.user_profiles), list(self.user_predictions)) != before:
            self.store("ua").clear()  # the cached prompt prefixes hold the old texts
            self.invalidate()

    def store(self, name) -> PrefixKVStore:
        if name not in self._stores:
            s = self.settings
            self._stores[name] = PrefixKVStore(
                self.backbone, storage_dtype=self._kv_dtype, batch_size=s.prefix_batch_size,
                storage_device="cpu" if s.kv_cache_device == "cpu" else None,
                max_bytes=int(s.kv_cache_max_gb * 2**30) if s.kv_cache_max_gb > 0 else None)
        return self._stores[name]

    def builder(self, name) -> PromptBuilder:
        return PromptBuilder(self.backbone, padding_side="right",
                             prefix_store=self.store(name) if self.settings.prefix_cache else None)

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
    # tokens and prompts
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
        return self.prompts.item_text(items, item_vectors[token_order], self.slot_inputs(len(items)))

    def ua_prompt(self, u, history, user_vector=None, n_slots=None, slot_values=None):
        """User-item alignment prompt of user ``u`` with ``history`` (item ids, training split)."""
        if slot_values is not None:
            slots = slot_values
        elif self.settings.slot_input == "user" and self.user_alignment and user_vector is not None:
            slots = user_vector.reshape(1, -1).expand(n_slots or self.n_slots, -1)
        else:
            slots = self.slot_inputs(n_slots or self.n_slots)
        return self.prompts.user_item(
            u, self.user_profiles[u] if u < len(self.user_profiles) else "",
            self.user_predictions[u] if u < len(self.user_predictions) else "",
            user_vector if self.user_alignment else None,
            self.item_tokens(history) if len(history) else None, slots)

    def inference_history(self, u):
        items = self.user_items[u]
        return items[-self.history_len :] if self.history_len > 0 else items[:0]

    def inference_prompts(self, users, n_slots=None):
        users = [int(u) for u in users]
        user_vecs = self.user_tokens(users) if self.user_alignment else [None] * len(users)
        return [self.ua_prompt(u, self.inference_history(u), user_vector=user_vecs[b], n_slots=n_slots)
                for b, u in enumerate(users)]

    def sample_user_targets(self, u, rng):
        """``(targets, history)`` of user ``u`` for one training epoch: ``k <= L`` training items in a
        random order, and the history shown in the prompt (random, at most ``glta_history_items``, in
        the original order; without the targets unless ``glta_ua_targets_in_history``)."""
        items = self.user_items[u]
        n = len(items)
        perm = rng.permutation(n)
        if self.settings.ua_targets_in_history:
            k = min(self.n_slots, n)
            targets = items[perm[:k]]
            pool = np.arange(n)
        else:
            k = min(self.n_slots, max(1, int(math.ceil(n * self.settings.ua_target_fraction))))
            targets = items[perm[:k]]
            pool = np.sort(perm[k:])
        if self.history_len > 0 and len(pool) > self.history_len:
            pool = np.sort(rng.choice(pool, self.history_len, replace=False))
        elif self.history_len <= 0:
            pool = pool[:0]
        return targets, items[pool]

    # ------------------------------------------------------------------------------------------
    # GLLM and the losses of the two alignment stages
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

    gllm_loss = staticmethod(gllm_loss)

    def _forward_slots(self, prompts, store_name, count_key):
        builder = self.builder(store_name)
        batch = builder.build(prompts)
        hidden = builder.forward(batch)
        self.token_stats[count_key] += batch.tokens
        return batch, batch.gather(hidden, "slots")

    def item_text_loss(self, groups, orders, slot_log=None):
        """Item-text alignment loss for item ``groups`` (lists of item ids) with token ``orders``;
        ``slot_log``, a list, receives the call's detached slot states (:meth:`_keep`)."""
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
        self._keep(slot_hidden, targets, slot_log)
        return gllm_loss(logits, targets)

    @staticmethod
    def _keep(slot_hidden, targets, slot_log):
        """Append ``(states, targets, weights)`` of a loss's valid slots, detached, to ``slot_log`` (if a
        list): the trainer's head-only passes (``glta_head_epochs``) fit the GLLM layer on them."""
        if slot_log is not None:
            valid = targets >= 0
            slot_log.append((slot_hidden.detach()[valid].float().cpu(), targets[valid].cpu(),
                             (1.0 / valid.sum(1).clamp(min=1).float())[:, None].expand_as(targets)[valid].cpu()))

    def user_item_loss(self, users, targets_list, histories, slot_log=None):
        """User-item alignment loss (Eq. 3) for ``users`` with their epoch's targets and histories;
        ``slot_log`` as in :meth:`item_text_loss`."""
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
        self._keep(slot_hidden, targets, slot_log)
        return gllm_loss(logits, targets)

    @torch.no_grad()
    def probe_init_head(self, users, ridge=0.5, batch_size=32):
        """Initialise the GLLM layer so that its logits start as ``(probe(h) . E_i)``: ``probe`` is the
        ridge regression (with intercept) from the slot states ``h`` of ``users``' inference prompts
        (every slot) to their graph embeddings ``E_u`` (training split only); ``ridge`` is relative
        to the mean eigenvalue of the centred states' Gram matrix. Graph head: ``G = W``,
        ``b_i = E_i . (mean(E_u) - W^T mean(h))``; linear head: ``W_lin = E_i W^T`` and the same
        bias. Returns the fit's R^2 on those users."""
        was_training = self.training
        self.eval()
        states = []
        progress = StepProgress("GLTA probe", len(users), unit="users", logger=logger)
        for i in range(0, len(users), batch_size):
            _, h = self._forward_slots(self.inference_prompts(users[i : i + batch_size]), "ua", "infer")
            states.append(h.float().cpu())
            progress.step(len(h))
        self.train(was_training)
        h = torch.cat(states)  # [U, L, H]
        y = self.user_graph_emb[torch.as_tensor(users)].float().cpu()
        x = h.reshape(-1, h.shape[-1]).double()
        y = y.unsqueeze(1).expand(-1, h.shape[1], -1).reshape(-1, y.shape[-1]).double()
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        lam = ridge * float((xc ** 2).sum()) / x.shape[1]
        w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ yc)  # [H, d]
        r2 = 1.0 - float(((xc @ w - yc) ** 2).sum() / (yc ** 2).sum())
        items = self.item_graph_emb.double().cpu()
        g = self.gllm
        if g.mode == "graph":
            g.proj.copy_(w.T.to(g.proj))
        else:
            g.weight.copy_((items @ w.T).to(g.weight))
        g.bias.copy_((items @ (my - mx @ w)).to(g.bias))
        self.invalidate()
        return r2

    def calculate_loss(self, interaction):
        """User-item alignment loss on the users of a RecBole training batch (lets RecBole's plain
        ``Trainer`` train the final stage; :class:`GLTATrainer` runs every stage instead)."""
        users = torch.unique(interaction[self.USER_ID]).tolist()
        rng = np.random.default_rng()
        users = [u for u in users if len(self.user_items[u])]
        samples = [self.sample_user_targets(u, rng) for u in users]
        return self.user_item_loss(users, [s[0] for s in samples], [s[1] for s in samples])

    # ------------------------------------------------------------------------------------------
    # inference (scoring.py)
    # ------------------------------------------------------------------------------------------
    def excluded_items(self, users) -> torch.Tensor:
        """``[B, |I|]`` bool: a user's training items and the padding item, never picked by a slot."""
        excluded = self.history_mask[torch.as_tensor(users, device=self.history_mask.device)].clone()
        excluded[:, 0] = True
        return excluded

    @torch.no_grad()
    def slot_logits(self, users):
        """``[B, L, |I|]`` GLLM logits of ``users`` on their inference prompts."""
        _, slot_hidden = self._forward_slots(self.inference_prompts(users), "ua", "infer")
        return self.gllm_logits(slot_hidden)

    @torch.no_grad()
    def score_users(self, users) -> torch.Tensor:
        """``[B, |I|]`` scores of ``users`` (no caching)."""
        if self.inference == "autoregressive":
            return autoregressive_scores(self, users)
        logits = self.slot_logits(users).float()
        if self.inference == "first_logit":
            return first_logit_scores(logits)
        return first_k_scores(logits, self.excluded_items([int(u) for u in users]), self.infer_slots)

    def set_inference(self, mode):
        """Score with the item prediction pattern ``mode`` from now on (``first_k``, ``autoregressive``
        or ``first_logit``: the paper's Figure 4 compares them on the same trained GLLM layer)."""
        if mode not in INFERENCE_MODES:
            raise ConfigError(f"GLTA inference mode {mode!r} is unknown: use one of {', '.join(INFERENCE_MODES)}.")
        self.inference = mode
        self.invalidate()

    def _version_key(self, users):
        """Cheap key of the current state: the explicit version counter plus each tensor's autograd
        version (bumped by every in-place change, ``no_grad`` included) and storage, and the users scored."""
        tensors = list(self.parameters()) + list(self.buffers())
        return (self.parameter_version, tuple((t.data_ptr(), t._version) for t in tensors),
                self.inference, self.infer_slots, self.history_len, len(self.user_profiles), users)

    def _state_hash(self):
        """Content hash of the state (one pass over every tensor: used on loads and once per new
        scoring, never per ``full_sort_predict`` call)."""
        h = hashlib.sha1()
        for tensor in list(self.state_dict().values()):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        h.update(repr((self.inference, self.infer_slots, self.history_len)).encode())
        h.update(hashlib.sha1("\x00".join(self.user_profiles + self.user_predictions).encode()).digest())
        return h.hexdigest()

    @torch.no_grad()
    def all_user_scores(self, users=None) -> torch.Tensor:
        """``[n_users, |I|]`` scores of ``users`` (a tuple: a rank's evaluation shard under DDP, the other
        rows ``-inf``; None: every user), computed once per parameter state (valid and test prompts are
        identical: both are built from the training split only)."""
        return self.cached(lambda: self._score_every_user(users), key=self._version_key(users))

    def _score_every_user(self, users):
        recent_key = (self._content_key, users)
        if self._content_key is not None and recent_key in self._recent_scores:
            # e.g. the best epoch reloaded for the test evaluation
            return self._recent_scores[recent_key]
        was_training = self.training
        self.eval()
        scores = torch.full((self.n_users, self.n_items), float("-inf"))
        rows = [u for u in (users or range(1, self.n_users)) if u > 0]
        rows.sort(key=lambda u: (len(self.inference_history(u)), u))  # similar lengths batch together
        start = time.perf_counter()
        batch = self.settings.eval_batch_size
        progress = StepProgress("GLTA scoring", len(rows), unit="users", logger=logger)  # validation or test
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            scores[torch.tensor(chunk)] = self.score_users(chunk).float().cpu()
            progress.step(len(chunk))
        logger.info("GLTA scored %d users in %.1f s (%s)", len(rows), time.perf_counter() - start, self.inference)
        self.train(was_training)
        self.score_computations += 1
        self._recent_scores[(self._content_key or self._state_hash(), users)] = scores
        while len(self._recent_scores) > self.settings.score_cache_states:
            self._recent_scores.pop(next(iter(self._recent_scores)))
        return scores

    def full_sort_predict(self, interaction, users=None):
        """Scores of the interaction's users over all items; ``users``: the users to score at once
        (a DDP rank's shard; None: every user)."""
        rows = interaction[self.USER_ID].cpu()
        return self.all_user_scores(users)[rows].to(self.device).flatten()

    def predict(self, interaction):
        users = interaction[self.USER_ID].cpu()
        items = interaction[self.ITEM_ID].cpu()
        return self.all_user_scores()[users, items].to(self.device)
