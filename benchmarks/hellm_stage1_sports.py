"""HeLLM stage 1 (HeLLMPre) on a synthetic graph of Amazon-Sports' size: graph construction, time per
training step / epoch and peak memory, sparse (ours) against a dense reference (the authors' dense
U x U and I x I matrices).

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/hellm_stage1_sports.py            # ~10-20 min on 2 cores

Synthetic data: 35,598 users, 18,357 items, 296,337 interactions (Sports' 5-core size; 260,739 after
taking each user's last two out, as Table 2 counts), item popularity Zipf-like, users drawn to one
of 50 latent clusters; text (768-d) and image (512-d) features = cluster centre + noise, written as
MMRec-style ``text_feat.npy`` / ``image_feat.npy``. Loaded through RecBole (leave-one-out split).

Each measurement runs in its own subprocess, so its peak RSS (VmHWM) is its own:

* ``sparse``: build HeLLMPre (U2U, I2I kNN in chunks, LightGCN adjacency), then training steps of
  batch 1024 (the authors') with the all-node contrastive loss (``hellmpre_cl_anchors: 0``), with 4096
  sampled anchors, and without CL; time per epoch = steps x ``ceil(n_train / 1024)``.
* ``dense``: the same U2U and I2I adjacencies as dense float32 tensors (what the authors hold) and one
  propagation layer with them, against the sparse product.

Results: ``benchmarks/results/hellm_stage1_sports.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

N_USERS, N_ITEMS, N_INTER = 35598, 18357, 296337


def make_dataset(root: Path, seed=0):
    import numpy as np

    folder = root / "sports-synth"
    if (folder / "sports-synth.inter").is_file():
        return root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_clusters = 50
    item_cluster = rng.integers(0, n_clusters, N_ITEMS)
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    pop = pop[rng.permutation(N_ITEMS)]
    per_user = np.full(N_USERS, 5)
    extra = N_INTER - per_user.sum()
    per_user += np.bincount(rng.choice(N_USERS, extra, p=(w := rng.pareto(2.0, N_USERS) + 1) / w.sum()),
                            minlength=N_USERS)
    by_cluster = [np.flatnonzero(item_cluster == c) for c in range(n_clusters)]
    rows = []
    t = 1_000_000_000
    for u in range(N_USERS):
        c = rng.integers(n_clusters)
        k = int(per_user[u])
        own = by_cluster[c]
        n_own = min(len(own), int(round(0.7 * k)))
        chosen = set(rng.choice(own, n_own, replace=False, p=pop[own] / pop[own].sum()).tolist())
        while len(chosen) < k:
            chosen.add(int(rng.choice(N_ITEMS, p=pop / pop.sum())))
        for i in rng.permutation(list(chosen)):
            t += int(rng.integers(1, 1000))
            rows.append(f"{u}\t{i}\t{t}")
    (folder / "sports-synth.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    for name, dim in (("text_feat.npy", 768), ("image_feat.npy", 512)):
        centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
        feats = centres[item_cluster] + 0.8 * rng.normal(size=(N_ITEMS, dim)).astype(np.float32)
        np.save(folder / name, feats)
    return root


def config_dict(root: Path, **extra):
    return {"data_path": str(root), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "text_feature_file": "text_feat.npy", "image_feature_file": "image_feat.npy",
            "hellmpre_modalities": "text+image", "hellmpre_topk": 5, "train_batch_size": 1024,
            "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
            "state": "WARNING", "checkpoint_dir": str(root / "saved"), **extra}


def run_sparse(root: Path, steps: int):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.memory import peak_rss_mb
    from recbole_llm.models.hellm.pre import HeLLMPre

    out = {}
    config = Config(model="HeLLMPre", dataset="sports-synth", config_dict=config_dict(root))
    init_seed(2020, True)
    t0 = time.perf_counter()
    train, _, _ = data_preparation(config, create_dataset(config))
    out["data_seconds"] = time.perf_counter() - t0
    out["n_train"] = len(train.dataset)
    out["rss_after_data_mb"] = peak_rss_mb()
    t0 = time.perf_counter()
    model = HeLLMPre(config, train.dataset)
    out["graph_build_seconds"] = time.perf_counter() - t0
    out["graphs"] = model.graph_info
    out["rss_after_graphs_mb"] = peak_rss_mb()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = iter(train)
    steps_per_epoch = math.ceil(out["n_train"] / 1024)
    out["steps_per_epoch"] = steps_per_epoch
    from recbole_llm.settings import SettingsView

    for label, changes, n in (("all-node CL (authors')", {}, steps), ("CL on 4096 sampled anchors", {"cl_anchors": 4096}, 3),
                              ("no CL (w/o CL)", {"cl": False}, 3)):
        values = model.settings.as_dict()
        values.update(changes)
        model.settings = SettingsView(values)
        model.use_cl = values["cl"]
        times = []
        for _ in range(n):
            batch = next(batches)
            t0 = time.perf_counter()
            loss = model.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        per_step = sorted(times)[len(times) // 2]
        out[label] = {"step_seconds": times, "median_step_seconds": per_step,
                      "epoch_seconds_estimate": per_step * steps_per_epoch, "peak_rss_mb": peak_rss_mb()}
        print(label, out[label], flush=True)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_dense(root: Path):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.memory import peak_rss_mb, reset_peak_rss
    from recbole_llm.models.hellm.pre import HeLLMPre

    config = Config(model="HeLLMPre", dataset="sports-synth", config_dict=config_dict(root))
    init_seed(2020, True)
    train, _, _ = data_preparation(config, create_dataset(config))
    model = HeLLMPre(config, train.dataset)
    out = {"rss_sparse_model_mb": peak_rss_mb()}
    x_u = model.user_hyper.weight.detach()
    x_i = model.item_hyper.weight.detach()
    t0 = time.perf_counter()
    sparse_u = torch.sparse.mm(model.u2u_adj, x_u)
    sparse_i = torch.sparse.mm(model.i2i_adj, x_i)
    out["sparse_layer_seconds"] = time.perf_counter() - t0
    reset_peak_rss()
    t0 = time.perf_counter()
    dense_u = model.u2u_adj.to_dense()
    dense_i = model.i2i_adj.to_dense()
    out["densify_seconds"] = time.perf_counter() - t0
    out["dense_bytes"] = dense_u.numel() * 4 + dense_i.numel() * 4
    t0 = time.perf_counter()
    du, di = dense_u @ x_u, dense_i @ x_i
    out["dense_layer_seconds"] = time.perf_counter() - t0
    out["max_abs_diff"] = float(max((du - sparse_u).abs().max(), (di - sparse_i).abs().max()))
    out["peak_rss_dense_mb"] = peak_rss_mb()
    out["u2u_nnz"], out["i2i_nnz"] = int(model.u2u_adj._nnz()), int(model.i2i_adj._nnz())
    out["sparse_bytes"] = (out["u2u_nnz"] + out["i2i_nnz"]) * (8 * 2 + 4)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="/tmp/hellm_sports_synth")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--part", choices=["sparse", "dense"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hellm_stage1_sports.json"))
    args = ap.parse_args(argv)
    root = Path(args.root)
    os.environ.setdefault("RECBOLE_LLM_CACHE", str(root / "cache"))
    if args.part:
        result = run_sparse(root, args.steps) if args.part == "sparse" else run_dense(root)
        print("RESULT " + json.dumps(result, default=str))
        return result
    t0 = time.perf_counter()
    make_dataset(root)
    report = {"synthetic": {"users": N_USERS, "items": N_ITEMS, "interactions": N_INTER,
                            "seconds_to_write": time.perf_counter() - t0},
              "loadavg_start": os.getloadavg(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)")}
    for part in ("sparse", "dense"):
        proc = subprocess.run([sys.executable, __file__, "--root", str(root), "--steps", str(args.steps), "--part", part],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        report[part] = json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-3000:]}
        print(part, json.dumps(report[part], default=str)[:2000], flush=True)
    report["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    s, d = report.get("sparse", {}), report.get("dense", {})
    lines = ["# HeLLM stage 1 (HeLLMPre) on a synthetic Amazon-Sports-sized graph", "",
             f"{N_USERS} users, {N_ITEMS} items, {N_INTER} interactions (leave-one-out training split: "
             f"{s.get('n_train')}); batch 1024, 64-d, topk 5, text 768-d + image 512-d features. Load average "
             f"{tuple(round(x, 1) for x in report['loadavg_start'])} on 2 shared cores.", "",
             f"- graph construction (U2U sparse product, I2I chunked kNN x 2 modalities, LightGCN adjacency): "
             f"{s.get('graph_build_seconds', float('nan')):.1f} s; graphs {s.get('graphs')}",
             f"- peak RSS after graphs: {s.get('rss_after_graphs_mb', float('nan')):.0f} MiB", ""]
    lines += ["| training step | median s/step | est. s/epoch | peak RSS MiB |", "|---|---|---|---|"]
    for key in ("all-node CL (authors')", "CL on 4096 sampled anchors", "no CL (w/o CL)"):
        if key in s:
            e = s[key]
            lines.append(f"| {key} | {e['median_step_seconds']:.2f} | {e['epoch_seconds_estimate']:.0f} | "
                         f"{e['peak_rss_mb']:.0f} |")
    if "dense_bytes" in d:
        lines += ["", "Sparse vs dense adjacency (U2U + I2I):", "",
                  f"- sparse: {d['u2u_nnz'] + d['i2i_nnz']} non-zeros, ~{d['sparse_bytes'] / 2**20:.0f} MiB; one "
                  f"propagation layer {d['sparse_layer_seconds']:.2f} s",
                  f"- dense (the authors'): {d['dense_bytes'] / 2**30:.2f} GiB; one propagation layer "
                  f"{d['dense_layer_seconds']:.2f} s; peak RSS while dense {d['peak_rss_dense_mb']:.0f} MiB; "
                  f"max |dense - sparse| = {d['max_abs_diff']:.2e}"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
