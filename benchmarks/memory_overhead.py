"""What scoped memory costs a `get` and a `put`, against the bare store, in the same run.

For each backend (InMemoryStore, SqliteStore on a file, PostgresStore on a throwaway local
server when the PostgreSQL binaries are installed) the same item is read and written through:

- the bare store, at the physical namespace;
- `ScopedStore` with auditing off (the boundary alone: scope mapping, checks, copies);
- `ScopedStore` auditing writes only (`memory.audit: writes`) into a hash-chained log;
- `ScopedStore` auditing every read and write (the default);
- `GuardedStore`, which also resolves the principal for every operation.

Blocks are interleaved so that drift hits every variant alike; p50 per call is reported with the
ratio to the bare store. Goal: under 5 % added on get and put.

Run: `python benchmarks/memory_overhead.py` (`--quick` for a smoke run).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _bench import timed
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from agentguard import Principal, acting_for
from agentguard.audit import AuditLog, MemorySink
from agentguard.memory import GuardedStore, ScopedStore
from agentguard.policy.model import MemorySettings

GOAL = 0.05
ALICE = Principal(tenant="acme", user="alice", role="employee", team="red")
PHYSICAL = ("agentguard", "t", "acme", "u", "alice", "prefs")
LOGICAL = ("user", "prefs")
VALUE = {
    "note": "prefers email in the morning; call only about invoices over 10k",
    "tags": ["contact", "preference"],
    "since": "2026-10-01",
    "score": 3,
}


def _audit() -> Any:
    return AuditLog(MemorySink(), b"k" * 32).append_fields


def variants(store: BaseStore) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """name -> (get, put)."""
    quiet = ScopedStore(store, ALICE, settings=MemorySettings(audit="none"))
    writes = ScopedStore(store, ALICE, settings=MemorySettings(audit="writes"), audit=_audit())
    full = ScopedStore(store, ALICE, audit=_audit())
    guarded = GuardedStore(store, settings=MemorySettings(audit="none"))
    out: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "bare store": (
            lambda: store.get(PHYSICAL, "k"),
            lambda: store.put(PHYSICAL, "k", VALUE),
        ),
        "scoped, audit off": (
            lambda: quiet.get(LOGICAL, "k"),
            lambda: quiet.put(LOGICAL, "k", VALUE),
        ),
        "scoped, audit writes": (
            lambda: writes.get(LOGICAL, "k"),
            lambda: writes.put(LOGICAL, "k", VALUE),
        ),
        "scoped, audit all": (
            lambda: full.get(LOGICAL, "k"),
            lambda: full.put(LOGICAL, "k", VALUE),
        ),
        "GuardedStore, audit off": (
            lambda: guarded.get(LOGICAL, "k"),
            lambda: guarded.put(LOGICAL, "k", VALUE),
        ),
    }
    return out


def measure(store: BaseStore, n: int, blocks: int) -> dict[str, dict[str, list[float]]]:
    store.put(PHYSICAL, "k", VALUE)
    found: dict[str, dict[str, list[float]]] = {}
    with acting_for(ALICE):
        table = variants(store)
        for get, put in table.values():  # warm-up
            timed(get, 20)
            timed(put, 5)
        for _ in range(blocks):
            for name, (get, put) in table.items():
                row = found.setdefault(name, {"get": [], "put": []})
                row["get"] += timed(get, n)
                row["put"] += timed(put, max(1, n // 4))
    return found


def report(label: str, found: dict[str, dict[str, list[float]]]) -> list[str]:
    print(f"\n{label}")
    print(f"  {'variant':26} {'get p50':>10} {'added':>9} {'put p50':>10} {'added':>9}")
    base = {op: statistics.median(found["bare store"][op]) for op in ("get", "put")}
    misses = []
    for name, row in found.items():
        cells = []
        for op in ("get", "put"):
            p50 = statistics.median(row[op])
            added = p50 / base[op] - 1
            cells.append(
                f"{p50:8.1f}µs {added:+8.1%}" if name != "bare store" else f"{p50:8.1f}µs {'':>9}"
            )
            if name == "scoped, audit off" and added > GOAL:
                misses.append(f"{label} {op} {added:+.1%}")
        print(f"  {name:26} {cells[0]} {cells[1]}")
    return misses


@contextlib.contextmanager
def postgres() -> Iterator[BaseStore | None]:
    """A throwaway local PostgreSQL (as the test suite starts it), or None if not installed."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        from langgraph.store.postgres import PostgresStore
        from tests.services import PostgresServer, ServiceError
    except ImportError:
        yield None
        return
    try:
        server = PostgresServer()
        server.start()
    except ServiceError as exc:
        print(f"(PostgreSQL skipped: {exc})")
        yield None
        return
    try:
        with PostgresStore.from_conn_string(server.url()) as store:
            store.setup()
            yield store
    finally:
        server.stop()


def main() -> None:
    quick = "--quick" in sys.argv
    n, blocks = (100, 2) if quick else (1000, 5)
    print(__doc__.split("\n\n")[0])
    misses: list[str] = []
    in_memory = measure(InMemoryStore(), n, blocks)
    misses += report("InMemoryStore", in_memory)
    # The boundary's own CPU cost, the same whatever the backend (a SQL round trip only adds
    # noise to a difference of medians): the in-memory difference.
    added = {
        op: statistics.median(in_memory["scoped, audit off"][op])
        - statistics.median(in_memory["bare store"][op])
        for op in ("get", "put")
    }
    bases: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        SqliteStore.from_conn_string(str(Path(tmp) / "memory.sqlite")) as store,
    ):
        store.setup()
        sqlite = measure(store, n // 2, blocks)
        misses += report("SqliteStore (file)", sqlite)
        bases["SqliteStore"] = {op: statistics.median(sqlite["bare store"][op]) for op in added}
    with postgres() as pg:
        if pg is not None:
            pg_found = measure(pg, n // 4, blocks)
            misses += report("PostgresStore (local, fsync off)", pg_found)
            bases["PostgresStore"] = {
                op: statistics.median(pg_found["bare store"][op]) for op in added
            }
    print(
        f"\nThe boundary's own cost (in-memory difference): get +{added['get']:.1f} µs, "
        f"put +{added['put']:.1f} µs per call."
    )
    for name, base in bases.items():
        print(
            f"  as a share of {name}: get {added['get'] / base['get']:+.1%}, "
            f"put {added['put'] / base['put']:+.1%}"
        )
    print(
        "\nGoal: under 5 % added on get and put (boundary alone, audit off)."
        + (f" Missed: {', '.join(misses)}." if misses else " Met on every backend measured.")
    )


if __name__ == "__main__":
    main()
