"""One scope for work that must not move a run's random streams (rebuilding a split, building
another model's view of the data): Python's, NumPy's and torch's CPU generators are restored on exit."""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def kept_random_state():
    """Run the block, then put Python's, NumPy's and torch's CPU random states back as they were
    (also when the block raises)."""
    state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
