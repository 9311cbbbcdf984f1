"""What the multimodal baselines (VBPR, GRCN, LATTICE, SLMRec, BM3, FREEDOM) share.

MMRec's models get ``v_feat`` (image) and/or ``t_feat`` (text) from ``.npy`` files; here they come
from the feature layer (:func:`recbole_llm.data.features.item_modalities`): text = sentence
embeddings of the item texts (MiniLM by default) or ``text_feature_file``; image =
``image_feature_file`` (MMRec's ``image_feat.npy``). ``mm_modalities`` chooses: ``auto`` (every
modality the dataset has), ``text``, ``image`` or ``text+image``. Features are indexed by
RecBole's internal item id; row 0 is RecBole's padding item (zero features, never a neighbour,
never recommended since it has no interactions).

* :class:`ModalityEncoder`: the raw feature tables (frozen buffers or, as in MMRec's
  ``nn.Embedding.from_pretrained(freeze=False)``, trainable) and one linear projection per modality.
* :class:`MultimodalRecommender`: a RecBole ``GeneralRecommender`` whose scores are dot products of
  final user and item embeddings, computed once per evaluation (cached until the next ``train()``).
* :class:`MultimodalTrainer`: RecBole's Trainer calling ``model.pre_epoch()`` before each training
  epoch (MMRec's ``pre_epoch_processing``: FREEDOM's edge pruning, LATTICE's graph rebuild).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.trainer import Trainer

from recbole_llm.data.features import MODALITIES, item_modalities
from recbole_llm.models.embedding_scores import EmbeddingScores
from recbole_llm.settings import Choice, Settings

#: Keys every multimodal baseline reads (added to each model's schema).
MODALITY_KEYS = {
    "mm_modalities": Choice(*MODALITIES, doc="item features used: auto (those the dataset has) | text | image | text+image"),
}

#: Order of modalities in fused representations (MMRec: image, then text).
ORDER = ("image", "text")


def model_settings(model: str, keys: dict) -> Settings:
    """A baseline's schema: its own keys plus :data:`MODALITY_KEYS`."""
    return Settings(model, keys={**keys, **MODALITY_KEYS})


def load_modalities(config, dataset, model: str, modalities: str) -> dict:
    """``{name: [item_num, dim] float tensor}`` in :data:`ORDER` (image first, as MMRec fuses
    ``v_feat`` before ``t_feat``); a dataset without any item feature gets a ConfigError naming
    ``model`` and how to provide text or image features."""
    found = dict(item_modalities(config, dataset, modalities, model=model))
    return {name: found[name].float() for name in ORDER if name in found}


class ModalityEncoder(nn.Module):
    """Raw item features per modality and a linear map of each to ``dim``.

    ``trainable``: the raw tables are parameters (MMRec's BM3/FREEDOM/LATTICE fine-tune them);
    otherwise non-persistent buffers. ``init``: ``xavier_normal``/``xavier_uniform`` for the
    projection weights, or ``default`` (PyTorch's). ``normalize``: L2-normalise the raw rows first
    (SLMRec)."""

    def __init__(self, features: dict, dim: int, trainable: bool = False, init: str = "default",
                 normalize: bool = False):
        super().__init__()
        self.names = list(features)
        self.raw = nn.ParameterDict() if trainable else None
        self.proj = nn.ModuleDict()
        for name, feats in features.items():
            feats = nn.functional.normalize(feats, dim=1) if normalize else feats
            if trainable:
                self.raw[name] = nn.Parameter(feats.clone())
            else:
                self.register_buffer(f"raw_{name}", feats.clone(), persistent=False)
            linear = nn.Linear(feats.shape[1], dim)
            if init == "xavier_normal":
                nn.init.xavier_normal_(linear.weight)
            elif init == "xavier_uniform":
                nn.init.xavier_uniform_(linear.weight)
            self.proj[name] = linear

    def features(self, name: str) -> torch.Tensor:
        """The raw ``[item_num, feat_dim]`` table of one modality."""
        return self.raw[name] if self.raw is not None else getattr(self, f"raw_{name}")

    def project(self, name: str) -> torch.Tensor:
        """``[item_num, dim]``: the modality's features through its linear map."""
        return self.proj[name](self.features(name))

    def forward(self) -> dict:
        return {name: self.project(name) for name in self.names}


class MultimodalRecommender(EmbeddingScores, GeneralRecommender):
    """Base of the multimodal baselines: ``compute()`` returns the final ``(users, items)``
    embeddings; scores are their dot products, computed once per evaluation."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        valid = torch.ones(self.n_items, dtype=torch.bool)
        valid[0] = False  # RecBole's padding item
        self.register_buffer("valid_items", valid, persistent=False)

    def read_modalities(self, schema: Settings, config, dataset) -> dict:
        """Sets ``self.settings`` (``schema`` read from ``config``) and ``self.modalities``; returns the
        ``{name: [item_num, dim]}`` features of the configured modalities (:func:`load_modalities`)."""
        s = self.settings = schema.read(config)
        feats = load_modalities(config, dataset, schema.model, s.mm_modalities)
        self.modalities = list(feats)
        return feats

    def id_embeddings(self, dim: int, item_name: str = "item_id_embedding"):
        """``user_embedding`` and the item ID table ``item_name``, Xavier-uniform (MMRec's init)."""
        self.user_embedding = nn.Embedding(self.n_users, dim)
        setattr(self, item_name, nn.Embedding(self.n_items, dim))
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(getattr(self, item_name).weight)

    def compute(self):
        raise NotImplementedError

    def pre_epoch(self):
        """Called by :class:`MultimodalTrainer` before each training epoch."""

    def final_user_item(self):
        return self.compute()


class MultimodalTrainer(Trainer):
    """RecBole's Trainer with MMRec's per-epoch hook: ``model.pre_epoch()`` before each epoch."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.pre_epoch()
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
