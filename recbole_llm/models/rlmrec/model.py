"""RLMRec (Ren et al., WWW 2024): LightGCN aligned with LLM-profile semantics.

The LLM writes a profile of every item (from its text) and every user (from the texts of the
user's **training** items); a frozen sentence encoder embeds the profiles (the semantic view
``s_u``, ``s_v``). The collaborative view is RecBole's LightGCN on the training graph; training
adds to its BPR + L2 loss an alignment term between the two views:

* :class:`RLMRecCon` (RLMRec-Con, contrastive): InfoNCE between the graph embeddings of the batch's
  users, positive and negative items and the MLP-projected semantic embeddings of the same nodes.
* :class:`RLMRecGen` (RLMRec-Gen, generative): a random ``rlmrec_mask_ratio`` of all nodes get a
  learnable mask token as ego embedding before propagation; an MLP maps the propagated embeddings
  of the masked nodes to the semantic space, InfoNCE against their semantic embeddings.

Profiles and their embeddings are built once, by the trainer's ``profiles`` stage
(:meth:`RLMRecBase.build_semantic`); ranking uses the graph embeddings only, as in the paper.

Where we differ from the authors' code (github.com/HKUDS/RLMRec, SSLRec): the graph is RecBole's
LightGCN (mean over layers, not the sum: a uniform rescaling); L2 is on the batch's ego embeddings
(LightGCN's form) instead of all parameters; the user InfoNCE term uses the batch's distinct users
as negatives instead of all users; profiles come from a local LLM through the shared generation
layer (the paper: ChatGPT, JSON "summarization" + "reasoning", text-embedding-ada-002) with short
plain-text answers. ``rlmrec_profile_source``: ``generated`` (users and items, the paper),
``generated_users`` (item texts stand in for item profiles: an item profile is written from the
item text alone, and generation cost is dominated by items on large catalogues) or ``item_text``
(no LLM: items their text, users the mean of their training items' text embeddings) for quick runs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.model.general_recommender.lightgcn import LightGCN
from recbole.utils import InputType

from recbole_llm.data.interactions import user_histories
from recbole_llm.errors import RecBoleLLMError
from recbole_llm.graph.sparse import drop_edges, lightgcn_layer_mean
from recbole_llm.models.rlmrec.settings import RLMREC_CON_SETTINGS, RLMREC_GEN_SETTINGS
from recbole_llm.training.losses import bpr_loss, info_nce, l2_reg


class SemanticNotReadyError(RecBoleLLMError, RuntimeError):
    """The model was trained before its profile embeddings were built."""


class RLMRecBase(LightGCN):
    """LightGCN + frozen semantic (profile) embeddings of users and items; see the module docstring."""

    input_type = InputType.PAIRWISE
    SETTINGS = None

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        from recbole_llm.data.features import text_embedding_dim
        from recbole_llm.data.text import item_texts

        self.config = config
        s = self.settings = self.SETTINGS.read(config)
        model_name = type(self).__name__
        # item texts are needed by both profile sources: fail before any training
        self.item_texts = item_texts(config, dataset, model_name=model_name)
        self.histories = user_histories(dataset)  # the dataset RecBole hands a model is the training split
        self._train_dataset = dataset
        self.semantic_dim = text_embedding_dim(config)
        self.register_buffer("user_semantic", torch.zeros(self.n_users, self.semantic_dim))
        self.register_buffer("item_semantic", torch.zeros(self.n_items, self.semantic_dim))
        self.register_buffer("user_has_semantic", torch.zeros(self.n_users, dtype=torch.bool))
        self.register_buffer("item_has_semantic", torch.zeros(self.n_items, dtype=torch.bool))
        self.register_buffer("semantic_ready", torch.zeros((), dtype=torch.bool))
        self.keep_rate = s.keep_rate
        self.norm_adj_matrix = self.norm_adj_matrix.coalesce()
        self.user_profiles: list[str] = []
        self.item_profiles: list[str] = []
        self.last_losses: dict = {}

    # ------------------------------------------------------------------------------------------
    # semantic view
    # ------------------------------------------------------------------------------------------
    def profile_spec(self):
        from recbole_llm.llm.profiles import ProfileSpec

        s = self.settings
        return ProfileSpec(user_instruction=s.user_instruction, item_instruction=s.item_instruction,
                           user_context=s.user_context, item_context=s.item_context, item_format=s.item_format,
                           history_items=s.history_items, item_text_max_tokens=s.item_text_max_tokens,
                           max_new_tokens=s.gen_max_new_tokens, batch_size=s.gen_batch_size,
                           chat=s.gen_chat_template, system=s.gen_system_prompt, cache=s.gen_cache)

    def build_semantic(self, backbone=None, progress=None, stats=None) -> dict:
        """Fill the semantic embeddings: profiles generated by the LLM (``backbone``, default the
        configured one) and encoded by the sentence encoder, or item texts
        (``rlmrec_profile_source``). Everything comes from item texts and ``self.histories``, the
        training split."""
        from recbole_llm.data.features import item_text_embeddings, text_embeddings

        s = self.settings
        generate_items = s.profile_source == "generated"
        if s.profile_source in ("generated", "generated_users"):
            from recbole_llm.llm.loading import backbone_from_config
            from recbole_llm.llm.profiles import generate_profiles

            backbone = backbone if backbone is not None else backbone_from_config(self.config)
            self.user_profiles, self.item_profiles = generate_profiles(
                backbone, self.item_texts, self.histories, self.profile_spec(), progress=progress, stats=stats,
                items=generate_items)
            user = text_embeddings(self.config, self.user_profiles, "RLMRec:user_profiles", what="user profiles")
        if generate_items:
            item = text_embeddings(self.config, self.item_profiles, "RLMRec:item_profiles", what="item profiles")
        else:
            item = item_text_embeddings(self.config, self._train_dataset, texts=self.item_texts)
        if s.profile_source == "item_text":
            user = torch.zeros(self.n_users, item.shape[1])
            for u, items in enumerate(self.histories):
                if u and len(items):
                    user[u] = item[torch.as_tensor(items, dtype=torch.long)].mean(0)
        self.set_semantic(user, item)
        return {"profile_source": s.profile_source, "users": int(self.user_has_semantic.sum()),
                "items": int(self.item_has_semantic.sum())}

    @torch.no_grad()
    def set_semantic(self, user, item):
        if tuple(user.shape) != tuple(self.user_semantic.shape) or tuple(item.shape) != tuple(self.item_semantic.shape):
            raise ValueError(f"semantic embeddings of shape {tuple(user.shape)}/{tuple(item.shape)}; expected "
                             f"{tuple(self.user_semantic.shape)}/{tuple(self.item_semantic.shape)}")
        self.user_semantic.copy_(user)
        self.item_semantic.copy_(item)
        self.user_has_semantic.copy_(user.abs().sum(1) > 0)
        self.item_has_semantic.copy_(item.abs().sum(1) > 0)
        self.user_has_semantic[0] = self.item_has_semantic[0] = False
        self.semantic_ready.fill_(True)

    def _require_semantic(self):
        if not bool(self.semantic_ready):
            raise SemanticNotReadyError(
                f"{type(self).__name__}: the profile embeddings are not built yet. Train it with its own trainer "
                "(run_recbole_llm.py / run_experiment pick RLMRecTrainer, whose 'profiles' stage builds them) or "
                "call model.build_semantic() first.")

    # ------------------------------------------------------------------------------------------
    # graph view (RecBole's LightGCN, with the authors' edge dropout in training)
    # ------------------------------------------------------------------------------------------
    def dropped_adjacency(self):
        """The normalised adjacency with each edge kept with probability ``rlmrec_keep_rate``
        (no renormalisation, as the authors' SpAdjEdgeDrop); the full one outside training."""
        if not self.training:
            return self.norm_adj_matrix
        return drop_edges(self.norm_adj_matrix, self.keep_rate, rescale=False)

    def propagate(self, ego, adj):
        return lightgcn_layer_mean(adj, *torch.split(ego, [self.n_users, self.n_items]), self.n_layers)

    def forward(self):
        return self.propagate(self.get_ego_embeddings(), self.norm_adj_matrix)

    def _bpr_and_reg(self, interaction, user_all, item_all):
        user, pos, neg = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        u, p, n = user_all[user], item_all[pos], item_all[neg]
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = self.reg_weight * l2_reg(self.user_embedding(user), self.item_embedding(pos), self.item_embedding(neg),
                                       batch_size=len(user))
        return bpr, reg

    def _start_loss(self):
        self._require_semantic()
        self.restore_user_e, self.restore_item_e = None, None  # full_sort_predict recomputes after training


def _mlp(d_in, d_out):
    hidden = (d_in + d_out) // 2
    mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, d_out))
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return mlp


class RLMRecCon(RLMRecBase):
    """RLMRec-Con: contrastive alignment of LightGCN embeddings with MLP-projected profile embeddings."""

    SETTINGS = RLMREC_CON_SETTINGS

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.kd_weight = self.settings.kd_weight
        self.kd_temperature = self.settings.kd_temperature
        self.mlp = _mlp(self.semantic_dim, self.latent_dim)  # semantic -> graph space

    def alignment_loss(self, interaction, user_all, item_all):
        """InfoNCE (graph anchor vs projected profile) for the batch's distinct users, its positive
        and its negative items (in-batch negatives), summed."""
        t = self.kd_temperature
        users = torch.unique(interaction[self.USER_ID])
        users = users[self.user_has_semantic[users]]
        total = user_all.new_zeros(())
        if len(users) > 1:
            total = total + info_nce(user_all[users], self.mlp(self.user_semantic[users]), t)
        for field in (self.ITEM_ID, self.NEG_ITEM_ID):
            items = interaction[field]
            items = items[self.item_has_semantic[items]]
            if len(items) > 1:
                total = total + info_nce(item_all[items], self.mlp(self.item_semantic[items]), t)
        return total

    def calculate_loss(self, interaction):
        self._start_loss()
        user_all, item_all = self.propagate(self.get_ego_embeddings(), self.dropped_adjacency())
        bpr, reg = self._bpr_and_reg(interaction, user_all, item_all)
        kd = self.kd_weight * self.alignment_loss(interaction, user_all, item_all)
        self.last_losses = {"bpr": float(bpr.detach()), "reg": float(reg.detach()), "kd": float(kd.detach())}
        return bpr + reg + kd


class RLMRecGen(RLMRecBase):
    """RLMRec-Gen: masked-node reconstruction of profile embeddings from LightGCN embeddings."""

    SETTINGS = RLMREC_GEN_SETTINGS

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        s = self.settings
        self.mask_ratio, self.recon_weight, self.recon_temperature = s.mask_ratio, s.recon_weight, s.recon_temperature
        self.mask_token = nn.Parameter(torch.zeros(1, self.latent_dim))
        self.mlp = _mlp(self.latent_dim, self.semantic_dim)  # graph -> semantic space

    def mask_seeds(self):
        """Nodes (users first, then items) whose ego embedding is replaced by the mask token:
        ``rlmrec_mask_ratio`` of the nodes that have a profile, at least two."""
        has = torch.cat([self.user_has_semantic, self.item_has_semantic])
        candidates = has.nonzero().squeeze(1)
        k = min(len(candidates), max(2, int(round(len(has) * self.mask_ratio))))
        return candidates[torch.randperm(len(candidates), device=candidates.device)[:k]]

    def calculate_loss(self, interaction):
        self._start_loss()
        ego = self.get_ego_embeddings()
        seeds = self.mask_seeds()
        masked = torch.zeros(ego.shape[0], 1, device=ego.device)
        masked[seeds] = 1.0
        ego = ego * (1.0 - masked) + self.mask_token * masked
        user_all, item_all = self.propagate(ego, self.dropped_adjacency())
        bpr, reg = self._bpr_and_reg(interaction, user_all, item_all)
        nodes = torch.cat([user_all, item_all])
        semantic = torch.cat([self.user_semantic, self.item_semantic])
        recon = self.recon_weight * info_nce(self.mlp(nodes[seeds]), semantic[seeds], self.recon_temperature)
        self.last_losses = {"bpr": float(bpr.detach()), "reg": float(reg.detach()), "recon": float(recon.detach())}
        return bpr + reg + recon
