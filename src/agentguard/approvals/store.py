"""Durable state of the human-approval flow: open requests, started calls, time-limited grants.

A paused task may be resumed many times, by any worker, after any restart. Three facts must
therefore outlive the process and be the same for every worker:

- when an approval request was first opened (its deadline must not move on re-entry);
- that an approved call has started (it must run once, however many resumes race);
- which grants ("approve similar calls for an hour") exist.

Rows are only ever inserted, never updated or deleted, so a first writer always wins. Storage
errors propagate: a store that cannot answer means "not approved" (fail closed).

Three backends behave identically: `MemoryApprovalStore` (tests, one process),
`SqliteApprovalStore` (one host) and `PostgresApprovalStore` (shared, needs
`agentguard[postgres]`). `open_store` picks one from a path or URL.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentguard._postgres import HealingConnection
from agentguard.approvals.ledger import check_storable_text, is_postgres_url
from agentguard.errors import GuardError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "ApprovalStore",
    "DuplicateGrant",
    "Grant",
    "MemoryApprovalStore",
    "PendingRequest",
    "PostgresApprovalStore",
    "SqliteApprovalStore",
    "open_store",
]

#: Longest request id, claim key or grant id: they are identifiers, not payloads.
MAX_ID_LENGTH = 256
#: Advisory lock key serializing schema creation across processes ("agapprov").
_PG_SCHEMA_LOCK = 0x6167617070726F76


class DuplicateGrant(GuardError):
    """A different grant already has this id; grants are never overwritten."""

    def __init__(self, grant_id: str) -> None:
        self.grant_id = grant_id
        super().__init__(f"grant {grant_id!r} already exists with different content")


def _text(value: object, where: str, *, max_length: int | None = None) -> str:
    """A non-empty string every backend stores identically (no NUL, no lone surrogate)."""
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{where} must not be empty")
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"{where} is longer than {max_length} characters")
    check_storable_text(value, where)
    return value


def _id(value: object, where: str) -> str:
    return _text(value, where, max_length=MAX_ID_LENGTH)


def _time(value: object, where: str) -> float:
    """A finite number of seconds as a float (what REAL / DOUBLE PRECISION give back)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{where} must be finite")
    return result


@dataclass(frozen=True)
class PendingRequest:
    """An approval request as first opened; its deadline never moves."""

    request_id: str
    created_at: float  # epoch seconds, when the approval request was first opened
    expires_at: float


@dataclass(frozen=True)
class Grant:
    """A time-limited approval: calls of `tool` by this principal whose arguments named in `match`
    equal the approved call's run without asking again until `expires_at`.

    Checked on construction (times become floats), so that every backend stores and returns the
    same value and a malformed grant can never widen what was approved.
    """

    grant_id: str  # the consent id of the ledger entry that created it
    tenant: str
    user: str
    agent: str | None
    tool: str
    match: tuple[str, ...]  # sorted top-level argument names
    match_digest: str  # digest of those argument values (never the values themselves)
    created_at: float
    expires_at: float
    approvers: tuple[str, ...]

    def __post_init__(self) -> None:
        _id(self.grant_id, "grant_id")
        for name in ("tenant", "user", "tool", "match_digest"):
            _text(getattr(self, name), name)
        if self.agent is not None:
            _text(self.agent, "agent")
        for name in ("match", "approvers"):
            if not isinstance(getattr(self, name), tuple):
                raise TypeError(f"{name} must be a tuple of strings")
        for i, key in enumerate(self.match):
            _text(key, f"match[{i}]")
        if not self.match:
            raise ValueError("match must name at least one argument")
        if list(self.match) != sorted(set(self.match)):
            raise ValueError("match must be sorted and without duplicates")
        for i, approver in enumerate(self.approvers):
            _text(approver, f"approvers[{i}]")
        created, expires = (
            _time(self.created_at, "created_at"),
            _time(self.expires_at, "expires_at"),
        )
        if expires <= created:
            raise ValueError("expires_at must be after created_at")
        object.__setattr__(self, "created_at", created)
        object.__setattr__(self, "expires_at", expires)


def _checked_grant(grant: object) -> Grant:
    """A re-validated copy: `frozen` does not stop `object.__setattr__` on the caller's object."""
    if not isinstance(grant, Grant):
        raise TypeError(f"expected a Grant, got {type(grant).__name__}")
    return dataclasses.replace(grant)


def _check_query(tenant: str, user: str, agent: str | None, tool: str, since: float) -> float:
    _text(tenant, "tenant")
    _text(user, "user")
    if agent is not None:
        _text(agent, "agent")
    _text(tool, "tool")
    return _time(since, "since")


def _check_open(request_id: str, now: float, ttl: float) -> tuple[float, float]:
    _id(request_id, "request_id")
    now = _time(now, "now")
    if _time(ttl, "ttl") <= 0:
        raise ValueError("ttl must be positive")
    expires = now + ttl
    if not math.isfinite(expires):
        raise ValueError("now + ttl must be finite")
    return now, expires


def _newest_first(grants: list[Grant]) -> list[Grant]:
    """Newest `created_at` first; ties by `grant_id` in code-point order, as SQL sorts them."""
    return sorted(grants, key=lambda g: (g.created_at, g.grant_id), reverse=True)


@runtime_checkable
class ApprovalStore(Protocol):
    """Insert-only storage shared by every worker that handles the same approvals."""

    def open_request(self, request_id: str, *, now: float, ttl: float) -> PendingRequest:
        """Insert if absent, then return the stored row: created_at/expires_at never move once
        set, whichever process or how many times it is called (re-entries of a paused task call
        it again)."""
        ...

    def claim(self, key: str, *, now: float) -> bool:
        """Atomically mark an approved call as started: True for exactly one caller per key, ever
        (claims never expire). Of N concurrent callers (threads or processes) exactly one gets
        True."""
        ...

    def claimed(self, key: str) -> bool:
        """Whether `key` was claimed (a read; it claims nothing)."""
        ...

    def add_grant(self, grant: Grant) -> None:
        """Record a grant. Idempotent for an identical grant (same id, same content); a different
        grant under an existing id raises DuplicateGrant."""
        ...

    def grants(
        self, *, tenant: str, user: str, agent: str | None, tool: str, since: float
    ) -> list[Grant]:
        """Grants for exactly this tenant/user/agent/tool whose expires_at > since, newest first.
        (Callers pass since = now - lookback so they can tell an expired grant from none.)
        agent None matches only grants with agent None."""
        ...

    def close(self) -> None:
        """Release files or connections."""
        ...


class MemoryApprovalStore:
    """An in-process store for tests and single-process demos; lost when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, PendingRequest] = {}
        self._claims: dict[str, float] = {}
        self._grants: dict[str, Grant] = {}

    def open_request(self, request_id: str, *, now: float, ttl: float) -> PendingRequest:
        """The first row stored for `request_id` (see `ApprovalStore.open_request`)."""
        now, expires = _check_open(request_id, now, ttl)
        with self._lock:
            return self._requests.setdefault(request_id, PendingRequest(request_id, now, expires))

    def claim(self, key: str, *, now: float) -> bool:
        """True for the first caller only (see `ApprovalStore.claim`)."""
        _id(key, "key")
        now = _time(now, "now")
        with self._lock:
            if key in self._claims:
                return False
            self._claims[key] = now
            return True

    def claimed(self, key: str) -> bool:
        """Whether `key` was claimed."""
        _id(key, "key")
        with self._lock:
            return key in self._claims

    def add_grant(self, grant: Grant) -> None:
        """Store; an identical grant is a no-op, a different one raises `DuplicateGrant`."""
        grant = _checked_grant(grant)
        with self._lock:
            if self._grants.setdefault(grant.grant_id, grant) != grant:
                raise DuplicateGrant(grant.grant_id)

    def grants(
        self, *, tenant: str, user: str, agent: str | None, tool: str, since: float
    ) -> list[Grant]:
        """Matching live grants, newest first (see `ApprovalStore.grants`)."""
        since = _check_query(tenant, user, agent, tool, since)
        with self._lock:
            rows = list(self._grants.values())
        return _newest_first(
            [
                g
                for g in rows
                if (g.tenant, g.user, g.agent, g.tool) == (tenant, user, agent, tool)
                and g.expires_at > since
            ]
        )

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""


_GRANT_COLUMNS = (
    "grant_id, tenant, user_id, agent, tool, match_keys, match_digest, created_at, expires_at, "
    "approvers"
)


def _grant_row(grant: Grant) -> tuple[Any, ...]:
    return (
        grant.grant_id,
        grant.tenant,
        grant.user,
        grant.agent,
        grant.tool,
        json.dumps(list(grant.match)),
        grant.match_digest,
        grant.created_at,
        grant.expires_at,
        json.dumps(list(grant.approvers)),
    )


def _grant_from_row(row: tuple[Any, ...]) -> Grant:
    gid, tenant, user, agent, tool, match, digest, created, expires, approvers = row
    return Grant(
        gid,
        tenant,
        user,
        agent,
        tool,
        tuple(json.loads(match)),
        digest,
        created,
        expires,
        tuple(json.loads(approvers)),
    )


def _schema(real: str) -> tuple[str, ...]:
    """CREATE statements for both SQL backends; `real` is the float column type."""
    return (
        "CREATE TABLE IF NOT EXISTS approval_requests (request_id TEXT PRIMARY KEY, "
        f"created_at {real} NOT NULL, expires_at {real} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS approval_claims (claim_key TEXT PRIMARY KEY, "
        f"claimed_at {real} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS approval_grants (grant_id TEXT PRIMARY KEY, "
        "tenant TEXT NOT NULL, user_id TEXT NOT NULL, agent TEXT, tool TEXT NOT NULL, "
        "match_keys TEXT NOT NULL, match_digest TEXT NOT NULL, "
        f"created_at {real} NOT NULL, expires_at {real} NOT NULL, approvers TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS approval_grants_lookup "
        "ON approval_grants (tenant, user_id, tool, expires_at)",
    )


class SqliteApprovalStore:
    """A store in one SQLite file (WAL, `synchronous=FULL`): durable on power loss.

    Primary keys make "first writer wins" hold across processes sharing the file; SQLite
    serializes writers, and `ON CONFLICT DO NOTHING` reports through `rowcount` who won.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._conn:
                for statement in _schema("REAL"):
                    self._conn.execute(statement)
        except BaseException:
            self._conn.close()
            raise

    def open_request(self, request_id: str, *, now: float, ttl: float) -> PendingRequest:
        """Insert if absent, then the stored row (see `ApprovalStore.open_request`)."""
        now, expires = _check_open(request_id, now, ttl)
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO approval_requests (request_id, created_at, expires_at) "
                "VALUES (?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
                (request_id, now, expires),
            )
            created, expires = self._conn.execute(
                "SELECT created_at, expires_at FROM approval_requests WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        return PendingRequest(request_id, created, expires)

    def claim(self, key: str, *, now: float) -> bool:
        """True for the first caller only (see `ApprovalStore.claim`)."""
        _id(key, "key")
        now = _time(now, "now")
        with self._lock, self._conn:
            cursor = self._conn.execute(
                "INSERT INTO approval_claims (claim_key, claimed_at) VALUES (?, ?) "
                "ON CONFLICT (claim_key) DO NOTHING",
                (key, now),
            )
            return cursor.rowcount == 1

    def claimed(self, key: str) -> bool:
        """Whether `key` was claimed."""
        _id(key, "key")
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM approval_claims WHERE claim_key = ?", (key,)
            ).fetchone()
        return row is not None

    def add_grant(self, grant: Grant) -> None:
        """Insert; an identical grant is a no-op, a different one raises `DuplicateGrant`."""
        grant = _checked_grant(grant)
        with self._lock, self._conn:
            self._conn.execute(
                f"INSERT INTO approval_grants ({_GRANT_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (grant_id) DO NOTHING",
                _grant_row(grant),
            )
            row = self._conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM approval_grants WHERE grant_id = ?",  # noqa: S608
                (grant.grant_id,),
            ).fetchone()
        if _grant_from_row(row) != grant:
            raise DuplicateGrant(grant.grant_id)

    def grants(
        self, *, tenant: str, user: str, agent: str | None, tool: str, since: float
    ) -> list[Grant]:
        """Matching live grants, newest first (see `ApprovalStore.grants`)."""
        since = _check_query(tenant, user, agent, tool, since)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM approval_grants "  # noqa: S608 - constant
                "WHERE tenant = ? AND user_id = ? AND agent IS ? AND tool = ? AND expires_at > ? "
                "ORDER BY created_at DESC, grant_id DESC",
                (tenant, user, agent, tool, since),
            ).fetchall()
        return [_grant_from_row(row) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


class PostgresApprovalStore:
    """A store in PostgreSQL tables, for several processes or hosts (psycopg 3).

    Same tables as SQLite with `DOUBLE PRECISION` times, in the connection's `search_path`,
    created if missing. One autocommit connection guarded by a lock; a broken connection is
    replaced on the next call, while the call that hit the failure raises (fail closed).
    """

    def __init__(self, conninfo: str) -> None:
        self._pg = HealingConnection(conninfo, owner="PostgresApprovalStore")
        self._lock = threading.Lock()
        conn = self._pg.get()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                for statement in _schema("DOUBLE PRECISION"):
                    conn.execute(statement)
        except BaseException:
            self._pg.close()
            raise

    def _connection(self) -> Connection[tuple[Any, ...]]:
        return self._pg.get()

    def open_request(self, request_id: str, *, now: float, ttl: float) -> PendingRequest:
        """Insert if absent, then the stored row (see `ApprovalStore.open_request`)."""
        now, expires = _check_open(request_id, now, ttl)
        with self._lock:
            conn = self._connection()
            conn.execute(
                "INSERT INTO approval_requests (request_id, created_at, expires_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (request_id) DO NOTHING",
                (request_id, now, expires),
            )
            row = conn.execute(
                "SELECT created_at, expires_at FROM approval_requests WHERE request_id = %s",
                (request_id,),
            ).fetchone()
        if row is None:  # rows are never deleted: only a tampered-with table gets here
            raise RuntimeError(f"approval request {request_id!r} vanished after insert")
        return PendingRequest(request_id, row[0], row[1])

    def claim(self, key: str, *, now: float) -> bool:
        """True for the first caller only (see `ApprovalStore.claim`)."""
        _id(key, "key")
        now = _time(now, "now")
        with self._lock:
            cursor = self._connection().execute(
                "INSERT INTO approval_claims (claim_key, claimed_at) VALUES (%s, %s) "
                "ON CONFLICT (claim_key) DO NOTHING",
                (key, now),
            )
            return cursor.rowcount == 1

    def claimed(self, key: str) -> bool:
        """Whether `key` was claimed."""
        _id(key, "key")
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT 1 FROM approval_claims WHERE claim_key = %s", (key,))
                .fetchone()
            )
        return row is not None

    def add_grant(self, grant: Grant) -> None:
        """Insert; an identical grant is a no-op, a different one raises `DuplicateGrant`."""
        grant = _checked_grant(grant)
        with self._lock:
            conn = self._connection()
            conn.execute(
                f"INSERT INTO approval_grants ({_GRANT_COLUMNS}) VALUES "  # noqa: S608 - constant
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (grant_id) DO NOTHING",
                _grant_row(grant),
            )
            row = conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM approval_grants WHERE grant_id = %s",  # noqa: S608
                (grant.grant_id,),
            ).fetchone()
        if row is None or _grant_from_row(row) != grant:
            raise DuplicateGrant(grant.grant_id)

    def grants(
        self, *, tenant: str, user: str, agent: str | None, tool: str, since: float
    ) -> list[Grant]:
        """Matching live grants, newest first (see `ApprovalStore.grants`).

        `COLLATE "C"` orders ties by code point, like SQLite and Python, whatever the database
        locale.
        """
        since = _check_query(tenant, user, agent, tool, since)
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    f"SELECT {_GRANT_COLUMNS} FROM approval_grants "  # noqa: S608 - constant
                    "WHERE tenant = %s AND user_id = %s AND agent IS NOT DISTINCT FROM %s "
                    "AND tool = %s AND expires_at > %s "
                    'ORDER BY created_at DESC, grant_id COLLATE "C" DESC',
                    (tenant, user, agent, tool, since),
                )
                .fetchall()
            )
        return [_grant_from_row(row) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._pg.close()


def open_store(target: str | Path) -> ApprovalStore:
    """A PostgreSQL store for a `postgresql://`/`postgres://` URL, a SQLite file otherwise."""
    if is_postgres_url(target):
        return PostgresApprovalStore(str(target))
    return SqliteApprovalStore(target)
