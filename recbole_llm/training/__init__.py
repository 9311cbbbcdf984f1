"""Training machinery shared by recbole-llm's multi-stage models (GLTA, GraphAttentiveGPT2, HeLLM):
``staged`` (StagedTrainer, Stage), ``pretrain`` (cached RecBole pretraining on the training split),
``progress`` (epoch and loop log lines), ``checkpoint`` (atomic writes, checked reads)."""

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
