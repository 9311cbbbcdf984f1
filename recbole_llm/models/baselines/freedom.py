r"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", MM'23), following MMRec's ``models/freedom.py`` (the authors' code).

* **Frozen item-item graph**, built once before training: per modality the binary cosine kNN graph
  of the raw item features (``knn_k`` neighbours, self included; edge weight 1, not the cosine, as
  MMRec's ``get_knn_adj_mat``), :math:`D^{-1/2} S D^{-1/2}` (every row has ``knn_k`` edges: ``1/knn_k``);
  with both modalities :math:`S = w\,S_{image} + (1-w)\,S_{text}` (``mm_image_weight``). Built by
  :func:`recbole_llm.graph.knn.knn_graph` (chunked top-k, sparse).
* **Denoised user-item graph**: before each training epoch, degree-sensitive edge pruning keeps a
  ``1 - dropout`` fraction of the training edges, sampled with probability
  :math:`\propto 1/\sqrt{d_u d_i}`, renormalised (:func:`~recbole_llm.graph.interactions.degree_sensitive_pruning`);
  evaluation uses the full training graph.
* Item :math:`= \mathrm{LightGCN}_i + S^{L_m} e_i^{id}` (``n_mm_layers`` item-graph products),
  user :math:`= \mathrm{LightGCN}_u` (``n_ui_layers``, mean over layers).
* Loss :math:`L_{BPR}(u, i) + \lambda\,(L_{BPR}(u, W_t t_i) + L_{BPR}(u, W_v v_i))`
  (``reg_weight``); the raw feature tables are fine-tuned (``from_pretrained(freeze=False)``).

Checked against the paper and our rules: MMRec builds both graphs from the training data loader's
``inter_matrix`` (the training split), as here; no leak found. Differences, on purpose: the kNN graph
is never dense (MMRec: a dense ``n x n`` similarity) and is not cached to a file keyed only by
``knn_k`` (MMRec's cache would be reused for changed features); the modality projections map to
``embedding_size`` (MMRec's ``feat_embed_dim`` must equal it anyway); RecBole's negative sampling.
"""

from __future__ import annotations

import torch
from recbole.utils import InputType

from recbole_llm.graph.interactions import degree_sensitive_pruning, normalized_adjacency, training_edges
from recbole_llm.graph.knn import knn_graph
from recbole_llm.graph.sparse import lightgcn_layer_mean
from recbole_llm.models.baselines.multimodal import ModalityEncoder, MultimodalRecommender, model_settings
from recbole_llm.settings import Float, Int
from recbole_llm.training.losses import bpr_loss

FREEDOM_SETTINGS = model_settings("FREEDOM", {
    "embedding_size": Int(min=1, doc="ID embedding size, also the modality projections' size"),
    "knn_k": Int(min=1, doc="neighbours per item in the frozen item-item kNN graph"),
    "knn_chunk_size": Int(min=1, doc=(
        "rows of the kNN search computed at a time (a memory bound; float rounding may differ)")),
    "n_mm_layers": Int(min=0, doc="item-graph propagation steps"),
    "n_ui_layers": Int(min=0, doc="LightGCN layers on the user-item graph"),
    "mm_image_weight": Float(min=0, max=1, doc="image share of the frozen item graph when both modalities exist"),
    "dropout": Float(min=0, max=1, doc=(
        "share of user-item edges pruned from the training graph each epoch (degree-sensitive)")),
    "reg_weight": Float(min=0, doc="L2 weight on the batch's embeddings"),
})


class FREEDOM(MultimodalRecommender):
    """FREEDOM with text and/or image features (see the module docstring)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = self.read_modalities(FREEDOM_SETTINGS, config, dataset)
        d = self.settings.embedding_size
        # graphs of the training split (the dataset RecBole hands a model)
        self.register_buffer("norm_adj", normalized_adjacency(dataset), persistent=False)
        users, items = training_edges(dataset)
        self.register_buffer("edge_users", users, persistent=False)
        self.register_buffer("edge_items", items, persistent=False)
        self.register_buffer("mm_adj", self.frozen_item_graph(feats), persistent=False)
        self.masked_adj = None
        self.id_embeddings(d)
        self.encoder = ModalityEncoder(feats, d, trainable=True)

    def frozen_item_graph(self, feats):
        s = self.settings
        graphs = {name: knn_graph(f, s.knn_k, s.knn_chunk_size, self.valid_items, weighted=False)
                  for name, f in feats.items()}
        if len(graphs) == 1:
            return next(iter(graphs.values()))
        w = s.mm_image_weight
        return (w * graphs["image"] + (1.0 - w) * graphs["text"]).coalesce()

    def pre_epoch(self):
        """Degree-sensitive edge pruning: a new denoised training graph for this epoch."""
        if self.settings.dropout <= 0:
            self.masked_adj = self.norm_adj
            return
        self.masked_adj = degree_sensitive_pruning(self.edge_users, self.edge_items, self.n_users, self.n_items,
                                                   1.0 - self.settings.dropout)

    def forward(self, adj):
        h = self.item_id_embedding.weight
        for _ in range(self.settings.n_mm_layers):
            h = torch.sparse.mm(self.mm_adj, h)
        users, items = lightgcn_layer_mean(adj, self.user_embedding.weight, self.item_id_embedding.weight,
                                self.settings.n_ui_layers)
        return users, items + h

    def compute(self):
        return self.forward(self.norm_adj)

    def calculate_loss(self, interaction):
        if self.masked_adj is None:  # used outside MultimodalTrainer (e.g. a bare training loop)
            self.pre_epoch()
        u = interaction[self.USER_ID]
        p = interaction[self.ITEM_ID]
        n = interaction[self.NEG_ITEM_ID]
        users, items = self.forward(self.masked_adj)
        e_u = users[u]
        loss = bpr_loss((e_u * items[p]).sum(1), (e_u * items[n]).sum(1))
        modal = 0.0
        for feats in self.encoder().values():
            modal = modal + bpr_loss((e_u * feats[p]).sum(1), (e_u * feats[n]).sum(1))
        return loss + self.settings.reg_weight * modal
