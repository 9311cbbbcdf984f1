"""Scoring by dot products of final user and item embeddings, computed once per evaluation.

Graph recommenders (HeLLMPre, the multimodal baselines) propagate over the whole graph to get their
final embeddings; RecBole's evaluator asks for scores batch by batch, so the propagation is done
once and cached until the model goes back to ``train()``.
"""

from __future__ import annotations

import torch


class EmbeddingScores:
    """Mixin for a RecBole model: implement ``final_user_item()`` -> ``(users [U, d], items [I, d])``."""

    _cache = None

    def final_user_item(self):
        raise NotImplementedError

    def train(self, mode=True):
        self._cache = None
        return super().train(mode)

    @torch.no_grad()
    def final_embeddings(self):
        """``(users, items)`` of the current parameters (cached until the next ``train()``)."""
        if self._cache is None or self.training:
            users, items = self.final_user_item()
            self._cache = (users.detach(), items.detach())
        return self._cache

    def predict(self, interaction):
        users, items = self.final_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(1)

    def full_sort_predict(self, interaction):
        users, items = self.final_embeddings()
        return (users[interaction[self.USER_ID]] @ items.T).flatten()
