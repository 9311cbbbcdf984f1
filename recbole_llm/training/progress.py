"""Progress lines for long loops: one line per epoch (loss, speed, ETA), and lines at every
``interval`` share of a long epoch or one-shot loop, whatever ``show_progress`` says (RecBole's
progress bars are off by default and say nothing in a log file).

The ETAs are meant to hold within 20% once a tenth of a loop is done (issue 23; checked on real
logs by ``benchmarks/eta_accuracy.py``), so they count what the plain "steps left / steps per
second" misses: the one-off cost of a loop's first step (allocation, first-touch caches), steps of
unequal cost (``work``: e.g. tokens when prompts are sorted by length), and the validation passes
still planned after the epochs' training."""

from __future__ import annotations

import time
from logging import getLogger

from recbole.utils import set_color


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _loss_text(loss) -> str:
    if loss is None:
        return ""
    if isinstance(loss, (tuple, list)):
        return "loss " + "/".join(f"{float(x):.4f}" for x in loss)
    return f"loss {float(loss):.4f}"


class EpochLog:
    """``label epoch e/E: loss x, N unit/s, t s, T elapsed, ETA t'`` after every epoch (``t``: the
    epoch's training; ``T``: since the loop began, validation included).

    The ETA is the epochs left times the mean training time of an epoch, plus the validation
    passes still planned (``validates(epoch)``: whether the epoch is followed by one) times the
    mean time of those measured (:meth:`validation_done`, before or after the epoch's line);
    ``first_epoch``: where a resumed loop starts.
    ``upper_bound``: early stopping may end the loop sooner, so the ETA is a bound ("ETA <= ...")."""

    def __init__(self, label: str, epochs: int, unit: str = "examples", upper_bound: bool = False, logger=None,
                 validates=None, first_epoch: int = 0, clock=time.perf_counter):
        self.label, self.epochs, self.unit, self.upper_bound = label, int(epochs), unit, upper_bound
        self.clock = clock
        self.start = clock()
        self.logger = logger or getLogger()
        self.validates, self.first_epoch = validates, int(first_epoch)
        self.seconds: list[float] = []
        self.valid_seconds: list[float] = []
        self._valid_samples: list[float] = []

    def validation_done(self, seconds: float, planned: bool = True) -> None:
        """Record a validation pass that took ``seconds``: a planned one (after an epoch), or not
        (e.g. of the state before the first epoch), which only informs the mean."""
        if planned:
            self.valid_seconds.append(float(seconds))
        self._valid_samples.append(float(seconds))

    def mean_validation(self) -> float | None:
        return sum(self._valid_samples) / len(self._valid_samples) if self._valid_samples else None

    def validations_left(self) -> int:
        if self.validates is None:
            return 0
        planned = sum(1 for e in range(self.first_epoch, self.epochs) if self.validates(e))
        return max(0, planned - len(self.valid_seconds))

    def remaining(self, epoch: int) -> float:
        """Seconds still to come after epoch ``epoch`` (0-based) has trained."""
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else 0.0
        left = max(0, self.epochs - (epoch + 1)) * mean
        return left + self.validations_left() * (self.mean_validation() or 0.0)

    def epoch_done(self, epoch: int, loss, seconds: float, units: float | None = None, extra: str = "") -> str:
        self.seconds.append(seconds)
        remaining = self.remaining(epoch)
        parts = [p for p in (_loss_text(loss),
                             f"{units / seconds:.1f} {self.unit}/s" if units and seconds > 0 else "",
                             f"{seconds:.1f} s",
                             f"{format_seconds(self.clock() - self.start)} elapsed",
                             f"ETA {'<= ' if self.upper_bound and remaining else ''}{format_seconds(remaining)}",
                             extra) if p]
        line = set_color(self.label, "green") + f" epoch {epoch + 1}/{self.epochs}: " + ", ".join(parts)
        self.logger.info(line)
        return line


class StepProgress:
    """Logs ``label: k/total unit (p%), loss, speed, t elapsed, ETA t'`` each time another
    ``interval`` share of a loop is done and at least ``min_seconds`` have passed since it began.

    The rate behind the ETA leaves out the first step when it was much slower than the later ones:
    it then carried the loop's one-off costs (allocation, first-touch caches), which would stretch
    the ETA of every line; otherwise it is one more sample of the loop's rate. ``total_work``: steps differ in cost
    (``step(n, work=w)``, e.g. prompts sorted by length, short ones first), so the ETA is the work
    left over the work done per second. ``rest(loop_total_seconds)``: seconds the stage still has
    after this loop (more epochs, validation), or None when unknown; the line then also says the
    stage's ETA. ``clock``: seconds, monotonic (tests pass a fake one)."""

    WARMUP_FACTOR = 1.5

    def __init__(self, label: str, total: int, unit: str = "batches", interval: float = 0.1,
                 min_seconds: float = 10.0, logger=None, total_work: float | None = None, rest=None,
                 clock=time.perf_counter):
        self.label, self.total, self.unit = label, max(1, int(total)), unit
        self.interval = float(interval)
        self.min_seconds = min_seconds
        self.logger = logger or getLogger()
        self.total_work = float(total_work) if total_work else None
        self.rest = rest
        self.clock = clock
        self.done = 0
        self.work = 0.0
        self.loss_sum = 0.0
        self.loss_n = 0
        self.start = clock()
        self._first = None  # (seconds, done, work) at the end of the first step
        self._next = self.interval

    def elapsed(self) -> float:
        return self.clock() - self.start

    def eta(self) -> float:
        """Seconds left in this loop, at the rate so far; the first step is left out when it was
        slower than ``WARMUP_FACTOR`` times the later ones (a one-off cost, see the class)."""
        elapsed = self.elapsed()
        count = (lambda done, work: work) if self.total_work else (lambda done, work: done)
        total = self.total_work if self.total_work else self.total
        units = count(self.done, self.work)
        t0, units0 = 0.0, 0.0
        if self._first is not None:
            t1, units1 = self._first[0], count(self._first[1], self._first[2])
            later_units, later_seconds = units - units1, elapsed - t1
            if later_units > 0 and later_seconds > 0 and units1 > 0 and \
                    t1 / units1 > self.WARMUP_FACTOR * later_seconds / later_units:
                t0, units0 = t1, units1
        if elapsed - t0 <= 0 or units - units0 <= 0:
            return 0.0
        return max(0.0, total - units) * (elapsed - t0) / (units - units0)

    def step(self, n: int = 1, loss=None, work: float | None = None) -> None:
        self.done += n
        self.work += float(work) if work is not None else 0.0
        if self._first is None:
            self._first = (self.elapsed(), self.done, self.work)
        if loss is not None:
            self.loss_sum += float(loss)
            self.loss_n += 1
        if self.interval <= 0:
            return
        share = self.work / self.total_work if self.total_work else self.done / self.total
        if share + 1e-12 < self._next:
            return
        while self._next <= share + 1e-12:
            self._next += self.interval
        elapsed = self.elapsed()
        if elapsed < self.min_seconds or self.done >= self.total:
            return
        self.logger.info(self.line())

    def line(self) -> str:
        elapsed, eta = self.elapsed(), self.eta()
        share = self.work / self.total_work if self.total_work else self.done / self.total
        loss_text = f", loss {self.loss_sum / self.loss_n:.4f}" if self.loss_n else ""
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = (set_color(self.label, "green") + f": {self.done}/{self.total} {self.unit} ({100 * share:.0f}%)"
                f"{loss_text}, {rate:.2f} {self.unit}/s, {format_seconds(elapsed)} elapsed, ETA {format_seconds(eta)}")
        rest = self.rest(elapsed + eta) if self.rest is not None else None
        if rest is not None:
            text += f", stage ETA {format_seconds(eta + rest)}"
        return text
