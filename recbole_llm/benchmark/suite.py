"""Benchmark suites: load and validate a suite YAML, expand it into runs.

A suite is models x datasets x seeds under one evaluation protocol. Format (all keys but
``name``, ``datasets``, ``groups`` and ``protocol`` are optional)::

    name: cpu_ml100k                 # defaults to the file name
    title: CPU benchmark on MovieLens-100K
    paper: "..."                     # where the table comes from (free text)
    description: "..."
    seeds: [2020, 2021, 2022]
    protocol:                        # identical for every run; overrides may not change it
      eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}
      metrics: [Recall, NDCG]
      topk: [10, 20]
      valid_metric: NDCG@10
      history_mask: seen             # optional (default seen; train = MMRec's), see recbole_llm/protocol.py
    # or a named protocol file: protocol: loo_time   (properties/protocol/loo_time.yaml)
    columns: [recall@10, ndcg@10]    # table columns (default: every metric@k)
    metric_labels: {recall@10: R@10} # column headers (default: R@10, N@10, P@5, HR@10, ...)
    config: {epochs: 50}             # RecBole config for every run
    config_files: [extra.yaml]       # relative to the suite file
    datasets:
      - ml-100k                      # or {name: ml-100k, label: ML-100K, config: {...}}
    groups:                          # table row groups, in the paper's order
      - name: Graph-only
        models: [BPR, LightGCN]      # a model name, or a variant:
      - name: LLM-based
        ours: true                   # the group the "Improv." row is computed for
        models:
          - GLTA
          - {label: GLTA w/o IA, model: GLTA, config: {glta_item_alignment: false},
             datasets: [ml-100k], note: "..."}
          - {label: GLTA on LightGCN, model: GLTA,      # stage 1: the LightGCN row's checkpoint
             checkpoints: {glta_graph_checkpoint: LightGCN}}
          - {label: FL, on_trained: GLTA,               # GLTA's trained weights scored again
             config: {glta_inference: first_logit}}
    model_config:                    # per-model overrides (all variants of that model)
      SASRec: {MAX_ITEM_LIST_LENGTH: 20}
    tables:                          # extra tables (ablations); the main table is implicit
      - {name: table3, caption: "...", kind: ablation, rows: [GLTA w/o IA, GLTA],
         columns: [precision@5, ndcg@5], datasets: [ml-100k]}
    figures:                         # ablation figures (grouped bars)
      - {name: figure3, caption: "...", rows: [...], columns: [...]}
    main_table: true
    allow_protocol_override: false
    reference: LightGCN              # every row is tested against it (Wilcoxon over users, t-test over
                                     # seeds, Holm); default: the best baseline per column. A table may
                                     # give its own ``reference``.
    tune: {trials: 20}               # tune every row first (or a row's own ``tune:``; ``tune: false``
                                     # opts a row out); {budget_hours: 2}; optional space: FILE

**Scale.** ``plan_suite(..., scale="paper")`` (``recbole-llm benchmark --scale paper``) loads
``properties/model/<Model>-paper.yaml`` for every row whose model has one: the paper file's settings
then win over the suite's ``config``, the dataset's ``config`` and ``model_config`` (CPU budgets set
there must not shrink a paper run), while a variant's own ``config`` (an ablation switch) and the
protocol still win over the paper file. Rows without a paper file run their defaults. The scale is
part of every run's identity (``benchmark_scale`` in the canonical config), so CPU and paper runs of
one suite never share a key, a stored result or a table.

**Tuned rows.** A row with ``tune`` is first tuned on validation (:mod:`recbole_llm.tune`, the
model's search space, the suite's first seed, every trial under the suite's protocol and settings),
then its seeds run with the best configuration. The tuning is one more keyed row of the store (its
key hashes the row's untuned config, the budget and the space); until it has finished, the row's
runs have status ``tune-pending`` (see :func:`plan_suite`'s ``tuned``).

A file may give ``protocols`` (a mapping ``part -> {label: ..., eval_args: ..., metrics: ...}``)
instead of ``protocol``: it then holds one suite per protocol, named ``<name>-<part>``, that
share everything else (e.g. random 80/10/10 and leave-one-out); a protocol's ``groups: [...]``
keeps only those row groups (each paper's models under its own protocol). Each part has its own
results folder ``<results>/<part>``.

**Rows built on other rows.** ``checkpoints: {SETTING: ROW}`` gives the setting (e.g. GLTA's
``glta_graph_checkpoint``) the best-epoch checkpoint of row ROW's run on the same dataset and seed:
that run goes first and keeps its checkpoint (``<results>/checkpoints/<key>/``); the dependent run's
key hashes ROW's key in place of the path, so a change of ROW reruns it, and a ROW whose checkpoint is
gone trains again. ``on_trained: ROW`` (with ``config:`` overrides of inference settings, e.g.
``glta_inference: first_logit``) trains nothing: it scores ROW's best weights again on the test split
(:func:`recbole_llm.quick_start.rescore_experiment`), its config is ROW's plus the overrides, its key
hashes ROW's key, and its wall time is the scoring alone. ``--only`` adds the rows a selected row
needs (:func:`with_dependencies`).

Precedence of a run's config (later wins): ``config`` < dataset ``config`` <
``model_config[model]`` < variant ``config`` < ``protocol`` < ``seed``.
"""

import copy
import fnmatch
import hashlib
import json
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recbole_llm.config_checks import EVAL_ARGS_KEYS, METRIC_NAMES, TOPK_METRICS, check_common_settings
from recbole_llm.errors import ConfigError
from recbole_llm.plain import plain

#: RecBole's metric names (the Config's list, :mod:`recbole_llm.config_checks`), keyed by lower case.
METRICS = {m.lower(): m for m in METRIC_NAMES.split(", ")}
LOWER_IS_BETTER = {"rmse", "mae", "logloss", "averagepopularity", "giniindex"}
SHORT_LABELS = {"recall": "R", "ndcg": "N", "precision": "P", "hit": "HR", "mrr": "MRR", "map": "MAP"}

PROTOCOL_KEYS = ("eval_args", "metrics", "topk", "valid_metric", "valid_metric_bigger", "history_mask", "protocol")

#: Resolved-config keys left out of the run key: they do not change results (devices,
#: paths, logging). Keys ending in ``_dir`` are dropped as well.
VOLATILE_KEYS = frozenset({
    "device", "gpu_id", "use_gpu", "checkpoint_dir", "data_path", "show_progress", "state",
    "log_wandb", "wandb_project", "worker", "nproc", "world_size", "local_rank", "ip", "port",
    "offset", "single_spec", "save_dataset", "dataset_save_path", "save_dataloaders",
    "dataloaders_save_path", "log_root", "tensorboard", "saved", "benchmark_results_dir",
})

_TOP_KEYS = {
    "name", "title", "paper", "description", "seeds", "protocol", "columns", "metric_labels",
    "config", "config_files", "datasets", "groups", "model_config", "tables", "figures",
    "main_table", "allow_protocol_override", "decimals", "notes", "protocols", "reference", "tune",
}
_GROUP_KEYS = {"name", "ours", "models"}
_VARIANT_KEYS = {"label", "model", "config", "config_files", "datasets", "note", "tune", "on_trained", "checkpoints"}
_TUNE_KEYS = {"trials", "budget_hours", "space"}
SCALES = ("cpu", "paper")
_DATASET_KEYS = {"name", "label", "config"}
_TABLE_KEYS = {"name", "caption", "kind", "rows", "columns", "datasets", "reference"}
_FIGURE_KEYS = {"name", "caption", "rows", "columns", "datasets"}


class SuiteError(ValueError):
    """A suite file is invalid; the message says where and how to fix it."""


# -- YAML ------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    pass


# Like RecBole: read 1e-5 and 1.0e+3 as floats (plain YAML 1.1 reads them as strings).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _load_yaml(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)


# -- data classes ----------------------------------------------------------------------
@dataclass
class DatasetSpec:
    name: str
    label: str
    config: dict = field(default_factory=dict)


@dataclass
class Variant:
    """One table row: a model with an optional label and config overrides."""

    label: str
    model: str
    group: str
    ours: bool = False
    config: dict = field(default_factory=dict)
    config_files: list = field(default_factory=list)
    datasets: list = None  # dataset names, None = all
    note: str = ""
    tune: dict = None  # {trials: N} and/or {budget_hours: H} (+ space): tune before the seeds; None = untuned
    on_trained: str = ""  # label of the row whose trained weights this row scores again (no training)
    checkpoints: dict = field(default_factory=dict)  # setting -> label of the row whose checkpoint it gets


@dataclass
class TableSpec:
    name: str
    caption: str = ""
    kind: str = "ablation"  # "main" (groups + Improv. row) or "ablation"
    rows: list = None  # variant labels, None = all
    columns: list = None  # metric keys, None = suite columns
    datasets: list = None
    reference: str = ""  # row label the other rows are tested against ("" = the suite's)


@dataclass
class FigureSpec:
    name: str
    caption: str = ""
    rows: list = None
    columns: list = None
    datasets: list = None


@dataclass
class Suite:
    name: str
    path: str
    title: str
    paper: str
    description: str
    seeds: list
    protocol: dict
    columns: list
    metric_labels: dict
    config: dict
    config_files: list
    datasets: list
    groups: list  # [(group name, ours, [Variant])]
    model_config: dict
    tables: list
    figures: list
    main_table: bool = True
    allow_protocol_override: bool = False
    decimals: int = 4
    notes: str = ""
    reference: str = ""  # the row every other row is tested against ("" = the best baseline per column)
    family: str = ""  # the file's suite name when it holds several protocols
    part: str = ""  # this suite's protocol key in that file
    tune: dict = None  # the suite-wide tuning budget (a row's own ``tune`` wins)

    @property
    def variants(self):
        return [v for _, _, vs in self.groups for v in vs]

    def variant(self, label):
        for v in self.variants:
            if v.label == label:
                return v
        raise KeyError(label)

    def dataset(self, name):
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def metric_label(self, metric):
        return self.metric_labels.get(metric) or default_metric_label(metric)

    def all_tables(self):
        """The main table (unless disabled) followed by the suite's extra tables."""
        tables = []
        if self.main_table:
            tables.append(TableSpec(name="main", caption=self.title, kind="main"))
        return tables + list(self.tables)


@dataclass
class RunSpec:
    """One run of a suite. ``status``: ``ready``, ``missing`` (model not registered),
    ``no-data`` (dataset absent), ``incompatible`` (model cannot run under the protocol) or
    ``error`` (config does not resolve). Only ``ready`` runs have a ``key``."""

    suite: str
    label: str
    group: str
    model: str
    dataset: str
    dataset_label: str
    seed: int
    config_dict: dict
    config_files: list
    status: str = "ready"
    reason: str = ""
    key: str = None
    resolved: dict = None
    paper_config: str = ""  # the properties/model/<Model>-paper.yaml this run loads (scale paper)
    tune_key: str = None  # the key of the row's tuning (tuned rows), see TuneTask
    needs: dict = field(default_factory=dict)  # setting -> key of the run whose checkpoint it receives
    trained_key: str = None  # on_trained rows: the key of the run whose weights are scored again
    keep_checkpoint: bool = False  # another run needs this run's checkpoint

    def dependencies(self):
        """Keys of the runs that must have finished (with their checkpoints) before this one."""
        return list(self.needs.values()) + ([self.trained_key] if self.trained_key else [])

    @property
    def name(self):
        return f"{self.label}@{self.dataset} seed={self.seed}"


@dataclass
class TuneTask:
    """The tuning of one tuned row on one dataset: a keyed row of the store (seed ``None``)."""

    key: str
    label: str
    model: str
    dataset: str
    spec: dict  # {trials, budget_hours, space}
    config_dict: dict  # the trials' settings (the row's untuned config, searched keys removed)
    config_files: list
    identity: dict  # what the key hashes (stored as the row's config)
    fixed: dict = field(default_factory=dict)  # the space's fixed settings the row's config leaves open
    params: list = field(default_factory=list)  # the searched keys


@dataclass
class Plan:
    suite: Suite
    runs: list
    scale: str = "cpu"
    tunings: dict = field(default_factory=dict)  # tune key -> TuneTask

    def ready(self):
        return [r for r in self.runs if r.status == "ready"]

    def by_cell(self):
        """{(label, dataset): [RunSpec, ...]} in seed order."""
        out = {}
        for r in self.runs:
            out.setdefault((r.label, r.dataset), []).append(r)
        return out


# -- helpers ---------------------------------------------------------------------------
def default_metric_label(metric):
    name, _, k = metric.partition("@")
    short = SHORT_LABELS.get(name, METRICS.get(name, name))
    return f"{short}@{k}" if k else short


def lower_is_better(metric):
    return metric.partition("@")[0].lower() in LOWER_IS_BETTER


def suites_dir():
    from recbole_llm.paths import properties_dir

    return properties_dir() / "benchmarks"


def list_suites():
    """[(name, path, title)] of the suites shipped in ``properties/benchmarks``."""
    out = []
    for path in sorted(suites_dir().glob("*.yaml")):
        try:
            raw = _load_yaml(path) or {}
            out.append((raw.get("name", path.stem), path, raw.get("title", "")))
        except Exception as exc:  # a broken file still shows up in the list
            out.append((path.stem, path, f"<cannot read: {exc}>"))
    return out


def find_suite(name_or_path):
    """Path of a suite given its name (``properties/benchmarks/<name>.yaml``) or a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SuiteError(f"Suite file {p} does not exist.")
        return p
    candidate = suites_dir() / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = ", ".join(n for n, _, _ in list_suites()) or "(none)"
    raise SuiteError(f"Unknown suite {name_or_path!r}. Shipped suites: {names}; or pass a path to a YAML file.")


def _err(where, msg):
    raise SuiteError(f"{where}: {msg}")


def _config_checks(cfg, where):
    """The Config's checks of RecBole's settings (:func:`recbole_llm.config_checks.check_common_settings`)
    on a part of the suite; its message, prefixed with where it is."""
    try:
        check_common_settings(cfg)
    except ConfigError as exc:
        _err(where, str(exc))


def _check_keys(obj, allowed, where):
    if not isinstance(obj, dict):
        _err(where, f"expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        _err(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _as_list(x, where, item_type=None):
    if x is None:
        return None
    if isinstance(x, (str, int)):
        x = [x]
    if not isinstance(x, list):
        _err(where, f"expected a list, got {type(x).__name__}")
    if item_type and any(not isinstance(i, item_type) for i in x):
        _err(where, f"expected a list of {item_type.__name__}, got {x!r}")
    return x


def _mapping(x, where):
    if x is None:
        return {}
    if not isinstance(x, dict):
        _err(where, f"expected a mapping, got {type(x).__name__}")
    return dict(x)


def _metric_key(m, where):
    if not isinstance(m, str):
        _err(where, f"metric {m!r} must be a string like 'recall@10'")
    name, at, k = m.strip().partition("@")
    lname = name.lower()
    if lname not in METRICS:
        _err(where, f"unknown metric {name!r}; RecBole metrics: {sorted(METRICS.values())}")
    if lname in TOPK_METRICS:
        if not at or not k.isdigit():
            _err(where, f"metric {m!r} needs a cut-off, e.g. '{lname}@10'")
        return f"{lname}@{int(k)}"
    return lname


def _tune_spec(x, where, base):
    """A row's or suite's ``tune:``: ``None``/``false`` (untuned) or ``{trials: N}`` and/or
    ``{budget_hours: H}`` (whichever ends first), with an optional ``space: FILE`` (relative to the
    suite file; default: the model's shipped space)."""
    if x is None or x is False:
        return None
    _check_keys(x, _TUNE_KEYS, where)
    trials, hours = x.get("trials"), x.get("budget_hours")
    if trials is None and hours is None:
        _err(where, "give trials: N or budget_hours: H (or both; whichever ends first)")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        _err(f"{where}.trials", f"expected an integer >= 1, got {trials!r}")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0):
        _err(f"{where}.budget_hours", f"expected a number > 0, got {hours!r}")
    spec = {"trials": trials, "budget_hours": None if hours is None else float(hours), "space": None}
    if x.get("space") is not None:
        space = Path(base) / str(x["space"])
        if not space.is_file():
            _err(f"{where}.space", f"{space} does not exist")
        spec["space"] = str(space.resolve())
    return spec


def _check_row_links(groups, where):
    """``on_trained`` and ``checkpoints`` name existing rows, without cycles; an on_trained row takes
    its trained row's model (and datasets, unless it names its own)."""
    rows = {v.label: v for _, _, vs in groups for v in vs}
    for v in rows.values():
        w = f"{where}: row {v.label!r}"
        if v.on_trained:
            trained = rows.get(v.on_trained)
            if trained is None:
                _err(f"{w}.on_trained", f"unknown row {v.on_trained!r}; rows: {sorted(rows)}")
            if trained.on_trained:
                _err(f"{w}.on_trained", f"{v.on_trained!r} is itself an on_trained row; name the row that trains")
            if v.model and v.model != trained.model:
                _err(f"{w}.model", f"{v.model!r} differs from the trained row's model {trained.model!r}")
            v.model = trained.model
            if v.datasets is None:
                v.datasets = trained.datasets
            elif trained.datasets is not None and set(v.datasets) - set(trained.datasets):
                _err(f"{w}.datasets", f"{sorted(set(v.datasets) - set(trained.datasets))} are not datasets of "
                                      f"{v.on_trained!r}")
            if not v.note:
                v.note = (f"the trained {v.on_trained} scored again with "
                          + ", ".join(f"{k}: {val}" for k, val in v.config.items()) if v.config else
                          f"the trained {v.on_trained} scored again")
        for setting, dep in v.checkpoints.items():
            target = rows.get(dep)
            if target is None:
                _err(f"{w}.checkpoints.{setting}", f"unknown row {dep!r}; rows: {sorted(rows)}")
            if target.on_trained or dep == v.label:
                _err(f"{w}.checkpoints.{setting}", f"{dep!r} trains no model of its own (on_trained or this row)")

    def visit(label, path):
        if label in path:
            _err(where, f"rows depend on each other's checkpoints in a cycle: {' -> '.join(path + [label])}")
        for dep in rows[label].checkpoints.values():
            visit(dep, path + [label])

    for label in rows:
        visit(label, [])


def with_dependencies(selected, runs):
    """``selected`` plus the runs of ``runs`` they depend on (checkpoints, on_trained), recursively,
    in plan order."""
    by_key = {r.key: r for r in runs if r.key}
    want = {id(r) for r in selected}
    stack = [k for r in selected for k in r.dependencies()]
    while stack:
        dep = by_key.get(stack.pop())
        if dep is not None and id(dep) not in want:
            want.add(id(dep))
            stack.extend(dep.dependencies())
    return [r for r in runs if id(r) in want]


def load_suites(name_or_path, parts=None):
    """The suites of one file: one, or one per protocol of a ``protocols`` file (``parts``
    selects some by key); raises :class:`SuiteError` with a precise message."""
    path = find_suite(name_or_path)
    try:
        raw = _load_yaml(path)
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from None
    return parse_suites(raw, path, parts=parts)


def load_suite(name_or_path):
    """Load and validate a single-protocol suite (see :func:`load_suites` for the others)."""
    suites = load_suites(name_or_path)
    if len(suites) != 1:
        raise SuiteError(f"{name_or_path}: holds {len(suites)} protocols ({', '.join(s.part for s in suites)}); "
                         "load it with load_suites(), or choose one with --protocol")
    return suites[0]


def parse_suites(raw, path="<dict>", parts=None):
    """``[Suite]`` of a suite file: itself, or one per entry of its ``protocols`` mapping."""
    where = str(path)
    if not isinstance(raw, dict) or "protocols" not in raw:
        if parts:
            _err(where, f"has a single protocol; --protocol {','.join(parts)} does not apply")
        return [parse_suite(raw, path)]
    if "protocol" in raw:
        _err(where, "give either 'protocol' or 'protocols', not both")
    protocols = _mapping(raw["protocols"], f"{where}: protocols")
    if not protocols:
        _err(f"{where}: protocols", "empty mapping; give at least one protocol")
    unknown = sorted(set(parts or ()) - set(protocols))
    if unknown:
        _err(where, f"no protocol {unknown}; it has {sorted(protocols)}")
    family = raw.get("name") or (Path(path).stem if path != "<dict>" else None)
    suites = []
    for key, spec in protocols.items():
        if parts and key not in parts:
            continue
        w = f"{where}: protocols.{key}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(key)):
            _err(w, "protocol keys must be letters, digits, '_', '-', '.'")
        spec = dict(_mapping(spec, w))
        label = str(spec.pop("label", key))
        one = {k: v for k, v in raw.items() if k != "protocols"}
        only = spec.pop("groups", None)
        if only is not None:  # the row groups that run under this protocol (e.g. each paper's own)
            only = _as_list(only, f"{w}.groups", str)
            names = [g.get("name") for g in (raw.get("groups") or []) if isinstance(g, dict)]
            unknown = sorted(set(only) - set(names))
            if unknown:
                _err(f"{w}.groups", f"unknown groups {unknown}; the suite's groups are {names}")
            one["groups"] = [g for g in raw["groups"] if g.get("name") in only]
        one.update(name=f"{family}-{key}", title=f"{raw.get('title') or family} ({label})", protocol=spec)
        suite = parse_suite(one, path)
        suite.family, suite.part = str(family), str(key)
        suites.append(suite)
    return suites


def parse_suite(raw, path="<dict>"):
    where = str(path)
    if raw is None:
        _err(where, "empty suite file")
    if "protocols" in raw:
        _err(where, "holds several protocols; parse it with parse_suites()")
    _check_keys(raw, _TOP_KEYS, where)
    name = raw.get("name") or (Path(path).stem if path != "<dict>" else None)
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
        _err(where, f"'name' must be letters, digits, '_', '-', '.'; got {name!r}")
    base = Path(path).parent if path != "<dict>" else Path.cwd()

    # protocol
    if "protocol" not in raw:
        _err(where, "missing 'protocol' (eval_args, metrics, topk, valid_metric)")
    if isinstance(raw["protocol"], str):  # a named protocol file, properties/protocol/<name>.yaml
        from recbole_llm.protocol import PROTOCOL_FILE_KEYS, load_protocol

        try:
            protocol = dict(load_protocol(raw["protocol"]), protocol=raw["protocol"])
        except ConfigError as exc:
            _err(f"{where}: protocol", str(exc))
        allowed = set(PROTOCOL_KEYS) | PROTOCOL_FILE_KEYS
    else:
        protocol = _mapping(raw["protocol"], f"{where}: protocol")
        allowed = set(PROTOCOL_KEYS) - {"protocol"}
    _check_keys(protocol, allowed, f"{where}: protocol")
    if "history_mask" in protocol:
        from recbole_llm.protocol import check_history_mask

        try:
            check_history_mask(protocol["history_mask"])
        except ConfigError as exc:
            _err(f"{where}: protocol", str(exc))
    for key in ("eval_args", "metrics"):
        if key not in protocol:
            _err(f"{where}: protocol", f"missing {key!r}")
    ea = _mapping(protocol["eval_args"], f"{where}: protocol.eval_args")
    for key in EVAL_ARGS_KEYS:
        if key not in ea:
            _err(f"{where}: protocol.eval_args", f"missing {key!r} (state the protocol in full)")
    config = _mapping(raw.get("config"), f"{where}: config")
    _config_checks(config, f"{where}: config")
    # The Config's own checks, so that a suite and a run refuse the same settings in the same words.
    eval_step = {"eval_step": config["eval_step"]} if "eval_step" in config else {}
    _config_checks({**protocol, **eval_step}, f"{where}: protocol")
    protocol["metrics"] = canon = [METRICS[m.lower()] for m in _as_list(protocol["metrics"], "", str)]
    topk = _as_list(protocol.get("topk"), f"{where}: protocol.topk", int)
    if any(m.lower() in TOPK_METRICS for m in canon) and not topk:
        _err(f"{where}: protocol", "top-k metrics need 'topk', e.g. [10, 20]")
    if topk is not None:
        protocol["topk"] = topk
    produced = []
    for m in canon:
        if m.lower() in TOPK_METRICS:
            produced += [f"{m.lower()}@{k}" for k in topk]
        else:
            produced.append(m.lower())

    columns = _as_list(raw.get("columns"), f"{where}: columns", str)
    columns = [_metric_key(c, f"{where}: columns") for c in columns] if columns else list(produced)
    for c in columns:
        if c not in produced:
            _err(f"{where}: columns", f"{c!r} is not computed by the protocol (metrics x topk = {produced})")
    metric_labels = {_metric_key(k, f"{where}: metric_labels"): str(v)
                     for k, v in _mapping(raw.get("metric_labels"), f"{where}: metric_labels").items()}

    seeds = _as_list(raw.get("seeds", [2020]), f"{where}: seeds", int)
    if not seeds or len(set(seeds)) != len(seeds):
        _err(f"{where}: seeds", f"expected a non-empty list of distinct integers, got {seeds!r}")

    # datasets
    ds_raw = _as_list(raw.get("datasets"), f"{where}: datasets")
    if not ds_raw:
        _err(where, "missing 'datasets'")
    datasets = []
    for i, d in enumerate(ds_raw):
        w = f"{where}: datasets[{i}]"
        if isinstance(d, str):
            d = {"name": d}
        _check_keys(d, _DATASET_KEYS, w)
        if not d.get("name"):
            _err(w, "missing 'name' (the RecBole dataset name)")
        datasets.append(DatasetSpec(str(d["name"]), str(d.get("label") or d["name"]), _mapping(d.get("config"), f"{w}.config")))
    ds_names = [d.name for d in datasets]
    if len(set(ds_names)) != len(ds_names):
        _err(f"{where}: datasets", f"duplicate dataset names in {ds_names}")

    allow_override = bool(raw.get("allow_protocol_override", False))
    config_files = [str((base / f).resolve()) for f in (_as_list(raw.get("config_files"), f"{where}: config_files", str) or [])]
    for f in config_files:
        if not Path(f).is_file():
            _err(f"{where}: config_files", f"{f} does not exist")

    def check_protocol_free(cfg, w):
        clash = sorted(set(cfg) & set(PROTOCOL_KEYS) | ({"seed"} & set(cfg)))
        if clash and not allow_override:
            _err(w, f"overrides {clash}, which belong to the suite's protocol (every model must share the "
                    f"split and evaluator; seeds come from 'seeds'). Move them to 'protocol' or set "
                    f"allow_protocol_override: true")

    check_protocol_free(config, f"{where}: config")
    for d in datasets:
        check_protocol_free(d.config, f"{where}: datasets[{d.name}].config")

    model_config = _mapping(raw.get("model_config"), f"{where}: model_config")
    for m, cfg in model_config.items():
        model_config[m] = _mapping(cfg, f"{where}: model_config.{m}")
        check_protocol_free(model_config[m], f"{where}: model_config.{m}")

    suite_tune = _tune_spec(raw.get("tune"), f"{where}: tune", base)

    # groups
    groups_raw = _as_list(raw.get("groups"), f"{where}: groups")
    if not groups_raw:
        _err(where, "missing 'groups' (the table's model groups)")
    groups, labels = [], set()
    for gi, g in enumerate(groups_raw):
        w = f"{where}: groups[{gi}]"
        _check_keys(g, _GROUP_KEYS, w)
        gname = str(g.get("name") or f"Group {gi + 1}")
        ours = bool(g.get("ours", False))
        variants = []
        for mi, m in enumerate(_as_list(g.get("models"), f"{w}.models") or []):
            wm = f"{w}.models[{mi}]"
            if isinstance(m, str):
                m = {"model": m}
            _check_keys(m, _VARIANT_KEYS, wm)
            on_trained = m.get("on_trained")
            if on_trained is not None and (not isinstance(on_trained, str) or not on_trained):
                _err(f"{wm}.on_trained", f"expected the label of a trained row, got {on_trained!r}")
            if on_trained and not m.get("label"):
                _err(wm, "an on_trained row needs its own 'label'")
            if not on_trained and (not m.get("model") or not isinstance(m["model"], str)):
                _err(wm, "missing 'model' (the registered model class name)")
            label = str(m.get("label") or m["model"])
            if label in labels:
                _err(wm, f"duplicate row label {label!r}; give variants distinct 'label's")
            labels.add(label)
            vcfg = _mapping(m.get("config"), f"{wm}.config")
            check_protocol_free(vcfg, f"{wm}.config")
            vds = _as_list(m.get("datasets"), f"{wm}.datasets", str)
            for dn in vds or []:
                if dn not in ds_names:
                    _err(f"{wm}.datasets", f"unknown dataset {dn!r}; suite datasets: {ds_names}")
            vfiles = [str((base / f).resolve()) for f in (_as_list(m.get("config_files"), f"{wm}.config_files", str) or [])]
            for f in vfiles:
                if not Path(f).is_file():
                    _err(f"{wm}.config_files", f"{f} does not exist")
            vtune = _tune_spec(m["tune"], f"{wm}.tune", base) if "tune" in m else suite_tune
            if on_trained:
                if m.get("tune"):
                    _err(f"{wm}.tune", "an on_trained row trains nothing; tune the row it rescores")
                vtune = None
            deps = _mapping(m.get("checkpoints"), f"{wm}.checkpoints")
            for setting, dep in deps.items():
                if not isinstance(dep, str) or not dep:
                    _err(f"{wm}.checkpoints.{setting}", f"expected a row label, got {dep!r}")
                if setting in vcfg:
                    _err(f"{wm}.checkpoints", f"{setting!r} is also set in the row's config; give it in one place")
            if on_trained and deps:
                _err(f"{wm}.checkpoints", "an on_trained row loads the trained row's weights; give checkpoints "
                                          "to the trained row")
            variants.append(Variant(label=label, model=str(m.get("model") or ""), group=gname, ours=ours, config=vcfg,
                                    config_files=vfiles, datasets=vds, note=str(m.get("note") or ""), tune=vtune,
                                    on_trained=str(on_trained or ""), checkpoints=deps))
        if not variants:
            _err(w, "a group needs at least one model")
        groups.append((gname, ours, variants))
    _check_row_links(groups, where)

    def check_rows(rows, w):
        rows = _as_list(rows, w, str)
        for r in rows or []:
            if r not in labels:
                _err(w, f"unknown row {r!r}; rows are model labels: {sorted(labels)}")
        return rows

    def check_cols(cols, w):
        cols = _as_list(cols, w, str)
        if cols is None:
            return None
        out = [_metric_key(c, w) for c in cols]
        for c in out:
            if c not in produced:
                _err(w, f"{c!r} is not computed by the protocol (metrics x topk = {produced})")
        return out

    def check_ds(dss, w):
        dss = _as_list(dss, w, str)
        for dn in dss or []:
            if dn not in ds_names:
                _err(w, f"unknown dataset {dn!r}; suite datasets: {ds_names}")
        return dss

    def check_reference(label, w):
        if label is None:
            return ""
        labels = [v.label for _, _, vs in groups for v in vs]
        if label not in labels:
            _err(w, f"reference {label!r} is not a row label; rows: {labels}")
        return str(label)

    tables, names = [], {"main", "efficiency"}
    for ti, t in enumerate(_as_list(raw.get("tables"), f"{where}: tables") or []):
        w = f"{where}: tables[{ti}]"
        _check_keys(t, _TABLE_KEYS, w)
        tname = str(t.get("name") or f"table{ti + 1}")
        if tname in names or not re.fullmatch(r"[A-Za-z0-9_.-]+", tname):
            _err(w, f"table name {tname!r} is taken or not a plain file name")
        names.add(tname)
        kind = t.get("kind", "ablation")
        if kind not in ("main", "ablation"):
            _err(w, f"kind must be 'main' or 'ablation', got {kind!r}")
        tables.append(TableSpec(tname, str(t.get("caption") or ""), kind, check_rows(t.get("rows"), f"{w}.rows"),
                                check_cols(t.get("columns"), f"{w}.columns"), check_ds(t.get("datasets"), f"{w}.datasets"),
                                reference=check_reference(t.get("reference"), f"{w}.reference")))
    figures = []
    for fi, f in enumerate(_as_list(raw.get("figures"), f"{where}: figures") or []):
        w = f"{where}: figures[{fi}]"
        _check_keys(f, _FIGURE_KEYS, w)
        fname = str(f.get("name") or f"figure{fi + 1}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", fname):
            _err(w, f"figure name {fname!r} is not a plain file name")
        figures.append(FigureSpec(fname, str(f.get("caption") or ""), check_rows(f.get("rows"), f"{w}.rows"),
                                  check_cols(f.get("columns"), f"{w}.columns"), check_ds(f.get("datasets"), f"{w}.datasets")))

    decimals = raw.get("decimals", 4)
    if not isinstance(decimals, int) or not 1 <= decimals <= 8:
        _err(f"{where}: decimals", f"expected an integer 1-8, got {decimals!r}")

    return Suite(
        name=str(name), path=str(path), title=str(raw.get("title") or name), paper=str(raw.get("paper") or ""),
        description=str(raw.get("description") or ""), seeds=seeds, protocol=protocol, columns=columns,
        metric_labels=metric_labels, config=config, config_files=config_files, datasets=datasets, groups=groups,
        model_config=model_config, tables=tables, figures=figures, main_table=bool(raw.get("main_table", True)),
        allow_protocol_override=allow_override, decimals=decimals, notes=str(raw.get("notes") or ""),
        reference=check_reference(raw.get("reference"), f"{where}: reference"), tune=suite_tune,
    )


# -- model availability and config resolution ------------------------------------------
def available_models():
    """Names of every model that can be run: recbole-llm's plugins and RecBole's own."""
    from recbole_llm.utils import list_models

    found = list_models()
    return set(found["recbole_llm"]) | set(found["recbole"])


@contextmanager
def _clean_argv():
    """Show only the program name in sys.argv while a config resolves. RecBole's own Config reads
    ``--key=value`` flags from sys.argv; recbole-llm's Config ignores sys.argv."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def resolve_config(model, dataset, config_file_list=None, config_dict=None):
    """The fully resolved config of a run, as RecBole would build it, without loading (or
    downloading) any data: ``data_path`` is left unresolved (it is not part of the run key)."""
    try:
        from recbole_llm.config import Config
    except ImportError:  # recbole_llm.config ships with this package: only if importing it fails
        from recbole.config import Config

    class _PlanningConfig(Config):
        def _resolve_data_path(self):
            return self.external_config_dict.get("data_path") or self.internal_config_dict.get("data_path")

    with _clean_argv():
        cfg = _PlanningConfig(model=model, dataset=dataset, config_file_list=list(config_file_list or []) or None,
                              config_dict=copy.deepcopy(config_dict or {}))
    return dict(cfg.final_config_dict)


def dataset_availability(name, config_dict=None):
    """``(state, detail)``: ``local`` (atomic files found), ``provider`` (a registered provider
    downloads and converts it on first run), or ``absent``. Mirrors where
    :class:`recbole_llm.config.Config` looks; downloads nothing."""
    from pathlib import Path as _P

    config_dict = config_dict or {}
    inter = f"{name}.inter"
    cands = []
    if config_dict.get("data_path"):
        cands.append(_P(config_dict["data_path"]) / name)
    else:
        cands.append(_P("dataset") / name)
        try:
            from recbole_llm.paths import default_data_dir

            cands.append(default_data_dir() / name)
        except Exception:
            pass
    if name == "ml-100k":
        try:
            import recbole

            cands.append(_P(recbole.__file__).parent / "dataset_example" / "ml-100k")
        except Exception:
            pass
    if config_dict.get("benchmark_filename"):
        inters = [f"{name}.{part}.inter" for part in config_dict["benchmark_filename"]]
    else:
        inters = [inter]
    for c in cands:
        if all((c / f).is_file() for f in inters):
            return "local", str(c)
    try:
        from recbole_llm.plugins import get_registry

        if name in get_registry().datasets:
            return "provider", f"downloaded and converted on first run (recbole-llm data provider {name!r})"
    except Exception:
        pass
    return "absent", f"no {inters[0]} in {', '.join(str(c) for c in cands)} and no data provider for {name!r}"


#: How a suite's config becomes canonical JSON (:func:`recbole_llm.plain.plain`): numpy/torch scalars as
#: numbers, sets sorted, classes by module and name, anything else as its ``repr``.
CANONICAL_JSON = {"numbers": True, "fallback": repr, "sets": "sorted", "type_names": True, "str_keys": False}


def canonical_config(resolved):
    """The resolved config with volatile keys dropped, as JSON-able plain data."""
    out = {}
    for k, v in resolved.items():
        if k in VOLATILE_KEYS or k.endswith("_dir"):
            continue
        out[str(k)] = v
    return json.loads(json.dumps(plain(out, **CANONICAL_JSON), sort_keys=True))


def config_key(canonical):
    """Run key: first 20 hex digits of the SHA-256 of the canonical config."""
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _incompatibility(resolved):
    mt = str(resolved.get("MODEL_TYPE", ""))
    order = (resolved.get("eval_args") or {}).get("order")
    if "SEQUENTIAL" in mt.upper() and order != "TO":
        return (f"sequential model; RecBole's sequential datasets need eval_args.order TO, "
                f"the protocol uses {order}")
    return None


def paper_config_file(model):
    """``properties/model/<model>-paper.yaml`` if recbole-llm ships one, else ``None``."""
    from recbole_llm.paths import properties_dir

    path = properties_dir() / "model" / f"{model}-paper.yaml"
    return path if path.is_file() else None


def run_config(suite, variant, dataset, seed, paper_keys=()):
    """The config dict of one run (before RecBole resolves it). ``paper_keys``: the settings of
    the row's paper file (scale paper), which the suite's, dataset's and model's ``config`` do
    not override."""
    cfg = {}
    for part in (suite.config, dataset.config, suite.model_config.get(variant.model, {})):
        cfg.update({k: copy.deepcopy(v) for k, v in part.items() if k not in paper_keys})
    cfg.update(copy.deepcopy(variant.config))
    cfg.update(copy.deepcopy(suite.protocol))
    cfg["seed"] = int(seed)
    return cfg


def _unknown_override_keys(overrides, defaults):
    return sorted(k for k in overrides if k not in defaults)


def _tune_task(suite, variant, ds, cfg, files, resolved, seed):
    """The :class:`TuneTask` of ``variant`` on ``ds``: trials use the row's config at the suite's
    first seed (``cfg``) without the searched keys a suite-level setting gives; a searched key the
    row's own ``config`` sets is an error (the row would not be tuned on it)."""
    from recbole_llm.tune.space import find_space

    space = find_space(variant.model, variant.tune.get("space"))
    searched = list(space.params)
    own = sorted(set(searched) & set(variant.config))
    if own:
        raise ValueError(f"the row's config sets {own}, which its search space ({space.source}) tunes; drop "
                         f"them from the row's config or from the space")
    trial_cfg = {k: v for k, v in cfg.items() if k not in searched}
    trial_cfg["seed"] = int(seed)
    identity = {"tune": {k: v for k, v in variant.tune.items() if k != "space"}, "space": space.describe(),
                "model": variant.model, "dataset": ds.name, "config": canonical_config(resolved)}
    identity = json.loads(json.dumps(plain(identity, **CANONICAL_JSON), sort_keys=True))
    fixed = {k: v for k, v in space.fixed.items() if k not in trial_cfg}
    return TuneTask(key="tune-" + config_key(identity), label=variant.label, model=variant.model, dataset=ds.name,
                    spec=dict(variant.tune), config_dict=trial_cfg, config_files=list(files), identity=identity,
                    fixed=fixed, params=searched)


def plan_suite(suite, seeds=None, available=None, resolver=None, data_check=None, scale="cpu", tuned=None):
    """Expand ``suite`` into :class:`RunSpec` s, one per variant x dataset x seed.

    ``available``: set of runnable model names (default :func:`available_models`);
    ``resolver(model, dataset, config_file_list, config_dict) -> dict`` (default
    :func:`resolve_config`); ``data_check(dataset, config_dict) -> (state, detail)`` (default
    :func:`dataset_availability`; pass ``False`` to skip). Runs that cannot happen keep a
    status saying why: ``missing`` (model not registered), ``no-data`` (dataset absent),
    ``incompatible`` (e.g. a sequential model under a random-order split) or ``error`` (the
    config does not resolve, or an override names a key the model does not have: a typo
    would otherwise silently run the unmodified model). They are shown in every table,
    never dropped.

    ``scale``: ``cpu`` (the models' defaults) or ``paper`` (rows whose model has a
    ``<Model>-paper.yaml`` load it; see the module docstring). ``tuned(tune_key)``: the best
    parameters of a finished tuning (``{key: value}``) or ``None``; a tuned row's runs are
    ``tune-pending`` until it returns them. ``Plan.tunings`` holds every tuned row's task.
    """
    if scale not in SCALES:
        raise SuiteError(f"unknown scale {scale!r}; choose one of {list(SCALES)}")
    seeds = list(seeds) if seeds else list(suite.seeds)
    if available is None:
        available = available_models()
    resolver = resolver or resolve_config
    if data_check is None:
        data_check = dataset_availability
    data_state = {}
    defaults_cache = {}
    runs, tunings = [], {}
    for variant in suite.variants:
        if variant.on_trained:
            continue  # planned after the rows they rescore (_link_rows)
        paper = paper_config_file(variant.model) if scale == "paper" else None
        paper_keys = set(_load_yaml(paper) or {}) if paper else set()
        for ds in suite.datasets:
            if variant.datasets is not None and ds.name not in variant.datasets:
                continue
            files = list(suite.config_files) + ([str(paper)] if paper else []) + list(variant.config_files)
            task = None
            for seed in seeds:
                cfg = run_config(suite, variant, ds, seed, paper_keys)
                run = RunSpec(suite=suite.name, label=variant.label, group=variant.group, model=variant.model,
                              dataset=ds.name, dataset_label=ds.label, seed=int(seed), config_dict=cfg,
                              config_files=files, paper_config=str(paper) if paper else "")
                runs.append(run)
                if variant.model not in available:
                    run.status, run.reason = "missing", f"model {variant.model!r} is not registered"
                    continue
                if data_check:
                    if ds.name not in data_state:
                        data_state[ds.name] = data_check(ds.name, cfg)
                    state, detail = data_state[ds.name]
                    if state == "absent":
                        run.status, run.reason = "no-data", f"dataset {ds.name!r} not available: {detail}"
                        continue
                if variant.tune and task is None:
                    first = run_config(suite, variant, ds, suite.seeds[0], paper_keys)
                    try:
                        base = resolver(variant.model, ds.name, files, first)
                        if scale != "cpu":
                            base = dict(base, benchmark_scale=scale)
                        task = _tune_task(suite, variant, ds, first, files, base, suite.seeds[0])
                    except Exception as exc:
                        run.status, run.reason = "error", f"cannot tune: {type(exc).__name__}: {exc}"
                        continue
                    tunings[task.key] = task
                if task is not None:
                    run.tune_key = task.key
                    params = tuned(task.key) if tuned else None
                    if params is None:
                        run.status, run.reason = "tune-pending", "tuning has not finished yet"
                        continue
                    tuned_cfg = {**task.fixed, **{k: v for k, v in cfg.items() if k not in task.params}}
                    tuned_cfg.update({k: params[k] for k in task.params if k in params})
                    run.config_dict = cfg = tuned_cfg
                try:
                    resolved = resolver(variant.model, ds.name, files, cfg)
                except Exception as exc:
                    run.status, run.reason = "error", f"config does not resolve: {type(exc).__name__}: {exc}"
                    continue
                overrides = dict(suite.model_config.get(variant.model, {}))
                overrides.update(variant.config)
                if overrides:
                    dkey = (variant.model, ds.name)
                    if dkey not in defaults_cache:
                        base = {k: v for k, v in cfg.items() if k not in overrides}
                        try:
                            defaults_cache[dkey] = set(resolver(variant.model, ds.name, list(suite.config_files), base))
                        except Exception:
                            defaults_cache[dkey] = set(resolved)
                    unknown = _unknown_override_keys(overrides, defaults_cache[dkey])
                    if unknown:
                        run.status, run.reason = "error", (
                            f"override key(s) {unknown} are not settings of {variant.model} (not in its resolved "
                            f"defaults); check the names in its property file")
                        continue
                why = _incompatibility(resolved)
                if why:
                    run.status, run.reason = "incompatible", why
                    continue
                run.resolved = canonical_config(resolved)
                if scale != "cpu":  # CPU keys stay as they were; other scales never share a key with them
                    run.resolved["benchmark_scale"] = scale
                run.key = config_key(run.resolved)
    runs = _link_rows(suite, runs, seeds, resolver, scale)
    return Plan(suite=suite, runs=runs, scale=scale, tunings=tunings)


def _blocked(run, other, what):
    """Mark ``run`` not runnable because ``other`` (the run it needs) is not."""
    run.key, run.resolved = None, None
    run.status = "tune-pending" if other is not None and other.status == "tune-pending" else "error"
    if run.status == "tune-pending":
        run.tune_key = other.tune_key  # selecting this run tunes that row first
    run.reason = what if other is None else f"needs row {other.label!r}, which is {other.status} ({other.reason})"


def _link_rows(suite, runs, seeds, resolver, scale):
    """Wire ``checkpoints`` and ``on_trained`` rows to the runs they need (same dataset and seed) and
    key them by those runs' keys; return every run in the suite's row order."""
    index = {(r.label, r.dataset, r.seed): r for r in runs}
    variants = {v.label: v for v in suite.variants}
    linked = set()

    def link(label):
        if label in linked:
            return
        linked.add(label)
        v = variants[label]
        for dep in v.checkpoints.values():
            link(dep)
        for run in (r for r in runs if r.label == label and r.status == "ready" and v.checkpoints):
            for setting, dep_label in v.checkpoints.items():
                dep = index.get((dep_label, run.dataset, run.seed))
                if dep is None or dep.status != "ready":
                    _blocked(run, dep, f"needs row {dep_label!r}, which does not run on {run.dataset} seed {run.seed}")
                    break
                run.needs[setting] = dep.key
                run.resolved[setting] = {"checkpoint_of": dep_label, "run": dep.key}
            else:
                for dep_key in run.needs.values():
                    next(r for r in runs if r.key == dep_key).keep_checkpoint = True
                run.key = config_key(run.resolved)

    for v in suite.variants:
        if not v.on_trained:
            link(v.label)
    by_label = {}
    for r in runs:
        by_label.setdefault(r.label, []).append(r)
    for v in suite.variants:
        if not v.on_trained:
            continue
        for ds in suite.datasets:
            if v.datasets is not None and ds.name not in v.datasets:
                continue
            for seed in seeds:
                trained = index.get((v.on_trained, ds.name, int(seed)))
                if trained is None:
                    continue
                cfg = {**copy.deepcopy(trained.config_dict), **copy.deepcopy(v.config)}
                run = RunSpec(suite=suite.name, label=v.label, group=v.group, model=trained.model, dataset=ds.name,
                              dataset_label=ds.label, seed=int(seed), config_dict=cfg,
                              config_files=list(trained.config_files) + list(v.config_files),
                              paper_config=trained.paper_config)
                by_label.setdefault(v.label, []).append(run)
                if trained.status != "ready":
                    _blocked(run, trained, "")
                    continue
                try:
                    resolved = resolver(run.model, ds.name, run.config_files, cfg)
                except Exception as exc:
                    run.status, run.reason = "error", f"config does not resolve: {type(exc).__name__}: {exc}"
                    continue
                unknown = _unknown_override_keys(v.config, trained.resolved)
                if unknown:
                    run.status, run.reason = "error", (f"override key(s) {unknown} are not settings of {run.model}; "
                                                       "check the names in its property file")
                    continue
                run.resolved = canonical_config(resolved)
                if scale != "cpu":
                    run.resolved["benchmark_scale"] = scale
                run.resolved["benchmark_on_trained"] = trained.key
                run.key, run.trained_key = config_key(run.resolved), trained.key
                trained.keep_checkpoint = True
    return [r for v in suite.variants for r in by_label.get(v.label, [])]


def _matches(run, pattern):
    """``pattern``: ``Model``, ``Label``, ``Model@dataset``, with shell wildcards."""
    if "@" in pattern:
        mp, dp = pattern.split("@", 1)
    else:
        mp, dp = pattern, "*"
    model_ok = fnmatch.fnmatchcase(run.model, mp) or fnmatch.fnmatchcase(run.label, mp)
    ds_ok = fnmatch.fnmatchcase(run.dataset, dp) or fnmatch.fnmatchcase(run.dataset_label, dp)
    return model_ok and ds_ok


def select_runs(runs, only=None, skip=None):
    """Filter runs by ``--only``/``--skip`` patterns (lists; comma-separated items allowed)."""

    def split(patterns):
        out = []
        for p in patterns or []:
            out += [x.strip() for x in p.split(",") if x.strip()]
        return out

    only, skip = split(only), split(skip)
    out = []
    for r in runs:
        if only and not any(_matches(r, p) for p in only):
            continue
        if skip and any(_matches(r, p) for p in skip):
            continue
        out.append(r)
    return out
