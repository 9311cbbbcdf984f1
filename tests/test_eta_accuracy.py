"""benchmarks/eta_accuracy.py on a written log: which line it judges, against which real time."""

import json

import pytest

from conftest import import_benchmarks

LOG = """\
03 Dec 16:55    INFO  GLTA graph starts
03 Dec 16:55    INFO  GLTA graph (LightGCN) epoch 1/10: loss 6.6540, 80454.3 interactions/s, 1.0 s, ETA <= 9 s
03 Dec 16:55    INFO  GLTA graph (LightGCN) epoch 2/10: loss 4.7797, 86629.6 interactions/s, 1.0 s, 3 s elapsed, ETA <= 24 s
03 Dec 16:55    INFO  GLTA graph (LightGCN) epoch 3/10: loss 4.7797, 86629.6 interactions/s, 1.0 s, 4 s elapsed, ETA <= 21 s
03 Dec 16:57    INFO  GLTA graph done in 15.0 s: source=trained, epochs=5, seconds=15.0
03 Dec 16:57    INFO  GLTA item_text starts
03 Dec 16:57    INFO  GLTA item_text prefixes: 5/50 prefixes (4%), 1.00 prefixes/s, 5 s elapsed, ETA 2.0 min
03 Dec 16:57    INFO  GLTA item_text prefixes: 10/50 prefixes (12%), 1.00 prefixes/s, 10 s elapsed, ETA 90 s
03 Dec 16:59    INFO  GLTA item_text epoch 1: 6/27 batches (22%), loss 10.2330, 0.29 batches/s, ETA 71 s
03 Dec 17:00    INFO  GLTA item_text epoch 1/1: loss 8.5181, 4.9 prompts/s, 85.4 s, ETA 0 s
03 Dec 17:00    INFO  GLTA item_text done in 200.0 s: prompts=421, prefix_tokens=1000, prefix_tokens_per_s=10, epochs=1
03 Dec 17:00    INFO  GLTA user_item starts
03 Dec 17:01    INFO  GLTA user_item epoch 1: 2/20 batches (10%), loss 5.0, 0.10 batches/s, 20 s elapsed, ETA 3.0 min
03 Dec 17:04    INFO  GLTA user_item epoch 1/2: loss 5.0, 1.5 users/s, 200.0 s, 200 s elapsed, ETA <= 5.0 min, valid MRR@10 0.28 (100.0 s)
Evaluate   :   0%|          | 0/38 [00:00<?, ?it/s]03 Dec 17:04    INFO  GLTA scoring: 100/300 users (33%), 3.00 users/s, 33 s elapsed, ETA 67 s
03 Dec 17:04    INFO  GLTA scored 300 users in 110.0 s (first_k)
03 Dec 17:05    INFO  GLTA user_item epoch 2: 2/20 batches (10%), loss 5.0, 0.10 batches/s, 20 s elapsed, ETA 3.0 min, stage ETA 4.7 min
03 Dec 17:08    INFO  GLTA user_item epoch 2/2: loss 5.0, 1.5 users/s, 220.0 s, 540 s elapsed, ETA 0 s, valid MRR@10 0.29 (110.0 s)
03 Dec 17:08    INFO  GLTA user_item done in 640.0 s: users=300, epochs=2, train_seconds=420, valid_seconds=210
"""


@pytest.fixture
def eta(monkeypatch):
    return import_benchmarks(monkeypatch, "eta_accuracy")["eta_accuracy"]


def rows_by(report, loop, kind):
    return [r for r in report["rows"] if r["loop"] == loop and r["kind"] == kind]


def test_each_loop_is_judged_at_its_first_line_past_ten_percent(eta, tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    report = eta.analyse([log])
    (prefixes,) = rows_by(report, "GLTA item_text prefixes", "loop")
    assert prefixes["at"].endswith("(12%)") and prefixes["predicted"] == pytest.approx(100.0)
    assert prefixes["real"] == pytest.approx(100.0) and prefixes["error"] == pytest.approx(0.0)
    # an old line without "elapsed": elapsed = done / rate; real: the epoch's training seconds
    (item_text,) = rows_by(report, "GLTA item_text epoch 1", "loop")
    assert item_text["elapsed"] == pytest.approx(6 / 0.29) and item_text["real"] == pytest.approx(85.4)
    assert item_text["old_error"] is None
    (epoch2,) = rows_by(report, "GLTA user_item epoch 2", "loop")
    assert epoch2["error"] == pytest.approx(200 / 220 - 1) and epoch2["old_error"] == pytest.approx(200 / 220 - 1)
    # the stage's ETA from epoch 2's loop: its training and the validation after it
    (stage,) = rows_by(report, "GLTA user_item epoch 2", "stage from this loop")
    assert stage["predicted"] == pytest.approx(20 + 282) and stage["real"] == pytest.approx(330)
    # the scoring loop ends at its "scored ... in" line (its first line behind a progress bar's text)
    (scoring,) = rows_by(report, "GLTA scoring", "loop")
    assert scoring["real"] == pytest.approx(110.0) and scoring["error"] == pytest.approx(100 / 110 - 1)


def test_early_stopping_bounds_are_judged_on_all_planned_epochs(eta, tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    report = eta.analyse([log])
    (graph,) = rows_by(report, "GLTA graph (LightGCN) epochs", "epochs")
    # epoch 1/10 is the first at 10%; its line has no elapsed: the training seconds printed so far
    assert graph["at"] == "epoch 1/10" and graph["predicted"] == pytest.approx(1 + 9)
    # stopped after 3 of 10 epochs: their pace (4 s to the end of epoch 3) times 10; the bound held
    assert graph["real"] == pytest.approx(4.0 * 10 / 3) and graph["bound_held"] is True
    assert graph["error"] == pytest.approx(10 / (40 / 3) - 1)
    (ua,) = rows_by(report, "GLTA user_item epochs", "epochs")
    assert ua["predicted"] == pytest.approx(200 + 300) and ua["real"] == pytest.approx(630.0)


def test_report_files_and_bad_input(eta, tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    out = tmp_path / "r.json"
    assert eta.main([str(log), "--tag", "t", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["judged"] == len([r for r in report["rows"] if r["error"] is not None]) > 0
    assert "| run.log | GLTA item_text prefixes | loop | 10/50 prefixes (12%) | 10 | 90 | 100 | 100 |" in \
        out.with_suffix(".md").read_text()
    assert eta.main([str(tmp_path / "missing.log"), "--tag", "t"]) == 2
    assert "no such log file" in capsys.readouterr().err
    empty = tmp_path / "empty.log"
    empty.write_text("03 Dec 16:55    INFO  nothing here\n")
    assert eta.main([str(empty), "--tag", "t", "--out", str(out)]) == 2
