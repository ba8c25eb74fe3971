"""What the benchmark scripts share: timers, percentiles, reproducible business prose."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PROSE = (
    "the quarterly report shows revenue growth in the northern region while costs stayed "
    "flat meeting notes follow with action items for the sales and finance teams please "
    "review the attached figures before thursday contact dana@partner.example or call "
    "+49 30 1234567 about invoice INV-2026-0042 see https://partner.example/q3 for details"
)
WORDS = PROSE.split()


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Microseconds per call, `n` calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


def page(n_bytes: int, seed: int) -> str:
    """`n_bytes` of business prose from a small vocabulary, the same for the same seed."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n_bytes:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:n_bytes]


class BenchError(RuntimeError):
    """A check failed or a benchmark could not run: the script exits non-zero."""


@dataclass(frozen=True)
class Stats:
    """p50 / p90 / p99 in microseconds of samples in nanoseconds."""

    n: int
    p50: float  # microseconds
    p90: float
    p99: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        if len(samples_ns) < 2:
            raise BenchError("need at least two samples per variant")
        cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
        return cls(len(samples_ns), cuts[49] / 1e3, cuts[89] / 1e3, cuts[98] / 1e3)

    def cells(self) -> str:
        return f"{self.p50:9.1f} {self.p90:9.1f} {self.p99:9.1f}"
