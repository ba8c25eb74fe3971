"""The approval store: the same behaviour from the memory, SQLite and PostgreSQL backends."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguard.approvals.store import (
    ApprovalStore,
    DuplicateGrant,
    Grant,
    MemoryApprovalStore,
    PendingRequest,
    PostgresApprovalStore,
    SqliteApprovalStore,
    open_store,
)
from agentguard.errors import GuardError

from ..services import fresh_schema

T0 = 1_700_000_000.123456  # not a round number: times must round-trip exactly


def make_grant(n: int = 0, **overrides: Any) -> Grant:
    fields: dict[str, Any] = {
        "grant_id": f"g-{n}",
        "tenant": "acme",
        "user": "alice",
        "agent": "a1",
        "tool": "send_email",
        "match": ("subject", "to"),
        "match_digest": "sha256:" + "cd" * 32,
        "created_at": T0 + n,
        "expires_at": T0 + n + 3600,
        "approvers": ("bob",),
    }
    fields.update(overrides)
    return Grant(**fields)


def gids(grants: list[Grant]) -> list[str]:
    return [g.grant_id for g in grants]


def query(store: Any, since: float = T0, **overrides: Any) -> list[Grant]:
    args: dict[str, Any] = {"tenant": "acme", "user": "alice", "agent": "a1", "tool": "send_email"}
    args.update(overrides)
    return list(store.grants(since=since, **args))


# ---------------------------------------------------------------------------- backends


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    with fresh_schema(postgres_url, "approvals") as (url, _):
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Opens a store on the same storage each time it is called (a 'restart' for SQL ones)."""
    opened: list[Any] = []
    if request.param == "memory":
        shared = MemoryApprovalStore()

        def make() -> Any:
            return shared

    else:
        target: str | Path = (
            tmp_path / "approvals.sqlite"
            if request.param == "sqlite"
            else request.getfixturevalue("pg_url")
        )

        def make() -> Any:
            store = open_store(target)
            opened.append(store)
            return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(factory: Callable[[], Any]) -> Any:
    return factory()


# --------------------------------------------------------------------------- requests


def test_every_backend_satisfies_the_protocol(store: Any) -> None:
    assert isinstance(store, ApprovalStore)


def test_open_request_is_idempotent(store: Any) -> None:
    first = store.open_request("r1", now=T0, ttl=300)
    assert first == PendingRequest("r1", T0, T0 + 300)
    assert type(first.created_at) is float and type(first.expires_at) is float
    assert store.open_request("r1", now=T0 + 200, ttl=9999) == first
    assert store.open_request("r1", now=T0 - 50, ttl=1) == first
    assert store.open_request("r2", now=T0 + 1, ttl=5) == PendingRequest("r2", T0 + 1, T0 + 6)


def test_restart_keeps_requests_claims_and_grants(factory: Callable[[], Any]) -> None:
    first = factory()
    opened = first.open_request("r1", now=T0, ttl=60)
    assert first.claim("call-1", now=T0)
    first.add_grant(make_grant(1))
    first.close()
    second = factory()
    assert second.open_request("r1", now=T0 + 3000, ttl=1) == opened
    assert not second.claim("call-1", now=T0 + 3000)
    assert query(second) == [make_grant(1)]
    second.add_grant(make_grant(1))  # still idempotent
    with pytest.raises(DuplicateGrant):
        second.add_grant(make_grant(1, approvers=("mallory",)))


def test_times_round_trip_exactly(store: Any) -> None:
    for i, now in enumerate((0.1 + 0.2, 2.0**52 + 0.5, -1e-300, 1e-7, T0 / 3)):
        ttl = 1 / 3 + i
        assert store.open_request(f"r{i}", now=now, ttl=ttl) == PendingRequest(
            f"r{i}", now, now + ttl
        )
        grant = make_grant(i, created_at=now, expires_at=now + ttl)
        store.add_grant(grant)
        assert grant in query(store, since=now)


# ----------------------------------------------------------------------------- claims


def test_claim_once_then_never_again(factory: Callable[[], Any]) -> None:
    store = factory()
    assert store.claim("call-1", now=T0)
    assert not store.claim("call-1", now=T0)
    assert not store.claim("call-1", now=T0 + 10**9)  # claims never expire
    assert store.claim("call-2", now=T0)
    assert not factory().claim("call-1", now=T0)  # nor from another instance


def run_claim_race(stores: list[Any], key: str) -> list[bool]:
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def worker(store: Any) -> None:
        try:
            start.wait()
            results.append(store.claim(key, now=T0))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_concurrent_claims_on_one_instance(store: Any) -> None:
    assert sorted(run_claim_race([store] * 16, "race")) == [False] * 15 + [True]


def test_concurrent_claims_from_separate_instances(factory: Callable[[], Any]) -> None:
    stores = [factory() for _ in range(16)]
    assert sorted(run_claim_race(stores, "race")) == [False] * 15 + [True]
    assert not any(s.claim("race", now=T0) for s in stores)


def _claim_in_child(target: str, barrier: Any) -> None:
    store = open_store(target)
    barrier.wait(10)
    won = store.claim("race", now=T0)
    store.close()
    sys.exit(0 if won else 3)


def claim_from_processes(target: str, n: int = 6) -> list[int]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_claim_in_child, args=(target, barrier)) for _ in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(20)
    return sorted(proc.exitcode for proc in procs if proc.exitcode is not None)


def test_concurrent_claims_from_processes_sqlite(tmp_path: Path) -> None:
    assert claim_from_processes(str(tmp_path / "p.sqlite")) == [0] + [3] * 5


@pytest.mark.services
def test_concurrent_claims_from_processes_postgres(pg_url: str) -> None:
    assert claim_from_processes(pg_url) == [0] + [3] * 5


# ----------------------------------------------------------------------------- grants


def test_add_and_find_grants(store: Any) -> None:
    grant = make_grant(1, agent=None, approvers=("bob", "carol"), match=("amount", "iban"))
    store.add_grant(grant)
    assert query(store, agent=None) == [grant]
    assert query(store, agent="a1") == []


def test_grant_filters_are_exact(store: Any) -> None:
    mine = make_grant(0)
    others = [
        make_grant(1, tenant="globex"),
        make_grant(2, user="bob"),
        make_grant(3, agent="a2"),
        make_grant(4, agent=None),
        make_grant(5, tool="delete_contact"),
        make_grant(6, tenant="Acme"),
    ]
    for grant in [mine, *others]:
        store.add_grant(grant)
    assert query(store) == [mine]
    assert query(store, tenant="globex") == [others[0]]
    assert query(store, user="bob") == [others[1]]
    assert query(store, agent="a2") == [others[2]]
    assert query(store, agent=None) == [others[3]]
    assert query(store, tool="delete_contact") == [others[4]]
    assert query(store, tenant="nobody") == []


def test_since_excludes_expired_and_newest_first(store: Any) -> None:
    store.add_grant(make_grant(1, expires_at=T0 + 100))
    store.add_grant(make_grant(2, expires_at=T0 + 50))
    store.add_grant(make_grant(3, expires_at=T0 + 200))
    # a tie on created_at is broken by grant_id, the larger first, in every backend
    store.add_grant(make_grant(4, grant_id="g-2b", created_at=T0 + 2, expires_at=T0 + 300))
    assert gids(query(store, since=T0)) == ["g-3", "g-2b", "g-2", "g-1"]
    assert gids(query(store, since=T0 + 50)) == ["g-3", "g-2b", "g-1"]  # expires_at > since
    assert gids(query(store, since=T0 + 100)) == ["g-3", "g-2b"]
    assert gids(query(store, since=T0 + 300)) == []


def test_add_grant_idempotent_and_duplicates_refused(store: Any) -> None:
    grant = make_grant(1)
    store.add_grant(grant)
    store.add_grant(make_grant(1))  # identical content: no-op
    changes: dict[str, Any] = {
        "tenant": "globex",
        "agent": None,
        "match": ("to",),
        "match_digest": "sha256:other",
        "expires_at": T0 + 1 + 7200,
        "approvers": ("bob", "carol"),
    }
    for field, value in changes.items():
        with pytest.raises(DuplicateGrant) as caught:
            store.add_grant(make_grant(1, **{field: value}))
        assert caught.value.grant_id == "g-1"
        assert isinstance(caught.value, GuardError)
    assert query(store) == [grant]
    assert query(store, tenant="globex") == []


# ------------------------------------------------------------------------- validation


BAD_IDS: list[Any] = ["", "x" * 257, "a\x00b", "\ud800", None, 7, b"id"]
BAD_TIMES: list[Any] = [float("nan"), float("inf"), -float("inf"), "1", None, True]


def test_bad_requests_refused_and_nothing_written(store: Any) -> None:
    for bad in BAD_IDS:
        with pytest.raises((ValueError, TypeError)):
            store.open_request(bad, now=T0, ttl=10)
        with pytest.raises((ValueError, TypeError)):
            store.claim(bad, now=T0)
    for bad in [*BAD_TIMES, 0, -1.0, 1e308]:
        with pytest.raises((ValueError, TypeError)):
            store.open_request("r1", now=1e308, ttl=bad)
    for bad in BAD_TIMES:
        with pytest.raises((ValueError, TypeError)):
            store.open_request("r1", now=bad, ttl=10)
        with pytest.raises((ValueError, TypeError)):
            store.claim("k1", now=bad)
    assert store.open_request("x" * 256, now=T0, ttl=1) == PendingRequest("x" * 256, T0, T0 + 1)
    assert store.open_request("r1", now=T0 + 5, ttl=10) == PendingRequest("r1", T0 + 5, T0 + 15)
    assert store.claim("k1", now=T0)


def test_bad_grant_queries_refused(store: Any) -> None:
    bad_filters: list[dict[str, Any]] = [
        {"tenant": ""},
        {"user": None},
        {"agent": ""},
        {"tool": "a\x00"},
    ]
    for overrides in bad_filters:
        with pytest.raises((ValueError, TypeError)):
            query(store, **overrides)
    for bad in BAD_TIMES:
        with pytest.raises((ValueError, TypeError)):
            query(store, since=bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[("grant_id", bad) for bad in BAD_IDS],
        ("tenant", ""),
        ("user", 3),
        ("agent", ""),
        ("tool", "a\x00"),
        ("match", ()),
        ("match", ["subject", "to"]),
        ("match", ("to", "subject")),
        ("match", ("to", "to")),
        ("match", ("",)),
        ("match_digest", ""),
        ("approvers", ["bob"]),
        ("approvers", ("",)),
        ("created_at", float("nan")),
        ("created_at", True),
        ("expires_at", float("inf")),
        ("expires_at", T0),  # == created_at
        ("expires_at", T0 - 1),
    ],
)
def test_bad_grants_refused_and_nothing_written(store: Any, field: str, value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        make_grant(0, **{field: value})
    tampered = make_grant(0)
    object.__setattr__(tampered, field, value)  # frozen does not stop this; add_grant re-checks
    with pytest.raises((ValueError, TypeError)):
        store.add_grant(tampered)
    assert query(store, since=-1e300) == []
    store.add_grant(make_grant(0))  # the id was not taken by the refused grant
    assert query(store) == [make_grant(0)]


def test_add_grant_refuses_non_grants(store: Any) -> None:
    with pytest.raises(TypeError):
        store.add_grant(dataclasses.asdict(make_grant(0)))


def test_integer_times_become_floats() -> None:
    grant = make_grant(0, created_at=10, expires_at=20)
    assert type(grant.created_at) is float and type(grant.expires_at) is float
    assert grant == make_grant(0, created_at=10.0, expires_at=20.0)


# -------------------------------------------------------------------------- open_store


def test_open_store_sqlite_paths(tmp_path: Path) -> None:
    for target in (tmp_path / "a.sqlite", str(tmp_path / "sub" / "b.db")):
        store = open_store(target)
        try:
            assert isinstance(store, SqliteApprovalStore)
            assert Path(target).is_file()
        finally:
            store.close()


@pytest.mark.services
def test_open_store_postgres_urls(pg_url: str) -> None:
    alt = "postgres://" + pg_url.removeprefix("postgresql://")
    first = open_store(pg_url)
    try:
        assert isinstance(first, PostgresApprovalStore)
        assert first.claim("k", now=T0)
    finally:
        first.close()
    second = open_store(alt)
    try:
        assert isinstance(second, PostgresApprovalStore)
        assert not second.claim("k", now=T0)
    finally:
        second.close()


@pytest.mark.services
def test_postgres_unreachable_raises() -> None:
    with pytest.raises(psycopg.OperationalError):
        PostgresApprovalStore("postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")


@pytest.mark.services
def test_postgres_reconnects_after_a_broken_connection(pg_url: str) -> None:
    store = PostgresApprovalStore(pg_url)
    try:
        assert store.claim("k", now=T0)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store._pg.get().info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):  # the failing call fails closed
            store.claim("k2", now=T0)
        assert not store.claim("k", now=T0)  # the next one reconnects
        assert store.claim("k2", now=T0)
    finally:
        store.close()


@pytest.mark.services
def test_postgres_tables_and_index(pg_url: str) -> None:
    PostgresApprovalStore(pg_url).close()
    PostgresApprovalStore(pg_url).close()  # creating again is a no-op
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT to_regclass('approval_requests'), to_regclass('approval_claims'),"
            " to_regclass('approval_grants'), to_regclass('approval_grants_lookup')"
        ).fetchone()
    assert tables is not None and None not in tables


# -------------------------------------------------------------------------- property


names = st.sampled_from
times = st.floats(min_value=-1e6, max_value=2e9, allow_nan=False, allow_infinity=False)
durations = st.floats(min_value=1.0, max_value=1e6)
grants_strategy = st.builds(
    lambda gid, tenant, user, agent, tool, match, digest, created, duration, approvers: Grant(
        gid, tenant, user, agent, tool, match, digest, created, created + duration, approvers
    ),
    names(["g0", "g1", "g2", "g3"]),
    names(["t0", "t1"]),
    names(["u0", "u1"]),
    names([None, "a0"]),
    names(["x", "y"]),
    names([("to",), ("body", "to")]),
    names(["d0", "d1"]),
    times,
    durations,
    names([(), ("bob",), ("bob", "carol")]),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("open"), names(["r0", "r1", "r2"]), times, durations),
        st.tuples(st.just("claim"), names(["k0", "k1", "k2"]), times),
        st.tuples(st.just("grant"), grants_strategy),
        st.tuples(
            st.just("query"),
            names(["t0", "t1"]),
            names(["u0", "u1"]),
            names([None, "a0"]),
            names(["x", "y"]),
            times,
        ),
    ),
    max_size=25,
)


def apply(store: Any, op: tuple[Any, ...]) -> Any:
    try:
        if op[0] == "open":
            return store.open_request(op[1], now=op[2], ttl=op[3])
        if op[0] == "claim":
            return store.claim(op[1], now=op[2])
        if op[0] == "grant":
            return store.add_grant(op[1])
        _, tenant, user, agent, tool, since = op
        return store.grants(tenant=tenant, user=user, agent=agent, tool=tool, since=since)
    except DuplicateGrant as exc:
        return ("DuplicateGrant", exc.grant_id)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_property_memory_and_sqlite_agree(ops: list[tuple[Any, ...]]) -> None:
    memory = MemoryApprovalStore()
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SqliteApprovalStore(Path(folder) / "p.sqlite")
        try:
            for op in ops:
                assert apply(memory, op) == apply(sqlite, op), op
        finally:
            sqlite.close()
