r"""GraphAttentiveGPT2: a causal LM whose attention adds the interaction graph (Wang et al., "LLM-Enhanced
User-Item Interactions: Leveraging Edge Information for Optimized Recommendations"; how we read
the paper and the authors' code: ``docs/graph-attentive-gpt2.md``).

**Tokens.** Prompts are plain text in which ``user_<u>`` and ``item_<i>`` (RecBole internal ids) name
users and items. :meth:`GraphAttentiveGPT2.encode` splits the text on ``user_\d+|item_\d+`` first: each
match is **one** token of kind user/item, and only the text between matches goes through the backbone's
tokenizer (pieces stripped on the right, as in the authors' tokenizer). A token is ``(kind, id)``: kind
0 = word (id: the tokenizer's id), 1 = user, 2 = item, -1 = padding.

**Tables and heads.** Users and items have their own ``nn.Embedding`` tables (``N(0, gat_id_init_std)``);
inputs are routed by kind (words through the backbone's own embedding). Word targets are predicted by the
backbone's own LM head; item targets by a bias-free head tied to the item table
(``logits = h E_item^T``, padding item masked). User embeddings are never an output layer.

**Graph bias.** R (``recbole_llm.graph.hops``) is looked up in ``forward`` for every pair of ID tokens
of the batch (one gather in the ``uint8`` hop table of the training split, one in a 256-entry LUT; text
and padding get 0) and passed to the backbone as an additive ``[B, 1, T, T]`` attention bias: the
backbone adds it to its causal/padding mask and the decoder adds the sum to ``QK^T/sqrt(d)`` before the
softmax in every layer, shared by all heads (``sdpa`` and ``eager``; flash attention is refused).

**Trainable parts** (``gat_trainable``): ``full`` (the authors' code: the whole backbone trains, and is
a registered submodule, so it is in ``state_dict()`` and every checkpoint), ``frozen`` (CLLM4Rec: only
the ID tables train; the backbone stays outside the module tree), ``lora`` (peft adapters; the backbone
with its adapters is a submodule). ``gat_llm_layers`` keeps only the first blocks (CPU budget).

Losses: :meth:`lm_loss` (stages 1-2: next-token cross-entropy on the answer ("main") part only, words
through the word head, items through the item head), :meth:`finetune_loss` (stage 3, Eq. 6:
multinomial log-likelihood of the user's bag of training items at the last prompt token). Scoring
(Eq. 7): one forward per user on the prompt built from the training split, logits over all items.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType, ModelType

from recbole_llm.data.interactions import user_histories
from recbole_llm.errors import ConfigError
from recbole_llm.graph.hops import bias_lut, graph_bias
from recbole_llm.models.graph_attentive_gpt2.hop_cache import cached_hop_table
from recbole_llm.llm.adapters import inject_lora, truncate_layers
from recbole_llm.llm.loading import backbone_from_config
from recbole_llm.models.graph_attentive_gpt2.corpus import check_item_fields
from recbole_llm.models.graph_attentive_gpt2.settings import GAT_SETTINGS
from recbole_llm.models.score_cache import ScoreCache

logger = logging.getLogger(__name__)

WORD, USER, ITEM, PAD = 0, 1, 2, -1
ID_PATTERN = re.compile(r"(user|item)_(\d+)")


class Sample:
    """One tokenised (prompt, main) pair: ``kinds``/``ids`` of all tokens; ``prompt_len`` tokens of prompt."""

    __slots__ = ("kinds", "ids", "prompt_len")

    def __init__(self, kinds, ids, prompt_len):
        self.kinds, self.ids, self.prompt_len = kinds, ids, prompt_len

    def __len__(self):
        return len(self.kinds)


class Batch:
    """Right-padded tensors of a list of samples."""

    def __init__(self, samples, device, width=0):
        lengths = [len(s) for s in samples]
        width = max(max(lengths), width)
        kinds = np.full((len(samples), width), PAD, dtype=np.int64)
        ids = np.zeros((len(samples), width), dtype=np.int64)
        for b, s in enumerate(samples):
            kinds[b, : len(s)] = s.kinds
            ids[b, : len(s)] = s.ids
        self.kinds = torch.from_numpy(kinds).to(device)
        self.ids = torch.from_numpy(ids).to(device)
        self.mask = (self.kinds != PAD).long()
        self.lengths = torch.tensor(lengths, device=device)
        self.prompt_lens = torch.tensor([s.prompt_len for s in samples], device=device)
        self.tokens = int(sum(lengths))


class GraphAttentiveGPT2(ScoreCache, GeneralRecommender):
    r"""Graph-attentive causal LM recommender (see the module docstring)."""

    type = ModelType.GENERAL
    input_type = InputType.PAIRWISE  # the trainer iterates users and prompts itself

    def __init__(self, config, dataset, backbone=None):
        super().__init__(config, dataset)
        self.config = config
        s = self.settings = GAT_SETTINGS.read(config)
        if not s.pretrain and not s.finetune:
            raise ConfigError("GraphAttentiveGPT2 settings gat_pretrain=False and gat_finetune=False leave nothing to "
                              "train; set at least one of them to True.")
        if s.pretrain and not s.corpus and not s.collab_pretrain:
            raise ConfigError("GraphAttentiveGPT2: gat_pretrain=True with an empty gat_corpus and "
                              "gat_collab_pretrain=False has no pretraining data; add corpora or set gat_pretrain=False.")
        self.dataset_name = str(config["dataset"])
        check_item_fields(s, dataset, config)  # fail before loading the LLM
        # -- training split: each user's items in time order (training interactions only) ------------
        self.user_items = user_histories(dataset, by_time=True)
        # -- backbone ------------------------------------------------------------------------------
        if backbone is None:
            own = s.trainable != "frozen" or s.llm_layers > 0
            backbone = backbone_from_config(config, shared=not own, freeze=True)
        self.backbone = backbone
        self.backbone.check_additive_mask("GraphAttentiveGPT2's graph bias R")
        truncate_layers(backbone, s.llm_layers)
        self.backbone_params: list = []
        if s.trainable == "full":
            backbone.model.requires_grad_(True)
            if not s.train_word_embeddings:  # the word table (and a head tied to it) stays as loaded
                for module in (backbone.model.get_input_embeddings(), backbone.model.get_output_embeddings()):
                    if module is not None:
                        module.requires_grad_(False)
            self.backbone_params = [p for p in backbone.model.parameters() if p.requires_grad]
        elif s.trainable == "lora":
            self.backbone_params = list(inject_lora(backbone, s.lora_r, s.lora_alpha, s.lora_dropout, s.lora_targets,
                                                     "gat_lora_targets").values())
        if s.trainable != "frozen":
            self.llm = backbone.model  # a submodule: its (fine-tuned) weights are in state_dict and checkpoints
        hidden = backbone.hidden_size
        # -- ID tables and the tied item head ------------------------------------------------------
        self.user_embedding = nn.Embedding(self.n_users, hidden)
        self.item_embedding = nn.Embedding(self.n_items, hidden)
        nn.init.normal_(self.user_embedding.weight, std=s.id_init_std)
        nn.init.normal_(self.item_embedding.weight, std=s.id_init_std)
        self.to(backbone.dtype)
        # -- graph bias R -------------------------------------------------------------------------
        self.graph_bias_mode = s.graph_bias
        if s.graph_bias == "graph":
            self.hops = cached_hop_table(dataset, s.max_hops, use_cache=s.hop_cache)
            codes = self.hops.codes
        else:
            self.hops, codes = None, torch.zeros(1, 1, dtype=torch.uint8)
        self.register_buffer("hop_codes", codes, persistent=False)
        self.register_buffer("bias_lut", bias_lut(s.graph_bias, s.max_hops, s.r_path, s.delta), persistent=False)
        self._piece_cache: dict = {}
        self.token_stats = {"train": 0, "infer": 0}

    # ------------------------------------------------------------------------------------------
    # setup helpers
    # ------------------------------------------------------------------------------------------
    def id_parameters(self):
        return [self.user_embedding.weight, self.item_embedding.weight]

    def parameter_groups(self, id_lr, backbone_lr):
        """Optimiser parameter groups: the ID tables at ``id_lr``, the backbone's trainable part at ``backbone_lr``."""
        groups = [{"params": self.id_parameters(), "lr": id_lr}]
        if self.backbone_params:
            groups.append({"params": self.backbone_params, "lr": backbone_lr})
        return groups

    @property
    def dev(self):
        return self.item_embedding.weight.device

    # ------------------------------------------------------------------------------------------
    # tokens
    # ------------------------------------------------------------------------------------------
    def _text_ids(self, text):
        ids = self._piece_cache.get(text)
        if ids is None:
            ids = self.backbone.encode(text) if text else ()
            if len(self._piece_cache) < 200_000:
                self._piece_cache[text] = ids
        return ids

    def encode(self, text: str) -> tuple[list, list]:
        """``(kinds, ids)`` of ``text``: ``user_<u>``/``item_<i>`` are single ID tokens, the rest BPE."""
        kinds, ids = [], []
        pos = 0
        for match in ID_PATTERN.finditer(text):
            piece = text[pos : match.start()].rstrip()
            if piece:
                tok = self._text_ids(piece)
                kinds.extend([WORD] * len(tok))
                ids.extend(tok)
            number = int(match.group(2))
            if match.group(1) == "user":
                if not 0 < number < self.n_users:
                    raise ValueError(f"user_{number} is not a user id of this dataset (1..{self.n_users - 1})")
                kinds.append(USER)
            else:
                if not 0 < number < self.n_items:
                    raise ValueError(f"item_{number} is not an item id of this dataset (1..{self.n_items - 1})")
                kinds.append(ITEM)
            ids.append(number)
            pos = match.end()
        piece = text[pos:].rstrip()
        if piece:
            tok = self._text_ids(piece)
            kinds.extend([WORD] * len(tok))
            ids.extend(tok)
        return kinds, ids

    def sample(self, prompt: str, main: str = "", main_max_tokens: int = 0) -> Sample:
        """Tokenise a (prompt, main) pair; ``main`` is cut to ``main_max_tokens`` tokens (0: no cut)."""
        pk, pi = self.encode(prompt)
        mk, mi = self.encode(main) if main else ([], [])
        if main_max_tokens and len(mk) > main_max_tokens:
            mk, mi = mk[:main_max_tokens], mi[:main_max_tokens]
        return Sample(pk + mk, pi + mi, len(pk))

    @staticmethod
    def id_text(kind, number):
        return f"{kind}_{int(number)}"

    def items_text(self, items):
        return " ".join(f"item_{int(i)}" for i in items)

    def history(self, user, hidden=None):
        """The user's visible training items in time order, newest ``gat_max_history`` kept (the
        oldest are cut, so the trigger phrase always stays)."""
        items = self.user_items[int(user)]
        if hidden is not None and len(hidden):
            items = items[~np.isin(items, hidden)]
        return items[-self.settings.max_history :]

    def finetune_prompt(self, user, items) -> Sample:
        text = self.settings.finetune_template.format(user=self.id_text("user", user), items=self.items_text(items))
        return self.sample(text)

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def nodes(self, kinds, ids):
        """Graph node of each token (users first, then items; -1 for words and padding)."""
        node = torch.full_like(ids, -1)
        node = torch.where(kinds == USER, ids, node)
        return torch.where(kinds == ITEM, ids + self.n_users, node)

    def attention_bias(self, kinds, ids):
        """``[B, 1, T, T]`` R of the batch, or None without graph bias."""
        if self.graph_bias_mode == "none":
            return None
        nodes = self.nodes(kinds, ids)
        codes = self.hop_codes if self.graph_bias_mode == "graph" else None
        return graph_bias(codes, self.bias_lut, nodes)[:, None]

    def embed(self, kinds, ids):
        word = self.backbone.embed(torch.where(kinds == WORD, ids, torch.zeros_like(ids)))
        user = self.user_embedding(torch.where(kinds == USER, ids, torch.zeros_like(ids)))
        item = self.item_embedding(torch.where(kinds == ITEM, ids, torch.zeros_like(ids)))
        k = kinds[..., None]
        return torch.where(k == USER, user, torch.where(k == ITEM, item, word.to(item.dtype)))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Last-layer hidden states ``[B, T, H]`` of a :class:`Batch` (R added in every layer)."""
        emb = self.embed(batch.kinds, batch.ids)
        bias = self.attention_bias(batch.kinds, batch.ids)
        out = self.backbone.forward_embeds(emb, attention_mask=batch.mask,
                                           attention_bias=None if bias is None else bias.to(emb.dtype))
        return out.last_hidden_state

    def batch(self, samples, width=0) -> Batch:
        return Batch(samples, self.dev, width)

    def item_logits(self, hidden):
        """Tied item head: ``h E_item^T``; the padding item never wins."""
        logits = hidden.float() @ self.item_embedding.weight.float().t()
        logits[..., 0] = float("-inf")
        return logits

    def word_logits(self, hidden):
        head = self.backbone.model.get_output_embeddings()
        return head(hidden.to(head.weight.dtype)).float()

    # ------------------------------------------------------------------------------------------
    # losses
    # ------------------------------------------------------------------------------------------
    def lm_loss(self, samples, word_targets=True):
        """Eq. 5 on the main part: every main token (the first one included) is predicted from the token
        before it; word targets through the word head, item targets through the tied item head (item-only
        softmax). Mean over target tokens."""
        batch = self.batch(samples)
        self.token_stats["train"] += batch.tokens
        hidden = self(batch)
        T = hidden.shape[1]
        pos = torch.arange(T, device=hidden.device)[None]
        target_pos = (pos >= batch.prompt_lens[:, None].clamp(min=1)) & (pos < batch.lengths[:, None])
        src = target_pos.nonzero(as_tuple=False)  # (b, t) of targets; predicted from t-1
        b, t = src[:, 0], src[:, 1]
        kinds, ids = batch.kinds[b, t], batch.ids[b, t]
        h = hidden[b, t - 1]
        total, count = hidden.new_zeros((), dtype=torch.float32), 0
        items = kinds == ITEM
        if items.any():
            total = total + F.cross_entropy(self.item_logits(h[items]), ids[items], reduction="sum")
            count += int(items.sum())
        words = kinds == WORD
        if word_targets and words.any():
            total = total + F.cross_entropy(self.word_logits(h[words]), ids[words], reduction="sum")
            count += int(words.sum())
        return total / max(1, count)

    def last_hidden(self, samples, width=0):
        batch = self.batch(samples, width)
        hidden = self(batch)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.lengths - 1], batch

    def finetune_loss(self, users, visible, targets):
        """Eq. 6: ``-mean_b sum_j y_bj log softmax(z_b)_j`` with ``z_b`` the item logits at the last prompt
        token of user b (prompt from ``visible[b]``) and ``y_b`` the 0/1 bag ``targets[b]``."""
        samples = [self.finetune_prompt(u, v) for u, v in zip(users, visible)]
        h, batch = self.last_hidden(samples)
        self.token_stats["train"] += batch.tokens
        logp = F.log_softmax(self.item_logits(h), dim=-1)
        y = torch.zeros_like(logp)
        for b, t in enumerate(targets):
            y[b, torch.as_tensor(np.asarray(t), dtype=torch.long, device=y.device)] = 1.0
        return -(y * logp.masked_fill(y == 0, 0.0)).sum(1).mean()

    def calculate_loss(self, interaction):
        """Eq. 6 on the users of a RecBole training batch (lets RecBole's plain ``Trainer`` fine-tune;
        :class:`GraphAttentiveGPT2Trainer` runs every stage instead)."""
        users = [u for u in torch.unique(interaction[self.USER_ID]).tolist() if len(self.user_items[u])]
        rng = np.random.default_rng()
        visible, targets = [], []
        for u in users:
            v, t = self.finetune_example(u, rng)
            visible.append(v)
            targets.append(t)
        return self.finetune_loss(users, visible, targets)

    def finetune_example(self, user, rng):
        """``(visible items, target bag)`` of one user for one epoch: ``max(1, floor(share * n))`` random
        training items are hidden from the prompt (none when ``gat_hide_fraction`` is 0)."""
        items = self.user_items[int(user)]
        share = self.settings.hide_fraction
        n_hide = 0 if share <= 0 or len(items) < 2 else min(len(items) - 1, max(1, int(share * len(items))))
        hidden = rng.choice(items, size=n_hide, replace=False) if n_hide else np.zeros(0, dtype=np.int64)
        target = hidden if self.settings.finetune_target == "hidden" and n_hide else items
        return self.history(user, hidden), np.asarray(target, dtype=np.int64)

    # ------------------------------------------------------------------------------------------
    # scoring (Eq. 7)
    # ------------------------------------------------------------------------------------------
    @property
    def score_width(self) -> int:
        """Length of the longest possible scoring prompt: every scoring batch is padded to it, so a user's
        scores do not depend on which users share the batch (DDP shards equal one process)."""
        if not hasattr(self, "_score_width"):
            self._score_width = len(self.finetune_prompt(1, np.ones(self.settings.max_history, dtype=np.int64)))
        return self._score_width

    @torch.no_grad()
    def score_users(self, users) -> torch.Tensor:
        """``[B, |I|]`` item logits of ``users`` at the last token of their prompt (all training items,
        newest ``gat_max_history``, time order: deterministic)."""
        was_training = self.training
        self.eval()
        out = []
        step = self.settings.eval_batch_size
        users = [int(u) for u in users]
        for i in range(0, len(users), step):
            chunk = users[i : i + step]
            # fixed shapes (step x score_width, the last chunk filled with repeats) make a user's scores
            # independent of the other users of the batch, bit for bit
            padded = chunk + [chunk[0]] * (step - len(chunk))
            h, batch = self.last_hidden([self.finetune_prompt(u, self.history(u)) for u in padded], self.score_width)
            self.token_stats["infer"] += batch.tokens
            out.append(self.item_logits(h)[: len(chunk)])
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.n_items, device=self.dev)

    def train(self, mode=True):
        if mode:
            self.forget_cached()  # parameters may change from here on
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self.forget_cached()
        return super().load_state_dict(*args, **kwargs)

    @torch.no_grad()
    def all_user_scores(self) -> torch.Tensor:
        """``[n_users, |I|]`` scores of every user, computed once per evaluation in full batches of
        ``gat_eval_batch_size`` (RecBole's full-sort evaluator asks for a few users at a time) and kept
        until the model trains again or loads other weights."""
        return self.cached(self._score_every_user)

    def _score_every_user(self):
        scores = torch.full((self.n_users, self.n_items), float("-inf"))
        scores[1:] = self.score_users(range(1, self.n_users)).float().cpu()
        return scores

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID].cpu()
        if self.training:
            return self.score_users(users.tolist()).to(self.device).flatten()
        return self.all_user_scores()[users].to(self.device).flatten()

    def predict(self, interaction):
        users = interaction[self.USER_ID].cpu()
        items = interaction[self.ITEM_ID].cpu()
        return self.all_user_scores()[users, items].to(self.device)
