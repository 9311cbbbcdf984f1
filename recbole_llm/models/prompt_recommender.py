"""``PromptRecommender``: the shared body of LLM recommenders that read one prompt per user, mixing
item texts with projected ID embeddings (CoLLM, LLaRA), on ``LoRARecommender`` (the frozen LLM with
LoRA and batched evaluation, shared with HeLLM).

A RecBole sequential model (the user's history is ``ITEM_SEQ``). Subclasses only say how a prompt
is written (:meth:`PromptRecommender.prompt`); this class owns the rest:

* the LLM (``llm_*`` settings), a private copy with peft LoRA on ``<prefix>lora_targets``, its
  base weights frozen; the LoRA weights are registered in ``self.lora`` (a ParameterDict sharing
  the tensors peft injected) so that checkpoints hold them but not the LLM;
* item titles (:func:`recbole_llm.data.text.item_texts`, cut to ``<prefix>title_max_tokens``);
* prompts batched with :class:`~recbole_llm.llm.prompts.PromptBuilder` (left padding, so the
  last position is every prompt's last token; vectors injected at their placeholder positions);
* three output forms (``<prefix>output``):

  ``item_head`` (default, full ranking as the HeLLM paper evaluates these models): a trainable
  linear head over all items on the last hidden state (zero-initialised: every item starts at
  the same logit), cross-entropy against the next item, RecBole's full-sort evaluator.

  ``yes_no`` (CoLLM's own form): the prompt names a target item; score = logit("Yes") -
  logit("No") of the frozen LM head at the last position; binary cross-entropy with the true next
  item as positive and ``<prefix>negatives`` uniformly sampled items as negatives.

  ``candidates`` (LLaRA's own form, simplified): score = mean log-likelihood of the candidate's
  title tokens after the prompt (LM loss on the true next item's title in training). LLaRA lists
  the candidates in the prompt and generates a title; RecBole's pointwise ``predict`` sees one
  (user, item) pair at a time, so the list is left out and each candidate is scored by the
  likelihood LLaRA's generation would maximise.

  The two original forms score given items only: use them with ``eval_args.mode: uni100``
  (RecBole's sampled evaluation); ``full_sort_predict`` refuses with a :class:`ConfigError`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_llm.errors import ConfigError
from recbole_llm.llm.adapters import inject_lora
from recbole_llm.llm.loading import backbone_from_config
from recbole_llm.llm.prompts import PromptBuilder, Vectors

#: Output forms; ``item_head`` ranks all items, the others score given (sampled) candidates.
ITEM_HEAD, YES_NO, CANDIDATES = "item_head", "yes_no", "candidates"


def projector(d_in, d_hidden, d_out, dropout=0.0, activation=nn.GELU):
    """``Linear(d_in, d_hidden), activation, Dropout, Linear(d_hidden, d_out)``: the ID-to-token
    mapping of CoLLM (ReLU, hidden = 10 x d) and LLaRA (GELU, hidden = LLM size)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), activation(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


class LoRARecommender(SequentialRecommender):
    """Base of the sequential LLM recommenders (:class:`PromptRecommender`, HeLLM): a private copy of
    the LLM with peft LoRA and its base weights frozen, LoRA dropout following ``train()`` /
    ``eval()``, and evaluation in batches of ``<prefix>eval_batch_size``. The LLM is not a
    submodule; its LoRA weights are registered in ``self.lora`` (a ParameterDict sharing the tensors
    peft injected), so checkpoints hold them but not the LLM."""

    def attach_llm(self, config, backbone, targets_key):
        """``self.backbone`` (``backbone`` or one loaded from the ``llm_*`` settings), frozen, with
        LoRA from ``self.settings`` (``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_targets``,
        named ``targets_key`` in errors)."""
        s = self.settings
        self.backbone = backbone if backbone is not None else backbone_from_config(config, shared=False, freeze=True)
        self.backbone.freeze()
        lora = inject_lora(self.backbone, s.lora_r, s.lora_alpha, s.lora_dropout, s.lora_targets, targets_key)
        self.lora = nn.ParameterDict({name.replace(".", "__"): p for name, p in lora.items()})

    def train(self, mode=True):
        super().train(mode)
        self.backbone.model.train(mode)  # LoRA dropout follows the mode; the LLM's weights stay frozen
        return self

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def in_batches(self, n, fn):
        """``fn(start, stop)`` over ``range(n)`` in slices of ``eval_batch_size``, concatenated."""
        step = self.settings.eval_batch_size
        return torch.cat([fn(i, min(i + step, n)) for i in range(0, n, step)])


class PromptRecommender(LoRARecommender):
    """Base class (see the module docstring); ``settings`` is the model's
    :class:`~recbole_llm.settings.Settings` (keys ``<prefix>output``, ``lora_*``, ``max_history``,
    ``title_max_tokens``, ``eval_batch_size`` and, for ``yes_no``, ``negatives``)."""

    input_type = InputType.POINTWISE
    #: Output forms the subclass supports besides ``item_head``.
    ORIGINAL_OUTPUTS: tuple = ()

    def __init__(self, config, dataset, settings, backbone=None):
        super().__init__(config, dataset)
        s = self.settings = settings.read(config)
        self.prefix = settings.prefix
        self.output = s.output
        if self.output not in (ITEM_HEAD,) + self.ORIGINAL_OUTPUTS:
            raise ConfigError(f"{self.prefix}output={self.output!r} is not an output of {type(self).__name__}; "
                              f"use one of {[ITEM_HEAD, *self.ORIGINAL_OUTPUTS]}.")
        if self.output != ITEM_HEAD:
            mode = config["eval_args"]["mode"]
            if "full" in (mode.values() if isinstance(mode, dict) else [mode]):
                raise ConfigError(self._full_ranking_refused())
        self.attach_llm(config, backbone, f"{self.prefix}lora_targets")
        self.hidden = self.backbone.hidden_size
        self.builder = PromptBuilder(self.backbone, padding_side="left")
        self.titles = self._titles(config, dataset)
        if self.output == ITEM_HEAD:
            self.head = nn.Linear(self.hidden, self.n_items, bias=False)
            nn.init.zeros_(self.head.weight)
        elif self.output == YES_NO:
            self.answer_ids = self._answer_ids()
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)
        #: prompt form used by ``calculate_loss`` (hybrid = with ID vectors); set by the trainer's stages
        self.train_hybrid = True
        #: prompt form used by ``predict`` / ``full_sort_predict``
        self.eval_hybrid = True

    def _full_ranking_refused(self):
        return (f"{type(self).__name__} with {self.prefix}output={self.output} scores given candidate items only and "
                "cannot rank all items: evaluate it with sampled candidates (eval_args mode: uni100, e.g. "
                "--eval_args=\"{'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'uni100'}\") or use "
                f"{self.prefix}output=item_head for full ranking.")

    # -- pieces ------------------------------------------------------------------------------------
    def _titles(self, config, dataset):
        from recbole_llm.data.text import item_texts

        texts = item_texts(config, dataset, model_name=type(self).__name__, tokenizer=self.backbone.tokenizer)
        return [self.backbone.truncate_text(t, self.settings.title_max_tokens) for t in texts]

    def _answer_ids(self):
        """Token ids of the answers: " Yes"/" No" where each is one token (byte-level BPE after "Answer:"),
        else the first token of "Yes"/"No" (SentencePiece adds the word boundary itself)."""
        def first(word):
            spaced = self.backbone.encode(" " + word)
            return spaced if len(spaced) == 1 else self.backbone.encode(word)

        ids = [first(word) for word in ("Yes", "No")]
        if not ids[0] or not ids[1] or ids[0][0] == ids[1][0]:
            raise ConfigError(f"{type(self).__name__} {self.prefix}output=yes_no: the tokenizer does not give 'Yes' and "
                              "'No' distinct first tokens; use the item_head output.")
        return [ids[0][0], ids[1][0]]

    @property
    def dev(self):
        return self._anchor.device

    def lora_parameters(self):
        return list(self.lora.values())

    def head_parameters(self):
        return list(self.head.parameters()) if self.output == ITEM_HEAD else []

    def histories(self, interaction):
        """The last ``max_history`` items of each row's history, oldest first (lists of ids)."""
        seq, lens = interaction[self.ITEM_SEQ].cpu(), interaction[self.ITEM_SEQ_LEN].cpu()
        keep = self.settings.max_history
        return [row[max(0, int(n) - keep): int(n)].tolist() for row, n in zip(seq, lens)]

    def prompt(self, interaction, rows, hybrid, targets=None) -> list:
        """Segments of one prompt per row in ``rows`` (list of row indices); ``targets``: the item
        named in the prompt (``yes_no``), else None."""
        raise NotImplementedError

    def build(self, interaction, hybrid=True, targets=None, answers=None):
        """The :class:`~recbole_llm.llm.prompts.PromptBatch` of ``interaction``'s prompts; ``answers``
        (item ids) append each item's title tokens as the segment ``answer``."""
        rows = list(range(len(interaction[self.ITEM_SEQ])))
        prompts = self.prompt(interaction, rows, hybrid, targets)
        if answers is not None:
            embed = self.backbone.embed
            for p, item in zip(prompts, answers.tolist()):
                ids = torch.tensor(self.answer_tokens(item), device=self.backbone.device)
                p.append(Vectors("answer", embed(ids).detach()))
        return self.builder.build(prompts)

    def answer_tokens(self, item):
        return list(self.backbone.encode(" " + (self.titles[item] or f"item {item}")))

    def hidden_states(self, batch):
        return self.builder.forward(batch).float()

    # -- output forms --------------------------------------------------------------------------------
    def item_logits(self, interaction, hybrid):
        batch = self.build(interaction, hybrid)
        logits = self.head(self.hidden_states(batch)[:, -1])
        logits[:, 0] = float("-inf")
        return logits

    def yes_no_scores(self, interaction, items, hybrid):
        """logit(Yes) - logit(No) of the frozen LM head at the last position, prompts naming ``items``."""
        batch = self.build(interaction, hybrid, targets=items)
        last = self.hidden_states(batch)[:, -1]
        weight = self.backbone.model.get_output_embeddings().weight[self.answer_ids].float()
        logits = last @ weight.T
        return logits[:, 0] - logits[:, 1]

    def title_log_likelihood(self, interaction, items, hybrid):
        """Mean log-probability of each item's title tokens after the prompt (``[B]``)."""
        batch = self.build(interaction, hybrid, answers=items)
        hidden = self.hidden_states(batch)
        pos, count = batch.positions["answer"], batch.counts["answer"]
        prev = (pos - 1).clamp(min=0)
        h = hidden.gather(1, prev.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        lm_head = self.backbone.model.get_output_embeddings()
        logp = F.log_softmax(lm_head(h.to(self.backbone.dtype)).float(), dim=-1)
        width = pos.shape[1]
        targets = torch.zeros(len(items), width, dtype=torch.long, device=logp.device)
        for b, item in enumerate(items.tolist()):
            ids = self.answer_tokens(item)
            targets[b, : len(ids)] = torch.tensor(ids)
        token_logp = logp.gather(2, targets.unsqueeze(-1)).squeeze(-1)
        valid = (torch.arange(width, device=logp.device)[None] < count[:, None]).float()
        return (token_logp * valid).sum(1) / valid.sum(1).clamp(min=1)

    # -- RecBole -------------------------------------------------------------------------------------
    def calculate_loss(self, interaction):
        target = interaction[self.POS_ITEM_ID].to(self.dev)
        if self.output == ITEM_HEAD:
            return F.cross_entropy(self.item_logits(interaction, self.train_hybrid), target)
        if self.output == YES_NO:
            k = self.settings.negatives
            bsz = len(target)
            negatives = torch.randint(1, self.n_items - 1, (bsz, k), device=self.dev)
            negatives = negatives + (negatives >= target[:, None]).long()  # uniform over items other than the target
            items = torch.cat([target[:, None], negatives], dim=1).flatten()
            repeated = interaction.repeat_interleave(k + 1)
            scores = self.yes_no_scores(repeated, items, self.train_hybrid)
            labels = torch.zeros(bsz, k + 1, device=self.dev)
            labels[:, 0] = 1
            return F.binary_cross_entropy_with_logits(scores, labels.flatten())
        return -self.title_log_likelihood(interaction, target, self.train_hybrid).mean()

    def _in_batches(self, interaction, fn):
        return self.in_batches(len(interaction[self.ITEM_SEQ]), lambda a, b: fn(interaction[torch.arange(a, b)]))

    @torch.no_grad()
    def full_sort_predict(self, interaction):
        if self.output != ITEM_HEAD:
            raise ConfigError(self._full_ranking_refused())
        out = self._in_batches(interaction, lambda part: self.item_logits(part, self.eval_hybrid))
        return out.to(interaction[self.ITEM_SEQ].device)

    @torch.no_grad()
    def predict(self, interaction):
        items = interaction[self.ITEM_ID]
        if self.output == ITEM_HEAD:
            scores = self.full_sort_predict(interaction)
            return scores.gather(1, items.to(scores.device)[:, None]).squeeze(1)

        def score(part):
            ids = part[self.ITEM_ID].to(self.dev)
            if self.output == YES_NO:
                return self.yes_no_scores(part, ids, self.eval_hybrid)
            return self.title_log_likelihood(part, ids, self.eval_hybrid)

        return self._in_batches(interaction, score).to(items.device)
