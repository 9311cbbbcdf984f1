"""LightGCN on ml-100k through recbole-llm vs RecBole's own ``run_recbole``: same config, same seed.

    python benchmarks/foundation_lightgcn_ml100k.py [--epochs 20] [--model LightGCN]

Each side runs in a fresh process (so timings and memory are separate); RecBole's side only
gets ``recbole_llm.compat.apply()``, without which RecBole 1.2.1 does not run on this stack.
Prints both test results, whether they are identical, wall time and peak memory.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time

RUNNER = r"""
import json, resource, sys, time
side, model, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = {"epochs": epochs, "show_progress": False, "seed": 2020, "reproducibility": True, "state": "WARNING"}
t0 = time.perf_counter()
if side == "recbole":
    from recbole_llm import compat
    compat.apply()
    from recbole.quick_start import run_recbole
    res = run_recbole(model=model, dataset="ml-100k", config_dict=config)
else:
    from recbole_llm import run_recbole_llm
    res = run_recbole_llm(model=model, dataset="ml-100k", config_dict=config)
print("RESULT " + json.dumps({"test": {k: float(v) for k, v in res["test_result"].items()},
                            "valid": {k: float(v) for k, v in res["best_valid_result"].items()},
                            "seconds": time.perf_counter() - t0,
                            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_side(side, model, epochs, workdir):
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, side, model, str(epochs)],
        cwd=workdir, capture_output=True, text=True, check=False,
    )
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{side} run failed:\n{out.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = {side: run_side(side, args.model, args.epochs, workdir) for side in ("recbole", "recbole_llm")}
    metrics = list(results["recbole"]["test"])
    print(f"{args.model} on ml-100k, {args.epochs} epochs, seed 2020, RecBole defaults otherwise")
    print(f"| side | {' | '.join(metrics)} | wall s | peak RSS MB |")
    print("|" + "---|" * (len(metrics) + 3))
    for side, r in results.items():
        print(f"| {side} | " + " | ".join(f"{r['test'][m]:.4f}" for m in metrics) + f" | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    same = results["recbole"]["test"] == results["recbole_llm"]["test"] and results["recbole"]["valid"] == results["recbole_llm"]["valid"]
    print(f"identical valid and test metrics: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
