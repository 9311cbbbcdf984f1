r"""HeLLMPre: HeLLM's stage 1 (MMHCL-style hypergraph contrastive pretraining), a RecBole general model.

Xu et al., "HeLLM: Hypergraph Enhanced LLM Learning for Multimodal Recommendation" (the paper's
HeLLM_pre row). Equations as rebuilt from the authors' code (MMHCL), ``docs/hellm.md``:

* LightGCN on the bipartite training graph, :math:`\bar e = \mathrm{mean}(E^{(0)},\dots,E^{(L)})`
  (``hellmpre_ui_layers``), Xavier-initialised tables.
* U2U hypergraph (``recbole_llm.graph.hypergraph``): :math:`h_u = (D^{-1}A_u)^{L_u} E_u^{(0)}` with its
  own table; I2I hypergraph: :math:`h_i = \hat A_I^{L_i} E_i^{(0)}` with its own table.
* Eq. 6: :math:`e = \bar e + h/\lVert h\rVert_2`; score :math:`e_u^\top e_i`.
* Eq. 7 (GRACE-style, one direction, anchor = the fused :math:`e`): the positive is the same node's
  :math:`h`, the negatives are **all** other nodes of the graph in both views; computed in chunks of
  ``hellmpre_cl_chunk_size`` anchors under activation checkpointing (only one chunk's
  ``chunk x N`` similarity lives at a time, also in the backward), over all nodes every step
  (``hellmpre_cl_anchors: 0``) or a random subset of anchors (negatives stay all nodes).
* Eq. 12: :math:`L = L_{BPR} + \alpha L_u + \beta L_i + \frac{\lambda}{2B}\sum(\lVert e_u\rVert^2
  + \lVert e_p\rVert^2 + \lVert e_n\rVert^2)` on the fused embeddings.

Ablations: ``hellmpre_u2u: False`` (w/o U2U: no user hypergraph, no :math:`L_u`),
``hellmpre_i2i: False`` (w/o I2I), ``hellmpre_cl: False`` (w/o CL: the hypergraph views are still
fused, :math:`\alpha = \beta = 0`). Item features for I2I: ``hellmpre_modalities`` (text = item
texts through the feature layer's sentence encoder or ``text_feature_file``; image =
``image_feature_file``); a dataset without any gets a :class:`~recbole_llm.errors.ConfigError`
saying what to provide or to set ``hellmpre_i2i: False``.

Differences from the authors' code, on purpose: sparse graph products (they build dense ``U x U``);
BPR batches are RecBole's (interactions with one sampled negative) instead of 1024 distinct users;
RecBole's Trainer (best-validation checkpoint, not the last epoch; no 0.96^(epoch/50) decay).
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch.utils.checkpoint import checkpoint

from recbole_llm.data.features import item_modalities
from recbole_llm.graph.hypergraph import (item_hypergraph, linked_pair_share, propagate, to_torch_sparse,
                                         user_hypergraph)
from recbole_llm.graph.interactions import normalized_adjacency
from recbole_llm.graph.sparse import lightgcn_layer_mean
from recbole_llm.models.embedding_scores import EmbeddingScores
from recbole_llm.models.hellm.settings import HELLMPRE_SETTINGS

logger = logging.getLogger(__name__)


def _chunk_cl(z1, z2, idx, tau):
    """Sum over anchors ``idx`` of Eq. 7's loss (``z1``: fused, ``z2``: hypergraph view, normalised)."""
    a = z1[idx]
    between = a @ z2.T / tau  # [c, N]: s(e_n, h_m)
    within = a @ z1.T / tau  # [c, N]: s(e_n, e_m)
    rows = torch.arange(len(idx), device=a.device)
    pos = between[rows, idx]
    within = within.index_put((rows, idx), torch.tensor(float("-inf"), device=a.device, dtype=a.dtype))
    denom = torch.logsumexp(torch.cat([between, within], dim=1), dim=1)
    return (denom - pos).sum()


def contrastive_loss(e, h, tau, chunk_size, anchors=None):
    """Eq. 7 averaged over ``anchors`` (default: all rows); every row is a negative."""
    z1, z2 = F.normalize(e, dim=1), F.normalize(h, dim=1)
    if anchors is None:
        anchors = torch.arange(e.shape[0], device=e.device)
    total = e.new_zeros(())
    for start in range(0, len(anchors), chunk_size):
        idx = anchors[start : start + chunk_size]
        if torch.is_grad_enabled() and (z1.requires_grad or z2.requires_grad):
            total = total + checkpoint(_chunk_cl, z1, z2, idx, tau, use_reentrant=False)
        else:
            total = total + _chunk_cl(z1, z2, idx, tau)
    return total / max(1, len(anchors))


class HeLLMPre(EmbeddingScores, GeneralRecommender):
    r"""HeLLM's hypergraph pretraining (see the module docstring)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        s = self.settings = HELLMPRE_SETTINGS.read(config)
        d = self.embedding_size = s.embedding_size
        self.use_u2u, self.use_i2i, self.use_cl = s.u2u, s.i2i, s.cl
        # -- graphs of the training split (the dataset RecBole hands a model) ---------------------
        self.register_buffer("ui_adj", normalized_adjacency(dataset), persistent=False)
        self.user_ui = nn.Embedding(self.n_users, d)
        self.item_ui = nn.Embedding(self.n_items, d)
        self.graph_info = {}
        if self.use_u2u:
            u2u = user_hypergraph(dataset)
            self.register_buffer("u2u_adj", to_torch_sparse(u2u), persistent=False)
            self.user_hyper = nn.Embedding(self.n_users, d)
            self.graph_info["u2u_nnz"] = int(u2u.nnz)
            density = linked_pair_share(u2u)
            if density > 0.5:
                # e.g. ml-100k (96%): propagation averages almost every user into every user, so the
                # normalised U2U views collapse towards one vector (benchmarks/results/hellmpre_u2u_ml100k.md)
                logger.warning("HeLLMPre: the U2U hypergraph links %.0f%% of user pairs; after %d propagation steps "
                               "the user views are nearly identical. On data this dense, compare with "
                               "hellmpre_u2u=False (w/o U2U) or fewer hellmpre_user_layers.",
                               100 * density, s.user_layers)
        if self.use_i2i:
            feats = item_modalities(config, dataset, s.modalities, model="HeLLMPre's I2I hypergraph",
                                    switch="hellmpre_i2i=False (the w/o I2I ablation)")
            i2i = item_hypergraph([f for _, f in feats], s.topk, s.knn_chunk_size)
            self.register_buffer("i2i_adj", to_torch_sparse(i2i), persistent=False)
            self.item_hyper = nn.Embedding(self.n_items, d)
            self.graph_info.update(i2i_nnz=int(i2i.nnz), modalities=[n for n, _ in feats])
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.xavier_uniform_(module.weight)
        logger.info("HeLLMPre graphs: %s", self.graph_info)

    # -- Eq. 6 -----------------------------------------------------------------------------
    def forward(self):
        """``(e_u, e_i, h_u, h_i)``: fused embeddings and the hypergraph views (None when off)."""
        user, item = lightgcn_layer_mean(self.ui_adj, self.user_ui.weight, self.item_ui.weight, self.settings.ui_layers)
        h_u = h_i = None
        if self.use_u2u:
            h_u = propagate(self.u2u_adj, self.user_hyper.weight, self.settings.user_layers)
            user = user + F.normalize(h_u, dim=1)
        if self.use_i2i:
            h_i = propagate(self.i2i_adj, self.item_hyper.weight, self.settings.item_layers)
            item = item + F.normalize(h_i, dim=1)
        return user, item, h_u, h_i

    def _anchors(self, n, device):
        anchors = torch.arange(1, n, device=device)  # row 0 is RecBole's padding id
        k = self.settings.cl_anchors
        if k and k < len(anchors):
            anchors = anchors[torch.randperm(len(anchors), device=device)[:k]]
        return anchors

    def calculate_loss(self, interaction):
        s = self.settings
        users, items, h_u, h_i = self.forward()
        u = interaction[self.USER_ID]
        p = interaction[self.ITEM_ID]
        n = interaction[self.NEG_ITEM_ID]
        e_u, e_p, e_n = users[u], items[p], items[n]
        bpr = -F.logsigmoid((e_u * e_p).sum(1) - (e_u * e_n).sum(1)).mean()
        reg = s.reg_weight * (e_u.pow(2).sum() + e_p.pow(2).sum() + e_n.pow(2).sum()) / (2 * len(u))
        loss = bpr + reg
        self.last_losses = {"bpr": float(bpr.detach()), "reg": float(reg.detach())}
        if self.use_cl:
            if h_u is not None and s.user_loss_ratio > 0:
                l_u = contrastive_loss(users, h_u, s.temperature, s.cl_chunk_size, self._anchors(self.n_users, u.device))
                loss = loss + s.user_loss_ratio * l_u
                self.last_losses["cl_user"] = float(l_u.detach())
            if h_i is not None and s.item_loss_ratio > 0:
                l_i = contrastive_loss(items, h_i, s.temperature, s.cl_chunk_size, self._anchors(self.n_items, u.device))
                loss = loss + s.item_loss_ratio * l_i
                self.last_losses["cl_item"] = float(l_i.detach())
        return loss

    # -- scoring ------------------------------------------------------------------------------
    def final_user_item(self):
        """Fused ``(e_u, e_i)`` (scored and cached by :class:`EmbeddingScores`)."""
        users, items, _, _ = self.forward()
        return users, items
