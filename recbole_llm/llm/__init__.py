"""The LLM layer shared by recbole-llm's LLM recommenders.

* :mod:`~recbole_llm.llm.sources`: what ``llm_path`` names (the embedded default, a GGUF file, a
  folder, a hub id) and the ``llm_dtype`` setting.
* :mod:`~recbole_llm.llm.loading`: load a causal LM (GGUF with a cache of the converted weights, GPTQ
  through gptqmodel) from the ``llm_*`` settings, shared within the process.
* :mod:`~recbole_llm.llm.backbone`: the frozen :class:`Backbone`, run on ``inputs_embeds`` with
  padding masks, position ids, an additive attention bias or cached keys/values.
* :mod:`~recbole_llm.llm.adapters`: LoRA and layer truncation of a private copy.
* :mod:`~recbole_llm.llm.prompts`: templates mixing text and vectors -> batched ``inputs_embeds``,
  attention masks and vector positions (left/right padding); a cache of the keys/values of frozen
  text prefixes.
* :mod:`~recbole_llm.llm.generation`: batched ``generate()`` with an on-disk answer cache.
* :mod:`~recbole_llm.llm.profiles`: LLM-written user/item profiles from item texts and training
  interactions (RLMRec's profiling), through the generation cache.
* :mod:`~recbole_llm.llm.testing`: tiny random backbones for tests.
"""

from recbole_llm.llm.backbone import Backbone, BackboneOutput
from recbole_llm.llm.loading import backbone_from_config, load_backbone
from recbole_llm.llm.sources import (DEFAULT_LLM, GPTQUnavailableError, LLMNotFoundError, default_gguf_path,
                                     resolve_llm_path)
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
