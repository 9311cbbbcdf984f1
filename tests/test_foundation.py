"""Foundation: RecBole compat fixes, plugin registry, Config resolution, quick start, CLI."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import recbole_llm
from recbole_llm import plugins
from recbole_llm.cli import main as cli_main
from recbole_llm.config import Config, DatasetNotFoundError
from recbole_llm.errors import ConfigError
from recbole_llm.quick_start import load_data_and_model, run_experiment, run_recbole_llm
from recbole_llm.utils import UnknownModelError, get_model, get_trainer, recbole_model_names

from conftest import fast_config
from tests_support.outside_plugin import make_outside_plugin
from tests_support.reload import fresh_env

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- compat fixes
def test_numpy_aliases_restored():
    assert np.float_ is np.float64 and np.bool8 is np.bool_ and np.unicode_ is np.str_


@pytest.mark.slow
def test_numpy_aliases_of_recbole_config_set_on_import():
    """RecBole's metrics use np.float & co., which only Config.__init__ defines; a fresh process
    that reloads a pickled Config never runs it. The compat gate (applied before recbole_llm first
    imports RecBole, e.g. by load_data_and_model's module) must set exactly the same."""
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        import recbole_llm.quick_start  # the module of load_data_and_model
        from recbole.config.configurator import Config
        names = ["bool", "int", "float", "complex", "object", "str", "long", "unicode"]
        ours = {n: vars(np).get(n) for n in names}
        Config.compatibility_settings(None)  # what RecBole itself sets (it does not use self)
        print(json.dumps({n: [repr(ours[n]), ours[n] is vars(np)[n]] for n in names}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=fresh_env())
    assert out.returncode == 0, out.stderr[-3000:]
    same = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(is_same for _, is_same in same.values()), same


def test_scipy_dok_update_restored():
    import scipy.sparse as sp

    A = sp.dok_matrix((3, 3), dtype=np.float32)
    A._update({(0, 1): 1.0, (2, 2): 3.0})
    assert A.toarray()[0, 1] == 1.0 and A.toarray()[2, 2] == 3.0 and A.nnz == 2


def test_ensure_dir_tolerates_a_folder_made_meanwhile(tmp_path, monkeypatch):
    """Two DDP ranks start together: one creates ./log between the other's exists() check and its
    makedirs(); RecBole's ensure_dir then raised FileExistsError."""
    import os

    import recbole.utils.logger as logger_module

    real_exists = os.path.exists
    target = tmp_path / "log"

    def racing_exists(path):  # the other rank wins the race right after this check
        result = real_exists(path)
        if str(path) == str(target):
            target.mkdir(exist_ok=True)
        return result

    monkeypatch.setattr(os.path, "exists", racing_exists)
    logger_module.ensure_dir(str(target))
    assert target.is_dir()


def test_blank_float_filled_and_token_seq_lengths(tmp_path, monkeypatch):
    """pandas 3: RecBole's inplace fillna was a no-op and agg(len) measured the whole column. A blank
    float in an item file is mean-filled (RecBole's rule; a blank in .inter is refused, test_bad_data)."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "holes"
    folder.mkdir(parents=True)
    rows = [f"{u}\t{i}\t4\t{1000 + u * 10 + i}" for u in range(1, 8) for i in range(1, 9)]
    (folder / "holes.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n")
    items = [f"{i}\t{'' if i == 3 else 'word' + str(i) + ' other'}\t{'' if i % 3 == 0 else i}" for i in range(1, 9)]
    (folder / "holes.item").write_text("item_id:token\ttitle:token_seq\tprice:float\n" + "\n".join(items) + "\n")
    from recbole.data import create_dataset

    config = Config(model="BPR", dataset="holes", config_dict={"data_path": str(tmp_path / "data"), "state": "WARNING", "load_col": None})
    ds = create_dataset(config)
    prices = np.asarray(ds.item_feat["price"], dtype=float)[1:]  # row 0 is RecBole's padding item
    assert not np.isnan(prices).any()
    known = [i for i in range(1, 9) if i % 3]
    filled = [prices[ds.token2id("item_id", str(i)) - 1] for i in range(1, 9) if i % 3 == 0]
    assert filled and np.allclose(filled, np.mean(known))  # blanks filled with the column mean
    titles = ds.item_feat["title"]
    assert titles.shape[0] == ds.item_num  # per-item sequences, not one giant row
    iid = ds.token2id("item_id", "2")
    words = [ds.id2token("title", t) for t in list(titles.iloc[iid]) if t != 0]
    assert words == ["word2", "other"]


def test_checkpoint_reload_under_torch_weights_only_default(tiny_data):
    """torch >= 2.6 refuses RecBole checkpoints (pickled Config) unless compat applies."""
    result = run_experiment("BPR", "tiny", config_dict=fast_config(tiny_data))
    saved = result["stats"]["saved_model_file"]
    assert saved and Path(saved).is_file()
    config, model, dataset, *_ = load_data_and_model(saved)
    assert config["model"] == "BPR" and model.n_items == dataset.item_num


# --------------------------------------------------------------------------- registry
class _PluginA:
    @recbole_llm.hookimpl
    def register_models(self):
        from recbole.model.general_recommender import BPR

        return [type("TwinModel", (BPR,), {"__module__": __name__})]


class _PluginB(_PluginA):
    pass


class _BrokenHook:
    @recbole_llm.hookimpl
    def register_models(self):
        raise RuntimeError("boom")


class _Clash:
    @recbole_llm.hookimpl
    def register_models(self):
        from recbole.model.general_recommender import BPR

        return [BPR]


def test_two_plugins_same_model_name_reported_with_both_names():
    with pytest.warns(plugins.PluginWarning, match="claimed by two plugins: 'alpha' and 'beta'"):
        reg = plugins.build_registry(extra_plugins=[("alpha", _PluginA()), ("beta", _PluginB())], load_entry_points=False)
    assert reg.model_plugin["TwinModel"] == "alpha"


def test_broken_plugins_do_not_stop_others():
    with pytest.warns(plugins.PluginWarning) as record:
        reg = plugins.build_registry(
            extra_plugins=[
                ("importfails", "no_such_module_for_recbole_llm_tests"),
                ("raises", _BrokenHook()),
                ("good", _PluginA()),
            ],
            load_entry_points=False,
        )
    messages = " ".join(str(w.message) for w in record)
    assert "'importfails' failed to import" in messages and "no_such_module_for_recbole_llm_tests" in messages
    assert "'raises': hook register_models() raised RuntimeError: boom" in messages
    assert "TwinModel" in reg.models and "good" in reg.plugins


def test_plugin_cannot_shadow_recbole_model():
    with pytest.warns(plugins.PluginWarning, match="'BPR', a name RecBole already uses"):
        reg = plugins.build_registry(extra_plugins=[("clash", _Clash())], load_entry_points=False)
    assert "BPR" not in reg.models


def test_unknown_model_lists_registered_and_recbole_models():
    with pytest.raises(UnknownModelError) as err:
        get_model("NoSuchRec")
    text = str(err.value)
    assert "NoSuchRec" in text and "LightGCN" in text and "SASRec" in text
    assert "registered by recbole-llm plugins" in text
    with pytest.raises(UnknownModelError, match="Did you mean 'LightGCN'"):
        get_model("lightgcn")


def test_recbole_models_resolve_through_our_registry():
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import ModelType

    assert "LightGCN" in recbole_model_names() and "BERT4Rec" in recbole_model_names()
    assert get_model("LightGCN") is LightGCN
    assert get_trainer(ModelType.GENERAL, "LightGCN") is Trainer


# --------------------------------------------------------------------------- Config
class _PropsPlugin:
    def __init__(self, yaml_path, cls):
        self.yaml_path, self.cls = yaml_path, cls

    @recbole_llm.hookimpl
    def register_models(self):
        return [self.cls]

    @recbole_llm.hookimpl
    def register_property_files(self):
        return {self.cls.__name__: [str(self.yaml_path)]}


def _with_plugin(plugin_obj, name="testplugin"):
    reg = plugins.build_registry(extra_plugins=[(name, plugin_obj)], load_entry_points=False)
    return plugins.set_registry(reg)


@pytest.fixture
def restore_registry():
    yield
    plugins.set_registry(None)


def test_property_file_order(tiny_data, restore_registry):
    from tests_support.plugin_models import OrderProbe

    model_yaml = tiny_data / "OrderProbe.yaml"
    model_yaml.write_text("embedding_size: 7\nlearning_rate: 0.5\ntrain_batch_size: 33\nprobe_level: model\n")
    user_yaml = tiny_data / "user.yaml"
    user_yaml.write_text("learning_rate: 0.25\nprobe_level: file\n")
    _with_plugin(_PropsPlugin(model_yaml, OrderProbe))
    config = Config(
        model="OrderProbe",
        dataset="tiny",
        config_file_list=[str(user_yaml)],
        config_dict={"data_path": str(tiny_data / "data"), "train_batch_size": 44},
    )
    assert config["embedding_size"] == 7  # model file over RecBole's overall default (64)
    assert config["learning_rate"] == 0.25  # user file over model file
    assert config["probe_level"] == "file"
    assert config["train_batch_size"] == 44  # config dict over model file
    assert config["count_flops"] is False  # recbole-llm's overall.yaml
    assert Path(config["data_path"]) == tiny_data / "data" / "tiny"


def test_sequential_plugin_without_loss_type_names_the_property_file(tiny_data, restore_registry):
    from tests_support.plugin_models import NoLossSeq

    class Only:
        @recbole_llm.hookimpl
        def register_models(self):
            return [NoLossSeq]

    _with_plugin(Only())
    with pytest.raises(ConfigError, match=r"NoLossSeq.yaml returned by the plugin's register_property_files"):
        Config(model="NoLossSeq", dataset="tiny", config_dict={"data_path": str(tiny_data / "data")})


def test_missing_dataset_error_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as err:
        Config(model="BPR", dataset="nowhere-ds", config_dict={"data_path": str(tmp_path / "d")})
    assert "nowhere-ds.inter" in str(err.value) and str(tmp_path / "d" / "nowhere-ds") in str(err.value)


def test_ml100k_found_in_recbole_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    config = Config(model="BPR", dataset="ml-100k", config_dict={})
    assert (Path(config["data_path"]) / "ml-100k.inter").is_file()
    assert "dataset_example" in config["data_path"]


def test_library_does_not_read_sys_argv(tiny_data, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--learning_rate=9.0"])
    config = Config(model="BPR", dataset="tiny", config_dict={"data_path": str(tiny_data / "data")})
    assert config["learning_rate"] != 9.0


# --------------------------------------------------------------------------- quick start / CLI
@pytest.mark.parametrize(
    "model,extra",
    [
        ("BPR", {}),
        ("LightGCN", {}),
        ("SASRec", {"MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "train_neg_sample_args": None, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}}),
        ("BERT4Rec", {"MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "train_neg_sample_args": None, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}}),
    ],
)
def test_baselines_train_reload_and_test_through_cli(tiny_data, model, extra, capsys):
    cfg = fast_config(tiny_data, **extra)
    args = [f"--model={model}", "--dataset=tiny"] + [f"--{k}={v!r}" if not isinstance(v, str) else f"--{k}={v}" for k, v in cfg.items()]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "test result: recall@5:" in out
    saved = list((tiny_data / "saved").glob(f"*/{model}-*.pth"))  # <checkpoint_dir>/<run id>/
    assert len(saved) == 1
    config, reloaded, *_ = load_data_and_model(str(saved[0]))
    assert type(reloaded).__name__ == model


def test_same_seed_identical_metrics(tiny_data):
    a = run_recbole_llm("LightGCN", "tiny", config_dict=fast_config(tiny_data, epochs=3), saved=False)
    b = run_recbole_llm("LightGCN", "tiny", config_dict=fast_config(tiny_data, epochs=3), saved=False)
    assert dict(a["test_result"]) == dict(b["test_result"])
    assert set(a) == {"best_valid_score", "valid_score_bigger", "best_valid_result", "test_result"}


def test_run_experiment_stats(tiny_data):
    res = run_experiment("BPR", "tiny", config_dict=fast_config(tiny_data, epochs=3), saved=False)
    stats = res["stats"]
    assert len(stats["epoch_times"]) == 3 and stats["best_epoch"] in (0, 1, 2)
    assert stats["trainable_params"] == stats["total_params"] > 0
    assert stats["peak_rss_mb"] > 50 and stats["config"]["model"] == "BPR"


def test_cli_unknown_model_is_a_clean_error(tiny_data, capsys):
    assert cli_main(["--model=Nope", "--dataset=tiny", f"--data_path={tiny_data / 'data'}"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'Nope'" in err and "LightGCN" in err and "Traceback" not in err


def test_time_order_without_time_field_is_a_clean_error(tiny_data):
    cfg = fast_config(tiny_data, eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"})
    with pytest.raises(ConfigError, match="does not load the time field 'timestamp'"):
        Config(model="SASRec", dataset="tiny", config_dict=dict(cfg, train_neg_sample_args=None))


def test_cli_rejects_malformed_setting(capsys):
    assert cli_main(["--model=BPR", "--dataset=ml-100k", "--epochs5"]) == 2
    assert "'--epochs5' has no value" in capsys.readouterr().err


def test_cli_list_models(capsys):
    assert cli_main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "RecBole models:" in out and "LightGCN" in out


# --------------------------------------------------------------------------- outside plugin
@pytest.mark.slow
def test_outside_plugin_package_trains_and_reloads(tiny_data):
    """A throwaway plugin package, found only through its entry point, in a fresh process."""
    site = make_outside_plugin(tiny_data / "site")
    cfg = fast_config(tiny_data, epochs=3)
    del cfg["embedding_size"]  # so the plugin's own PopPlusMF.yaml decides it
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(site)!r})
        from recbole.utils import init_seed
        from recbole_llm import run_recbole_llm, load_data_and_model
        from recbole_llm.plugins import get_registry
        from recbole_llm.utils import get_trainer
        assert get_registry().model_plugin["PopPlusMF"] == "outside", get_registry().model_plugin
        res = run_recbole_llm("PopPlusMF", "tiny", config_dict=json.loads({json.dumps(cfg)!r}))
        import glob
        [path] = glob.glob({str(tiny_data / 'saved' / '*' / 'PopPlusMF-*.pth')!r})
        config, model, dataset, train_data, valid_data, test_data = load_data_and_model(path)
        Trainer = get_trainer(config["MODEL_TYPE"], config["model"])
        reloaded = Trainer(config, model).evaluate(test_data, load_best_model=False, show_progress=False)
        init_seed(config["seed"], config["reproducibility"])  # the weights training started from
        start = type(model)(config, train_data._dataset).state_dict()
        moved = {{k: float((v - start[k]).abs().max()) for k, v in model.state_dict().items()}}
        as_floats = lambda r: {{k: float(v) for k, v in r.items()}}
        print(json.dumps({{"test": as_floats(res["test_result"]), "reloaded": as_floats(reloaded),
                           "moved": moved, "emb": config["embedding_size"], "lr": config["learning_rate"],
                           "cls": type(model).__module__ + "." + type(model).__name__}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tiny_data, capture_output=True, text=True, timeout=300,
                         env=fresh_env())
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    # the plugin's own PopPlusMF.yaml was read, and the class came from the outside package
    assert info["cls"] == "outside_plugin.model.PopPlusMF" and info["emb"] == 12 and info["lr"] == 0.01
    # it trained: every weight moved away from its (seeded) initial value ...
    assert set(info["moved"]) == {"user_emb.weight", "item_emb.weight"} and min(info["moved"].values()) > 1e-4, info
    # ... and the reloaded checkpoint is the model the run tested
    assert set(info["test"]) == {f"{m}@{k}" for m in ("recall", "ndcg", "precision") for k in (5, 10)}
    assert info["reloaded"] == pytest.approx(info["test"], abs=1e-9, rel=0)


def test_model_class_not_registered_runs_via_config_model_class(tiny_data):
    """RecBole's run_recbole fails for a class outside its package; ours uses config.model_class."""
    from tests_support.plugin_models import OrderProbe

    res = run_experiment(OrderProbe, "tiny", config_dict=fast_config(tiny_data, epochs=1), saved=False)
    stats = res["stats"]
    assert stats["config"]["model"] == "OrderProbe"
    # the model built is the class passed in: OrderProbe's only weights are [n_items, embedding_size]
    inter = (tiny_data / "data" / "tiny" / "tiny.inter").read_text().splitlines()[1:]
    n_items = len({line.split("\t")[1] for line in inter}) + 1  # + RecBole's padding item 0
    assert stats["trainable_params"] == stats["total_params"] == n_items * 16
    assert set(res["test_result"]) == {f"{m}@{k}" for m in ("recall", "ndcg", "precision") for k in (5, 10)}


def test_cli_missing_config_file(tiny_data, capsys):
    assert cli_main(["--model=BPR", "--dataset=tiny", "--config_files=nope.yaml"]) == 2
    assert "config file nope.yaml not found" in capsys.readouterr().err


def test_ce_sequential_with_negative_sampling_names_the_setting(tiny_data):
    cfg = fast_config(tiny_data, loss_type="CE", train_neg_sample_args={"distribution": "uniform", "sample_num": 1},
                      load_col={"inter": ["user_id", "item_id", "timestamp"]},
                      eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"})
    with pytest.raises(ConfigError, match="train_neg_sample_args: ~"):
        Config(model="SASRec", dataset="tiny", config_dict=cfg)


def test_total_parameters_counts_an_llm_kept_outside_the_modules_once():
    import types

    from recbole_llm.quick_start import total_parameters

    llm = torch.nn.Linear(4, 4)  # 20 parameters, kept out of the model's modules like HeLLM's backbone

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 2)  # 10
            self.lora = torch.nn.ParameterDict({"w": llm.weight})  # also inside the LLM: counted once
            self.backbone = types.SimpleNamespace(model=llm)

    assert total_parameters(Model()) == 30
    assert total_parameters(torch.nn.Linear(4, 2)) == 10  # no backbone: the model's own


def test_epoch_record_is_a_trainer_hook(tiny_data):
    """Run statistics come from a mixin in front of the trainer class, not from patched methods:
    one epoch time per training epoch and the best epoch among the validations it saw."""
    from recbole.trainer import Trainer

    from recbole_llm.training.divergence import FiniteTraining
    from recbole_llm.training.epoch_record import EpochRecord, RecordedEpochs, with_run_hooks

    cls = with_run_hooks(Trainer)
    assert cls is with_run_hooks(Trainer) is with_run_hooks(cls)
    assert issubclass(cls, RecordedEpochs) and issubclass(cls, FiniteTraining) and issubclass(cls, Trainer)
    assert cls.__name__ == "Trainer"
    record = EpochRecord()
    for epoch, (seconds, score) in enumerate([(0.5, 0.1), (0.25, 0.3), (0.75, 0.3), (0.5, 0.2)]):
        record.trained(epoch, seconds)
        record.validated(score)
    assert record.epoch_times == [0.5, 0.25, 0.75, 0.5] and record.best_epoch(0.3) == 2  # the later of equal scores
    assert EpochRecord().best_epoch(0.3) is None


def test_score_cache_recomputes_on_a_new_key_or_after_forgetting():
    """The one score cache (GLTA, GraphAttentiveGPT2, the embedding scorers): a value is reused
    under the same key and computed again when the key changes or after ``forget_cached()``."""
    from recbole_llm.models.score_cache import ScoreCache

    calls = []

    def compute():
        calls.append(1)
        return torch.full((2,), float(len(calls)))

    cache = ScoreCache()
    first = cache.cached(compute)
    assert cache.cached(compute) is first and len(calls) == 1
    assert cache.cached(compute, key=("v", 1)).tolist() == [2.0, 2.0] and cache.cached(compute, key=("v", 1))[0] == 2
    assert len(calls) == 2
    cache.forget_cached()
    assert cache.cached(compute, key=("v", 1))[0] == 3 and len(calls) == 3
