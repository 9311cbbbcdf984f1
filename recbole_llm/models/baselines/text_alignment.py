r"""LightGCN+ and HCCF+: a graph recommender plus an InfoNCE alignment of its item node embeddings
with frozen item-text sentence embeddings (the GLTA paper's "GNN-based with text" baselines,
Sec. 4.1.2: "uses InfoNCE loss to align the encoded node embeddings with description embeddings
from a sentence transformer").

The alignment (:class:`TextAlignmentMixin`): the text of each item (the dataset's item-text
template, :func:`recbole_llm.data.features.item_text_embeddings`, all-MiniLM-L6-v2 by default, or
``text_feature_file``) is embedded once and frozen; the propagated item embeddings of the batch's
(unique, positive and negative) items go through a projector (Linear - LeakyReLU - Linear into the
text space) and ``text_align_weight`` x InfoNCE(projected node, its text; the batch's other items
are negatives; cosine, ``text_align_temperature``) is added to the base model's loss. The GLTA
paper gives no code or values for these baselines; the projector shape, the weight (0.01) and the
temperature (0.2) are those of RLMRec's contrastive alignment (``lightgcn_plus.yml``), the closest
published design. Item texts are item features, not interactions: nothing from the validation or
test split is used.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.lightgcn import LightGCN
from torch import nn

from recbole_llm.models.baselines.hccf import HCCF
from recbole_llm.settings import Float, Int, Settings
from recbole_llm.training.losses import info_nce

TEXT_ALIGNMENT_KEYS = {
    "text_align_weight": Float(min=0, doc="weight of the item-text InfoNCE alignment in the loss"),
    "text_align_temperature": Float(gt=0, doc="temperature of that InfoNCE (cosine similarities)"),
}


def text_alignment_settings(model: str) -> Settings:
    """The alignment's settings schema for ``model`` (defaults: ``properties/model/text_alignment.yaml``)."""
    return Settings(model, keys=TEXT_ALIGNMENT_KEYS, prefix="text_align_",
                    yaml_hint="properties/model/text_alignment.yaml")


#: The alignment's schema as LightGCN+ and HCCF+ register it (each reads it under its own name).
TEXT_ALIGNMENT_SETTINGS = text_alignment_settings("text alignment")


class TextAlignmentMixin:
    """Adds ``item_text`` (frozen ``[n_items, d_text]`` buffer), ``text_projector`` and
    :meth:`text_alignment_loss` to a RecBole model; call :meth:`init_text_alignment` at the end of
    ``__init__``. A dataset without item text fails here, naming the missing fields and the
    settings that provide them."""

    def init_text_alignment(self, config, dataset, node_dim: int):
        from recbole_llm.data.features import item_text_embeddings

        s = text_alignment_settings(type(self).__name__).read(config)
        self.text_align_weight = s.weight
        self.text_align_temperature = s.temperature
        text = item_text_embeddings(config, dataset).float()
        has_text = text.abs().sum(dim=1) > 0
        has_text[0] = False  # padding item
        self.register_buffer("item_text", text.to(self.device))
        self.register_buffer("item_has_text", has_text.to(self.device))
        hidden = (node_dim + text.shape[1]) // 2
        self.text_projector = nn.Sequential(nn.Linear(node_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, text.shape[1]))

    def text_alignment_loss(self, item_embeddings: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """InfoNCE between the projected embeddings of ``items`` (unique, with text) and their texts."""
        items = torch.unique(items)
        items = items[self.item_has_text[items]]
        if items.numel() < 2:  # no negatives: nothing to contrast
            return item_embeddings.sum() * 0.0
        return info_nce(self.text_projector(item_embeddings[items]), self.item_text[items], self.text_align_temperature)


LIGHTGCN_KEYS = {
    "embedding_size": Int(min=1, doc="LightGCN's embedding size (RecBole's key)"),
    "n_layers": Int(min=1, doc="LightGCN's propagation layers (RecBole's key)"),
    "reg_weight": Float(min=0, doc="LightGCN's L2 weight (RecBole's key)"),
}
#: LightGCN+'s own keys (RecBole's LightGCN); its alignment keys are :data:`TEXT_ALIGNMENT_SETTINGS`.
LIGHTGCN_SETTINGS = Settings("LightGCNPlus", keys=LIGHTGCN_KEYS, yaml_hint="properties/model/LightGCNPlus.yaml")


class LightGCNPlus(TextAlignmentMixin, LightGCN):
    """LightGCN+ ("LightGCN+" in GLTA's Table 2): RecBole's LightGCN, unchanged, plus the item-text
    InfoNCE alignment of its propagated item embeddings."""

    def __init__(self, config, dataset):
        LIGHTGCN_SETTINGS.read(config)  # validate LightGCN's own keys
        super().__init__(config, dataset)
        self._propagated_items = None
        self.init_text_alignment(config, dataset, self.latent_dim)

    def forward(self):
        users, items = super().forward()
        if self.training:
            self._propagated_items = items  # the embeddings LightGCN's loss used, for the alignment
        return users, items

    def calculate_loss(self, interaction):
        loss = super().calculate_loss(interaction)
        items, self._propagated_items = self._propagated_items, None
        batch_items = torch.cat([interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]])
        return loss + self.text_align_weight * self.text_alignment_loss(items, batch_items)


class HCCFPlus(TextAlignmentMixin, HCCF):
    """HCCF+ ("HCCF+" in GLTA's Table 2): HCCF plus the item-text InfoNCE alignment of its final
    item embeddings."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.init_text_alignment(config, dataset, self.embedding_size)

    def calculate_loss(self, interaction):
        loss, items = self.base_losses(interaction)
        batch_items = torch.cat([interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]])
        return loss + self.text_align_weight * self.text_alignment_loss(items, batch_items)
