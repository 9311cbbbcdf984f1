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

Every key of every section is declared once, with its kind, default and a one-line doc, in
:data:`SUITE_KEYS`, :data:`DATASET_KEYS`, :data:`GROUP_KEYS`, :data:`ROW_KEYS`, :data:`TUNE_KEYS`,
:data:`TABLE_KEYS` and :data:`FIGURE_KEYS`; :func:`parse_suite` reads each section against its schema and
checks the protocol with the Config's own checks (:mod:`recbole_llm.config_checks`), so a suite and a
run refuse a bad metric or split in the same words.

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

SCALES = ("cpu", "paper")
_DATASET_KEYS = {"name", "label", "config"}
_TABLE_KEYS = {"name", "caption", "kind", "rows", "columns", "datasets", "reference"}
_FIGURE_KEYS = {"name", "caption", "rows", "columns", "datasets"}


@dataclass(frozen=True)
class Key:
    """One key of a suite file's section: its kind (how :func:`_read` checks it), what it means (one
    line) and its default. Kinds: ``text``, ``bool``, ``int`` (``min``..``max``), ``ints``/``texts`` (a
    list of them, or one), ``list``, ``mapping``, ``any`` (checked where it is used)."""

    kind: str
    doc: str
    default: object = None
    min: int = None
    max: int = None


#: The top level of a suite file.
SUITE_KEYS = {
    "name": Key("text", "the suite's name: letters, digits, '_', '-', '.' (default: the file name)"),
    "title": Key("text", "the main table's caption (default: the name)"),
    "paper": Key("text", "where the table comes from (free text)", ""),
    "description": Key("text", "what the suite compares (free text)", ""),
    "notes": Key("text", "free-text notes", ""),
    "seeds": Key("ints", "the seeds every row runs, distinct", [2020]),
    "protocol": Key("any", "eval_args, metrics, topk, valid_metric, history_mask; or a protocol file's name"),
    "protocols": Key("mapping", "several protocols, one suite each (parse_suites)"),
    "columns": Key("texts", "table columns, metric@k (default: every metric x topk)"),
    "metric_labels": Key("mapping", "column headers by metric@k (default: R@10, N@10, ...)", {}),
    "config": Key("mapping", "RecBole settings for every run", {}),
    "config_files": Key("texts", "YAML files for every run, relative to the suite file", []),
    "datasets": Key("list", "dataset names, or {name, label, config}"),
    "groups": Key("list", "the table's row groups, in order: {name, ours, models}"),
    "model_config": Key("mapping", "settings per model (every row of that model)", {}),
    "tables": Key("list", "extra tables: {name, caption, kind, rows, columns, datasets, reference}", []),
    "figures": Key("list", "ablation figures: {name, caption, rows, columns, datasets}", []),
    "main_table": Key("bool", "write the main table", True),
    "allow_protocol_override": Key("bool", "let config blocks set protocol keys (breaks comparability)", False),
    "decimals": Key("int", "decimals shown in the tables", 4, min=1, max=8),
    "reference": Key("text", "the row every other row is tested against (default: best baseline per column)"),
    "tune": Key("any", "tune every row first: {trials: N} and/or {budget_hours: H}, optional space: FILE"),
}
DATASET_KEYS = {
    "name": Key("text", "the RecBole dataset name"),
    "label": Key("text", "its column header (default: the name)"),
    "config": Key("mapping", "settings for this dataset's runs", {}),
}
GROUP_KEYS = {
    "name": Key("text", "the group's header row (default: Group N)"),
    "ours": Key("bool", "the group the Improv. row is computed for", False),
    "models": Key("list", "its rows: a model name or a row mapping", []),
}
ROW_KEYS = {
    "label": Key("text", "the row's name in the tables (default: the model)"),
    "model": Key("text", "the registered model class"),
    "config": Key("mapping", "the row's own settings (win over the suite's, not over the protocol)", {}),
    "config_files": Key("texts", "YAML files for this row, relative to the suite file", []),
    "datasets": Key("texts", "the datasets it runs on (default: all)"),
    "note": Key("text", "a footnote", ""),
    "tune": Key("any", "tune this row first (false: not even when the suite tunes)"),
    "on_trained": Key("any", "the row whose trained weights this row scores again (trains nothing)"),
    "checkpoints": Key("mapping", "setting -> the row whose best checkpoint it gets", {}),
}
TUNE_KEYS = {
    "trials": Key("any", "trials to run (an integer >= 1)"),
    "budget_hours": Key("any", "hours to tune (> 0); with trials, whichever ends first"),
    "space": Key("any", "a search space file, relative to the suite file (default: the model's)"),
}
TABLE_KEYS = {
    "name": Key("text", "its file name (default: tableN)"),
    "caption": Key("text", "its caption", ""),
    "kind": Key("text", "main (groups and Improv. row) or ablation", "ablation"),
    "rows": Key("texts", "row labels, in order (default: all)"),
    "columns": Key("texts", "metric@k columns (default: the suite's)"),
    "datasets": Key("texts", "datasets (default: all)"),
    "reference": Key("text", "its own reference row"),
}
FIGURE_KEYS = {k: TABLE_KEYS[k] for k in ("name", "caption", "rows", "columns", "datasets")}


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


def _read(obj, schema, where, sep="."):
    """``obj`` (a mapping) checked against ``schema`` (:class:`Key` s): unknown keys and wrong kinds
    are refused with the key's place (``where`` + ``sep`` + key); every key of the schema is in the
    result, absent ones with their default."""
    _check_keys(obj, set(schema), where)
    out = {}
    for key, spec in schema.items():
        w, value = f"{where}{sep}{key}", obj.get(key)
        if value is None:
            out[key] = copy.deepcopy(spec.default)
        elif spec.kind == "text":
            out[key] = str(value)
        elif spec.kind == "bool":
            if not isinstance(value, bool):
                _err(w, f"expected true or false, got {value!r}")
            out[key] = value
        elif spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not spec.min <= value <= spec.max:
                _err(w, f"expected an integer {spec.min}-{spec.max}, got {value!r}")
            out[key] = value
        elif spec.kind in ("ints", "texts"):
            out[key] = _as_list(value, w, int if spec.kind == "ints" else str)
        elif spec.kind == "list":
            out[key] = _as_list(value, w)
        elif spec.kind == "mapping":
            out[key] = _mapping(value, w)
        else:
            out[key] = value
    return out


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
    x = _read(x, TUNE_KEYS, where)
    trials, hours = x["trials"], x["budget_hours"]
    if trials is None and hours is None:
        _err(where, "give trials: N or budget_hours: H (or both; whichever ends first)")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        _err(f"{where}.trials", f"expected an integer >= 1, got {trials!r}")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0):
        _err(f"{where}.budget_hours", f"expected a number > 0, got {hours!r}")
    spec = {"trials": trials, "budget_hours": None if hours is None else float(hours), "space": None}
    if x["space"] is not None:
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
    """A :class:`Suite` from a suite file's mapping: each section read against its schema
    (:data:`SUITE_KEYS`, :data:`DATASET_KEYS`, :data:`GROUP_KEYS`, :data:`ROW_KEYS`, :data:`TABLE_KEYS`,
    :data:`FIGURE_KEYS`), the protocol checked by the Config's own checks, then what links the sections
    (columns the protocol computes, rows and datasets that exist, protocol keys left to the protocol)."""
    where = str(path)
    if raw is None:
        _err(where, "empty suite file")
    if "protocols" in raw:
        _err(where, "holds several protocols; parse it with parse_suites()")
    r = _read(raw, SUITE_KEYS, where, sep=": ")
    name = r["name"] or (Path(path).stem if path != "<dict>" else None)
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
        _err(where, f"'name' must be letters, digits, '_', '-', '.'; got {name!r}")
    base = Path(path).parent if path != "<dict>" else Path.cwd()
    protocol, produced = _read_protocol(r, where)

    columns = [_metric_key(c, f"{where}: columns") for c in r["columns"]] if r["columns"] else list(produced)
    _check_computed(columns, produced, f"{where}: columns")
    metric_labels = {_metric_key(k, f"{where}: metric_labels"): str(v) for k, v in r["metric_labels"].items()}
    seeds = r["seeds"]
    if not seeds or len(set(seeds)) != len(seeds):
        _err(f"{where}: seeds", f"expected a non-empty list of distinct integers, got {seeds!r}")
    if not r["datasets"]:
        _err(where, "missing 'datasets'")
    datasets = [_read_dataset(d, f"{where}: datasets[{i}]") for i, d in enumerate(r["datasets"])]
    ds_names = [d.name for d in datasets]
    if len(set(ds_names)) != len(ds_names):
        _err(f"{where}: datasets", f"duplicate dataset names in {ds_names}")

    allow_override = r["allow_protocol_override"]

    def check_protocol_free(cfg, w):
        clash = sorted(set(cfg) & set(PROTOCOL_KEYS) | ({"seed"} & set(cfg)))
        if clash and not allow_override:
            _err(w, f"overrides {clash}, which belong to the suite's protocol (every model must share the "
                    f"split and evaluator; seeds come from 'seeds'). Move them to 'protocol' or set "
                    f"allow_protocol_override: true")

    check_protocol_free(r["config"], f"{where}: config")
    for d in datasets:
        check_protocol_free(d.config, f"{where}: datasets[{d.name}].config")
    config_files = _files(r["config_files"], base, f"{where}: config_files")
    model_config = {m: _mapping(cfg, f"{where}: model_config.{m}") for m, cfg in r["model_config"].items()}
    for m, cfg in model_config.items():
        check_protocol_free(cfg, f"{where}: model_config.{m}")
    suite_tune = _tune_spec(raw.get("tune"), f"{where}: tune", base)

    def check_ds(dss, w):
        for dn in dss or []:
            if dn not in ds_names:
                _err(w, f"unknown dataset {dn!r}; suite datasets: {ds_names}")
        return dss

    if not r["groups"]:
        _err(where, "missing 'groups' (the table's model groups)")
    groups, labels = [], set()
    for gi, g in enumerate(r["groups"]):
        w = f"{where}: groups[{gi}]"
        g = _read(g, GROUP_KEYS, w)
        gname = g["name"] or f"Group {gi + 1}"
        variants = []
        for mi, m in enumerate(g["models"]):
            wm = f"{w}.models[{mi}]"
            v = _read_row({"model": m} if isinstance(m, str) else m, wm, gname, g["ours"], base, suite_tune)
            if v.label in labels:
                _err(wm, f"duplicate row label {v.label!r}; give variants distinct 'label's")
            labels.add(v.label)
            check_protocol_free(v.config, f"{wm}.config")
            check_ds(v.datasets, f"{wm}.datasets")
            variants.append(v)
        if not variants:
            _err(w, "a group needs at least one model")
        groups.append((gname, g["ours"], variants))
    _check_row_links(groups, where)
    row_order = [v.label for _, _, vs in groups for v in vs]

    def check_rows(rows, w):
        for row in rows or []:
            if row not in labels:
                _err(w, f"unknown row {row!r}; rows are model labels: {sorted(labels)}")
        return rows

    def check_cols(cols, w):
        if cols is None:
            return None
        out = [_metric_key(c, w) for c in cols]
        _check_computed(out, produced, w)
        return out

    def check_reference(label, w):
        if label is None:
            return ""
        if label not in row_order:
            _err(w, f"reference {label!r} is not a row label; rows: {row_order}")
        return str(label)

    tables, names = [], {"main", "efficiency"}
    for ti, t in enumerate(r["tables"]):
        w = f"{where}: tables[{ti}]"
        t = _read(t, TABLE_KEYS, w)
        tname = t["name"] or f"table{ti + 1}"
        if tname in names or not re.fullmatch(r"[A-Za-z0-9_.-]+", tname):
            _err(w, f"table name {tname!r} is taken or not a plain file name")
        names.add(tname)
        if t["kind"] not in ("main", "ablation"):
            _err(w, f"kind must be 'main' or 'ablation', got {t['kind']!r}")
        tables.append(TableSpec(tname, t["caption"], t["kind"], check_rows(t["rows"], f"{w}.rows"),
                                check_cols(t["columns"], f"{w}.columns"), check_ds(t["datasets"], f"{w}.datasets"),
                                reference=check_reference(t["reference"], f"{w}.reference")))
    figures = []
    for fi, f in enumerate(r["figures"]):
        w = f"{where}: figures[{fi}]"
        f = _read(f, FIGURE_KEYS, w)
        fname = f["name"] or f"figure{fi + 1}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", fname):
            _err(w, f"figure name {fname!r} is not a plain file name")
        figures.append(FigureSpec(fname, f["caption"], check_rows(f["rows"], f"{w}.rows"),
                                  check_cols(f["columns"], f"{w}.columns"), check_ds(f["datasets"], f"{w}.datasets")))

    return Suite(
        name=str(name), path=str(path), title=r["title"] or str(name), paper=r["paper"], description=r["description"],
        seeds=seeds, protocol=protocol, columns=columns, metric_labels=metric_labels, config=r["config"],
        config_files=config_files, datasets=datasets, groups=groups, model_config=model_config, tables=tables,
        figures=figures, main_table=r["main_table"], allow_protocol_override=allow_override, decimals=r["decimals"],
        notes=r["notes"], reference=check_reference(r["reference"], f"{where}: reference"), tune=suite_tune,
    )


def _read_protocol(r, where):
    """The suite's protocol (a mapping or a protocol file's name), checked by the Config's own checks,
    and the metric@k keys it computes."""
    if r["protocol"] is None:
        _err(where, "missing 'protocol' (eval_args, metrics, topk, valid_metric)")
    if isinstance(r["protocol"], str):  # a named protocol file, properties/protocol/<name>.yaml
        from recbole_llm.protocol import PROTOCOL_FILE_KEYS, load_protocol

        try:
            protocol = dict(load_protocol(r["protocol"]), protocol=r["protocol"])
        except ConfigError as exc:
            _err(f"{where}: protocol", str(exc))
        allowed = set(PROTOCOL_KEYS) | PROTOCOL_FILE_KEYS
    else:
        protocol = _mapping(r["protocol"], f"{where}: protocol")
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
    _config_checks(r["config"], f"{where}: config")
    # The Config's own checks, so that a suite and a run refuse the same settings in the same words.
    eval_step = {"eval_step": r["config"]["eval_step"]} if "eval_step" in r["config"] else {}
    _config_checks({**protocol, **eval_step}, f"{where}: protocol")
    protocol["metrics"] = canon = [METRICS[m.lower()] for m in _as_list(protocol["metrics"], "", str)]
    topk = _as_list(protocol.get("topk"), f"{where}: protocol.topk", int)
    if any(m.lower() in TOPK_METRICS for m in canon) and not topk:
        _err(f"{where}: protocol", "top-k metrics need 'topk', e.g. [10, 20]")
    if topk is not None:
        protocol["topk"] = topk
    produced = []
    for m in canon:
        produced += [f"{m.lower()}@{k}" for k in topk] if m.lower() in TOPK_METRICS else [m.lower()]
    return protocol, produced


def _check_computed(columns, produced, where):
    for c in columns:
        if c not in produced:
            _err(where, f"{c!r} is not computed by the protocol (metrics x topk = {produced})")


def _files(files, base, where):
    out = [str((base / f).resolve()) for f in files or []]
    for f in out:
        if not Path(f).is_file():
            _err(where, f"{f} does not exist")
    return out


def _read_dataset(d, where):
    d = _read({"name": d} if isinstance(d, str) else d, DATASET_KEYS, where)
    if not d["name"]:
        _err(where, "missing 'name' (the RecBole dataset name)")
    return DatasetSpec(d["name"], d["label"] or d["name"], d["config"])


def _read_row(m, where, group, ours, base, suite_tune):
    """One row (:class:`Variant`) of a group; links to other rows are checked by :func:`_check_row_links`."""
    m_raw = m
    m = _read(m, ROW_KEYS, where)
    on_trained = m["on_trained"]
    if on_trained is not None and (not isinstance(on_trained, str) or not on_trained):
        _err(f"{where}.on_trained", f"expected the label of a trained row, got {on_trained!r}")
    if on_trained and not m["label"]:
        _err(where, "an on_trained row needs its own 'label'")
    if not on_trained and (not m["model"] or not isinstance(m_raw.get("model"), str)):
        _err(where, "missing 'model' (the registered model class name)")
    tune = _tune_spec(m_raw["tune"], f"{where}.tune", base) if "tune" in m_raw else suite_tune
    if on_trained:
        if m_raw.get("tune"):
            _err(f"{where}.tune", "an on_trained row trains nothing; tune the row it rescores")
        tune = None
    for setting, dep in m["checkpoints"].items():
        if not isinstance(dep, str) or not dep:
            _err(f"{where}.checkpoints.{setting}", f"expected a row label, got {dep!r}")
        if setting in m["config"]:
            _err(f"{where}.checkpoints", f"{setting!r} is also set in the row's config; give it in one place")
    if on_trained and m["checkpoints"]:
        _err(f"{where}.checkpoints", "an on_trained row loads the trained row's weights; give checkpoints "
                                     "to the trained row")
    return Variant(label=m["label"] or m["model"], model=m["model"] or "", group=group, ours=ours, config=m["config"],
                   config_files=_files(m["config_files"], base, f"{where}.config_files"), datasets=m["datasets"],
                   note=m["note"], tune=tune, on_trained=on_trained or "", checkpoints=m["checkpoints"])


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
