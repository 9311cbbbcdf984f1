"""Scoring by dot products of final user and item embeddings, computed once per evaluation.

Graph recommenders (HeLLMPre, the multimodal baselines) propagate over the whole graph to get their
final embeddings; RecBole's evaluator asks for scores batch by batch, so the propagation is done
once and cached (:class:`~recbole_llm.models.score_cache.ScoreCache`) until the next ``train()``.
"""

from __future__ import annotations

import torch

from recbole_llm.models.score_cache import ScoreCache


class EmbeddingScores(ScoreCache):
    """Mixin for a RecBole model: implement ``final_user_item()`` -> ``(users [U, d], items [I, d])``."""

    def final_user_item(self):
        raise NotImplementedError

    def train(self, mode=True):
        self.forget_cached()
        return super().train(mode)

    @torch.no_grad()
    def final_embeddings(self):
        """``(users, items)`` of the current parameters (cached until the next ``train()``)."""
        if self.training:
            self.forget_cached()
        return self.cached(lambda: tuple(t.detach() for t in self.final_user_item()))

    def predict(self, interaction):
        users, items = self.final_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(1)

    def full_sort_predict(self, interaction):
        users, items = self.final_embeddings()
        return (users[interaction[self.USER_ID]] @ items.T).flatten()
