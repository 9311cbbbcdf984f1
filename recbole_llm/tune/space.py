"""Search spaces: a small YAML schema, read without evaluating anything, turned into Optuna
``suggest_*`` calls.

A space file has two sections::

    fixed:                      # settings every trial uses (the tuning protocol: epoch budget, ...)
      epochs: 100
      stopping_step: 5
    search:                     # one distribution per setting
      learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
      n_layers: {int: [1, 4]}             # [low, high] or [low, high, step], both ends included
      reg_weight: {choice: [1.0e-5, 1.0e-4, 1.0e-3]}
      dropout_prob: {uniform: [0.0, 0.5]}
      embedding_size: {logint: [16, 256]}

``choice`` values may be lists or mappings (e.g. ``mlp_hidden_size: {choice: [[600], [800, 400]]}``).
Numbers such as ``1e-4`` are read as floats (plain YAML 1.1 would read a string). Where a space
comes from (``--space``, ``properties/search/<Model>.yaml``, a plugin's ``register_search_spaces``)
is decided in :func:`find_space`.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recbole_llm.errors import ConfigError

KINDS = ("choice", "uniform", "loguniform", "int", "logint")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d+\.\d*|\.\d+)$")


class _Loader(yaml.SafeLoader):
    """Safe YAML with ``1e-4`` read as a float."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


@dataclass
class Param:
    name: str
    kind: str
    args: list

    def suggest(self, trial):
        low, high = (self.args + [None, None])[:2]
        if self.kind == "choice":
            if all(_scalar(v) for v in self.args):
                return trial.suggest_categorical(self.name, list(self.args))
            # Optuna's categorical values are scalars: store lists/mappings as their JSON text
            return json.loads(trial.suggest_categorical(self.name, [_encode(v) for v in self.args]))
        if self.kind == "uniform":
            return trial.suggest_float(self.name, low, high)
        if self.kind == "loguniform":
            return trial.suggest_float(self.name, low, high, log=True)
        if self.kind == "int":
            step = self.args[2] if len(self.args) == 3 else 1
            return trial.suggest_int(self.name, low, high, step=step)
        return trial.suggest_int(self.name, low, high, log=True)

    def optuna_value(self, value):
        """``value`` as this parameter's Optuna value (choices of lists/mappings are JSON text),
        or ``None`` when the space does not contain it."""
        if self.kind == "choice":
            for choice in self.args:
                if _same(choice, value):
                    return choice if _scalar(choice) else _encode(choice)
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        low, high = self.args[0], self.args[1]
        if self.kind in ("int", "logint"):
            step = self.args[2] if len(self.args) == 3 else 1
            if float(value) != int(value) or (int(value) - low) % step:
                return None
            value = int(value)
        return value if low <= value <= high else None

    def decode(self, value):
        """An Optuna parameter value back as the config value."""
        if self.kind == "choice" and not all(_scalar(v) for v in self.args):
            return json.loads(value)
        return value


@dataclass
class Space:
    source: str
    params: dict = field(default_factory=dict)  # name -> Param, in file order
    fixed: dict = field(default_factory=dict)

    def suggest(self, trial) -> dict:
        return {name: p.suggest(trial) for name, p in self.params.items()}

    def describe(self) -> dict:
        """The space as plain data (stored with the study, compared when a study is resumed)."""
        return {"fixed": json.loads(json.dumps(self.fixed, default=str, sort_keys=True)),
                "search": {n: {p.kind: p.args} for n, p in self.params.items()}}


def _scalar(value):
    return value is None or isinstance(value, (bool, int, float, str))


def _encode(value):
    return json.dumps(value, sort_keys=True)


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def read_space_file(path) -> Space:
    """Parse and check a space file; :class:`ConfigError` (one line: file, key, what to write) if bad."""
    path = Path(path)
    where = f"search space {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where} not found. Give an existing YAML file to --space.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}.") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc}).") from None
    return parse_space(data, str(path))


def parse_space(data, source="<space>") -> Space:
    where = f"search space {source}"
    example = "e.g. 'search: {learning_rate: {loguniform: [1.0e-4, 1.0e-2]}}'"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping with 'search' (and optionally 'fixed'), {example}.")
    unknown = sorted(set(data) - {"search", "fixed"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; a space file has only 'search' and 'fixed'.")
    search, fixed = data.get("search"), data.get("fixed") or {}
    if not isinstance(search, dict) or not search:
        raise ConfigError(f"{where}: 'search' must be a non-empty mapping of setting -> distribution, {example}.")
    if not isinstance(fixed, dict):
        raise ConfigError(f"{where}: 'fixed' must be a mapping of setting -> value, e.g. 'fixed: {{epochs: 50}}'.")
    both = sorted(set(search) & set(fixed))
    if both:
        raise ConfigError(f"{where}: {both} are both fixed and searched; keep each setting in one section.")
    space = Space(source=source, fixed=dict(fixed))
    for name, spec in search.items():
        space.params[str(name)] = _parse_param(where, str(name), spec)
    return space


def _parse_param(where, name, spec):
    at = f"{where}: search.{name}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{at} must be one distribution, one of {', '.join(KINDS)}, "
                          f"e.g. '{name}: {{choice: [32, 64]}}'; got {spec!r}.")
    (kind, args), = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{at}: unknown distribution {kind!r}; use one of {', '.join(KINDS)}.")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{at}: {kind} takes a list, e.g. '{kind}: [1, 4]'; got {args!r}.")
    if kind == "choice":
        if any(not _scalar(v) and not isinstance(v, (list, dict)) for v in args):
            raise ConfigError(f"{at}: choice values must be numbers, strings, booleans, lists or mappings.")
        if len({_encode(v) for v in args}) != len(args):
            raise ConfigError(f"{at}: choice lists the same value twice ({args!r}).")
        return Param(name, kind, list(args))
    numbers_ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in args)
    if kind in ("int", "logint"):
        form = "[low, high] or [low, high, step]" if kind == "int" else "[low, high]"
        sizes = (2, 3) if kind == "int" else (2,)
        if len(args) not in sizes or not numbers_ok or any(float(v) != int(v) for v in args):
            raise ConfigError(f"{at}: {kind} takes integers {form}; got {args!r}.")
        args = [int(v) for v in args]
        if args[0] > args[1] or (kind == "logint" and args[0] < 1) or (len(args) == 3 and args[2] < 1):
            need = "1 <= low <= high" if kind == "logint" else "low <= high and step >= 1"
            raise ConfigError(f"{at}: {kind} needs {need}; got {args!r}.")
        return Param(name, kind, args)
    if len(args) != 2 or not numbers_ok:
        raise ConfigError(f"{at}: {kind} takes two numbers [low, high]; got {args!r}.")
    low, high = float(args[0]), float(args[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high or (kind == "loguniform" and low <= 0):
        need = "0 < low < high" if kind == "loguniform" else "low < high"
        raise ConfigError(f"{at}: {kind} needs {need}; got {args!r}.")
    return Param(name, kind, [low, high])


def builtin_space_file(model_name):
    from recbole_llm.paths import properties_dir

    path = properties_dir() / "search" / f"{model_name}.yaml"
    return path if path.is_file() else None


def find_space(model_name, space_file=None) -> Space:
    """The space to tune ``model_name`` in: ``space_file`` if given, else recbole-llm's
    ``properties/search/<Model>.yaml``, else the one a plugin registered for the model."""
    if space_file:
        return read_space_file(space_file)
    path = builtin_space_file(model_name)
    if path is None:
        from recbole_llm.plugins import get_registry

        registered = get_registry().search_spaces.get(model_name)
        path = Path(registered) if registered else None
    if path is None:
        raise ConfigError(
            f"No search space for {model_name}: recbole-llm ships none (properties/search/) and no plugin "
            "registers one (register_search_spaces). Write one and pass --space=FILE, e.g. a YAML file with "
            "'search: {learning_rate: {loguniform: [1.0e-4, 1.0e-2]}}'.")
    return read_space_file(path)


def check_against_config(space: Space, config, overrides) -> None:
    """Every searched and fixed key must be a setting of the model (present in its resolved config),
    and no searched key may also be given on the command line. ``config`` is built with the space's
    fixed settings and the command line's applied (a sequential CE model's fixed
    ``train_neg_sample_args: ~`` is needed to build it at all)."""
    # the Config was built with the fixed part applied: a fixed key counts as known only if it also
    # comes from elsewhere (RecBole's and the model's property files, config files, the command line)
    fixed_only = set(space.fixed) - set(config.internal_config_dict) - set(config.file_config_dict) - set(overrides)
    known = set(config.final_config_dict) - fixed_only
    for section, keys in (("search", space.params), ("fixed", space.fixed)):
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise ConfigError(
                f"search space {space.source}: {section}.{unknown[0]} is not a setting of {config['model']} "
                "(not in its resolved config: RecBole's and the model's YAML defaults, the dataset's, your "
                "config files). Check the spelling, or add the key with a default to a --config_files YAML.")
    clash = sorted(set(space.params) & set(overrides))
    if clash:
        raise ConfigError(f"--{clash[0]} is given on the command line but is also searched in {space.source}; "
                          "drop the flag, or pass a --space without that key.")
