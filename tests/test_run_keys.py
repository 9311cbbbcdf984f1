"""Run keys of staged trainers: every setting that changes results is in, nothing else
(``recbole_llm.training.staged.RUN_KEY_EXCLUDE``), and an unfinished run rerun with a changed
result-affecting setting is refused (exit 2, naming the key) instead of resumed half applied."""

import importlib
import json
import shutil
from pathlib import Path

import pytest

from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config
from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str
from recbole_llm.training.staged import RUN_KEY_EXCLUDE, run_key_of, run_settings

from conftest import cli_error_line as _cli, glta_cli_args as _glta_args, glta_tiny_config, write_tiny_dataset

#: Settings modules holding the schemas of the staged models, and the model whose resolved config
#: holds each schema's keys (HeLLMPre's keys are HeLLM's pretraining block, LLM's are every LLM model's).
SCHEMA_MODULES = ("recbole_llm.llm.loading", "recbole_llm.models.glta.settings",
                  "recbole_llm.models.hellm.settings", "recbole_llm.models.graph_attentive_gpt2.settings",
                  "recbole_llm.models.collm.settings", "recbole_llm.models.llara.settings",
                  "recbole_llm.models.unisrec.settings", "recbole_llm.models.rlmrec.settings")
RESOLVED_AS = {"LLM": "GLTA", "HeLLMPre": "HeLLM"}
#: RecBole and shared keys that change what a run computes (a sample; all of them are in the key).
SHARED_RESULT_KEYS = {"learning_rate": 0.000123, "learner": "sgd", "item_text_template": "{genre}!",
                      "history_mask": "none", "epochs": 13, "seed": 12345, "train_batch_size": 77,
                      "eval_args": {"split": {"RS": [0.7, 0.2, 0.1]}, "order": "RO", "group_by": "user",
                                    "mode": "full"}}


def _schemas():
    found = []
    for name in SCHEMA_MODULES:
        module = importlib.import_module(name)
        found += [v for v in vars(module).values() if isinstance(v, Settings)]
    return found


SCHEMAS = _schemas()


def _other_value(spec, value):
    """A valid value of ``spec`` other than ``value``; None where the spec allows no other."""
    if isinstance(spec, Choice):
        others = [c for c in spec.choices if c != value]
        return others[0] if others else None
    if isinstance(spec, Bool):
        return not value
    if isinstance(spec, (Int, Float)):
        value = value if value is not None else (spec.min if spec.min is not None else 1)
        step = 1 if isinstance(spec, Int) else max(abs(value) * 0.5, 0.01)
        return value + step if spec.max is None or value + step <= spec.max else value - step
    if isinstance(spec, Str):
        return (value or "") + "x"
    if isinstance(value, dict) or value is None and "mapping" in spec.describe():  # GraphAttentiveGPT2's StrMap
        return {**(value or {}), "x": "{x}"}
    choices = getattr(spec, "choices", None)  # list specs (GraphAttentiveGPT2's StrList)
    value = list(value or [])
    if len(value) > 1:
        return value[:-1]
    return [next(c for c in choices if c not in value)] if choices else value + ["x"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runkeys")
    write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
    return root


def _config(root, model, **changes):
    cfg = {"data_path": str(root / "data"), "checkpoint_dir": str(root / "saved"), "state": "WARNING",
           "load_col": glta_tiny_config(root)["load_col"]}
    return Config(model=model, dataset="tiny", config_dict={**cfg, **changes})


def _settings(root, model, **changes):
    return run_settings(_config(root, model, **changes))


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.model)
def test_every_result_affecting_schema_key_changes_the_run_key_and_excluded_keys_do_not(data_root, schema):
    model = RESOLVED_AS.get(schema.model, schema.model)
    base = _settings(data_root, model)
    key = run_key_of(base, ["fingerprint"])
    missing = [k for k in schema.keys if k not in base and k not in RUN_KEY_EXCLUDE]
    assert not missing, f"{schema.model} keys absent from the run settings: {missing}"
    checked, resolved = 0, _config(data_root, model)
    for name, spec in schema.keys.items():
        value = _other_value(spec, resolved[name])
        if value is None:  # a one-choice setting: nothing to change
            continue
        spec.check(name, value, schema.model)  # the changed value is a valid one
        changed = _settings(data_root, model, **{name: value})
        if name in RUN_KEY_EXCLUDE:
            assert run_key_of(changed, ["fingerprint"]) == key, name
        else:
            assert run_key_of(changed, ["fingerprint"]) != key, f"{schema.model}: {name}={value!r} keeps the run key"
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("model", ["GLTA", "HeLLM"])
def test_shared_settings_change_the_run_key_and_paths_logging_and_switches_do_not(data_root, model):
    base = _settings(data_root, model)
    key = run_key_of(base, ["fingerprint"])
    for name, value in SHARED_RESULT_KEYS.items():
        assert run_key_of(_settings(data_root, model, **{name: value}), ["fingerprint"]) != key, name
    assert run_key_of(base, ["other interactions"]) != key
    neutral = {"checkpoint_dir": str(data_root / "elsewhere"), "state": "INFO", "show_progress": True,
               "stage_resume": False, "trust_checkpoint": True, "run_id": "some-run", "stage_log_interval": 0.5,
               "llm_gguf_cache": False, "gpu_id": "1", "use_gpu": False}
    if model == "GLTA":
        neutral.update(glta_graph_cache=False, glta_gen_cache=False)
    else:
        neutral.update(hellm_graph_cache=False, hellm_sasrec_cache=False)
    assert set(neutral) <= RUN_KEY_EXCLUDE
    assert run_key_of(_settings(data_root, model, **neutral), ["fingerprint"]) == key


def test_resume_with_a_changed_setting_is_refused_naming_the_key_and_a_copied_run_folder_works_alone(
        tiny_data, capsys, monkeypatch):
    from recbole_llm.llm.testing import save_tiny_llama
    from recbole_llm.models.glta import GLTATrainer
    from recbole_llm.quick_start import run_experiment

    save_tiny_llama(tiny_data / "llm")
    with monkeypatch.context() as mp:  # killed in its first user-item epoch, after three stages
        mp.setattr(GLTATrainer, "user_item_epoch", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            cli_main(_glta_args(tiny_data))
    capsys.readouterr()
    [run_dir] = (tiny_data / "saved").glob("GLTA-tiny-*")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["completed"] == ["graph", "item_text", "generate"] and not state["finished"]
    assert state["settings"]["item_text_template"] == "{movie_title} ({genre})"
    assert not Path(state["saved_model_file"]).is_absolute()

    for key, value in (("item_text_template", "{genre}"), ("learning_rate", 0.01), ("glta_ua_epochs", 5)):
        code, line = _cli(_glta_args(tiny_data, **{key: value}), capsys)
        assert code == 2, line
        assert f"was started with other settings: {key} (" in line and str(run_dir) in line
        assert "--checkpoint_dir" in line and "delete" in line
    assert json.loads((run_dir / "state.json").read_text()) == state  # refused before touching the run

    # a copy of the run folder resumes on its own: its best model is written and reloaded in the copy
    copy = tiny_data / "copy"
    shutil.copytree(tiny_data / "saved", copy)
    result = run_experiment("GLTA", "tiny", config_dict=glta_tiny_config(tiny_data, checkpoint_dir=str(copy)))
    [copied_run] = copy.glob("GLTA-tiny-*")
    assert Path(result["stats"]["saved_model_file"]).parent == copied_run
    assert result["stats"]["stage_times"].keys() >= {"user_item"}
    assert json.loads((copied_run / "state.json").read_text())["finished"]
    assert json.loads((run_dir / "state.json").read_text()) == state  # the original is untouched
    assert not list(run_dir.glob("*.pth")) or [p.name for p in run_dir.glob("*.pth")] == ["latest.pth"]

    # the unchanged command resumes the original run and finishes it
    code, text = _cli(_glta_args(tiny_data), capsys)
    assert code == 0, text
    assert json.loads((run_dir / "state.json").read_text())["finished"]
    # a finished run is not resumed: other settings start a new run in its folder
    code, text = _cli(_glta_args(tiny_data, learning_rate=0.01), capsys)
    assert code == 0, text
    again = json.loads((run_dir / "state.json").read_text())
    assert again["finished"] and again["run_key"] != state["run_key"] and again["settings"]["learning_rate"] == 0.01


def test_describe_prints_every_setting_with_its_yaml_default_and_allowed_values(capsys):
    from recbole_llm.cli import model_defaults
    from recbole_llm.llm.loading import LLM_SETTINGS
    from recbole_llm.models.glta.settings import GLTA_SETTINGS

    assert cli_main(["--list-models", "--describe", "GLTA"]) == 0
    lines = capsys.readouterr().out.splitlines()
    defaults, files = model_defaults("GLTA")
    assert any(f.endswith("GLTA.yaml") for f in files) and "[GLTA]" in lines and "[LLM]" in lines
    for schema in (GLTA_SETTINGS, LLM_SETTINGS):
        for key, spec in schema.keys.items():
            [line] = [ln for ln in lines if ln.split()[:1] == [key]]
            assert f"default: {defaults[key]!r}" in line and f"allowed: {spec.describe()}" in line, line
            assert ("not in the run key" in line) == (key in RUN_KEY_EXCLUDE), line
    assert cli_main(["--describe", "NoSuchModel"]) == 2
    assert "Unknown model 'NoSuchModel'" in capsys.readouterr().err
