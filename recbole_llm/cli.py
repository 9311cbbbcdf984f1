"""Command line: ``run_recbole_llm.py`` and the ``recbole-llm`` console script.

    recbole-llm --model=GLTA --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]
    recbole-llm --list-models
    recbole-llm --list-models --describe GLTA           (each setting: default, allowed values)
    recbole-llm benchmark --suite cpu_ml100k [...]      (see ``recbole-llm benchmark --help``)
    recbole-llm data {list,download,convert} [...]      (see ``recbole-llm data --help``)
    recbole-llm tune --model=M --dataset=D --trials=20  (see ``recbole-llm tune --help``)

RecBole's flags (``--model --dataset --config_files --nproc --ip --port --world_size
--group_offset``) mean what they mean in RecBole's ``run_recbole.py``; every other
``--key=value`` goes into the config and overrides config files, as in RecBole.
"""

import argparse
import errno
import os
import sys

# Before torch loads: spinning OpenMP waits make torch much slower on a shared CPU. A user's
# explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SUBCOMMANDS = {
    "benchmark": ("recbole_llm.benchmark.cli", "main"),
    "data": ("atomic_data.__main__", "main"),
    "tune": ("recbole_llm.tune.cli", "main"),
}


def _parser():
    parser = argparse.ArgumentParser(
        prog="recbole-llm",
        description="Train and evaluate RecBole and recbole-llm models. Extra settings: --key=value.",
        epilog="Subcommands: 'benchmark' (comparison tables), 'data' (download/convert datasets), "
               "'tune' (hyperparameter search).",
    )
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (see --list-models)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name, e.g. ml-100k")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--nproc", type=int, default=1, help="processes for distributed training")
    parser.add_argument("--ip", type=str, default="localhost", help="master address (distributed)")
    parser.add_argument("--port", type=str, default="5678", help="master port (distributed)")
    parser.add_argument("--world_size", type=int, default=-1, help="total processes over all nodes")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this node's first process")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="load checkpoints you trust with torch's full unpickler (by default a file holding "
                             "anything beyond what RecBole/recbole-llm checkpoints hold is refused)")
    parser.add_argument("--list-models", action="store_true", help="list the models and plugins, then exit")
    parser.add_argument("--describe", metavar="MODEL", default=None,
                        help="print MODEL's settings (default from its YAML, allowed values), then exit")
    return parser


def _extra_settings(unknown):
    """``--key=value`` pairs, as RecBole reads them from its command line; :class:`ConfigError` naming
    the argument and the expected form for anything else (``--epochs`` without a value, ``epochs=3``
    without dashes, a key given twice with different values)."""
    from recbole_llm.errors import ConfigError

    settings, problems = {}, []
    for arg in unknown:
        key, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not arg.startswith("-") and "=" in arg:
            problems.append(f"{arg!r} lacks the leading dashes (write --{arg})")
        elif arg.startswith("--") and key and not eq:
            problems.append(f"{arg!r} has no value (write {arg}=VALUE)")
        elif not arg.startswith("--") or not key:
            problems.append(f"{arg!r} is not a --key=value setting")
        elif key in settings and settings[key] != value:
            problems.append(f"--{key} is given twice with different values ({settings[key]!r}, {value!r})")
        else:
            settings[key] = value
    if problems:
        raise ConfigError(
            "bad command-line argument(s): " + "; ".join(problems) + ". "
            "Settings other than the listed flags are written --key=value, e.g. --epochs=5."
        )
    return settings


def _print_models():
    from recbole_llm.plugins import get_registry
    from recbole_llm.utils import list_models

    registry = get_registry()
    models = list_models()
    print("recbole-llm models (from plugins):")
    for name in models["recbole_llm"]:
        print(f"  {name:<24} plugin: {registry.model_plugin[name]}")
    if not models["recbole_llm"]:
        print("  (none)")
    print("\nRecBole models:")
    names = models["recbole"]
    for i in range(0, len(names), 6):
        print("  " + "  ".join(f"{n:<14}" for n in names[i : i + 6]).rstrip())
    if registry.datasets:
        print("\nDatasets recbole-llm can download and convert:")
        for name, provider in sorted(registry.datasets.items()):
            print(f"  {name:<24} {getattr(provider, 'description', '')}")
    print("\nPlugins loaded: " + ", ".join(registry.plugins))
    for error in registry.errors:
        print(f"PROBLEM: {error}")


def model_schemas(model_name):
    """The :class:`~recbole_llm.settings.Settings` schemas a registered model reads, as its plugin
    registered them (hook ``register_settings``); ``[]`` for RecBole's own models. An unknown name is
    refused by :func:`recbole_llm.utils.get_model` (listing the models there are)."""
    from recbole_llm.training.staged import model_settings_schemas
    from recbole_llm.utils import get_model

    get_model(model_name)
    return model_settings_schemas(model_name)


def model_defaults(model_name):
    """``(defaults, files)``: the settings a model's YAML gives (recbole-llm's overall file, then the
    files its plugin registered), read as RecBole reads them, and those files."""
    from recbole_llm.config import Config
    from recbole_llm.paths import properties_dir
    from recbole_llm.plugins import get_registry

    files = [str(properties_dir() / "overall.yaml")] + list(get_registry().property_files.get(model_name, []))
    reader = Config.__new__(Config)  # only its YAML reader: no dataset is needed to read defaults
    reader.yaml_loader = reader._build_yaml_loader()
    defaults = {}
    for file in files:
        defaults.update(reader._read_yaml(file, "Property file"))
    return defaults, files


def _describe_model(model_name):
    """Print each setting of ``model_name``'s schemas: default (from its YAML), allowed values,
    whether it changes results (and so is in a staged run's key) and its one-line doc."""
    from recbole_llm.plain import plain

    schemas = model_schemas(model_name)
    defaults, files = model_defaults(model_name)
    print(f"{model_name} settings (defaults from {', '.join(files)}):")
    if not schemas:
        print("  (this model has no settings schema; see its YAML)")
    for schema in schemas:
        print(f"\n[{schema.model}]")
        for key, spec in schema.keys.items():
            default = plain(defaults[key]) if key in defaults else "(not in the YAML)"
            changes = "yes" if spec.changes_results else "no (not in the run key)"
            print(f"  {key}  default: {default!r}  allowed: {spec.describe()}  changes results: {changes}")
            print(f"      {spec.doc}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module_name, func = SUBCOMMANDS[argv[0]]
        return getattr(importlib.import_module(module_name), func)(argv[1:]) or 0

    args, unknown = _parser().parse_known_args(argv)

    from recbole_llm.errors import ConfigError, RecBoleLLMError

    try:
        settings = _extra_settings(unknown)
        if args.trust_checkpoint:
            settings["trust_checkpoint"] = True
        if args.describe:
            _describe_model(args.describe)
            return 0
        if args.list_models:
            _print_models()
            return 0
        config_files = args.config_files.strip().split() if args.config_files else None
        for path in config_files or []:
            if not os.path.isfile(path):
                what = "is a folder, not a file" if os.path.isdir(path) else "not found"
                raise ConfigError(f"config file {path} {what} (--config_files, relative to {os.getcwd()}). "
                                  "Give existing YAML files, separated by spaces.")
        from recbole_llm.quick_start import run_recbole_llm

        result = run_recbole_llm(
            model=args.model,
            dataset=args.dataset,
            config_file_list=config_files,
            config_dict=settings or None,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except Exception as exc:
        if os.environ.get("RECBOLE_LLM_DEBUG"):
            raise
        message = exc if isinstance(exc, RecBoleLLMError) else _user_input_message(exc)
        if message is None:
            raise  # a bug: keep the traceback for the report
        print(f"recbole-llm: error: {message}", file=sys.stderr)
        return 2
    if result is not None:
        _print_result(result)
    return 0


# Writing failed for a reason outside the program: disk full, quota, read-only, not a folder, no access.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EFBIG}


def _user_input_message(exc):
    """A message for exception families that mean bad user input when they escape from RecBole
    (a file the user named is missing or unreadable, a YAML file is malformed); ``None`` for
    anything else, which is a bug and keeps its traceback."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml comes with RecBole
        yaml = None
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and getattr(exc, "filename", None):
        what = {FileNotFoundError: "not found", IsADirectoryError: "is a folder, not a file",
                PermissionError: "cannot be read (permission denied)"}[type(exc)]
        return f"{exc.filename} {what}. Check the paths in your settings and config files."
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        target = exc.filename or "a checkpoint, log or cache file"
        return (f"cannot write {target}: {exc.strerror or exc}. Free space or choose another folder "
                "(--checkpoint_dir=DIR; logs go to ./log in the working directory).")
    if isinstance(exc, RuntimeError) and ("PytorchStreamWriter" in str(exc) or "inline_container.cc" in str(exc)
                                          and "unexpected pos" in str(exc)):
        # torch.save to a path writes through C++: a full disk surfaces as this RuntimeError.
        return (f"writing a checkpoint failed (torch: {str(exc).strip().splitlines()[0]}); the disk is probably full. "
                "Free space or choose another folder (--checkpoint_dir=DIR).")
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f" ({mark.name}, line {mark.line + 1})" if mark else ""
        return f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}."
    return None


def _print_result(result):
    if result.get("best_valid_result") is None:
        print("best valid: none (no training happened with epochs=0, or no validation with eval_step=0)")
    else:
        metrics = ", ".join(f"{k}: {float(v):.4f}" for k, v in result["best_valid_result"].items())
        print(f"best valid: {metrics}")
    test = result.get("test_result") or {}
    print("test result: " + ", ".join(f"{k}: {float(v):.4f}" for k, v in test.items()))


if __name__ == "__main__":
    sys.exit(main())
