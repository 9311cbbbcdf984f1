"""The one-process comparison scripts' shared helper (benchmarks/_common.py): overrides, and result
tables written from a report dict (JSON + markdown rendered from it), for gat_gpt2_ml100k and glta_ml100k."""

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("_common", "gat_gpt2_ml100k", "glta_ml100k"):
        sys.modules.pop(name, None)
    return {name: importlib.import_module(name) for name in ("_common", "gat_gpt2_ml100k", "glta_ml100k")}


def _entry(test, **extra):
    return {"test": test, "valid": {"ndcg@100": 0.3}, "wall_seconds": 12.0, "peak_rss_mb": 100.0,
            "best_epoch": 3, "epochs_run": 5, "stage_times": {"fit": 10.0}, **extra}


def test_parse_overrides_reads_json_values_and_rejects_bad_items(scripts):
    common = scripts["_common"]
    assert common.parse_overrides(["a=1", "b=[2, 3]", "c=text", "d=0.5"]) == {"a": 1, "b": [2, 3], "c": "text", "d": 0.5}
    with pytest.raises(SystemExit, match="not KEY=VALUE"):
        common.parse_overrides(["novalue"])


def test_gat_table_is_written_from_the_report(scripts, tmp_path):
    gat = scripts["gat_gpt2_ml100k"]
    report = {"command": "python3 benchmarks/gat_gpt2_ml100k.py", "loadavg_start": (1.0, 1.0, 1.0),
              "omp_num_threads": "1", "threads": 1, "models": {
                  "SASRecPerUser": _entry({"recall@20": 0.25, "recall@40": 0.4, "ndcg@100": 0.3}),
                  "GraphAttentiveGPT2": _entry({"recall@20": 0.125, "recall@40": 0.5, "ndcg@100": 0.375}, config={},
                                               stage_stats={"finetune": {"seconds": 9, "epochs": 2, "losses": [3.0, 2.0],
                                                                         "valid_scores": [0.25, 0.3], "valid_seconds": 1}})}}
    md = scripts["_common"].write_report(report, tmp_path / "r.json", gat.to_markdown)
    assert json.loads((tmp_path / "r.json").read_text())["models"]["SASRecPerUser"]["test"]["recall@20"] == 0.25
    assert (tmp_path / "r.md").read_text() == md
    assert "| SASRecPerUser | 0.2500 | 0.4000 | 0.3000 | 0.3000 | 3 / 5 | 12 | 100 |" in md
    assert "| finetune | 9 | 2 | 3.000, 2.000 | 0.2500, 0.3000 | 1 |" in md


def test_glta_table_is_written_from_the_report(scripts, tmp_path):
    glta = scripts["glta_ml100k"]
    cols = ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "precision@5", "precision@10"]
    report = {"models": {"BPR": _entry({c: 0.1 for c in cols})}}
    md = scripts["_common"].write_report(report, tmp_path / "g.json", glta.to_markdown)
    assert md.splitlines()[2] == "| BPR | " + " | ".join(["0.1000"] * 6) + " | 12 | 100 |"
