"""Run budgets. The count of invalid calls is read back from the conversation itself (the
guard marks its own refusals), so it survives checkpoints, resumes and replays unchanged."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

MARK = "agentguard"
INVALID_KIND = "invalid_call"


def _messages(state: Any) -> Sequence[Any] | None:
    if isinstance(state, Mapping):
        msgs = state.get("messages")
    elif isinstance(state, list):
        msgs = state
    else:
        msgs = getattr(state, "messages", None)
    return msgs if isinstance(msgs, list) else None


def invalid_calls_in_state(state: Any) -> int | None:
    """Invalid calls the guard refused since the user last spoke; None if there is no history."""
    msgs = _messages(state)
    if msgs is None:
        return None
    count = 0
    for msg in reversed(msgs):
        kind = getattr(msg, "type", None)
        if kind == "human":
            break
        if kind == "tool":
            mark = (getattr(msg, "additional_kwargs", None) or {}).get(MARK) or {}
            if mark.get("kind") == INVALID_KIND:
                count += 1
    return count


class RunCounter:
    """Fallback for calls made outside a graph: invalid calls per run id, bounded in memory."""

    def __init__(self, max_runs: int = 10_000) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_runs

    def add(self, run_id: str) -> int:
        with self._lock:
            n = self._counts.pop(run_id, 0) + 1
            self._counts[run_id] = n
            while len(self._counts) > self._max:
                self._counts.popitem(last=False)
            return n
