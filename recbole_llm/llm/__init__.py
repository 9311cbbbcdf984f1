"""The LLM layer shared by recbole-llm's LLM recommenders.

* :mod:`~recbole_llm.llm.backbone`: load a causal LM (HF id or folder, GGUF file with a cache of the
  converted weights, GPTQ through gptqmodel) as a frozen :class:`Backbone`; run it on
  ``inputs_embeds`` with padding masks, position ids, an additive attention bias or cached
  keys/values.
* :mod:`~recbole_llm.llm.prompts`: templates mixing text and vectors -> batched ``inputs_embeds``,
  attention masks and vector positions (left/right padding); a cache of the keys/values of frozen
  text prefixes.
* :mod:`~recbole_llm.llm.generation`: batched ``generate()`` with an on-disk answer cache.
* :mod:`~recbole_llm.llm.profiles`: LLM-written user/item profiles from item texts and training
  interactions (RLMRec's profiling), through the generation cache.
* :mod:`~recbole_llm.llm.testing`: tiny random backbones for tests.
"""

from recbole_llm.llm.backbone import (
    DEFAULT_LLM,
    Backbone,
    BackboneOutput,
    GPTQUnavailableError,
    LLMNotFoundError,
    backbone_from_config,
    default_gguf_path,
    load_backbone,
    resolve_llm_path,
)
from recbole_llm.llm.generation import GenerationCache, GenerationStats, generate_answers
from recbole_llm.llm.prompts import PrefixKVStore, PromptBatch, PromptBuilder, PromptTemplate, Vectors

__all__ = [
    "DEFAULT_LLM",
    "Backbone",
    "BackboneOutput",
    "GPTQUnavailableError",
    "LLMNotFoundError",
    "backbone_from_config",
    "default_gguf_path",
    "load_backbone",
    "resolve_llm_path",
    "GenerationCache",
    "GenerationStats",
    "generate_answers",
    "PrefixKVStore",
    "PromptBatch",
    "PromptBuilder",
    "PromptTemplate",
    "Vectors",
]
