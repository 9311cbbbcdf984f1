r"""BM3 (Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation", WWW'23),
following MMRec's ``models/bm3.py`` (the authors' code).

No negative sampling: LightGCN (``n_layers``, mean over layers) on the training graph gives
:math:`h_u, h_i` (item: plus its ID embedding); projections :math:`W_t t_i, W_v v_i` of the
(fine-tuned) raw features. A shared predictor :math:`f` maps online views; targets are the same
embeddings with dropout (``dropout``) and no gradient. Loss:
:math:`(1-\cos(f(h_u), \tilde h_i)) + (1-\cos(f(h_i), \tilde h_u))
+ \lambda_{cl}\sum_m [(1-\cos(f(m_i), \tilde h_i)) + (1-\cos(f(m_i), \tilde m_i))]
+ \lambda_{reg}\,(\lVert H_U\rVert + \lVert H_I\rVert)/|I|` (``cl_weight``, ``reg_weight``; the last
term is MMRec's ``EmbLoss`` over all online embeddings). Scores: :math:`f(h_u)^\top f(h_i)`.

Checked against the paper and our rules: MMRec's graph comes from the training loader's
``inter_matrix`` (training split), as here; no leak found. Differences: RecBole's batches of
training interactions (MMRec's loader with ``use_neg_sampling: False``, the same thing).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_llm.graph.interactions import normalized_adjacency
from recbole_llm.graph.sparse import lightgcn_layer_mean
from recbole_llm.models.baselines.multimodal import (ModalityEncoder, MultimodalRecommender, load_modalities,
                                                     model_settings)
from recbole_llm.settings import Float, Int
from recbole_llm.training.losses import norm_reg

BM3_SETTINGS = model_settings("BM3", {
    "embedding_size": Int(min=1),
    "n_layers": Int(min=0),
    "dropout": Float(min=0, max=1),
    "reg_weight": Float(min=0),
    "cl_weight": Float(min=0),
})


def _cos_loss(online, target):
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(MultimodalRecommender):
    """BM3 with text and/or image features (see the module docstring)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        s = self.settings = BM3_SETTINGS.read(config)
        d = s.embedding_size
        feats = load_modalities(config, dataset, "BM3", s.mm_modalities)
        self.modalities = list(feats)
        self.register_buffer("norm_adj", normalized_adjacency(dataset), persistent=False)
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.predictor = nn.Linear(d, d)
        nn.init.xavier_normal_(self.predictor.weight)
        self.encoder = ModalityEncoder(feats, d, trainable=True, init="xavier_normal")

    def forward(self):
        users, items = lightgcn_layer_mean(self.norm_adj, self.user_embedding.weight, self.item_id_embedding.weight,
                                self.settings.n_layers)
        return users, items + self.item_id_embedding.weight

    def compute(self):
        users, items = self.forward()
        return self.predictor(users), self.predictor(items)

    def calculate_loss(self, interaction):
        s = self.settings
        u = interaction[self.USER_ID]
        i = interaction[self.ITEM_ID]
        users, items = self.forward()
        modal = self.encoder()
        with torch.no_grad():  # targets: dropout views, no gradient (rows indexed first: same distribution)
            u_target = F.dropout(users[u], s.dropout)
            i_target = F.dropout(items[i], s.dropout)
            m_target = {name: F.dropout(m[i], s.dropout) for name, m in modal.items()}
        loss = _cos_loss(self.predictor(users[u]), i_target) + _cos_loss(self.predictor(items[i]), u_target)
        cl = 0.0
        for name, m in modal.items():
            m_online = self.predictor(m[i])
            cl = cl + _cos_loss(m_online, i_target) + _cos_loss(m_online, m_target[name])
        return loss + s.reg_weight * norm_reg(users, items) / items.shape[0] + s.cl_weight * cl
