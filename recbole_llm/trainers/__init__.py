"""Trainers of recbole-llm's built-in models (registered through ``register_trainers``)."""

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
from recbole_llm.trainers.glta_trainer import GLTATrainer

__all__ = ["GLTATrainer"]
