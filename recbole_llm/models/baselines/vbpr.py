r"""VBPR (He & McAuley, AAAI'16): matrix factorisation whose item vector is an ID part plus a linear
map of the item's content features, trained with BPR.

:math:`\hat y_{ui} = \beta_i + [\gamma_u; \theta_u]^\top [\gamma_i; E f_i] + \beta'^\top f_i`, with
:math:`f_i` the concatenation of the item's text and image features (MMRec concatenates
``t_feat`` and ``v_feat`` the same way, so either alone works), user vectors of size
``2 * embedding_size``, loss :math:`L_{BPR} + \lambda \cdot` MMRec's ``EmbLoss`` (the L2 norms of
the batch's user, positive and negative vectors over the batch size; ``reg_weight``).

Differences from MMRec's ``models/vbpr.py``, on purpose: the paper's item bias :math:`\beta_i` and
visual bias :math:`\beta'^\top f_i` are kept (MMRec drops both; they start at zero, so the first
step equals MMRec's); RecBole's negative sampling over all items (MMRec samples among items seen
in training).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.utils import InputType

from recbole_llm.models.baselines.multimodal import MultimodalRecommender, model_settings
from recbole_llm.settings import Float, Int
from recbole_llm.training.losses import bpr_loss, norm_reg

VBPR_SETTINGS = model_settings("VBPR", {
    "embedding_size": Int(min=1, doc="ID embedding size, also the modality projections' size"),
    "reg_weight": Float(min=0, doc="L2 weight on the batch's embeddings"),
})


class VBPR(MultimodalRecommender):
    """VBPR with text and/or image features (see the module docstring)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = self.read_modalities(VBPR_SETTINGS, config, dataset)
        d = self.settings.embedding_size
        self.register_buffer("item_features", torch.cat(list(feats.values()), dim=1), persistent=False)
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.item_linear = nn.Linear(self.item_features.shape[1], d)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.feature_bias = nn.Linear(self.item_features.shape[1], 1, bias=False)
        nn.init.zeros_(self.feature_bias.weight)

    def item_vectors(self):
        """``([item_num, 2d] item vectors, [item_num] item biases)``."""
        vectors = torch.cat([self.item_embedding, self.item_linear(self.item_features)], dim=1)
        return vectors, self.item_bias + self.feature_bias(self.item_features).squeeze(1)

    def compute(self):
        # the bias rides along as one more coordinate (user side 1) so scoring stays a dot product
        items, bias = self.item_vectors()
        users = torch.cat([self.user_embedding, self.user_embedding.new_ones(self.n_users, 1)], dim=1)
        return users, torch.cat([items, bias.unsqueeze(1)], dim=1)

    def calculate_loss(self, interaction):
        u = interaction[self.USER_ID]
        p = interaction[self.ITEM_ID]
        n = interaction[self.NEG_ITEM_ID]
        items, bias = self.item_vectors()
        e_u, e_p, e_n = self.user_embedding[u], items[p], items[n]
        pos = (e_u * e_p).sum(1) + bias[p]
        neg = (e_u * e_n).sum(1) + bias[n]
        return bpr_loss(pos, neg) + self.settings.reg_weight * norm_reg(e_u, e_p, e_n, batch_size=len(u))
