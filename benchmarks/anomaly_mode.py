"""Cost of autograd anomaly mode, which RecBole's sine.py switched on at import for every model
until the compat gate restored it (recbole_llm/compat.py, 8.): one model on ml-100k, one thread,
the same seed and split, with anomaly mode as the gate leaves it (off) or switched back on.

    OMP_NUM_THREADS=1 python3 benchmarks/anomaly_mode.py FREEDOM off
    OMP_NUM_THREADS=1 python3 benchmarks/anomaly_mode.py FREEDOM on

Prints one JSON line: the per-epoch training times, their median and the test NDCG@10 (equal in
both modes: anomaly mode only checks, it changes no number). Results: benchmarks/results/anomaly_mode.md.
"""

import json
import statistics
import sys
import tempfile

import torch

from recbole_llm.plugins import get_registry
from recbole_llm.quick_start import run_experiment


def main(model, mode):
    torch.set_num_threads(1)
    get_registry()  # imports every RecBole model module, sine.py included
    if mode == "on":
        torch.autograd.set_detect_anomaly(True)
    work = tempfile.mkdtemp(prefix="anomaly_mode_")
    res = run_experiment(model, "ml-100k", config_dict={
        "epochs": 4, "eval_step": 100, "state": "WARNING", "show_progress": False, "seed": 2020, "worker": 0,
        "data_path": f"{work}/data", "checkpoint_dir": f"{work}/saved"})
    times = res["stats"]["epoch_times"]
    print(json.dumps({"model": model, "anomaly": torch.is_anomaly_enabled(), "epoch_times": [round(t, 3) for t in times],
                      "median": round(statistics.median(times), 3), "ndcg@10": round(res["test_result"]["ndcg@10"], 4)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
