"""Test metrics of GLTA's stage-1 LightGCN (the pretraining cache of this split) with RecBole's
evaluator: the "LightGCN trained like its stage 1" that GLTA must beat (issue 11).

    RECBOLE_LLM_CACHE=<cache> python3 benchmarks/glta_stage1_lightgcn.py [--seed 2020]
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2020)
    args = ap.parse_args()
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from recbole_llm.config import Config

    config = Config(model="GLTA", dataset="ml-100k", config_dict={"seed": args.seed, "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))

    from recbole_llm.models.glta.settings import GLTA_SETTINGS
    from recbole_llm.models.glta.trainer import graph_overrides

    overrides = graph_overrides(GLTA_SETTINGS.read(config))
    from recbole_llm.training.pretrain import derived_config, pretrain_recbole_model

    done = pretrain_recbole_model(config, train, valid, model="LightGCN", overrides=overrides, work_dir=Path("/tmp/glta"),
                                  label="graph", architecture_keys=("embedding_size", "n_layers"))

    sub = derived_config(config, {**overrides, "model": "LightGCN"})
    trainer = Trainer(sub, done.model)
    valid_result = trainer.evaluate(valid, load_best_model=False)
    test_result = trainer.evaluate(test, load_best_model=False)
    print(json.dumps({"source": done.source, "valid": dict(valid_result), "test": dict(test_result)}, default=float))


if __name__ == "__main__":
    main()
