"""Reversible pseudonyms for PII in outbound tool calls, kept where a resumed run can find them.

The DLP check replaces a value with a token such as `<EMAIL_ADDRESS_1>`, the same token for the
same value within a scope (a thread of one principal). A run paused for human approval may
resume in another process or on another replica, which must then re-fill the real values into
the approved call; so the table from token to value must survive restarts and be shared.

Three backends behave identically: `MemoryPseudonymVault` (one process, tests),
`SqlitePseudonymVault` (one host) and `PostgresPseudonymVault` (shared, needs
`agentguard[postgres]`). `open_vault` picks one from a target string.

The SQL backends hold PII at rest, so they store none of it in plaintext: a value is sealed
with AES-GCM, its associated data binding it to (scope, token) so a ciphertext moved to another
row does not open; the reverse lookup (scope, entity, value) -> token goes through an HMAC, and
scopes are stored as HMACs too. Per scope a counter outlives the values (it holds no PII), so
an expired token is never handed to a new value. Any failure (backend down, wrong key,
tampered row) raises a `VaultError`, which is a `ScanIncomplete`: the DLP check then refuses
the call (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agentguard._postgres import HealingConnection
from agentguard.dlp.errors import ScanIncomplete

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "DEFAULT_TTL",
    "MIN_KEY_BYTES",
    "TOKEN_RE",
    "MemoryPseudonymVault",
    "PostgresPseudonymVault",
    "PseudonymVault",
    "SqlitePseudonymVault",
    "VaultError",
    "VaultFull",
    "VaultUnavailable",
    "open_vault",
    "owned_scope",
    "tokens_in",
    "vault_key_from_env",
]

#: A token: an entity name (as the scanner reports it) and a number unique within its scope.
TOKEN_RE = re.compile(r"<([A-Z][A-Z0-9_]{1,63})_([1-9][0-9]{0,8})>")
_ENTITY_RE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
#: Highest token number TOKEN_RE accepts (nine digits).
_MAX_N = 999_999_999
#: A value lives this long after it was last tokenized (a week: approvals wait for people).
DEFAULT_TTL = 7 * 86400.0
#: Shortest master key: 256 bits.
MIN_KEY_BYTES = 32
#: Expired rows purged per call at most: cleanup must never make one call slow.
_PURGE_BATCH = 64
#: Tokens per SELECT ... IN (...): below SQLite's oldest variable limit (999).
_CHUNK = 500
_NONCE_BYTES = 12
_SQLITE_BUSY_TIMEOUT = 30.0
#: Advisory lock key serializing schema creation across processes ("agvault").
_PG_SCHEMA_LOCK = 0x61677661756C74
#: First key of the two-key advisory locks taken per scope ("agpv"); a separate key space
#: from the one-key schema lock.
_PG_SCOPE_LOCK_CLASS = 0x61677076
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class VaultError(ScanIncomplete):
    """The vault could not give or resolve a pseudonym: the payload must not go out."""


class VaultFull(VaultError):
    """A scope holds as many values as it may (`max_values`, or nine-digit numbers ran out)."""


class VaultUnavailable(VaultError):
    """The backend failed, or a stored value did not decrypt (wrong key, tampering)."""


def tokens_in(text: str) -> list[str]:
    """The distinct tokens in `text`, in order of first appearance."""
    return list(dict.fromkeys(m.group(0) for m in TOKEN_RE.finditer(text)))


def owned_scope(owner: str, part: str) -> str:
    """A scope that belongs to `owner`, so `forget_owner(owner)` erases it with the others:
    a user's pseudonyms across all their threads go at once."""
    if "\n" in owner:
        raise ValueError("an owner must not contain a newline")
    return f"{owner}\n{part}"


def _owner_of(scope: str) -> str | None:
    owner, sep, _ = scope.partition("\n")
    return owner if sep else None


@runtime_checkable
class PseudonymVault(Protocol):
    """Token <-> value tables, one per scope, shared by every process that serves the scope."""

    def token(self, scope: str, entity: str, value: str) -> str:
        """The token for `value` in `scope`: the same (entity, value) gets the same token while
        it lives; a new one is `<{entity}_{n}>`, n = 1, 2, ... per scope. A number is never
        given to another value, even after its own expired (a paused call may still hold the
        old token), until the scope is forgotten. Raises `VaultFull` when the scope is full."""
        ...

    def values(self, scope: str, tokens: Collection[str]) -> dict[str, str]:
        """Token -> value for the tokens this scope knows; unknown or expired ones are left out."""
        ...

    def reveal(self, scope: str, text: str) -> str:
        """`text` with this scope's known tokens replaced by their values (others stay)."""
        ...

    def forget(self, scope: str) -> int:
        """Erase a scope (right to erasure); the number of live values it held."""
        ...

    def forget_owner(self, owner: str) -> int:
        """Erase every scope of `owner` (see `owned_scope`); the number of live values."""
        ...

    def close(self) -> None:
        """Release files or connections."""
        ...


class _VaultBase:
    """What every backend shares: `reveal` on top of `values`, and argument checks."""

    def values(self, scope: str, tokens: Collection[str]) -> dict[str, str]:
        raise NotImplementedError

    def reveal(self, scope: str, text: str) -> str:
        """One `values` call for the tokens in `text`, then one pass of replacement (so a value
        that itself looks like a token is never expanded again)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        found = tokens_in(text)
        if not found:
            return text
        table = self.values(scope, found)
        if not table:
            return text
        return TOKEN_RE.sub(lambda m: table.get(m.group(0), m.group(0)), text)


def _check_scope(scope: object) -> str:
    if not isinstance(scope, str):
        raise TypeError(f"scope must be a string, got {type(scope).__name__}")
    if not scope:
        raise ValueError("scope must not be empty")
    return scope


def _check_token_args(scope: object, entity: object, value: object) -> None:
    _check_scope(scope)
    if not isinstance(entity, str) or not _ENTITY_RE.fullmatch(entity):
        raise ValueError(f"entity must match {_ENTITY_RE.pattern}, got {entity!r}")
    if not isinstance(value, str):
        raise TypeError(f"value must be a string, got {type(value).__name__}")


def _wanted(tokens: Collection[str]) -> list[str]:
    """The well-formed tokens asked for, once each; anything else cannot be known."""
    if isinstance(tokens, str):
        raise TypeError("tokens must be a collection of strings, not one string")
    return list(dict.fromkeys(t for t in tokens if isinstance(t, str) and TOKEN_RE.fullmatch(t)))


def _check_limits(ttl: float, max_values: int) -> tuple[float, int]:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError("ttl must be a number of seconds")
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError("ttl must be positive and finite")
    if isinstance(max_values, bool) or not isinstance(max_values, int):
        raise TypeError("max_values must be an integer")
    if not 1 <= max_values <= _MAX_N:
        raise ValueError(f"max_values must be between 1 and {_MAX_N}")
    return float(ttl), max_values


# ---------------------------------------------------------------------------------- memory


@dataclass
class _Entry:
    token: str
    expires_at: float


@dataclass
class _Scope:
    # (entity, value) -> entry, oldest tokenization first (so expired ones are at the front)
    by_value: OrderedDict[tuple[str, str], _Entry] = field(default_factory=OrderedDict)
    by_token: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_n: int = 0
    expires_at: float = 0.0

    def purge(self, now: float) -> None:
        while self.by_value:
            key, entry = next(iter(self.by_value.items()))
            if entry.expires_at > now:
                break
            del self.by_value[key]
            self.by_token.pop(entry.token, None)

    def live(self, now: float) -> int:
        return sum(1 for e in self.by_value.values() if e.expires_at > now)


class MemoryPseudonymVault(_VaultBase):
    """In one process and bounded: at most `max_scopes` scopes (the least recently used is
    forgotten first) of `max_values` values each. Lost on restart: for tests and single-process
    runs that never pause across processes.

    A scope dropped for age or room leaves its counter behind (as many counters are kept as
    scopes), so that a token seen before is not handed to a different value.
    """

    def __init__(
        self,
        *,
        max_scopes: int = 10_000,
        max_values: int = 10_000,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl, self._max_values = _check_limits(ttl, max_values)
        if isinstance(max_scopes, bool) or not isinstance(max_scopes, int) or max_scopes < 1:
            raise ValueError("max_scopes must be a positive integer")
        self._max_scopes = max_scopes
        self._clock = clock
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()  # least recently used first
        self._counters: OrderedDict[str, int] = OrderedDict()  # last_n of dropped scopes
        self._lock = threading.Lock()

    def token(self, scope: str, entity: str, value: str) -> str:
        """See `PseudonymVault.token`."""
        _check_token_args(scope, entity, value)
        with self._lock:
            now = self._clock()
            self._purge_scopes(now)
            table = self._scopes.get(scope)
            if table is None:
                table = self._scopes[scope] = _Scope(last_n=self._counters.pop(scope, 0))
            self._scopes.move_to_end(scope)
            while len(self._scopes) > self._max_scopes:
                self._drop(*self._scopes.popitem(last=False))
            table.purge(now)
            expires = now + self._ttl
            key = (entity, value)
            entry = table.by_value.get(key)
            if entry is not None and entry.expires_at > now:
                entry.expires_at = expires
                table.by_value.move_to_end(key)
            else:
                if entry is not None:  # expired (only with a clock that went back): drop it
                    del table.by_value[key]
                    table.by_token.pop(entry.token, None)
                if len(table.by_value) >= self._max_values:
                    raise VaultFull(f"this scope already holds {self._max_values} pseudonyms")
                if table.last_n >= _MAX_N:
                    raise VaultFull("this scope ran out of token numbers")
                table.last_n += 1
                entry = _Entry(f"<{entity}_{table.last_n}>", expires)
                table.by_value[key] = entry
                table.by_token[entry.token] = key
            table.expires_at = max(table.expires_at, expires)
            return entry.token

    def values(self, scope: str, tokens: Collection[str]) -> dict[str, str]:
        """See `PseudonymVault.values`."""
        _check_scope(scope)
        wanted = _wanted(tokens)
        with self._lock:
            now = self._clock()
            table = self._scopes.get(scope)
            if table is None:
                return {}
            found: dict[str, str] = {}
            for tok in wanted:
                key = table.by_token.get(tok)
                if key is not None and table.by_value[key].expires_at > now:
                    found[tok] = key[1]
            return found

    def forget(self, scope: str) -> int:
        """See `PseudonymVault.forget`."""
        _check_scope(scope)
        with self._lock:
            self._counters.pop(scope, None)
            table = self._scopes.pop(scope, None)
            return 0 if table is None else table.live(self._clock())

    def forget_owner(self, owner: str) -> int:
        """See `PseudonymVault.forget_owner`."""
        _check_scope(owner)
        with self._lock:
            now = self._clock()
            live = 0
            for name in [n for n in (*self._scopes, *self._counters) if _owner_of(n) == owner]:
                self._counters.pop(name, None)
                table = self._scopes.pop(name, None)
                live += 0 if table is None else table.live(now)
            return live

    def close(self) -> None:
        """Drop every table (nothing else to release)."""
        with self._lock:
            self._scopes.clear()
            self._counters.clear()

    def _purge_scopes(self, now: float) -> None:
        """Drop up to a batch of wholly expired scopes, least recently used first."""
        for _ in range(_PURGE_BATCH):
            if not self._scopes:
                return
            name, table = next(iter(self._scopes.items()))
            if table.expires_at > now:
                return
            del self._scopes[name]
            self._drop(name, table)

    def _drop(self, name: str, table: _Scope) -> None:
        """Forget a scope's values, keep its counter (the oldest counters go past max_scopes)."""
        self._counters[name] = table.last_n
        self._counters.move_to_end(name)
        while len(self._counters) > self._max_scopes:
            self._counters.popitem(last=False)


# ---------------------------------------------------------------------------------- crypto


def _frame(*parts: str | bytes) -> bytes:
    """Length-prefixed parts: ("ab", "c") and ("a", "bc") never encode alike."""
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        out += len(data).to_bytes(8, "big") + data
    return bytes(out)


class _Sealer:
    """Subkeys from one master key (HKDF-SHA256), AES-GCM sealing and HMAC-SHA256 lookups."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)):
            raise TypeError("key must be bytes (see vault_key_from_env)")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(self._derive(bytes(key), b"agentguard pseudonym vault v1 seal"))
        self._mac_key = self._derive(bytes(key), b"agentguard pseudonym vault v1 mac")

    @staticmethod
    def _derive(key: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)

    def _mac(self, *parts: str | bytes) -> bytes:
        return hmac.new(self._mac_key, _frame(*parts), hashlib.sha256).digest()

    def scope_id(self, scope: str) -> bytes:
        return self._mac("scope", scope)

    def owner_id(self, scope: str) -> bytes | None:
        owner = _owner_of(scope)
        return None if owner is None else self._mac("owner", owner)

    def lookup(self, scope: str, entity: str, value: str) -> bytes:
        return self._mac("lookup", scope, entity, value)

    def key_check(self) -> bytes:
        return self._mac("key-check")

    def seal(self, scope: str, token: str, value: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        data = value.encode("utf-8", "surrogatepass")
        return nonce + self._aead.encrypt(nonce, data, _frame("value", scope, token))

    def open(self, scope: str, token: str, sealed: bytes) -> str:
        sealed = bytes(sealed)
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            data = self._aead.decrypt(nonce, body, _frame("value", scope, token))
            return data.decode("utf-8", "surrogatepass")
        except (InvalidTag, ValueError) as exc:
            raise VaultUnavailable(
                f"the stored value of {token} did not decrypt (wrong key or a tampered row)"
            ) from exc


def vault_key_from_env(name: str = "AGENTGUARD_VAULT_KEY") -> bytes:
    """The vault's master key from environment variable `name`, hex or base64, >= 32 bytes.

    A key belongs in a secret store, not in code; one random key per deployment, the same on
    every replica (make one with `python -c "import secrets; print(secrets.token_hex(32))"`).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        raise ValueError(
            f"environment variable {name} is not set: set it to a random key of at least "
            f"{MIN_KEY_BYTES} bytes, hex or base64 encoded "
            '(python -c "import secrets; print(secrets.token_hex(32))")'
        )
    key: bytes
    if len(raw) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", raw):
        key = bytes.fromhex(raw)
    else:
        text = raw.replace("-", "+").replace("_", "/")  # accept URL-safe base64 too
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{name} is neither hex nor base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"{name} decodes to {len(key)} bytes; the vault key needs at least {MIN_KEY_BYTES}"
        )
    return key


# -------------------------------------------------------------------------------------- SQL


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


_Execute = Callable[[str, Sequence[Any]], _Cursor]


def _schema(blob: str, real: str) -> tuple[str, ...]:
    """CREATE statements for both SQL backends (`blob`/`real`: the bytes and float types).

    No column holds plaintext: scopes, owners and lookups are HMACs, values are sealed.
    """
    return (
        f"CREATE TABLE IF NOT EXISTS pseudonym_meta (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS pseudonym_scopes (scope_id {blob} PRIMARY KEY, "
        f"last_n BIGINT NOT NULL, owner_id {blob})",
        "CREATE INDEX IF NOT EXISTS pseudonym_scopes_owner ON pseudonym_scopes (owner_id)",
        f"CREATE TABLE IF NOT EXISTS pseudonym_values (scope_id {blob} NOT NULL, "
        f"token TEXT NOT NULL, lookup {blob} NOT NULL, sealed {blob} NOT NULL, "
        f"expires_at {real} NOT NULL, PRIMARY KEY (scope_id, token), UNIQUE (scope_id, lookup))",
        "CREATE INDEX IF NOT EXISTS pseudonym_values_expiry ON pseudonym_values (expires_at)",
    )


@contextlib.contextmanager
def _failing_closed(errors: tuple[type[BaseException], ...], backend: str) -> Iterator[None]:
    """Backend errors become `VaultUnavailable` (a `ScanIncomplete`: the call is refused)."""
    try:
        yield
    except errors as exc:
        raise VaultUnavailable(f"the {backend} pseudonym vault failed: {exc}") from exc


class _SqlVault(_VaultBase):
    """The algorithm both SQL backends run, over their `_transaction` and `_read` hooks.

    Statements use `?` placeholders (rewritten for psycopg) and portable SQL only.
    `_transaction(scope_id)` runs one transaction that no other writer to that scope
    (in any process) interleaves with; the unique keys on (scope, token) and (scope, lookup)
    stand behind it, so a broken serialization fails closed rather than double-numbering.
    Each `token` call that writes also deletes a bounded batch of expired values, in any scope.
    """

    _PURGE_VALUES = ""

    def __init__(
        self, *, key: bytes, ttl: float, max_values: int, clock: Callable[[], float]
    ) -> None:
        self._sealer = _Sealer(key)
        self._ttl, self._max_values = _check_limits(ttl, max_values)
        self._clock = clock

    def _transaction(self, scope_id: bytes | None) -> contextlib.AbstractContextManager[_Execute]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[_Execute]:
        raise NotImplementedError

    def _setup(self, run: _Execute, blob: str, real: str) -> None:
        """Create the tables; refuse a key other than the one the vault was created with (it
        would silently hand out second tokens for known values, and none would reveal)."""
        for statement in _schema(blob, real):
            run(statement, ())
        check = self._sealer.key_check()
        run(
            "INSERT INTO pseudonym_meta (name, value) VALUES ('key_check', ?) "
            "ON CONFLICT (name) DO NOTHING",
            (check,),
        )
        stored = run("SELECT value FROM pseudonym_meta WHERE name = 'key_check'", ()).fetchone()
        if stored is None or not hmac.compare_digest(bytes(stored[0]), check):
            raise VaultUnavailable("the vault key is not the one this vault was created with")

    def token(self, scope: str, entity: str, value: str) -> str:
        """See `PseudonymVault.token`."""
        _check_token_args(scope, entity, value)
        sid = self._sealer.scope_id(scope)
        lookup = self._sealer.lookup(scope, entity, value)
        # A value seen lately needs no write (no fsync): its expiry is refreshed only once a
        # tenth of the TTL has passed, so it still lives at least 0.9 x TTL after its last use.
        with self._read() as run:
            row = run(
                "SELECT token, expires_at FROM pseudonym_values WHERE scope_id = ? AND lookup = ?",
                (sid, lookup),
            ).fetchone()
        if row is not None and row[1] - self._clock() > self._ttl * 0.9:
            return str(row[0])
        with self._transaction(sid) as run:
            now = self._clock()
            expires = now + self._ttl
            row = run(
                "SELECT token, expires_at FROM pseudonym_values WHERE scope_id = ? AND lookup = ?",
                (sid, lookup),
            ).fetchone()
            if row is not None and row[1] > now:
                token: str = row[0]
                run(
                    "UPDATE pseudonym_values SET expires_at = ? WHERE scope_id = ? AND token = ?",
                    (expires, sid, token),
                )
            else:
                token = self._new_token(run, scope, sid, entity, value, lookup, now, expires)
            run(self._PURGE_VALUES, (now, _PURGE_BATCH, now))
            return token

    def _new_token(
        self,
        run: _Execute,
        scope: str,
        sid: bytes,
        entity: str,
        value: str,
        lookup: bytes,
        now: float,
        expires: float,
    ) -> str:
        # Expired values of this scope go first (also the expired row of this very value):
        # they neither count against max_values nor keep their lookup.
        run("DELETE FROM pseudonym_values WHERE scope_id = ? AND expires_at <= ?", (sid, now))
        (count,) = run(
            "SELECT count(*) FROM pseudonym_values WHERE scope_id = ?", (sid,)
        ).fetchone()
        if count >= self._max_values:
            raise VaultFull(f"this scope already holds {self._max_values} pseudonyms")
        run(
            "INSERT INTO pseudonym_scopes (scope_id, last_n, owner_id) VALUES (?, 1, ?) "
            "ON CONFLICT (scope_id) DO UPDATE SET last_n = pseudonym_scopes.last_n + 1",
            (sid, self._sealer.owner_id(scope)),
        )
        (n,) = run("SELECT last_n FROM pseudonym_scopes WHERE scope_id = ?", (sid,)).fetchone()
        if n > _MAX_N:
            raise VaultFull("this scope ran out of token numbers")
        token = f"<{entity}_{n}>"
        run(
            "INSERT INTO pseudonym_values (scope_id, token, lookup, sealed, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (sid, token, lookup, self._sealer.seal(scope, token, value), expires),
        )
        return token

    def values(self, scope: str, tokens: Collection[str]) -> dict[str, str]:
        """See `PseudonymVault.values`. A row that does not decrypt raises `VaultUnavailable`."""
        _check_scope(scope)
        wanted = _wanted(tokens)
        if not wanted:
            return {}
        sid = self._sealer.scope_id(scope)
        rows: list[Any] = []
        with self._read() as run:
            now = self._clock()
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ", ".join("?" for _ in chunk)
                rows += run(
                    "SELECT token, sealed FROM pseudonym_values "  # noqa: S608 - placeholders only
                    f"WHERE scope_id = ? AND expires_at > ? AND token IN ({marks})",
                    (sid, now, *chunk),
                ).fetchall()
        return {tok: self._sealer.open(scope, tok, sealed) for tok, sealed in rows}

    def forget(self, scope: str) -> int:
        """See `PseudonymVault.forget`."""
        _check_scope(scope)
        sid = self._sealer.scope_id(scope)
        with self._transaction(sid) as run:
            (live,) = run(
                "SELECT count(*) FROM pseudonym_values WHERE scope_id = ? AND expires_at > ?",
                (sid, self._clock()),
            ).fetchone()
            run("DELETE FROM pseudonym_values WHERE scope_id = ?", (sid,))
            run("DELETE FROM pseudonym_scopes WHERE scope_id = ?", (sid,))
        return int(live)

    def forget_owner(self, owner: str) -> int:
        """See `PseudonymVault.forget_owner`. A token handed out concurrently, in a scope of
        this owner, may outlive the erasure: erase once the owner can no longer act."""
        oid = self._sealer.owner_id(owned_scope(_check_scope(owner), ""))
        owned = "SELECT scope_id FROM pseudonym_scopes WHERE owner_id = ?"
        with self._transaction(None) as run:
            (live,) = run(
                "SELECT count(*) FROM pseudonym_values "  # noqa: S608 - constant text only
                f"WHERE expires_at > ? AND scope_id IN ({owned})",
                (self._clock(), oid),
            ).fetchone()
            run(f"DELETE FROM pseudonym_values WHERE scope_id IN ({owned})", (oid,))  # noqa: S608
            run("DELETE FROM pseudonym_scopes WHERE owner_id = ?", (oid,))
        return int(live)

    def close(self) -> None:
        raise NotImplementedError


class SqlitePseudonymVault(_SqlVault):
    """A vault in one SQLite file (WAL, `synchronous=FULL`), shared by the processes of a host.

    Every write is one `BEGIN IMMEDIATE` transaction: SQLite lets one writer in at a time
    across processes, so numbering needs no other lock. The file is created owner-only.
    """

    _PURGE_VALUES = (
        "DELETE FROM pseudonym_values WHERE rowid IN (SELECT rowid FROM pseudonym_values "
        "WHERE expires_at <= ? LIMIT ?) AND expires_at <= ?"
    )

    def __init__(
        self,
        path: str | Path,
        *,
        key: bytes,
        ttl: float = DEFAULT_TTL,
        max_values: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key=key, ttl=ttl, max_values=max_values, clock=clock)
        self.path = Path(path)
        self._lock = threading.Lock()
        with _failing_closed((sqlite3.Error, OSError), "SQLite"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch(mode=0o600)  # SQLite gives -wal/-shm the same mode
            self._conn = sqlite3.connect(
                str(self.path),
                timeout=_SQLITE_BUSY_TIMEOUT,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,
            )
        try:
            with _failing_closed((sqlite3.Error,), "SQLite"):
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction(None) as run:
                self._setup(run, "BLOB", "REAL")
        except BaseException:
            self._conn.close()
            raise

    @contextlib.contextmanager
    def _transaction(self, scope_id: bytes | None) -> Iterator[_Execute]:
        with self._lock, _failing_closed((sqlite3.Error,), "SQLite"):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.execute
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Execute]:
        with self._lock, _failing_closed((sqlite3.Error,), "SQLite"):
            yield self._conn.execute

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


class PostgresPseudonymVault(_SqlVault):
    """A vault in PostgreSQL tables, shared by replicas (psycopg 3).

    Same tables as SQLite (BYTEA, DOUBLE PRECISION), in the connection's `search_path`, created
    if missing under an advisory lock. Writes to one scope are serialized by a per-scope
    advisory transaction lock, so concurrent replicas never number two values alike; purges skip
    rows another transaction holds. One autocommit connection guarded by a lock; a broken
    connection is replaced on the next call, while the call that hit the failure raises.
    """

    _PURGE_VALUES = (
        "DELETE FROM pseudonym_values WHERE ctid IN (SELECT ctid FROM pseudonym_values "
        "WHERE expires_at <= ? LIMIT ? FOR UPDATE SKIP LOCKED) AND expires_at <= ?"
    )

    def __init__(
        self,
        conninfo: str,
        *,
        key: bytes,
        ttl: float = DEFAULT_TTL,
        max_values: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImportError(
                "PostgresPseudonymVault needs psycopg 3: install agentguard[postgres]"
            ) from None
        super().__init__(key=key, ttl=ttl, max_values=max_values, clock=clock)
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._lock = threading.Lock()
        self._closed = False
        with _failing_closed(self._errors, "PostgreSQL"):
            self._pg = HealingConnection(conninfo, owner="PostgresPseudonymVault")
        try:
            with self._transaction(None) as run:
                run("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                self._setup(run, "BYTEA", "DOUBLE PRECISION")
        except BaseException:
            self._pg.close()
            raise

    def _connection(self) -> Connection[tuple[Any, ...]]:
        if self._closed:
            raise VaultUnavailable("the PostgreSQL pseudonym vault is closed")
        return self._pg.get()

    def _runner(self, conn: Connection[tuple[Any, ...]]) -> _Execute:
        def run(statement: str, params: Sequence[Any]) -> _Cursor:
            return conn.execute(statement.replace("?", "%s"), params)

        return run

    @contextlib.contextmanager
    def _transaction(self, scope_id: bytes | None) -> Iterator[_Execute]:
        with self._lock, _failing_closed(self._errors, "PostgreSQL"):
            conn = self._connection()
            with conn.transaction():
                run = self._runner(conn)
                if scope_id is not None:
                    lock = int.from_bytes(scope_id[:4], "big", signed=True)
                    run("SELECT pg_advisory_xact_lock(?, ?)", (_PG_SCOPE_LOCK_CLASS, lock))
                yield run

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Execute]:
        with self._lock, _failing_closed(self._errors, "PostgreSQL"):
            yield self._runner(self._connection())

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._closed = True
            self._pg.close()


def open_vault(target: str | Path, *, key: bytes | None = None) -> PseudonymVault:
    """`"memory"`: in-process; a `postgresql://`/`postgres://` URL: PostgreSQL; anything else:
    a SQLite file. The SQL backends need `key` (see `vault_key_from_env`)."""
    if isinstance(target, str) and target == "memory":
        return MemoryPseudonymVault()
    if key is None:
        raise ValueError(
            "a persistent pseudonym vault needs key= (e.g. vault_key_from_env()): "
            "it encrypts the values it stores"
        )
    if isinstance(target, str) and target.lower().startswith(_POSTGRES_SCHEMES):
        return PostgresPseudonymVault(target, key=key)
    return SqlitePseudonymVault(target, key=key)
