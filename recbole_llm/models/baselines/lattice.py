r"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", MM'21),
following MMRec's ``models/lattice.py``.

* **Original graph** per modality, built once: cosine kNN of the raw features with the
  similarities as weights (``knn_k``, self included), :math:`D^{-1/2} S D^{-1/2}`.
* **Learned graph** per modality: the same construction on the projected features
  :math:`W_m f^m_i` (``feat_embed_dim``; raw tables fine-tuned); modalities mixed by the softmax of
  a learned weight vector, then normalised.
* Item graph :math:`A = (1-\lambda)\,\tilde S_{learned} + \lambda\, \tilde S_{original}`
  (``lambda_coeff``); :math:`h = A^{L} e^{id}` (``n_layers``); item embedding
  :math:`= \mathrm{CF}_i + h/\lVert h\rVert`, user :math:`= \mathrm{CF}_u`, where CF is LightGCN over
  :math:`D^{-1}(A_{UI}+I)` of the training split (``n_ui_layers``, MMRec's ``len(weight_size)``)
  or plain MF (``cf_model``).
* Loss: BPR + ``reg_weight`` :math:`\cdot \frac{1}{2B}(\lVert e_u\rVert^2 + \lVert e_p\rVert^2 + \lVert e_n\rVert^2)`.
* As in MMRec, the learned graph is rebuilt with gradient at the first batch of each epoch (its
  projections and modality weights learn from that batch) and reused, detached, for the rest of
  the epoch; evaluation rebuilds it.

Differences from MMRec, on purpose: MMRec materialises a dense ``n x n`` similarity for both
graphs, every epoch for the learned one (1.3 GB per matrix at 18k items). Here the kNN search is
chunked (:func:`recbole_llm.graph.knn.knn_neighbours`: a ``chunk x n`` block at a time, no
gradient: top-k selection has none) and the learned graph is an edge list whose ``n * k``
cosine weights are recomputed with gradient (:func:`~recbole_llm.graph.knn.cosine_values`) and
propagated with :func:`~recbole_llm.graph.edges.edge_propagate`; the values equal the dense
construction. The NGCF variant of ``cf_model`` is not implemented (MMRec's default is
``lightgcn``); no learning-rate decay (MMRec: 0.96 every 50 epochs); RecBole's negative sampling.
MMRec builds the user-item graph from the training loader (training split), as here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_llm.graph.edges import edge_propagate
from recbole_llm.graph.interactions import normalized_adjacency
from recbole_llm.graph.knn import cosine_values, knn_graph, knn_neighbours, symmetric_normalize
from recbole_llm.graph.sparse import lightgcn_layer_mean
from recbole_llm.models.baselines.multimodal import ModalityEncoder, MultimodalRecommender, model_settings
from recbole_llm.settings import Choice, Float, Int
from recbole_llm.training.losses import bpr_loss, l2_reg

LATTICE_SETTINGS = model_settings("LATTICE", {
    "embedding_size": Int(min=1, doc="ID embedding size, also the modality projections' size"),
    "feat_embed_dim": Int(min=1, doc="projection size of the learned item graph"),
    "cf_model": Choice("lightgcn", "mf", doc="collaborative backbone: lightgcn | mf"),
    "n_ui_layers": Int(min=0, doc="LightGCN layers on the user-item graph"),
    "n_layers": Int(min=0, doc="propagation steps on the learned item graph"),
    "knn_k": Int(min=1, doc="neighbours per item in the item-item kNN graphs"),
    "knn_chunk_size": Int(min=1, doc=(
        "rows of the kNN search computed at a time (a memory bound; float rounding may differ)")),
    "lambda_coeff": Float(min=0, max=1, doc="weight of the original (feature) graph against the learned one"),
    "reg_weight": Float(min=0, doc="L2 weight on the batch's embeddings"),
})


class LATTICE(MultimodalRecommender):
    """LATTICE with text and/or image features (see the module docstring)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = self.read_modalities(LATTICE_SETTINGS, config, dataset)
        s = self.settings
        d = s.embedding_size
        self.register_buffer("norm_adj", normalized_adjacency(dataset, norm="left", self_loops=True),
                             persistent=False)
        for name, f in feats.items():  # original graphs: fixed
            graph = knn_graph(f, s.knn_k, s.knn_chunk_size, self.valid_items, weighted=True)
            self.register_buffer(f"original_{name}", graph, persistent=False)
        self.id_embeddings(d)
        self.encoder = ModalityEncoder(feats, s.feat_embed_dim, trainable=True)
        self.modal_weight = nn.Parameter(torch.full((len(feats),), 0.5))
        self.item_graph = None  # (src, dst, weight) of the current epoch, detached
        self.rebuild = True

    def pre_epoch(self):
        self.rebuild = True

    def build_item_graph(self):
        """Edge list ``(src, dst, weight)`` of :math:`(1-\\lambda) S_{learned} + \\lambda S_{original}`
        (differentiable in the projections and the modality weights)."""
        s = self.settings
        weight = torch.softmax(self.modal_weight, dim=0)
        rows, cols, learned, original = [], [], [], []
        for m, name in enumerate(self.modalities):
            z = self.encoder.project(name)
            r, c = knn_neighbours(z, s.knn_k, s.knn_chunk_size, self.valid_items)
            rows.append(r)
            cols.append(c)
            learned.append(weight[m] * cosine_values(z, r, c, self.valid_items))
            g = getattr(self, f"original_{name}")
            original.append((g.indices(), weight[m] * g.values()))
        r, c = torch.cat(rows), torch.cat(cols)
        learned = symmetric_normalize(r, c, torch.cat(learned), self.n_items)
        dst = torch.cat([r] + [idx[0] for idx, _ in original])
        src = torch.cat([c] + [idx[1] for idx, _ in original])
        values = torch.cat([(1 - s.lambda_coeff) * learned] + [s.lambda_coeff * v for _, v in original])
        return src, dst, values

    def forward(self, item_graph):
        src, dst, values = item_graph
        h = self.item_id_embedding.weight
        for _ in range(self.settings.n_layers):
            h = edge_propagate(src, dst, values, h)
        if self.settings.cf_model == "lightgcn":
            users, items = lightgcn_layer_mean(self.norm_adj, self.user_embedding.weight, self.item_id_embedding.weight,
                                    self.settings.n_ui_layers)
        else:
            users, items = self.user_embedding.weight, self.item_id_embedding.weight
        return users, items + F.normalize(h, dim=1)

    def compute(self):
        return self.forward(self.build_item_graph())

    def calculate_loss(self, interaction):
        if self.rebuild or self.item_graph is None:
            graph = self.build_item_graph()
            self.item_graph = tuple(t.detach() for t in graph)
            self.rebuild = False
        else:
            graph = self.item_graph
        u = interaction[self.USER_ID]
        p = interaction[self.ITEM_ID]
        n = interaction[self.NEG_ITEM_ID]
        users, items = self.forward(graph)
        e_u, e_p, e_n = users[u], items[p], items[n]
        loss = bpr_loss((e_u * e_p).sum(1), (e_u * e_n).sum(1))
        return loss + self.settings.reg_weight * l2_reg(e_u, e_p, e_n, batch_size=len(u))
