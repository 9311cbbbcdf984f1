"""Progress lines for long loops: one line per epoch (loss, speed, ETA), and lines at every
``interval`` share of a long epoch or one-shot loop, whatever ``show_progress`` says (RecBole's
progress bars are off by default and say nothing in a log file)."""

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
    """``label epoch e/E: loss x, N unit/s, t s, ETA t'`` after every epoch.

    ``upper_bound``: early stopping may end the loop sooner, so the ETA is a bound ("ETA <= ...")."""

    def __init__(self, label: str, epochs: int, unit: str = "examples", upper_bound: bool = False, logger=None):
        self.label, self.epochs, self.unit, self.upper_bound = label, int(epochs), unit, upper_bound
        self.logger = logger or getLogger()
        self.seconds: list[float] = []

    def epoch_done(self, epoch: int, loss, seconds: float, units: float | None = None, extra: str = "") -> str:
        self.seconds.append(seconds)
        mean = sum(self.seconds) / len(self.seconds)
        remaining = max(0, self.epochs - (epoch + 1)) * mean
        parts = [p for p in (_loss_text(loss),
                             f"{units / seconds:.1f} {self.unit}/s" if units and seconds > 0 else "",
                             f"{seconds:.1f} s",
                             f"ETA {'<= ' if self.upper_bound and remaining else ''}{format_seconds(remaining)}",
                             extra) if p]
        line = set_color(self.label, "green") + f" epoch {epoch + 1}/{self.epochs}: " + ", ".join(parts)
        self.logger.info(line)
        return line


class StepProgress:
    """Logs ``label: k/total unit (p%), loss, speed, ETA`` each time another ``interval`` share of a
    loop is done and at least ``min_seconds`` have passed since the loop began."""

    def __init__(self, label: str, total: int, unit: str = "batches", interval: float = 0.1,
                 min_seconds: float = 10.0, logger=None):
        self.label, self.total, self.unit = label, max(1, int(total)), unit
        self.interval = float(interval)
        self.min_seconds = min_seconds
        self.logger = logger or getLogger()
        self.done = 0
        self.loss_sum = 0.0
        self.loss_n = 0
        self.start = time.perf_counter()
        self._next = self.interval

    def step(self, n: int = 1, loss=None) -> None:
        self.done += n
        if loss is not None:
            self.loss_sum += float(loss)
            self.loss_n += 1
        if self.interval <= 0:
            return
        share = self.done / self.total
        if share + 1e-12 < self._next:
            return
        while self._next <= share + 1e-12:
            self._next += self.interval
        elapsed = time.perf_counter() - self.start
        if elapsed < self.min_seconds or self.done >= self.total:
            return
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        loss_text = f", loss {self.loss_sum / self.loss_n:.4f}" if self.loss_n else ""
        self.logger.info(set_color(self.label, "green") + f": {self.done}/{self.total} {self.unit} "
                         f"({100 * share:.0f}%){loss_text}, {rate:.2f} {self.unit}/s, ETA {format_seconds(eta)}")
