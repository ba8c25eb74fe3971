"""What the benchmark scripts share: a per-call timer and reproducible business prose."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
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
