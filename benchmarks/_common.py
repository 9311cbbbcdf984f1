"""What the one-process comparison scripts (``gat_gpt2_ml100k.py``, ``glta_ml100k.py``) share: reading
``KEY=VALUE`` overrides, running one model with its wall time and peak RSS, and writing the result
table (``.json`` with every number, ``.md`` rendered from that JSON, never from logs)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import recbole_llm  # noqa: E402,F401  (sets OMP_WAIT_POLICY=PASSIVE before anything loads torch)


def parse_overrides(items) -> dict:
    """``["a=1", "b=[2, 3]", "c=text"]`` -> ``{"a": 1, "b": [2, 3], "c": "text"}`` (JSON values, else strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"override {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_model(name, dataset, config_dict, on_trained=None) -> tuple[dict, dict]:
    """Train and test ``name`` with ``run_experiment``; return ``(entry, result)``: the entry holds the test
    and best-validation metrics, wall seconds, RecBole's stats (best epoch, epochs run, stage times and
    stage stats, parameters) and the peak RSS of this model alone (reset before it). ``on_trained``: see
    ``run_experiment``."""
    from recbole_llm.memory import peak_rss_mb, reset_peak_rss
    from recbole_llm.quick_start import run_experiment

    reset_peak_rss()
    t0 = time.perf_counter()
    result = run_experiment(name, dataset, config_dict=config_dict, on_trained=on_trained)
    wall = time.perf_counter() - t0
    stats = result["stats"]
    entry = {
        "test": {k: float(v) for k, v in result["test_result"].items()},
        "valid": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
        "wall_seconds": wall,
        "best_epoch": stats.get("best_epoch"),
        "epochs_run": len(stats.get("epoch_times") or []),
        "stage_times": stats.get("stage_times", {}),
        "stage_stats": stats.get("stage_stats", {}),
        "peak_rss_mb": peak_rss_mb(),
        "trainable_params": stats.get("trainable_params"),
        "total_params": stats.get("total_params"),
    }
    print(f"== {name}: {wall:.0f} s, test {entry['test']}", flush=True)
    return entry, result


def environment() -> dict:
    """Threads, OMP policy and load average at the start of a comparison."""
    import torch

    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "(default)"),
            "threads": torch.get_num_threads(), "loadavg_start": os.getloadavg()}


def metric_rows(models: dict, columns, extra=()) -> list[str]:
    """Markdown table of the test metrics ``columns`` per model; ``extra``: ``(header, fn(entry) -> str)``."""
    lines = ["| model | " + " | ".join(columns + [h for h, _ in extra]) + " |",
             "|---" * (1 + len(columns) + len(extra)) + "|"]
    for name, e in models.items():
        cells = [f"{e['test'].get(c, float('nan')):.4f}" for c in columns] + [fn(e) for _, fn in extra]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(report: dict, out, to_markdown) -> str:
    """Write ``report`` to ``out`` (JSON) and ``to_markdown(report)`` beside it (``.md``); return the markdown."""
    report["loadavg_end"] = os.getloadavg()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    md = to_markdown(report)
    out.with_suffix(".md").write_text(md)
    print(md)
    return md
