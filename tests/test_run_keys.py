"""Run keys of staged trainers: every setting that changes results is in, nothing else (a model's own
settings by their schema's ``changes_results`` flag, checked key by key for every registered model in
test_settings_registry.py; general ones unless in
``recbole_llm.training.staged.GENERAL_KEYS_NOT_CHANGING_RESULTS``), and an unfinished run rerun with
a changed result-affecting setting is refused (exit 2, naming the key) instead of resumed half applied."""

import json
import shutil
from pathlib import Path

import pytest

from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config
from recbole_llm.training.staged import (GENERAL_KEYS_NOT_CHANGING_RESULTS, keys_not_changing_results, run_key_of,
                                         run_settings)

from conftest import cli_error_line as _cli, glta_cli_args as _glta_args, glta_tiny_config, write_tiny_dataset

#: RecBole and shared keys that change what a run computes (a sample; all of them are in the key).
SHARED_RESULT_KEYS = {"learning_rate": 0.000123, "learner": "sgd", "item_text_template": "{genre}!",
                      "history_mask": "none", "epochs": 13, "seed": 12345, "train_batch_size": 77,
                      "eval_args": {"split": {"RS": [0.7, 0.2, 0.1]}, "order": "RO", "group_by": "user",
                                    "mode": "full"}}


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


@pytest.mark.parametrize("model", ["GLTA", "HeLLM"])
def test_shared_settings_change_the_run_key_and_paths_logging_and_switches_do_not(data_root, model):
    base = _settings(data_root, model)
    key = run_key_of(base, ["fingerprint"])
    for name, value in SHARED_RESULT_KEYS.items():
        assert run_key_of(_settings(data_root, model, **{name: value}), ["fingerprint"]) != key, name
    assert run_key_of(base, ["other interactions"]) != key
    neutral = {"checkpoint_dir": str(data_root / "elsewhere"), "state": "INFO", "show_progress": True,
               "stage_resume": False, "trust_checkpoint": True, "run_id": "some-run", "stage_log_interval": 0.5,
               "gpu_id": "1", "use_gpu": False}
    own = {"llm_gguf_cache": False, "llm_device": "cpu", "llm_num_threads": 1}
    if model == "GLTA":
        own.update(glta_graph_cache=False, glta_gen_cache=False, glta_kv_cache_device="llm")
    else:
        own.update(hellm_graph_cache=False, hellm_sasrec_cache=False)
    assert set(neutral) <= GENERAL_KEYS_NOT_CHANGING_RESULTS and set(own) <= keys_not_changing_results(model)
    assert run_key_of(_settings(data_root, model, **neutral, **own), ["fingerprint"]) == key


@pytest.mark.slow
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

    for key, value in (("item_text_template", "{genre}"), ("learning_rate", 0.01), ("glta_ua_epochs", 5),
                       ("glta_graph_epochs", 7), ("glta_kv_cache_dtype", "bfloat16")):
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
