"""recbole-llm's built-in models, one package each: ``glta/`` (GLTA), ``graph_attentive_gpt2/``
(GraphAttentiveGPT2), ``hellm/`` (HeLLMPre, HeLLM), ``sasrec_per_user/``, and the papers' baselines
(``baselines/``, ``rlmrec/``, ``unisrec/``, ``collm/``, ``llara/``; ``docs/baselines.md``).

Each package is a plugin like any third-party one: its ``plugin`` module implements the hooks of
``recbole_llm.hookspecs`` and is listed in ``recbole_llm.plugins.BUILTIN_PLUGINS``. Shared parts live
outside the model packages: ``recbole_llm.training`` (staged trainer, cached pretraining),
``recbole_llm.graph`` (training-split graphs), ``recbole_llm.llm`` (backbones, prompts, generation),
``recbole_llm.settings`` (typed, validated settings whose defaults live in ``properties/model/``).
Model base classes shared by several packages live here: ``prompt_recommender`` (``LoRARecommender``, a
frozen LLM with LoRA, for HeLLM and ``PromptRecommender``, the body of recommenders that put projected ID
embeddings into a text prompt), ``score_cache`` and ``embedding_scores`` (scores computed once per evaluation).
"""

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
