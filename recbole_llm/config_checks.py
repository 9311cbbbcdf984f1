"""Checks of RecBole's common settings (types, ranges, choices) on the merged config, before
RecBole uses them, so that ``--learning_rate=abc`` or ``--epochs=-1`` ends in one message naming
the key, the value and what is allowed (:class:`~recbole_llm.errors.ConfigError`) instead of a
traceback from torch or an untrained model being evaluated.

Values arrive typed: YAML types from files, and command-line strings parsed as literals (never
evaluated) by ``Config._convert_config_dict`` (``--epochs=5`` is ``5``, ``--topk=[5,10]`` a list,
``--learning_rate=abc`` stays the string ``'abc'``). Model-specific keys are checked by the models
themselves; :func:`check_known_keys` refuses keys nothing reads (misspellings).
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from functools import lru_cache
from pathlib import Path

from recbole_llm.errors import ConfigError

#: Metrics whose results are keyed ``name@k`` (one per k in topk).
TOPK_METRICS = {
    "hit", "mrr", "map", "recall", "ndcg", "precision",
    "itemcoverage", "averagepopularity", "shannonentropy", "giniindex", "tailpercentage",
}
#: Metrics with one value (no @k).
PLAIN_METRICS = {"gauc", "auc", "mae", "rmse", "logloss"}
METRIC_NAMES = (
    "Hit, MRR, MAP, Recall, NDCG, Precision, ItemCoverage, AveragePopularity, ShannonEntropy, "
    "GiniIndex, TailPercentage, GAUC, AUC, MAE, RMSE, LogLoss"
)
SPLITS = {"RS": "a list of 3 ratios [train, valid, test], e.g. [0.8, 0.1, 0.1]",
          "LS": "'valid_and_test', 'valid_only' or 'test_only'",
          "TS": "a list of 3 ratios [train, valid, test]"}
LS_MODES = ("valid_and_test", "valid_only", "test_only")
_MODE_RE = re.compile(r"^(full|labeled|uni[1-9][0-9]*|pop[1-9][0-9]*)$")


def _bad(key, value, allowed, example=None):
    text = f"Setting {key}={value!r} is invalid: {allowed}."
    if example:
        text += f" Example: {example}."
    return ConfigError(text)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(cfg, key, minimum, example):
    if key not in cfg:
        return
    value = cfg[key]
    if not _is_int(value) or value < minimum:
        raise _bad(key, value, f"expected an integer >= {minimum}", example)


def _check_number(cfg, key, positive, example):
    if key not in cfg:
        return
    value = cfg[key]
    if not _is_number(value) or not math.isfinite(value) or (value <= 0 if positive else value < 0):
        finite = "" if not _is_number(value) or math.isfinite(value) else ", not infinite or NaN"
        raise _bad(key, value, f"expected a number {'> 0' if positive else '>= 0'}{finite}", example)


def check_common_settings(cfg) -> None:
    """Raise :class:`ConfigError` for the first invalid common RecBole setting in ``cfg``
    (a mapping: the merged config before RecBole's defaults are applied)."""
    cfg = dict(cfg)
    _check_number(cfg, "learning_rate", True, "--learning_rate=0.001")
    _check_int(cfg, "epochs", 0, "--epochs=10 (0: evaluate without training)")
    _check_int(cfg, "train_batch_size", 1, "--train_batch_size=2048")
    _check_int(cfg, "eval_batch_size", 1, "--eval_batch_size=4096")
    # RecBole's early stopping stops once the number of validations without improvement
    # exceeds stopping_step, so 0 is valid (stop at the first one without improvement).
    _check_int(cfg, "stopping_step", 0, "--stopping_step=10")
    # eval_step 0 means: no validation during training.
    _check_int(cfg, "eval_step", 0, "--eval_step=1")
    if "embedding_size" in cfg and cfg["embedding_size"] is not None:
        _check_int(cfg, "embedding_size", 1, "--embedding_size=64")
    _check_number(cfg, "weight_decay", False, "--weight_decay=0.0")
    if "seed" in cfg and not _is_int(cfg["seed"]):
        raise _bad("seed", cfg["seed"], "expected an integer", "--seed=2020")
    _check_load_col(cfg)
    topk = _check_topk(cfg)
    _check_metrics(cfg, topk)
    _check_eval_args(cfg)
    _check_value_metrics_mode(cfg)
    _check_train_neg_sample_args(cfg)


_VALUE_METRICS = {"auc", "mae", "rmse", "logloss"}


def _check_value_metrics_mode(cfg):
    """RecBole cannot rank all items (mode full) for value metrics (AUC, MAE, RMSE, LogLoss)."""
    metrics = cfg.get("metrics")
    names = [metrics] if isinstance(metrics, str) else list(metrics or [])
    if not names or not all(n.lower() in _VALUE_METRICS for n in names):
        return
    mode = (cfg.get("eval_args") or {}).get("mode", "full")
    modes = mode.values() if isinstance(mode, dict) else [mode]
    if "full" in modes:
        raise _bad("eval_args.mode", mode, f"value metrics {names} need labeled or sampled evaluation, not "
                   "'full' (ranking all items)", "--eval_args=\"{'mode': 'labeled'}\"")


def _check_topk(cfg):
    if "topk" not in cfg:
        return None
    topk = cfg["topk"]
    ks = [topk] if _is_int(topk) else topk
    if not isinstance(ks, (list, tuple)) or not ks or not all(_is_int(k) and k > 0 for k in ks):
        raise _bad("topk", topk, "expected a positive integer or a list of positive integers", "--topk=[5,10]")
    return list(ks)


def _check_metrics(cfg, topk):
    metrics = cfg.get("metrics")
    if metrics is None:
        return
    names = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(m, str) for m in names):
        raise _bad("metrics", metrics, f"expected a metric name or a list of them ({METRIC_NAMES})",
                   "--metrics=\"['Recall','NDCG']\"")
    for name in names:
        if name.lower() not in TOPK_METRICS | PLAIN_METRICS:
            raise _bad("metrics", metrics, f"unknown metric {name!r}; RecBole's metrics are {METRIC_NAMES}")
    value = {"auc", "mae", "rmse", "logloss"}
    kinds = {name.lower() in value for name in names}
    if len(kinds) > 1:
        raise _bad("metrics", metrics, "ranking metrics and value metrics (AUC, MAE, RMSE, LogLoss) "
                   "cannot be used together")
    valid_metric = cfg.get("valid_metric")
    if valid_metric is None:
        return
    lowered = {n.lower() for n in names}
    if not isinstance(valid_metric, str):
        raise _bad("valid_metric", valid_metric, "expected a metric name like 'NDCG@10'")
    name, _, k = valid_metric.partition("@")
    low = name.lower()
    if low not in lowered:
        first = names[0] + (f"@{(topk or [10])[0]}" if names[0].lower() in TOPK_METRICS else "")
        raise _bad("valid_metric", valid_metric, f"{name!r} is not one of the evaluated metrics {list(names)}; "
                   "add it to metrics or pick one of them", f"--valid_metric={first}")
    if low in TOPK_METRICS:
        if not k.isdigit() or int(k) <= 0:
            raise _bad("valid_metric", valid_metric, f"{name} needs a cut-off, written {name}@k with k in "
                       f"topk {topk}", f"--valid_metric={name}@{(topk or [10])[0]}")
        if topk is not None and int(k) not in topk:
            raise _bad("valid_metric", valid_metric, f"k={k} is not in topk {topk}; add it to topk or use "
                       f"one of {topk}", f"--valid_metric={name}@{topk[0]}")
    elif k:
        raise _bad("valid_metric", valid_metric, f"{name} takes no @k", f"--valid_metric={name}")


def _check_ratios(key, value, validates=True):
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(_is_number(r) and math.isfinite(r) and r >= 0 for r in value) or value[0] <= 0):
        raise _bad(key, value, "expected 3 non-negative ratios [train, valid, test] with train > 0 "
                   "(RecBole normalises them by their sum)",
                   "--eval_args=\"{'split': {'RS': [0.8, 0.1, 0.1]}}\"")
    if value[2] <= 0:
        raise _bad(key, value, "the test ratio is 0, so the test split would be empty and the run would report "
                   "no test result; give the test part a share", "[0.8, 0.1, 0.1]")
    if value[1] <= 0 and validates:
        raise _bad(key, value, "the validation ratio is 0 but the run validates (eval_step > 0); give validation "
                   "a share, or pass --eval_step=0 to train without validation", "[0.8, 0.1, 0.1]")


def _check_eval_args(cfg):
    if "eval_args" not in cfg:
        return
    args = cfg["eval_args"]
    if not isinstance(args, dict):
        raise _bad("eval_args", args, "expected a mapping with keys split, order, group_by, mode",
                   "--eval_args=\"{'split': {'RS': [0.8, 0.1, 0.1]}, 'order': 'RO', 'mode': 'full'}\"")
    _check_subkeys("eval_args", args, EVAL_ARGS_KEYS)
    split = args.get("split")
    if not (split is None and cfg.get("benchmark_filename")) and "split" in args:
        if not isinstance(split, dict) or len(split) != 1 or next(iter(split)) not in SPLITS:
            raise _bad("eval_args.split", split, "expected one of {'RS': ratios}, {'LS': mode}, "
                       "{'TS': ratios}", "{'RS': [0.8, 0.1, 0.1]} or {'LS': 'valid_and_test'}")
        (mode, value), = split.items()
        if mode in ("RS", "TS"):
            _check_ratios(f"eval_args.split.{mode}", value, validates=cfg.get("eval_step", 1) != 0)
        elif value not in LS_MODES:
            raise _bad("eval_args.split.LS", value, f"expected one of {', '.join(LS_MODES)}")
    if "order" in args and args["order"] not in ("RO", "TO"):
        raise _bad("eval_args.order", args["order"], "expected 'RO' (random order) or 'TO' (by time)")
    if "group_by" in args:
        group_by = args["group_by"]
        if not (group_by is None or (isinstance(group_by, str) and group_by.lower() in ("user", "none"))):
            raise _bad("eval_args.group_by", group_by, "expected 'user' or 'none'")
    if "mode" in args:
        mode = args["mode"]
        modes = mode if isinstance(mode, dict) else {"mode": mode}
        if isinstance(mode, dict) and (not mode or set(mode) - {"valid", "test"}):
            raise _bad("eval_args.mode", mode, "expected a mode or a mapping with keys valid and/or test",
                       "'full' or {'valid': 'uni100', 'test': 'full'}")
        for phase, value in modes.items():
            if not isinstance(value, str) or not _MODE_RE.match(value):
                key = "eval_args.mode" + ("" if phase == "mode" else f".{phase}")
                raise _bad(key, value, "expected 'full', 'labeled', 'uni<N>' or 'pop<N>' (N > 0)", "'uni100'")


def _check_train_neg_sample_args(cfg):
    if "train_neg_sample_args" not in cfg:
        return
    args = cfg["train_neg_sample_args"]
    key = "train_neg_sample_args"
    if args is None or args == "None":
        return
    if not isinstance(args, dict):
        raise _bad(key, args, "expected a mapping like {'distribution': 'uniform', 'sample_num': 1} or None "
                   "(no negative sampling)")
    _check_subkeys(key, args, NEG_SAMPLE_KEYS)
    dist = args.get("distribution", "uniform")
    if dist is None or dist in ("None", "none"):
        return
    if dist not in ("uniform", "popularity"):
        raise _bad(f"{key}.distribution", dist, "expected 'uniform', 'popularity' or None")
    if "sample_num" in args and not (_is_int(args["sample_num"]) and args["sample_num"] > 0):
        raise _bad(f"{key}.sample_num", args["sample_num"], "expected an integer > 0")
    if "alpha" in args and not _is_number(args["alpha"]):
        raise _bad(f"{key}.alpha", args["alpha"], "expected a number")
    if "dynamic" in args and not isinstance(args["dynamic"], bool):
        raise _bad(f"{key}.dynamic", args["dynamic"], "expected true or false")
    if "candidate_num" in args and not (_is_int(args["candidate_num"]) and args["candidate_num"] >= 0):
        raise _bad(f"{key}.candidate_num", args["candidate_num"], "expected an integer >= 0")


EVAL_ARGS_KEYS = ("split", "order", "group_by", "mode")
NEG_SAMPLE_KEYS = ("distribution", "sample_num", "alpha", "dynamic", "candidate_num")


def _suggestion(key, known):
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_subkeys(where, mapping, known):
    for key in mapping:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {where}{_suggestion(key, known)} "
                              f"({where} takes {', '.join(known)}).")


def _check_load_col(cfg):
    """``load_col``: ~ (every column) or ``{file suffix: [column, ...]}``."""
    if "load_col" not in cfg:
        return
    value = cfg["load_col"]
    if value is None or value == "None":
        return
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and all(isinstance(c, str) for c in v)
            for k, v in value.items()):
        raise _bad("load_col", value, "expected ~ (load every column) or a mapping from file suffix to a list of "
                   "column names", "--load_col=\"{'inter': ['user_id', 'item_id', 'timestamp']}\"")


def check_model_setting_types(cfg, defaults: dict, model: str, given) -> None:
    """The ``given`` keys among a RecBole model's YAML ``defaults`` must have the default's kind
    (integer, number, boolean): ``--n_layers=abc`` for LightGCN is refused here, not by a
    ``TypeError`` deep in the model."""
    for key in given:
        if key not in defaults or key not in cfg:
            continue
        default, value = defaults[key], cfg[key]
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool) or value in (0, 1), "true or false"
        elif isinstance(default, int):
            ok, kind = _is_int(value), "an integer"
        elif isinstance(default, float):
            ok, kind = _is_number(value) and math.isfinite(value), "a finite number"
        else:
            continue
        if not ok:
            raise _bad(key, value, f"{model} expects {kind} (its default is {default!r})", f"--{key}={default!r}")


# --- unknown keys --------------------------------------------------------------------------------
#: Settings the code reads without a YAML default, found by these access patterns.
_ACCESS = re.compile(r"""(?:config|cfg|final|final_config_dict|settings|sub|external_config_dict)"""
                     r"""(?:\[|\.get\(|\.setdefault\()\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
_SCHEMA = re.compile(r"""["']([A-Za-z_][A-Za-z0-9_]*)["']\s*:\s*(?:Int|Float|Bool|Str|Choice)\(""")


def _yaml_keys(folder: Path, recursive=True) -> set:
    import yaml

    keys = set()
    for path in (folder.rglob("*.yaml") if recursive else folder.glob("*.yaml")):
        if path.name == "url.yaml":  # RecBole's dataset download addresses, not settings
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception:  # a broken property file is reported where it is loaded
            continue
        if isinstance(data, dict):
            keys.update(str(k) for k in data)
    return keys


def _source_keys(package_dir: Path) -> set:
    keys = set()
    for path in package_dir.rglob("*.py"):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        keys.update(_ACCESS.findall(text))
        keys.update(_SCHEMA.findall(text))
    return keys


@lru_cache(maxsize=1)
def _static_known_keys() -> frozenset:
    import recbole

    import recbole_llm
    from recbole_llm.paths import properties_dir

    recbole_dir = Path(recbole.__file__).resolve().parent
    ours = properties_dir()
    keys = _yaml_keys(recbole_dir / "properties")
    for sub in ("", "model", "dataset", "protocol"):
        keys |= _yaml_keys(ours / sub, recursive=bool(sub))
    keys |= _source_keys(recbole_dir) | _source_keys(Path(recbole_llm.__file__).resolve().parent)
    return frozenset(keys)


def known_setting_keys(registry=None) -> frozenset:
    """Every setting something reads: RecBole's property files and the keys its code reads,
    recbole-llm's property files and code, the plugins' property files and the keys plugins declare
    through the ``register_setting_keys`` hook."""
    from recbole_llm.plugins import get_registry

    registry = registry or get_registry()
    cached = _KNOWN_BY_REGISTRY.get(id(registry))
    if cached is not None and cached[0] is registry:
        return cached[1]
    keys = set(_static_known_keys())
    for files in registry.property_files.values():
        for file in files:
            keys |= _file_keys(file)
    keys |= set(getattr(registry, "setting_keys", {}) or {})
    _KNOWN_BY_REGISTRY[id(registry)] = (registry, frozenset(keys))
    return frozenset(keys)


_KNOWN_BY_REGISTRY: dict = {}


def _file_keys(file) -> set:
    import yaml

    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except Exception:
        return set()
    return {str(k) for k in data} if isinstance(data, dict) else set()


def check_known_keys(keys, known, where="") -> None:
    """:class:`ConfigError` for the first key of ``keys`` that nothing reads (a misspelling), with
    the closest known key."""
    for key in keys:
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}{_suggestion(key, known)}{where} (a plugin declares the "
                              "settings it reads through its register_setting_keys hook).")
