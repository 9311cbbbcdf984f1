"""Time of the pre-RecBole atomic-file check (recbole_llm.data.atomic_check) on an ml-1m sized
generated ``.inter`` (1,000,209 rows: user, item, rating, timestamp), next to RecBole's own read of
the same file (pandas' python engine, as ``Dataset._load_feat`` does). Wall and CPU seconds; on a
shared machine the CPU seconds are the comparable number.

    python3 benchmarks/atomic_check_speed.py   ->  benchmarks/results/atomic_check_speed.md
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recbole_llm.data import atomic_check  # noqa: E402

ROWS = 1_000_209


def main():
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "big"
        folder.mkdir()
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"user_id:token": rng.integers(1, 6041, ROWS), "item_id:token": rng.integers(1, 3953, ROWS),
                              "rating:float": rng.integers(1, 6, ROWS), "timestamp:float": 956703932 + rng.integers(0, 10**8, ROWS)})
        frame.to_csv(folder / "big.inter", sep="\t", index=False)
        config = {"dataset": "big", "field_separator": "\t", "encoding": "utf-8", "seq_separator": " ",
                  "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]}, "USER_ID_FIELD": "user_id",
                  "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp", "rm_dup_inter": None,
                  "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user"}}
        rows = []
        for attempt in range(3):
            atomic_check._CACHE.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            atomic_check.check_atomic_files(dict(config), folder)
            rows.append(("check_atomic_files (first read)", time.perf_counter() - wall, time.process_time() - cpu))
        wall, cpu = time.perf_counter(), time.process_time()
        atomic_check.check_atomic_files(dict(config), folder)
        rows.append(("check_atomic_files (same file again, cached)", time.perf_counter() - wall, time.process_time() - cpu))
        wall, cpu = time.perf_counter(), time.process_time()
        pd.read_csv(folder / "big.inter", sep="\t", engine="python",
                    dtype={"user_id:token": str, "item_id:token": str, "rating:float": float, "timestamp:float": float})
        rows.append(("RecBole's read of the file (pandas python engine)", time.perf_counter() - wall,
                     time.process_time() - cpu))
    load = os.getloadavg()[0]
    lines = [f"# atomic-file check on {ROWS:,} rows", "",
             f"`python3 benchmarks/atomic_check_speed.py`, {os.cpu_count()} CPUs, load average {load:.1f} at the end.", "",
             "| step | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {name} | {w:.2f} | {c:.2f} |" for name, w, c in rows]
    out = Path(__file__).resolve().parent / "results" / "atomic_check_speed.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
