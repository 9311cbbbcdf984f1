"""Where does GLTA lose LightGCN's signal? Offline experiments on cached slot states (issue 11).

    RECBOLE_LLM_CACHE=<cache with the stage-1 LightGCN> python3 benchmarks/glta_probe.py [--out F]

One ml-100k split (RecBole's RS 80/10/10, seed 2020), stage-1 LightGCN taken from the pretraining
cache (trained with glta_graph_* if missing), GLTA's user-item prompts without profile/prediction
texts, projectors at their (norm-matched) initialisation, no training through the LLM. The slot
hidden states of every user are computed once; then, on users split in half (fit / held-out):

* ``lightgcn``: E_u . E_i (the stage-1 model itself);
* ``probe``: ridge regression h_slot1 -> E_u on the fit users, ranking probe(h) . E_i (hypothesis 1:
  does the user signal survive the frozen LLM?);
* ``head_ce``: the GLLM layer (graph head, W = E_i G + b) trained with softmax cross-entropy on the
  fit users' slot-1 states against all their training items (hypothesis 2: more supervision);
* ``head_ce_probe_init``: the same, G initialised from the probe (hypothesis 4: head initialisation).
NDCG@10 / Recall@10 on the validation and test items of the held-out users, training items masked.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def ndcg_recall(scores, truth, k=10):
    top = scores.topk(k, dim=1).indices.tolist()
    nd, rc = [], []
    for row, items in zip(top, truth):
        if not items:
            continue
        hit = [1.0 if i in items else 0.0 for i in row]
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hit))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(items), k)))
        nd.append(dcg / idcg)
        rc.append(sum(hit) / len(items))
    return float(np.mean(nd)), float(np.mean(rc))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "glta_probe.json"))
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--slot-cache", default="/tmp/glta/slot_states.pt")
    ap.add_argument("--template", default=None, help="glta_ua_template override")
    ap.add_argument("--slot-input", choices=["slot_token", "user_token"], default="slot_token",
                    help="user_token: every slot's input is the user's projected token")
    ap.add_argument("--n-users", type=int, default=0, help="first N users only (0 = all)")
    ap.add_argument("--fit-all", action="store_true",
                    help="fit on every user and evaluate on every user (what glta_head_init: probe does: the "
                         "training split of all users is training data; their valid/test items are not)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="GLTA setting override")
    args = ap.parse_args()
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.training.lightgcn import pretrain_lightgcn
    from recbole_llm.models.glta import GLTA, GLTATrainer

    cfg = {"seed": args.seed, "glta_profile_tokens": False, "glta_prediction_tokens": False,
           "show_progress": False, "state": "WARNING"}
    if args.template:
        cfg["glta_ua_template"] = args.template
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    config = Config(model="GLTA", dataset="ml-100k", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = GLTA(config, train._dataset)
    trainer = GLTATrainer(config, model)
    t0 = time.perf_counter()
    done = pretrain_lightgcn(config, train, valid, overrides=trainer.graph_overrides(), work_dir=Path("/tmp/glta"),
                             label="graph", use_cache=True)
    model.set_graph_embeddings(done.user, done.item, source=done.source)
    print("graph", done.source, f"{time.perf_counter() - t0:.1f}s", flush=True)
    users = list(range(1, model.n_users))
    if args.n_users:
        users = users[: args.n_users]
    if os.path.isfile(args.slot_cache):
        H = torch.load(args.slot_cache)
    else:
        t0 = time.perf_counter()
        model.eval()
        rows = []
        with torch.no_grad():
            for i in range(0, len(users), 64):
                chunk = users[i : i + 64]
                if args.slot_input == "user_token":
                    vecs = model.user_tokens(chunk)
                    prompts = [model.ua_prompt(u, model.inference_history(u), user_vector=vecs[b],
                                               slot_values=vecs[b].unsqueeze(0).expand(model.n_slots, -1))
                               for b, u in enumerate(chunk)]
                else:
                    prompts = model.inference_prompts(chunk)
                _, h = model._forward_slots(prompts, "ua", "infer")
                rows.append(h.float().cpu())
        H = torch.cat(rows)  # [U, L, hidden]
        torch.save(H, args.slot_cache)
        print(f"slot states {tuple(H.shape)} in {time.perf_counter() - t0:.1f}s", flush=True)

    def truth_of(data):
        ds = data.dataset
        u, i = ds.inter_feat[ds.uid_field].numpy(), ds.inter_feat[ds.iid_field].numpy()
        t = {x: set() for x in users}
        for a, b in zip(u, i):
            t.setdefault(int(a), set()).add(int(b))
        return t

    tv, tt = truth_of(valid), truth_of(test)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(users))
    fit_idx, held_idx = np.sort(perm[: len(users) // 2]), np.sort(perm[len(users) // 2 :])
    if args.fit_all:
        fit_idx = held_idx = np.arange(len(users))
    Eu, Ei = model.user_graph_emb[users], model.item_graph_emb
    mask = model.history_mask[users].clone()
    mask[:, 0] = True

    def evaluate(scores, idx):
        s = scores[idx].clone().masked_fill(mask[idx], float("-inf"))
        v = ndcg_recall(s, [tv[users[j]] for j in idx])
        t = ndcg_recall(s, [tt[users[j]] for j in idx])
        return {"valid_ndcg@10": v[0], "valid_recall@10": v[1], "test_ndcg@10": t[0], "test_recall@10": t[1]}

    results = {}
    results["lightgcn"] = evaluate(Eu @ Ei.T, held_idx)
    results["mean_user"] = evaluate(Eu[fit_idx].mean(0, keepdim=True).expand_as(Eu) @ Ei.T, held_idx)
    out = {}
    for slot_name, X in (("slot1", H[:, 0]), ("slots_mean", H.mean(1))):
        X = X - X[fit_idx].mean(0)
        mu = Eu[fit_idx].mean(0)
        Xf, Yf = X[fit_idx].double(), (Eu[fit_idx] - mu).double()
        best = None
        for lam in (1.0, 10.0, 100.0, 1e3, 1e4, 1e5):
            W = torch.linalg.solve(Xf.T @ Xf + lam * torch.eye(X.shape[1], dtype=torch.double), Xf.T @ Yf).float()
            r = evaluate((X @ W + mu) @ Ei.T, held_idx)
            fit_r2 = 1 - float(((X[held_idx] @ W + mu - Eu[held_idx]) ** 2).sum() / ((Eu[held_idx] - mu) ** 2).sum())
            r["heldout_r2"] = fit_r2
            out[f"probe_{slot_name}_lam{lam}"] = r
            if best is None or r["valid_ndcg@10"] > best[1]["valid_ndcg@10"]:
                best = (lam, r, W)
        results[f"probe_{slot_name}"] = dict(best[1], ridge=best[0])
        print(slot_name, results[f"probe_{slot_name}"], flush=True)
        if slot_name == "slot1":
            W_probe = best[2]
            b_probe = (mu - X[fit_idx].mean(0) @ W_probe) @ Ei.T

    # GLLM graph head trained on slot-1 states, all training items as targets (multi-positive CE)
    X = H[:, 0] - H[fit_idx, 0].mean(0)
    targets = model.history_mask[users].float()
    targets[:, 0] = 0
    for name, init in (("head_ce", None), ("head_ce_probe_init", W_probe)):
        torch.manual_seed(0)
        G = torch.nn.Parameter(torch.randn(X.shape[1], Ei.shape[1]) * 0.01 if init is None else init.clone())
        b = torch.nn.Parameter(torch.zeros(Ei.shape[0]) if init is None else (mu @ Ei.T).clone())
        opt = torch.optim.Adam([G, b], lr=2e-3)
        Xf, Tf = X[fit_idx], targets[fit_idx]
        trace = []
        for step in range(300):
            logits = (Xf @ G) @ Ei.T + b
            logits[:, 0] = -1e9
            loss = -(F.log_softmax(logits, -1) * Tf).sum(1).div(Tf.sum(1).clamp(min=1)).mean()
            opt.zero_grad(); loss.backward(); opt.step()
            if (step + 1) % 100 == 0:
                with torch.no_grad():
                    r = evaluate((X @ G) @ Ei.T + b, held_idx)
                trace.append((step + 1, float(loss), r["valid_ndcg@10"]))
        with torch.no_grad():
            results[name] = dict(evaluate((X @ G) @ Ei.T + b, held_idx), trace=trace)
        print(name, results[name], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    json.dump({"protocol": "ml-100k RS 80/10/10 seed %d; held-out half of users (%d); slot states of GLTA's untrained "
               "prompt (no PF/PD), LightGCN from the stage-1 cache" % (args.seed, len(held_idx)),
               "template": config["glta_ua_template"], "slot_input": args.slot_input, "users": len(users),
               "results": results, "probe_grid": out}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
