"""Single-use identifiers (approval `jti`s, TOTP steps, MCP nonces): remembered for exactly as
long as they could be replayed, atomically, and never forgotten early.

`InMemoryReplayStore` serves one process; `RedisReplayStore` (`SET key 1 NX PX ttl`) serves
replicas that share a Redis. A store that cannot answer raises, and callers refuse.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from agentguard.errors import ConfigurationError, GuardError

__all__ = ["InMemoryReplayStore", "RedisReplayStore", "ReplayStore", "ReplayStoreFull"]


class ReplayStoreFull(GuardError):
    """The replay record is at capacity: refusing is safer than forgetting a used token."""


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers single-use identifiers (jti, TOTP steps) for as long as they could be replayed.

    ``add_if_absent`` must be atomic: of two concurrent calls with the same key, exactly one
    returns True. A shared store (e.g. Redis ``SET NX EX``) makes the rule hold across workers.
    """

    def add_if_absent(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; False when it is already recorded."""
        ...


class InMemoryReplayStore:
    """A bounded, thread-safe, per-process :class:`ReplayStore`.

    Expired entries are pruned on every insert. When the store is full of live entries it
    raises :class:`ReplayStoreFull` instead of evicting one, since eviction would re-open a
    replay window.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def add_if_absent(self, key: str, ttl: float) -> bool:
        """Atomically record ``key`` until ``ttl`` seconds from now; False if already present."""
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError("ttl must be a positive, finite number of seconds")
        with self._lock:
            now = self._clock()
            self._prune(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self._max:
                raise ReplayStoreFull("replay record is full; try again later")
            expires = now + ttl
            self._expiry[key] = expires
            heapq.heappush(self._heap, (expires, key))
            return True

    def __len__(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._expiry)

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]


class RedisReplayStore:
    """A :class:`ReplayStore` shared by every replica that talks to one Redis.

    `SET key 1 NX PX ttl` is atomic on the server: of any number of concurrent first uses,
    exactly one wins. Connection and server errors propagate (the caller refuses).
    """

    def __init__(self, client: Any, *, prefix: str = "agentguard:replay:") -> None:
        if not prefix:
            raise ConfigurationError("a key prefix is required (keys share the Redis keyspace)")
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "agentguard:replay:", **kwargs: Any
    ) -> RedisReplayStore:
        """Connect with redis-py (`pip install agentguard[redis]`); short timeouts by default."""
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ConfigurationError(
                "RedisReplayStore needs redis-py: install agentguard[redis]"
            ) from exc
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return cls(redis.Redis.from_url(url, **kwargs), prefix=prefix)

    def add_if_absent(self, key: str, ttl: float) -> bool:
        """Record `key` for `ttl` seconds (rounded up to whole milliseconds); False if present."""
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError("ttl must be a positive, finite number of seconds")
        ms = max(1, math.ceil(ttl * 1000))
        return bool(self._client.set(self._prefix + key, b"1", nx=True, px=ms))
