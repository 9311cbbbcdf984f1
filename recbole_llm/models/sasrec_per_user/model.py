"""SASRecPerUser: RecBole's SASRec on a per-user random split, scored per user like a general model.

RecBole refuses a random (``RO``) split for sequential models, and its sequential evaluation scores
each held-out interaction as its own sample (one positive, the items before it as the prompt). The
GraphAttentiveGPT2 paper's protocol (per-user random 80/10/10, all of a user's held-out items are the
positives of one ranking, training items masked) is the general models' protocol. This adapter puts
SASRec on it without changing the network or its loss:

* **Training data**: the training split only. Each user's training items are put in time order
  (``TIME_FIELD``; ties keep the file order); every training interaction ``(u, i)`` becomes one
  sample "the at most ``MAX_ITEM_LIST_LENGTH`` training items of ``u`` before ``i`` -> ``i``", which is
  RecBole's own prefix augmentation of a training sequence. A user's first item (empty prefix) gives
  no sample, as in RecBole. The general training loader hands ``(user, item)`` batches; the prefix of
  each pair is looked up in a table built once (a pair repeated in the data takes one of its prefixes).
* **Loss and network**: RecBole's ``SASRec`` as is (``calculate_loss`` with ``loss_type: CE``, the
  softmax over all items), its defaults from RecBole's ``SASRec.yaml``.
* **Training speed** (:class:`SASRecPerUserTrainer`): RecBole encodes every prefix separately, ``L``
  tokens per training interaction (timings: ``docs/benchmarks.md``). The
  trainer instead runs SASRec's original scheme: each user's time-ordered training items are cut into
  windows of ``L + 1`` items (consecutive windows share one item) and one causal forward per window
  predicts every item of the window from the items before it in the window. With causal attention
  and left-aligned positions, the output at a position equals the output of the prefix ending there
  (checked in the tests), so each training item is a CE target once per epoch, as in RecBole, from at
  most ``L`` earlier items of its window (RecBole: the ``L`` items before it) at ~1/``L`` of the cost.
  ``sasrec_window_batch_size`` windows per optimiser step.
* **Scoring**: a user's prompt is their last ``MAX_ITEM_LIST_LENGTH`` training items in time order,
  scored against all items by ``SASRec.full_sort_predict``; RecBole's general full-ranking evaluator
  masks the history and takes all of the user's validation (or test) items as positives.

Validation/test items are never part of a prompt or a target, during training or scoring (the test
prompt holds the training items only, as MultiVAE's and LightGCN's test scores use the training graph).
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.trainer import Trainer
from recbole.utils import InputType, ModelType

from recbole_llm.errors import ConfigError
from recbole_llm.settings import Choice, Int, Settings

SASREC_PER_USER_SETTINGS = Settings("SASRecPerUser", keys={
    "MAX_ITEM_LIST_LENGTH": Int(min=1, doc="history items fed to SASRec (newest kept)"),
    "loss_type": Choice("CE", doc="softmax over all items (CE, the only loss without a negative sampler here)"),
    "sasrec_window_batch_size": Int(min=1, doc=(
        "windows of MAX_ITEM_LIST_LENGTH + 1 training items per optimiser step")),
})


class SASRecPerUser(GeneralRecommender):
    """RecBole's SASRec trained on the training split's time-ordered prefixes and scored per user by
    the general full-ranking evaluator (see the module docstring)."""

    type = ModelType.GENERAL
    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.settings = SASREC_PER_USER_SETTINGS.read(config)
        neg = config["train_neg_sample_args"] or {}
        if neg.get("distribution", "none") != "none":
            raise ConfigError("SASRecPerUser trains SASRec with the CE loss over all items and takes no sampled "
                              f"negatives, but train_neg_sample_args={neg!r}. Set train_neg_sample_args: ~ (its YAML default).")
        self.sasrec = SASRec(config, dataset)
        self.max_len = self.settings.MAX_ITEM_LIST_LENGTH
        self._build_sequences(config, dataset)

    def _build_sequences(self, config, dataset):
        time_field = config["TIME_FIELD"]
        inter = dataset.inter_feat
        if not time_field or time_field not in inter:
            raise ConfigError(
                f"SASRecPerUser orders each user's training items by time, but the dataset '{config['dataset']}' "
                f"does not load the time field {time_field!r}. Add it to load_col.inter (and set TIME_FIELD)."
            )
        users = inter[self.USER_ID].numpy().astype(np.int64)
        items = inter[self.ITEM_ID].numpy().astype(np.int64)
        times = inter[time_field].numpy()
        order = np.lexsort((np.arange(len(users)), times, users))  # by user, then time, then file order
        users, items = users[order], items[order]
        counts = np.bincount(users, minlength=self.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.arange(len(users)) - starts[users]  # index of each interaction in its user's sequence
        self.prefix, self.prefix_len = self._windows(items, starts[users] + position, position)
        self.history, self.history_len = self._windows(items, starts + counts, counts)
        self.keys = users * self.n_items + items  # (user, item) -> row of prefix, by binary search
        self.key_order = np.argsort(self.keys, kind="stable")
        self.sorted_keys = self.keys[self.key_order]
        # windows of L + 1 items starting at positions 0, L, 2L, ... of each user's sequence
        L = self.max_len
        first = np.flatnonzero(position % L == 0)
        first = first[position[first] < counts[users[first]] - 1]  # a window needs a target
        win_len = np.minimum(L, counts[users[first]] - 1 - position[first])
        cols = first[:, None] + np.arange(L + 1)[None, :]
        valid = np.arange(L + 1)[None, :] <= win_len[:, None]
        window = np.where(valid, items[np.clip(cols, 0, len(items) - 1)], 0) if len(first) else np.zeros((0, L + 1), np.int64)
        self.window_seq = torch.from_numpy(window[:, :L].astype(np.int64))
        self.window_target = torch.from_numpy(window[:, 1:].astype(np.int64))  # 0: no target at that position

    def _windows(self, items, ends, available):
        """Left-aligned windows (RecBole's sequence layout, 0-padded on the right) of the at most
        ``max_len`` items before global positions ``ends``; ``available`` items exist before each end."""
        length = np.minimum(available, self.max_len)
        cols = (ends - length)[:, None] + np.arange(self.max_len)[None, :]
        valid = np.arange(self.max_len)[None, :] < length[:, None]
        window = np.where(valid, items[np.clip(cols, 0, max(0, len(items) - 1))] if len(items) else 0, 0)
        return torch.from_numpy(window.astype(np.int64)), torch.from_numpy(length.astype(np.int64))

    def _rows(self, users, items):
        keys = users.cpu().numpy().astype(np.int64) * self.n_items + items.cpu().numpy().astype(np.int64)
        at = np.searchsorted(self.sorted_keys, keys)
        at = np.minimum(at, len(self.sorted_keys) - 1)
        if len(keys) and not np.array_equal(self.sorted_keys[at], keys):
            raise ValueError("SASRecPerUser.calculate_loss got (user, item) pairs that are not training interactions")
        return torch.from_numpy(self.key_order[at])

    def _sequence_batch(self, seq, seq_len, items=None):
        data = {self.sasrec.ITEM_SEQ: seq.to(self.device), self.sasrec.ITEM_SEQ_LEN: seq_len.to(self.device)}
        if items is not None:
            data[self.sasrec.POS_ITEM_ID] = items.to(self.device)
        return Interaction(data)

    def calculate_loss(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        rows = self._rows(users, items)
        keep = self.prefix_len[rows] > 0  # a user's first item has no prefix: no sample (as in RecBole)
        if not bool(keep.any()):
            return self.sasrec.item_embedding.weight.sum() * 0.0
        rows = rows[keep]
        batch = self._sequence_batch(self.prefix[rows], self.prefix_len[rows], items[keep.to(items.device)])
        return self.sasrec.calculate_loss(batch)

    def window_batches(self, epoch: int, seed: int):
        """The epoch's shuffled window batches (``Interaction`` s holding window rows) for the trainer."""
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        order = torch.randperm(len(self.window_seq), generator=g)
        return [Interaction({"window": rows}) for rows in order.split(self.settings.sasrec_window_batch_size)]

    def encode(self, item_seq):
        """SASRec's transformer output at every position ``[B, L, H]`` (``SASRec.forward`` without its
        final gather at the last position; same modules, same order)."""
        net = self.sasrec
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device).expand_as(item_seq)
        input_emb = net.LayerNorm(net.item_embedding(item_seq) + net.position_embedding(position_ids))
        input_emb = net.dropout(input_emb)
        return net.trm_encoder(input_emb, net.get_attention_mask(item_seq), output_all_encoded_layers=True)[-1]

    def window_loss(self, interaction):
        """CE over all items at every target position of the windows ``interaction["window"]`` (mean over
        positions, as ``SASRec.calculate_loss`` averages over its samples)."""
        rows = interaction["window"].cpu()
        seq, target = self.window_seq[rows].to(self.device), self.window_target[rows].to(self.device)
        hidden = self.encode(seq)[target > 0]
        logits = hidden @ self.sasrec.item_embedding.weight.T
        return torch.nn.functional.cross_entropy(logits, target[target > 0])

    def _user_batch(self, users):
        users = users.cpu()
        return self._sequence_batch(self.history[users], self.history_len[users].clamp(min=1))

    def full_sort_predict(self, interaction):
        return self.sasrec.full_sort_predict(self._user_batch(interaction[self.USER_ID]))

    def predict(self, interaction):
        batch = self._user_batch(interaction[self.USER_ID])
        seq_output = self.sasrec.forward(batch[self.sasrec.ITEM_SEQ], batch[self.sasrec.ITEM_SEQ_LEN])
        return (seq_output * self.sasrec.item_embedding(interaction[self.ITEM_ID])).sum(-1)


class SASRecPerUserTrainer(Trainer):
    """RecBole's ``Trainer`` whose training epochs go over :meth:`SASRecPerUser.window_batches` with
    :meth:`SASRecPerUser.window_loss` (see the module docstring); validation, early stopping, checkpoints
    and the general full-ranking evaluation are RecBole's own."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if not self.config["single_spec"]:
            raise ConfigError("SASRecPerUser trains on per-user windows in one process; run it without --nproc.")
        batches = self.model.window_batches(epoch_idx, self.config["seed"])
        return super()._train_epoch(batches, epoch_idx, loss_func=self.model.window_loss, show_progress=show_progress)
