"""Every registered model's settings, registry-wide (all built-in models and an outside plugin's model,
found through its entry point): registered through the plugin hooks with a settings schema; defaults in
the model's YAML only, whose keys are the schema's; every setting with a one-line doc and a
``changes_results`` flag; and a staged run's key holding exactly the settings flagged as changing
results (``recbole_llm.training.staged.run_settings``). ``--describe`` prints all of it."""

import importlib
import re
import sys
from pathlib import Path

import pytest
import recbole
import yaml

from conftest import glta_tiny_config, write_tiny_dataset
from recbole_llm import plugins
from recbole_llm.cli import main as cli_main, model_defaults
from recbole_llm.config import Config
from recbole_llm.errors import ConfigError
from recbole_llm.paths import properties_dir
from recbole_llm.settings import Bool, Choice, Float, Int, IntList, Str
from recbole_llm.training.pretrain import derived_config
from recbole_llm.training.staged import GENERAL_KEYS_NOT_CHANGING_RESULTS, run_key_of, run_settings
from recbole_llm.utils import get_model, get_trainer
from tests_support.outside_plugin import make_outside_plugin

BUILTIN = sorted(plugins.get_registry().models)
PLUGIN = "PopPlusMF"  # tests_support/outside_plugin.py, entry point "outside"
MODELS = BUILTIN + [PLUGIN]
#: RecBole's and recbole-llm's general settings: a model's YAML may set them besides its schema's keys.
GENERAL = (set(yaml.safe_load((Path(recbole.__file__).parent / "properties" / "overall.yaml").read_text()))
           | set(yaml.safe_load((properties_dir() / "overall.yaml").read_text()) or {}))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The registry with the outside plugin installed (its package on ``sys.path``, found through its
    entry point as an installed plugin is); the default registry again afterwards."""
    site = make_outside_plugin(tmp_path_factory.mktemp("site"))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield plugins.set_registry(plugins.build_registry())
    finally:
        plugins.set_registry(None)
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m == "outside_plugin" or m.startswith("outside_plugin.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
    return root


def _schemas(registry, model):
    return registry.settings[model]


def _own_yaml_keys(registry, model):
    """Keys of the property files the model's plugin registered (RecBole's own model files left out)."""
    recbole_dir = str(Path(recbole.__file__).parent)
    keys = set()
    for path in registry.property_files[model]:
        if not path.startswith(recbole_dir):
            keys |= set(yaml.safe_load(Path(path).read_text()) or {})
    return keys


@pytest.mark.parametrize("model", MODELS)
def test_registered_through_the_plugin_hooks_with_a_settings_schema(registry, model):
    cls = registry.models[model]
    assert get_model(model) is cls and cls.__name__ == model
    plugin = registry.model_plugin[model]
    if model == PLUGIN:
        assert plugin == "outside" and cls.__module__ == "outside_plugin.model"
    else:
        assert plugin in plugins.BUILTIN_PLUGINS and cls.__module__.startswith("recbole_llm.models.")
    if model in registry.trainers:
        assert get_trainer(None, model) is registry.trainers[model]
    assert registry.property_files[model] and all(Path(p).is_file() for p in registry.property_files[model])
    assert _schemas(registry, model), f"{model} registers no settings schema (hook register_settings)"
    assert not registry.errors, registry.errors


@pytest.mark.parametrize("model", MODELS)
def test_yaml_keys_are_the_schema_keys_and_the_defaults_are_valid(registry, model):
    schemas = _schemas(registry, model)
    schema_keys = set().union(*(s.keys for s in schemas))
    # the YAML sets the schema's keys and, besides them, only general settings (epochs, learning_rate, ...)
    assert _own_yaml_keys(registry, model) - (GENERAL - schema_keys) == schema_keys
    defaults, _ = model_defaults(model)
    for schema in schemas:
        schema.read(defaults)  # every default is valid
        first = next(iter(schema.keys))
        with pytest.raises(ConfigError, match=rf"{re.escape(first)} is not set.*{re.escape(schema.yaml_hint)}"):
            schema.read({k: v for k, v in defaults.items() if k != first})


@pytest.mark.parametrize("model", MODELS)
def test_every_setting_has_a_one_line_doc_and_a_changes_results_flag(registry, model):
    for schema in _schemas(registry, model):
        for key, spec in schema.keys.items():
            assert isinstance(spec.doc, str) and spec.doc.strip() and "\n" not in spec.doc, f"{schema.model}: {key}"
            assert isinstance(spec.changes_results, bool), f"{schema.model}: {key}"


@pytest.mark.parametrize("model", BUILTIN)
def test_no_defaults_in_code(registry, model):
    """The model's package reads its own settings only through the validated schema, never
    ``config["<prefix>..."]`` or ``config.get(...)`` with a fallback."""
    package = Path(sys.modules[registry.models[model].__module__].__file__).parent
    prefixes = sorted({s.prefix for s in _schemas(registry, model) if s.prefix and s.prefix != "llm_"})
    for path in package.glob("*.py"):
        source = path.read_text()
        assert "config.get(" not in source, path
        for prefix in prefixes:
            assert not re.search(rf"config\[\s*[\"']{prefix}", source), (path, prefix)


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
    if isinstance(spec, IntList):
        return list(value or [1]) + [max(spec.min or 1, 1)]
    if isinstance(spec, Str):
        return (value or "") + "x"
    if isinstance(value, dict) or value is None and "mapping" in spec.describe():  # GraphAttentiveGPT2's StrMap
        return {**(value or {}), "x": "{x}"}
    choices = getattr(spec, "choices", None)  # list specs (GraphAttentiveGPT2's StrList)
    value = list(value or [])
    if len(value) > 1:
        return value[:-1]
    return [next(c for c in choices if c not in value)] if choices else value + ["x"]


def _config(root, model):
    cfg = {"data_path": str(root / "data"), "checkpoint_dir": str(root / "saved"), "state": "WARNING",
           "load_col": glta_tiny_config(root)["load_col"]}
    return Config(model=model, dataset="tiny", config_dict=cfg)


def _key(config, **changes):
    return run_key_of(run_settings(derived_config(config, changes) if changes else config), ["fingerprint"])


@pytest.mark.parametrize("model", MODELS)
def test_the_run_key_holds_exactly_the_settings_that_change_results(registry, data_root, model):
    """Changing any setting flagged ``changes_results`` changes the run key (a resumed run with it
    is refused); changing one flagged otherwise, or a general setting of no effect, keeps it. Epoch
    counts change it (a stage's schedule spans its epochs: training/staged.py)."""
    config = _config(data_root, model)
    base = _key(config)
    changed, kept = [], []
    for schema in _schemas(registry, model):
        for key, spec in schema.keys.items():
            value = _other_value(spec, config[key])
            if value is None:  # a one-choice setting: nothing to change
                continue
            spec.check(key, value, schema.model)  # the changed value is a valid one
            if spec.changes_results:
                assert _key(config, **{key: value}) != base, f"{model}: {key}={value!r} keeps the run key"
                changed.append(key)
            else:
                assert _key(config, **{key: value}) == base, f"{model}: {key}={value!r} changes the run key"
                kept.append(key)
    assert changed
    assert _key(config, epochs=int(config["epochs"]) + 1, learning_rate=0.000123) != base
    neutral = {"state": "INFO", "show_progress": True, "stage_resume": False, "trust_checkpoint": True,
               "checkpoint_dir": str(data_root / "elsewhere"), "gpu_id": "1", "use_gpu": False}
    assert set(neutral) <= GENERAL_KEYS_NOT_CHANGING_RESULTS
    assert _key(config, **neutral) == base


def test_shared_pretraining_blocks_give_schema_keys_and_overrides_from_one_definition():
    from recbole_llm.models.collm.settings import COLLM_SETTINGS, GRAPH_STAGE as COLLM_GRAPH
    from recbole_llm.models.glta.settings import GLTA_SETTINGS, GRAPH_STAGE as GLTA_GRAPH
    from recbole_llm.models.hellm.settings import HELLM_SETTINGS, SASREC_STAGE as HELLM_SASREC
    from recbole_llm.models.llara.settings import LLARA_SETTINGS, SASREC_STAGE as LLARA_SASREC

    for stage, schema in ((GLTA_GRAPH, GLTA_SETTINGS), (COLLM_GRAPH, COLLM_SETTINGS),
                          (HELLM_SASREC, HELLM_SETTINGS), (LLARA_SASREC, LLARA_SETTINGS)):
        assert all(schema.keys[k] is spec for k, spec in stage.keys.items())  # the schema holds the block
        defaults, _ = model_defaults(schema.model)
        overrides = stage.overrides(schema.read(defaults))
        # every override comes from a result-affecting key of the block or is fixed; checkpoint/cache are not in it
        from_keys = {t for name, (targets, spec) in stage.mapped.items() for t in targets}
        assert set(overrides) == from_keys | set(stage.fixed)
        assert all(spec.changes_results for name, (targets, spec) in stage.mapped.items())
        assert not stage.keys[stage.prefix + "cache"].changes_results
    glta = GLTA_GRAPH.overrides(GLTA_SETTINGS.read(model_defaults("GLTA")[0]))
    assert glta == {"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-05, "require_pow": False, "epochs": 150,
                    "learning_rate": 0.01, "stopping_step": 10, "eval_step": 1, "weight_decay": 0.0, "learner": "adam"}
    assert "train_batch_size" not in glta  # GLTA's LightGCN trains on the run's own loader
    llara = LLARA_SASREC.overrides(LLARA_SETTINGS.read(model_defaults("LLaRA")[0]), MAX_ITEM_LIST_LENGTH=7)
    assert (llara["hidden_dropout_prob"] == llara["attn_dropout_prob"] and llara["MAX_ITEM_LIST_LENGTH"] == 7
            and llara["loss_type"] == "CE" and llara["eval_step"] == 1)


def test_describe_prints_every_setting_with_default_allowed_values_doc_and_whether_it_changes_results(capsys):
    from recbole_llm.llm.loading import LLM_SETTINGS
    from recbole_llm.models.glta.settings import GLTA_SETTINGS

    assert cli_main(["--list-models", "--describe", "GLTA"]) == 0
    lines = capsys.readouterr().out.splitlines()
    defaults, files = model_defaults("GLTA")
    assert any(f.endswith("GLTA.yaml") for f in files) and "[GLTA]" in lines and "[LLM]" in lines
    for schema in (GLTA_SETTINGS, LLM_SETTINGS):
        for key, spec in schema.keys.items():
            [i] = [n for n, ln in enumerate(lines) if ln.split()[:1] == [key]]
            line = lines[i]
            assert f"default: {defaults[key]!r}" in line and f"allowed: {spec.describe()}" in line, line
            assert line.endswith("changes results: yes" if spec.changes_results
                                 else "changes results: no (not in the run key)"), line
            assert lines[i + 1].strip() == spec.doc
    [cache] = [ln for ln in lines if ln.split()[:1] == ["glta_graph_cache"]]
    assert "default: True" in cache and cache.endswith("changes results: no (not in the run key)")
    assert cli_main(["--describe", "NoSuchModel"]) == 2
    assert "Unknown model 'NoSuchModel'" in capsys.readouterr().err


def test_a_plugin_registering_something_else_than_schemas_is_reported_and_ignored():
    class BadSettings:
        @staticmethod
        @plugins.hookspecs.hookimpl
        def register_settings():
            return {"BPR": ["embedding_size"]}

    with pytest.warns(plugins.PluginWarning, match=r"plugin 'bad': register_settings\(\) for 'BPR' must give"):
        registry = plugins.build_registry(extra_plugins=[("bad", BadSettings)], load_entry_points=False)
    assert "BPR" not in registry.settings and registry.settings["GLTA"]
