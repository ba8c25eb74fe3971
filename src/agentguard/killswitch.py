"""A kill switch: operators stop an agent's tool calls at once, without a deploy or a restart.

An *engagement* stops every call in its scope: ``global`` (everything), one ``tenant``, one
``agent`` (``Principal.agent_id``) or one ``tool``. The guard asks :meth:`KillSwitch.engaged`
before every call, including a call that resumes after waiting for a human, since the switch
may have been flipped while it waited.

A kill switch that cannot answer fails *closed*: ``engaged`` then reports a global engagement
("kill switch unavailable: ...") rather than letting calls through, because an operator who
flipped it during an incident must be able to rely on it.

Backends:

* :class:`MemoryKillSwitch`: one process (tests, single-worker apps).
* :class:`FileKillSwitch`: a JSON file shared by the processes of one host; a check costs one
  ``os.stat`` unless the file changed.
* :class:`RedisKillSwitch`: one key per engagement, shared by replicas; a check is one ``MGET``.

:func:`open_kill_switch` picks one from a target string (a ``redis://`` URL or a file path),
which is also what ``agentguard kill`` takes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from agentguard.context import Principal
from agentguard.errors import ConfigurationError, GuardError

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_REDIS_PREFIX",
    "SCOPES",
    "Engagement",
    "FileKillSwitch",
    "KillSwitch",
    "KillSwitchError",
    "MemoryKillSwitch",
    "RedisKillSwitch",
    "Scope",
    "is_redis_url",
    "open_kill_switch",
]

log = logging.getLogger("agentguard")

Scope = Literal["global", "tenant", "tool", "agent"]

#: Every scope, in the order ``engaged`` reports them: the most general first, so that the
#: reason an operator sees is the broadest one that applies.
SCOPES: tuple[Scope, ...] = ("global", "tenant", "agent", "tool")

MAX_VALUE_LENGTH = 256
MAX_REASON_LENGTH = 500
DEFAULT_REDIS_PREFIX = "agentguard:kill"
_FILE_FORMAT_VERSION = 1
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

_Key = tuple[Scope, str | None]


class KillSwitchError(GuardError):
    """The kill switch's store holds something that is not a valid kill switch record."""


@dataclass(frozen=True)
class Engagement:
    """One flipped switch: what it stops, why, since when and by whom."""

    scope: Scope
    value: str | None
    reason: str
    engaged_at: float
    engaged_by: str | None = None

    def describe(self) -> str:
        """``global`` or ``tenant 'acme'``: for messages to operators, users and the model."""
        return self.scope if self.value is None else f"{self.scope} {self.value!r}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored by the file and Redis backends (and printed by the CLI)."""
        return {
            "scope": self.scope,
            "value": self.value,
            "reason": self.reason,
            "engaged_at": self.engaged_at,
            "engaged_by": self.engaged_by,
        }


@runtime_checkable
class KillSwitch(Protocol):
    """Where operators flip switches and the guard checks them."""

    def engaged(self, principal: Principal, tool: str) -> Engagement | None:
        """The engagement that stops this call (most general first: global, tenant, agent,
        tool), or None.

        Never raises for "not engaged"; if the store cannot answer, returns a global
        engagement with reason ``kill switch unavailable: <ExcType>`` (fail closed).
        """
        ...

    def engage(
        self, scope: Scope, value: str | None = None, *, reason: str, by: str | None = None
    ) -> Engagement:
        """Stop every call in ``scope``/``value`` (replacing an engagement already there)."""
        ...

    def release(self, scope: Scope, value: str | None = None) -> bool:
        """Lift an engagement; True if there was one."""
        ...

    def status(self) -> list[Engagement]:
        """Every engagement, in scope order then by value."""
        ...


# ------------------------------------------------------------------------- validation


def _check_text(what: str, text: object, limit: int) -> str:
    # Printable only: these strings end up in audit logs, terminals and tool messages, where
    # a newline or a bidi override would forge or hide content.
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be a non-empty string")
    if len(text) > limit:
        raise ValueError(f"{what} must be at most {limit} characters")
    if not text.isprintable():
        raise ValueError(f"{what} must not contain control or format characters")
    return text


def _check_target(scope: object, value: object) -> tuple[Scope, str | None]:
    """A valid (scope, value) pair, or ValueError."""
    for checked in SCOPES:
        if scope == checked:
            break
    else:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if checked == "global":
        if value is not None:
            raise ValueError("a global engagement takes no value")
        return checked, None
    return checked, _check_text(f"a {checked} engagement's value", value, MAX_VALUE_LENGTH)


def _new_engagement(scope: Scope, value: str | None, reason: str, by: str | None) -> Engagement:
    checked_scope, checked_value = _check_target(scope, value)
    _check_text("reason", reason, MAX_REASON_LENGTH)
    if by is not None:
        _check_text("engaged_by", by, MAX_VALUE_LENGTH)
    return Engagement(checked_scope, checked_value, reason, time.time(), by)


def _from_dict(data: object) -> Engagement:
    """An engagement read back from a store; KillSwitchError if it is not a valid record."""
    if not isinstance(data, Mapping):
        raise KillSwitchError("an engagement record must be a JSON object")
    try:
        scope, value = _check_target(data.get("scope"), data.get("value"))
        reason = _check_text("reason", data.get("reason"), MAX_REASON_LENGTH)
        by = data.get("engaged_by")
        if by is not None:
            _check_text("engaged_by", by, MAX_VALUE_LENGTH)
    except ValueError as exc:
        raise KillSwitchError(f"invalid engagement record: {exc}") from None
    at = data.get("engaged_at", 0.0)
    try:
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise TypeError
        engaged_at = float(at)
        if not math.isfinite(engaged_at):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise KillSwitchError("invalid engagement record: engaged_at must be a number") from None
    return Engagement(scope, value, reason, engaged_at, by)


def _unavailable(exc: BaseException) -> Engagement:
    """The fail-closed answer of a store that could not be read."""
    log.warning("kill switch unavailable; refusing tool calls", exc_info=exc)
    return Engagement("global", None, f"kill switch unavailable: {type(exc).__name__}", time.time())


def _call_keys(principal: Principal, tool: str) -> list[_Key]:
    """The (scope, value) pairs that could stop this call, most general first."""
    keys: list[_Key] = [("global", None), ("tenant", principal.tenant)]
    if principal.agent_id is not None:
        keys.append(("agent", principal.agent_id))
    keys.append(("tool", tool))
    return keys


def _first_match(table: Mapping[_Key, Engagement], keys: list[_Key]) -> Engagement | None:
    for key in keys:
        found = table.get(key)
        if found is not None:
            return found
    return None


def _ordered(engagements: list[Engagement]) -> list[Engagement]:
    return sorted(engagements, key=lambda e: (SCOPES.index(e.scope), e.value or ""))


# ----------------------------------------------------------------------------- memory


class MemoryKillSwitch:
    """A :class:`KillSwitch` for one process: a dict behind a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: dict[_Key, Engagement] = {}

    def engaged(self, principal: Principal, tool: str) -> Engagement | None:
        """See :meth:`KillSwitch.engaged`."""
        try:
            keys = _call_keys(principal, tool)
            with self._lock:
                return _first_match(self._table, keys)
        except Exception as exc:  # fail closed, whatever went wrong
            return _unavailable(exc)

    def engage(
        self, scope: Scope, value: str | None = None, *, reason: str, by: str | None = None
    ) -> Engagement:
        """See :meth:`KillSwitch.engage`."""
        engagement = _new_engagement(scope, value, reason, by)
        with self._lock:
            self._table[(engagement.scope, engagement.value)] = engagement
        return engagement

    def release(self, scope: Scope, value: str | None = None) -> bool:
        """See :meth:`KillSwitch.release`."""
        key = _check_target(scope, value)
        with self._lock:
            return self._table.pop(key, None) is not None

    def status(self) -> list[Engagement]:
        """See :meth:`KillSwitch.status`."""
        with self._lock:
            return _ordered(list(self._table.values()))


# ------------------------------------------------------------------------------- file

_Signature = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _parse_file(raw: bytes) -> dict[_Key, Engagement]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KillSwitchError(f"kill switch file is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("engagements"), list):
        raise KillSwitchError('kill switch file must be an object with an "engagements" list')
    if doc.get("version", _FILE_FORMAT_VERSION) != _FILE_FORMAT_VERSION:
        raise KillSwitchError(f"unknown kill switch file version {doc.get('version')!r}")
    table: dict[_Key, Engagement] = {}
    for item in doc["engagements"]:
        engagement = _from_dict(item)
        table[(engagement.scope, engagement.value)] = engagement
    return table


class FileKillSwitch:
    """A :class:`KillSwitch` in a JSON file, shared by the processes of one host.

    ``engaged`` costs one ``os.stat``: the file is re-read only when its (mtime_ns, size,
    inode) changed. Writers take an exclusive ``flock`` on ``<path>.lock``, write a temporary
    file in the same folder and ``os.replace`` it, so a reader sees the old file or the new
    one, never half of one. A writer also makes sure the new file's mtime is later than the
    old one's, so that two writes within one timestamp tick (whose inode may be recycled and
    size equal) still change the signature readers compare.

    A missing file means nothing is engaged; an unreadable or corrupt one fails closed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._refresh = threading.Lock()
        # Replaced as a whole (never mutated), so the fast path reads it without a lock.
        self._cache: tuple[_Signature, dict[_Key, Engagement]] | None = None

    # -- reading

    def _table(self) -> dict[_Key, Engagement]:
        """The current engagements, from the cache when the file has not changed."""
        try:
            sig = _signature(os.stat(self.path))
        except FileNotFoundError:
            self._cache = None  # a file created later must be read, whatever its signature
            return {}
        cache = self._cache
        if cache is not None and cache[0] == sig:
            return cache[1]
        with self._refresh:
            return self._load()

    def _load(self) -> dict[_Key, Engagement]:
        try:
            with open(self.path, "rb") as fh:
                # The signature of what we read, not of what we stat-ed a moment ago: if the
                # file was replaced in between, the next call sees a change and reads again.
                sig = _signature(os.fstat(fh.fileno()))
                cache = self._cache
                if cache is not None and cache[0] == sig:
                    return cache[1]
                table = _parse_file(fh.read())
        except FileNotFoundError:
            return {}
        self._cache = (sig, table)
        return table

    def engaged(self, principal: Principal, tool: str) -> Engagement | None:
        """See :meth:`KillSwitch.engaged`."""
        try:
            return _first_match(self._table(), _call_keys(principal, tool))
        except Exception as exc:  # unreadable, corrupt, permissions: fail closed
            return _unavailable(exc)

    def status(self) -> list[Engagement]:
        """See :meth:`KillSwitch.status`; raises if the file cannot be read."""
        return _ordered(list(self._table().values()))

    # -- writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl  # POSIX only; imported here so the module itself imports anywhere

        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock; the lock file stays (removing it would race)

    def _current(self) -> tuple[dict[_Key, Engagement], os.stat_result | None]:
        """What is on disk now (bypassing the cache), and the file's stat."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                return _parse_file(fh.read()), st
        except FileNotFoundError:
            return {}, None

    def _write(self, table: dict[_Key, Engagement], old: os.stat_result | None) -> None:
        doc = {
            "version": _FILE_FORMAT_VERSION,
            "engagements": [e.to_dict() for e in _ordered(list(table.values()))],
        }
        data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                if old is not None:
                    os.fchmod(fh.fileno(), old.st_mode & 0o777)  # keep the operator's choice
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                st = os.fstat(fh.fileno())
            if old is not None and st.st_mtime_ns <= old.st_mtime_ns:
                os.utime(tmp, ns=(st.st_atime_ns, old.st_mtime_ns + 1))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable; not possible everywhere
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def engage(
        self, scope: Scope, value: str | None = None, *, reason: str, by: str | None = None
    ) -> Engagement:
        """See :meth:`KillSwitch.engage`; refuses to rewrite a corrupt file (fix or remove it)."""
        engagement = _new_engagement(scope, value, reason, by)
        with self._locked():
            table, st = self._current()
            table[(engagement.scope, engagement.value)] = engagement
            self._write(table, st)
        return engagement

    def release(self, scope: Scope, value: str | None = None) -> bool:
        """See :meth:`KillSwitch.release`."""
        key = _check_target(scope, value)
        with self._locked():
            table, st = self._current()
            if table.pop(key, None) is None:
                return False
            self._write(table, st)
        return True


# ------------------------------------------------------------------------------ Redis


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (SCAN MATCH)."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


class RedisKillSwitch:
    """A :class:`KillSwitch` in Redis, shared by every replica that talks to one server.

    Each engagement is one key, ``{prefix}:global`` or ``{prefix}:{scope}:{value}``, holding
    the engagement as JSON; ``engaged`` fetches the keys that could apply with a single
    ``MGET`` (one round trip). Any Redis error makes ``engaged`` fail closed. For Redis
    Cluster, give a prefix with a hash tag (e.g. ``{agentguard:kill}``) so that the keys of
    one ``MGET`` share a slot.

    ``client_or_url`` is a ``redis.Redis`` client or a ``redis://``/``rediss://`` URL; a
    client made from a URL gets short timeouts and a single retry, since a check that hangs
    holds up the tool call it guards.
    """

    def __init__(
        self, client_or_url: redis.Redis | str, *, prefix: str = DEFAULT_REDIS_PREFIX
    ) -> None:
        if not prefix:
            raise ConfigurationError("a key prefix is required (keys share the Redis keyspace)")
        self._client: Any = (
            _redis_from_url(client_or_url) if isinstance(client_or_url, str) else client_or_url
        )
        self._prefix = prefix

    def _key(self, scope: Scope, value: str | None) -> str:
        return f"{self._prefix}:{scope}" if value is None else f"{self._prefix}:{scope}:{value}"

    def _decode(self, raw: bytes | str, scope: Scope, value: str | None) -> Engagement:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KillSwitchError(f"kill switch record is not valid JSON: {exc}") from None
        engagement = _from_dict(data)
        if (engagement.scope, engagement.value) != (scope, value):
            raise KillSwitchError("kill switch record does not match its key")
        return engagement

    def engaged(self, principal: Principal, tool: str) -> Engagement | None:
        """See :meth:`KillSwitch.engaged`."""
        try:
            keys = _call_keys(principal, tool)
            values = self._client.mget([self._key(s, v) for s, v in keys])
            for (scope, value), raw in zip(keys, values, strict=True):
                if raw is not None:
                    return self._decode(raw, scope, value)
            return None
        except Exception as exc:  # connection, timeout, server or record error: fail closed
            return _unavailable(exc)

    def engage(
        self, scope: Scope, value: str | None = None, *, reason: str, by: str | None = None
    ) -> Engagement:
        """See :meth:`KillSwitch.engage`."""
        engagement = _new_engagement(scope, value, reason, by)
        record = json.dumps(engagement.to_dict(), ensure_ascii=False)
        self._client.set(self._key(engagement.scope, engagement.value), record)
        return engagement

    def release(self, scope: Scope, value: str | None = None) -> bool:
        """See :meth:`KillSwitch.release`."""
        checked_scope, checked_value = _check_target(scope, value)
        return bool(self._client.delete(self._key(checked_scope, checked_value)))

    def status(self) -> list[Engagement]:
        """See :meth:`KillSwitch.status`; SCANs the prefix (never KEYS, which blocks Redis)."""
        base = self._prefix + ":"
        targets: dict[str, _Key] = {}
        for raw_key in self._client.scan_iter(match=_glob_escape(base) + "*", count=500):
            key = _text(raw_key)
            rest = key[len(base) :]
            scope, sep, value = rest.partition(":")
            if rest == "global":
                targets[key] = ("global", None)
            elif sep and scope != "global":
                with contextlib.suppress(ValueError):  # not a key of ours: leave it alone
                    targets[key] = _check_target(scope, value)
        names = sorted(targets)
        found: list[Engagement] = []
        for start in range(0, len(names), 500):
            batch = names[start : start + 500]
            for key, raw in zip(batch, self._client.mget(batch), strict=True):
                if raw is not None:  # released since the SCAN
                    found.append(self._decode(raw, *targets[key]))
        return _ordered(found)


def _redis_from_url(url: str) -> Any:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "RedisKillSwitch needs redis-py: install agentguard[redis]"
        ) from exc
    scheme, sep, rest = url.partition("://")  # redis-py only knows lower-case schemes
    return redis.Redis.from_url(
        scheme.lower() + sep + rest,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 1),
    )


def is_redis_url(target: str) -> bool:
    """True for ``redis://`` and ``rediss://`` URLs (any case), which name a Redis server."""
    return target.lower().startswith(("redis://", "rediss://"))


def open_kill_switch(target: str, *, redis_prefix: str = DEFAULT_REDIS_PREFIX) -> KillSwitch:
    """A ``redis://``/``rediss://`` URL opens a :class:`RedisKillSwitch`; anything else is the
    path of a :class:`FileKillSwitch`. ``redis_prefix`` must be the one the agents use.

    Any other ``scheme://`` is refused: taken as a path, it would name a file nobody writes,
    and the switch would silently never engage.
    """
    if is_redis_url(target):
        return RedisKillSwitch(target, prefix=redis_prefix)
    if _URL_RE.match(target):
        raise ConfigurationError(
            "unsupported kill switch URL: give a redis:// or rediss:// URL, or a file path"
        )
    return FileKillSwitch(target)
