"""Multimodal baselines (VBPR, GRCN, LATTICE, SLMRec, BM3, FREEDOM): modality settings, the
sparse chunked kNN graph against MMRec's dense construction, interaction graphs from the training
split only, missing features, image-only runs, loss falls and beats Pop on planted structure."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import fast_config, write_tiny_dataset
from recbole_llm.config import Config
from recbole_llm.data.features import FeatureError
from recbole_llm.errors import ConfigError
from recbole_llm.graph import knn as knn_module
from recbole_llm.graph.interactions import degree_sensitive_pruning, normalized_adjacency
from recbole_llm.graph.knn import knn_graph
from recbole_llm.models.baselines.bm3 import BM3_SETTINGS
from recbole_llm.models.baselines.freedom import FREEDOM_SETTINGS
from recbole_llm.models.baselines.grcn import GRCN_SETTINGS
from recbole_llm.models.baselines.lattice import LATTICE_SETTINGS
from recbole_llm.models.baselines.slmrec import SLMREC_SETTINGS
from recbole_llm.models.baselines.vbpr import VBPR_SETTINGS
from recbole_llm.paths import properties_dir
from recbole_llm.quick_start import run_experiment
from recbole_llm.utils import get_model
from tests_support.baselines import assert_beats_pop, assert_loss_falls, loss_trace

PACKAGE = Path(__file__).resolve().parent.parent / "recbole_llm" / "models" / "baselines"
MODELS = ["VBPR", "GRCN", "LATTICE", "SLMRec", "BM3", "FREEDOM"]
SETTINGS = {"VBPR": VBPR_SETTINGS, "GRCN": GRCN_SETTINGS, "LATTICE": LATTICE_SETTINGS, "SLMRec": SLMREC_SETTINGS,
            "BM3": BM3_SETTINGS, "FREEDOM": FREEDOM_SETTINGS}
# RecBole's own keys a model YAML may set besides the model's schema
# random 80/10/10 per user: several test items per user (leave-one-out on 80 users is too noisy to compare)
LOO = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
SPLIT = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"}
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}
N_USERS, N_ITEMS = 80, 40


def tiny_config(root, **overrides):
    """Text features from a planted text_feat.npy (the sentence-encoder path is tested in
    test_text_features.py; loading it here would double this file's time)."""
    cfg = fast_config(root, load_col=LOAD_COL, item_text_template="{movie_title} ({genre})", eval_args=SPLIT,
                      text_feature_file="text_feat.npy",
                      metrics=["Recall", "NDCG"], topk=[10, 20], valid_metric="NDCG@20", train_batch_size=256,
                      learning_rate=0.01, knn_k=5, latent_embedding=16)
    cfg.update(overrides)
    return cfg


def write_features(folder, name, n_items=N_ITEMS, dim=12, seed=0):
    """MMRec-style feature matrix (row = item token): a random direction per genre (token % 4, as
    the planted dataset) plus noise."""
    rng = np.random.default_rng(seed)
    genres = rng.normal(0, 1, (4, dim))
    feats = rng.normal(0, 0.3, (n_items + 1, dim))
    for token in range(1, n_items + 1):
        feats[token] += 2.0 * genres[token % 4]
    np.save(Path(folder) / name, feats.astype(np.float32))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    write_tiny_dataset(root / "data", n_users=N_USERS, n_items=N_ITEMS, per_user=(10, 16))
    write_tiny_dataset(root / "data", name="noimg", n_users=N_USERS, n_items=N_ITEMS, per_user=(10, 16))
    write_features(root / "data" / "tiny", "image_feat.npy", seed=0)
    write_features(root / "data" / "tiny", "text_feat.npy", dim=16, seed=1)
    write_features(root / "data" / "noimg", "text_feat.npy", dim=16, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBOLE_LLM_CACHE", str(root / "cache"))
        mp.chdir(root)
        yield root


def build(root, model, dataset="tiny", **overrides):
    config = Config(model=model, dataset=dataset, config_dict=tiny_config(root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, get_model(model)(config, train._dataset), train, valid, test


def token_pairs(data):
    """``{(user token, item token)}`` of a split."""
    ds = data.dataset
    users = ds.id2token(ds.uid_field, ds.inter_feat[ds.uid_field].numpy())
    items = ds.id2token(ds.iid_field, ds.inter_feat[ds.iid_field].numpy())
    return set(zip(users.tolist(), items.tolist()))


# ----------------------------------------------------------- settings (registration: test_settings_registry.py)
@pytest.mark.parametrize("name", MODELS)
def test_a_modality_nothing_provides_is_refused_naming_the_model(name):
    values = yaml.safe_load((properties_dir() / "model" / f"{name}.yaml").read_text())
    with pytest.raises(ConfigError, match=rf"{name} setting mm_modalities"):
        SETTINGS[name].read({**values, "mm_modalities": "audio"})


def test_no_defaults_in_code():
    for path in PACKAGE.glob("*.py"):
        if path.name in ("vbpr.py", "grcn.py", "lattice.py", "slmrec.py", "bm3.py", "freedom.py", "multimodal.py"):
            source = path.read_text()
            assert not re.search(r"config\[", source) and "config.get(" not in source, path


# ------------------------------------------------------------------------------ kNN graph
def mmrec_dense_knn(feats, k, weighted):
    """MMRec's construction (utils.build_sim, build_knn_neighbourhood, compute_normalized_laplacian;
    FREEDOM's binary variant), dense."""
    norm = feats / feats.norm(dim=1, keepdim=True)
    sim = norm @ norm.T
    val, ind = sim.topk(k, dim=-1)
    adj = torch.zeros_like(sim).scatter_(-1, ind, val if weighted else torch.ones_like(val))
    d = adj.sum(-1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return torch.diag(d) @ adj @ torch.diag(d)


@pytest.mark.parametrize("weighted", [True, False])
def test_knn_graph_equals_the_dense_reference_and_is_built_in_chunks(weighted, monkeypatch):
    torch.manual_seed(0)
    n, k, chunk = 30, 5, 7
    feats = torch.randn(n + 1, 8) + 1.0  # positive-leaning: every kept similarity > 0
    feats[0] = 0  # RecBole's padding row
    valid = torch.arange(n + 1) > 0
    blocks = []
    real = knn_module.similarity_block
    monkeypatch.setattr(knn_module, "similarity_block", lambda q, r: blocks.append(tuple(q.shape[:1] + r.shape[:1]))
                        or real(q, r))
    graph = knn_graph(feats, k, chunk_size=chunk, valid=valid, weighted=weighted)
    assert graph.is_sparse and graph._nnz() == n * k
    dense = graph.to_dense()
    assert dense[0].abs().sum() == 0 and dense[:, 0].abs().sum() == 0
    assert torch.allclose(dense[1:, 1:], mmrec_dense_knn(feats[1:], k, weighted), atol=1e-6)
    assert len(blocks) == 5 and max(rows for rows, _ in blocks) <= chunk and {cols for _, cols in blocks} == {n}


def test_lattice_learned_graph_equals_the_dense_construction_and_learns(env):
    _, model, train, _, _ = build(env, "LATTICE", mm_modalities="text+image")
    assert model.modalities == ["image", "text"]
    src, dst, values = model.build_item_graph()
    n, lam = model.n_items, model.settings.lambda_coeff
    got = torch.zeros(n, n).index_put((dst, src), values.detach(), accumulate=True)
    w = torch.softmax(model.modal_weight.detach(), 0)
    learned, original = torch.zeros(n - 1, n - 1), torch.zeros(n - 1, n - 1)
    for m, name in enumerate(model.modalities):
        norm = torch.nn.functional.normalize(model.encoder.project(name).detach()[1:], dim=1)
        sim = norm @ norm.T
        val, ind = sim.topk(5, dim=-1)
        learned += w[m] * torch.zeros_like(sim).scatter_(-1, ind, val)
        original += w[m] * mmrec_dense_knn(model.encoder.features(name).detach()[1:], 5, True)
    d = learned.sum(-1).pow(-0.5)
    expected = (1 - lam) * torch.diag(d) @ learned @ torch.diag(d) + lam * original
    assert torch.allclose(got[1:, 1:], expected, atol=1e-5)
    # the graph is learned: the first batch of an epoch sends gradient to projections and modality weights
    model.pre_epoch()
    model.calculate_loss(next(iter(train))).backward()
    assert model.modal_weight.grad.abs().sum() > 0
    assert all(model.encoder.proj[m].weight.grad.abs().sum() > 0 for m in model.modalities)


# ------------------------------------------------------------------------------ training split only
def _token_edges(adj, dataset, n_users):
    """``{(user token, item token)}`` of the user->item block of a sparse adjacency."""
    idx = adj.coalesce().indices()
    keep = (idx[0] < n_users) & (idx[1] >= n_users)
    users = dataset.id2token(dataset.uid_field, idx[0, keep].numpy())
    items = dataset.id2token(dataset.iid_field, (idx[1, keep] - n_users).numpy())
    return set(zip(users.tolist(), items.tolist()))


def _graphs(model, dataset):
    n = model.n_users
    out = {}
    for attr in ("norm_adj", "masked_adj"):
        adj = getattr(model, attr, None)
        if adj is not None:
            out[attr] = _token_edges(adj, dataset, n)
    if hasattr(model, "src"):
        adj = torch.sparse_coo_tensor(torch.stack([model.src, model.dst]), torch.ones(len(model.src)),
                                      (model.n_nodes, model.n_nodes))
        out["edges"] = _token_edges(adj, dataset, n)
    return out


def test_interaction_graphs_come_from_the_training_split_only(env):
    # leave-one-out by time; the same interactions with every held-out (valid/test) item replaced by
    # another: the graphs must not change
    inter = (env / "data" / "tiny" / "tiny.inter").read_text().splitlines()
    rows = [line.split("\t") for line in inter[1:]]
    last = {}
    for r in rows:
        last.setdefault(r[0], []).append(r)
    for user_rows in last.values():
        user_rows.sort(key=lambda r: float(r[3]))
        seen = {r[1] for r in user_rows}
        fresh = [str(i) for i in range(1, N_ITEMS + 1) if str(i) not in seen]
        for r, item in zip(user_rows[-2:], fresh[:2]):
            r[1] = item
    folder = env / "data" / "changed"
    folder.mkdir(exist_ok=True)
    (folder / "changed.inter").write_text("\n".join([inter[0]] + ["\t".join(r) for r in rows]) + "\n")
    for name in ("changed.item", "text_feat.npy", "image_feat.npy"):
        source = env / "data" / "tiny" / name.replace("changed", "tiny")
        (folder / name).write_bytes(source.read_bytes())
    for name in ("GRCN", "LATTICE", "SLMRec", "BM3", "FREEDOM"):
        seen = []
        for dataset in ("tiny", "changed"):
            _, model, train, valid, test = build(env, name, dataset=dataset, eval_args=LOO)
            if name == "FREEDOM":
                torch.manual_seed(0)
                model.pre_epoch()
            graphs = _graphs(model, train.dataset)
            assert graphs, name
            train_tokens = token_pairs(train)
            assert train_tokens == _token_edges(normalized_adjacency(train.dataset), train.dataset, model.n_users)
            held_out = (token_pairs(valid) | token_pairs(test)) - train_tokens
            assert held_out
            for key, edges in graphs.items():
                assert edges <= train_tokens and not edges & held_out, (name, key)
            assert graphs["norm_adj" if "norm_adj" in graphs else "edges"] == train_tokens, name
            seen.append(graphs)
        seen[0].pop("masked_adj", None), seen[1].pop("masked_adj", None)  # sampled: checked above only
        assert seen[0] == seen[1], name


def test_degree_sensitive_pruning_keeps_the_share_favours_low_degree_edges_and_renormalises():
    # item 0 is a hub (all 10 users); each user also has one item of its own (items 1..10)
    users = torch.cat([torch.arange(10), torch.arange(10)])
    items = torch.cat([torch.zeros(10, dtype=torch.long), torch.arange(1, 11)])
    gen = torch.Generator().manual_seed(0)
    hub_kept = 0
    for _ in range(200):
        adj = degree_sensitive_pruning(users, items, 10, 11, keep_ratio=0.5, generator=gen)
        idx, val = adj.indices(), adj.values()
        down = idx[0] < 10
        assert down.sum() == 10 and idx.shape[1] == 20  # half the edges, both directions
        u, i = idx[0, down], idx[1, down] - 10
        hub_kept += int((i == 0).sum())
        du = torch.bincount(u, minlength=10).float()
        di = torch.bincount(i, minlength=11).float()
        assert torch.allclose(val[down], (du[u] * di[i]).rsqrt())
    assert hub_kept / (200 * 10) < 0.35  # hub edges: weight 1/sqrt(2*10) vs 1/sqrt(2) for the others


def test_freedom_prunes_a_new_training_graph_each_epoch(env):
    _, model, _, _, _ = build(env, "FREEDOM", dropout=0.5)
    model.pre_epoch()
    first = model.masked_adj.indices()
    model.pre_epoch()
    assert first.shape == model.masked_adj.indices().shape and not torch.equal(first, model.masked_adj.indices())
    assert first.shape[1] == 2 * int(len(model.edge_users) * 0.5)


def _user_item_agreement(model, pref, feat):
    """Mean cosine between each training edge's user preference and item content."""
    half = len(model.src) // 2
    users, items = model.src[:half], model.dst[:half] - model.n_users
    return (pref[users] * feat[items]).sum(1).mean()


def test_grcn_routing_moves_user_preferences_towards_their_items(env):
    _, model, _, _, _ = build(env, "GRCN", n_layers=2)
    with torch.no_grad():
        routed = _user_item_agreement(model, *model.route("text"))
        object.__setattr__(model.settings, "_values", {**model.settings.as_dict(), "n_layers": 0})
        plain = _user_item_agreement(model, *model.route("text"))
    assert routed > plain + 0.1, (routed, plain)


# ------------------------------------------------------------------------------ features
def test_missing_features_give_a_clear_error(env):
    no_text = {"item_text_template": None, "text_feature_file": None, "load_col": {"inter": LOAD_COL["inter"]}}
    for name in ("VBPR", "FREEDOM"):
        with pytest.raises(ConfigError, match=rf"{name} needs item features.*item_text_template.*image_feature_file"):
            build(env, name, dataset="noimg", **no_text)
    with pytest.raises(FeatureError, match=r"image_feat.npy does not exist.*image_feature_file"):
        build(env, "BM3", dataset="noimg", mm_modalities="image")
    _, model, _, _, _ = build(env, "BM3", dataset="noimg")
    assert model.modalities == ["text"]
    _, model, _, _, _ = build(env, "BM3", **no_text)
    assert model.modalities == ["image"]


# ------------------------------------------------------------------------------ training behaviour
@pytest.fixture(scope="module")
def pop(env):
    return run_experiment("Pop", "tiny", config_dict=fast_config(env, load_col=LOAD_COL, eval_args=SPLIT,
                                                                  metrics=["Recall", "NDCG"], topk=[10, 20],
                                                                  valid_metric="NDCG@20"))


@pytest.mark.parametrize("name,modalities", [("VBPR", "text"), ("GRCN", "text"), ("LATTICE", "text"),
                                             ("SLMRec", "text"), ("BM3", "text+image"), ("FREEDOM", "image")])
def test_loss_falls_and_beats_pop(env, pop, name, modalities):
    _, model, train, _, _ = build(env, name, mm_modalities=modalities)
    batches = [b for _, b in zip(range(3), train)]
    # SLMRec's in-batch InfoNCE has a high floor on 80 users (repeated users/items in a batch)
    assert_loss_falls(loss_trace(model, batches, steps=20, lr=0.01), factor=0.95 if name == "SLMRec" else 0.9)
    # BM3 draws one target-dropout mask per batch for all repeats of a user/item (MMRec); batches of 256
    # on 40 items repeat each item ~6 times (rare on real data), so BM3 gets smaller batches here
    batch = {"train_batch_size": 64} if name == "BM3" else {}
    result = run_experiment(name, "tiny", config_dict=tiny_config(env, mm_modalities=modalities, epochs=10,
                                                                  eval_step=10, stopping_step=10, **batch))
    assert_beats_pop(result, pop, metric="ndcg@20", margin=1.3)


# ------------------------------------------------------------------------------ reference computations
def test_freedom_item_graph_is_the_binary_knn_graph_of_mmrec(env):
    """FREEDOM's frozen item graph on fixed features, against a hand computation of MMRec's
    ``get_knn_adj_mat``: binary top-k edges (self included), D^-1/2 A D^-1/2 with D the row sums
    (= k), so every edge weighs 1/k whatever the cosine."""
    _, model, _, _, _ = build(env, "FREEDOM", knn_k=2)
    n = model.n_items
    theta = 0.003 * torch.arange(n, dtype=torch.float32) ** 1.5  # gaps grow: item t's nearest other is t-1
    feats = torch.stack([theta.cos(), theta.sin()], 1)
    graph = model.frozen_item_graph({"text": feats}).to_dense()
    expected = torch.zeros(n, n)
    for t in range(1, n):
        expected[t, t] = expected[t, t - 1 if t > 1 else 2] = 0.5
    assert torch.allclose(graph, expected)
    both = model.frozen_item_graph({"text": feats, "image": feats.flip(0)}).to_dense()
    w = model.settings.mm_image_weight
    image = model.frozen_item_graph({"image": feats.flip(0)}).to_dense()
    assert torch.allclose(both, w * image + (1 - w) * expected)


def test_bm3_loss_equals_mmrec_formula_with_targets_dropped_on_the_full_tables(env):
    """BM3's loss on a fixed batch (a user and an item twice) against a hand computation of MMRec's
    ``calculate_loss``: dense LightGCN of the training matrix, dropout drawn once on the full user,
    item, text and image tables (in that order) and then indexed, cosine losses, EmbLoss / |I|."""
    from recbole.data.interaction import Interaction
    import torch.nn.functional as F

    _, model, train, _, _ = build(env, "BM3", mm_modalities="text+image", dropout=0.5, n_layers=2,
                                  reg_weight=0.1, cl_weight=0.3)
    s = model.settings
    nu, ni = model.n_users, model.n_items
    r = torch.tensor(train._dataset.inter_matrix(form="coo").toarray(), dtype=torch.float32)
    a = torch.zeros(nu + ni, nu + ni)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    d = a.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    norm = d[:, None] * a * d[None, :]
    ego = torch.cat([model.user_embedding.weight, model.item_id_embedding.weight]).detach()
    layers = [ego]
    for _ in range(s.n_layers):
        layers.append(norm @ layers[-1])
    mean = torch.stack(layers).mean(0)
    users, items = mean[:nu], mean[nu:] + model.item_id_embedding.weight.detach()
    u = torch.tensor([3, 3, 7, 12])
    i = torch.tensor([5, 9, 5, 20])
    f = model.predictor
    text, image = (model.encoder.project(name).detach() for name in ("text", "image"))
    torch.manual_seed(11)
    u_t, i_t = F.dropout(users, s.dropout)[u], F.dropout(items, s.dropout)[i]
    t_t, v_t = F.dropout(text, s.dropout)[i], F.dropout(image, s.dropout)[i]

    def cos(x, y):
        return 1 - F.cosine_similarity(x, y, dim=-1).mean()

    with torch.no_grad():
        expected = cos(f(users[u]), i_t) + cos(f(items[i]), u_t)
        expected += s.cl_weight * (cos(f(text[i]), i_t) + cos(f(text[i]), t_t)
                                   + cos(f(image[i]), i_t) + cos(f(image[i]), v_t))
        expected += s.reg_weight * (users.norm() + items.norm()) / ni
    torch.manual_seed(11)
    got = model.calculate_loss(Interaction({model.USER_ID: u, model.ITEM_ID: i}))
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
