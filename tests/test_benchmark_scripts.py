"""The measurement scripts' shared helper (benchmarks/_common.py): overrides, and result tables written
from a report dict (JSON + markdown rendered from it). Model comparisons are suites (tests/test_benchmark.py)."""

import json

import pytest

from conftest import import_benchmarks


@pytest.fixture
def common(monkeypatch):
    return import_benchmarks(monkeypatch, "_common")["_common"]


def test_parse_overrides_reads_json_values_and_rejects_bad_items(common):
    assert common.parse_overrides(["a=1", "b=[2, 3]", "c=text", "d=0.5"]) == {"a": 1, "b": [2, 3], "c": "text", "d": 0.5}
    with pytest.raises(SystemExit, match="not KEY=VALUE"):
        common.parse_overrides(["novalue"])


def test_write_report_writes_the_json_and_the_markdown_rendered_from_it(common, tmp_path):
    report = {"models": {"LightGCN": {"test": {"ndcg@10": 0.25}}}, **common.environment()}

    def to_markdown(r):
        return "".join(f"| {m} | {e['test']['ndcg@10']:.4f} | load {r['loadavg_end'][0]:.2f} |\n"
                       for m, e in r["models"].items())

    md = common.write_report(report, tmp_path / "sub" / "r.json", to_markdown)
    stored = json.loads((tmp_path / "sub" / "r.json").read_text())
    assert stored["models"]["LightGCN"]["test"]["ndcg@10"] == 0.25 and len(stored["loadavg_end"]) == 3
    assert stored["threads"] >= 1 and "omp_wait_policy" in stored
    assert (tmp_path / "sub" / "r.md").read_text() == md and md.startswith("| LightGCN | 0.2500 | load ")


def test_the_retired_comparison_scripts_are_suites():
    """glta_ml100k.py, hellm_ml100k.py and gat_gpt2_ml100k.py became suites of the same names."""
    from pathlib import Path

    from recbole_llm.benchmark.suite import load_suite

    root = Path(__file__).resolve().parent.parent
    for name in ("glta_ml100k", "hellm_ml100k", "gat_gpt2_ml100k"):
        assert not (root / "benchmarks" / f"{name}.py").exists()
        assert load_suite(name).name == name
        assert (root / "benchmarks" / "results" / f"{name}.json").is_file()  # their committed results stay
