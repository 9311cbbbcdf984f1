"""Benchmark suites at paper scale and with tuned rows (issues 21.3, 22.3): ``--scale paper`` loads each
row's ``*-paper.yaml`` (plans only: nothing heavy is trained), is refused without CUDA unless forced,
keeps its runs apart from the CPU ones and names scale and backbone in every caption; a ``tune:`` row
is tuned on validation (2 trials on tiny data), its seeds run with the best configuration, and every
table shows each row's tuning budget with a warning when budgets differ by more than 2x."""

import csv
import io
import json

import pytest
import yaml

from recbole_llm.benchmark import cli
from recbole_llm.benchmark.runner import run_plan, run_tunings, tuned_params
from recbole_llm.benchmark.store import ResultsStore
from recbole_llm.benchmark.suite import SuiteError, parse_suite, plan_suite
from recbole_llm.benchmark.tables import (Row, Table, budget_warning, check_latex_structure, collect, to_csv,
                                          to_latex, to_markdown)
from recbole_llm.paths import properties_dir

PROTOCOL = {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
            "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10"}


def suite_dict(**over):
    d = {"name": "scale", "title": "Scale suite", "seeds": [1], "protocol": PROTOCOL,
         "config": {"stopping_step": 10, "epochs": 300, "train_batch_size": 4096},
         "datasets": ["ml-100k"],
         "groups": [{"name": "Baselines", "models": ["LightGCN"]},
                    {"name": "Ours", "ours": True,
                     "models": ["GLTA", {"label": "GLTA w/o IA", "model": "GLTA", "config": {"glta_ia_epochs": 0}}]}]}
    d.update(over)
    return d


@pytest.fixture(scope="module")
def plans():
    """The same suite planned at both scales with the real config resolver (no data, no weights)."""
    suite = parse_suite(suite_dict())
    return {scale: plan_suite(suite, scale=scale) for scale in ("cpu", "paper")}


def _by_label(plan):
    return {r.label: r for r in plan.runs}


# -- scale --------------------------------------------------------------------------------------
def test_paper_scale_loads_each_rows_paper_config_and_only_there(plans):
    cpu, paper = _by_label(plans["cpu"]), _by_label(plans["paper"])
    assert all(r.status == "ready" for r in plans["paper"].runs), [(r.label, r.reason) for r in plans["paper"].runs]
    glta_paper = str(properties_dir() / "model" / "GLTA-paper.yaml")
    assert paper["GLTA"].config_files == [glta_paper] and paper["GLTA"].paper_config == glta_paper
    assert paper["GLTA w/o IA"].config_files == [glta_paper]
    assert paper["LightGCN"].config_files == [] and not paper["LightGCN"].paper_config  # no LightGCN-paper.yaml
    assert all(r.config_files == [] for r in plans["cpu"].runs)
    paper_file = yaml.safe_load(open(glta_paper))
    g = paper["GLTA"].resolved
    assert g["llm_path"] == paper_file["llm_path"] == "TheBloke/Llama-2-7B-GPTQ" and cpu["GLTA"].resolved["llm_path"] == ""
    # the paper file's settings beat the suite's config (a CPU budget must not shrink a paper run) ...
    assert g["stopping_step"] == paper_file["stopping_step"] != 10
    assert g["train_batch_size"] == paper_file["train_batch_size"] != 4096
    assert "stopping_step" not in paper["GLTA"].config_dict and paper["LightGCN"].config_dict["stopping_step"] == 10
    # ... while a row's own config (an ablation switch) and the protocol beat the paper file
    assert paper["GLTA w/o IA"].resolved["glta_ia_epochs"] == 0 and g["glta_ia_epochs"] == paper_file["glta_ia_epochs"]
    assert g["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]}


def test_scale_is_part_of_the_run_identity(plans):
    cpu, paper = _by_label(plans["cpu"]), _by_label(plans["paper"])
    for label in cpu:
        assert cpu[label].key != paper[label].key
    # LightGCN resolves to the same settings at both scales; only the scale keeps the runs apart
    a, b = dict(cpu["LightGCN"].resolved), dict(paper["LightGCN"].resolved)
    assert b.pop("benchmark_scale") == "paper" and a == b and "benchmark_scale" not in a
    # the CPU scale is the default and keys exactly as before scales existed
    assert [r.key for r in plan_suite(plans["cpu"].suite).runs] == [r.key for r in plans["cpu"].runs]
    with pytest.raises(SuiteError, match="unknown scale 'gpu'"):
        plan_suite(plans["cpu"].suite, scale="gpu")


def test_captions_name_scale_and_backbone(plans, tmp_path):
    store = ResultsStore(tmp_path / "res")
    cpu = collect(plans["cpu"], store)
    assert cpu.caption == "Scale suite"
    assert cpu.caption_notes == ["Scale: cpu (every row runs its CPU defaults, properties/model/<Model>.yaml); LLM "
                                 "backbone: SmolLM2-135M-Instruct (embedded) for GLTA, GLTA w/o IA; no LLM in the other "
                                 "rows."]
    paper = collect(plans["paper"], store)
    assert paper.caption_notes == ["Scale: paper (GLTA, GLTA w/o IA run their *-paper.yaml; LightGCN their defaults); "
                                   "LLM backbone: TheBloke/Llama-2-7B-GPTQ for GLTA, GLTA w/o IA; no LLM in the other rows."]
    md, tex = to_markdown(paper), to_latex(paper)
    assert "Scale: paper (GLTA, GLTA w/o IA run their \\*-paper.yaml" in md
    assert "\\caption{Scale suite. Scale: paper" in tex and "TheBloke/Llama-2-7B-GPTQ for GLTA" in tex
    assert not check_latex_structure(tex)
    assert "| Model | R@10 | N@10 | Tuning |" in md  # every table shows the budgets; no row here is tuned
    assert all(line.endswith("| - |") for line in md.splitlines() if line.startswith("| GLTA") or line.startswith("| Light"))
    assert "Warning" not in md


def _write_suite(tmp_path, **over):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite_dict(**over)))
    return path


def test_paper_scale_is_refused_without_cuda_unless_forced(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "cuda_available", lambda: False)
    path = _write_suite(tmp_path, datasets=["no-such-data"])  # nothing can run: --force only passes the gate
    assert cli.main(["--suite", str(path), "--scale", "paper"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scale paper" in err and "no CUDA device" in err and "--force" in err
    assert not (tmp_path / "benchmarks").exists()
    # looking is allowed: the dry run lists which rows load a paper config
    assert cli.main(["--suite", str(path), "--scale", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "scale paper: GLTA <- GLTA-paper.yaml, GLTA w/o IA <- GLTA-paper.yaml" in out
    assert "no paper config (their defaults): LightGCN" in out and "benchmarks/results/scale-paper" in out
    # --force runs it (here: nothing runnable) into the paper scale's own folder
    assert cli.main(["--suite", str(path), "--scale", "paper", "--force", "--no-plots", "--no-progress"]) == 0
    capsys.readouterr()
    main_md = (tmp_path / "benchmarks" / "results" / "scale-paper" / "tables" / "main.md").read_text()
    assert "Scale: paper (GLTA, GLTA w/o IA run their" in main_md
    # a machine with CUDA is not asked for --force
    monkeypatch.setattr(cli, "cuda_available", lambda: True)
    assert cli.main(["--suite", str(path), "--scale", "paper", "--no-plots", "--no-progress"]) == 0
    assert cli.main(["--suite", str(path), "--scale", "cpu", "--no-plots", "--no-progress"]) == 0
    capsys.readouterr()
    assert "Scale: cpu" in (tmp_path / "benchmarks" / "results" / "scale" / "tables" / "main.md").read_text()


# -- tuned rows ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tune, message", [
    ({}, "give trials: N or budget_hours: H"),
    ({"trials": 0}, "tune.trials: expected an integer >= 1"),
    ({"budget_hours": -1}, "tune.budget_hours: expected a number > 0"),
    ({"trials": 2, "epochs": 3}, "unknown key(s) ['epochs']"),
    ({"trials": 2, "space": "nope.yaml"}, "nope.yaml does not exist"),
])
def test_bad_tune_specs_get_clear_errors(tune, message):
    with pytest.raises(SuiteError) as err:
        parse_suite(suite_dict(tune=tune))
    assert message in str(err.value)


def test_suite_tune_applies_to_every_row_unless_a_row_opts_out():
    d = suite_dict(tune={"trials": 3}, groups=[{"name": "B", "models": ["LightGCN", {"model": "BPR", "tune": False}]},
                                               {"name": "O", "models": [{"model": "GLTA", "tune": {"budget_hours": 0.5}}]}])
    suite = parse_suite(d)
    assert suite.variant("LightGCN").tune == {"trials": 3, "budget_hours": None, "space": None}
    assert suite.variant("BPR").tune is None
    assert suite.variant("GLTA").tune == {"trials": None, "budget_hours": 0.5, "space": None}


def _row(label, seconds=None, trials=0):
    budget = None if seconds is None else {"trials": trials, "seconds": seconds, "unit": "CPU-s", "pending": 0, "spec": {}}
    return Row(label=label, model=label, group="g", ours=False, status="ok", budget=budget)


@pytest.mark.parametrize("budgets, warned", [
    ([(100.0, 5), (150.0, 5)], None), ([(100.0, 5), (200.0, 10)], None), ([(100.0, 5), (201.0, 5)], ("time", "B", "A")),
    ([(100.0, 5), (110.0, 11)], ("trials", "B", "A")), ([(100.0, 5), None], ("time", "A", "B")), ([None, None], None),
])
def test_the_caption_warns_when_budgets_differ_by_more_than_2x(budgets, warned):
    rows = [_row(label, *(b or (None,))) for label, b in zip("AB", budgets)]
    table = Table(name="main", caption="c", kind="main", suite="s", datasets=[], metrics=[], metric_labels={},
                  groups=[("g", False, rows)])
    text = budget_warning(table)
    if warned is None:
        assert text == ""
    else:
        what, high, low = warned
        assert text.startswith(f"Warning: tuning budgets differ by more than 2x ({what}): {high} ") and f" vs {low} " in text


SPACE = "fixed: {stopping_step: 100}\nsearch:\n  learning_rate: {loguniform: [1.0e-3, 5.0e-2]}\n"


def test_a_tuned_row_runs_its_seeds_with_the_best_configuration(tiny_data, capsys):
    (tiny_data / "space.yaml").write_text(SPACE)
    config = {"data_path": str(tiny_data / "data"), "epochs": 1, "embedding_size": 8, "train_batch_size": 256,
              "eval_batch_size": 4096, "state": "WARNING", "show_progress": False}
    d = suite_dict(name="tuned", seeds=[2020], config=config, datasets=["tiny"],
                   protocol=dict(PROTOCOL, metrics=["NDCG"]),
                   groups=[{"name": "B", "models": [{"label": "BPR tuned", "model": "BPR",
                                                     "tune": {"trials": 2, "space": "space.yaml"}},
                                                    {"label": "BPR", "model": "BPR"}]}])
    path = tiny_data / "tuned.yaml"
    path.write_text(yaml.safe_dump(d))
    from recbole_llm.benchmark.suite import load_suite

    suite = load_suite(str(path))
    # the dry run lists the tuning and the runs that wait for it
    assert cli.main(["--suite", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "* tune new       BPR tuned" in out and out.count("* tune-pending BPR tuned") == 1
    assert "states: new=1, tune-pending=1" in out
    results = tiny_data / "res"
    store = ResultsStore(results)
    plan = plan_suite(suite, tuned=tuned_params(store))
    [task] = plan.tunings.values()
    assert [r.status for r in plan.runs if r.label == "BPR tuned"] == ["tune-pending"]
    assert task.config_dict["seed"] == 2020 and "learning_rate" not in task.config_dict
    done = run_tunings(plan, store, results, log=lambda *a: None)
    assert done["finished"] == [task.key]
    record = store.get(task.key)
    tune = record["extra"]["tune"]
    assert record["status"] == "finished" and record["seed"] is None
    import torch

    gpu = torch.cuda.is_available()  # trials on a GPU count GPU-seconds (their wall time), else CPU-seconds
    unit = "GPU-s" if gpu else "CPU-s"
    assert tune["trials"] == 2 and tune["device"] == ("cuda" if gpu else "cpu")
    assert tune["seconds"] == (tune["wall_s"] if gpu else tune["cpu_s"]) > 0
    summary = json.loads((results / "tune" / task.key / "summary.json").read_text())
    assert summary["best_config"]["learning_rate"] == tune["params"]["learning_rate"]
    assert summary["trials_complete"] + summary["trials_pruned"] == 2
    # a second call finds it finished: nothing is tuned twice
    assert run_tunings(plan, store, results, log=lambda *a: None) == {"finished": [], "failed": [], "skipped": []}

    plan = plan_suite(suite, tuned=tuned_params(store))
    tuned = [r for r in plan.runs if r.label == "BPR tuned"]
    assert [r.status for r in tuned] == ["ready"]
    assert all(r.config_dict["learning_rate"] == tune["params"]["learning_rate"] for r in tuned)
    assert all(r.resolved["learning_rate"] == tune["params"]["learning_rate"] for r in tuned)
    assert all(r.config_dict["stopping_step"] == 100 for r in tuned)  # the space's fixed part, as in the trials
    summary = run_plan(tuned, store, results, run_fn="recbole_llm.quick_start:run_experiment", isolate=False,
                       progress=False, log=lambda *a: None)  # the untuned row stays unrun: its budget shows all the same
    assert len(summary["finished"]) == 1 and not summary["failed"]
    assert store.get(tuned[0].key)["config"]["learning_rate"] == tune["params"]["learning_rate"]

    table = collect(plan, store)
    rows = {r.label: r for r in table.rows}
    assert rows["BPR tuned"].budget["trials"] == 2 and rows["BPR"].budget is None
    assert rows["BPR tuned"].status == "ok" and rows["BPR"].status == "pending"
    md = to_markdown(table)
    assert "| Model | N@10 | Tuning |" in md
    assert f"| 2 trials, {tune['seconds']:.0f} {unit} |" in md and md.rstrip().count("| - |") == 1
    assert "Warning: tuning budgets differ by more than 2x (time): BPR tuned 2 trials" in md and "vs BPR -" in md
    assert "| BPR (not run) | – | - |" in md
    tex = to_latex(table)
    assert not check_latex_structure(tex) and "Tuning" in tex
    from recbole_llm.benchmark.tables import runs_csv

    runs = {line["key"]: line for line in csv.DictReader(io.StringIO(runs_csv(plan, store)))}
    assert runs[task.key]["model_label"] == "BPR tuned (tuning)" and runs[task.key]["status"] == "finished"
    assert runs[tuned[0].key]["status"] == "finished" and len(runs) == 3
    [head, *body] = list(csv.reader(io.StringIO(to_csv(table))))
    assert head[-3:] == ["tuning_trials", "tuning_seconds", "tuning_unit"]
    assert [line[-3:] for line in body] == [["2", repr(float(tune["seconds"])), unit], ["", "", ""]]


def test_a_caption_says_which_backbones_are_unknown(tmp_path):
    suite = parse_suite(suite_dict(datasets=["no-such-data"]))
    plan = plan_suite(suite, scale="paper")
    assert {r.status for r in plan.runs} == {"no-data"}
    [note] = collect(plan, ResultsStore(tmp_path / "res")).caption_notes
    assert note == ("Scale: paper (GLTA, GLTA w/o IA run their *-paper.yaml; LightGCN their defaults); backbone unknown "
                    "(no run resolved: no data, not registered or a config error): LightGCN, GLTA, GLTA w/o IA.")


def test_the_cpu_suite_plans_at_paper_scale(tmp_path, monkeypatch):
    """Each LLM row's paper config resolves inside a shipped suite (cpu_ml100k: every LLM model on ml-100k,
    one seed) with the suite's overrides, and the paper-scale keys never equal the CPU ones."""
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    from recbole_llm.benchmark.suite import load_suite

    suite = load_suite("cpu_ml100k")
    paper, cpu = plan_suite(suite, seeds=[2020], scale="paper"), plan_suite(suite, seeds=[2020])
    assert [(r.label, r.status) for r in paper.runs] == [(r.label, r.status) for r in cpu.runs]
    assert {r.label for r in paper.runs if r.paper_config and r.status == "ready"} == {
        "RLMRec-Con", "CoLLM", "LLaRA", "GLTA", "HeLLM"}
    assert not {r.key for r in cpu.runs} & {r.key for r in paper.runs}
    by_label = {r.label: r for r in paper.runs}
    # cpu_ml100k's model_config shrinks RLMRec-Con's profiles for the CPU: the paper file wins at paper scale
    assert by_label["RLMRec-Con"].resolved["rlmrec_profile_source"] == "generated"
    assert {r.label: r.resolved["rlmrec_profile_source"] for r in cpu.runs if r.label == "RLMRec-Con"} == {
        "RLMRec-Con": "generated_users"}
