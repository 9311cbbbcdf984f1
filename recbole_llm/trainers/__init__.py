"""Trainers of recbole-llm's built-in models (registered through ``register_trainers``)."""

from recbole_llm.trainers.glta_trainer import GLTATrainer

__all__ = ["GLTATrainer"]
