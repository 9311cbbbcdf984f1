"""GraphAttentiveGPT2's pretraining prompts (``docs/graph-attentive-gpt2.md``, pretraining), from the training split only.

Each sample is a (prompt, main) text pair in which ``user_<u>``/``item_<i>`` are ID tokens; only main
carries the loss. Corpora (``gat_corpus``):

``content``
    One prompt per item and item text field present in the dataset (``gat_content_templates``: field ->
    prompt, e.g. ``movie_title: "The title of {item} is:"``), main = the field's value.
``second_order``
    Items sharing a value of a group field (``gat_group_fields``: field -> prompt, e.g. ``class: "These
    items {items} are all in the genre:"``; every token of a token_seq field is a value), in shuffled
    chunks of at most ``gat_chunk_items`` items (at least 2), main = the value.
``review``
    ``<dataset>.review`` (Amazon converter output) rows that are **training** edges:
    ``gat_review_template`` with main = the ``gat_review_field`` text. Datasets without reviews skip it.
``events``
    "``user_u`` has interacted with" -> the user's training items, shuffled, in chunks of at most
    ``gat_chunk_items`` (also stage 2's whole corpus).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from recbole_llm.data.text import MissingItemTextError, _seq_join, field_texts

logger = logging.getLogger(__name__)


def loaded_item_fields(dataset) -> set:
    return set(dataset.item_feat.columns) if dataset.item_feat is not None else set()


def check_item_fields(settings, dataset, config) -> None:
    """Fail at start when the corpora need item text fields the dataset does not load."""
    loaded = loaded_item_fields(dataset)
    name = config["dataset"]
    needs = [("content", settings.content_templates, "gat_content_templates"),
             ("second_order", settings.group_fields, "gat_group_fields")]
    for corpus, fields, key in needs:
        if corpus in settings.corpus and settings.pretrain and not (set(fields) & loaded):
            rest = [c for c in settings.corpus if c not in ("content", "second_order")]
            raise MissingItemTextError(
                f"GraphAttentiveGPT2's '{corpus}' prompts need an item text field, one of {sorted(fields)} ({key}), "
                f"but dataset {name!r} loads none of them (loaded item fields: {sorted(loaded) or 'none'}). Either "
                f"load them (load_col: {{item: [{dataset.iid_field}, ...]}}, e.g. in properties/dataset/{name}.yaml), "
                f"add your field to {key}, or run without item content: gat_corpus: {rest} "
                f"(the 'w/o item content' ablation)."
            )


class Corpus:
    """The text pairs of every pretraining corpus of one training split."""

    def __init__(self, model, dataset, config):
        s = self.settings = model.settings
        self.model = model
        loaded = loaded_item_fields(dataset)
        self.content: list[tuple[str, str]] = []
        if "content" in s.corpus:
            for field, template in s.content_templates.items():
                if field not in loaded:
                    continue
                values = field_texts(dataset, field, _seq_join(config, field))
                for item in range(1, model.n_items):
                    if values[item].strip():
                        self.content.append((template.format(item=f"item_{item}"), " " + values[item].strip()))
        self.groups: list[tuple[str, str, np.ndarray]] = []  # (template, value, items)
        if "second_order" in s.corpus:
            for field, template in s.group_fields.items():
                if field not in loaded:
                    continue
                by_value = defaultdict(list)
                for item, tokens in enumerate(self._field_values(dataset, field)):
                    if item == 0:
                        continue
                    for value in tokens:
                        by_value[value].append(item)
                for value, items in sorted(by_value.items()):
                    if len(items) >= 2:
                        self.groups.append((template, value, np.asarray(items, dtype=np.int64)))
        self.reviews: list[tuple[str, str]] = []
        if "review" in s.corpus:
            self.reviews = self._reviews(dataset, config)
        self.stats = {"content": len(self.content), "groups": len(self.groups), "reviews": len(self.reviews)}

    @staticmethod
    def _field_values(dataset, field):
        """Per item, the list of values of a token/token_seq field."""
        from recbole.utils import FeatureType

        column = dataset.item_feat[field]
        column = column.numpy() if hasattr(column, "numpy") else np.asarray(column)
        vocab = dataset.field2id_token[field]
        ftype = dataset.field2type[field]
        out = []
        for row in column:
            ids = np.atleast_1d(row) if ftype == FeatureType.TOKEN_SEQ else [row]
            out.append([str(vocab[int(i)]) for i in ids if int(i) != 0 and str(vocab[int(i)]) != "[PAD]"])
        return out

    def _reviews(self, dataset, config):
        from pathlib import Path

        from recbole_llm.data.text import load_reviews

        s = self.settings
        if not (Path(config["data_path"] or ".") / f"{config['dataset']}.review").is_file():
            logger.info("GraphAttentiveGPT2: dataset %s has no .review file; no review prompts", config["dataset"])
            return []
        frame = load_reviews(config, dataset)
        if s.review_field not in frame.columns:
            logger.warning("GraphAttentiveGPT2: the review file has no column %r (gat_review_field)", s.review_field)
            return []
        train = {(int(u), int(i)) for u, its in enumerate(self.model.user_items) for i in its}
        out = []
        for u, i, text in zip(frame[dataset.uid_field], frame[dataset.iid_field], frame[s.review_field]):
            if (int(u), int(i)) in train and str(text).strip():  # training edges only
                out.append((s.review_template.format(user=f"user_{int(u)}", item=f"item_{int(i)}"), " " + str(text).strip()))
        return out

    # ------------------------------------------------------------------------------------------
    def second_order(self, rng) -> list[tuple[str, str]]:
        k = self.settings.chunk_items
        out = []
        for template, value, items in self.groups:
            items = rng.permutation(items)
            for start in range(0, len(items), k):
                chunk = items[start : start + k]
                if len(chunk) >= 2:
                    out.append((template.format(items=self.model.items_text(chunk)), " " + value))
        return out

    def events(self, rng) -> list[tuple[str, str]]:
        """Interaction events of the training split: shuffled chunks of each user's training items."""
        m, k = self.model, self.settings.chunk_items
        out = []
        for u in range(1, m.n_users):
            items = m.user_items[u]
            if not len(items):
                continue
            items = rng.permutation(items)
            for start in range(0, len(items), k):
                out.append((self.settings.event_template.format(user=f"user_{u}"), " " + m.items_text(items[start : start + k])))
        return out

    def stage1(self, rng) -> list[tuple[str, str]]:
        """This epoch's stage-1 pairs (all corpora of ``gat_corpus``)."""
        pairs = list(self.content) + list(self.reviews)
        if "second_order" in self.settings.corpus:
            pairs += self.second_order(rng)
        if "events" in self.settings.corpus:
            pairs += self.events(rng)
        return pairs
