"""Paper-style tables from a suite's plan and its results store: Markdown, LaTeX, CSV.

Layout (as in the papers): rows are models, grouped (graph-only / graph+text / LLM-based),
columns are dataset x metric; each cell is the mean and sample standard deviation over
seeds; per column the best mean is bold and the second best underlined (ties share the
mark; values are compared as displayed). The "Improv." row gives the best model of the
suite's ``ours`` group over the best baseline, in %, marked ``*``/``**`` when a paired
t-test over seeds finds the difference significant at 0.05/0.01 (see
:mod:`recbole_llm.benchmark.stats`). Models that are not registered, cannot run under the
protocol, or have not finished are listed as such, never dropped.

Against a reference row (the suite's or table's ``reference``, else per column the best row
outside the ``ours`` group), every other row gets a paired Wilcoxon signed-rank test over users
(on the per-user test metrics the store keeps) and a paired t-test over seeds, each
Holm-corrected across the rows of the column (:func:`reference_tests`).

Each table is built once as a :class:`TableFrame` (a pandas DataFrame of the cells plus the title,
caption and notes) and rendered by pandas: Markdown written from the DataFrame, LaTeX through
``DataFrame.style`` (``Styler.to_latex``), CSV through ``DataFrame.to_csv``.

Every caption names the scale the runs used (``cpu``: the models' defaults; ``paper``: their
``*-paper.yaml``) and the LLM backbone of each LLM row (:func:`scale_caption`). Every table has a
"Tuning" column with each row's tuning budget (trials and CPU- or GPU-seconds of a ``tune:`` row, "-"
for an untuned row), and the caption warns when two rows' budgets differ by more than 2x
(:func:`budget_warning`).
"""

import csv
import io
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from recbole_llm.benchmark import stats
from recbole_llm.benchmark.suite import lower_is_better

DASH = "–"


# -- data --------------------------------------------------------------------------------
@dataclass
class Cell:
    status: str  # ok | partial | none
    per_seed: dict = field(default_factory=dict)  # seed -> value
    n_expected: int = 0
    mean: float = float("nan")
    std: float = float("nan")
    best: bool = False
    second: bool = False
    mark: str = ""  # significance stars on this cell
    keys: dict = field(default_factory=dict)  # seed -> run key (per-user metrics in the store)

    @property
    def n(self):
        return len(self.per_seed)

    @property
    def has_value(self):
        return self.n > 0 and not math.isnan(self.mean)


@dataclass
class Row:
    label: str
    model: str
    group: str
    ours: bool
    status: str  # ok | partial | pending | failed | missing | no-data | incompatible | error
    reason: str = ""
    note: str = ""
    cells: dict = field(default_factory=dict)  # (dataset, metric) -> Cell
    budget: dict = None  # tuning spent over the table's datasets (see tuning_budget); None = untuned


@dataclass
class Table:
    name: str
    caption: str
    kind: str
    suite: str
    datasets: list  # [(name, label)]
    metrics: list  # metric keys
    metric_labels: dict
    groups: list  # [(group name, ours, [Row])]
    decimals: int = 4
    improv: dict = None  # column -> (pct or None, stars)
    significance: list = field(default_factory=list)
    footnotes: list = field(default_factory=list)
    reference: str = ""  # the row label given as reference ("" = best baseline per column)
    reference_tests: list = field(default_factory=list)  # see reference_tests()
    caption_notes: list = field(default_factory=list)  # scale, backbones, budget warning (full_caption)
    budget_column: bool = True  # the "Tuning" column (each row's tuning budget; "-" = untuned)

    @property
    def full_caption(self):
        return " ".join([self.caption.rstrip(".") + "."] + self.caption_notes)

    @property
    def columns(self):
        return [(d, m) for d, _ in self.datasets for m in self.metrics]

    @property
    def rows(self):
        return [r for _, _, rows in self.groups for r in rows]

    def dataset_label(self, name):
        return dict(self.datasets)[name]


# -- collecting results -----------------------------------------------------------------
def _row_status(runs, rows_by_key):
    """Status of a row over its runs. Runs that cannot happen (missing model, no data,
    incompatible, config error) decide only when no run of the row is ready; otherwise the
    ready runs' store states decide."""
    ready = [r for r in runs if r.status == "ready"]
    if not ready:
        order = ("missing", "error", "incompatible", "no-data")
        s = min((r for r in runs), key=lambda r: order.index(r.status) if r.status in order else 99)
        return s.status, s.reason
    db = [rows_by_key.get(r.key) for r in ready]
    st = [row["status"] if row else "pending" for row in db]
    if all(x == "finished" for x in st):
        return "ok", ""
    if any(x == "finished" for x in st):
        return "partial", f"{st.count('finished')} of {len(st)} runnable runs finished"
    if any(x == "failed" for x in st):
        err = next((row.get("error") or "" for row in db if row and row["status"] == "failed"), "")
        return "failed", err.splitlines()[0] if err else "failed"
    if any(x == "running" for x in st):
        return "pending", "running"
    return "pending", "not run yet"


def collect(plan, store, table_spec=None):
    """Build a :class:`Table` for ``table_spec`` (default: the main table)."""
    suite = plan.suite
    if table_spec is None:
        table_spec = suite.all_tables()[0] if suite.main_table else None
    kind = getattr(table_spec, "kind", "main")
    metrics = list(getattr(table_spec, "columns", None) or suite.columns)
    ds_names = getattr(table_spec, "datasets", None) or [d.name for d in suite.datasets]
    datasets = [(d.name, d.label) for d in suite.datasets if d.name in ds_names]
    labels = getattr(table_spec, "rows", None)

    keys = [r.key for r in plan.runs if r.key]
    rows_by_key = {row["key"]: row for row in store.rows(keys=keys)} if keys else {}
    tunings = list(getattr(plan, "tunings", {}) or {})
    rows_by_tuning = {row["key"]: row for row in store.rows(keys=tunings)} if tunings else {}
    by_cell = plan.by_cell()

    groups = []
    for gname, ours, variants in suite.groups:
        rows = []
        for v in variants:
            if labels is not None and v.label not in labels:
                continue
            vruns = [r for (lab, _), rs in by_cell.items() if lab == v.label for r in rs
                     if r.dataset in ds_names]
            status, reason = _row_status(vruns, rows_by_key) if vruns else ("missing", "no runs planned")
            row = Row(label=v.label, model=v.model, group=gname, ours=ours, status=status, reason=reason, note=v.note)
            for ds, _ in datasets:
                cruns = by_cell.get((v.label, ds), [])
                for m in metrics:
                    cell = Cell(status="none", n_expected=len(cruns))
                    for r in cruns:
                        db = rows_by_key.get(r.key) if r.key else None
                        if db and db["status"] == "finished":
                            val = (db.get("test") or {}).get(m)
                            if isinstance(val, (int, float)) and not math.isnan(val):
                                cell.per_seed[r.seed] = float(val)
                                cell.keys[r.seed] = r.key
                    if cell.n:
                        cell.mean, cell.std = stats.mean_std(cell.per_seed.values())
                        cell.status = "ok" if cell.n == cell.n_expected else "partial"
                    row.cells[(ds, m)] = cell
            row.budget = tuning_budget(plan, v.label, ds_names, rows_by_tuning)
            rows.append(row)
        if rows:
            groups.append((gname, ours, rows))
    if labels is not None and kind == "ablation":
        # Ablation tables follow the order given in the table spec, in one block.
        flat = {r.label: r for _, _, rs in groups for r in rs}
        groups = [("", False, [flat[lab] for lab in labels if lab in flat])]

    table = Table(name=table_spec.name if table_spec else "main",
                  caption=(getattr(table_spec, "caption", "") or suite.title), kind=kind, suite=suite.name,
                  datasets=datasets, metrics=metrics,
                  metric_labels={m: suite.metric_label(m) for m in metrics}, groups=groups,
                  decimals=suite.decimals,
                  reference=getattr(table_spec, "reference", "") or getattr(suite, "reference", ""))
    table.budget_column = True  # every table shows each row's tuning budget ("-": untuned)
    table.caption_notes = [scale_caption(plan, [r.label for r in table.rows], ds_names)]
    warning = budget_warning(table)
    if warning:
        table.caption_notes.append(warning)
    mark_best(table)
    if kind == "main":
        compute_improvement(table)
    reference_tests(table, store)
    table.footnotes = _footnotes(table, plan)
    return table


# -- scale, backbones, tuning budgets ----------------------------------------------------
EMBEDDED_LLM = "SmolLM2-135M-Instruct (embedded)"


def backbone_name(llm_path):
    """How a caption names an LLM: the embedded default, or the configured path / hub id."""
    return EMBEDDED_LLM if not llm_path else str(llm_path)


def scale_caption(plan, labels, datasets=None):
    """One caption sentence: the scale, which rows load a paper config, and each LLM row's backbone
    (``llm_path`` of its resolved config; rows without one use no LLM)."""
    scale = getattr(plan, "scale", "cpu")
    runs = [r for r in plan.runs if r.label in labels and (datasets is None or r.dataset in datasets)]
    if scale == "cpu":
        text = "Scale: cpu (every row runs its CPU defaults, properties/model/<Model>.yaml)"
    else:
        paper = sorted({r.label for r in runs if r.paper_config}, key=labels.index)
        rest = [lab for lab in labels if lab not in paper]
        text = f"Scale: {scale} (" + (f"{', '.join(paper)} run their *-paper.yaml" if paper else "no row has a paper config")
        text += (f"; {', '.join(rest)} their defaults)" if rest else ")")
    backbones, unresolved = {}, []
    for label in labels:
        configs = [r.resolved for r in runs if r.label == label and r.resolved]
        configs += [t.identity.get("config") or {} for t in getattr(plan, "tunings", {}).values()
                    if t.label == label and (datasets is None or t.dataset in datasets)]
        if not configs:
            unresolved.append(label)
        names = sorted({backbone_name(c.get("llm_path")) for c in configs if "llm_path" in c})
        if names:
            backbones.setdefault(" / ".join(names), []).append(label)
    if backbones:
        text += "; LLM backbone: " + "; ".join(f"{name} for {', '.join(rows)}" for name, rows in backbones.items())
        if any(lab not in unresolved and not any(lab in rows for rows in backbones.values()) for lab in labels):
            text += "; no LLM in the other rows"
    elif len(unresolved) < len(labels):
        text += "; no LLM in the rows that resolved" if unresolved else "; no LLM row"
    if unresolved:
        text += f"; backbone unknown (no run resolved: no data, not registered or a config error): {', '.join(unresolved)}"
    return text + "."


def tuning_budget(plan, label, datasets, rows_by_tuning):
    """What tuning row ``label`` cost over ``datasets``: ``None`` (untuned) or ``{"trials", "seconds",
    "unit" ("CPU-s"/"GPU-s"), "pending" (tunings not finished), "spec"}``."""
    tasks = [t for t in getattr(plan, "tunings", {}).values() if t.label == label and t.dataset in datasets]
    if not tasks:
        return None
    out = {"trials": 0, "seconds": 0.0, "units": set(), "pending": 0, "spec": tasks[0].spec}
    for t in tasks:
        row = rows_by_tuning.get(t.key)
        rec = ((row or {}).get("extra") or {}).get("tune") if row and row.get("status") == "finished" else None
        if rec is None:
            out["pending"] += 1
            continue
        out["trials"] += int(rec.get("trials") or 0)
        out["seconds"] += float(rec.get("seconds") or 0.0)
        out["units"].add("GPU-s" if rec.get("device") == "cuda" else "CPU-s")
    units = out.pop("units")
    out["unit"] = "/".join(sorted(units)) or "CPU-s"
    return out


def budget_text(budget):
    if budget is None:
        return "-"
    if budget["pending"] and not budget["trials"]:
        return "tuning pending"
    secs = budget["seconds"]
    amount = f"{secs / 1000:.1f}k" if secs >= 10000 else f"{secs:.0f}"
    return f"{budget['trials']} trials, {amount} {budget['unit']}" + (" (partial)" if budget["pending"] else "")


def budget_warning(table):
    """The caption's warning when two rows' tuning budgets differ by more than 2x in seconds spent or in
    trials run (an untuned row spent 0 of both), naming the dearest and the cheapest row; "" otherwise."""
    rows = [r for r in table.rows if r.status not in ("missing", "no-data", "incompatible", "error")]
    for field_name in ("seconds", "trials"):
        spent = [(r, 0.0 if r.budget is None else float(r.budget[field_name])) for r in rows]
        if len(spent) < 2:
            return ""
        low, high = min(spent, key=lambda x: x[1]), max(spent, key=lambda x: x[1])
        if high[1] > 0 and high[1] > 2 * low[1]:
            untuned = [r.label for r, _ in spent if r.budget is None]
            text = (f"Warning: tuning budgets differ by more than 2x ({'time' if field_name == 'seconds' else 'trials'}): "
                    f"{high[0].label} {budget_text(high[0].budget)} vs {low[0].label} {budget_text(low[0].budget)}")
            if len(untuned) > 1:
                text += f" (untuned: {', '.join(untuned)})"
            return text + "."
    return ""  # nothing tuned yet, or within 2x


def mark_best(table):
    """Bold (best) and underline (second best) per column, comparing displayed values."""
    for col in table.columns:
        lower = lower_is_better(col[1])
        vals = [(round(r.cells[col].mean, table.decimals), r) for r in table.rows
                if col in r.cells and r.cells[col].has_value]
        distinct = sorted({v for v, _ in vals}, reverse=not lower)
        for v, r in vals:
            r.cells[col].best = bool(distinct) and v == distinct[0]
            r.cells[col].second = len(distinct) > 1 and v == distinct[1]


def _best_row(rows, col):
    cands = [r for r in rows if col in r.cells and r.cells[col].has_value]
    if not cands:
        return None
    lower = lower_is_better(col[1])
    return (min if lower else max)(cands, key=lambda r: r.cells[col].mean)


def compute_improvement(table):
    """Fill ``table.improv`` and ``table.significance`` (see module docstring)."""
    has_ours = any(ours for _, ours, _ in table.groups)
    table.improv = {} if has_ours else None
    ours_rows = [r for r in table.rows if r.ours]
    base_rows = [r for r in table.rows if not r.ours]
    for col in table.columns:
        lower = lower_is_better(col[1])
        o, b = _best_row(ours_rows, col), _best_row(base_rows, col)
        if has_ours:
            if o is None or b is None:
                table.improv[col] = (None, "")
            else:
                om, bm = o.cells[col].mean, b.cells[col].mean
                pct = ((bm - om) if lower else (om - bm)) / abs(bm) * 100 if bm else float("nan")
                test = stats.paired_ttest(o.cells[col].per_seed, b.cells[col].per_seed)
                table.improv[col] = (pct, stats.stars(test["p"]))
                table.significance.append({"column": col, "a": o.label, "b": b.label, "kind": "best ours vs best baseline",
                                           "marked": "Improv.", **test})
                continue
        # No result for our group: test the best row against the runner-up, mark the best cell.
        ranked = sorted([r for r in table.rows if col in r.cells and r.cells[col].has_value],
                        key=lambda r: r.cells[col].mean, reverse=not lower)
        if len(ranked) >= 2:
            a, c = ranked[0], ranked[1]
            test = stats.paired_ttest(a.cells[col].per_seed, c.cells[col].per_seed)
            if not lower and a.cells[col].mean < c.cells[col].mean:
                continue
            a.cells[col].mark = stats.stars(test["p"])
            table.significance.append({"column": col, "a": a.label, "b": c.label, "kind": "best vs runner-up",
                                       "marked": "best cell", **test})


def _reference_row(table, col):
    rows = [r for r in table.rows if col in r.cells and r.cells[col].has_value]
    if table.reference:
        return next((r for r in rows if r.label == table.reference), None)
    return _best_row([r for r in rows if not r.ours] or rows, col)


def _user_means(cell, seeds, metric, store, cache):
    """user token -> the user's test ``metric`` averaged over ``seeds`` (users present in all)."""
    sums, counts = {}, {}
    for seed in seeds:
        key = cell.keys.get(seed)
        if key not in cache:
            cache[key] = store.per_user(key) if key else None
        per_user = cache[key]
        if per_user is None or metric not in per_user["metrics"]:
            return None
        for user, value in zip(per_user["users"], per_user["metrics"][metric]):
            sums[user] = sums.get(user, 0.0) + value
            counts[user] = counts.get(user, 0) + 1
    return {u: sums[u] / len(seeds) for u in sums if counts[u] == len(seeds)}


def reference_tests(table, store):
    """Fill ``table.reference_tests``: per column, each row against the reference row with the
    paired Wilcoxon signed-rank test over users (each user's metric averaged over the seeds both
    rows finished) and the paired t-test over seeds; both Holm-corrected across the column's rows."""
    table.reference_tests = []
    cache = {}
    for col in table.columns:
        ref = _reference_row(table, col)
        if ref is None:
            continue
        entries = []
        for row in table.rows:
            if row is ref or col not in row.cells or not row.cells[col].has_value:
                continue
            a, b = row.cells[col], ref.cells[col]
            seeds = sorted(set(a.per_seed) & set(b.per_seed))
            entry = {"column": col, "row": row.label, "reference": ref.label, "seeds": len(seeds),
                     "mean_diff": float("nan"), "users": 0, "p_users": float("nan"), "p_seeds": float("nan"),
                     "note": ""}
            ttest = stats.paired_ttest(a.per_seed, b.per_seed)
            entry.update(mean_diff=ttest["mean_diff"], p_seeds=ttest["p"])
            ua = _user_means(a, seeds, col[1], store, cache) if seeds else None
            ub = _user_means(b, seeds, col[1], store, cache) if seeds else None
            if ua is None or ub is None:
                entry["note"] = "no per-user metrics stored"
            else:
                w = stats.wilcoxon_users(ua, ub)
                entry.update(users=w["n"], p_users=w["p"], note=w["note"])
            entries.append(entry)
        for name in ("p_users", "p_seeds"):
            for entry, adjusted in zip(entries, stats.holm([e[name] for e in entries])):
                entry[name + "_holm"] = adjusted
        table.reference_tests += entries


def reference_markdown(table):
    """The reference tests of ``table`` as a Markdown table ("" if there are none)."""
    if not table.reference_tests:
        return ""
    d = table.decimals
    out = ["| Column | Row | vs reference | Mean diff | Users | p over users (Holm) | Seeds | p over seeds (Holm) |",
           "|:---|:---|:---|---:|---:|---:|---:|---:|"]

    def p_text(raw, adjusted):
        if math.isnan(raw):
            return "n/a"
        return f"{raw:.3g} ({adjusted:.3g}){stats.stars(adjusted).replace('*', chr(92) + '*')}"

    for e in table.reference_tests:
        ds, m = e["column"]
        col = f"{table.dataset_label(ds)} {table.metric_labels[m]}"
        md = "n/a" if math.isnan(e["mean_diff"]) else f"{e['mean_diff']:+.{d}f}"
        note = f" ({e['note']})" if e.get("note") else ""
        out.append(f"| {col} | {_md_escape(e['row'])} | {_md_escape(e['reference'])} | {md} | {e['users']} | "
                   f"{p_text(e['p_users'], e['p_users_holm'])}{note} | {e['seeds']} | "
                   f"{p_text(e['p_seeds'], e['p_seeds_holm'])} |")
    return "\n".join(out) + "\n"


def reference_note(table):
    """The caption line saying which tests the reference table gives."""
    ref = f"the row {table.reference}" if table.reference else "the best row outside the 'ours' group (per column)"
    return (f"Against {ref}: {stats.USER_TEST_NAME} (each user's test metric averaged over the seeds both rows "
            f"finished) and {stats.TEST_NAME}; p-values Holm-corrected across the rows of each column; "
            "* / ** on the corrected p < 0.05 / 0.01.")


def describe_protocol(suite):
    from recbole_llm.protocol import describe

    name = suite.protocol.get("protocol") or f"of suite {suite.name}"
    return describe(suite.protocol, name)


def _footnotes(table, plan):
    suite = plan.suite
    notes = []
    seeds = sorted({r.seed for r in plan.runs})
    if table.kind in ("main", "ablation"):
        line = describe_protocol(suite)
        notes.append(f"{line[0].upper()}{line[1:]}. Test-set metrics, mean ± sample std over "
                     f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}).")
        notes.append("Bold: best; underlined: second best (per column, as displayed).")
    if table.budget_column:
        notes.append(f"Tuning: trials run and seconds spent tuning the row on validation before its seeds ran with "
                     f"the best configuration (recbole-llm tune: the model's search space, TPE, median pruning, "
                     f"seed {suite.seeds[0]}), summed over the table's datasets; CPU-s: CPU time of the trials, "
                     "GPU-s: their wall time on the GPU; -: untuned (the model's defaults).")
    if table.improv is not None:
        ours = "', '".join(g for g, o, _ in table.groups if o)
        note = (f"Improv.: best model of the '{ours}' group over the best baseline (best model outside that "
                f"group), in %. ")
        if all(pct is None for pct, _ in table.improv.values()):
            note += f"No result of the '{ours}' group yet, hence no improvement. "
        notes.append(note + _sig_note())
    if any(s["marked"] == "best cell" for s in table.significance):
        notes.append("* / ** on a best value (columns without an Improv. value): better than the runner-up at "
                     "p < 0.05 / 0.01 " + _sig_suffix())
    if table.reference_tests:
        notes.append(reference_note(table) + f" Per-row p-values: {table.name}_significance.md.")
    shown = {d for d, _ in table.datasets}
    for ds in sorted(shown):
        druns = [r for r in plan.runs if r.dataset == ds]
        nodata = [r for r in druns if r.status == "no-data"]
        if nodata:
            notes.append(f"No data for {ds}: {nodata[0].reason.split(': ', 1)[-1]}.")
    missing = [f"{r.label}" + (f" (model {r.model})" if r.model != r.label else "") for r in table.rows
               if r.status == "missing"]
    if missing:
        notes.append("Missing, i.e. not registered in this installation (no plugin provides the model): "
                     + ", ".join(missing) + ".")
    for r in table.rows:
        if r.status in ("incompatible", "error", "failed", "pending", "partial"):
            word = _status_word(r.status)
            notes.append(f"{r.label}: {word}" + (f" ({r.reason})" if r.reason and r.reason != word else "") + ".")
        other = sorted({(x.dataset, x.status, x.reason) for x in plan.runs
                        if x.label == r.label and x.dataset in shown and x.status in ("incompatible", "error")
                        and x.status != r.status})
        for ds, st, why in other:
            notes.append(f"{r.label} on {ds}: {_status_word(st)} ({why}).")
    return notes


def _sig_suffix():
    return (f"({stats.TEST_NAME}; runs with the same seed share the data split). With few seeds the "
            "test has little power; no correction for multiple columns.")


def _sig_note():
    return "* / **: p < 0.05 / 0.01 " + _sig_suffix()


def _status_word(status):
    return {"missing": "missing, not registered in this installation", "no-data": "no data",
            "incompatible": "not applicable under this protocol",
            "error": "config error", "failed": "failed", "pending": "not run yet",
            "partial": "incomplete"}.get(status, status)


# -- formatting --------------------------------------------------------------------------
def _fmt(x, d):
    return f"{x:.{d}f}"


def cell_text(cell, d, style, show_std=True):
    if not cell.has_value:
        return DASH
    pm = {"md": " ± ", "tex": r"$\pm$", "plain": " ± "}[style]
    txt = _fmt(cell.mean, d)
    if show_std and cell.n > 1:
        txt += pm + _fmt(cell.std, d)
    if cell.status == "partial":
        txt += f" ({cell.n}/{cell.n_expected})"
    if style == "md":
        if cell.best:
            txt = f"**{txt}**"
        elif cell.second:
            txt = f"<ins>{txt}</ins>"
        if cell.mark:
            txt += cell.mark.replace("*", r"\*")
    elif style == "tex":
        if cell.best:
            txt = r"\textbf{" + txt + "}"
        elif cell.second:
            txt = r"\underline{" + txt + "}"
        if cell.mark:
            txt += "$^{" + cell.mark + "}$"
    return txt


def _row_label(row):
    suffix = {"missing": " (missing)", "no-data": " (no data)", "incompatible": " (n/a)", "error": " (config error)",
              "failed": " (failed)", "pending": " (not run)"}.get(row.status, "")
    return row.label + suffix


def _improv_text(val, style):
    pct, st = val
    if pct is None or (isinstance(pct, float) and math.isnan(pct)):
        return DASH
    if style == "tex":
        return f"{pct:.2f}\\%" + ("$^{" + st + "}$" if st else "")
    if style == "md":
        return f"{pct:.2f}%" + st.replace("*", r"\*")
    return f"{pct:.2f}%{st}"


def _md_escape(s):
    return str(s).replace("|", r"\|")


# -- one table object, rendered by pandas ------------------------------------------------
@dataclass
class TableFrame:
    """One table as pandas data, built once (:func:`table_frame`, :func:`efficiency_frame`) and
    rendered by :func:`render_markdown`, :func:`render_latex` and :func:`render_csv`. ``cells``: one
    row per table row (index ``group``, ``row``; group ``""`` for a row outside the groups, the
    Improv. row) and one column per (``dataset`` label, header) pair (dataset ``""`` for the Tuning
    column), holding each cell's text per style (``{"md": ..., "tex": ...}``); ``csv``: the same table
    with numbers in full, one line per row."""

    cells: pd.DataFrame
    csv: pd.DataFrame
    title: str  # the Markdown title line (bold)
    caption: str  # the LaTeX caption (the title and the caption notes)
    label: str  # the LaTeX label
    title_after: str = ""  # after the bold title (the efficiency table's dataset)
    caption_notes: str = ""  # below the Markdown title; already in the LaTeX caption
    notes: list = field(default_factory=list)  # footnotes
    show_groups: bool = True  # a header row per group
    align: str = "c"  # alignment of the value columns


def _frame_columns(datasets, headers, extra=()):
    return pd.MultiIndex.from_tuples([(ds, h) for ds in datasets for h in headers] + [("", h) for h in extra],
                                     names=["dataset", "column"])


def _frame_index(index):
    return pd.MultiIndex.from_arrays([[g for g, _ in index], [r for _, r in index]], names=["group", "row"])


def table_frame(table, show_std=True):
    """The :class:`TableFrame` of a results :class:`Table`."""
    d = table.decimals
    index, data, records = [], [], []
    multi = len(table.datasets) > 1
    title = table.caption + ("" if multi else f" ({table.datasets[0][1]})")
    for gname, _, rows in table.groups:
        for r in rows:
            texts = [{style: cell_text(r.cells[c], d, style, show_std) for style in ("md", "tex")}
                     for c in table.columns]
            if table.budget_column:
                texts.append({style: budget_text(r.budget) for style in ("md", "tex")})
            index.append((gname, _row_label(r)))
            data.append(texts)
            line = [r.group, r.label, r.status]
            for c in table.columns:
                cell = r.cells[c]
                mark = "best" if cell.best else "second" if cell.second else ""
                line += [_num(cell.mean), _num(cell.std), cell.n, (mark + cell.mark).strip()]
            if table.budget_column:
                b = r.budget
                line += ["", "", ""] if b is None else [b["trials"], _num(b["seconds"]), b["unit"]]
            records.append(line)
    if table.improv is not None:
        index.append(("", "Improv."))
        data.append([{style: _improv_text(table.improv[c], style) for style in ("md", "tex")} for c in table.columns]
                    + ([{"md": "", "tex": ""}] if table.budget_column else []))
        line = ["", "Improv. (%)", ""]
        for c in table.columns:
            pct, st = table.improv[c]
            line += [_num(pct) if pct is not None else "", "", "", st]
        records.append(line + (["", "", ""] if table.budget_column else []))
    head = ["group", "model", "status"]
    for ds, m in table.columns:
        head += [f"{ds}|{m}|{part}" for part in ("mean", "std", "n", "mark")]
    extra = ["Tuning"] if table.budget_column else []
    if table.budget_column:
        head += ["tuning_trials", "tuning_seconds", "tuning_unit"]
    columns = _frame_columns([lab for _, lab in table.datasets], [table.metric_labels[m] for m in table.metrics], extra)
    return TableFrame(
        cells=pd.DataFrame(data, index=_frame_index(index), columns=columns),
        csv=pd.DataFrame(records, columns=head, dtype=object), title=title, caption=table.full_caption,
        label=f"tab:{table.suite}-{table.name}",
        caption_notes=" ".join(table.caption_notes), notes=list(table.footnotes),
        show_groups=len(table.groups) > 1 or table.kind == "main")


def render_markdown(frame, title=True):
    """A pipe table of ``frame`` (what ``DataFrame.to_markdown`` would give, without its ``tabulate``
    dependency), with its title, group header rows and footnotes."""
    cells = frame.cells.map(lambda t: t["md"])
    multi = len({ds for ds, _ in cells.columns if ds}) > 1
    head = ["Model"] + [f"{ds}<br>{h}" if multi and ds else h for ds, h in cells.columns]
    out = []
    if title:
        out.append(f"**{_md_escape(frame.title)}**{_md_escape(frame.title_after)}\n")
        if frame.caption_notes:
            out.append(_md_escape(frame.caption_notes).replace("*", r"\*") + "\n")
    out.append("| " + " | ".join(_md_escape(h) for h in head) + " |")
    out.append("|" + "|".join([":---"] + [{"c": ":---:", "r": "---:"}[frame.align]] * (len(head) - 1)) + "|")
    shown = None
    for (group, row), texts in zip(cells.index, cells.itertuples(index=False)):
        if group and frame.show_groups and group != shown:
            out.append("| " + " | ".join([f"*{_md_escape(group)}*"] + [""] * (len(head) - 1)) + " |")
        shown = group
        out.append("| " + " | ".join([_md_escape(row), *texts]) + " |")
    if frame.notes:
        out.append("")
        out += ["- " + n.replace("*", r"\*") for n in frame.notes]
    return "\n".join(out) + "\n"


def render_latex(frame):
    """``frame`` as a booktabs LaTeX table through pandas' ``Styler.to_latex`` (multi-column dataset
    headers, italic group rows, rules between groups, footnotes below the tabular). Wider than 9
    columns: ``table*``, scaled to the line width."""
    cells = frame.cells.map(lambda t: t["tex"].replace(DASH, "--"))
    rows = []
    for (group, row) in cells.index:
        if group and frame.show_groups and (not rows or rows[-1][0] != group):
            rows.append((group, "\\textit{" + tex_escape(group) + "}", True))
        rows.append((group, tex_escape(row), False))
    body = []
    it = cells.itertuples(index=False)
    for _, _, is_group in rows:
        body.append([""] * cells.shape[1] if is_group else list(next(it)))
    datasets = [ds for ds, _ in cells.columns if ds]
    columns = pd.MultiIndex.from_tuples([(tex_escape(ds), tex_escape(h)) for ds, h in cells.columns],
                                        names=["Dataset", "Model"])
    shown = pd.DataFrame(body, index=[label for _, label, _ in rows], columns=columns)
    spans = list(dict.fromkeys(datasets))
    width = {ds: datasets.count(ds) for ds in spans}
    column_format = ("l" + "".join(" " + frame.align * width[ds] for ds in spans)
                     + " r" * (cells.shape[1] - len(datasets)))
    wide = 1 + cells.shape[1] > 9
    tex = shown.style.to_latex(column_format=column_format, hrules=True, multicol_align="c", position="t",
                               position_float="centering", caption=tex_escape(frame.caption),
                               label=frame.label, environment="table*" if wide else "table")
    lines = tex.splitlines()
    body_start = lines.index("\\midrule") + 1  # Styler writes one line per row after the header rule
    for i in reversed(range(1, len(rows))):  # a rule between groups and before the Improv. row
        if rows[i][0] != rows[i - 1][0]:
            lines.insert(body_start + i, "\\midrule")
    rules, first = [], 2
    for ds in spans:
        rules.append(f"\\cmidrule(lr){{{first}-{first + width[ds] - 1}}}")
        first += width[ds]
    head = next(i for i, line in enumerate(lines) if line.startswith("Dataset &"))
    lines.insert(head + 1, " ".join(rules))
    if wide:
        start = next(i for i, line in enumerate(lines) if line.startswith("\\begin{tabular}"))
        lines.insert(start, "\\resizebox{\\linewidth}{!}{%")
        end = next(i for i, line in enumerate(lines) if line == "\\end{tabular}")
        lines[end] += "}"
    if frame.notes:
        notes = " ".join(tex_escape(n) for n in frame.notes)
        lines[-1:-1] = ["\\par\\smallskip", "{\\footnotesize " + notes + "\\par}"]
    head = "% requires \\usepackage{booktabs}" + (" and \\usepackage{graphicx}" if wide else "")
    return "\n".join([head] + lines) + "\n"


def render_csv(frame):
    """``frame.csv`` through ``DataFrame.to_csv`` (the csv module's dialect: CRLF line ends)."""
    return frame.csv.to_csv(index=False, lineterminator="\r\n")


def to_markdown(table, show_std=True, title=True):
    return render_markdown(table_frame(table, show_std), title=title)


def significance_markdown(table):
    if not table.significance:
        return ""
    d = table.decimals
    out = ["| Column | Compared | Seeds | Mean diff | t | p | Marked |", "|:---|:---|:---:|---:|---:|---:|:---|"]
    for s in table.significance:
        ds, m = s["column"]
        col = f"{table.dataset_label(ds)} {table.metric_labels[m]}"
        t = "n/a" if math.isnan(s["t"]) else f"{s['t']:.2f}"
        p = "n/a" if math.isnan(s["p"]) else f"{s['p']:.3g}"
        md = "n/a" if math.isnan(s["mean_diff"]) else f"{s['mean_diff']:+.{d}f}"
        note = f" ({s['note']})" if s.get("note") else ""
        out.append(f"| {col} | {_md_escape(s['a'])} vs {_md_escape(s['b'])} | {s['n']} | {md} | {t} | {p}{note} | "
                   f"{s['marked']}{' ' + stats.stars(s['p']).replace('*', chr(92) + '*') if stats.stars(s['p']) else ''} |")
    return "\n".join(out) + "\n"


_TEX_SPECIAL = {"<": r"$<$", ">": r"$>$", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(s):
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(s)).replace("±", r"$\pm$").replace("–", "--")


def to_latex(table, show_std=True):
    return render_latex(table_frame(table, show_std))


def to_csv(table):
    return render_csv(table_frame(table))


def _num(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(float(x))


# -- efficiency ------------------------------------------------------------------------
EFFICIENCY_FIELDS = [("s_per_epoch", "s/epoch"), ("epochs", "epochs"), ("run_s", "run time (s)"),
                     ("peak_mb", "peak RSS (MB)"), ("trainable", "trainable params"), ("total", "total params")]


def collect_efficiency(plan, store):
    """{label: {dataset: {field: value}}} averaged over finished seeds, plus row order."""
    keys = [r.key for r in plan.runs if r.key]
    rows_by_key = {row["key"]: row for row in store.rows(keys=keys)} if keys else {}
    out = {}
    for (label, ds), runs in plan.by_cell().items():
        done = [rows_by_key[r.key] for r in runs if r.key and rows_by_key.get(r.key, {}).get("status") == "finished"]
        if not done:
            continue
        epochs = [t for row in done for t in (row.get("epoch_times") or [])]
        run_s = [row["wall_time_s"] for row in done if row.get("wall_time_s") is not None]
        peak = [row["peak_rss_mb"] for row in done if row.get("peak_rss_mb") is not None]
        n_ep = [len(row.get("epoch_times") or []) for row in done]
        out.setdefault(label, {})[ds] = {
            "s_per_epoch": sum(epochs) / len(epochs) if epochs else None,
            "epochs": sum(n_ep) / len(n_ep) if n_ep else None,
            "run_s": sum(run_s) / len(run_s) if run_s else None,
            "peak_mb": max(peak) if peak else None,
            "trainable": done[0].get("trainable_params"),
            "total": done[0].get("total_params"),
            "n": len(done),
        }
    return out


def _human(n):
    if n is None:
        return DASH
    n = float(n)
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{int(n)}"


def _eff_text(field_name, v):
    if v is None:
        return DASH
    if field_name in ("trainable", "total"):
        return _human(v)
    if field_name == "epochs":
        return f"{v:.1f}" if v != int(v) else f"{int(v)}"
    if field_name == "peak_mb":
        return f"{v:.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


EFFICIENCY_NOTE = ("s/epoch: mean training time per epoch (validation excluded); epochs: epochs trained (early "
                   "stopping); run time: wall time of the whole run subprocess (startup, data, training, "
                   "evaluation; for a row that scores another row's trained weights, on_trained: the scoring "
                   "alone); peak RSS: maximum resident memory of the run subprocess over seeds; "
                   "parameters: trainable / total.")


def efficiency_frame(plan, store):
    """The :class:`TableFrame` of the suite's efficiency table (rows with a finished run)."""
    eff = collect_efficiency(plan, store)
    suite = plan.suite
    index, data, records = [], [], []
    for gname, _, variants in suite.groups:
        for v in (v for v in variants if v.label in eff):
            texts = [_eff_text(f, eff[v.label].get(d.name, {}).get(f)) for d in suite.datasets
                     for f, _ in EFFICIENCY_FIELDS]
            index.append((gname, v.label))
            data.append([{"md": t, "tex": t} for t in texts])
            for d in suite.datasets:
                e = eff[v.label].get(d.name)
                if e:
                    records.append([gname, v.label, d.name, e["n"]] + [e[f] for f, _ in EFFICIENCY_FIELDS])
    caption = scale_caption(plan, [v.label for v in suite.variants])
    multi = len(suite.datasets) > 1
    columns = _frame_columns([d.label for d in suite.datasets], [lab for _, lab in EFFICIENCY_FIELDS])
    head = ["group", "model", "dataset", "seeds_finished"] + [f for f, _ in EFFICIENCY_FIELDS]
    return TableFrame(
        cells=pd.DataFrame(data, index=_frame_index(index), columns=columns,
                           dtype=object),
        csv=pd.DataFrame(records, columns=head, dtype=object),
        title=f"Efficiency: {suite.title}", title_after="" if multi else f" ({suite.datasets[0].label})",
        caption=f"Efficiency: {suite.title}. {caption}", label=f"tab:{suite.name}-efficiency",
        caption_notes=caption, notes=[EFFICIENCY_NOTE], align="r")


def efficiency_markdown(plan, store):
    return render_markdown(efficiency_frame(plan, store))


def efficiency_latex(plan, store):
    return render_latex(efficiency_frame(plan, store))


def efficiency_csv(plan, store):
    return render_csv(efficiency_frame(plan, store))


def runs_csv(plan, store):
    """Every planned run, one line each (long format), including missing and failed ones."""
    keys = [r.key for r in plan.runs if r.key]
    rows_by_key = {row["key"]: row for row in store.rows(keys=keys)} if keys else {}
    metrics = plan.suite.columns
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", "group", "model_label", "model", "dataset", "seed", "status", "attempts", "best_epoch",
                "epochs", "wall_time_s", "peak_rss_mb", "trainable_params", "total_params"]
               + [f"valid_{m}" for m in metrics] + [f"test_{m}" for m in metrics] + ["error"])
    for r in plan.runs:
        db = rows_by_key.get(r.key) if r.key else None
        status = db["status"] if db else (r.status if r.status != "ready" else "pending")
        vals = [r.key or "", r.group, r.label, r.model, r.dataset, r.seed, status]
        if db:
            vals += [db.get("attempts"), db.get("best_epoch"), len(db.get("epoch_times") or []) or "",
                     db.get("wall_time_s"), db.get("peak_rss_mb"), db.get("trainable_params"), db.get("total_params")]
            vals += [(db.get("valid") or {}).get(m, "") for m in metrics] + [(db.get("test") or {}).get(m, "") for m in metrics]
            vals.append(((db.get("error") or "").splitlines() or [""])[0])
        else:
            vals += [""] * 7 + [""] * (2 * len(metrics)) + [r.reason]
        w.writerow(["" if v is None else v for v in vals])
    tunings = getattr(plan, "tunings", {}) or {}
    stored = {row["key"]: row for row in store.rows(keys=list(tunings))} if tunings else {}
    for key, task in tunings.items():  # a tuned row's tuning (seed empty): its state and error
        db = stored.get(key)
        group = next((r.group for r in plan.runs if r.tune_key == key), "")
        vals = [key, group, f"{task.label} (tuning)", task.model, task.dataset, "", db["status"] if db else "pending"]
        vals += [db.get("attempts") if db else "", "", "", db.get("wall_time_s") if db else ""] + [""] * 3
        vals += [""] * (2 * len(metrics))
        vals.append(((db.get("error") or "").splitlines() or [""])[0] if db else "")
        w.writerow(["" if v is None else v for v in vals])
    return buf.getvalue()


# -- writing everything ----------------------------------------------------------------
def write_tables(plan, store, out_dir, show_std=True):
    """Write every table of the suite as .md/.tex/.csv under ``out_dir/tables`` plus
    ``summary.md`` and ``runs.csv``; return ``(summary markdown, [Table])``."""
    from pathlib import Path

    out_dir = Path(out_dir)
    tdir = out_dir / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    suite = plan.suite
    tables = [collect(plan, store, spec) for spec in suite.all_tables()]
    parts = [f"# {suite.title}\n"]
    if suite.paper:
        parts.append(f"Reproduces: {suite.paper}\n")
    if suite.description:
        parts.append(suite.description.strip() + "\n")
    for t in tables:
        frame = table_frame(t, show_std=show_std)
        md = render_markdown(frame)
        (tdir / f"{t.name}.md").write_text(md)
        (tdir / f"{t.name}.tex").write_text(render_latex(frame))
        (tdir / f"{t.name}.csv").write_text(render_csv(frame))
        parts.append(md)
        sig = significance_markdown(t)
        if sig:
            parts.append(f"Significance tests ({stats.TEST_NAME}):\n\n" + sig)
        ref = reference_markdown(t)
        if ref:
            (tdir / f"{t.name}_significance.md").write_text(reference_note(t) + "\n\n" + ref)
            parts.append(f"Tests against the reference row. {reference_note(t)}\n\n" + ref)
    eff = efficiency_frame(plan, store)
    eff_md = render_markdown(eff)
    (tdir / "efficiency.md").write_text(eff_md)
    (tdir / "efficiency.tex").write_text(render_latex(eff))
    (tdir / "efficiency.csv").write_text(render_csv(eff))
    parts.append(eff_md)
    (out_dir / "runs.csv").write_text(runs_csv(plan, store))
    summary = "\n".join(parts)
    (out_dir / "summary.md").write_text(summary)
    return summary, tables


def check_latex_structure(tex):
    """Structural check of generated LaTeX: balanced braces and environments, and every
    tabular row has as many cells as the column spec. Returns a list of problems."""
    problems = []
    depth = 0
    for i, ch in enumerate(tex):
        if ch == "{" and (i == 0 or tex[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or tex[i - 1] != "\\"):
            depth -= 1
            if depth < 0:
                problems.append(f"unbalanced '}}' at {i}")
                depth = 0
    if depth:
        problems.append(f"{depth} unclosed '{{'")
    stack = []
    for m in re.finditer(r"\\(begin|end)\{([^}]*)\}", tex):
        if m.group(1) == "begin":
            stack.append(m.group(2))
        elif not stack or stack.pop() != m.group(2):
            problems.append(f"\\end{{{m.group(2)}}} does not close the open environment")
    problems += [f"environment {e} not closed" for e in stack]
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex)
    if spec:
        ncols = len(re.sub(r"[^lcrp]", "", spec.group(1)))
        body = tex[spec.end():tex.find("\\end{tabular}")]
        for line in body.splitlines():
            line = line.strip()
            if not line.endswith("\\\\"):
                continue
            content = re.sub(r"\\&", "", line[:-2])
            width = 0
            for cell in content.split("&"):
                mc = re.search(r"\\multicolumn\{(\d+)\}", cell)
                width += int(mc.group(1)) if mc else 1
            if width != ncols:
                problems.append(f"row has {width} cells, tabular has {ncols}: {line[:80]}")
    return problems
