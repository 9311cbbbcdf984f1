"""What the measurement scripts (``glta_graph_batch.py``, ``glta_scale.py``, ``full_sort_eval_batch.py``) share:
reading ``KEY=VALUE`` overrides, the environment of a measurement, and writing the result table (``.json``
with every number, ``.md`` rendered from that JSON, never from logs). Model comparisons are benchmark suites
(``recbole-llm benchmark``, ``properties/benchmarks/``), not scripts."""

from __future__ import annotations

import json
import os
import sys
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


def environment() -> dict:
    """Threads, OMP policy and load average at the start of a comparison."""
    import torch

    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "(default)"),
            "threads": torch.get_num_threads(), "loadavg_start": os.getloadavg()}


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
