"""SASRecPerUser: RecBole's SASRec on a per-user random split, scored per user by the general evaluator.

Checks (registration and settings: test_settings_registry.py): the training samples are the
time-ordered prefixes of the training split only (validation/test interactions changed: identical
tables); the scoring prompt is the user's newest training items; the loss falls; on planted sequential data (a ring walk) it
beats Pop under the RO split with all of a user's held-out items as positives; bad settings fail
with a ConfigError."""

from pathlib import Path

import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm.config import Config
from recbole_llm.errors import ConfigError
from recbole_llm.models.sasrec_per_user import SASRecPerUser
from recbole_llm.quick_start import run_experiment

from conftest import fast_config, write_ring_dataset, write_tiny_dataset
from tests_support.baselines import assert_beats_pop, assert_loss_falls, loss_trace

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path, **overrides):
    return fast_config(tmp_path, **{"MAX_ITEM_LIST_LENGTH": 5, "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1,
                                    "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, **overrides})


def _built(tmp_path, **overrides):
    config = Config(model="SASRecPerUser", dataset="tiny", config_dict=_config(tmp_path, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    return config, SASRecPerUser(config, train._dataset), train, valid, test


def _sequences(dataset, uid, iid, tid):
    """Each user's items in time order, by a plain Python pass over the interactions."""
    seqs = {}
    rows = sorted(zip(dataset.inter_feat[uid].tolist(), dataset.inter_feat[tid].tolist(),
                      range(len(dataset.inter_feat)), dataset.inter_feat[iid].tolist()))
    for u, _, _, i in rows:
        seqs.setdefault(u, []).append(i)
    return seqs


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data")
    return tmp_path


def test_samples_are_time_ordered_training_prefixes_and_prompts_the_newest_training_items(tiny):
    config, model, train, _, _ = _built(tiny)
    seqs = _sequences(train._dataset, model.USER_ID, model.ITEM_ID, config["TIME_FIELD"])
    L = model.max_len
    inter = train._dataset.inter_feat
    users, items = inter[model.USER_ID], inter[model.ITEM_ID]
    rows = model._rows(users, items)
    for k in range(len(users)):
        u, i = int(users[k]), int(items[k])
        before = seqs[u][: seqs[u].index(i)][-L:]
        row, n = model.prefix[rows[k]], int(model.prefix_len[rows[k]])
        assert n == len(before) and row[:n].tolist() == before and not row[n:].any()
    for u, seq in seqs.items():
        n = int(model.history_len[u])
        assert n == min(L, len(seq)) and model.history[u][:n].tolist() == seq[-L:]


def test_windows_target_every_training_item_once_with_the_prefix_outputs(tiny):
    """Window training (the trainer's) = RecBole's prefix samples at 1/L of the cost: every non-first
    training item is a target once, and with dropout off the window output at a position equals
    SASRec.forward on the prefix that ends there (causal attention, left-aligned positions)."""
    config, model, train, _, _ = _built(tiny)
    seqs = _sequences(train._dataset, model.USER_ID, model.ITEM_ID, config["TIME_FIELD"])
    targets = sorted(int(t) for t in model.window_target[model.window_target > 0])
    assert targets == sorted(i for seq in seqs.values() for i in seq[1:])
    model.eval()
    with torch.no_grad():
        hidden = model.encode(model.window_seq)
        for row in range(0, len(model.window_seq), 7):
            n = int((model.window_target[row] > 0).sum())
            for k in range(n):
                prefix = model.window_seq[row : row + 1, : k + 1]
                padded = torch.nn.functional.pad(prefix, (0, model.max_len - k - 1))
                expected = model.sasrec.forward(padded, torch.tensor([k + 1]))
                assert torch.allclose(hidden[row, k], expected[0], atol=1e-5)
    batches = model.window_batches(0, 2020)
    assert sorted(torch.cat([b["window"] for b in batches]).tolist()) == list(range(len(model.window_seq)))
    assert all(len(b["window"]) <= model.settings.sasrec_window_batch_size for b in batches)


def test_sequences_come_from_the_training_split_only(tiny):
    """Validation and test interactions rewritten (other items, other times): identical tables."""
    _, model, train, valid, test = _built(tiny)
    config2 = Config(model="SASRecPerUser", dataset="tiny", config_dict=_config(tiny))
    train2 = data_preparation(config2, create_dataset(config2))[0]
    for split in (valid, test):
        feat = split._dataset.inter_feat
        feat[model.ITEM_ID] = torch.roll(feat[model.ITEM_ID], 1)
        feat[config2["TIME_FIELD"]] = -feat[config2["TIME_FIELD"]]
    model2 = SASRecPerUser(config2, train2._dataset)
    for name in ("prefix", "prefix_len", "history", "history_len", "window_seq", "window_target"):
        assert torch.equal(getattr(model, name), getattr(model2, name))
    held_out = {(int(u), int(i)) for s in (valid, test) for u, i in zip(s._dataset.inter_feat[model.USER_ID],
                                                                        s._dataset.inter_feat[model.ITEM_ID])}
    train_pairs = {(int(u), int(i)) for u, i in zip(train._dataset.inter_feat[model.USER_ID],
                                                    train._dataset.inter_feat[model.ITEM_ID])}
    prompt_pairs = {(u, int(i)) for u in range(model.n_users) for i in model.history[u][: int(model.history_len[u])]}
    assert prompt_pairs <= train_pairs and not (prompt_pairs & (held_out - train_pairs))


def test_loss_falls_and_scores_cover_all_items(tiny):
    _, model, train, _, _ = _built(tiny)
    batches = list(train)
    assert_loss_falls(loss_trace(model, batches, steps=30, lr=0.01))
    windows = model.window_batches(0, 0)
    losses = []
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(30):
        loss = model.window_loss(windows[step % len(windows)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert_loss_falls(losses)
    model.eval()
    users = torch.arange(1, 6)
    scores = model.full_sort_predict({model.USER_ID: users})
    assert scores.shape == (5, model.n_items)
    pairs = model.predict({model.USER_ID: users, model.ITEM_ID: torch.tensor([1, 2, 3, 4, 5])})
    assert torch.allclose(pairs, scores[torch.arange(5), torch.tensor([1, 2, 3, 4, 5])], atol=1e-5)


def test_beats_pop_on_the_random_split_with_per_user_evaluation(tmp_path, monkeypatch):
    """Users walk a ring of items (the next item is the previous + 1): the held-out items of a user lie
    on their walk, between and after their training items; Pop is near uniform on a ring."""
    monkeypatch.chdir(tmp_path)
    write_ring_dataset(tmp_path / "data", n_users=40, n_items=50, length=10)
    tiny = tmp_path
    ours = run_experiment("SASRecPerUser", "tiny", config_dict=_config(tiny, epochs=8, learning_rate=0.01))
    pop = run_experiment("Pop", "tiny", config_dict=fast_config(tiny))
    assert ours["stats"]["config"]["eval_args"]["order"] == "RO"
    assert_beats_pop(ours, pop)


def test_negative_sampling_or_missing_time_field_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="train_neg_sample_args: ~"):
        _built(tiny, train_neg_sample_args={"distribution": "uniform", "sample_num": 1})
    with pytest.raises(ConfigError, match="does not load the time field 'timestamp'.*load_col"):
        _built(tiny, load_col={"inter": ["user_id", "item_id", "rating"]})
    with pytest.raises(ConfigError, match="loss_type"):
        _built(tiny, loss_type="BPR")
