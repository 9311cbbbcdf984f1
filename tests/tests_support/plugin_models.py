"""Model classes used by plugin tests (module level, so checkpoints can pickle them)."""

import torch
from recbole.model.abstract_recommender import GeneralRecommender, SequentialRecommender
from recbole.utils import InputType


class OrderProbe(GeneralRecommender):
    """Minimal general model whose config reveals property-file precedence."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.emb = torch.nn.Embedding(self.n_items, config["embedding_size"])

    def calculate_loss(self, interaction):
        return self.emb(interaction[self.ITEM_ID]).sum() * 0.0

    def predict(self, interaction):
        return torch.zeros(len(interaction))


class NoLossSeq(SequentialRecommender):
    """A sequential model with neither ``input_type`` nor a ``loss_type`` setting."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
