"""Benchmark suites, results store, runner, tables, plots (recbole_llm.benchmark).

Most tests use a fake run function (written to a temporary module so that run subprocesses
start in milliseconds) and a fake config resolver; a few do real runs on tiny datasets (BPR through
the isolated runner; BPR, GLTA and HeLLM rows built on other rows' checkpoints, in this process).
"""

import json
import math
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest
import yaml

from recbole_llm.benchmark import stats
from recbole_llm.benchmark.runner import run_plan
from recbole_llm.benchmark.store import ResultsStore, make_owner
from recbole_llm.benchmark.suite import (
    SuiteError, config_key, canonical_config, list_suites, load_suite, load_suites, parse_suite, parse_suites, plan_suite, select_runs,
    with_dependencies,
)
from recbole_llm.benchmark.tables import check_latex_structure, collect, efficiency_latex, to_latex, to_markdown
from recbole_llm.cli import main as cli_main

FAKE_MODULE = '''
import json, os, signal, time
from pathlib import Path

def run(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    cfg = dict(config_dict)
    fake = cfg.get("fake", {})
    log = Path(fake["log"])
    with open(log, "a") as fh:  # O_APPEND: one line per call, safe across processes
        fh.write(json.dumps({"model": model, "seed": cfg["seed"], "pid": os.getpid()}) + "\\n")
    tag = f"{model}-{cfg['seed']}"
    marker = log.parent / f"done-{tag}"
    if tag in fake.get("kill_runner_once", []) and not marker.exists():
        marker.touch()
        os.kill(os.getppid(), signal.SIGKILL)  # kill the runner; we die with it
        time.sleep(30)
    if tag in fake.get("raise_once", []) and not marker.exists():
        marker.touch()
        raise RuntimeError(f"planned failure of {tag}")
    if tag in fake.get("crash_once", []) and not marker.exists():
        marker.touch()
        os._exit(3)
    time.sleep(fake.get("sleep", 0))
    base = fake.get("scores", {}).get(model, 0.1)
    value = base + 0.001 * (cfg["seed"] % 7)
    result = {"recall@10": value, "ndcg@10": value / 2}
    return {"best_valid_score": value, "valid_score_bigger": True, "best_valid_result": result,
            "test_result": result,
            "stats": {"best_epoch": 1, "epoch_times": [0.01, 0.02], "stage_times": {"fit": 0.03},
                      "trainable_params": 100, "total_params": 1000, "peak_rss_mb": 1.0}}
'''


def fake_resolver(model, dataset, config_file_list, config_dict):
    return {"model": model, "dataset": dataset, "MODEL_TYPE": "ModelType.GENERAL", **config_dict}


def suite_dict(**over):
    d = {
        "name": "tiny",
        "title": "Tiny suite",
        "seeds": [1, 2, 3],
        "protocol": {
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
            "metrics": ["Recall", "NDCG"],
            "topk": [10],
            "valid_metric": "NDCG@10",
        },
        "datasets": [{"name": "tiny", "label": "Tiny"}],
        "groups": [
            {"name": "Baselines", "models": ["BPR", "LightGCN"]},
            {"name": "LLM-based", "ours": True, "models": ["GLTA"]},
        ],
    }
    d.update(over)
    return d


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """A fake run-function module on sys.path (inherited by run subprocesses)."""
    return {**_fake_module(tmp_path, monkeypatch, "fakebench", FAKE_MODULE), "dir": tmp_path}


def _fake_module(tmp_path, monkeypatch, name, source):
    """Module ``name`` holding ``source`` on sys.path (inherited by run subprocesses), an empty call
    log and the results folder."""
    mod_dir = tmp_path / "fakemods"
    mod_dir.mkdir()
    (mod_dir / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(mod_dir))
    log = tmp_path / "calls.jsonl"
    log.touch()
    return {"log": log, "results": tmp_path / "results"}


def make_plan(fake_env, available=("BPR", "LightGCN", "GLTA"), **fake):
    fake = {"log": str(fake_env["log"]), **fake}
    suite = parse_suite(suite_dict(config={"fake": fake}))
    return plan_suite(suite, available=set(available), resolver=fake_resolver, data_check=False)


def calls(fake_env):
    return [json.loads(line) for line in fake_env["log"].read_text().splitlines() if line.strip()]


# -- suites ------------------------------------------------------------------------------
def test_shipped_suites_are_valid():
    names = {name for name, _, _ in list_suites()}
    assert {"cpu_ml100k", "glta_table2", "gat_gpt2_table", "hellm_table", "glta_ablation"} <= names
    for name in names:
        for suite in load_suites(name):
            assert suite.columns and suite.seeds and suite.groups
    glta = load_suite("glta_table2")
    assert glta.columns == ["precision@5", "precision@10", "ndcg@5", "ndcg@10"]
    assert glta.protocol["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]} and glta.protocol["eval_args"]["mode"] == "full"
    gat = load_suite("gat_gpt2_table")
    assert gat.columns == ["recall@20", "recall@40", "ndcg@100"]
    assert gat.protocol["eval_args"]["order"] == "RO" and gat.protocol["eval_args"]["group_by"] == "user"
    hellm = load_suite("hellm_table")
    assert hellm.columns == ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]
    assert hellm.protocol["eval_args"]["split"] == {"LS": "valid_and_test"} and hellm.protocol["eval_args"]["order"] == "TO"
    assert [t.name for t in load_suite("glta_ablation").tables] == ["table3"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": 1}, "unknown key"),
        ({"columns": ["recall@20"]}, "not computed by the protocol"),
        ({"model_config": {"BPR": {"eval_args": {"order": "TO"}}}}, "belong to the suite's protocol"),
        ({"groups": [{"name": "A", "models": ["BPR", {"model": "BPR"}]}]}, "duplicate row label"),
        ({"protocol": {"metrics": ["Recall"], "topk": [10],
                       "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user"}}}, "missing 'mode'"),
        ({"protocol": {"metrics": ["Recal"], "topk": [10],
                       "eval_args": {"split": {"RS": [0.8, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"}}}, "unknown metric"),
        ({"tables": [{"name": "t3", "rows": ["Nope"]}]}, "unknown row 'Nope'"),
    ],
)
def test_bad_suites_get_clear_errors(change, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite(suite_dict(**change))


@pytest.mark.parametrize(
    "protocol, flags",
    [
        ({"eval_args": {"split": {"RS": [0.8, 0.2, 0]}, "order": "RO", "group_by": "user", "mode": "full"}},
         ["--eval_args={'split':{'RS':[0.8,0.2,0]},'order':'RO','group_by':'user','mode':'full'}"]),
        ({"eval_args": {"split": {"RS": [0.8, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"}},
         ["--eval_args={'split':{'RS':[0.8,0.2]},'order':'RO','group_by':'user','mode':'full'}"]),
        ({"metrics": ["Recal"]}, ["--metrics=['Recal']"]),
        ({"valid_metric": "NDCG@20"}, ["--metrics=['Recall','NDCG']", "--topk=[10]", "--valid_metric=NDCG@20"]),
    ],
)
def test_a_suite_and_a_run_refuse_a_protocol_in_the_same_words(tmp_path, capsys, protocol, flags):
    """The suite runs the Config's own checks: the same bad setting in a suite file and on the command
    line gives the same message (exit 2 both)."""
    raw = suite_dict()
    raw["protocol"] = dict(raw["protocol"], **protocol)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli_main(["benchmark", "--suite", str(path), "--dry-run"]) == 2
    suite_err = capsys.readouterr().err
    assert cli_main(["--model=BPR", "--dataset=ml-100k", *flags]) == 2
    run_err = capsys.readouterr().err
    assert run_err.startswith("recbole-llm: error: Setting "), run_err
    message = run_err.removeprefix("recbole-llm: error: ").strip()
    assert suite_err.strip() == f"recbole-llm benchmark: {path}: protocol: {message}"


@pytest.mark.parametrize("change, message", [
    ({"main_table": "yes"}, "tiny-suite: main_table: expected true or false, got 'yes'"),
    ({"decimals": 9}, "decimals: expected an integer 1-8, got 9"),
    ({"seeds": "2020"}, "seeds: expected a list of int"),
    ({"groups": [{"name": "A", "ours": 1, "models": ["BPR"]}]}, r"groups\[0\].ours: expected true or false"),
    ({"groups": [{"name": "A", "models": [{"model": "BPR", "config": [1]}]}]},
     r"groups\[0\].models\[0\].config: expected a mapping"),
    ({"datasets": [{"name": "tiny", "lable": "T"}]}, r"datasets\[0\]: unknown key\(s\) \['lable'\]"),
    ({"tables": [{"name": "t", "rows": "BPR", "columns": 5}]}, r"tables\[0\].columns: expected a list of str"),
])
def test_suite_sections_are_read_against_their_schema(change, message):
    from recbole_llm.benchmark.suite import SUITE_KEYS

    with pytest.raises(SuiteError, match=message):
        parse_suite(suite_dict(**change), "tiny-suite")
    assert all(key.doc and "\n" not in key.doc for key in SUITE_KEYS.values())


def test_a_suite_file_with_several_protocols_gives_one_suite_each():
    base = suite_dict()
    rs = base.pop("protocol")
    loo = dict(rs, eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"})
    raw = dict(base, protocols={"rs": dict(rs, label="random 80/10/10"), "loo": dict(loo, label="leave-one-out")})
    suites = parse_suites(raw)
    assert [(s.name, s.family, s.part) for s in suites] == [("tiny-rs", "tiny", "rs"), ("tiny-loo", "tiny", "loo")]
    assert suites[1].protocol["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert suites[0].title == "Tiny suite (random 80/10/10)" and suites[0].groups == suites[1].groups
    assert [s.part for s in parse_suites(raw, parts=["loo"])] == ["loo"]
    with pytest.raises(SuiteError, match="no protocol"):
        parse_suites(raw, parts=["kfold"])
    with pytest.raises(SuiteError, match="either 'protocol' or 'protocols'"):
        parse_suites(dict(raw, protocol=rs))
    with pytest.raises(SuiteError, match="several protocols"):
        parse_suite(raw)
    only = dict(raw, protocols={"rs": dict(rs, groups=["LLM-based"])})
    [suite] = parse_suites(only)
    assert [name for name, _, _ in suite.groups] == ["LLM-based"]
    with pytest.raises(SuiteError, match="unknown groups"):
        parse_suites(dict(raw, protocols={"rs": dict(rs, groups=["Nope"])}))
    # the shipped baseline suite runs each paper's baselines under that paper's protocol
    rs_suite, loo_suite = load_suites("cpu_ml100k_baselines")
    assert (rs_suite.part, loo_suite.part) == ("rs", "loo")
    assert {"HCCF", "MD-CVAE", "LightGCN"} <= {v.label for v in rs_suite.variants}
    assert {"FREEDOM", "LightGCN"} <= {v.label for v in loo_suite.variants} and "HCCF" not in {v.label for v in loo_suite.variants}


def test_unknown_suite_name_lists_shipped_suites():
    with pytest.raises(SuiteError, match="cpu_ml100k"):
        load_suite("no_such_suite")


def test_run_keys_hash_the_resolved_config(fake_env):
    plan = make_plan(fake_env)
    keys = [r.key for r in plan.ready()]
    assert len(keys) == len(set(keys)) == 9
    r = plan.ready()[0]
    same = canonical_config({**fake_resolver(r.model, r.dataset, [], r.config_dict), "device": "cuda:3",
                             "checkpoint_dir": "/elsewhere", "log_dir": "/x"})
    assert config_key(same) == r.key  # volatile keys do not change the key
    assert config_key({**r.resolved, "learning_rate": 0.5}) != r.key


def test_missing_and_incompatible_models_are_reported_not_dropped(fake_env, tmp_path):
    plan = make_plan(fake_env, available=("BPR", "LightGCN"))
    st = {(r.label, r.status) for r in plan.runs}
    assert ("GLTA", "missing") in st and len([r for r in plan.runs if r.label == "GLTA"]) == 3
    # A sequential model under a random-order split cannot run in RecBole: flagged, kept.
    seq = lambda m, d, f, c: {**fake_resolver(m, d, f, c), "MODEL_TYPE": "ModelType.SEQUENTIAL"}  # noqa: E731
    plan2 = plan_suite(parse_suite(suite_dict()), available={"BPR", "LightGCN", "GLTA"}, resolver=seq, data_check=False)
    assert {r.status for r in plan2.runs} == {"incompatible"}
    # An override naming a key the model does not have is an error, not a silent no-op.
    typo = parse_suite(suite_dict(groups=[{"name": "A", "models": [
        {"label": "w/o IA", "model": "GLTA", "config": {"glta_item_alignmnt": False}}]}]))
    strict = lambda m, d, f, c: {k: v for k, v in fake_resolver(m, d, f, c).items() if k != "glta_item_alignmnt"}  # noqa: E731
    plan3 = plan_suite(typo, available={"GLTA"}, resolver=strict, data_check=False)
    assert {r.status for r in plan3.runs} == {"error"} and "glta_item_alignmnt" in plan3.runs[0].reason

    store = ResultsStore(tmp_path / "r")
    md = to_markdown(collect(plan, store))
    assert "| GLTA (missing) |" in md
    assert "Missing, i.e. not registered in this installation" in md and "GLTA" in md.split("Missing, i.e.")[1]


def test_only_and_skip_filters(fake_env):
    plan = make_plan(fake_env)
    assert {r.model for r in select_runs(plan.runs, only=["BPR"])} == {"BPR"}
    assert {r.model for r in select_runs(plan.runs, only=["BPR,GLTA"], skip=["GLTA@tiny"])} == {"BPR"}
    assert {r.model for r in select_runs(plan.runs, skip=["*@Tiny"])} == set()


# -- store -------------------------------------------------------------------------------
def _claimer(path, keys, out_dir, barrier):
    store = ResultsStore(path)
    owner = make_owner()
    barrier.wait()
    mine = []
    for k in keys:
        if store.claim(k, owner):
            mine.append(k)
            store.finish(k, owner, {"test": {"recall@10": 0.1}, "wall_time_s": 0.0})
    Path(out_dir, f"{os.getpid()}.json").write_text(json.dumps(mine))


def test_concurrent_runners_claim_each_key_once(tmp_path):
    path = tmp_path / "store" / "results.sqlite"
    ResultsStore(path)
    keys = [f"k{i:03d}" for i in range(40)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_claimer, args=(path, keys, tmp_path, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    claimed = [k for f in tmp_path.glob("*.json") for k in json.loads(f.read_text())]
    assert sorted(claimed) == keys  # every key exactly once
    store = ResultsStore(path)
    assert store.counts() == {"finished": 40}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stale_claim_of_dead_runner_is_taken_over(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.claim("a", "otherhost:1:x")
    assert not store.claim("a", make_owner())  # live (unknown host) owner, fresh heartbeat
    assert store.claim("a", make_owner(), stale_after=-1)  # heartbeat too old
    dead = f"{os.uname().nodename}:99999999:x"
    assert store.claim("b", dead)
    assert store.claim("b", make_owner())  # same host, pid gone
    assert store.get("b")["attempts"] == 2


# -- runner: resume, retry ---------------------------------------------------------------
def _runner_entry(plan, results):
    run_plan(plan.runs, ResultsStore(results), results, run_fn="fakebench:run", progress=False, log=None)


def test_resume_after_killed_runner(fake_env):
    plan = make_plan(fake_env, kill_runner_once=["LightGCN-2"])
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_runner_entry, args=(plan, fake_env["results"]))
    p.start()
    p.join(60)
    assert p.exitcode == -9  # the runner was killed in the middle of the suite
    store = ResultsStore(fake_env["results"])
    before = {r["label"] + str(r["seed"]): r["status"] for r in store.rows()}
    assert before["BPR1"] == before["BPR3"] == before["LightGCN1"] == "finished"
    assert before["LightGCN2"] == "running"  # left behind by the dead runner
    first_calls = len(calls(fake_env))
    assert first_calls == 5

    summary = run_plan(plan.runs, store, fake_env["results"], run_fn="fakebench:run", progress=False, log=None)
    assert len(summary["skipped_finished"]) == 4  # nothing that finished is run again
    assert len(summary["finished"]) == 5  # LightGCN-2 (taken over) + 4 not started
    ran_again = [(c["model"], c["seed"]) for c in calls(fake_env)[first_calls:]]
    assert sorted(ran_again) == sorted([("LightGCN", 2), ("LightGCN", 3), ("GLTA", 1), ("GLTA", 2), ("GLTA", 3)])
    assert store.counts() == {"finished": 9}
    row = next(r for r in store.rows() if r["label"] == "LightGCN" and r["seed"] == 2)
    assert row["attempts"] == 2 and row["test"]["recall@10"] > 0
    assert row["epoch_times"] == [0.01, 0.02] and row["trainable_params"] == 100 and row["peak_rss_mb"] > 1
    assert row["versions"]["python"] and row["stage_times"]["subprocess_total"] > 0


def test_failed_runs_are_recorded_and_retried(fake_env):
    plan = make_plan(fake_env, raise_once=["BPR-1"], crash_once=["GLTA-3"])
    store = ResultsStore(fake_env["results"])
    runs = select_runs(plan.runs, only=["BPR", "GLTA"])
    s1 = run_plan(runs, store, fake_env["results"], run_fn="fakebench:run", progress=False, log=None)
    assert len(s1["failed"]) == 2 and len(s1["finished"]) == 4
    failed = {(r["label"], r["seed"]): r for r in store.rows(status="failed")}
    assert "RuntimeError: planned failure of BPR-1" in failed[("BPR", 1)]["error"]
    assert "subprocess died (exit status 3)" in failed[("GLTA", 3)]["error"]
    assert failed[("GLTA", 3)]["log_path"].endswith(".log")
    md = to_markdown(collect(plan, store))
    assert "(2/3)" in md  # partial cells say how many seeds they average
    s2 = run_plan(runs, store, fake_env["results"], run_fn="fakebench:run", progress=False, log=None)
    assert len(s2["finished"]) == 2 and len(s2["skipped_finished"]) == 4
    assert store.counts() == {"finished": 6}
    assert {r["attempts"] for r in store.rows() if (r["label"], r["seed"]) in failed} == {2}
    s3 = run_plan(runs, store, fake_env["results"], run_fn="fakebench:run", progress=False, log=None)
    assert not s3["finished"] and len(s3["skipped_finished"]) == 6


# -- tables ------------------------------------------------------------------------------
def fill(store, plan, values):
    """values: {label: {metric: [per-seed values]}} -> finished rows."""
    owner = make_owner()
    for r in plan.ready():
        v = values.get(r.label)
        if v is None:
            continue
        idx = plan.suite.seeds.index(r.seed)
        store.claim(r.key, owner)
        store.finish(r.key, owner, {"test": {m: vals[idx] for m, vals in v.items()}, "epoch_times": [1.0, 3.0],
                                    "wall_time_s": 10.0, "peak_rss_mb": 500.0 + idx, "trainable_params": 1234,
                                    "total_params": 2_500_000})


def test_table_bold_underline_and_improvement(fake_env, tmp_path):
    plan = make_plan(fake_env)
    store = ResultsStore(tmp_path / "r")
    fill(store, plan, {
        "BPR": {"recall@10": [0.10, 0.11, 0.12], "ndcg@10": [0.300, 0.300, 0.300]},
        "LightGCN": {"recall@10": [0.20, 0.21, 0.22], "ndcg@10": [0.100, 0.100, 0.100]},
        "GLTA": {"recall@10": [0.30, 0.32, 0.31], "ndcg@10": [0.200, 0.200, 0.200]},
    })
    t = collect(plan, store)
    cell = {(r.label, m): r.cells[("tiny", m)] for r in t.rows for m in t.metrics}
    assert cell[("GLTA", "recall@10")].best and cell[("LightGCN", "recall@10")].second
    assert not cell[("BPR", "recall@10")].best and not cell[("BPR", "recall@10")].second
    assert cell[("BPR", "ndcg@10")].best and cell[("GLTA", "ndcg@10")].second
    assert math.isclose(cell[("GLTA", "recall@10")].mean, 0.31) and math.isclose(cell[("GLTA", "recall@10")].std, 0.01)

    md = to_markdown(t)
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "**0.3100 ± 0.0100**" in lines["GLTA"] and "<ins>0.2100 ± 0.0100</ins>" in lines["LightGCN"]
    assert "**0.3000 ± 0.0000**" in lines["BPR"] and "<ins>0.2000 ± 0.0000</ins>" in lines["GLTA"]
    assert "*Baselines*" in md and "*LLM-based*" in md
    # Improv.: recall 0.31 vs 0.21 -> +47.62 %, significant (paired t-test); ndcg 0.2 vs 0.3 -> -33.33 %
    pct, st = t.improv[("tiny", "recall@10")]
    assert math.isclose(pct, (0.31 - 0.21) / 0.21 * 100) and st == "**"
    assert "47.62%\\*\\*" in lines["Improv."] and "-33.33%" in lines["Improv."]
    tex = to_latex(t)
    assert r"\textbf{0.3100$\pm$0.0100}" in tex and r"\underline{0.2100$\pm$0.0100}" in tex
    assert "47.62\\%$^{**}$" in tex


def test_one_table_frame_gives_markdown_latex_and_csv(fake_env, tmp_path):
    """The table is built once as a DataFrame; the CSV is rectangular (the Improv. line too) and holds
    the cells' numbers in full; Markdown and LaTeX show the same rows in the same order."""
    import io

    import pandas as pd

    from recbole_llm.benchmark.tables import render_csv, render_latex, render_markdown, table_frame

    plan = make_plan(fake_env)
    store = ResultsStore(tmp_path / "r")
    fill(store, plan, {"BPR": {"recall@10": [0.10, 0.11, 0.12], "ndcg@10": [0.3] * 3},
                       "GLTA": {"recall@10": [0.30, 0.32, 0.31], "ndcg@10": [0.2] * 3}})
    t = collect(plan, store)
    frame = table_frame(t)
    assert list(frame.cells.index) == [("Baselines", "BPR"), ("Baselines", "LightGCN (not run)"),
                                       ("LLM-based", "GLTA"), ("", "Improv.")]
    lines = render_csv(frame).split("\r\n")
    assert len({line.count(",") for line in lines if line}) == 1
    back = pd.read_csv(io.StringIO(render_csv(frame)), keep_default_na=False)
    glta = back[back.model == "GLTA"].iloc[0]
    assert float(glta["tiny|recall@10|mean"]) == next(r for r in t.rows if r.label == "GLTA").cells[("tiny", "recall@10")].mean
    md, tex = render_markdown(frame), render_latex(frame)
    order = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and " | " in line]
    assert order == ["Model", "*Baselines*", "BPR", "LightGCN (not run)", "*LLM-based*", "GLTA", "Improv."]
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")].splitlines()
    assert [line.split(" & ")[0] for line in body if " & " in line] == [
        r"\textit{Baselines}", "BPR", "LightGCN (not run)", r"\textit{LLM-based}", "GLTA", "Improv."]
    assert body.count("\\midrule") == 3 and check_latex_structure(tex) == []


def test_ties_share_the_mark(tmp_path):
    suite = parse_suite(suite_dict(seeds=[1]))
    plan = plan_suite(suite, available={"BPR", "LightGCN", "GLTA"}, resolver=fake_resolver, data_check=False)
    store = ResultsStore(tmp_path / "r")
    fill(store, plan, {"BPR": {"recall@10": [0.5], "ndcg@10": [0.1]}, "LightGCN": {"recall@10": [0.50004], "ndcg@10": [0.2]},
                       "GLTA": {"recall@10": [0.4], "ndcg@10": [0.3]}})
    t = collect(plan, store)
    marks = {r.label: (r.cells[("tiny", "recall@10")].best, r.cells[("tiny", "recall@10")].second) for r in t.rows}
    # 0.5 and 0.50004 both display as 0.5000: both bold; the next value is underlined.
    assert marks == {"BPR": (True, False), "LightGCN": (True, False), "GLTA": (False, True)}


def test_latex_is_structurally_valid(fake_env, tmp_path):
    d = suite_dict(datasets=["tiny", {"name": "tiny2", "label": "Tiny & 2_%"}, "t3", "t4", "t5"])
    d["groups"][0]["models"].append({"label": "Light_GCN & co", "model": "LightGCN", "config": {"x": 1}})
    suite = parse_suite(d)
    plan = plan_suite(suite, available={"BPR", "LightGCN", "GLTA"}, resolver=fake_resolver, data_check=False)
    store = ResultsStore(tmp_path / "r")
    fill(store, plan, {"BPR": {"recall@10": [0.1, 0.2, 0.3], "ndcg@10": [0.1, 0.1, 0.2]},
                       "GLTA": {"recall@10": [0.3, 0.2, 0.4], "ndcg@10": [0.2, 0.1, 0.2]}})
    tex = to_latex(collect(plan, store))
    assert check_latex_structure(tex) == []
    assert r"\begin{table*}" in tex and r"\resizebox" in tex  # 11 columns: wide layout
    assert r"Light\_GCN \& co" in tex and r"Tiny \& 2\_\%" in tex
    assert tex.count(r"\begin{") == tex.count(r"\end{")
    assert check_latex_structure(efficiency_latex(plan, store)) == []
    assert check_latex_structure(r"\begin{table}\begin{tabular}{lc} a & b & c \\ \end{tabular}\end{table}")
    assert check_latex_structure(r"\begin{table}{\end{table}")


def test_ablation_table_uses_its_rows_and_columns(fake_env, tmp_path):
    d = suite_dict(tables=[{"name": "abl", "caption": "Ablation", "rows": ["GLTA", "BPR"], "columns": ["ndcg@10"]}])
    plan = plan_suite(parse_suite(d), available={"BPR", "LightGCN", "GLTA"}, resolver=fake_resolver, data_check=False)
    store = ResultsStore(tmp_path / "r")
    fill(store, plan, {"BPR": {"recall@10": [0.1] * 3, "ndcg@10": [0.1] * 3},
                       "GLTA": {"recall@10": [0.2] * 3, "ndcg@10": [0.2] * 3}})
    t = collect(plan, store, plan.suite.tables[0])
    assert [r.label for r in t.rows] == ["GLTA", "BPR"] and t.metrics == ["ndcg@10"] and t.improv is None
    assert "Improv." not in to_markdown(t) and check_latex_structure(to_latex(t)) == []


# -- significance --------------------------------------------------------------------------
def test_paired_ttest_and_wilcoxon():
    from scipy.stats import ttest_rel

    a, b = {1: 0.30, 2: 0.32, 3: 0.31}, {1: 0.20, 2: 0.23, 3: 0.21, 4: 0.9}
    res = stats.paired_ttest(a, b)  # paired on the common seeds 1-3
    ref = ttest_rel([0.30, 0.32, 0.31], [0.20, 0.23, 0.21])
    assert res["n"] == 3 and math.isclose(res["p"], ref.pvalue) and math.isclose(res["t"], ref.statistic)
    assert math.isnan(stats.paired_ttest({1: 0.1}, {1: 0.2})["p"])
    assert math.isnan(stats.paired_ttest([0.2, 0.3], [0.1, 0.2])["p"])  # constant difference
    assert math.isnan(stats.wilcoxon([1, 2, 3, 4, 5], [0, 1, 2, 3, 4])["p"])  # < 6 pairs
    assert stats.wilcoxon([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0])["p"] < 0.05
    assert stats.stars(0.001) == "**" and stats.stars(0.03) == "*" and stats.stars(0.2) == "" and stats.stars(float("nan")) == ""


# -- outputs and CLI -----------------------------------------------------------------------
def test_tables_and_plots_are_written(fake_env, tmp_path):
    from recbole_llm.benchmark.plots import write_plots
    from recbole_llm.benchmark.tables import write_tables

    d = suite_dict(figures=[{"name": "fig3", "rows": ["GLTA", "BPR"], "columns": ["recall@10"]}])
    plan = plan_suite(parse_suite(d), available={"BPR", "LightGCN", "GLTA"}, resolver=fake_resolver, data_check=False)
    store = ResultsStore(tmp_path / "out")
    fill(store, plan, {"BPR": {"recall@10": [0.1, 0.2, 0.15], "ndcg@10": [0.1, 0.1, 0.2]}})
    summary, tables = write_tables(plan, store, tmp_path / "out")
    for name in ("main.md", "main.tex", "main.csv", "efficiency.md", "efficiency.tex", "efficiency.csv"):
        assert (tmp_path / "out" / "tables" / name).stat().st_size > 0
    assert "GLTA (not run)" in summary and "LightGCN (not run)" in summary
    eff = (tmp_path / "out" / "tables" / "efficiency.md").read_text()
    assert "| BPR | 2.00 | 2 | 10.0 | 502 | 1.23K | 2.50M |" in eff
    written = write_plots(plan, store, tmp_path / "out", tables=tables)
    names = {p.name for p in written}
    assert {"bars_recall_at_10.png", "bars_recall_at_10.svg", "overview_tiny.png", "fig3.png", "fig3.svg"} <= names
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "out" / "plots" / "fig3.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_dry_run_reports_missing_model(tmp_path, capsys, monkeypatch):
    from conftest import write_tiny_dataset
    from recbole_llm.benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    write_tiny_dataset(tmp_path / "data")
    d = suite_dict(config={"data_path": str(tmp_path / "data")},
                   groups=[{"name": "B", "models": ["BPR"]}, {"name": "O", "ours": True, "models": ["NoSuchModel"]}])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    assert main(["--suite", str(tmp_path / "s.yaml"), "--dry-run", "--only", "BPR"]) == 0
    out = capsys.readouterr().out
    assert "MISSING: NoSuchModel" in out and "missing      NoSuchModel" in out
    assert out.count("* new") == 3 and "results: benchmarks/results/tiny" in out
    assert main(["--suite", str(tmp_path / "nope.yaml")]) == 2


@pytest.mark.slow
def test_real_tiny_run_through_the_cli(tmp_path, capsys, monkeypatch):
    """One real RecBole run (BPR on a tiny dataset) in a subprocess, from the CLI."""
    from conftest import write_tiny_dataset
    from recbole_llm.benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data")
    d = suite_dict(seeds=[2020], config={"data_path": str(tmp_path / "data"), "epochs": 2, "embedding_size": 8,
                                         "train_batch_size": 256, "state": "WARNING", "metric_decimal_place": 12},
                   groups=[{"name": "B", "models": ["BPR"]}, {"name": "O", "ours": True, "models": ["NoSuchModel"]}])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    rc = main(["--suite", str(tmp_path / "s.yaml"), "--results-dir", "res", "--no-progress", "--no-plots", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = ResultsStore(tmp_path / "res").rows()[0]
    assert row["status"] == "finished", row["error"]
    # The store holds what this run really measured: the same run done here, in this process,
    # gives the same numbers (and the same best epoch).
    from recbole_llm.quick_start import run_experiment

    [run] = [r for r in plan_suite(load_suite(str(tmp_path / "s.yaml"))).runs if r.status == "ready"]
    assert (run.model, run.seed, row["key"]) == ("BPR", 2020, run.key)
    ref = run_experiment(run.model, run.dataset, config_file_list=run.config_files or None,
                         config_dict=dict(run.config_dict, checkpoint_dir=str(tmp_path / "ref")), saved=True)
    assert set(row["test"]) == {"recall@10", "ndcg@10"}
    assert row["test"] == pytest.approx(dict(ref["test_result"]), abs=1e-9, rel=0)
    assert row["valid"] == pytest.approx(dict(ref["best_valid_result"]), abs=1e-9, rel=0)
    assert row["best_valid_score"] == pytest.approx(ref["best_valid_score"], abs=1e-9, rel=0)
    assert row["best_epoch"] == ref["stats"]["best_epoch"] and len(row["epoch_times"]) == 2
    assert row["peak_rss_mb"] > 100 and row["trainable_params"] == row["total_params"] > 0
    assert row["versions"]["recbole"] == "1.2.1" and row["config"]["model"] == "BPR"
    assert "| NoSuchModel (missing) |" in (tmp_path / "res" / "tables" / "main.md").read_text()
    # A second invocation skips the finished run.
    assert main(["--suite", str(tmp_path / "s.yaml"), "--results-dir", "res", "--no-progress", "--no-plots"]) == 0
    assert "already done 1" in capsys.readouterr().out


# -- tests against the reference row (per-user Wilcoxon, seed t-test, Holm) ----------------------
def test_holm_equals_a_hand_computation():
    # sorted: 0.01 x4 = 0.04; 0.03 x3 = 0.09; 0.04 x2 = 0.08 -> 0.09 (monotone); 0.5 x1 = 0.5; nan not counted
    adjusted = stats.holm([0.04, 0.01, 0.5, float("nan"), 0.03])
    assert [round(p, 12) for p in adjusted[:3]] == [0.09, 0.04, 0.5] and math.isnan(adjusted[3])
    assert math.isclose(adjusted[4], 0.09)
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1


def _per_user(seed, label, users=40):
    """Deterministic per-user values, different per model and seed."""
    import random

    rng = random.Random(f"{label}-{seed}")
    return {f"u{i}": rng.random() * (1.5 if label == "GLTA" else 1.0) for i in range(users)}


def test_reference_tests_use_the_stored_per_user_vectors(fake_env, tmp_path):
    from scipy.stats import ttest_rel, wilcoxon

    from recbole_llm.benchmark.tables import reference_markdown, write_tables

    d = suite_dict(reference="BPR")
    plan = plan_suite(parse_suite(d), available={"BPR", "LightGCN", "GLTA"}, resolver=fake_resolver, data_check=False)
    store = ResultsStore(tmp_path / "r")
    owner = make_owner()
    vectors = {}
    for r in plan.ready():
        vec = _per_user(r.seed, r.label, users=40 if r.label != "LightGCN" else 35)  # LightGCN: fewer users
        vectors[(r.label, r.seed)] = vec
        users = sorted(vec)
        store.claim(r.key, owner)
        store.finish(r.key, owner, {"test": {"ndcg@10": sum(vec.values()) / len(vec), "recall@10": 0.1 + r.seed / 100},
                                    "per_user": {"users": users, "metrics": {"ndcg@10": [vec[u] for u in users]}}})
    # the store returns exactly what it was given
    some = plan.ready()[0]
    back = store.per_user(some.key)
    assert dict(zip(back["users"], back["metrics"]["ndcg@10"])) == vectors[(some.label, some.seed)]

    t = collect(plan, store)
    tests = {(e["row"], e["column"][1]): e for e in t.reference_tests}
    assert {row for row, _ in tests} == {"LightGCN", "GLTA"} and all(e["reference"] == "BPR" for e in tests.values())
    seeds = plan.suite.seeds
    p_users = {}
    for label in ("LightGCN", "GLTA"):
        e = tests[(label, "ndcg@10")]
        mean = lambda lab: {u: sum(vectors[(lab, s)][u] for s in seeds) / 3 for u in vectors[(lab, seeds[0])]}
        a, b = mean(label), mean("BPR")
        common = sorted(set(a) & set(b))
        ref = wilcoxon([a[u] for u in common], [b[u] for u in common])
        assert e["users"] == len(common) and math.isclose(e["p_users"], ref.pvalue)
        seed_ref = ttest_rel([sum(vectors[(label, s)].values()) / len(vectors[(label, s)]) for s in seeds],
                             [sum(vectors[("BPR", s)].values()) / 40 for s in seeds])
        assert math.isclose(e["p_seeds"], seed_ref.pvalue)
        p_users[label] = e["p_users"]
    # Holm over the two rows of the column
    lo, hi = sorted(p_users.values())
    holm = {lab: (min(1, 2 * lo) if p == lo else max(min(1, 2 * lo), min(1, hi))) for lab, p in p_users.items()}
    for label in p_users:
        assert math.isclose(tests[(label, "ndcg@10")]["p_users_holm"], holm[label])
    # recall@10 has no per-user vectors: said so, not invented
    assert tests[("GLTA", "recall@10")]["note"] == "no per-user metrics stored"
    assert math.isnan(tests[("GLTA", "recall@10")]["p_users"])
    md = reference_markdown(t)
    assert "| Tiny N@10 | GLTA | BPR |" in md
    summary, _ = write_tables(plan, store, tmp_path / "out")
    assert "Wilcoxon signed-rank test over users" in summary and "Holm" in summary
    assert (tmp_path / "out" / "tables" / "main_significance.md").is_file()


def test_named_suite_protocol_and_unknown_reference():
    from recbole_llm.protocol import load_protocol

    suite = parse_suite(suite_dict(protocol="loo_time", columns=["ndcg@10"]))
    assert suite.protocol["protocol"] == "loo_time"
    assert suite.protocol["eval_args"] == load_protocol("loo_time")["eval_args"]
    with pytest.raises(SuiteError, match="no_such"):
        parse_suite(suite_dict(protocol="no_such"))
    with pytest.raises(SuiteError, match="reference 'Nope' is not a row label"):
        parse_suite(suite_dict(reference="Nope"))


# -- rows built on other rows: checkpoints: {SETTING: ROW} and on_trained -------------------------
CKPT_MODULE = '''
import json, os
from pathlib import Path

def _log(cfg, entry):
    with open(cfg["fake"]["log"], "a") as fh:
        fh.write(json.dumps(entry) + "\\n")

def train(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    cfg = dict(config_dict)
    used = {k: json.loads(Path(cfg[k]).read_text()) for k in ("graph_ckpt",) if cfg.get(k)}
    folder = Path(cfg["checkpoint_dir"]) / "run"
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / f"{model}.pth"
    ckpt.write_text(json.dumps({"model": model, "seed": cfg["seed"], "scale": cfg["scale"]}))
    _log(cfg, {"fn": "train", "model": model, "seed": cfg["seed"], "used": used})
    value = cfg["scale"] * 0.1 + 0.001 * cfg["seed"]
    result = {"recall@10": value, "ndcg@10": value / 2}
    return {"best_valid_score": value, "best_valid_result": result, "test_result": result,
            "stats": {"best_epoch": 1, "epoch_times": [0.01], "saved_model_file": str(ckpt)}}

def rescore(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, trained_checkpoint=None):
    cfg = dict(config_dict)
    trained = json.loads(Path(trained_checkpoint).read_text())
    _log(cfg, {"fn": "rescore", "model": model, "seed": cfg["seed"], "trained": trained})
    value = trained["scale"] * 0.1 * cfg["factor"]
    result = {"recall@10": value, "ndcg@10": value / 2}
    return {"best_valid_score": None, "best_valid_result": None, "test_result": result,
            "stats": {"epoch_times": [], "scoring_seconds": 0.001, "rescored_from": trained_checkpoint}}
'''


def linked_suite(log, scale=1.0, seeds=(1, 2)):
    return parse_suite(suite_dict(seeds=list(seeds), config={"fake": {"log": str(log)}, "scale": scale, "factor": 1.0},
                                  groups=[{"name": "B", "models": ["LightGCN"]},
                                          {"name": "O", "ours": True, "models": [
                                              {"label": "FL", "on_trained": "GLTA", "config": {"factor": 0.5}},
                                              {"model": "GLTA", "checkpoints": {"graph_ckpt": "LightGCN"}}]}]))


@pytest.fixture
def ckpt_env(tmp_path, monkeypatch):
    return _fake_module(tmp_path, monkeypatch, "fakeckpt", CKPT_MODULE)


def _linked_plan(env, **kw):
    return plan_suite(linked_suite(env["log"], **kw), available={"LightGCN", "GLTA"}, resolver=fake_resolver,
                      data_check=False)


@pytest.mark.parametrize("row, message", [
    ({"label": "X", "on_trained": "Nope"}, "unknown row 'Nope'"),
    ({"label": "X", "on_trained": "FL"}, "is itself an on_trained row"),
    ({"label": "X", "on_trained": "GLTA", "model": "BPR"}, "differs from the trained row's model"),
    ({"label": "X", "on_trained": "GLTA", "tune": {"trials": 2}}, "trains nothing"),
    ({"on_trained": "GLTA"}, "needs its own 'label'"),
    ({"label": "X", "model": "BPR", "checkpoints": {"k": "FL"}}, "trains no model of its own"),
    ({"label": "X", "model": "BPR", "checkpoints": {"k": "X"}}, "trains no model of its own"),
    ({"label": "X", "model": "BPR", "config": {"k": 1}, "checkpoints": {"k": "GLTA"}}, "in one place"),
])
def test_linked_rows_get_clear_errors(row, message):
    groups = [{"name": "A", "models": ["BPR", {"model": "GLTA"}, {"label": "FL", "on_trained": "GLTA"}, row]}]
    with pytest.raises(SuiteError, match=message):
        parse_suite(suite_dict(groups=groups))
    cycle = [{"name": "A", "models": [{"label": "P", "model": "BPR", "checkpoints": {"k": "Q"}},
                                      {"label": "Q", "model": "BPR", "checkpoints": {"k": "P"}}]}]
    with pytest.raises(SuiteError, match="cycle: P -> Q -> P"):
        parse_suite(suite_dict(groups=cycle))


def test_linked_rows_are_keyed_by_the_runs_they_need(ckpt_env):
    plan = _linked_plan(ckpt_env)
    runs = {(r.label, r.seed): r for r in plan.runs}
    assert [r.label for r in plan.runs] == ["LightGCN"] * 2 + ["FL"] * 2 + ["GLTA"] * 2  # the suite's row order
    glta, fl, lgcn = runs[("GLTA", 1)], runs[("FL", 1)], runs[("LightGCN", 1)]
    assert glta.needs == {"graph_ckpt": lgcn.key} and lgcn.keep_checkpoint and glta.keep_checkpoint
    assert glta.resolved["graph_ckpt"] == {"checkpoint_of": "LightGCN", "run": lgcn.key}
    assert fl.trained_key == glta.key and fl.model == "GLTA" and fl.config_dict["factor"] == 0.5
    assert fl.resolved["benchmark_on_trained"] == glta.key and "scored again with factor: 0.5" in \
        plan.suite.variant("FL").note
    # --only FL brings the rows it needs
    assert {(r.label, r.seed) for r in with_dependencies(select_runs(plan.runs, only=["FL"]), plan.runs)
            if r.seed == 1} == {("FL", 1), ("GLTA", 1), ("LightGCN", 1)}
    # a change of the trained row (here its stage-1 row, through the suite config) changes every key after it
    other = {(r.label, r.seed): r.key for r in _linked_plan(ckpt_env, scale=2.0).runs}
    assert all(other[k] != r.key for k, r in runs.items())
    # a row that cannot run blocks the rows built on it, with the reason
    blocked = plan_suite(linked_suite(ckpt_env["log"]), available={"GLTA"}, resolver=fake_resolver, data_check=False)
    b = {r.label: r for r in blocked.runs}
    assert b["GLTA"].status == b["FL"].status == "error" and "'LightGCN', which is missing" in b["GLTA"].reason
    assert "'GLTA', which is error" in b["FL"].reason and b["FL"].key is None


def test_linked_rows_run_after_their_rows_and_rescore_without_training(ckpt_env):
    from recbole_llm.benchmark.cli import _plan_lines

    plan = _linked_plan(ckpt_env)
    store = ResultsStore(ckpt_env["results"])
    summary = run_plan(plan.runs, store, ckpt_env["results"], run_fn="fakeckpt:train", rescore_fn="fakeckpt:rescore",
                       progress=False, log=None)
    assert len(summary["finished"]) == 6
    done = [(c["fn"], c["model"], c["seed"]) for c in calls(ckpt_env)]
    assert done.index(("train", "LightGCN", 1)) < done.index(("train", "GLTA", 1)) < done.index(("rescore", "GLTA", 1))
    glta_calls = [c for c in calls(ckpt_env) if c["fn"] == "train" and c["model"] == "GLTA"]
    assert [c["used"]["graph_ckpt"] for c in glta_calls] == [{"model": "LightGCN", "seed": s, "scale": 1.0}
                                                             for s in (1, 2)]
    rows = {(r["label"], r["seed"]): r for r in store.rows()}
    fl, glta = rows[("FL", 2)], rows[("GLTA", 2)]
    assert fl["test"]["recall@10"] == pytest.approx(0.1 * 0.5) and fl["epoch_times"] == []
    assert fl["wall_time_s"] == 0.001 < fl["stage_times"]["subprocess_total"]  # the scoring alone
    assert fl["extra"]["rescored_from"] == glta["extra"]["saved_model_file"]
    assert Path(glta["extra"]["saved_model_file"]).is_file()  # kept: another row needs it
    md = to_markdown(collect(plan, store))  # one table writer: the rescored row is a row like any other
    assert "| FL | <ins>0.0500 ± 0.0000</ins> |" in md, md
    lines, _ = _plan_lines(plan, store)
    assert any("[scores GLTA's trained weights]" in line for line in lines)
    assert any("[graph_ckpt <- LightGCN]" in line for line in lines)
    # a kept checkpoint that is gone while a row still needs it: that row trains again, first
    Path(rows[("LightGCN", 1)]["extra"]["saved_model_file"]).unlink()
    store.reset(keys=[rows[("GLTA", 1)]["key"]])
    n = len(calls(ckpt_env))
    run_plan(plan.runs, store, ckpt_env["results"], run_fn="fakeckpt:train", rescore_fn="fakeckpt:rescore",
             progress=False, log=None)
    again = [(c["fn"], c["model"], c["seed"]) for c in calls(ckpt_env)[n:]]
    assert again == [("train", "LightGCN", 1), ("train", "GLTA", 1)]
    # without the row it needs among the runs, a dependent run fails saying what to do
    Path(store.get(rows[("GLTA", 2)]["key"])["extra"]["saved_model_file"]).unlink()
    store.reset(keys=[rows[("FL", 2)]["key"]])
    s = run_plan([r for r in plan.runs if r.label == "FL"], store, ckpt_env["results"], run_fn="fakeckpt:train",
                 rescore_fn="fakeckpt:rescore", progress=False, log=None)
    assert len(s["failed"]) == 1 and "--only adds them" in store.get(rows[("FL", 2)]["key"])["error"]


def test_a_run_whose_needed_run_another_runner_trains_is_left_alone(ckpt_env):
    plan = _linked_plan(ckpt_env, seeds=(1,))
    runs = {r.label: r for r in plan.runs}
    store = ResultsStore(ckpt_env["results"])
    assert store.claim(runs["LightGCN"].key, make_owner())  # a live runner (this process) trains LightGCN
    s = run_plan([runs["GLTA"]], store, ckpt_env["results"], run_fn="fakeckpt:train", rescore_fn="fakeckpt:rescore",
                 progress=False, log=None)
    assert s["taken_by_other"] == [runs["GLTA"].key] and not s["failed"] and calls(ckpt_env) == []
    assert store.get(runs["GLTA"].key)["status"] == "pending"


def test_on_trained_rescoring_of_a_real_model_equals_its_test_result(tmp_path, monkeypatch):
    """BPR trained on a tiny dataset, then its checkpoint scored again with another eval batch size (an
    inference-only setting): the same test metrics per user, no training, through the runner."""
    from conftest import write_tiny_dataset

    monkeypatch.chdir(tmp_path)  # RecBole's log/ folder
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data")
    suite = parse_suite(suite_dict(seeds=[2020], config={"data_path": str(tmp_path / "data"), "epochs": 2,
                                                         "embedding_size": 8, "train_batch_size": 256,
                                                         "state": "WARNING", "metric_decimal_place": 12},
                                   groups=[{"name": "B", "models": [
                                       "BPR", {"label": "BPR rescored", "on_trained": "BPR",
                                               "config": {"eval_batch_size": 7}}]}]))
    plan = plan_suite(suite, data_check=False)
    store = ResultsStore(tmp_path / "res")
    summary = run_plan(plan.runs, store, tmp_path / "res", isolate=False, progress=False, log=None)
    assert len(summary["finished"]) == 2, summary
    rows = {r["label"]: r for r in store.rows()}
    trained, again = rows["BPR"], rows["BPR rescored"]
    assert again["config"]["eval_batch_size"] == 7 and again["config"]["benchmark_on_trained"] == trained["key"]
    assert again["test"] == pytest.approx(trained["test"], abs=1e-12, rel=0) and trained["test"]["ndcg@10"] > 0
    assert store.per_user(again["key"]) == store.per_user(trained["key"])
    assert again["epoch_times"] == [] and again["valid"] == {} and len(trained["epoch_times"]) == 2
    assert again["wall_time_s"] == pytest.approx(again["stage_times"]["test"])
    assert again["extra"]["rescored_from"] == trained["extra"]["saved_model_file"]


def test_fold_suites_train_their_stage_one_rows_as_the_models_do():
    """glta_ml100k's LightGCN row is GLTA's stage 1 (GLTA.yaml's glta_graph_*), hellm_ml100k's stage-1 rows
    have the settings HeLLM's trainer gives its HeLLMPre and SASRec: a change of a model's YAML shows here."""
    from recbole_llm.benchmark.suite import resolve_config
    from recbole_llm.models.glta.settings import GLTA_SETTINGS
    from recbole_llm.models.glta.trainer import graph_overrides
    from recbole_llm.models.hellm.settings import GRAPH_STAGE, HELLM_SETTINGS, HELLMPRE_SETTINGS, SASREC_STAGE

    glta = load_suite("glta_ml100k")
    cfg = resolve_config("GLTA", "ml-100k", [], dict(glta.protocol))
    want = {**graph_overrides(GLTA_SETTINGS.read(cfg)), "train_batch_size": cfg["train_batch_size"]}
    assert glta.variant("LightGCN").config == want
    assert {v.label for v in glta.variants if v.checkpoints == {"glta_graph_checkpoint": "LightGCN"}} == {
        "GLTA", "w/o IA", "w/o UA", "w/o PF", "w/o PD", "GLTA probe only"}
    assert {v.label: v.config for v in glta.variants if v.on_trained == "GLTA"} == {
        "AR": {"glta_inference": "autoregressive"}, "FL": {"glta_inference": "first_logit"}}

    hellm = load_suite("hellm_ml100k")
    plan = plan_suite(hellm, data_check=False)
    cfg = resolve_config("HeLLM", "ml-100k", [], dict(hellm.protocol))
    s = HELLM_SETTINGS.read(cfg)
    stage = {"HeLLMPre (HeLLM stage 1)": {**GRAPH_STAGE.overrides(cfg), **{k: cfg[k] for k in HELLMPRE_SETTINGS.keys}},
             "SASRec (HeLLM stage 1)": {**SASREC_STAGE.overrides(s, hidden_size=cfg["embedding_size"]),
                                        "MAX_ITEM_LIST_LENGTH": s.max_history, "train_neg_sample_args": None}}
    for label, settings in stage.items():
        [run] = [r for r in plan.runs if r.label == label]
        ref = canonical_config(resolve_config(run.model, "ml-100k", [], {**hellm.protocol, **settings}))
        assert {k: run.resolved[k] for k in settings} == {k: ref[k] for k in settings}, label
    [run] = [r for r in plan.runs if r.label == "HeLLM"]
    assert set(run.needs) == {"hellm_graph_checkpoint", "hellm_sasrec_checkpoint"}


def test_glta_rows_on_a_lightgcn_checkpoint_and_rescored_on_trained(tmp_path):
    """The glta_ml100k pattern on tiny data, real models in this process: GLTA's stage 1 is the LightGCN
    row's kept checkpoint (not trained again), and its trained weights, reloaded from the checkpoint,
    score exactly its own test result with an inference-neutral change and differently with first_logit."""
    from conftest import glta_tiny_config, tiny_llm_env

    with tiny_llm_env(tmp_path) as root:
        cfg = glta_tiny_config(root, state="WARNING")
        for key in ("eval_args", "metrics", "topk", "valid_metric", "seed", "checkpoint_dir"):
            cfg.pop(key, None)
        graph = {"epochs": 2, "learning_rate": 0.01, "embedding_size": 64, "n_layers": 2, "train_batch_size": 256}
        suite = parse_suite(suite_dict(seeds=[2020], config=cfg, groups=[{"name": "G", "models": [
            {"label": "LightGCN", "model": "LightGCN", "config": graph},
            {"label": "GLTA", "model": "GLTA", "checkpoints": {"glta_graph_checkpoint": "LightGCN"}},
            {"label": "GLTA reloaded", "on_trained": "GLTA", "config": {"eval_batch_size": 7}},
            {"label": "FL", "on_trained": "GLTA", "config": {"glta_inference": "first_logit"}}]}]))
        plan = plan_suite(suite, data_check=False)
        assert [r.status for r in plan.runs] == ["ready"] * 4, [r.reason for r in plan.runs]
        store = ResultsStore(root / "res")
        import recbole_llm.training.pretrain as pretrain

        with pytest.MonkeyPatch.context() as mp:  # GLTA's stage 1 must come from the row, not be trained
            mp.setattr(pretrain._LoggedTrainer, "fit", lambda *a, **k: pytest.fail("GLTA trained its own LightGCN"))
            summary = run_plan(plan.runs, store, root / "res", isolate=False, progress=False, log=None)
        rows = {r["label"]: r for r in store.rows()}
        assert len(summary["finished"]) == 4, {k: r["error"] for k, r in rows.items()}
    glta, again, fl = rows["GLTA"], rows["GLTA reloaded"], rows["FL"]
    assert glta["config"]["glta_graph_checkpoint"] == {"checkpoint_of": "LightGCN", "run": rows["LightGCN"]["key"]}
    assert again["test"] == pytest.approx(glta["test"], abs=1e-12, rel=0)
    assert store.per_user(again["key"]) == store.per_user(glta["key"])
    assert fl["test"] != again["test"] and fl["config"]["glta_inference"] == "first_logit"
    assert fl["epoch_times"] == [] and fl["extra"]["rescored_from"] == glta["extra"]["saved_model_file"]


@pytest.mark.slow  # three real trainings with a tiny LLM: 18 s at load 9 on the 2 shared cores
def test_hellm_takes_its_stage_one_from_the_rows_it_names(tmp_path):
    """The hellm_ml100k pattern on tiny data, in this process: HeLLMPre and SASRec trained as rows with
    HeLLM's stage-1 settings; HeLLM accepts their checkpoints (same training interactions) and trains no
    stage-1 model of its own."""
    from conftest import tiny_llm_env
    from test_hellm import tiny_config

    with tiny_llm_env(tmp_path) as root:
        cfg = tiny_config(root, state="WARNING", hellm_epochs=1, hellm_samples_per_epoch=32, hellm_graph_epochs=1,
                          hellm_sasrec_epochs=1)
        for key in ("eval_args", "metrics", "topk", "valid_metric", "seed", "checkpoint_dir"):
            cfg.pop(key, None)
        from recbole_llm.benchmark.suite import resolve_config
        from recbole_llm.models.hellm.settings import GRAPH_STAGE, HELLM_SETTINGS, SASREC_STAGE

        protocol = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
                    "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10"}
        hc = resolve_config("HeLLM", "tiny", [], {**cfg, **protocol})
        s = HELLM_SETTINGS.read(hc)
        sasrec = {**SASREC_STAGE.overrides(s, hidden_size=hc["embedding_size"]), "MAX_ITEM_LIST_LENGTH": s.max_history,
                  "train_neg_sample_args": None}
        suite = parse_suite(suite_dict(seeds=[2020], protocol=protocol, config=cfg, groups=[{"name": "H", "models": [
            {"label": "Pre", "model": "HeLLMPre", "config": GRAPH_STAGE.overrides(hc)},
            {"label": "Seq", "model": "SASRec", "config": sasrec},
            {"label": "HeLLM", "model": "HeLLM",
             "checkpoints": {"hellm_graph_checkpoint": "Pre", "hellm_sasrec_checkpoint": "Seq"}}]}]))
        plan = plan_suite(suite, data_check=False)
        assert [r.status for r in plan.runs] == ["ready"] * 3, [r.reason for r in plan.runs]
        store = ResultsStore(root / "res")
        import recbole_llm.training.pretrain as pretrain

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pretrain._LoggedTrainer, "fit", lambda *a, **k: pytest.fail("HeLLM trained its own stage 1"))
            summary = run_plan(plan.runs, store, root / "res", isolate=False, progress=False, log=None)
        rows = {r["label"]: r for r in store.rows()}
        assert len(summary["finished"]) == 3, {k: r["error"] for k, r in rows.items()}
    assert rows["HeLLM"]["test"]["ndcg@10"] >= 0 and rows["HeLLM"]["config"]["hellm_sasrec_checkpoint"]["run"] == \
        rows["Seq"]["key"]
