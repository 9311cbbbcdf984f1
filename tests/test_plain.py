"""The one plainifier (recbole_llm.plain) gives, byte for byte, the JSON each of the four conversions it
replaced gave: they feed staged run keys, pretraining cache keys, the benchmark store and suite run
keys, so a changed byte would orphan stored results or refuse a resume. The four are kept below,
as they were, as the oracle."""

import enum
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_llm.benchmark import runner, store, suite
from recbole_llm.plain import plain


# -- the conversions replaced (recbole_llm.utils.plain, benchmark runner/store/suite), as they were ----
def old_utils_plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [old_utils_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): old_utils_plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    return str(value)


def old_runner_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): old_runner_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [old_runner_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except Exception:
            pass
    return repr(obj)


def old_store_default(obj):
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except Exception:
            pass
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def old_suite_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except Exception:
            pass
    return repr(obj)


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


def representative_inputs():
    """Configs as RecBole resolves them (enums, devices, nested dicts, lists), numpy and torch
    scalars and arrays, Paths, sets, tuples, classes, non-finite floats, non-string keys."""
    from recbole.utils import EvaluatorType, ModelType

    config = {
        "model": "GLTA", "seed": 2020, "learning_rate": 1e-3, "topk": [5, 10], "eval_args": {
            "split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "MODEL_TYPE": ModelType.GENERAL, "eval_type": EvaluatorType.RANKING, "device": torch.device("cpu"),
        "data_path": Path("/tmp/data"), "load_col": {"inter": ("user_id", "item_id")}, "state": None,
        "reproducibility": True, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    }
    return [
        config,
        {"ndcg@10": np.float64(0.4371201540795380), "recall@10": np.float32(0.5), "users": np.int64(30),
         "hit": np.bool_(True), "loss": torch.tensor(0.25), "steps": torch.tensor(7), "nan": float("nan"),
         "inf": float("inf")},
        {"array": np.arange(3), "one": np.array([2.5]), "matrix": torch.ones(2, 2), "scalar0d": np.array(4)},
        {"enum": Color.RED, "int_enum": Level.HIGH, "path": Path("a/b.yaml"), "type": dict,
         "np_type": np.float64, "tuple": (1, "a", (2.0, None)), "nested": [{"b": 2, "a": 1}, ()]},
        {"int_set": {3, 1, 2}, "repr_order": {2, 10}, "frozen": frozenset({"x", "y"}), "empty": set()},
        {2: "two", 1: "one", 1.5: "float key"}, {True: "t", False: "f"}, {None: "none key"},
        {"mixed": {1: "int", "1": "str"}}, {("a", 1): "tuple key"}, {np.int64(1): "numpy key"},
        [np.int32(1), np.float16(0.5), "text", 3, 2.5, False, None, b"bytes"],
        np.float64(1.25), np.int64(9), torch.tensor([1.0, 2.0]), Path("x"), Color.RED, {"b": 1, "a": {"d": 2, "c": 3}},
    ]


@pytest.mark.parametrize("index", range(len(representative_inputs())))
def test_one_plainifier_gives_each_old_conversions_json(index):
    value = representative_inputs()[index]

    def same(new, old):
        assert new == old, f"input {index}: {new!r} != {old!r}"

    # staged run keys and pretraining cache keys: json.dumps(plain(...), sort_keys=True); stats["config"]
    same(json.dumps(plain(value), sort_keys=True), json.dumps(old_utils_plain(value), sort_keys=True))
    same(json.dumps(plain(value)), json.dumps(old_utils_plain(value)))
    # the benchmark runner's results (child result file: insertion order, default=repr)
    same(json.dumps(plain(value, **runner.RESULT_JSON), default=repr),
         json.dumps(old_runner_jsonable(value), default=repr))
    # the results store
    try:
        old = json.dumps(value, sort_keys=True, default=old_store_default, allow_nan=True)
    except TypeError:  # keys json cannot hold or sort: refused before, refused now
        with pytest.raises(TypeError):
            store._dumps(value)
    else:
        same(store._dumps(value), old)
    # suite run keys
    try:
        old = json.loads(json.dumps(value, sort_keys=True, default=old_suite_default))
    except TypeError:
        with pytest.raises(TypeError):
            suite.canonical_config({"k": value})
    else:
        same(json.dumps(suite.canonical_config({"k": value})["k"], sort_keys=True), json.dumps(old, sort_keys=True))


def test_suite_run_key_and_stored_config_of_a_resolved_config_are_unchanged():
    """A whole resolved config: the suite's run key and the stored JSON equal the old ones."""
    config = representative_inputs()[0]
    kept = {k: v for k, v in config.items() if k not in suite.VOLATILE_KEYS and not k.endswith("_dir")}
    old_canonical = json.loads(json.dumps(kept, sort_keys=True, default=old_suite_default))
    assert suite.config_key(suite.canonical_config(config)) == suite.config_key(old_canonical)
    assert store._dumps(config) == json.dumps(config, sort_keys=True, default=old_store_default, allow_nan=True)


def test_plain_refuses_an_unknown_set_mode():
    with pytest.raises(ValueError, match="sets="):
        plain({1}, sets="random")
