"""The consent ledger: the same behaviour from the memory, SQLite and PostgreSQL backends."""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentguard.approvals.ledger import (
    ConsentEntry,
    ConsentLedger,
    DuplicateConsent,
    MemoryConsentLedger,
    PostgresConsentLedger,
    SqliteConsentLedger,
    open_ledger,
)
from agentguard.approvals.ledger_cli import add_consent_commands
from agentguard.errors import GuardError

from ..services import fresh_schema

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def make_entry(n: int = 0, **overrides: Any) -> ConsentEntry:
    fields: dict[str, Any] = {
        "consent_id": f"c-{n}",
        "tenant": "acme",
        "user": "alice",
        "agent": "crm-agent",
        "client": "web",
        "thread_id": "th-1",
        "call_id": f"call-{n}",
        "tool": "send_email",
        "input_hash": "sha256:" + "ab" * 32,
        "input_summary": {"to": "string(17)", "cc": ["string(9)"], "n": 3, "flag": True},
        "risk": "medium",
        "decision": "approve",
        "approvers": ("bob",),
        "method": "confirm",
        "policy_version": "test-1",
        "decided_at": T0 + timedelta(minutes=n),
        "expires_at": None,
        "reason": None,
    }
    fields.update(overrides)
    return ConsentEntry(**fields)


# ---------------------------------------------------------------------------- backends


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    with fresh_schema(postgres_url, "ledger") as (url, _):
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Opens a ledger on the same storage each time it is called (a 'restart' for SQL ones)."""
    opened: list[Any] = []
    if request.param == "memory":
        shared = MemoryConsentLedger()

        def make() -> Any:
            return shared

    elif request.param == "sqlite":
        path = tmp_path / "consent.sqlite"

        def make() -> Any:
            ledger = SqliteConsentLedger(path)
            opened.append(ledger)
            return ledger

    else:
        url = request.getfixturevalue("pg_url")

        def make() -> Any:
            ledger = PostgresConsentLedger(url)
            opened.append(ledger)
            return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(factory: Callable[[], Any]) -> Any:
    return factory()


# ------------------------------------------------------------------------------ basics


def test_every_backend_satisfies_the_protocol(ledger: Any) -> None:
    assert isinstance(ledger, ConsentLedger)
    assert not hasattr(ledger, "update") and not hasattr(ledger, "delete")


def test_record_get_round_trip(ledger: Any) -> None:
    entry = make_entry(
        1,
        decision="edit",
        approvers=("bob", "carol"),
        expires_at=T0 + timedelta(hours=1),
        reason="changed the recipient",
        method="four_eyes",
    )
    ledger.record(entry)
    got = ledger.get("c-1")
    assert got == entry
    assert got is not entry
    assert got.decided_at == entry.decided_at and got.decided_at.tzinfo is not None
    assert got.decided_at.utcoffset() == timedelta(0)
    assert got.expires_at == entry.expires_at and got.expires_at.tzinfo is not None
    assert got.approvers == ("bob", "carol")
    assert ledger.get("nope") is None


def test_get_returns_copies(ledger: Any) -> None:
    ledger.record(make_entry(1))
    first = ledger.get("c-1")
    first.input_summary["to"] = "tampered"
    assert ledger.get("c-1").input_summary["to"] == "string(17)"


def test_non_utc_offsets_are_normalized(ledger: Any) -> None:
    plus2 = timezone(timedelta(hours=2))
    entry = make_entry(1, decided_at=datetime(2025, 3, 1, 14, 0, tzinfo=plus2))
    assert entry.decided_at == datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert entry.decided_at.utcoffset() == timedelta(0)
    ledger.record(entry)
    assert ledger.get("c-1") == entry


def test_duplicate_consent_id_is_refused_and_first_kept(ledger: Any) -> None:
    first = make_entry(1)
    ledger.record(first)
    with pytest.raises(DuplicateConsent) as info:
        ledger.record(make_entry(1, decision="reject", tenant="globex", user="mallory"))
    assert isinstance(info.value, GuardError)
    assert info.value.consent_id == "c-1"
    assert ledger.get("c-1") == first
    assert ledger.query(limit=10) == [first]
    assert ledger.query(tenant="globex") == []


def test_record_refuses_non_entries(ledger: Any) -> None:
    with pytest.raises(TypeError):
        ledger.record(make_entry(1).model_dump())


def test_record_revalidates_a_mutated_entry(ledger: Any) -> None:
    entry = make_entry(1)
    entry.input_summary["raw"] = 1.5  # frozen does not freeze the dict
    with pytest.raises(ValidationError):
        ledger.record(entry)
    assert ledger.get("c-1") is None


# ----------------------------------------------------------------------------- filters


def populate(ledger: Any) -> list[ConsentEntry]:
    entries = [
        make_entry(0, tenant="acme", user="alice", tool="send_email"),
        make_entry(1, tenant="globex", user="alice", tool="send_email"),
        make_entry(2, tenant="acme", user="bob", tool="delete_contact"),
        make_entry(3, tenant="acme", user="alice", tool="delete_contact"),
        make_entry(4, tenant="globex", user="dana", tool="export_contacts"),
        make_entry(5, tenant="acme", user="alice", tool="send_email"),
    ]
    for e in entries:
        ledger.record(e)
    return entries


def ids(entries: list[ConsentEntry]) -> list[str]:
    return [e.consent_id for e in entries]


def test_tenant_isolation(ledger: Any) -> None:
    populate(ledger)
    acme = ledger.query(tenant="acme")
    globex = ledger.query(tenant="globex")
    assert ids(acme) == ["c-5", "c-3", "c-2", "c-0"]
    assert ids(globex) == ["c-4", "c-1"]
    assert all(e.tenant == "acme" for e in acme)
    assert all(e.tenant == "globex" for e in globex)
    assert ledger.query(tenant="initech") == []
    assert ledger.query(tenant="ACME") == []  # exact match, no case folding


def test_user_tool_and_combined_filters(ledger: Any) -> None:
    populate(ledger)
    assert ids(ledger.query(user="alice")) == ["c-5", "c-3", "c-1", "c-0"]
    assert ids(ledger.query(tool="delete_contact")) == ["c-3", "c-2"]
    assert ids(ledger.query(tenant="acme", user="alice", tool="send_email")) == ["c-5", "c-0"]
    assert ids(ledger.query(tenant="globex", user="bob")) == []


def test_since_inclusive_until_exclusive(ledger: Any) -> None:
    populate(ledger)
    at2, at4 = T0 + timedelta(minutes=2), T0 + timedelta(minutes=4)
    assert ids(ledger.query(since=at2)) == ["c-5", "c-4", "c-3", "c-2"]
    assert ids(ledger.query(until=at2)) == ["c-1", "c-0"]
    assert ids(ledger.query(since=at2, until=at4)) == ["c-3", "c-2"]
    assert ids(ledger.query(tenant="acme", since=at2, until=at4)) == ["c-3", "c-2"]
    # Bounds in another offset mean the same instants.
    plus5 = timezone(timedelta(hours=5))
    assert ids(ledger.query(since=at2.astimezone(plus5), until=at4.astimezone(plus5))) == [
        "c-3",
        "c-2",
    ]
    # One microsecond matters.
    assert ids(ledger.query(since=at2 + timedelta(microseconds=1), until=at4)) == ["c-3"]


def test_query_arguments_are_checked(ledger: Any) -> None:
    for bad in (0, -1, 10_001):
        with pytest.raises(ValueError):
            ledger.query(limit=bad)
    with pytest.raises(TypeError):
        ledger.query(limit=True)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.query(since=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.query(until=datetime(2025, 1, 1))
    assert ledger.query(limit=1) == [] and ledger.query(limit=10_000) == []


def test_ordering_newest_first_ties_by_insertion_and_limit(ledger: Any) -> None:
    # Recorded out of time order; three share one instant.
    same = T0 + timedelta(hours=1)
    order = [
        make_entry(10, decided_at=T0 + timedelta(minutes=30)),
        make_entry(11, decided_at=same),
        make_entry(12, decided_at=T0),
        make_entry(13, decided_at=same),
        make_entry(14, decided_at=T0 + timedelta(hours=2)),
        make_entry(15, decided_at=same),
    ]
    for e in order:
        ledger.record(e)
    expected = ["c-14", "c-15", "c-13", "c-11", "c-10", "c-12"]
    assert ids(ledger.query()) == expected
    assert ids(ledger.query(limit=3)) == expected[:3]
    assert ids(ledger.query(limit=1)) == ["c-14"]


def test_restart_sees_earlier_entries(factory: Callable[[], Any]) -> None:
    first = factory()
    entries = populate(first)
    first.close()
    second = factory()
    assert ledger_ids(second) == ids(sorted(entries, key=lambda e: e.decided_at, reverse=True))
    assert second.get("c-3") == entries[3]
    with pytest.raises(DuplicateConsent):
        second.record(make_entry(3))
    second.record(make_entry(6))
    assert ids(second.query(limit=1)) == ["c-6"]


def ledger_ids(ledger: Any) -> list[str]:
    return ids(ledger.query(limit=10_000))


# -------------------------------------------------------------------------- validation


def test_entry_refuses_naive_datetimes() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        make_entry(decided_at=datetime(2025, 3, 1, 12, 0))
    with pytest.raises(ValidationError, match="timezone-aware"):
        make_entry(expires_at=datetime(2025, 3, 2, 12, 0))
    stored = json.loads(make_entry().model_dump_json())
    stored["decided_at"] = "2025-03-01T12:00:00"  # no offset: naive once parsed
    with pytest.raises(ValidationError, match="timezone-aware"):
        ConsentEntry.model_validate_json(json.dumps(stored))


def test_entry_refuses_expiry_not_after_decision() -> None:
    with pytest.raises(ValidationError, match="expires_at must be after decided_at"):
        make_entry(expires_at=T0 - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="expires_at must be after decided_at"):
        make_entry(expires_at=T0)
    assert make_entry(expires_at=T0 + timedelta(microseconds=1)).expires_at is not None


def test_entry_refuses_extra_fields_and_is_frozen() -> None:
    with pytest.raises(ValidationError, match="extra"):
        make_entry(raw_input={"to": "alice@example.com"})
    entry = make_entry()
    with pytest.raises(ValidationError):
        entry.decision = "reject"  # type: ignore[misc]


def test_entry_field_limits() -> None:
    make_entry(reason="x" * 1000)
    with pytest.raises(ValidationError, match="reason"):
        make_entry(reason="x" * 1001)
    make_entry(consent_id="i" * 128)
    for bad in ("", "i" * 129):
        with pytest.raises(ValidationError, match="consent_id"):
            make_entry(consent_id=bad)
    with pytest.raises(ValidationError, match="decision"):
        make_entry(decision="maybe")
    for field in ("tenant", "user", "tool"):
        with pytest.raises(ValidationError, match=field):
            make_entry(**{field: ""})


def test_entry_refuses_what_a_backend_could_not_store_identically() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        make_entry(reason="a\x00b")
    with pytest.raises(ValidationError, match="NUL"):
        make_entry(approvers=("bo\x00b",))
    with pytest.raises(ValidationError, match="NUL"):
        make_entry(input_summary={"k": ["a\x00"]})
    with pytest.raises(ValidationError, match="unicode"):
        make_entry(tool="\ud800")
    with pytest.raises(ValidationError, match="surrogate"):
        make_entry(input_summary={"to": "\ud800"})
    with pytest.raises(ValidationError, match="float"):
        make_entry(input_summary={"amount": 1e300})
    with pytest.raises(ValidationError, match="float"):
        make_entry(input_summary={"amount": float("nan")})
    with pytest.raises(ValidationError, match="JSON value"):
        make_entry(input_summary={"blob": b"raw"})


# ------------------------------------------------------------------------- open_ledger


def test_open_ledger_dispatch(tmp_path: Path) -> None:
    for target in (tmp_path / "a.sqlite", str(tmp_path / "b.db"), str(tmp_path / "plain")):
        ledger = open_ledger(target)
        try:
            assert isinstance(ledger, SqliteConsentLedger)
            assert Path(target).is_file()
        finally:
            ledger.close()


@pytest.mark.services
def test_open_ledger_postgres_urls_and_restart(pg_url: str) -> None:
    alt = "postgres://" + pg_url.removeprefix("postgresql://")
    for url in (pg_url, alt):
        ledger = open_ledger(url)
        try:
            assert isinstance(ledger, PostgresConsentLedger)
        finally:
            ledger.close()
    first = open_ledger(pg_url)
    first.record(make_entry(1))
    first.close()
    second = open_ledger(alt)
    try:
        assert second.get("c-1") == make_entry(1)
    finally:
        second.close()


@pytest.mark.services
def test_postgres_unreachable_raises(postgres_url: str) -> None:
    with pytest.raises(psycopg.OperationalError):
        PostgresConsentLedger("postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")


@pytest.mark.services
def test_postgres_schemas_isolate_tests(pg_url: str, postgres_url: str) -> None:
    """The isolation the other Postgres tests rely on: one schema each, unseen by others."""
    with fresh_schema(postgres_url, "ledger") as (other, _):
        a, b = PostgresConsentLedger(pg_url), PostgresConsentLedger(other)
        try:
            a.record(make_entry(1))
            assert b.get("c-1") is None and b.query() == []
        finally:
            a.close()
            b.close()


@pytest.mark.services
def test_postgres_reconnects_after_a_broken_connection(pg_url: str) -> None:
    ledger = PostgresConsentLedger(pg_url)
    try:
        ledger.record(make_entry(1))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (ledger._pg.get().info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):  # the failing call fails closed
            ledger.get("c-1")
        assert ledger.get("c-1") == make_entry(1)  # the next one reconnects
    finally:
        ledger.close()


def test_sqlite_readonly_neither_creates_nor_writes(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(FileNotFoundError):
        SqliteConsentLedger(missing, readonly=True)
    assert not missing.exists()
    path = tmp_path / "ledger.sqlite"
    SqliteConsentLedger(path).close()
    ro = SqliteConsentLedger(path, readonly=True)
    try:
        with pytest.raises(Exception, match="readonly"):
            ro.record(make_entry(1))
    finally:
        ro.close()


# ------------------------------------------------------------------------- concurrency


def test_sqlite_concurrent_records(tmp_path: Path) -> None:
    ledger = SqliteConsentLedger(tmp_path / "c.sqlite")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(25):
                ledger.record(make_entry(t * 100 + i, tenant=f"t{t % 3}"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        everything = ledger.query(limit=10_000)
        assert len(everything) == 200
        assert len({e.consent_id for e in everything}) == 200
    finally:
        ledger.close()


# ------------------------------------------------------------------------------- CLI


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="agentguard")
    add_consent_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["consent", "list", *argv])
    code: int = args.func(args)
    return code


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    path = tmp_path / "consent.sqlite"
    ledger = SqliteConsentLedger(path)
    populate(ledger)
    ledger.record(make_entry(9, tool="evil\x1b[31mtool", approvers=()))
    ledger.close()
    return path


def test_cli_table(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(str(ledger_file)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "decided_at",
        "tenant",
        "user",
        "tool",
        "decision",
        "method",
        "approvers",
        "risk",
        "expires_at",
        "consent_id",
    ]
    assert len(lines) == 1 + 7
    assert lines[1].split()[-1] == "c-9"  # newest first
    assert "\x1b" not in out and "evil\\x1b[31mtool" in out  # escaped, not interpreted
    row = lines[-1].split()
    assert row == [
        "2025-03-01T12:00:00Z",
        "acme",
        "alice",
        "send_email",
        "approve",
        "confirm",
        "bob",
        "medium",
        "-",
        "c-0",
    ]


def test_cli_json_and_filters(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(str(ledger_file), "--json", "--tenant", "acme", "--user", "alice") == 0
    parsed = [ConsentEntry.model_validate_json(line) for line in capsys.readouterr().out.split()]
    assert ids(parsed) == ["c-9", "c-5", "c-3", "c-0"]
    assert parsed[-1] == make_entry(0, tenant="acme", user="alice", tool="send_email")

    assert run_cli(str(ledger_file), "--json", "--tool", "delete_contact") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["consent_id"] for line in lines] == ["c-3", "c-2"]

    assert run_cli(str(ledger_file), "--json", "--since", "2025-03-01T12:04:00Z") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["consent_id"] for line in lines] == ["c-9", "c-5", "c-4"]

    assert run_cli(str(ledger_file), "--json", "--since", "2025-03-01T14:04:00+02:00") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3

    assert run_cli(str(ledger_file), "--json", "--limit", "2") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_cli_empty_result(ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(str(ledger_file), "--tenant", "initech") == 0
    assert "no matching consent entries" in capsys.readouterr().out
    assert run_cli(str(ledger_file), "--tenant", "initech", "--json") == 0
    assert capsys.readouterr().out == ""


def test_cli_missing_file_exit_2_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope" / "consent.sqlite"
    assert run_cli(str(missing)) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(missing) in err
    assert not missing.exists() and not missing.parent.exists()


def test_cli_not_a_ledger_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.txt"
    other.write_text("hello")
    assert run_cli(str(other)) == 2
    assert "error" in capsys.readouterr().err
    assert other.read_text() == "hello"


def test_cli_rejects_bad_arguments(ledger_file: Path) -> None:
    for argv in (["--since", "2025-03-01T12:00"], ["--since", "yesterday"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as info:
            run_cli(str(ledger_file), *argv)
        assert info.value.code == 2


@pytest.mark.services
def test_cli_postgres(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = PostgresConsentLedger(pg_url)
    populate(ledger)
    ledger.close()
    assert run_cli(pg_url, "--json", "--tenant", "globex") == 0
    parsed = [ConsentEntry.model_validate_json(line) for line in capsys.readouterr().out.split()]
    assert ids(parsed) == ["c-4", "c-1"]


@pytest.mark.services
def test_cli_postgres_unreachable_and_no_table(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "postgresql://postgres:hunter2@127.0.0.1:1/x?connect_timeout=2"
    assert run_cli(secret) == 2
    err = capsys.readouterr().err
    assert "cannot open PostgreSQL ledger" in err and "hunter2" not in err
    # Listing a database without the table fails and does not create it.
    assert run_cli(pg_url) == 2
    assert "consent ledger" in capsys.readouterr().err
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT to_regclass('consent_entries')").fetchone()
    assert row == (None,)


# -------------------------------------------------------------------------- property


entries_strategy = st.lists(
    st.tuples(
        st.sampled_from(["acme", "globex", "initech"]),
        st.integers(min_value=0, max_value=50),  # minutes: collisions exercise tie-breaking
        st.text(
            st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
            min_size=1,
            max_size=8,
        ),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=entries_strategy)
def test_property_tenant_query_is_exact_and_newest_first(
    rows: list[tuple[str, int, str]],
) -> None:
    entries = [
        make_entry(i, tenant=tenant, decided_at=T0 + timedelta(minutes=minute), user=user)
        for i, (tenant, minute, user) in enumerate(rows)
    ]
    with tempfile.TemporaryDirectory() as folder:
        ledger = SqliteConsentLedger(Path(folder) / "p.sqlite")
        try:
            for e in entries:
                ledger.record(e)
            for tenant in ("acme", "globex", "initech"):
                expected = [e for e in entries if e.tenant == tenant]
                # Newest first; among equal instants the later-recorded one first.
                expected.sort(key=lambda e: (e.decided_at, entries.index(e)), reverse=True)
                assert ledger.query(tenant=tenant, limit=10_000) == expected
        finally:
            ledger.close()


def test_consent_list_is_wired_into_the_agentguard_command(tmp_path: Path) -> None:
    from agentguard.cli import main

    assert main(["consent", "list", str(tmp_path / "missing.db")]) == 2
    assert not (tmp_path / "missing.db").exists()
