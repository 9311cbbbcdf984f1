"""The one-process comparison scripts' shared helper (benchmarks/_common.py): overrides, and result
tables written from a report dict (JSON + markdown rendered from it), for gat_gpt2_ml100k and glta_ml100k."""

import json

import pytest

from conftest import import_benchmarks



@pytest.fixture
def scripts(monkeypatch):
    return import_benchmarks(monkeypatch, "_common", "gat_gpt2_ml100k", "glta_ml100k")


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


def _glta_report(values):
    cols = ["recall@10", "ndcg@5", "ndcg@10", "precision@5", "precision@10"]
    return {"runs": {f"{label}@{seed}": _entry({c: v for c in cols}, stage_times={"graph": 1.0, "fit": 2.0})
                     for label, per_seed in values.items() for seed, v in per_seed.items()}}


def test_glta_table_mean_std_and_paired_ttest_against_lightgcn(scripts, tmp_path):
    from scipy import stats

    glta = scripts["glta_ml100k"]
    lgcn, ours = {2020: 0.30, 2021: 0.28, 2022: 0.31}, {2020: 0.33, 2021: 0.30, 2022: 0.35}
    md = scripts["_common"].write_report(_glta_report({"GLTA": ours, "LightGCN": lgcn, "w/o PF": {2020: 0.2}}),
                                         tmp_path / "g.json", glta.to_markdown)
    rows = {}
    for line in md.splitlines():  # the first table (the per-seed table repeats the labels)
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert list(rows)[:4] == ["model", "LightGCN", "GLTA", "w/o PF"]  # LightGCN before GLTA, ablations after
    p = stats.ttest_rel(list(ours.values()), list(lgcn.values())).pvalue
    rel = 100 * (sum(ours.values()) - sum(lgcn.values())) / sum(lgcn.values())
    cells = [c.strip() for c in rows["GLTA"].split("|")[1:-1]]
    assert cells[1] == "2020,2021,2022" and cells[4].startswith("0.3267 +- 0.0252")
    assert cells[7] == f"{rel:+.1f}%" + ("*" if p < 0.05 else "") and cells[8] == f"{p:.3f}"  # vs LightGCN
    assert cells[9:11] == ["-", "-"]  # vs GLTA: itself
    lgcn_cells = [c.strip() for c in rows["LightGCN"].split("|")[1:-1]]
    p_rev = stats.ttest_rel(list(lgcn.values()), list(ours.values())).pvalue
    assert lgcn_cells[7:9] == ["-", "-"] and lgcn_cells[10] == f"{p_rev:.3f}"  # the ablations' reference too
    assert "needs at least 2 seeds" in rows["w/o PF"]  # one seed: no test, said so


def test_glta_script_resumes_and_rescores_the_trained_weights(scripts, tmp_path, monkeypatch):
    glta = scripts["glta_ml100k"]
    ckpt = tmp_path / "lightgcn.pth"
    ckpt.write_text("x")
    out = tmp_path / "g.json"
    done = _glta_report({"BPR": {2020: 0.2}, "LightGCN": {2020: 0.3}})
    done["runs"]["LightGCN@2020"]["saved_model_file"] = str(ckpt)
    out.write_text(json.dumps(done))
    calls = []

    def fake_run_model(name, dataset, cfg, on_trained=None):
        calls.append((name, cfg, on_trained is not None))
        rescored = {"AR": {"test": {"ndcg@10": 0.1}, "wall_seconds": 1.0}} if on_trained else None
        entry = _entry({c: 0.25 for c in ["recall@10", "ndcg@5", "ndcg@10", "precision@5", "precision@10"]},
                       stage_stats={})
        return entry, {"stats": {"saved_model_file": None}, "on_trained": rescored}

    monkeypatch.setattr(glta, "run_model", fake_run_model)
    report = glta.main(["--seeds", "1", "--ablations", "w/o PF", "--out", str(out), "--work-dir", str(tmp_path)])
    assert [(n, c.get("glta_profile_tokens"), r) for n, c, r in calls] == [
        ("GLTA", None, True), ("GLTA", False, False)]  # BPR and LightGCN were done; only GLTA is rescored
    assert all(c["glta_graph_checkpoint"] == str(ckpt) and c["seed"] == 2020 for _, c, _ in calls)
    assert set(report["runs"]) == {"BPR@2020", "LightGCN@2020", "GLTA@2020", "AR@2020", "w/o PF@2020"}
    assert report["runs"]["AR@2020"]["rescored_from"] == "GLTA@2020"
    calls.clear()
    glta.main(["--seeds", "1", "--ablations", "w/o PF", "--out", str(out), "--work-dir", str(tmp_path)])
    assert calls == []  # everything is in the file
    glta.main(["--seeds", "1", "--variant", "reset:glta_head_init=reset;glta_head_epochs=0", "--out", str(out),
               "--work-dir", str(tmp_path)])
    assert [c for _, c, _ in calls][-1]["glta_head_init"] == "reset" and calls[-1][1]["glta_head_epochs"] == 0
    assert len(calls) == 1 and "reset@2020" in json.loads(out.read_text())["runs"]
    for bad in (["--ablations", "w/o XY"], ["--variant", "no-colon"], ["--variant", "GLTA:glta_slots=2"],
                ["--variant", "GLTA keep:glta_keep_initial=true"]):  # an untrained state is 'probe only', not GLTA
        with pytest.raises(SystemExit):
            glta.main([*bad, "--out", str(out)])
