"""``recbole-llm tune``: tune one model's hyperparameters on validation with Optuna.

    recbole-llm tune --model=LightGCN --dataset=ml-100k --trials=20
    recbole-llm tune --model=SASRec --dataset=ml-100k --budget-hours=2 --storage=journal:/shared/sasrec.journal
    recbole-llm tune --model=MyMF --dataset=ml-100k --space=my_space.yaml --epochs=50 --valid_metric=NDCG@10

Start the same command on several machines (one --storage) to share the study. Rerunning a command
resumes its study; the outputs (best.yaml, trials.csv, history.png) are rewritten from the storage.
"""

import argparse
import os
import sys
from pathlib import Path


def _parser():
    p = argparse.ArgumentParser(
        prog="recbole-llm tune",
        description="Tune a model's hyperparameters on the validation split (Optuna TPE, median pruning). "
                    "Other settings: --key=value, as for a normal run.")
    p.add_argument("--model", "-m", required=True, help="model name (see recbole-llm --list-models)")
    p.add_argument("--dataset", "-d", required=True, help="dataset name, e.g. ml-100k")
    p.add_argument("--trials", type=int, default=None,
                   help="finished (complete or pruned) trials the study should hold (default 20 without --budget-hours)")
    p.add_argument("--budget-hours", type=float, default=None,
                   help="stop starting trials once the study's trials took this many hours (all workers)")
    p.add_argument("--space", default=None, help="search space YAML (default: properties/search/<Model>.yaml "
                                                  "or the one the model's plugin registers)")
    p.add_argument("--storage", default=None, help="Optuna storage: database URL, SQLite file (.db) or "
                                                    "journal:PATH (default: <out>/study.db)")
    p.add_argument("--study-name", default=None, help="study name in the storage (default: <Model>-<dataset>)")
    p.add_argument("--out", default=None, help="output folder (default: tune/<Model>-<dataset>)")
    p.add_argument("--config_files", default=None, help="space-separated config files, as for a normal run")
    p.add_argument("--tune-seed", type=int, default=2020, help="seed of the TPE sampler (default 2020)")
    p.add_argument("--pruner", choices=("median", "none"), default="median", help="pruning (default: median)")
    p.add_argument("--pruner-startup-trials", type=int, default=5,
                   help="finished trials before pruning starts (default 5)")
    p.add_argument("--pruner-warmup-steps", type=int, default=3,
                   help="validations of a trial before it can be pruned (default 3)")
    p.add_argument("--no-default-trial", action="store_true",
                   help="do not start the study with the model's default settings")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each trial's checkpoint folder")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = _parser().parse_known_args(argv)
    from recbole_llm.cli import _extra_settings, _user_input_message
    from recbole_llm.errors import ConfigError, RecBoleLLMError

    try:
        overrides = _extra_settings(unknown)
        for flag in ("model", "dataset", "config_files"):
            if flag in overrides:
                raise ConfigError(f"--{flag} is given twice; give it once.")
        config_files = args.config_files.strip().split() if args.config_files else None
        for path in config_files or []:
            if not os.path.isfile(path):
                raise ConfigError(f"config file {path} not found (--config_files, relative to {os.getcwd()}).")
        from recbole_llm.tune.study import TuneOptions, tune

        n_trials = args.trials if args.trials is not None or args.budget_hours is not None else 20
        opts = TuneOptions(
            model=args.model, dataset=args.dataset, n_trials=n_trials, budget_hours=args.budget_hours,
            space_file=args.space, storage=args.storage, study_name=args.study_name, out=args.out,
            config_files=config_files, overrides=overrides, seed=args.tune_seed, pruner=args.pruner,
            pruner_startup_trials=args.pruner_startup_trials, pruner_warmup_steps=args.pruner_warmup_steps,
            default_trial=not args.no_default_trial, keep_checkpoints=args.keep_checkpoints)
        summary = tune(opts)
        if summary["best_value"] is not None:
            default = summary["default_value"]
            print(f"best valid {summary['valid_metric']}: {summary['best_value']:.4f} (trial {summary['best_trial']})"
                  + (f", defaults: {default:.4f}" if default is not None else "")
                  + f"; best configuration: {Path(summary['out']) / 'best.yaml'}")
    except Exception as exc:
        if os.environ.get("RECBOLE_LLM_DEBUG"):
            raise
        message = exc if isinstance(exc, RecBoleLLMError) else _user_input_message(exc)
        if message is None:
            raise
        print(f"recbole-llm tune: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
