"""Hyperparameter tuning with Optuna (``recbole-llm tune``): search spaces (``space``) and the
study runner (``study``). See ``recbole_llm/tune/study.py`` for what a study does."""
