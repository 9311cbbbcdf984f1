"""The training split as data: its (user, item) pairs, each user's history, and a fingerprint.

Every function takes the dataset RecBole hands a model (``train_data.dataset``, the training split
after RecBole's splitting), so nothing here can see validation or test interactions unless the
caller passes them in. The fingerprint keys every cache and checks every reused artefact.
"""

from __future__ import annotations

import hashlib

import numpy as np


def training_pairs(dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` internal ids of every interaction of ``dataset``, in file/split order."""
    inter = dataset.inter_feat
    users = inter[dataset.uid_field].numpy().astype(np.int64)
    items = inter[dataset.iid_field].numpy().astype(np.int64)
    return users, items


def user_histories(dataset, by_time: bool = False) -> list[np.ndarray]:
    """Each user's training items (internal ids), in split order (time order under ``order: TO``),
    or sorted by the time field when ``by_time`` (split order among equal times, and when the
    dataset has no time field): ``histories[u]`` for ``u`` in ``0..user_num-1`` (padding user 0 and
    users without training interactions get an empty array). Used to build profiles and prompts
    from the training split."""
    users, items = training_pairs(dataset)
    inter, time_field = dataset.inter_feat, dataset.time_field
    if by_time and time_field and time_field in inter.columns:
        order = np.lexsort((np.arange(len(users)), inter[time_field].numpy(), users))
    else:
        order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(dataset.user_num + 1))
    return [items[order[bounds[u] : bounds[u + 1]]] for u in range(dataset.user_num)]


def interaction_fingerprint(dataset) -> str:
    """SHA-1 of the sorted (user, item) pairs and the id-space sizes of ``dataset``.

    Two splits have the same fingerprint exactly when they hold the same interactions under the
    same id mapping, so an artefact stored with a fingerprint is refused by a run whose training
    split differs (another seed, another split ratio, validation edges included, ...)."""
    users, items = training_pairs(dataset)
    order = np.lexsort((items, users))
    h = hashlib.sha1()
    h.update(np.asarray([dataset.user_num, dataset.item_num], dtype=np.int64).tobytes())
    h.update(users[order].tobytes())
    h.update(items[order].tobytes())
    return h.hexdigest()
