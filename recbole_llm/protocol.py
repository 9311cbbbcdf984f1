"""Evaluation protocols: named files, history masking for every model type, per-user test metrics.

A protocol is everything that must be identical across the rows of one comparison: the split
(``eval_args``), the metrics, the model-selection metric and which already-seen items are
masked in full ranking (``history_mask``). Protocols are named files in
``properties/protocol/<name>.yaml``, chosen with ``--protocol=NAME`` (or a suite's ``protocol:
NAME``); model YAML files never set these keys (``tests/test_protocol.py`` checks).

History masking. RecBole 1.2.1 masks a user's earlier items in full-sort evaluation only for
non-sequential models (``FullSortEvalDataLoader.collate_fn`` returns no history for sequential
datasets), so the rows of one table ranked different candidate sets. :func:`attach_history`,
run on every ``data_preparation`` (installed by :mod:`recbole_llm.compat`), gives each
full-ranking loader the items to mask per user, computed from the split datasets the same way
for every model type; the patched ``collate_fn`` hands them to the trainer, which masks them.

``history_mask``:

* ``seen`` (default; RecBole's general-model behaviour): validation masks the user's training
  items, test masks training and validation items;
* ``train`` (MMRec's): validation and test mask training items only.

A held-out item of the user itself is never masked (it is a positive), as in RecBole.

Per-user metrics. :class:`PerUserRecorder` keeps, for one ``trainer.evaluate`` call, the
per-user values RecBole's top-k metrics compute before averaging them, keyed by user token, so
benchmark tables can test differences over users.

This module imports nothing heavy at import time (the tables use :func:`describe`).
"""

import re
from pathlib import Path

HISTORY_MASKS = {
    "seen": ("training items", "training and validation items"),
    "train": ("training items", "training items"),
}
DEFAULT_HISTORY_MASK = "seen"

#: Keys a protocol file may set: the evaluation and the data filtering every row must share.
PROTOCOL_FILE_KEYS = frozenset({
    "eval_args", "metrics", "topk", "valid_metric", "valid_metric_bigger", "metric_decimal_place",
    "history_mask", "val_interval", "user_inter_num_interval", "item_inter_num_interval", "rm_dup_inter",
    "filter_inter_by_user_or_item", "benchmark_filename",
})
#: Keys that make a YAML file a protocol (refused in model YAML files).
EVALUATION_KEYS = ("eval_args", "metrics", "topk", "valid_metric", "valid_metric_bigger", "history_mask")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def protocol_dir() -> Path:
    from recbole_llm.paths import properties_dir

    return properties_dir() / "protocol"


def available_protocols() -> list:
    folder = protocol_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_protocol(name) -> dict:
    """The settings of protocol ``name`` (``properties/protocol/<name>.yaml``), checked."""
    import yaml

    from recbole_llm.errors import ConfigError

    known = ", ".join(available_protocols()) or "(none)"
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".yaml"):
        raise ConfigError(f"protocol {name!r}: give the name of a file in {protocol_dir()} without '.yaml' "
                          f"(one of: {known}).")
    path = protocol_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"protocol {name!r}: no {path}. Known protocols: {known}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"protocol file {path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"protocol file {path}: the top level must be a mapping of settings.")
    unknown = sorted(set(data) - PROTOCOL_FILE_KEYS)
    if unknown:
        raise ConfigError(f"protocol file {path}: {unknown} are not protocol settings (allowed: "
                          f"{sorted(PROTOCOL_FILE_KEYS)}); put model settings in the model's YAML.")
    if "history_mask" in data:
        check_history_mask(data["history_mask"], where=f"protocol file {path}")
    return data


def check_history_mask(value, where="history_mask"):
    from recbole_llm.errors import ConfigError

    if value not in HISTORY_MASKS:
        raise ConfigError(f"{where}: history_mask must be one of {sorted(HISTORY_MASKS)}, got {value!r} "
                          "(seen: training items masked in validation, training+validation items in test; "
                          "train: training items only).")
    return value


def describe(settings, name=None) -> str:
    """One line saying the protocol of a config or a suite's protocol mapping."""
    name = name if name is not None else _get(settings, "protocol")
    ea = _get(settings, "eval_args") or {}
    split = ea.get("split") or {}
    order = ea.get("order")
    if _get(settings, "benchmark_filename"):
        text = "the dataset's own split files (" + "/".join(_get(settings, "benchmark_filename")) + ")"
    elif "LS" in split:
        text = f"leave-one-out ({split['LS']}) " + ("by time" if order == "TO" else "in random order")
    elif "RS" in split:
        ratios = "/".join(f"{round(float(r) * 100)}" for r in split["RS"])
        text = f"{'chronological' if order == 'TO' else 'random'} {ratios} split"
    else:
        text = f"split {split}"
    text += ", per user" if ea.get("group_by") == "user" else ", global"
    mode = ea.get("mode", "full")
    if isinstance(mode, dict) and set(mode.values()) == {"full"}:
        mode = "full"  # RecBole's Config expands mode into {valid: ..., test: ...}
    if isinstance(mode, dict):
        mode = "/".join(f"{k}: {v}" for k, v in mode.items())
    if mode == "full":
        mask = _get(settings, "history_mask") or DEFAULT_HISTORY_MASK
        valid_m, test_m = HISTORY_MASKS.get(mask, (f"? ({mask})", f"? ({mask})"))
        text += f", full ranking masking {valid_m} in validation and {test_m} in test"
    else:
        text += f", ranking mode {mode}"
    metrics, topk = _get(settings, "metrics"), _get(settings, "topk")
    if metrics:
        text += f", {'/'.join(str(m) for m in metrics)}"
        if topk:
            text += "@" + ",".join(str(k) for k in (topk if isinstance(topk, (list, tuple)) else [topk]))
    if _get(settings, "valid_metric"):
        text += f", selection on validation {_get(settings, 'valid_metric')}"
    return f"protocol {name or '(no --protocol: defaults)'}: {text}"


def _get(settings, key):
    try:
        return settings[key] if key in settings else None
    except TypeError:
        return None


# -- history masking ---------------------------------------------------------------------
def _user_item_keys(dataset, with_history_lists):
    """``uid * n_items + iid`` of every (user, item) in ``dataset``; for a sequential training set
    also the items of its history lists (a user's first item is never a training target)."""
    import numpy as np

    feat = dataset.inter_feat
    uid = feat[dataset.uid_field].numpy().astype(np.int64)
    iid = feat[dataset.iid_field].numpy().astype(np.int64)
    n = int(dataset.item_num)
    keys = [uid * n + iid]
    list_field = getattr(dataset, "item_id_list_field", None)
    if with_history_lists and list_field and list_field in feat:
        lists = feat[list_field].numpy().astype(np.int64)
        rows = np.repeat(uid, lists.shape[1])
        flat = lists.reshape(-1)
        keys.append(rows[flat > 0] * n + flat[flat > 0])
    return np.unique(np.concatenate(keys))


def _split_by_user(keys, n_items, n_users):
    import numpy as np
    import torch

    out = np.empty(n_users, dtype=object)
    empty = torch.zeros(0, dtype=torch.int64)
    for u in range(n_users):
        out[u] = empty
    if len(keys):
        users, items = keys // n_items, keys % n_items
        bounds = np.flatnonzero(np.diff(users)) + 1
        for chunk_u, chunk_i in zip(np.split(users, bounds), np.split(items, bounds)):
            out[int(chunk_u[0])] = torch.from_numpy(chunk_i.copy())
    return out


def attach_history(config, train_data, valid_data, test_data):
    """Give the full-ranking validation/test loaders the items to mask per user (module doc)."""
    import numpy as np
    from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader

    mask = check_history_mask(config["history_mask"] or DEFAULT_HISTORY_MASK)
    loaders = [(phase, d) for phase, d in (("valid", valid_data), ("test", test_data))
               if isinstance(d, FullSortEvalDataLoader)]
    if not loaders or train_data is None:
        return
    train_ds = train_data._dataset
    n_items, n_users = int(train_ds.item_num), int(train_ds.user_num)
    seen = _user_item_keys(train_ds, with_history_lists=True)
    valid_keys = None
    if mask == "seen" and valid_data is not None:
        valid_keys = _user_item_keys(valid_data._dataset, with_history_lists=False)
    for phase, loader in loaders:
        before = seen if phase == "valid" or valid_keys is None else np.union1d(seen, valid_keys)
        positives = _user_item_keys(loader._dataset, with_history_lists=False)
        loader.history_by_user = _split_by_user(np.setdiff1d(before, positives, assume_unique=True), n_items, n_users)
        loader.history_mask = mask


def history_collate(original):
    """``FullSortEvalDataLoader.collate_fn`` that returns the attached history of the batch's
    users (one row per user for general models, per evaluated sequence for sequential ones)."""
    import functools

    @functools.wraps(original)
    def collate_fn(self, index):
        batch = original(self, index)
        history = getattr(self, "history_by_user", None)
        if history is None:
            return batch
        import torch

        interaction, _, positive_u, positive_i = batch
        rows = history[interaction[self.uid_field].numpy()]
        history_u = torch.cat([torch.full_like(items, i) for i, items in enumerate(rows)])
        history_i = torch.cat(list(rows))
        return interaction, (history_u, history_i), positive_u, positive_i

    collate_fn.__recbole_llm_compat__ = True
    return collate_fn


def preparation_with_history(original):
    """``data_preparation`` that logs the run's protocol in one line and attaches the history."""
    import functools

    @functools.wraps(original)
    def data_preparation(config, dataset):
        from logging import getLogger

        train_data, valid_data, test_data = original(config, dataset)
        attach_history(config, train_data, valid_data, test_data)
        getLogger().info(describe(config))
        return train_data, valid_data, test_data

    data_preparation.__recbole_llm_compat__ = True
    return data_preparation


# -- per-user metrics -----------------------------------------------------------------------
class PerUserRecorder:
    """Keep the per-user top-k metric values of one ``trainer.evaluate`` call.

    Use as ``with PerUserRecorder(trainer, eval_data) as rec: trainer.evaluate(eval_data)``; then
    ``rec.result()`` is ``{"users": [token, ...], "metrics": {"ndcg@10": [value, ...], ...}}`` with
    one value per user (the mean over the user's evaluated rows when a sequential split holds
    several), or ``None`` when nothing was recorded (no top-k metric, or a distributed run whose
    ranks each see a share of the users). The mean of a vector equals RecBole's reported metric.
    """

    def __init__(self, trainer, eval_data):
        self.trainer, self.eval_data = trainer, eval_data
        self._uids, self._values = [], {}

    def __enter__(self):
        from recbole.evaluator.base_metric import TopkMetric

        collector, evaluator = self.trainer.eval_collector, self.trainer.evaluator
        uid_field = self.eval_data._dataset.uid_field
        collect = collector.eval_batch_collect

        def eval_batch_collect(scores, interaction, positive_u, positive_i):
            self._uids.append(interaction[uid_field].detach().cpu())
            return collect(scores, interaction, positive_u, positive_i)

        collector.eval_batch_collect = eval_batch_collect
        self._patched = [(collector, "eval_batch_collect")]
        for metric in evaluator.metric_class.values():
            if isinstance(metric, TopkMetric):
                self._patched.append((metric, "topk_result"))
                metric.topk_result = self._capture(metric)
        return self

    def _capture(self, metric):
        original = metric.topk_result

        def topk_result(name, value):
            for k in metric.topk:
                self._values[f"{name}@{k}"] = value[:, k - 1].astype(float)
            return original(name, value)

        return topk_result

    def __exit__(self, *exc):
        for obj, attr in self._patched:
            obj.__dict__.pop(attr, None)
        return False

    def result(self):
        import numpy as np
        import torch

        cfg = self.trainer.config
        if not self._values or not self._uids or not cfg["single_spec"]:
            return None
        uids = torch.cat(self._uids).numpy()
        if any(len(v) != len(uids) for v in self._values.values()):
            return None
        order, inverse = np.unique(uids, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(order)).astype(float)
        dataset = self.eval_data._dataset
        tokens = [str(t) for t in dataset.id2token(dataset.uid_field, order)]
        metrics = {}
        for name, values in self._values.items():
            metrics[name] = (np.bincount(inverse, weights=values, minlength=len(order)) / counts).tolist()
        return {"users": tokens, "metrics": metrics}
