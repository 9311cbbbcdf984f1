"""Batched text generation with ``model.generate()`` and an on-disk cache.

:func:`generate_answers` asks several instructions about each of many contexts (GLTA: a user's
history-item descriptions, asked for a profile and for a prediction). The prompt of each
(context, instruction) pair is the chat-formatted user message ``context + "\\n" +
instruction`` (plain text when the tokenizer has no chat template or ``chat=False``). Each
context is pre-filled once and its key/value cache copied for every instruction
(``generate(cache=...)``), so asking two questions costs one prefill, and the questions are decoded
together in one ``generate`` call (``merge_instructions``: twice the rows per decoding step). The
leading tokens every prompt shares (chat header, system prompt, the context template's opening
words) are pre-filled once for the whole call and their keys/values reused by every batch
(``share_prefix``): causal attention makes them the same for every prompt. Both change only float
rounding; ``benchmarks/results/generation_prefix_*.md`` compares the texts with the plain path.

Decoding is greedy by default, so an answer depends only on the model and the prompt: answers
are cached on disk, keyed by the model fingerprint, the decoding settings and the prompt, in
``<cache_dir>/llm/generations/<fingerprint>.jsonl`` (one JSON object per line, appended after
every batch, so an interrupted run keeps what it generated). Runs, epochs and processes reuse it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recbole_llm.paths import cache_dir

logger = logging.getLogger(__name__)

_SENTINEL = "\u2063\u2063RECBOLE_LLM_SPLIT\u2063\u2063"


class GenerationCache:
    """Answers on disk: ``key -> text`` in a JSON-lines file (append-only)."""

    def __init__(self, path):
        self.path = Path(path)
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.is_file():
            self._read()

    def _read(self):
        """Load the answers; only a last line cut by a crash (no newline, the start of a row) is
        skipped, anything else unreadable raises :class:`CorruptFileError` naming file and line."""
        from recbole_llm.errors import CorruptFileError

        with open(self.path, "rb") as fh:
            lines = fh.read().split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
                if not (isinstance(row, dict) and isinstance(row.get("k"), str) and isinstance(row.get("text"), str)):
                    raise ValueError("not a {k, text} row")
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                if number == len(lines) and raw.startswith(b'{"k"'):
                    continue  # the last row, cut by a crash
                raise CorruptFileError(
                    f"generation cache {self.path}, line {number}: not a cached answer ({type(exc).__name__}). "
                    f"Delete the file; the texts are generated again on the next run.") from None
            self._data[row["k"]] = row["text"]

    def __len__(self):
        return len(self._data)

    def get(self, key):
        return self._data.get(key)

    def put_many(self, items):
        if not items:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps({"k": k, "text": t}, ensure_ascii=False) + "\n" for k, t in items))
                fh.flush()
                os.fsync(fh.fileno())
            self._data.update(items)


def default_cache_path(backbone) -> Path:
    return cache_dir() / "llm" / "generations" / f"{backbone.fingerprint}.jsonl"


@dataclass
class GenerationStats:
    prompts: int = 0
    cached: int = 0
    generated: int = 0
    prefill_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return (self.prefill_tokens + self.new_tokens) / self.seconds if self.seconds else 0.0


def uses_chat(tokenizer, chat: bool) -> bool:
    return bool(chat and getattr(tokenizer, "chat_template", None))


def _split_chat(tokenizer, context: str, instruction: str, chat: bool, system: str | None):
    """(context part, instruction part) of the full prompt text, split where they meet."""
    if uses_chat(tokenizer, chat):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": context + _SENTINEL + instruction}
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head, tail = text.split(_SENTINEL)
        return head, "\n" + tail
    prefix = (system + "\n\n") if system else ""
    return prefix + context, "\n" + instruction + "\n"


def _key(fingerprint, settings, prompt):
    raw = json.dumps([fingerprint, settings, prompt], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def common_prefix_length(sequences) -> int:
    """Length of the longest common prefix of token-id sequences (0 for none or an empty list)."""
    if not sequences:
        return 0
    first = sequences[0]
    n = min(len(seq) for seq in sequences)
    for seq in sequences[1:]:
        i = 0
        while i < n and seq[i] == first[i]:
            i += 1
        n = i
        if not n:
            break
    return n


def shared_prefix_length(sequences, minimum=2) -> int:
    """How many leading tokens all ``sequences`` share and can be pre-filled once: their common prefix,
    less one so every sequence keeps a token of its own; 0 when that is under ``minimum`` tokens or
    there are fewer than two sequences (nothing to share)."""
    if len(sequences) < 2:
        return 0
    n = min(common_prefix_length(sequences), min(len(seq) for seq in sequences) - 1)
    return n if n >= minimum else 0


def clean_answer(text: str) -> str:
    """First paragraph of an answer, whitespace tidied."""
    text = text.strip()
    for stop in ("\n\n",):
        if stop in text:
            text = text.split(stop, 1)[0]
    return " ".join(text.split())


def _generate_calls(tokenizer, chunk, n_ins, merge):
    """The ``generate`` calls of one batch of contexts: lists of ``(row, instruction, key, tail ids)``.
    ``merge``: one call for every instruction of every row (twice the rows per decoding step for two
    instructions, which a CPU's matrix products run at a better rate); else one call per instruction, and
    row by row for an instruction whose tail is tokenised differently across rows."""
    tails: dict[str, list[int]] = {}
    calls = []
    for q in range(n_ins):
        call = []
        for b, (_, need, _) in enumerate(chunk):
            for n in need:
                if n[0] == q:
                    if n[3] not in tails:
                        tails[n[3]] = list(tokenizer(n[3], add_special_tokens=False).input_ids)
                    call.append((b, q, n[1], tails[n[3]]))
        if not call:
            continue
        if not merge and len({tuple(t) for _, _, _, t in call}) != 1:
            calls.extend([entry] for entry in call)
        else:
            calls.append(call)
    return [[entry for call in calls for entry in call]] if merge and calls else calls


@torch.no_grad()
def generate_answers(
    backbone,
    contexts,
    instructions,
    max_new_tokens=32,
    batch_size=16,
    chat=True,
    system=None,
    cache=True,
    cache_path=None,
    do_sample=False,
    progress=None,
    stats: GenerationStats | None = None,
    share_prefix=True,
    merge_instructions=True,
):
    """Answers ``[len(contexts)][len(instructions)]`` (cleaned with :func:`clean_answer`).

    ``cache``: reuse and extend the on-disk cache (``cache_path`` or :func:`default_cache_path`).
    ``progress(n)`` is called after each batch with the number of contexts done. ``share_prefix``:
    pre-fill the tokens all prompts start with once (see the module docstring; False pre-fills every
    prompt whole, for comparison). ``merge_instructions``: decode every instruction of a batch in one
    ``generate`` call (False: one call per instruction). ``stats.extra``: ``shared_prefix_tokens`` (the shared length) and
    ``prompt_tokens`` (tokens of the prompts generated from, each counted whole).
    """
    tokenizer, model = backbone.tokenizer, backbone.model
    stats = stats if stats is not None else GenerationStats()
    settings = {"max_new_tokens": int(max_new_tokens), "do_sample": bool(do_sample), "chat": bool(chat),
                "system": system or ""}
    store = GenerationCache(cache_path or default_cache_path(backbone)) if cache else None
    n_ctx, n_ins = len(contexts), len(instructions)
    answers = [[None] * n_ins for _ in range(n_ctx)]
    todo = []  # (context index, [(instruction index, key, head, tail)])
    for c, context in enumerate(contexts):
        need = []
        for q, instruction in enumerate(instructions):
            head, tail = _split_chat(tokenizer, context, instruction, chat, system)
            key = _key(backbone.fingerprint, settings, head + tail)
            hit = store.get(key) if store is not None else None
            if hit is not None:
                answers[c][q] = hit
                stats.cached += 1
            else:
                need.append((q, key, head, tail))
        stats.prompts += n_ins
        if need:
            todo.append((c, need))
    if not todo:
        return [[clean_answer(a) for a in row] for row in answers]

    start = time.perf_counter()
    device = backbone.device
    pad = backbone.pad_token_id
    eos = tokenizer.eos_token_id
    gen_kwargs = dict(max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample), pad_token_id=pad)
    if eos is not None:
        gen_kwargs["eos_token_id"] = eos
    if not do_sample:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    # encode once; sort by length so batches pad little
    encoded = []
    for c, need in todo:
        # a chat template writes its own special tokens (BOS included) into the text
        head_ids = list(tokenizer(need[0][2], add_special_tokens=not uses_chat(tokenizer, chat)).input_ids)
        encoded.append((c, need, head_ids))
    encoded.sort(key=lambda item: len(item[2]))
    # the tokens every head starts with, pre-filled once; each batch's heads continue after them,
    # left-padded in between ([shared][pad][own tokens]: masks and positions skip the padding)
    shared = shared_prefix_length([h for _, _, h in encoded]) if share_prefix else 0
    shared_kv = None
    if shared:
        shared_ids = torch.tensor([encoded[0][2][:shared]], dtype=torch.long, device=device)
        shared_kv = backbone.kv_from_cache(model(input_ids=shared_ids, use_cache=True, logits_to_keep=1).cache)
        stats.prefill_tokens += shared
    stats.extra["shared_prefix_tokens"] = shared
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i : i + batch_size]
        width = shared + max(len(h) - shared for _, _, h in chunk)
        head = torch.full((len(chunk), width), pad, dtype=torch.long)
        hmask = torch.zeros(len(chunk), width, dtype=torch.long)
        for b, (_, _, h) in enumerate(chunk):
            head[b, :shared] = torch.tensor(h[:shared], dtype=torch.long)
            hmask[b, :shared] = 1
            head[b, width - len(h) + shared :] = torch.tensor(h[shared:], dtype=torch.long)
            hmask[b, width - len(h) + shared :] = 1
        head, hmask = head.to(device), hmask.to(device)
        pos = (hmask.cumsum(1) - 1).clamp(min=0)
        if shared_kv is None:
            out = model(input_ids=head, attention_mask=hmask, position_ids=pos, use_cache=True, logits_to_keep=1)
        else:
            past = backbone.cache_from_kv([(k.expand(len(chunk), -1, -1, -1).contiguous(),
                                            v.expand(len(chunk), -1, -1, -1).contiguous()) for k, v in shared_kv])
            out = model(input_ids=head[:, shared:], attention_mask=hmask, position_ids=pos[:, shared:], cache=past,
                        use_cache=True, logits_to_keep=1)
        prefilled = out.cache
        stats.prefill_tokens += int(hmask[:, shared:].sum())
        results = []
        calls = _generate_calls(tokenizer, chunk, n_ins, merge_instructions)
        for call in calls:
            # each row: its context's pre-filled head, then its instruction's tail, right-aligned
            # ([head][pad][tail] when tails differ in length: masks and positions skip the padding)
            width_tail = max(len(t) for _, _, _, t in call)
            sel = torch.tensor([b for b, _, _, _ in call], device=device)
            tail = torch.full((len(call), width_tail), pad, dtype=torch.long)
            tmask = torch.zeros(len(call), width_tail, dtype=torch.long)
            for j, (_, _, _, t) in enumerate(call):
                tail[j, width_tail - len(t) :] = torch.tensor(t, dtype=torch.long)
                tmask[j, width_tail - len(t) :] = 1
            tail, tmask = tail.to(device), tmask.to(device)
            ids = torch.cat([head[sel], tail], dim=1)
            mask = torch.cat([hmask[sel], tmask], dim=1)
            cache = prefilled if len(calls) == 1 else copy.deepcopy(prefilled)
            if len(call) != len(chunk) or not torch.equal(sel.cpu(), torch.arange(len(chunk))):
                cache.batch_select_indices(sel)
            generated = model.generate(input_ids=ids, attention_mask=mask, cache=cache, **gen_kwargs)
            new = generated[:, ids.shape[1] :]
            stats.prefill_tokens += int(tmask.sum())
            stats.extra["prompt_tokens"] = stats.extra.get("prompt_tokens", 0) + int(mask.sum())
            for j, (b, q, key, _) in enumerate(call):
                row_new = new[j]
                if eos is not None:
                    stop = (row_new == eos).nonzero()
                    if len(stop):
                        row_new = row_new[: int(stop[0])]
                row_new = row_new[row_new != pad] if pad != eos else row_new
                stats.new_tokens += int(row_new.numel())
                text = tokenizer.decode(row_new.tolist(), skip_special_tokens=True)
                answers[chunk[b][0]][q] = text
                results.append((key, text))
                stats.generated += 1
        if store is not None:
            store.put_many(results)
        if progress is not None:
            progress(len(chunk))
    stats.seconds += time.perf_counter() - start
    return [[clean_answer(a) for a in row] for row in answers]
