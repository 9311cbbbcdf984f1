r"""HCCF: Hypergraph Contrastive Collaborative Filtering (Xia et al., SIGIR 2022).

Reference code: https://github.com/akaxlh/HCCF (TensorFlow ``labcode_efficient.py`` and the later
``torchVersion/``). Each of ``L`` layers runs two views from the previous layer's embeddings
:math:`E_{l-1}`:

* local: :math:`Z_l = \sigma(\bar A E_{l-1})`, :math:`\bar A` LightGCN's normalised adjacency of the
  training split (edge dropout while training);
* global: a learnable hypergraph with ``K`` hyperedges per side, :math:`H_u = E^u_0 W_u`,
  :math:`H_i = E^i_0 W_i` (dropout while training), message passing
  :math:`\Gamma_l = \sigma(H\,\psi^c(\sigma(H^\top E_{l-1})))` with ``c`` hierarchical hyperedge
  mappings :math:`\psi(X) = \sigma(V X) + X`;

:math:`E_l = Z_l + \Gamma_l + E_{l-1}` and the final embeddings are :math:`\sum_l E_l`. The loss is
BPR + ``ssl_weight`` x the cross-view InfoNCE between :math:`Z_l` and :math:`\Gamma_l` (cosine,
temperature, summed over layers, the batch's users and positive items) + ``reg_weight`` x L2 of
all parameters; :math:`\sigma` is LeakyReLU. Defaults (``properties/model/HCCF.yaml``) are those of
the authors' PyTorch code.

Where we follow the paper and its TensorFlow code rather than ``torchVersion/``: that version
drops the LeakyReLU activations (in the paper and the TF code) and stops the gradient of the local
view in the contrastive loss (neither the paper nor the TF code does). The hierarchical mappings
are implemented (``hccf_hyper_layers`` = c; the TF code uses 3) but default to 0 as in
``torchVersion/``, which also validated better for us (``docs/baselines.md``). Where we follow
``torchVersion/`` rather than the TF code: BPR instead of the hinge loss, and its numeric
defaults. The L2 term is :func:`recbole_llm.training.losses.l2_reg` (half the squared norm). The graph is built from the
training split only (as the authors' code does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_llm.graph.interactions import normalized_adjacency
from recbole_llm.graph.sparse import drop_edges
from recbole_llm.settings import Float, Int, Settings
from recbole_llm.training.losses import bpr_loss, info_nce, l2_reg

HCCF_SETTINGS = Settings("HCCF", prefix="hccf_", keys={
    "embedding_size": Int(min=1, doc="user/item embedding size"),
    "hccf_n_layers": Int(min=1, doc="local graph (LightGCN-style) layers (gnn_layer)"),
    "hccf_hyperedges": Int(min=1, doc="K, learnable hyperedges per side, users and items (hyperNum)"),
    "hccf_hyper_layers": Int(min=0, doc="hierarchical hyperedge mappings psi (paper Sec. 3.2)"),
    "hccf_leaky": Float(min=0, doc="LeakyReLU slope (leaky)"),
    "hccf_keep_rate": Float(gt=0, max=1, doc=(
        "edge keep rate of the adjacency and of the hyperedge matrices' dropout (keepRate)")),
    "hccf_temperature": Float(gt=0, doc="temperature of the cross-view InfoNCE (temp)"),
    "hccf_ssl_weight": Float(min=0, doc="weight of the cross-view InfoNCE (ssl_reg)"),
    "hccf_reg_weight": Float(min=0, doc="L2 weight on all parameters (reg)"),
})


class HCCF(GeneralRecommender):
    """HCCF (see the module docstring): LightGCN-style local view + learnable global hypergraph,
    cross-view InfoNCE, BPR."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        s = HCCF_SETTINGS.read(config)
        self.settings = s
        self.embedding_size = s.embedding_size
        self.n_layers = s.n_layers
        self.keep_rate = s.keep_rate
        self.temperature = s.temperature
        self.ssl_weight = s.ssl_weight
        self.reg_weight = s.reg_weight
        # the training split's graph (``dataset`` is the training split RecBole hands a model)
        self.norm_adj_matrix = normalized_adjacency(dataset).to(self.device)

        init = nn.init.xavier_uniform_
        self.user_embedding = nn.Parameter(init(torch.empty(self.n_users, s.embedding_size)))
        self.item_embedding = nn.Parameter(init(torch.empty(self.n_items, s.embedding_size)))
        self.user_hyper = nn.Parameter(init(torch.empty(s.embedding_size, s.hyperedges)))
        self.item_hyper = nn.Parameter(init(torch.empty(s.embedding_size, s.hyperedges)))
        # hierarchical hyperedge mappings psi: one K x K matrix per layer, side and level
        self.user_mappings = nn.ModuleList(
            nn.ModuleList(nn.Linear(s.hyperedges, s.hyperedges, bias=False) for _ in range(s.hyper_layers))
            for _ in range(s.n_layers))
        self.item_mappings = nn.ModuleList(
            nn.ModuleList(nn.Linear(s.hyperedges, s.hyperedges, bias=False) for _ in range(s.hyper_layers))
            for _ in range(s.n_layers))
        for linear in self.modules():
            if isinstance(linear, nn.Linear):
                init(linear.weight)
        self.act = nn.LeakyReLU(negative_slope=s.leaky)

        self.restore_user_e = None
        self.restore_item_e = None
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]

    def hccf_parameters(self):
        """HCCF's own parameters (what its L2 term regularises; not those a subclass adds)."""
        return [self.user_embedding, self.item_embedding, self.user_hyper, self.item_hyper,
                *self.user_mappings.parameters(), *self.item_mappings.parameters()]

    # ------------------------------------------------------------------ propagation
    def _hyper_propagate(self, incidence, embeddings, mappings):
        lat = self.act(incidence.T @ embeddings)  # hyperedge embeddings [K, d]
        for mapping in mappings:
            lat = self.act(mapping.weight @ lat) + lat
        return self.act(incidence @ lat)

    def propagate(self):
        """``(users, items, local, global)``: final embeddings and, per layer, the local view
        :math:`Z_l` and the hypergraph view :math:`\\Gamma_l` of all nodes (users first)."""
        keep = self.keep_rate if self.training else 1.0
        user_h = F.dropout(self.user_embedding @ self.user_hyper, p=1 - keep, training=self.training)
        item_h = F.dropout(self.item_embedding @ self.item_hyper, p=1 - keep, training=self.training)
        # RecBole's padding user and item (id 0) belong to no hyperedge
        user_h = torch.cat([torch.zeros_like(user_h[:1]), user_h[1:]])
        item_h = torch.cat([torch.zeros_like(item_h[:1]), item_h[1:]])
        layers = [torch.cat([self.user_embedding, self.item_embedding], dim=0)]
        local, global_ = [], []
        for layer in range(self.n_layers):
            previous = layers[-1]
            z = self.act(torch.sparse.mm(drop_edges(self.norm_adj_matrix, keep), previous))
            prev_u, prev_i = torch.split(previous, [self.n_users, self.n_items])
            gamma = torch.cat([self._hyper_propagate(user_h, prev_u, self.user_mappings[layer]),
                               self._hyper_propagate(item_h, prev_i, self.item_mappings[layer])], dim=0)
            local.append(z)
            global_.append(gamma)
            layers.append(z + gamma + previous)
        final = torch.stack(layers, dim=0).sum(dim=0)
        users, items = torch.split(final, [self.n_users, self.n_items])
        return users, items, local, global_

    def forward(self):
        users, items, _, _ = self.propagate()
        return users, items

    # ------------------------------------------------------------------ losses
    def cross_view_loss(self, local, global_, users, items):
        """Sum over layers of the InfoNCE between the local and the hypergraph view of the batch's
        (unique) users and items; the other batch nodes are the negatives."""
        users, items = torch.unique(users), torch.unique(items) + self.n_users
        loss = 0.0
        for z, gamma in zip(local, global_):
            loss = loss + info_nce(z[users], gamma[users], self.temperature) \
                + info_nce(z[items], gamma[items], self.temperature)
        return loss

    def base_losses(self, interaction):
        """``(loss, item_embeddings)``: HCCF's loss of a batch and the propagated item embeddings
        it used (HCCF+ aligns those with the item texts)."""
        if self.restore_user_e is not None or self.restore_item_e is not None:
            self.restore_user_e, self.restore_item_e = None, None
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        users, items, local, global_ = self.propagate()
        u = users[user]
        pos = (u * items[pos_item]).sum(-1)
        neg = (u * items[neg_item]).sum(-1)
        loss = bpr_loss(pos, neg)
        if self.ssl_weight > 0:
            loss = loss + self.ssl_weight * self.cross_view_loss(local, global_, user, pos_item)
        if self.reg_weight > 0:
            loss = loss + self.reg_weight * l2_reg(*self.hccf_parameters())
        return loss, items

    def calculate_loss(self, interaction):
        return self.base_losses(interaction)[0]

    def predict(self, interaction):
        users, items = self.forward()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        if self.restore_user_e is None or self.restore_item_e is None:
            self.restore_user_e, self.restore_item_e = self.forward()
        return (self.restore_user_e[interaction[self.USER_ID]] @ self.restore_item_e.T).view(-1)
