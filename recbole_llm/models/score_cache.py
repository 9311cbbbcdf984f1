"""One cache for what a model's evaluation computes once and then reads batch by batch.

RecBole's evaluator asks for scores a few users at a time, while the LLM recommenders (GLTA,
GraphAttentiveGPT2) score every user in full batches and the graph recommenders propagate over
the whole graph once (:mod:`recbole_llm.models.embedding_scores`). Each keeps that result here and
says when it stops being valid: by forgetting it (on ``train()``, on a load) or by a key of the
state it was computed from (GLTA's parameter version).
"""

from __future__ import annotations


class ScoreCache:
    """Mixin for a RecBole model: one cached value and the key of the state it belongs to."""

    _cached = None
    _cached_key = None

    def cached(self, compute, key=None):
        """``compute()``'s value, computed again only after :meth:`forget_cached` or when ``key``
        differs from the key it was computed under."""
        if self._cached is None or self._cached_key != key:
            value = compute()
            self._cached, self._cached_key = value, key
        return self._cached

    def forget_cached(self):
        self._cached = self._cached_key = None
