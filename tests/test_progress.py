"""The ETAs of the progress lines (recbole_llm.training.progress) on a fake clock: the loop's first
step's one-off cost left out, steps weighted by work, validation passes counted, the stage's ETA."""

from types import SimpleNamespace

import pytest

from recbole_llm.training.progress import EpochLog, StepProgress, format_seconds
from recbole_llm.training.staged import StagedTrainer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Lines:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)


def run_steps(progress, clock, costs, works=None, stop_after=None):
    for k, cost in enumerate(costs[:stop_after]):
        clock.now += cost
        progress.step(work=None if works is None else works[k])


def test_first_step_one_off_cost_is_left_out_of_the_eta():
    clock, log = Clock(), Lines()
    p = StepProgress("loop", 100, min_seconds=0, logger=log, clock=clock)
    costs = [30.0] + [2.0] * 99  # loading/caching in the first batch, then 2 s a batch
    run_steps(p, clock, costs, stop_after=10)
    assert p.eta() == pytest.approx(90 * 2.0)
    # the plain mean rate would have said 90 * 4.8 s: more than twice the real remainder
    assert (p.elapsed() / p.done) * 90 == pytest.approx(432.0)
    assert len(log.lines) == 1 and "10/100 batches (10%)" in log.lines[0] and "48 s elapsed" in log.lines[0]
    assert "ETA 3.0 min" in log.lines[0]


def test_an_ordinary_first_step_stays_in_the_rate():
    clock = Clock()
    p = StepProgress("loop", 100, min_seconds=0, logger=Lines(), clock=clock)
    run_steps(p, clock, [2.5] + [2.0] * 9)  # within noise of the others: one more sample
    assert p.eta() == pytest.approx(90 * 20.5 / 10)


def test_single_step_so_far_uses_its_own_rate():
    clock = Clock()
    p = StepProgress("loop", 10, min_seconds=0, logger=Lines(), clock=clock)
    clock.now += 5.0
    p.step()
    assert p.eta() == pytest.approx(45.0)


def test_work_weighted_eta_follows_steps_sorted_by_length():
    clock, log = Clock(), Lines()
    works = [10 + 2 * k for k in range(50)]  # prompts sorted by length: later steps cost more
    costs = [0.05 * w for w in works]
    p = StepProgress("prefixes", 50, unit="prefixes", min_seconds=0, logger=log, total_work=sum(works), clock=clock)
    run_steps(p, clock, costs, works, stop_after=15)
    real_rest = sum(costs[15:])
    assert p.eta() == pytest.approx(real_rest)
    counted = StepProgress("prefixes", 50, min_seconds=0, logger=Lines(), clock=Clock())
    run_steps(counted, counted.clock, costs, stop_after=15)  # the same loop counted in steps
    assert counted.eta() < 0.6 * real_rest
    # the line's share is the share of the work: first past 10% at 322 of 2950 tokens (14 of 50 prompts)
    assert len(log.lines) == 1 and "14/50 prefixes (11%)" in log.lines[0]


def test_lines_wait_for_min_seconds_and_the_interval_and_skip_the_last_step():
    clock, log = Clock(), Lines()
    p = StepProgress("loop", 20, interval=0.25, min_seconds=10, logger=log, clock=clock)
    run_steps(p, clock, [1.0] * 20)
    # shares 25% (5 s: too early), 50% (10 s), 75% (15 s); none at 100%
    assert [line.split(": ")[1].split(" ")[0] for line in log.lines] == ["10/20", "15/20"]


def test_stage_eta_adds_what_rest_says_is_left():
    clock, log = Clock(), Lines()
    p = StepProgress("loop", 10, min_seconds=0, logger=log, clock=clock, rest=lambda loop_total: 2 * loop_total)
    run_steps(p, clock, [3.0] * 2)
    # loop total 30 s predicted (first step left out: 3 s each), rest 60 s
    assert log.lines[-1].endswith("ETA 24 s, stage ETA 84 s")
    q = StepProgress("loop", 10, min_seconds=0, logger=Lines(), clock=Clock(), rest=lambda t: None)
    run_steps(q, q.clock, [3.0] * 2)
    assert "stage ETA" not in q.logger.lines[-1]


def test_epoch_eta_counts_the_planned_validation_passes():
    log = Lines()
    epochs = EpochLog("stage", 10, logger=log, validates=lambda e: True, clock=Clock())
    # StagedTrainer: the epoch's validation is recorded before its line
    epochs.validation_done(3.0)
    epochs.epoch_done(0, 1.0, 1.0)
    assert epochs.remaining(0) == pytest.approx(9 * 1.0 + 9 * 3.0)
    assert "ETA 36 s" in log.lines[-1]
    # RecBole's Trainer: validation after the line; before any is measured the ETA has only training
    other = EpochLog("graph", 10, logger=Lines(), validates=lambda e: (e + 1) % 2 == 0, clock=Clock())
    other.epoch_done(0, 1.0, 1.0)
    assert other.remaining(0) == pytest.approx(9.0)
    other.epoch_done(1, 1.0, 1.0)
    other.validation_done(4.0)
    # after epoch 2 (index 1) and its pass: 8 epochs, 4 passes (epochs 4, 6, 8, 10) to go
    assert other.remaining(1) == pytest.approx(8 * 1.0 + 4 * 4.0)


def test_unplanned_validation_informs_the_mean_only_and_resume_counts_from_its_epoch():
    epochs = EpochLog("ua", 4, logger=Lines(), validates=lambda e: True, first_epoch=2, clock=Clock())
    epochs.validation_done(5.0, planned=False)  # the state before the first epoch
    assert epochs.validations_left() == 2 and epochs.mean_validation() == pytest.approx(5.0)
    epochs.validation_done(7.0)
    assert epochs.validations_left() == 1 and epochs.mean_validation() == pytest.approx(6.0)


def test_epoch_line_reports_time_since_the_loop_began():
    clock, log = Clock(), Lines()
    epochs = EpochLog("stage", 3, logger=log, clock=clock)
    clock.now += 125.0
    epochs.epoch_done(0, 0.5, 100.0, units=200)
    assert "2.0 examples/s, 100.0 s, 2.1 min elapsed, ETA 3.3 min" in log.lines[-1]


def test_stage_rest_of_an_epoch_loop():
    log = EpochLog("ua", 3, logger=Lines(), validates=lambda e: True, clock=Clock())
    trainer = SimpleNamespace(_epoch_log=log)
    rest = StagedTrainer._stage_rest(trainer, 0)
    assert rest(10.0) is None  # a planned validation pass, none measured: the stage's ETA is unknown
    log.validation_done(4.0, planned=False)
    assert rest(10.0) == pytest.approx(2 * 10.0 + 3 * 4.0)
    assert StagedTrainer._stage_rest(trainer, None) is None


def test_format_seconds():
    assert [format_seconds(x) for x in (-1, 42, 600, 7200)] == ["0 s", "42 s", "10.0 min", "2.0 h"]
