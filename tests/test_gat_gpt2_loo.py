"""GraphAttentiveGPT2 under leave-one-out (issue 21, item 5): validation and test agree on planted data.

Why test once 'collapsed' (test R@10 0.03 against valid 0.35 on the tiny set, BPR fine): not the model
but the data. ``write_tiny_dataset`` gives each user's items timestamps in Python set iteration order,
which is the same hash order for every user, so under a time-ordered leave-one-out split the last
(test) item of almost every user is one of a few items that are rarely or never training items (on
that set 47 of 60 test items had no training interaction, against 14 of 60 validation items).
GraphAttentiveGPT2's multinomial head (Eq. 6, a softmax over all items) pushes an item that is never
a positive to the bottom of every ranking, which is what the method does with a cold item; BPR leaves
it near its initial score. Scores are the same for both phases (the prompt holds training items
only), so with time order drawn independently of the item, test and validation agree."""

import random


from conftest import fast_config
from recbole_llm.llm.testing import save_tiny_llama
from recbole_llm.quick_start import run_experiment

LOO = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "genre"]}


def write_planted(root, n_users=80, n_items=40, per_user=(8, 14), seed=0):
    """Users prefer the items of one genre (80%); each user's items in a random time order."""
    rng = random.Random(seed)
    genres = ["Action", "Comedy", "Drama", "Horror"]
    folder = root / "data" / "planted"
    folder.mkdir(parents=True)
    rows, t = [], 880000000
    for u in range(1, n_users + 1):
        fav = [i for i in range(1, n_items + 1) if i % 4 == u % 4]
        other = [i for i in range(1, n_items + 1) if i % 4 != u % 4]
        items = []
        while len(items) < rng.randint(*per_user):
            i = rng.choice(fav) if rng.random() < 0.8 else rng.choice(other)
            if i not in items:
                items.append(i)
        for i in items:  # list order is the draw order: no item is systematically last
            t += rng.randint(1, 500)
            rows.append(f"{u}\t{i}\t4\t{t}")
    (folder / "planted.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                          + "\n".join(rows) + "\n")
    (folder / "planted.item").write_text("item_id:token\tmovie_title:token_seq\tgenre:token_seq\n" + "\n".join(
        f"{i}\tMovie {i}\t{genres[i % 4]}" for i in range(1, n_items + 1)) + "\n")


def test_valid_and_test_agree_under_leave_one_out(tmp_path, monkeypatch):
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    write_planted(tmp_path)
    save_tiny_llama(tmp_path / "llm")
    cfg = fast_config(tmp_path, load_col=LOAD_COL, eval_args=LOO, llm_path=str(tmp_path / "llm"), gat_llm_layers=0,
                      gat_content_epochs=1, gat_collab_epochs=1, gat_finetune_epochs=8, gat_content_prompts=0,
                      metrics=["Recall", "NDCG"], topk=[10])
    result = run_experiment("GraphAttentiveGPT2", "planted", config_dict=cfg)
    valid, test = result["best_valid_result"]["recall@10"], result["test_result"]["recall@10"]
    assert test > 0.5 and abs(test - valid) < 0.2, (valid, test)
