"""``Config``: RecBole's configurator, aware of plugin models, their property files and datasets.

Property files load in RecBole's order, with ours spliced in where RecBole loads its own:

1. RecBole's ``overall.yaml``, then recbole-llm's ``properties/overall.yaml``;
2. the model's files: RecBole's ``properties/model/<Model>.yaml`` if RecBole has the model,
   else the files a plugin registered through ``register_property_files``;
3. RecBole's ``dataset/sample.yaml`` and ``dataset/<dataset>.yaml``, then recbole-llm's
   ``properties/dataset/<dataset>.yaml`` and the dataset provider's property file;
4. RecBole's model-type quick-start files (sequential, context-aware, knowledge);
5. the evaluation protocol named by ``protocol`` (``properties/protocol/<name>.yaml``, see
   :mod:`recbole_llm.protocol`), after every property file so no model or dataset file changes it;
6. the user's config files, the config dict, the command line.
"""

import os
from pathlib import Path

from recbole_llm.safe_pickle import allow_config_class
from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
import recbole
import torch
from recbole.config import Config as RecBoleConfig

from recbole_llm.config_checks import (check_common_settings, check_known_keys, check_model_setting_types,
                                       known_setting_keys)
from recbole_llm.errors import ConfigError, RecBoleLLMError
from recbole_llm.paths import default_data_dir, properties_dir
from recbole_llm.plugins import get_registry
from recbole_llm.utils import get_model, model_name_of

_RECBOLE_PROPERTIES = Path(recbole.__file__).resolve().parent / "properties"
_RECBOLE_SAMPLE_YAML = _RECBOLE_PROPERTIES / "dataset" / "sample.yaml"
_RECBOLE_EXAMPLE_DATA = _RECBOLE_PROPERTIES.parent / "dataset_example"


class DatasetNotFoundError(RecBoleLLMError, FileNotFoundError):
    """The dataset's atomic files are nowhere to be found and no provider can fetch them."""


_LITERAL_TYPES = (str, int, float, list, tuple, dict, bool, type(None))


def parse_setting(text: str):
    """A setting given as text, as the value RecBole's ``eval`` made of it for every literal, with
    no code run: Python literals through :func:`ast.literal_eval` (numbers, ``None``, ``True``,
    strings, lists, tuples and dicts of them: ``1e-3``, ``[5, 10]``, ``{'RS': [0.8, 0.1, 0.1]}``),
    ``true``/``false`` in any case as booleans (RecBole's fallback), anything else (a name, a
    path, a template, an expression) the string itself."""
    import ast

    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = text
    if not isinstance(value, _LITERAL_TYPES):  # e.g. a set or a complex number: kept as written
        value = text
    if value is text and text.strip().lower() in ("true", "false"):
        value = text.strip().lower() == "true"
    return value


class Config(RecBoleConfig):
    """RecBole's ``Config`` with plugin-model resolution, plugin property files, dataset
    providers and CPU (gloo) distributed training."""

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise ConfigError(
                    "No model given. Pass --model=NAME (or model=... / 'model:' in a config file); "
                    "`python run_recbole_llm.py --list-models` lists the names."
                )
        if isinstance(model, str):
            model_class = get_model(model)
        elif isinstance(model, type):
            model_class = model
        else:
            raise ConfigError(f"model must be a name or a model class, got {model!r}")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise ConfigError(
                    "No dataset given. Pass --dataset=NAME (or dataset=... / 'dataset:' in a config file)."
                )
        return model_name_of(model), model_class, dataset

    def _load_cmd_line(self):
        """Command-line settings are parsed by the CLI (``recbole_llm.cli``) and arrive as the
        config dict; unlike RecBole, the library never reads ``sys.argv`` itself, so embedding
        programs and test runners cannot leak their own flags into a model's config."""
        return {}

    def _convert_config_dict(self, config_dict):
        """String values of the config dict (``--key=value`` flags, a suite's ``config:`` block,
        ``config_dict`` from Python) parsed as literals, never evaluated: RecBole's own version
        passes them to ``eval``, so a value could run code. See :func:`parse_setting`."""
        return {key: parse_setting(value) if isinstance(value, str) else value
                for key, value in config_dict.items()}

    # --- YAML files -------------------------------------------------------------------------
    def _read_yaml(self, file, kind):
        """One YAML file as a dict (``{}`` if empty); a syntax error or a top level that is not
        a mapping raises :class:`ConfigError` naming the file and line."""
        import yaml

        try:
            with open(file, "r", encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise ConfigError(f"{kind} {file} not found.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{kind} {file} cannot be read: {exc}.") from None
        try:
            data = yaml.load(text, Loader=self.yaml_loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f"{file}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(file)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            context = getattr(exc, "context", None)
            raise ConfigError(
                f"{kind} {where}: not valid YAML ({(context + ', ') if context else ''}{problem}). "
                "Write settings one per line as 'key: value'."
            ) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{kind} {file}, line 1: the top level is a {type(data).__name__}, not a mapping. "
                "Write settings one per line as 'key: value'."
            )
        return data

    def _load_config_files(self, file_list):
        file_config_dict = dict()
        for file in file_list or []:
            file_config_dict.update(self._read_yaml(file, "Config file"))
        return file_config_dict

    def _load_property_file(self, file):
        """RecBole's ``_update_internal_config_dict`` with checked YAML."""
        config_dict = self._read_yaml(file, "Property file")
        self.internal_config_dict.update(config_dict)
        return config_dict

    # --- property files -------------------------------------------------------------------
    def _plugin_model_files(self, model):
        from recbole_llm.utils import recbole_model_names

        if model in recbole_model_names():
            return []  # RecBole loads its own model file
        return list(get_registry().property_files.get(model, []))

    def _dataset_files(self, dataset):
        files = []
        ours = properties_dir() / "dataset" / f"{dataset}.yaml"
        if ours.is_file():
            files.append(str(ours))
        provider = get_registry().datasets.get(dataset)
        provider_file = getattr(provider, "property_file", None)
        if provider_file and Path(provider_file).is_file() and str(provider_file) not in files:
            files.append(str(provider_file))
        return files

    def _update_internal_config_dict(self, file):
        splice = getattr(self, "_splice", None)
        if splice is None:
            return self._load_property_file(file)
        if Path(file).resolve() == _RECBOLE_SAMPLE_YAML.resolve():
            # Just before RecBole's sample.yaml: our overall file and the plugin's model files.
            for extra in [str(properties_dir() / "overall.yaml")] + self._plugin_model_files(splice["model"]):
                self._load_property_file(extra)
            result = self._load_property_file(file)
            if not splice["recbole_dataset_file"].is_file():
                self._load_dataset_files(splice["dataset"])
            return result
        result = self._load_property_file(file)
        if Path(file).resolve() == splice["recbole_dataset_file"].resolve():
            self._load_dataset_files(splice["dataset"])
        return result

    def _load_dataset_files(self, dataset):
        for extra in self._dataset_files(dataset):
            loaded = self._load_property_file(extra) or {}
            self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]

    def _load_internal_config_dict(self, model, model_class, dataset):
        self._splice = {
            "model": model,
            "dataset": dataset,
            "recbole_dataset_file": _RECBOLE_PROPERTIES / "dataset" / f"{dataset}.yaml",
        }
        try:
            super()._load_internal_config_dict(model, model_class, dataset)
        finally:
            del self._splice
        name = self.external_config_dict.get("protocol")
        if name is not None:
            from recbole_llm.protocol import load_protocol

            self.internal_config_dict.update(load_protocol(name))

    # --- defaults, data path ---------------------------------------------------------------
    def _set_default_parameters(self):
        check_known_keys(self.external_config_dict, known_setting_keys())
        check_common_settings(self.final_config_dict)
        recbole_yaml = _RECBOLE_PROPERTIES / "model" / f"{self.model}.yaml"
        if recbole_yaml.is_file():
            check_model_setting_types(self.final_config_dict, self._read_yaml(recbole_yaml, "Property file"),
                                      self.model, self.external_config_dict)
        self._check_device_request()
        try:
            super()._set_default_parameters()
        except ValueError as exc:
            if "train_neg_sample_args" in str(exc):
                raise ConfigError(
                    f"{self.model!r} uses loss_type CE, which scores all items, so it takes no negative "
                    "samples: set train_neg_sample_args: ~ (YAML null) in a config file or pass "
                    "--train_neg_sample_args=None."
                ) from None
            if "Either Model has attr 'input_type'" not in str(exc):
                raise
            raise ConfigError(
                f"Model {self.model!r} has no 'input_type' attribute and no 'loss_type' is set. "
                f"Give the class an input_type (recbole.utils.InputType), or set loss_type "
                f"(CE or BPR) in its property file, e.g. {self.model}.yaml returned by the plugin's "
                f"register_property_files() hook, or pass --loss_type=CE."
            ) from None
        self._check_time_order()
        self.final_config_dict["data_path"] = str(self._resolve_data_path())
        from recbole_llm.data.atomic_check import check_atomic_files

        # Notes: rules applied to the data (a byte-order mark, duplicate rows); logged by run_experiment.
        self.data_notes = check_atomic_files(self.final_config_dict, self.final_config_dict["data_path"],
                                             user_keys=set(self.external_config_dict))

    def _check_time_order(self):
        """Ordering by time needs the time field loaded; RecBole only fails deep in sorting."""
        cfg = self.final_config_dict
        order = (cfg.get("eval_args") or {}).get("order")
        load_col = cfg.get("load_col")
        time_field = cfg.get("TIME_FIELD")
        if order == "TO" and isinstance(load_col, dict) and time_field not in (load_col.get("inter") or []):
            raise ConfigError(
                f"eval_args.order is 'TO' (by time) but load_col.inter {load_col.get('inter')} does not load "
                f"the time field {time_field!r}. Add it, e.g. load_col: {{inter: [user_id, item_id, {time_field}]}}, "
                "or use order 'RO'."
            )

    def _resolve_data_path(self):
        """Find the folder holding ``<dataset>.inter``; fetch it through a provider if needed."""
        dataset = self.dataset
        explicit = "data_path" in self.external_config_dict
        root = Path(self.external_config_dict.get("data_path") or self.internal_config_dict.get("data_path") or "dataset/")
        candidates = [root / dataset]
        if not explicit:
            candidates.append(default_data_dir() / dataset)
        if dataset == "ml-100k":
            candidates.append(_RECBOLE_EXAMPLE_DATA / "ml-100k")
        for folder in candidates:
            if self._has_atomic_files(folder):
                return folder
        provider = get_registry().datasets.get(dataset)
        if provider is not None:
            target_root = root if explicit else default_data_dir()
            folder = Path(provider.ensure(Path(target_root)))
            if self._has_atomic_files(folder):
                return folder
        known = sorted(get_registry().datasets)
        raise DatasetNotFoundError(
            f"Dataset {dataset!r} not found: no {self._inter_file_names(dataset)[0]} in "
            + ", ".join(str(c) for c in candidates)
            + ".\nPut RecBole atomic files in one of these folders (or pass --data_path=DIR holding "
            f"{dataset}/), or use a dataset recbole-llm can download and convert: "
            + (", ".join(known) if known else "(none registered)")
            + "."
        )

    def _inter_file_names(self, dataset):
        benchmark = self.final_config_dict.get("benchmark_filename")
        if benchmark:
            return [f"{dataset}.{part}.inter" for part in benchmark]
        return [f"{dataset}.inter"]

    def _has_atomic_files(self, folder):
        return all((Path(folder) / name).is_file() for name in self._inter_file_names(self.dataset))

    # --- devices ---------------------------------------------------------------------------
    def _check_device_request(self):
        """A GPU asked for explicitly (``use_gpu: True`` or a ``cuda`` device given by the user) on
        a machine where torch sees none is refused; RecBole would silently train on the CPU.
        (RecBole's own default ``use_gpu: True`` means "a GPU if there is one" and stays so.)"""
        given = self.external_config_dict
        device = given.get("device")
        asked = given.get("use_gpu") is True or (isinstance(device, str) and device.strip().lower().startswith("cuda"))
        if asked and not torch.cuda.is_available():
            what = f"device={device!r}" if isinstance(device, str) and "cuda" in device.lower() else "use_gpu=True"
            raise ConfigError(f"Setting {what} asks for a CUDA GPU, but torch sees none on this machine "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). Drop the "
                              "setting to run on the CPU, or install a CUDA build of torch on a machine with a GPU.")

    def _init_device(self):
        """RecBole's device setup, plus distributed training on CPU with the gloo backend
        (RecBole 1.2.1 hard-codes NCCL and CUDA devices)."""
        use_cuda = torch.cuda.is_available() and str(self.final_config_dict.get("gpu_id", "")) != ""
        if "local_rank" not in self.final_config_dict or use_cuda:
            return super()._init_device()
        cfg = self.final_config_dict
        cfg["gpu_id"] = str(cfg.get("gpu_id", ""))
        if not torch.distributed.is_initialized():
            try:
                torch.distributed.init_process_group(
                    backend="gloo",
                    rank=cfg["local_rank"] + cfg["offset"],
                    world_size=cfg["world_size"],
                    init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
                )
            except (RuntimeError, OSError, ValueError) as exc:  # torch's DistNetworkError is a RuntimeError
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"distributed training could not start at {cfg['ip']}:{cfg['port']} ({reason}). "
                                  "Pick a free --port, or check --ip.") from None
        cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


allow_config_class(Config)  # checkpoints pickle the Config: safe_pickle admits it as a value
