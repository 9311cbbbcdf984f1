"""Valid and test metrics of every LLM model and added baseline on the tests' tiny data, at full precision.

    python tests/tests_support/parity_metrics.py [CASE ...] [--save OUT.json] [--compare BEFORE.json]

A refactoring that must not change behaviour is checked by running this before and after and
comparing: each case runs in a fresh process (seeded as a run is), on the data and settings of the
end-to-end test it is named after (tests/test_*.py), with metrics unrounded; ``--compare`` exits 1
when any number differs by even one bit. With no CASE, all cases run."""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _setup(case, root):
    """Writes the case's data under ``root`` and returns ``(model, config_dict)``."""
    from conftest import fast_config, glta_tiny_config, write_ring_dataset, write_tiny_dataset

    from recbole_llm.llm.testing import save_tiny_llama

    if case == "GLTA":  # tests_support/glta_run.py (test_same_seed_identical_metrics...)
        write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
        save_tiny_llama(root / "llm")
        return "GLTA", glta_tiny_config(root, glta_ua_epochs=3, glta_graph_epochs=3)
    if case == "HeLLM":  # test_hellm.py::test_hellm_beats_pop_on_planted_structure...
        from test_hellm import tiny_config
        write_ring_dataset(root / "data", n_users=40, n_items=50, length=10)
        save_tiny_llama(root / "llm")
        return "HeLLM", tiny_config(root, hellm_epochs=5, hellm_learning_rate=0.005, hellm_sasrec_epochs=5,
                                    hellm_graph_epochs=2, hellm_prompt_head="In:", hellm_prompt_tail="Out:",
                                    stopping_step=10)
    if case == "HeLLMPre":  # test_hellm.py::test_hellmpre_loss_falls_and_beats_pop...
        from test_hellm import tiny_config
        write_tiny_dataset(root / "data", n_users=80, n_items=40, per_user=(10, 16))
        return "HeLLMPre", tiny_config(root, epochs=20, eval_step=5, stopping_step=20, train_batch_size=256,
                                       learning_rate=0.01)
    if case == "GraphAttentiveGPT2":  # test_graph_attentive_gpt2.py::test_planted_structure_beats_pop...
        from test_graph_attentive_gpt2 import gat_config
        write_tiny_dataset(root / "data", n_users=60, n_items=40, per_user=(8, 14))
        save_tiny_llama(root / "llm")
        return case, gat_config(root, gat_finetune_epochs=12, gat_id_learning_rate=0.01,
                                gat_backbone_learning_rate=0.001, stopping_step=20)
    if case in ("RLMRecCon", "RLMRecGen"):  # test_rlmrec_unisrec.py::test_rlmrec_generated_profiles_end_to_end...
        from test_rlmrec_unisrec import rlmrec_config
        write_tiny_dataset(root / "data", n_users=30, n_items=40, per_user=(6, 14))
        save_tiny_llama(root / "llm")
        return case, rlmrec_config(root, epochs=8)
    if case == "UniSRec":
        from test_rlmrec_unisrec import unisrec_config
        write_tiny_dataset(root / "data")
        return case, unisrec_config(root, unisrec_pretrain_epochs=1, epochs=4, eval_step=2)
    if case in ("CoLLM", "LLaRA"):  # test_collm_llara.py::test_beats_pop_on_planted_structure
        from test_collm_llara import planted_settings, tiny_config
        write_ring_dataset(root / "data", n_users=40, n_items=30, length=10)
        save_tiny_llama(root / "llm")
        return case, tiny_config(root, case, stopping_step=10, **planted_settings(case))
    if case.startswith("MM-"):  # test_baselines_multimodal.py::test_loss_falls_and_beats_pop
        from test_baselines_multimodal import N_ITEMS, N_USERS, tiny_config, write_features
        name, modalities = case[3:].split(":")
        write_tiny_dataset(root / "data", n_users=N_USERS, n_items=N_ITEMS, per_user=(10, 16))
        write_features(root / "data" / "tiny", "image_feat.npy", seed=0)
        write_features(root / "data" / "tiny", "text_feat.npy", dim=16, seed=1)
        return name, tiny_config(root, mm_modalities=modalities, epochs=10, eval_step=10, stopping_step=10)
    if case in ("HCCF", "LightGCNPlus", "HCCFPlus", "MDCVAE"):  # test_baselines_graph.py
        from test_baselines_graph import tiny_config
        write_tiny_dataset(root / "data")
        return case, tiny_config(root, case)
    if case == "SASRecPerUser":  # test_sasrec_per_user.py::test_beats_pop_on_the_random_split...
        write_ring_dataset(root / "data", n_users=40, n_items=50, length=10)
        return case, fast_config(root, **{"MAX_ITEM_LIST_LENGTH": 5, "hidden_dropout_prob": 0.1,
                                          "attn_dropout_prob": 0.1, "epochs": 8, "learning_rate": 0.01,
                                          "load_col": {"inter": ["user_id", "item_id", "timestamp"]}})
    raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")


CASES = ["GLTA", "HeLLM", "HeLLMPre", "GraphAttentiveGPT2", "RLMRecCon", "RLMRecGen", "UniSRec", "CoLLM", "LLaRA",
         "MM-VBPR:text", "MM-GRCN:text", "MM-LATTICE:text", "MM-SLMRec:text", "MM-BM3:text+image",
         "MM-FREEDOM:image", "HCCF", "LightGCNPlus", "HCCFPlus", "MDCVAE", "SASRecPerUser"]


def _run_one(case):
    """In this (fresh) process: set up the case in a temporary folder, run it, print its metrics."""
    import os

    sys.path.insert(0, str(TESTS))
    from recbole_llm import compat
    compat.apply()
    from recbole_llm.quick_start import run_experiment

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["RECBOLE_LLM_CACHE"] = str(root / "cache")
        os.chdir(root)
        model, config = _setup(case, root)
        config["metric_decimal_place"] = 17  # RecBole rounds to 4 places by default; compare every bit
        result = run_experiment(model, "tiny", config_dict=config)
    print("RESULT " + json.dumps({"test": {k: float(v) for k, v in result["test_result"].items()},
                                  "valid": {k: float(v) for k, v in result["best_valid_result"].items()}}))


def main(argv):
    if argv[:1] == ["--one"]:
        return _run_one(argv[1])
    save = argv[argv.index("--save") + 1] if "--save" in argv else None
    compare = argv[argv.index("--compare") + 1] if "--compare" in argv else None
    cases = [a for a in argv if not a.startswith("--") and a not in (save, compare)] or CASES
    results = {}
    for case in cases:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--one", case], capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            print(f"{case}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
            results[case] = {"error": out.stderr[-500:]}
            continue
        results[case] = json.loads(lines[-1][len("RESULT "):])
        print(f"{case} ({time.perf_counter() - t0:.0f} s): {json.dumps(results[case]['test'])}", flush=True)
    if save:
        Path(save).write_text(json.dumps(results, indent=1) + "\n")
    if compare:
        before = json.loads(Path(compare).read_text())
        differ = [c for c in results if before.get(c) != results[c]]
        print("bit-identical to " + compare if not differ else f"DIFFERENT from {compare}: {', '.join(differ)}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
