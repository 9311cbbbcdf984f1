"""How far HeLLMPre's U2U hypergraph smooths user views on a dataset's training split.

    python3 benchmarks/hellmpre_u2u.py --dataset ml-100k

For the split HeLLMPre trains on (leave-one-out by time, its YAML's protocol): the U2U density
(share of user pairs with a shared training item) and, for 0..3 propagation steps of the row-normalised
U2U matrix applied to a Xavier-initialised table (HeLLMPre's init), the mean pairwise cosine of the
normalised user views ``h_u / ||h_u||`` (0 = unrelated users, 1 = every user the same vector). Results:
``benchmarks/results/hellmpre_u2u_<dataset without dashes>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def mean_pairwise_cosine(h):
    """Mean of cos(h_u, h_v) over all ordered pairs u != v, without the n x n matrix."""
    import torch

    z = torch.nn.functional.normalize(h, dim=1)
    n = z.shape[0]
    s = z.sum(0)
    return float((s @ s - n) / (n * (n - 1)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    from recbole_llm import _recbole  # noqa: F401
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.graph.hypergraph import linked_pair_share, to_torch_sparse, user_hypergraph

    config = Config(model="HeLLMPre", dataset=args.dataset,
                    config_dict={"seed": args.seed, "hellmpre_i2i": False, "state": "ERROR"})
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    u2u = user_hypergraph(train.dataset)
    users = u2u.shape[0] - 1  # row 0 is RecBole's padding user
    adj = to_torch_sparse(u2u[1:, 1:])
    table = torch.nn.init.xavier_uniform_(torch.empty(users, config["embedding_size"]))
    cosines, h = [], table
    for step in range(args.steps + 1):
        cosines.append({"steps": step, "mean_pairwise_cosine": round(mean_pairwise_cosine(h), 4)})
        h = torch.sparse.mm(adj, h)
    report = {"dataset": args.dataset, "users": users, "u2u_nnz": int(u2u.nnz),
              "density": round(linked_pair_share(u2u), 4), "user_layers_default": config["hellmpre_user_layers"],
              "views": cosines}
    out = REPO / "benchmarks" / "results" / f"hellmpre_u2u_{args.dataset.replace('-', '')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
