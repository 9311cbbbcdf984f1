r"""SLMRec (Tao et al., "Self-supervised Learning for Multimedia Recommendation", TMM'22), following
MMRec's ``models/slmrec.py`` with its default (and only working) SSL task, FAC (fine and coarse
cross-modal alignment).

* Per view (item IDs, and each modality :math:`m` with item side :math:`W_m \hat f^m_i`,
  :math:`\hat f` = L2-normalised raw features) a LightGCN over the symmetric normalised training
  graph (``n_layers``, mean over layers), users' ego embeddings shared by the views.
* Fusion: user/item = a linear map of the concatenated views.
* Main loss: in-batch InfoNCE between the batch's users and their positive items (normalised,
  temperature ``temp``); no negative sampling.
* FAC: a chain of in-batch InfoNCE terms (temperature ``ssl_temp``, no normalisation) aligning the
  ID view of the batch's items with each modality, finest first: :math:`a_0 = g_0(h^{id}_i)`
  against :math:`g^{m_0}(h^{m_0}_i)`, then :math:`a_k = g_k(a_{k-1})` against
  :math:`g^{m_k}(h^{m_k}_i)`; weight ``ssl_alpha``. Order: image, then text (MMRec: visual, then
  textual).

Differences from MMRec, on purpose: MMRec's SLMRec requires both image and text features (it reads
``v_dense_emb`` unconditionally and, off Kwai, ``t_emb``); here any non-empty set works, the chain
growing one link per modality. With both modalities MMRec's text link passes the anchor through
two linears (one left over from an absent audio level) down to ``d/2``; here one linear at ``d``.
MMRec's FD/FM tasks read a config key that does not exist there, so only FAC is provided.
Optimiser weight decay as MMRec (``weight_decay`` in the YAML). MMRec's graph comes from the
training loader (training split), as here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.utils import InputType

from recbole_llm.graph.interactions import normalized_adjacency
from recbole_llm.graph.sparse import lightgcn_layer_mean
from recbole_llm.models.baselines.multimodal import ModalityEncoder, MultimodalRecommender, model_settings
from recbole_llm.settings import Float, Int
from recbole_llm.training.losses import info_nce

SLMREC_SETTINGS = model_settings("SLMRec", {
    "embedding_size": Int(min=1, doc="ID embedding size, also the modality projections' size"),
    "n_layers": Int(min=0, doc="LightGCN layers on the user-item graph"),
    "temp": Float(gt=0, doc="temperature of the main (user-item) InfoNCE"),
    "ssl_temp": Float(gt=0, doc="temperature of the self-supervised InfoNCE"),
    "ssl_alpha": Float(min=0, doc="weight of the self-supervised loss"),
})


def _linear(d_in, d_out):
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    return layer


class SLMRec(MultimodalRecommender):
    """SLMRec (FAC) with text and/or image features (see the module docstring)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = self.read_modalities(SLMREC_SETTINGS, config, dataset)
        d = self.settings.embedding_size
        self.register_buffer("norm_adj", normalized_adjacency(dataset), persistent=False)
        self.id_embeddings(d, item_name="item_embedding")
        self.encoder = ModalityEncoder(feats, d, init="xavier_uniform", normalize=True)
        views = len(feats) + 1
        self.user_fusion = _linear(views * d, d)
        self.item_fusion = _linear(views * d, d)
        # FAC chain: anchor maps (g_0 on the ID view, then g_k on the previous anchor) and targets
        self.anchor = nn.ModuleList([_linear(d, d) for _ in feats])
        self.target = nn.ModuleDict({name: _linear(d, d) for name in feats})

    def views(self):
        """``[(users, items)]`` of the ID view and each modality view."""
        users = self.user_embedding.weight
        out = [lightgcn_layer_mean(self.norm_adj, users, self.item_embedding.weight, self.settings.n_layers)]
        for name, items in self.encoder().items():
            out.append(lightgcn_layer_mean(self.norm_adj, users, items, self.settings.n_layers))
        return out

    def fuse(self, views):
        users = self.user_fusion(torch.cat([u for u, _ in views], dim=1))
        items = self.item_fusion(torch.cat([i for _, i in views], dim=1))
        return users, items

    def compute(self):
        return self.fuse(self.views())

    def fac_loss(self, views, items):
        s = self.settings
        anchor = views[0][1][items]
        loss = 0.0
        for k, name in enumerate(self.modalities):
            anchor = self.anchor[k](anchor)
            target = self.target[name](views[k + 1][1][items])
            loss = loss + info_nce(anchor, target, s.ssl_temp, normalize=False)
        return loss

    def calculate_loss(self, interaction):
        s = self.settings
        u = interaction[self.USER_ID]
        i = interaction[self.ITEM_ID]
        views = self.views()
        users, items = self.fuse(views)
        main = info_nce(users[u], items[i], s.temp)
        return main + s.ssl_alpha * self.fac_loss(views, i)
