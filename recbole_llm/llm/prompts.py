"""Prompts that mix text with vectors, batched into ``inputs_embeds`` for a :class:`Backbone`.

A prompt is a list of *segments*: ``str`` (text, tokenised with the backbone's tokenizer and
embedded with its frozen embedding table) and :class:`Vectors` (``n`` rows of the LLM's hidden
size placed at ``n`` consecutive positions: projected graph nodes, prediction slots, soft
prompts). :class:`PromptTemplate` fills a format string such as
``"User{user} watched{history}. Next:{slots}"`` with strings or tensors.

:class:`PromptBuilder` turns a list of prompts into one padded batch (left or right padding)
with the attention mask, position ids and the positions of every named vector segment, and keeps
the autograd path from the vectors to ``inputs_embeds`` (text embeddings carry no gradient).

:class:`PrefixKVStore` caches the keys/values of the *leading text* of prompts: with a frozen LLM
the text before the first vector never changes, so its keys/values are computed once (forward
only) and reused by every later forward (training epochs and inference). Each prompt's cached
prefix keeps its own positions ``0..P-1``; batched prefixes are left-padded and the rest of the
prompt continues at position ``P``, so a cached forward computes the same hidden states as the
uncached one (tested). Put per-example fixed text (descriptions, generated profiles) *before*
the trainable vectors in a template to profit from it.

Tokenisation rules: adjacent text pieces are merged and tokenised together; whitespace at the
end of a text piece that is followed by a vector is dropped (a vector takes the place of a word,
and GPT-2/Llama BPE would otherwise spend a lone-space token on it); a BOS token starts every
prompt when the tokenizer adds one by default.
"""

from __future__ import annotations

import string
import time
from dataclasses import dataclass, field

import torch

from recbole_llm.errors import RecBoleLLMError
from recbole_llm.llm.generation import shared_prefix_length


@dataclass
class Vectors:
    """``values`` (``[n, hidden]``) placed at ``n`` consecutive prompt positions, recorded under ``name``."""

    name: str
    values: torch.Tensor

    def __post_init__(self):
        if self.values.dim() == 1:
            self.values = self.values.unsqueeze(0)


class PromptTemplate:
    """A format string whose ``{fields}`` are filled with text or vectors.

    ``fill(**values)``: a ``str`` value is text; a tensor ``[n, H]`` (or ``[H]``) becomes a
    :class:`Vectors` segment named after the field; a list mixes both; ``None``/``""`` leaves the
    field out. Literal braces are written ``{{`` and ``}}``.
    """

    def __init__(self, template: str):
        self.template = template
        self.parts: list[tuple[str, str | None]] = []  # (literal text, field name or None)
        for literal, name, spec, conv in string.Formatter().parse(template):
            if spec or conv:
                raise RecBoleLLMError(f"prompt template {template!r}: format specs are not supported ({name}).")
            self.parts.append((literal, name))

    @property
    def fields(self) -> list[str]:
        return [name for _, name in self.parts if name]

    def fill(self, **values) -> list:
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise RecBoleLLMError(f"prompt template {self.template!r} needs values for {missing}.")
        segments: list = []
        for literal, name in self.parts:
            if literal:
                segments.append(literal)
            if name:
                segments.extend(_as_segments(name, values[name]))
        return segments


def _as_segments(name, value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, torch.Tensor):
        return [Vectors(name, value)] if value.numel() else []
    if isinstance(value, Vectors):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_as_segments(name, v))
        return out
    return [str(value)]


def normalise(segments) -> list:
    """Merge adjacent text pieces; drop empty ones; strip whitespace before vectors."""
    out: list = []
    for seg in segments:
        if isinstance(seg, str):
            if not seg:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + seg
            else:
                out.append(seg)
        elif isinstance(seg, Vectors):
            if out and isinstance(out[-1], str):
                out[-1] = out[-1].rstrip(" \t")
                if not out[-1]:
                    out.pop()
            out.append(seg)
        else:
            raise TypeError(f"prompt segment must be str or Vectors, got {type(seg).__name__}")
    return out


@dataclass
class PromptBatch:
    """A batch ready for :meth:`Backbone.forward_embeds`.

    ``inputs_embeds`` ``[B, T, H]`` hold only the part of each prompt that is not a cached prefix;
    ``attention_mask`` ``[B, P + T]`` covers the cached prefix (``P`` = longest prefix of the
    batch, left-padded) and the rest; ``input_mask`` ``[B, T]`` marks the real (non-pad) tokens of
    ``inputs_embeds``; ``positions[name]`` ``[B, n]`` are the indices in ``T`` of the rows of the
    vector segments called ``name`` (-1 past an example's own count), ``counts[name]`` ``[B]``.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    input_mask: torch.Tensor
    position_ids: torch.Tensor
    positions: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    prefix_kv: list | None = None  # [(keys, values)] per layer, [B, kv_heads, P, head_dim]
    backbone: object = None
    prefix_lengths: torch.Tensor | None = None
    tokens: int = 0  # real tokens in inputs_embeds
    prefix_tokens: int = 0  # real tokens served from the prefix cache

    @property
    def past_key_values(self):
        """A *fresh* ``DynamicCache`` of the cached prefixes on every access (a forward appends the
        new keys/values to the cache it is given), or ``None`` without a prefix."""
        if self.prefix_kv is None:
            return None
        return self.backbone.cache_from_kv(self.prefix_kv)

    def gather(self, hidden: torch.Tensor, name: str) -> torch.Tensor:
        """Rows of ``hidden`` ``[B, T, H]`` at the positions of segment ``name``: ``[B, n, H]``
        (rows past an example's count are taken at position 0; mask them with ``counts``)."""
        pos = self.positions[name].clamp(min=0)
        return hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


class PromptBuilder:
    """Batches prompts (lists of segments) for one backbone.

    ``padding_side``: ``right`` (pads after each prompt; default) or ``left``.
    ``prefix_store``: a :class:`PrefixKVStore`; when given, the leading text of each prompt is
    served from it (computed on first use) and only the rest is embedded.
    """

    def __init__(self, backbone, padding_side="right", add_bos=True, prefix_store=None):
        if padding_side not in ("left", "right"):
            raise RecBoleLLMError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.backbone = backbone
        self.padding_side = padding_side
        self.add_bos = add_bos
        self.prefix_store = prefix_store

    def _pieces(self, segments):
        """[(kind, payload)] with text turned into token ids; BOS in front."""
        pieces = []
        if self.add_bos and self.backbone.bos_ids:
            pieces.append(("ids", list(self.backbone.bos_ids)))
        for seg in normalise(segments):
            if isinstance(seg, str):
                ids = list(self.backbone.encode(seg))
                if ids:
                    if pieces and pieces[-1][0] == "ids":
                        pieces[-1] = ("ids", pieces[-1][1] + ids)
                    else:
                        pieces.append(("ids", ids))
            else:
                pieces.append(("vec", seg))
        return pieces

    def split_prefix(self, segments):
        """``(prefix token ids, remaining pieces)``: the leading text of a prompt (with BOS)."""
        pieces = self._pieces(segments)
        if pieces and pieces[0][0] == "ids":
            return tuple(pieces[0][1]), pieces[1:]
        return (), pieces

    def build(self, prompts, use_prefix_cache=None) -> PromptBatch:
        backbone = self.backbone
        device = backbone.device
        use_prefix = self.prefix_store is not None if use_prefix_cache is None else use_prefix_cache
        if use_prefix and self.prefix_store is None:
            raise RecBoleLLMError("use_prefix_cache=True needs a PromptBuilder with a prefix_store.")
        prefixes, bodies = [], []
        for segments in prompts:
            if use_prefix:
                prefix, rest = self.split_prefix(segments)
                # keep at least one token outside the cache: hidden states are read from the body
                if prefix and not rest:
                    prefix, rest = prefix[:-1], [("ids", [prefix[-1]])]
            else:
                prefix, rest = (), self._pieces(segments)
            prefixes.append(prefix)
            bodies.append(rest)
        lengths = [sum(len(p[1]) if p[0] == "ids" else p[1].values.shape[0] for p in body) for body in bodies]
        bsz, width = len(prompts), max(lengths) if lengths else 0
        if width == 0:
            raise RecBoleLLMError("empty prompt batch")
        ids = torch.full((bsz, width), backbone.pad_token_id, dtype=torch.long)
        input_mask = torch.zeros(bsz, width, dtype=torch.long)
        vec_b, vec_t, vec_vals = [], [], []
        pos_lists: dict[str, list[list[int]]] = {}
        for b, body in enumerate(bodies):
            t = width - lengths[b] if self.padding_side == "left" else 0
            input_mask[b, t : t + lengths[b]] = 1
            for kind, payload in body:
                if kind == "ids":
                    ids[b, t : t + len(payload)] = torch.tensor(payload, dtype=torch.long)
                    t += len(payload)
                else:
                    n = payload.values.shape[0]
                    rows = list(range(t, t + n))
                    vec_b.extend([b] * n)
                    vec_t.extend(rows)
                    vec_vals.append(payload.values)
                    pos_lists.setdefault(payload.name, [[] for _ in range(bsz)])[b].extend(rows)
                    t += n
        embeds = backbone.embed(ids.to(device))
        if vec_vals:
            values = torch.cat([v.to(device=device, dtype=embeds.dtype) for v in vec_vals], dim=0)
            index = (torch.tensor(vec_b, device=device), torch.tensor(vec_t, device=device))
            embeds = embeds.index_put(index, values)
        positions, counts = {}, {}
        for name, per_ex in pos_lists.items():
            n_max = max(len(r) for r in per_ex)
            pos = torch.full((bsz, n_max), -1, dtype=torch.long)
            for b, r in enumerate(per_ex):
                if r:
                    pos[b, : len(r)] = torch.tensor(r)
            positions[name] = pos.to(device)
            counts[name] = torch.tensor([len(r) for r in per_ex], device=device)
        input_mask = input_mask.to(device)
        body_pos = (input_mask.cumsum(1) - 1).clamp(min=0)
        past, prefix_lengths, prefix_tokens = None, None, 0
        attention_mask = input_mask
        if use_prefix and any(prefixes):
            past, prefix_mask, prefix_lengths = self.prefix_store.batch_kv(prefixes)
            attention_mask = torch.cat([prefix_mask.to(device), input_mask], dim=1)
            body_pos = body_pos + prefix_lengths.to(device).unsqueeze(1)
            prefix_tokens = int(prefix_lengths.sum())
        elif use_prefix:
            prefix_lengths = torch.zeros(bsz, dtype=torch.long, device=device)
        return PromptBatch(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            input_mask=input_mask,
            position_ids=body_pos,
            positions=positions,
            counts=counts,
            prefix_kv=past,
            backbone=backbone,
            prefix_lengths=prefix_lengths,
            tokens=int(sum(lengths)),
            prefix_tokens=prefix_tokens,
        )

    def forward(self, batch: PromptBatch, attention_bias=None):
        """``backbone.forward_embeds`` on a built batch; returns last hidden states ``[B, T, H]``."""
        out = self.backbone.forward_embeds(
            batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            attention_bias=attention_bias,
            past_key_values=batch.past_key_values,
        )
        return out.last_hidden_state


class PrefixKVStore:
    """Keys/values of frozen text prefixes, computed once (forward only) and reused.

    Entries are keyed by the prefix's token ids (identical prefixes share one entry) and stored
    per prompt as one tensor ``[layers, 2, kv_heads, P, head_dim]`` in ``storage_dtype``
    (default: the backbone's dtype; float16 halves the memory at ~1e-3 relative error).

    ``storage_device`` (default: the backbone's device) is where entries live: ``"cpu"`` keeps
    them in host memory (pinned when CUDA is available) and moves only each batch's entries to the
    LLM's device, so GPU memory does not grow with users x layers x tokens. ``max_bytes`` bounds
    the store: entries that do not fit are not kept but recomputed (forward only, no gradient)
    whenever a batch needs them; ``None`` = unbounded. A full store keeps its first entries (no
    eviction, so epochs over users in random order do not thrash it).

    ``share_prefix``: the tokens all prefixes of a computation share (GLTA's ``"Item descriptions:\n(1) "``)
    are run through the LLM once and their keys/values reused for every prefix (False: each prefix whole,
    for comparison; the entries differ by float rounding only).
    """

    def __init__(self, backbone, storage_dtype=None, batch_size=16, storage_device=None, max_bytes=None,
                 share_prefix=True):
        self.backbone = backbone
        self.share_prefix = share_prefix
        self.storage_dtype = storage_dtype or backbone.dtype
        self.batch_size = max(1, int(batch_size))
        self.storage_device = torch.device(storage_device) if storage_device else None
        self.max_bytes = int(max_bytes) if max_bytes is not None else None
        self._pin = (self.storage_device is not None and self.storage_device.type == "cpu"
                     and torch.cuda.is_available() and backbone.device.type == "cuda")
        self._kv: dict[tuple, torch.Tensor] = {}
        self._nbytes = 0
        self.computed_tokens = 0
        self.compute_seconds = 0.0
        self.recomputed_tokens = 0  # tokens computed again because the store was full
        self.shared_tokens = 0  # leading tokens run once for a whole computation (counted in computed_tokens per prefix)

    def __len__(self):
        return len(self._kv)

    def __contains__(self, key):
        return tuple(key) in self._kv

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def clear(self):
        self._kv.clear()
        self._nbytes = 0

    def _keep(self, key, entry) -> bool:
        """Store ``entry`` under ``key`` if the budget allows; return whether it was stored."""
        size = entry.numel() * entry.element_size()
        if self.max_bytes is not None and self._nbytes + size > self.max_bytes:
            return False
        if self.storage_device is not None:
            entry = entry.to(self.storage_device)
            if self._pin:
                entry = entry.pin_memory()
        self._kv[key] = entry
        self._nbytes += size
        return True

    @torch.no_grad()
    def _compute(self, missing, progress=None) -> dict:
        """Keys/values of the ``missing`` prefixes (sorted by length, batched): ``{prefix: entry}``
        on the LLM's device, in ``storage_dtype``."""
        backbone = self.backbone
        device = backbone.device
        computed = {}
        start = time.perf_counter()
        # tokens every missing prefix starts with: run once, their keys/values reused by each batch
        shared = shared_prefix_length(missing) if self.share_prefix else 0
        shared_kv = None
        if shared:
            ids = torch.tensor([missing[0][:shared]], dtype=torch.long, device=device)
            pos = torch.arange(shared, device=device).unsqueeze(0)
            shared_kv = backbone.kv_from_cache(
                backbone.forward_embeds(backbone.embed(ids), position_ids=pos, use_cache=True).past_key_values)
            self.shared_tokens += shared
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i : i + self.batch_size]
            width = max(len(p) for p in chunk) - shared
            ids = torch.full((len(chunk), width), backbone.pad_token_id, dtype=torch.long)
            mask = torch.zeros(len(chunk), shared + width, dtype=torch.long)
            for b, p in enumerate(chunk):
                ids[b, : len(p) - shared] = torch.tensor(p[shared:])
                mask[b, : len(p)] = 1
            embeds = backbone.embed(ids.to(device))
            pos = torch.arange(shared, shared + width, device=device).unsqueeze(0).expand(len(chunk), -1)
            past = None
            if shared_kv is not None:
                past = backbone.cache_from_kv([(k.expand(len(chunk), -1, -1, -1).contiguous(),
                                                v.expand(len(chunk), -1, -1, -1).contiguous()) for k, v in shared_kv])
            out = backbone.forward_embeds(embeds, attention_mask=mask.to(device), position_ids=pos,
                                          past_key_values=past, use_cache=True)
            kv = backbone.kv_from_cache(out.past_key_values)
            stacked = torch.stack([torch.stack([k, v], dim=1) for k, v in kv], dim=1)  # [B, L, 2, h, T, d]
            for b, p in enumerate(chunk):
                computed[p] = stacked[b, :, :, :, : len(p)].to(self.storage_dtype).clone()
            self.computed_tokens += sum(len(p) for p in chunk)
            if progress is not None:
                progress(len(chunk), work=sum(len(p) for p in chunk))
        self.compute_seconds += time.perf_counter() - start
        return computed

    def missing(self, prefixes) -> list:
        """The distinct non-empty ``prefixes`` not stored yet, shortest first (the order computed)."""
        return sorted({tuple(p) for p in prefixes if p and tuple(p) not in self._kv}, key=len)

    @torch.no_grad()
    def ensure(self, prefixes, progress=None, until_full=False) -> dict:
        """Compute the entries of ``prefixes`` (token-id sequences) that are missing and keep those
        that fit; return the computed entries that were not kept (``{prefix: entry}``).
        ``progress(n, work=tokens)`` after each computed batch of ``n`` prefixes.
        ``until_full``: stop computing once the store is full (precomputation; the rest is
        computed when a batch needs it)."""
        missing = self.missing(prefixes)
        if not missing:
            return {}
        if not until_full or self.max_bytes is None:
            computed = self._compute(missing, progress)
            return {key: entry for key, entry in computed.items() if not self._keep(key, entry)}
        for i in range(0, len(missing), self.batch_size):
            computed = self._compute(missing[i : i + self.batch_size], progress)
            if not all([self._keep(key, entry) for key, entry in computed.items()]):
                break
        return {}

    def batch_kv(self, prefixes):
        """``([(keys, values)] per layer, prefix_mask [B, P], prefix_lengths [B])``, left-padded."""
        transient = self.ensure(prefixes)
        if transient:
            self.recomputed_tokens += sum(len(p) for p in transient)
        backbone = self.backbone
        device, dtype = backbone.device, backbone.dtype
        lengths = [len(p) for p in prefixes]
        width = max(lengths)

        def entry(p):
            p = tuple(p)
            return transient[p] if p in transient else self._kv[p]

        ref = next(entry(p) for p in prefixes if p)
        n_layers, _, heads, _, head_dim = ref.shape
        out = torch.zeros(len(prefixes), n_layers, 2, heads, width, head_dim, dtype=dtype, device=device)
        mask = torch.zeros(len(prefixes), width, dtype=torch.long, device=device)
        for b, p in enumerate(prefixes):
            if p:
                out[b, :, :, :, width - len(p) :] = entry(p).to(device=device, dtype=dtype, non_blocking=True)
                mask[b, width - len(p) :] = 1
        kv = [(out[:, layer, 0], out[:, layer, 1]) for layer in range(n_layers)]
        return kv, mask, torch.tensor(lengths, dtype=torch.long, device=device)
