r"""GRCN (Wei et al., "Graph-Refined Convolutional Network for Multimedia Recommendation with
Implicit Feedback", MM'20), following MMRec's ``models/grcn.py`` (attention weights ``confid``,
pruning, ``concat`` fusion, no activations, normalised inputs: MMRec's fixed choices).

* **Graph refining** per modality :math:`m`: item content :math:`f^m_i = \mathrm{LeakyReLU}(W_m x^m_i)`
  and a user preference :math:`p^m_u` (both L2-normalised). ``n_layers`` routing iterations move each
  user's preference towards the items it interacted with, attention
  :math:`\alpha_{ui} = \mathrm{softmax}_{i \in N(u)}(p_u^\top f_i)`, :math:`p_u \leftarrow
  \mathrm{norm}(p_u + \sum_i \alpha_{ui} f_i)`. Then one attention layer over both edge directions
  gives the modality's node representation :math:`x + \hat x` and a weight per directed edge.
* **Edge weights**: :math:`w_{s\to t} = \mathrm{ReLU}(\max_m \alpha^m_{s\to t}\, c^m_s)` with learned
  per-node modality confidences :math:`c` (negative edges pruned by the ReLU).
* **ID graph**: two weighted sum-aggregation layers over the refined graph from normalised ID
  embeddings, :math:`x + \hat x^{(1)} + \hat x^{(2)}`.
* Representation = [ID; modality 1; ...] (image, then text); score = dot product; loss BPR +
  ``reg_weight`` (mean squared ID embeddings of the batch's users and items + mean squared
  preferences of the batch's users).

Sparse throughout: attention and propagation are edge lists (:mod:`recbole_llm.graph.edges`), the
training split's edges only (:func:`~recbole_llm.graph.interactions.training_edges`).

Differences from MMRec, on purpose: MMRec's routing passes messages from users to items (PyG's
source-to-target flow over ``[user, item]`` edges), so users receive nothing and the routing leaves
the preferences unchanged; here the routing goes item -> user as the paper describes. MMRec crashes
with text features only (a ``conetent_rep`` typo) and adds a visual-only extra preference term to
the regulariser; here any non-empty set of modalities works and the regulariser treats them
alike. MMRec scores with the representation of the last training batch; here it is recomputed.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_llm.graph.edges import edge_propagate, edge_softmax
from recbole_llm.graph.interactions import training_edges
from recbole_llm.models.baselines.multimodal import MultimodalRecommender, model_settings
from recbole_llm.settings import Float, Int
from recbole_llm.training.losses import bpr_loss

GRCN_SETTINGS = model_settings("GRCN", {
    "embedding_size": Int(min=1, doc="ID embedding size, also the modality projections' size"),
    "latent_embedding": Int(min=1, doc="per-modality content/preference size (dim_C)"),
    "n_layers": Int(min=0, doc="graph convolution layers on the refined graph"),
    "reg_weight": Float(min=0, doc="L2 weight on the batch's embeddings"),
})


def _xavier_normal(*shape):
    return nn.Parameter(nn.init.xavier_normal_(torch.empty(*shape)))


class GRCN(MultimodalRecommender):
    """GRCN with text and/or image features (see the module docstring)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = self.read_modalities(GRCN_SETTINGS, config, dataset)
        s = self.settings
        users, items = training_edges(dataset)
        items = items + self.n_users  # node ids: users, then items
        # directed edges: user -> item, then item -> user
        self.register_buffer("src", torch.cat([users, items]), persistent=False)
        self.register_buffer("dst", torch.cat([items, users]), persistent=False)
        self.n_nodes = self.n_users + self.n_items
        self.id_embedding = _xavier_normal(self.n_nodes, s.embedding_size)
        self.preference = nn.ParameterDict({m: _xavier_normal(self.n_users, s.latent_embedding) for m in feats})
        self.mlp = nn.ModuleDict()
        for name, f in feats.items():
            self.register_buffer(f"raw_{name}", f, persistent=False)
            self.mlp[name] = nn.Linear(f.shape[1], s.latent_embedding)
            nn.init.xavier_normal_(self.mlp[name].weight)
        self.confidence = _xavier_normal(self.n_nodes, len(feats))

    def _attention(self, x, src, dst, symmetric=False):
        """Softmax over each node's incoming edges of :math:`x_s^\top x_d`; ``symmetric``: the second
        half of the edges reverses the first (the score is computed once per pair)."""
        half = len(src) // 2 if symmetric else len(src)
        scores = (x[src[:half]] * x[dst[:half]]).sum(1)
        return edge_softmax(torch.cat([scores, scores]) if symmetric else scores, dst, self.n_nodes)

    def route(self, name):
        """``(user preferences [U, C], item content [I, C])`` of one modality after routing."""
        pref = F.normalize(self.preference[name], dim=1)
        feat = F.normalize(F.leaky_relu(self.mlp[name](getattr(self, f"raw_{name}"))), dim=1)
        half = len(self.src) // 2
        to_users_src, to_users_dst = self.src[half:], self.dst[half:]  # item -> user edges
        for _ in range(self.settings.n_layers):
            x = torch.cat([pref, feat])
            alpha = self._attention(x, to_users_src, to_users_dst)
            pref = F.normalize(pref + edge_propagate(to_users_src, to_users_dst, alpha, x)[: self.n_users], dim=1)
        return pref, feat

    def content(self, name):
        """``(node representation [n_nodes, C], attention per directed edge [2E])`` of one modality."""
        x = torch.cat(self.route(name))
        alpha = self._attention(x, self.src, self.dst, symmetric=True)
        return x + edge_propagate(self.src, self.dst, alpha, x), alpha

    def forward(self):
        reps, alphas = [], []
        for name in self.modalities:
            rep, alpha = self.content(name)
            reps.append(rep)
            alphas.append(alpha)
        weight = torch.relu((torch.stack(alphas, dim=1) * self.confidence[self.src]).max(dim=1).values)
        x = F.normalize(self.id_embedding, dim=1)
        x1 = edge_propagate(self.src, self.dst, weight, x)
        x2 = edge_propagate(self.src, self.dst, weight, x1)
        return torch.cat([x + x1 + x2] + reps, dim=1)

    def compute(self):
        rep = self.forward()
        return rep[: self.n_users], rep[self.n_users:]

    def calculate_loss(self, interaction):
        u = interaction[self.USER_ID]
        p = interaction[self.ITEM_ID] + self.n_users
        n = interaction[self.NEG_ITEM_ID] + self.n_users
        rep = self.forward()
        loss = bpr_loss((rep[u] * rep[p]).sum(1), (rep[u] * rep[n]).sum(1))
        users, items = u.repeat_interleave(2), torch.stack([p, n], dim=1).reshape(-1)
        reg = (self.id_embedding[users] ** 2 + self.id_embedding[items] ** 2).mean()
        for name in self.modalities:
            reg = reg + (self.preference[name][users] ** 2).mean()
        return loss + self.settings.reg_weight * reg
