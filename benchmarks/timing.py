"""Interleaved timing: every case runs once per round, so load changes hit all of them alike."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per unit of work (a step, an example) over the repeats of one case."""

    samples: np.ndarray

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def iqr(self) -> tuple[float, float]:
        return float(np.percentile(self.samples, 25)), float(np.percentile(self.samples, 75))

    @property
    def best(self) -> float:
        return float(np.min(self.samples))


def interleaved(cases: dict[str, tuple[Callable[[], object], int]], repeats: int, warmup: int = 1,
                seed: int = 0) -> dict[str, Timing]:
    """Time ``cases`` in interleaved rounds.

    Args:
        cases: name -> (run, units): ``run()`` does ``units`` units of work and
            returns only when the work is done (blocks on JAX results).
        repeats: rounds; each round runs every case once, in a fresh random order.
        warmup: untimed calls of each case first (compilation, caches).

    Returns:
        name -> Timing of seconds per unit.
    """
    for run, _ in cases.values():
        for _ in range(warmup):
            run()
    samples = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            run, units = cases[name]
            start = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - start) / units)
    return {name: Timing(np.asarray(s)) for name, s in samples.items()}
