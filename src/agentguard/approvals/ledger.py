"""The consent ledger: one append-only entry per human decision on a tool call.

When a person approves, edits, rejects or answers a risky tool call, that decision is the
evidence that the action was consented to. The ledger keeps it: who decided, for whom, on which
call (by input hash, never raw arguments), under which policy version and by which method.

Entries are never updated or deleted, and a second entry with the same `consent_id` is refused
(`DuplicateConsent`) instead of overwriting the first, so that a replayed or forged decision
cannot rewrite history. Any storage error propagates to the caller: a decision that could not be
recorded must be treated as no decision (fail closed).

Three backends behave identically for the same data: `MemoryConsentLedger` (tests, single
process), `SqliteConsentLedger` (one host) and `PostgresConsentLedger` (shared, needs
`agentguard[postgres]`). `open_ledger` picks one from a path or URL.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentguard._postgres import HealingConnection
from agentguard.errors import GuardError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "MAX_QUERY_LIMIT",
    "ConsentEntry",
    "ConsentLedger",
    "Decision",
    "DuplicateConsent",
    "MemoryConsentLedger",
    "PostgresConsentLedger",
    "SqliteConsentLedger",
    "is_postgres_url",
    "open_ledger",
]

#: Largest `limit` a query accepts: a ledger query is for review, not for bulk export.
MAX_QUERY_LIMIT = 10_000

Decision = Literal["approve", "edit", "reject", "respond", "grant", "expired"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: Arbitrary constant key for the advisory lock that serializes schema creation, so that two
#: processes starting at once do not race on `CREATE TABLE IF NOT EXISTS` (which is not atomic
#: with respect to the catalog in PostgreSQL).
_PG_SCHEMA_LOCK = 0x61676C6564676572  # "agledger"


class DuplicateConsent(GuardError):
    """An entry with this `consent_id` already exists; the ledger never overwrites one."""

    def __init__(self, consent_id: str) -> None:
        self.consent_id = consent_id
        super().__init__(f"consent {consent_id!r} is already recorded; entries are append-only")


def check_storable_text(value: str, where: str) -> None:
    """Refuse strings that one backend could store and another could not.

    PostgreSQL cannot hold NUL in `text` or `jsonb`, and no backend can encode lone surrogates as
    UTF-8; refusing them up front keeps the three backends equivalent and makes `record` fail at
    validation time rather than halfway into a write.
    """
    if "\x00" in value:
        raise ValueError(f"{where}: NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: not valid Unicode text (lone surrogate)") from None


def _check_summary(value: Any, where: str) -> None:
    """`input_summary` must be plain JSON made of strings, integers, booleans and null.

    Floats are refused because PostgreSQL's `jsonb` stores numbers as decimals and may give back
    a different Python value (e.g. `1e300` comes back as an integer), which would make the
    backends disagree; a shape summary ("string(17)", a length, a count) never needs one.
    """
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        check_storable_text(value, where)
    elif isinstance(value, float):
        kind = "finite" if math.isfinite(value) else "non-finite"
        raise ValueError(f"{where}: {kind} float not allowed; summarize as a string or integer")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_summary(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {type(key).__name__}")
            check_storable_text(key, f"{where} key")
            _check_summary(item, f"{where}.{key}")
    else:
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _to_utc(value: datetime, where: str) -> datetime:
    """Aware datetimes only: a naive one has no defined instant, so its order is a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{where} must be timezone-aware (UTC), got a naive datetime")
    return value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC with microseconds, so that string order equals time order."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


class ConsentEntry(BaseModel):
    """One human decision on one tool call, as it will be kept for audit.

    Frozen and closed (`extra="forbid"`): an entry is evidence, so a typo in a field name must
    fail loudly instead of silently dropping the value. Datetimes are normalized to UTC so that
    entries compare and sort the same in every backend.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    consent_id: str = Field(min_length=1, max_length=128)
    tenant: str = Field(min_length=1)
    user: str = Field(min_length=1, description="the principal the agent acted for")
    agent: str | None = None
    client: str | None = None
    thread_id: str | None = None
    call_id: str | None = None
    tool: str = Field(min_length=1)
    input_hash: str = Field(min_length=1, description='e.g. "sha256:..."')
    input_summary: dict[str, Any] = Field(
        description='shape only, e.g. {"to": "string(17)"}; supplied by the caller, never raw'
    )
    risk: str = Field(min_length=1)
    decision: Decision
    approvers: tuple[str, ...]
    approver_role: str | None = None
    method: str = Field(min_length=1, description='e.g. "confirm", "step_up:totp", "four_eyes"')
    policy_version: str = Field(min_length=1)
    decided_at: datetime
    expires_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=1000)
    response_hash: str | None = Field(
        default=None,
        max_length=128,
        description="digest of the reviewer's answer, so a replayed answer can be recognized",
    )

    @field_validator("decided_at", "expires_at", mode="after")
    @classmethod
    def _aware_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return None if value is None else _to_utc(value, info.field_name or "datetime")

    @field_validator("input_summary", mode="after")
    @classmethod
    def _json_summary(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_summary(value, "input_summary")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ConsentEntry:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, str):
                check_storable_text(value, name)
        for i, approver in enumerate(self.approvers):
            check_storable_text(approver, f"approvers[{i}]")
        if self.expires_at is not None and self.expires_at <= self.decided_at:
            raise ValueError("expires_at must be after decided_at")
        return self


def _serialize(entry: ConsentEntry) -> str:
    """The stored form, proven to parse back before anything is written.

    `frozen` does not stop mutation of the `input_summary` dict or `object.__setattr__`; a
    re-validation here makes sure a tampered-with entry object is refused, not stored.
    """
    if not isinstance(entry, ConsentEntry):
        raise TypeError(f"expected a ConsentEntry, got {type(entry).__name__}")
    text = entry.model_dump_json()
    ConsentEntry.model_validate_json(text)
    return text


def _check_query(
    since: datetime | None, until: datetime | None, limit: int
) -> tuple[datetime | None, datetime | None]:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("limit must be an integer")
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}, got {limit}")
    return (
        None if since is None else _to_utc(since, "since"),
        None if until is None else _to_utc(until, "until"),
    )


@runtime_checkable
class ConsentLedger(Protocol):
    """Append-only storage of consent decisions. There is deliberately no update or delete."""

    def record(self, entry: ConsentEntry) -> None:
        """Store `entry` durably, or raise.

        A second entry with the same `consent_id` raises `DuplicateConsent` and leaves the first
        untouched. Any other storage error propagates: callers must then fail closed.
        """
        ...

    def get(self, consent_id: str) -> ConsentEntry | None:
        """The entry with this id, or None."""
        ...

    def query(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ConsentEntry]:
        """Entries matching every given filter, newest first.

        `since` is inclusive and `until` exclusive (`since <= decided_at < until`), both aware.
        Ties on `decided_at` come newest-recorded first. `limit` is 1..`MAX_QUERY_LIMIT`.
        """
        ...

    def close(self) -> None:
        """Release files or connections."""
        ...


class MemoryConsentLedger:
    """An in-process ledger for tests and single-process demos; lost when the process ends.

    It stores the serialized form and parses it back on every read, so callers always get
    their own copies and see exactly what the persistent backends would return.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, str] = {}
        self._rows: list[tuple[datetime, int, str, str, str, str]] = []

    def record(self, entry: ConsentEntry) -> None:
        """Append; a known `consent_id` raises `DuplicateConsent`."""
        text = _serialize(entry)
        with self._lock:
            if entry.consent_id in self._by_id:
                raise DuplicateConsent(entry.consent_id)
            self._by_id[entry.consent_id] = text
            row = (entry.decided_at, len(self._rows), entry.tenant, entry.user, entry.tool, text)
            self._rows.append(row)

    def get(self, consent_id: str) -> ConsentEntry | None:
        """A fresh copy of the entry, or None."""
        with self._lock:
            text = self._by_id.get(consent_id)
        return None if text is None else ConsentEntry.model_validate_json(text)

    def query(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ConsentEntry]:
        """Filter a snapshot, newest first (see `ConsentLedger.query`)."""
        since, until = _check_query(since, until, limit)
        with self._lock:
            rows = list(self._rows)
        matching = [
            row
            for row in rows
            if (tenant is None or row[2] == tenant)
            and (user is None or row[3] == user)
            and (tool is None or row[4] == tool)
            and (since is None or row[0] >= since)
            and (until is None or row[0] < until)
        ]
        matching.sort(key=lambda row: (row[0], row[1]), reverse=True)
        return [ConsentEntry.model_validate_json(row[5]) for row in matching[:limit]]

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""


_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS consent_entries ("
    "consent_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user_id TEXT NOT NULL, "
    "tool TEXT NOT NULL, decided_at TEXT NOT NULL, entry TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS consent_entries_tenant_decided "
    "ON consent_entries (tenant, decided_at)",
)


_Op = Literal["=", ">=", "<"]


def _filters(
    tenant: str | None,
    user: str | None,
    tool: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[tuple[str, _Op, str | datetime]]:
    """(column, operator, value) for each given filter; columns and operators are constants."""
    candidates: list[tuple[str, _Op, str | datetime | None]] = [
        ("tenant", "=", tenant),
        ("user_id", "=", user),
        ("tool", "=", tool),
        ("decided_at", ">=", since),
        ("decided_at", "<", until),
    ]
    return [(column, op, value) for column, op, value in candidates if value is not None]


class SqliteConsentLedger:
    """A ledger in one SQLite file (WAL, `synchronous=FULL`): durable on power loss.

    The primary key on `consent_id` enforces append-only at the storage level. Columns beside the
    JSON `entry` exist only for filtering; `decided_at` is a fixed-width UTC ISO string so that
    text order is time order. Ties are broken by `rowid`, i.e. insertion order.

    `readonly=True` opens an existing file without creating or changing anything (for listing
    from the command line); `record` then fails.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"consent ledger not found: {self.path}")
            uri = self.path.resolve().as_uri() + "?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._conn:
                for statement in _SQLITE_SCHEMA:
                    self._conn.execute(statement)
        except BaseException:
            self._conn.close()
            raise

    def record(self, entry: ConsentEntry) -> None:
        """Insert and commit; a known `consent_id` raises `DuplicateConsent`."""
        text = _serialize(entry)
        row = (entry.consent_id, entry.tenant, entry.user, entry.tool, _iso(entry.decided_at))
        with self._lock, self._conn:
            cursor = self._conn.execute(
                "INSERT INTO consent_entries (consent_id, tenant, user_id, tool, decided_at, entry)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (consent_id) DO NOTHING",
                (*row, text),
            )
            inserted = cursor.rowcount
        if inserted != 1:
            raise DuplicateConsent(entry.consent_id)

    def get(self, consent_id: str) -> ConsentEntry | None:
        """The entry with this id, or None."""
        with self._lock:
            found = self._conn.execute(
                "SELECT entry FROM consent_entries WHERE consent_id = ?", (consent_id,)
            ).fetchone()
        return None if found is None else ConsentEntry.model_validate_json(found[0])

    def query(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ConsentEntry]:
        """Newest first (see `ConsentLedger.query`), filtered and limited in SQL."""
        since, until = _check_query(since, until, limit)
        filters = _filters(tenant, user, tool, since, until)
        clauses = [f"{column} {op} ?" for column, op, _ in filters]
        params = [_iso(v) if isinstance(v, datetime) else v for _, _, v in filters]
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = (
            "SELECT entry FROM consent_entries"  # noqa: S608 - constant fragments, bound values
            + where
            + " ORDER BY decided_at DESC, rowid DESC LIMIT ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, (*params, limit)).fetchall()
        return [ConsentEntry.model_validate_json(text) for (text,) in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


class PostgresConsentLedger:
    """A ledger in a PostgreSQL table, for several processes or hosts (psycopg 3).

    Same shape as the SQLite table, with `decided_at timestamptz` and `entry jsonb`, plus an
    identity column `seq` that records insertion order: PostgreSQL has no stable row id, and
    ties on `decided_at` must come back in the same order from every backend. The table lives in
    the connection's `search_path` and is created if missing (unless `readonly=True`).

    One connection, in autocommit mode, guarded by a lock; a broken connection is replaced on
    the next call, while the call that hit the failure raises (fail closed).
    """

    def __init__(self, conninfo: str, *, readonly: bool = False) -> None:
        self._pg = HealingConnection(conninfo, owner="PostgresConsentLedger", readonly=readonly)
        self._readonly = readonly
        self._lock = threading.Lock()
        if readonly:
            return
        conn = self._pg.get()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS consent_entries ("
                    "seq BIGINT GENERATED ALWAYS AS IDENTITY, "
                    "consent_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user_id TEXT NOT NULL, "
                    "tool TEXT NOT NULL, decided_at TIMESTAMPTZ NOT NULL, entry JSONB NOT NULL)"
                )
                conn.execute(
                    "CREATE INDEX IF NOT EXISTS consent_entries_tenant_decided "
                    "ON consent_entries (tenant, decided_at)"
                )
        except BaseException:
            self._pg.close()
            raise

    def _connection(self) -> Connection[tuple[Any, ...]]:
        return self._pg.get()

    def record(self, entry: ConsentEntry) -> None:
        """Insert (autocommit); a known `consent_id` raises `DuplicateConsent`."""
        text = _serialize(entry)
        with self._lock:
            cursor = self._connection().execute(
                "INSERT INTO consent_entries (consent_id, tenant, user_id, tool, decided_at, entry)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (consent_id) DO NOTHING",
                (entry.consent_id, entry.tenant, entry.user, entry.tool, entry.decided_at, text),
            )
            inserted = cursor.rowcount
        if inserted != 1:
            raise DuplicateConsent(entry.consent_id)

    def get(self, consent_id: str) -> ConsentEntry | None:
        """The entry with this id, or None."""
        with self._lock:
            found = (
                self._connection()
                .execute(
                    "SELECT entry::text FROM consent_entries WHERE consent_id = %s", (consent_id,)
                )
                .fetchone()
            )
        return None if found is None else ConsentEntry.model_validate_json(found[0])

    def query(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ConsentEntry]:
        """Newest first (see `ConsentLedger.query`), filtered and limited in SQL."""
        from psycopg import sql

        since, until = _check_query(since, until, limit)
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for column, op, value in _filters(tenant, user, tool, since, until):
            clauses.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(value)
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        query = sql.SQL(
            "SELECT entry::text FROM consent_entries{} ORDER BY decided_at DESC, seq DESC LIMIT %s"
        ).format(where)
        with self._lock:
            rows = self._connection().execute(query, (*params, limit)).fetchall()
        return [ConsentEntry.model_validate_json(text) for (text,) in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._pg.close()


def is_postgres_url(target: str | Path) -> bool:
    """True for `postgresql://` and `postgres://` URLs (a `Path` is always a file)."""
    return isinstance(target, str) and target.lower().startswith(_POSTGRES_SCHEMES)


def open_ledger(target: str | Path, *, readonly: bool = False) -> ConsentLedger:
    """A PostgreSQL ledger for a `postgresql://`/`postgres://` URL, a SQLite file otherwise."""
    if is_postgres_url(target):
        return PostgresConsentLedger(str(target), readonly=readonly)
    return SqliteConsentLedger(target, readonly=readonly)
