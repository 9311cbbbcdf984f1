"""User and item profiles written by an LLM from item texts and training interactions (RLMRec's
profiling paradigm, usable by any model that wants text profiles).

An item's profile is generated from its own text; a user's from the texts of the items the user
interacted with in the **training split** (``histories`` from
:func:`recbole_llm.data.interactions.user_histories` of ``train_data.dataset``), so no validation
or test interaction can reach a prompt. Generation goes through
:func:`recbole_llm.llm.generation.generate_answers` (greedy, batched, with its on-disk answer
cache keyed by the model, the decoding settings and the prompt): a rerun on the same training
split generates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from recbole_llm.llm.generation import GenerationStats, generate_answers


@dataclass(frozen=True)
class ProfileSpec:
    """How profile prompts are written and decoded.

    ``user_context`` is formatted with ``items`` (the user's last ``history_items`` training items,
    each written with ``item_format`` over ``n`` and ``text``; ``history_items=0``: all of them);
    ``item_context`` with ``text``. Item texts in prompts are cut to ``item_text_max_tokens``
    tokens of the backbone's tokenizer (0: no cut)."""

    user_instruction: str
    item_instruction: str
    user_context: str = "Items the user interacted with:\n{items}"
    item_context: str = "Item: {text}"
    item_format: str = "{n}. {text}\n"
    history_items: int = 10
    item_text_max_tokens: int = 32
    max_new_tokens: int = 32
    batch_size: int = 16
    chat: bool = True
    system: str = ""
    cache: bool = True


def history_contexts(backbone, item_texts, histories, context: str, item_format: str, history_items: int,
                     item_text_max_tokens: int):
    """``(users, contexts)``: one ``context`` per user with at least one training item (users without
    any, and the padding user 0, get none), formatted with ``items``: the user's last
    ``history_items`` items (0: all), each written with ``item_format`` over ``n`` and ``text`` (cut to
    ``item_text_max_tokens`` tokens). RLMRec's user profiles and GLTA's generation prompts."""
    users, contexts = [], []
    for u, items in enumerate(histories):
        if u == 0 or not len(items):
            continue
        items = items[-history_items:] if history_items > 0 else items
        lines = "".join(item_format.format(n=j + 1, text=backbone.truncate_text(item_texts[int(i)], item_text_max_tokens))
                        for j, i in enumerate(items))
        users.append(u)
        contexts.append(context.format(items=lines).rstrip("\n"))
    return users, contexts


def user_profile_contexts(backbone, item_texts, histories, spec: ProfileSpec):
    """:func:`history_contexts` with the user-profile settings of ``spec``."""
    return history_contexts(backbone, item_texts, histories, spec.user_context, spec.item_format, spec.history_items,
                            spec.item_text_max_tokens)


def item_profile_contexts(backbone, item_texts, spec: ProfileSpec):
    """``(items, contexts)``: one context per item with a non-empty text (not the padding item 0)."""
    items, contexts = [], []
    for i, text in enumerate(item_texts):
        if i == 0 or not text:
            continue
        items.append(i)
        contexts.append(spec.item_context.format(text=backbone.truncate_text(text, spec.item_text_max_tokens)))
    return items, contexts


def _generate(backbone, contexts, instruction, spec, progress, stats):
    answers = generate_answers(backbone, contexts, [instruction], max_new_tokens=spec.max_new_tokens,
                               batch_size=spec.batch_size, chat=spec.chat, system=spec.system or None,
                               cache=spec.cache, progress=progress, stats=stats)
    return [row[0] for row in answers]


def generate_profiles(backbone, item_texts, histories, spec: ProfileSpec, progress=None,
                      stats: GenerationStats | None = None, items: bool = True):
    """``(user_profiles, item_profiles)``: lists of ``len(histories)`` and ``len(item_texts)``
    strings (``""`` where there was nothing to profile; every item without ``items``).
    ``progress(n)`` is called after each generation batch with the number of prompts done."""
    stats = stats if stats is not None else GenerationStats()
    user_profiles, item_profiles = [""] * len(histories), [""] * len(item_texts)
    if items:
        ids, item_contexts = item_profile_contexts(backbone, item_texts, spec)
        for i, text in zip(ids, _generate(backbone, item_contexts, spec.item_instruction, spec, progress, stats)):
            item_profiles[i] = text
    users, user_contexts = user_profile_contexts(backbone, item_texts, histories, spec)
    for u, text in zip(users, _generate(backbone, user_contexts, spec.user_instruction, spec, progress, stats)):
        user_profiles[u] = text
    return user_profiles, item_profiles
