"""UniSRec (Hou et al., KDD 2022): universal sequence representations from item texts.

Item texts are embedded once by a frozen text encoder (the feature layer's sentence encoder,
``recbole_llm.data.features``; the paper: BERT's [CLS]) into ``plm_embedding`` (a buffer, never
trained). A mixture of parametric-whitening experts (MoE adaptor) maps them to the hidden size;
RecBole's SASRec transformer encodes the sequence. Scores are cosine similarities divided by
``unisrec_temperature``.

* Pre-training (:meth:`UniSRec.pretrain_loss`): sequence-item contrast (the next item against the
  batch's other next items) + ``unisrec_lambda`` x sequence-sequence contrast (a sequence against
  an augmented view: item drop, or word drop on the texts), text only.
* Fine-tuning (:meth:`UniSRec.calculate_loss`): cross-entropy over all items; ``unisrec_mode``
  ``inductive`` uses the texts only (no item ID table at all), ``transductive`` adds an item ID
  embedding to the adapted text embedding. With ``unisrec_freeze_encoder`` (the paper's setting)
  the pre-trained transformer and position embeddings stay fixed; the MoE adaptor, the layer norm
  (and the ID table) are tuned.

Deviations from the authors' code (github.com/RUCAIBox/UniSRec): augmentations are computed in the
model from the batch instead of a dataloader transform; other sequences of the batch with the
same next item are masked out of the contrast with -inf (the authors set their logits to 0, which
still adds exp(0) to the denominator); the MoE adaptor runs once per step over the item table and
sequences gather from it (the authors adapt every sequence position: the same function, with
dropout and gating noise drawn per item instead of per position, ~50x less work); the word-drop view encodes the item texts
with ``unisrec_word_drop_ratio`` of their words dropped (the authors ship a second precomputed
embedding file); pre-training uses the target dataset's training split by default (the paper
pre-trains on five other Amazon domains: ``unisrec_pretrain_datasets``), see
:mod:`recbole_llm.models.unisrec.trainer`.
"""

from __future__ import annotations

import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llm.errors import ConfigError
from recbole_llm.models.unisrec.settings import UNISREC_SETTINGS


class PWLayer(nn.Module):
    """One parametric-whitening expert: ``W (x - b)`` (Eq. 4)."""

    def __init__(self, input_size, output_size, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.bias = nn.Parameter(torch.zeros(input_size))
        self.lin = nn.Linear(input_size, output_size, bias=False)
        nn.init.normal_(self.lin.weight, mean=0.0, std=0.02)

    def forward(self, x):
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptor(nn.Module):
    """Mixture of :class:`PWLayer` experts with (noisy in training) softmax gating (Eq. 5)."""

    def __init__(self, n_exps, input_size, output_size, dropout=0.0, noisy=True):
        super().__init__()
        self.noisy = noisy
        self.experts = nn.ModuleList([PWLayer(input_size, output_size, dropout) for _ in range(n_exps)])
        self.w_gate = nn.Parameter(torch.zeros(input_size, n_exps))
        self.w_noise = nn.Parameter(torch.zeros(input_size, n_exps))

    def gates(self, x, noise_epsilon=1e-2):
        logits = x @ self.w_gate
        if self.noisy and self.training:
            std = F.softplus(x @ self.w_noise) + noise_epsilon
            logits = logits + torch.randn_like(logits) * std
        return F.softmax(logits, dim=-1)

    def forward(self, x):
        gates = self.gates(x)  # [..., E]
        outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [..., E, H]
        return (gates.unsqueeze(-1) * outputs).sum(dim=-2)


def word_drop_texts(texts, ratio, seed):
    """``texts`` with each word dropped with probability ``ratio`` (a text keeps at least one
    word); deterministic for a seed, so the encoded view is cached."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        kept = [w for w in words if rng.random() >= ratio]
        out.append(" ".join(kept or words[:1]))
    return out


class UniSRec(SASRec):
    """UniSRec on RecBole's SASRec (see the module docstring)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        from recbole_llm.data.features import item_text_embeddings
        from recbole_llm.data.text import item_texts

        self.config = config
        s = self.settings = UNISREC_SETTINGS.read(config)
        self.mode = s.mode
        self.temperature, self.lam = s.temperature, s.as_dict()["lambda"]
        self.item_drop_ratio, self.item_drop_coefficient = s.item_drop_ratio, s.item_drop_coefficient
        self.item_texts = item_texts(config, dataset, model_name="UniSRec")
        # frozen text encoder output: a buffer (in checkpoints, never trained)
        self.register_buffer("plm_embedding", item_text_embeddings(config, dataset, texts=self.item_texts))
        self.plm_embedding_aug = None  # word-drop view, set by the pre-training stage (prepare_pretraining)
        if self.mode == "inductive":
            del self.item_embedding  # text only: no item ID table
            self.item_embedding = None
        self.moe_adaptor = MoEAdaptor(s.n_exps, self.plm_embedding.shape[1], self.hidden_size,
                                      s.adaptor_dropout_prob, noisy=s.noisy_gating)
        self.last_losses: dict = {}

    # ------------------------------------------------------------------------------------------
    # encoders
    # ------------------------------------------------------------------------------------------
    def forward(self, item_seq, item_seq_len, item_emb=None, use_ids=True):
        """Sequence representation ``[B, H]``. ``item_emb``: adapted text embeddings of the
        sequence ``[B, L, H]`` (default: from ``plm_embedding``); ``use_ids``: add the item ID
        embedding (transductive fine-tuning only)."""
        if item_emb is None:
            item_emb = self.moe_adaptor(self.plm_embedding)[item_seq]
        positions = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        input_emb = item_emb + self.position_embedding(positions.unsqueeze(0).expand_as(item_seq))
        if use_ids and self.item_embedding is not None:
            input_emb = input_emb + self.item_embedding(item_seq)
        input_emb = self.dropout(self.LayerNorm(input_emb))
        mask = self.get_attention_mask(item_seq)
        output = self.trm_encoder(input_emb, mask, output_all_encoded_layers=True)[-1]
        return self.gather_indexes(output, item_seq_len - 1)

    def item_representations(self, text=None):
        """Every item's representation ``[n_items, H]``: the adapted text embedding ``text``
        (default: computed), + the item ID embedding when transductive."""
        emb = self.moe_adaptor(self.plm_embedding) if text is None else text
        if self.item_embedding is not None:
            emb = emb + self.item_embedding.weight
        return emb

    # ------------------------------------------------------------------------------------------
    # pre-training (Sec. 2.3)
    # ------------------------------------------------------------------------------------------
    def prepare_pretraining(self, plm_embedding_aug):
        """Give the word-drop view of the texts (``None``: item drop only)."""
        self.plm_embedding_aug = None if plm_embedding_aug is None else plm_embedding_aug.to(self.plm_embedding.device)

    def augment(self, item_seq, item_seq_len, adapted, adapted_aug):
        """The second view of each sequence: ``(seq, len, adapted text embeddings)`` after item drop
        (with probability ``unisrec_item_drop_coefficient``, or always without a word-drop view) or
        word drop (the word-drop view at a random ``unisrec_item_drop_ratio`` of the positions), as
        the authors' transform. ``adapted``/``adapted_aug``: the adapted item tables."""
        keep = torch.bernoulli(torch.full_like(item_seq, 1 - self.item_drop_ratio, dtype=torch.float)).bool()
        if adapted_aug is None or random.random() < self.item_drop_coefficient:
            keep = keep | item_seq.eq(0)
            keep[:, 0] = True
            index = torch.cumsum(keep, dim=1) - 1
            seq_aug = torch.zeros_like(item_seq).scatter(dim=-1, index=index, src=item_seq)
            len_aug = torch.gather(index, 1, (item_seq_len - 1).unsqueeze(1)).squeeze(1) + 1
            return seq_aug, len_aug, adapted[seq_aug]
        return item_seq, item_seq_len, torch.where(keep.unsqueeze(-1), adapted[item_seq], adapted_aug[item_seq])

    def _contrast(self, anchor, positive, same_target):
        """InfoNCE with in-batch negatives, other rows with the same next item masked out."""
        logits = anchor @ positive.T / self.temperature
        logits = logits.masked_fill(same_target, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))

    def pretrain_loss(self, interaction, plm=None, plm_aug=None):
        """Sequence-item + ``unisrec_lambda`` x sequence-sequence contrastive loss of a batch of
        training sequences (text only). ``plm``/``plm_aug``: text embeddings (and their word-drop
        view) of the batch's dataset (default: this model's)."""
        if plm is None:
            plm, plm_aug = self.plm_embedding, self.plm_embedding_aug
        elif plm.shape[1] != self.plm_embedding.shape[1]:
            raise ConfigError(f"UniSRec pre-training: text embeddings of width {plm.shape[1]}, the model's are "
                              f"{self.plm_embedding.shape[1]}; every pre-training dataset must use the same text_encoder.")
        adapted = self.moe_adaptor(plm)
        adapted_aug = self.moe_adaptor(plm_aug) if plm_aug is not None else None
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        seq = F.normalize(self.forward(item_seq, item_seq_len, adapted[item_seq], use_ids=False), dim=1)
        same = target.unsqueeze(1) == target.unsqueeze(0)
        same = same & ~torch.eye(len(target), dtype=torch.bool, device=target.device)
        seq_item = self._contrast(seq, F.normalize(adapted[target], dim=1), same)
        seq_aug, len_aug, emb_aug = self.augment(item_seq, item_seq_len, adapted, adapted_aug)
        view = F.normalize(self.forward(seq_aug, len_aug, emb_aug, use_ids=False), dim=1)
        seq_seq = self._contrast(seq, view, same)
        self.last_losses = {"seq_item": float(seq_item.detach()), "seq_seq": float(seq_seq.detach())}
        return seq_item + self.lam * seq_seq

    # ------------------------------------------------------------------------------------------
    # fine-tuning (Sec. 2.4) and scoring
    # ------------------------------------------------------------------------------------------
    def freeze_encoder(self):
        """Fix the pre-trained sequence encoder (transformer and position embeddings)."""
        for module in (self.trm_encoder, self.position_embedding):
            for p in module.parameters():
                p.requires_grad_(False)

    def _scores(self, interaction):
        """``(normalised sequence output [B, H], normalised item representations [n_items, H])``;
        the adaptor runs once over the item table and the sequences gather from it."""
        text = self.moe_adaptor(self.plm_embedding)
        seq = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], text[interaction[self.ITEM_SEQ]])
        return F.normalize(seq, dim=-1), F.normalize(self.item_representations(text), dim=-1)

    def calculate_loss(self, interaction):
        seq, items = self._scores(interaction)
        return self.loss_fct(seq @ items.T / self.temperature, interaction[self.POS_ITEM_ID])

    def predict(self, interaction):
        seq, items = self._scores(interaction)
        return (seq * items[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        seq, items = self._scores(interaction)
        return seq @ items.T
