"""HCCF, LightGCN+, HCCF+ and MD-CVAE: loss falls, beats Pop on planted data,
graphs and histories from the training split only, a clear error without item text.

Tiny generated datasets; item texts through the shipped MiniLM (cached under the test's tmp dir).
"""

from pathlib import Path

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import fast_config, write_tiny_dataset
from recbole_llm.config import Config
from recbole_llm.data.text import MissingItemTextError
from recbole_llm.graph.interactions import normalized_adjacency
from recbole_llm.models.baselines.hccf import HCCF
from recbole_llm.models.baselines.md_cvae import MDCVAE
from recbole_llm.models.baselines.text_alignment import HCCFPlus, LightGCNPlus
from recbole_llm.quick_start import run_experiment
from tests_support.baselines import assert_beats_pop, assert_loss_falls, loss_trace

PACKAGE = Path(__file__).resolve().parent.parent / "recbole_llm" / "models" / "baselines"
MODELS = {"HCCF": HCCF, "LightGCNPlus": LightGCNPlus, "HCCFPlus": HCCFPlus, "MDCVAE": MDCVAE}
FILES = ["hccf.py", "text_alignment.py", "md_cvae.py", "plugin_graph.py"]
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}
LOO = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
# small sizes for the tiny data (the YAML holds the authors' sizes); every other key from the YAML
TINY = {
    "HCCF": {"hccf_hyperedges": 16, "learning_rate": 0.01},
    "HCCFPlus": {"hccf_hyperedges": 16, "learning_rate": 0.01},
    "LightGCNPlus": {"learning_rate": 0.01},
    "MDCVAE": {"mdcvae_pretrain_epochs": 20, "learning_rate": 0.01},
}


def tiny_config(root, model, **overrides):
    cfg = fast_config(root, load_col=LOAD_COL, item_text_template="{movie_title} ({genre})", epochs=20)
    cfg.update(TINY.get(model, {}))
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphbl")
    write_tiny_dataset(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBOLE_LLM_CACHE", str(root / "cache"))
        mp.chdir(root)
        yield root


def build(root, model, dataset="tiny", **overrides):
    config = Config(model=model, dataset=dataset, config_dict=tiny_config(root, model, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, MODELS[model](config, train._dataset), train, valid, test


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("model", list(MODELS))
def test_loss_falls(root, model):
    _, net, train, _, _ = build(root, model)
    batches = [batch for _, batch in zip(range(4), train)]
    assert_loss_falls(loss_trace(net, batches, steps=30, lr=0.01))


@pytest.fixture(scope="module")
def pop_result(root):
    return run_experiment("Pop", "tiny", config_dict=fast_config(root), saved=False)


@pytest.mark.parametrize("model", list(MODELS))
def test_beats_pop_on_planted_structure(root, pop_result, model):
    result = run_experiment(model, "tiny", config_dict=tiny_config(root, model), saved=False)
    assert_beats_pop(result, pop_result)


def test_text_alignment_trains_the_projector_only_through_its_loss(root):
    _, net, train, _, _ = build(root, "HCCFPlus")
    batch = next(iter(train))
    loss, items = net.base_losses(batch)
    assert loss.grad_fn is not None
    (grad,) = torch.autograd.grad(loss, [net.text_projector[0].weight], allow_unused=True)
    assert grad is None  # HCCF's own loss never touches the projector
    full = net.calculate_loss(batch)
    full.backward()
    assert net.text_projector[0].weight.grad.abs().sum() > 0 and not net.item_text.requires_grad


# ------------------------------------------------------------------------------ training split only
def _write_held_out_variant(root):
    """``tiny`` and ``tiny2``: the same interactions except each user's last two by time (the
    leave-one-out validation and test items), which point to other items in ``tiny2``."""
    write_tiny_dataset(root / "data", name="tiny2")
    src = (root / "data" / "tiny" / "tiny.inter").read_text().splitlines()
    header, rows = src[0], [r.split("\t") for r in src[1:]]
    by_user = {}
    for r in rows:
        by_user.setdefault(r[0], []).append(r)
    changed = []
    for user_rows in by_user.values():
        user_rows.sort(key=lambda r: float(r[3]))
        liked = {r[1] for r in user_rows}
        for r in user_rows[-2:]:
            r[1] = next(str(i) for i in range(1, 61) if str(i) not in liked)
            liked.add(r[1])
            changed.append(r)
    (root / "data" / "tiny2" / "tiny2.inter").write_text(
        "\n".join([header] + ["\t".join(r) for rows_ in by_user.values() for r in rows_]) + "\n")
    return changed


def _token_pairs(dataset, pairs):
    users, items = dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field]
    return {(users[u], items[i]) for u, i in pairs}


def _adjacency_by_token(dataset, adj, n_users):
    adj = adj.coalesce()
    rows, cols = adj.indices()
    keep = (rows < n_users) & (cols >= n_users)
    users, items = dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field]
    return {(users[int(u)], items[int(i) - n_users]): round(float(v), 6)
            for u, i, v in zip(rows[keep], cols[keep], adj.values()[keep])}


@pytest.mark.parametrize("model", ["HCCF", "LightGCNPlus", "MDCVAE"])
def test_graphs_come_from_the_training_split_only(root, model):
    changed = _write_held_out_variant(root)
    built = {}
    for name in ("tiny", "tiny2"):
        _, net, train, valid, test = build(root, model, dataset=name, eval_args=LOO)
        ds = train.dataset
        train_pairs = set(zip(ds.inter_feat[ds.uid_field].tolist(), ds.inter_feat[ds.iid_field].tolist()))
        held_out = {(int(u), int(i)) for data in (valid, test) for u, i in
                    zip(data.dataset.inter_feat[ds.uid_field].tolist(), data.dataset.inter_feat[ds.iid_field].tolist())}
        assert held_out and not held_out <= train_pairs
        if model == "MDCVAE":  # the Multi-VAE input rows: training histories
            hist, values = net.history_item_id, net.history_item_value
            graph = {(u, int(i)) for u in range(hist.shape[0]) for i, v in zip(hist[u], values[u]) if v > 0}
            assert graph == train_pairs
            built[name] = _token_pairs(ds, graph)
        else:
            adj = net.norm_adj_matrix
            if model == "HCCF":
                assert torch.equal(adj.coalesce().values(), normalized_adjacency(ds).values())
            by_token = _adjacency_by_token(ds, adj, net.n_users)
            assert set(by_token) == _token_pairs(ds, train_pairs)
            built[name] = by_token
    changed_tokens = {(r[0], r[1]) for r in changed}
    assert built["tiny"] == built["tiny2"]  # other validation/test items: the same graph
    assert not set(built["tiny2"]) & changed_tokens


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("model", ["LightGCNPlus", "HCCFPlus", "MDCVAE"])
def test_missing_item_text_is_a_clear_error(root, model):
    load_col = {"inter": LOAD_COL["inter"], "item": ["item_id"]}
    with pytest.raises(MissingItemTextError) as info:
        build(root, model, load_col=load_col)
    message = str(info.value)
    assert model in message and "movie_title" in message and "genre" in message
    assert "load_col" in message and "text_feature_file" in message


def test_drop_edges_keeps_a_subset_of_entries_rescaled(root):
    from recbole_llm.graph.sparse import drop_edges

    _, net, _, _, _ = build(root, "HCCF")
    adj = net.norm_adj_matrix
    assert drop_edges(adj, 1.0) is adj
    torch.manual_seed(0)
    dropped = drop_edges(adj, 0.25)
    full = {tuple(ix): v for ix, v in zip(adj.indices().T.tolist(), adj.values().tolist())}
    kept = dict(zip(map(tuple, dropped.indices().T.tolist()), dropped.values().tolist()))
    assert 0 < len(kept) < 0.5 * len(full) and set(kept) <= set(full)
    assert all(abs(v - 4 * full[ix]) < 1e-6 for ix, v in kept.items())
