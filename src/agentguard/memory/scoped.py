"""Agent memory with boundaries, as a LangGraph `BaseStore` over any other store.

Code addresses memory by scope, the first label of every namespace: `("user", "prefs")`,
`("team", "playbooks")`, `("tenant", "glossary")`. The physical namespace is always built from
the trusted `Principal`, never from arguments:

- user:   `(prefix, "t", tenant, "u", user, *rest)`
- team:   `(prefix, "t", tenant, "team", team, *rest)`
- tenant: `(prefix, "t", tenant, "all", *rest)`

Identity labels outside `[A-Za-z0-9_-]` are hex-encoded behind a `~` marker (which the plain
alphabet never contains), so the mapping is injective: tenant "a.b" / user "c" and tenant "a" /
user "b.c" can never share a namespace. Callers only ever see their logical namespace back,
and every value in or out is a private copy.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, cast, get_args

from langgraph.store.base import (
    NOT_PROVIDED,
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    NotProvided,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)
from langgraph.store.memory import InMemoryStore

from agentguard._canonical import digest
from agentguard.context import Principal
from agentguard.errors import ConfigurationError, GuardError
from agentguard.identity import CallContext
from agentguard.policy.model import MemorySettings

Scope = Literal["user", "team", "tenant"]
SCOPES: tuple[str, ...] = get_args(Scope)

MAX_LABELS = 8
MAX_LABEL_LEN = 128
MAX_KEY_LEN = 512
MAX_VALUE_NODES = 10_000
MAX_VALUE_DEPTH = 32

_SAFE_IDENT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Dots split labels in SQL backends, `*` is a wildcard in namespace listing, and control or
# format characters are invisible in logs: none of them belongs in a label.
_BAD_LABEL_RE = re.compile(r"[.*\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_BAD_KEY_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

AuditWriter = Callable[[dict[str, Any]], None]
_WRITES = ("put", "delete")


class ScopeError(GuardError):
    """A scope the principal does not have, or a namespace/key/value that could escape it."""


def encode_ident(value: str) -> str:
    """One principal id as a namespace label, injectively: plain ids stay readable."""
    if _SAFE_IDENT_RE.match(value):
        return value
    return "~" + value.encode("utf-8").hex()


def tenant_base(prefix: str, tenant: str) -> tuple[str, ...]:
    return (prefix, "t", encode_ident(tenant))


def scope_bases(prefix: str, principal: Principal) -> dict[str, tuple[str, ...]]:
    """The physical namespace under which each of the principal's scopes lives."""
    return dict(_bases(prefix, principal.tenant, principal.user, principal.team))


@functools.lru_cache(maxsize=4096)
def _bases(
    prefix: str, tenant_id: str, user: str, team: str | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    bases = [
        ("user", scope_base(prefix, tenant_id, "user", user)),
        ("tenant", scope_base(prefix, tenant_id, "tenant", tenant_id)),
    ]
    if team is not None:
        bases.append(("team", scope_base(prefix, tenant_id, "team", team)))
    return tuple(bases)


def scope_base(prefix: str, tenant_id: str, scope: str, ident: str) -> tuple[str, ...]:
    """The physical namespace of one user's, one team's or the tenant's memory."""
    tenant = tenant_base(prefix, tenant_id)
    if scope == "user":
        return (*tenant, "u", encode_ident(ident))
    if scope == "team":
        return (*tenant, "team", encode_ident(ident))
    return (*tenant, "all")


def scope_of(prefix: str, namespace: tuple[str, ...]) -> Scope | None:
    """Which scope a physical namespace belongs to (None: not agentguard memory)."""
    if len(namespace) < 4 or namespace[0] != prefix or namespace[1] != "t":
        return None
    marker = namespace[3]
    if marker == "u" and len(namespace) >= 5:
        return "user"
    if marker == "team" and len(namespace) >= 5:
        return "team"
    if marker == "all":
        return "tenant"
    return None


def _check_labels(namespace: Any, what: str) -> tuple[str, ...]:
    if not isinstance(namespace, tuple):
        raise ScopeError(f"{what} must be a tuple of strings")
    if len(namespace) > MAX_LABELS:
        raise ScopeError(f"{what} has {len(namespace)} labels; at most {MAX_LABELS}")
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise ScopeError(f"{what} labels must be non-empty strings")
        if len(label) > MAX_LABEL_LEN:
            raise ScopeError(f"{what} label longer than {MAX_LABEL_LEN} characters")
        if _BAD_LABEL_RE.search(label):
            raise ScopeError(f"{what} label contains '.', '*' or a control character")
    return namespace


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ScopeError("key must be a non-empty string")
    if len(key) > MAX_KEY_LEN:
        raise ScopeError(f"key longer than {MAX_KEY_LEN} characters")
    if _BAD_KEY_RE.search(key):
        raise ScopeError("key contains a control character")
    return key


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScopeError(f"{name} must be an integer >= {minimum}")
    return value


def copy_value(value: Any) -> dict[str, Any]:
    """A private, JSON-only copy of a value to store, bounded in size and depth.

    Stores keep what they are given (InMemoryStore keeps the very dict), so a caller who kept a
    reference could otherwise change memory later without any check.
    """
    if not isinstance(value, Mapping):
        raise ScopeError("value must be a dict")
    budget = [MAX_VALUE_NODES]

    def walk(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ScopeError(f"value has more than {MAX_VALUE_NODES} elements")
        if depth > MAX_VALUE_DEPTH:
            raise ScopeError(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
        kind = type(v)
        if kind is str or kind is int or kind is bool or v is None:
            return v
        if kind is float:
            if not math.isfinite(v):
                raise ScopeError("value holds NaN or infinity (not JSON)")
            return v
        if isinstance(v, Mapping):
            out: dict[str, Any] = {}
            for k, item in v.items():
                if type(k) is not str:
                    raise ScopeError("value keys must be strings")
                out[k] = walk(item, depth + 1)
            return out
        if isinstance(v, (list, tuple)):
            return [walk(item, depth + 1) for item in v]
        raise ScopeError(f"value holds a {kind.__name__}, which is not JSON")

    return cast(dict[str, Any], walk(value, 0))


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON data handed out; much faster than `copy.deepcopy`."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _retention_seconds(settings: MemorySettings) -> dict[str, float]:
    if not settings.retention_days:
        return {}
    return {s: d * 86400.0 for s, d in settings.retention_days.items()}


def _same(value: Any) -> Any:
    return value


def timestamp_of(moment: datetime) -> float:
    """Seconds since the epoch; a naive time from a backend is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass(frozen=True)
class _Step:
    """One caller op, planned: what to ask the backend and how to answer the caller."""

    kind: Literal["get", "put", "delete", "search", "list"]
    scope: str
    logical: tuple[str, ...]
    key: str | None = None
    slots: tuple[int, ...] = ()  # indexes into the backend batch
    bases: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (scope, base) answered by the slots
    limit: int = 0
    offset: int = 0
    ready: Any = None  # answer computed without the backend (InMemoryStore listing)


@functools.lru_cache(maxsize=64)
def _hands_out_fresh_values(store_type: type) -> bool:
    """SQL stores decode a new value on every read; only those may skip the defensive copy."""
    fresh: list[type] = []
    try:
        from langgraph.store.sqlite.base import BaseSqliteStore

        fresh.append(BaseSqliteStore)
    except ImportError:  # pragma: no cover - optional backend
        pass
    try:
        from langgraph.store.postgres.base import BasePostgresStore

        fresh.append(BasePostgresStore)
    except ImportError:  # pragma: no cover - optional backend
        pass
    return issubclass(store_type, tuple(fresh))


class StoreView(BaseStore):
    """A store in front of another: TTL support and settings are the backend's and policy's."""

    agentguard_scoped = True  # doors never wrap a store that is already scoped
    _store: BaseStore
    _settings: MemorySettings

    @property
    def settings(self) -> MemorySettings:
        return self._settings

    @property
    def supports_ttl(self) -> bool:  # type: ignore[override]
        return self._store.supports_ttl

    @property
    def ttl_config(self) -> TTLConfig | None:  # type: ignore[override]
        return self._store.ttl_config


class ScopedStore(StoreView):
    """Memory for one principal: every namespace is prefixed from the trusted principal (never
    from arguments), reads never leave the principal's scopes, and values are private copies.

    Tools get it through LangGraph's normal store injection when a guard door runs them; use
    `GuardedStore` to give every node of a graph the same boundaries.
    """

    def __init__(
        self,
        store: BaseStore,
        principal: Principal,
        *,
        settings: MemorySettings | None = None,
        audit: AuditWriter | None = None,
        context: CallContext | None = None,
        call_id: str | None = None,
        blocking: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(store, BaseStore):
            raise ConfigurationError("ScopedStore needs a langgraph BaseStore")
        if getattr(store, "agentguard_scoped", False):
            raise ConfigurationError("this store is already scoped; do not scope it twice")
        if not isinstance(principal, Principal):
            raise ConfigurationError("ScopedStore needs a trusted Principal")
        settings = settings if settings is not None else MemorySettings()
        if not isinstance(settings, MemorySettings):
            raise ConfigurationError("settings must be a MemorySettings (policy.memory)")
        self._store = store
        self._principal = principal
        self._settings = settings
        self._bases = scope_bases(settings.prefix, principal)
        self._retention = _retention_seconds(settings)
        self._audit = audit if settings.audit != "none" else None
        self._audit_reads = settings.audit == "all"
        self._context = context
        self._call_id = call_id
        self._blocking = blocking  # audit or backend may block: async calls go to a thread
        self._clock = clock
        self._in_memory = isinstance(store, InMemoryStore)
        self._copy = _copy_json if not _hands_out_fresh_values(type(store)) else _same

    @property
    def principal(self) -> Principal:
        return self._principal

    # ----------------------------------------------------------------- mapping

    def _base(self, scope: Any) -> tuple[str, ...]:
        if scope not in SCOPES:
            raise ScopeError(
                f"the first namespace label must name a scope, one of {SCOPES}; "
                "agentguard memory has no unscoped namespaces"
            )
        base = self._bases.get(scope)
        if base is None:
            raise ScopeError(f"principal has no {scope!r}; cannot use {scope!r} memory")
        return base

    def _split(self, namespace: Any, what: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """(scope, physical namespace, logical namespace) for a caller's namespace."""
        if not isinstance(namespace, tuple) or not namespace:
            raise ScopeError(f"{what} must start with a scope: ('user', ...), ('team', ...)")
        base = self._base(namespace[0])
        rest = _check_labels(namespace[1:], what)
        return namespace[0], base + rest, namespace

    def _cutoff(self, scope: str) -> float | None:
        keep = self._retention.get(scope)
        return None if keep is None else self._clock() - keep

    def _ttl(self, scope: str, ttl: float | None) -> float | None:
        """The backend TTL in minutes: the caller's, capped by the scope's retention."""
        keep = self._retention.get(scope)
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise ScopeError("ttl must be a number of minutes")
            if not math.isfinite(ttl) or ttl <= 0:
                raise ScopeError("ttl must be a positive, finite number of minutes")
            if not self._store.supports_ttl:
                # Memory meant to expire that silently would not is a gap: refuse instead.
                raise ConfigurationError(f"{type(self._store).__name__} does not support TTL")
        if keep is None or not self._store.supports_ttl:
            return ttl  # without backend TTL, retention is enforced on read and by sweep()
        cap = keep / 60.0
        return cap if ttl is None else min(ttl, cap)

    def _plan(self, op: Op, calls: list[Op]) -> _Step:
        def slot(physical: Op) -> int:
            calls.append(physical)
            return len(calls) - 1

        if isinstance(op, GetOp):
            scope, physical, logical = self._split(op.namespace, "namespace")
            key = _check_key(op.key)
            refresh = op.refresh_ttl and scope not in self._retention
            return _Step(
                "get",
                scope,
                logical,
                key,
                slots=(slot(GetOp(physical, key, refresh)),),
            )
        if isinstance(op, PutOp):
            scope, physical, logical = self._split(op.namespace, "namespace")
            key = _check_key(op.key)
            if op.value is None:
                return _Step(
                    "delete", scope, logical, key, slots=(slot(PutOp(physical, key, None)),)
                )
            value = copy_value(op.value)
            ttl = self._ttl(scope, op.ttl)
            put = PutOp(physical, key, value, index=op.index, ttl=ttl)
            return _Step("put", scope, logical, key, slots=(slot(put),))
        if isinstance(op, SearchOp):
            scope, physical, logical = self._split(op.namespace_prefix, "namespace_prefix")
            if op.filter is not None and not isinstance(op.filter, dict):
                raise ScopeError("filter must be a dict")
            limit = _check_count(op.limit, "limit", 0)
            offset = _check_count(op.offset, "offset", 0)
            refresh = op.refresh_ttl and scope not in self._retention
            search = SearchOp(physical, op.filter, limit, offset, op.query, refresh)
            return _Step(
                "search",
                scope,
                logical,
                slots=(slot(search),),
                bases=((scope, self._bases[scope]),),
            )
        if isinstance(op, ListNamespacesOp):
            return self._plan_list(op, slot)
        raise ScopeError(f"unsupported store operation {type(op).__name__}")

    def _plan_list(self, op: ListNamespacesOp, slot: Callable[[Op], int]) -> _Step:
        prefix: tuple[str, ...] = ()
        suffix: tuple[str, ...] = ()
        for cond in op.match_conditions or ():
            if not isinstance(cond, MatchCondition) or cond.match_type not in ("prefix", "suffix"):
                raise ScopeError("match conditions must be prefix or suffix conditions")
            if cond.match_type == "prefix":
                prefix = tuple(cond.path)
            else:
                suffix = _check_labels(tuple(cond.path), "suffix")
        limit = _check_count(op.limit, "limit", 0)
        offset = _check_count(op.offset, "offset", 0)
        depth = None if op.max_depth is None else _check_count(op.max_depth, "max_depth", 1)
        if prefix:
            scope, physical, _ = self._split(prefix, "prefix")
            targets = [(scope, physical)]
        else:  # every scope the principal has, merged
            targets = [(s, self._bases[s]) for s in SCOPES if s in self._bases]
        bases = tuple((s, self._bases[s]) for s, _ in targets)
        if self._in_memory:
            found: list[tuple[str, ...]] = []
            for (scope, physical), (_, base) in zip(targets, bases, strict=True):
                for ns in self._memory_namespaces(physical):
                    logical = (scope, *ns[len(base) :])
                    if suffix and logical[-len(suffix) :] != suffix:
                        continue
                    found.append(logical if depth is None else logical[:depth])
            ready = sorted(set(found))[offset : offset + limit]
            return _Step("list", prefix[0] if prefix else "*", prefix, ready=ready)
        conditions = [MatchCondition("suffix", suffix)] if suffix else []
        slots = []
        for (_, physical), (_, base) in zip(targets, bases, strict=True):
            physical_depth = None if depth is None else len(base) + depth - 1
            conds = (MatchCondition("prefix", physical), *conditions)
            listing = ListNamespacesOp(conds, physical_depth, limit + offset, 0)
            slots.append(slot(listing))
        return _Step(
            "list",
            prefix[0] if prefix else "*",
            prefix,
            slots=tuple(slots),
            bases=bases,
            limit=limit,
            offset=offset,
        )

    def _memory_namespaces(self, physical: tuple[str, ...]) -> set[tuple[str, ...]]:
        """Namespaces holding items, for InMemoryStore.

        InMemoryStore lists every namespace anything (even a `get` or `delete`) ever touched,
        so a teammate's probe would show up as a namespace; the SQL stores list only
        namespaces that hold items. Deriving the list from items gives the SQL behaviour.
        """
        found: set[tuple[str, ...]] = set()
        page, start = 1000, 0
        while True:
            batch = self._store.search(physical, limit=page, offset=start)
            found.update(tuple(item.namespace) for item in batch)
            if len(batch) < page:
                return found
            start += page

    # ----------------------------------------------------------------- answers

    def _alive(self, item: Item, cutoff: float | None) -> bool:
        return cutoff is None or timestamp_of(item.updated_at) >= cutoff

    def _got(
        self, scope: str, physical: tuple[str, ...], logical: tuple[str, ...], key: str, item: Any
    ) -> Item | None:
        """A backend's answer to one get, as the caller may see it."""
        if not isinstance(item, Item) or tuple(item.namespace) != physical or item.key != key:
            self._note("get", scope, logical, key, "miss")
            return None  # also: a backend answering for another namespace
        if not self._alive(item, self._cutoff(scope)):
            self._note("get", scope, logical, key, "expired")
            return None
        self._note("get", scope, logical, key, "hit", 1)
        return Item(
            value=self._copy(item.value),
            key=key,
            namespace=logical,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )

    def _answer(self, step: _Step, results: list[Result]) -> Result:
        if step.kind in ("put", "delete"):
            return None
        if step.kind == "get":
            assert step.key is not None
            physical = self._bases[step.scope] + step.logical[1:]
            return self._got(step.scope, physical, step.logical, step.key, results[step.slots[0]])
        if step.kind == "search":
            scope, base = step.bases[0]
            cutoff = self._cutoff(scope)
            out: list[SearchItem] = []
            for item in cast(list[SearchItem], results[step.slots[0]]):
                ns = tuple(item.namespace)
                if ns[: len(base)] != base or not self._alive(item, cutoff):
                    continue  # never hand out another scope's data, whatever the backend says
                out.append(
                    SearchItem(
                        namespace=(scope, *ns[len(base) :]),
                        key=item.key,
                        value=self._copy(item.value),
                        created_at=item.created_at,
                        updated_at=item.updated_at,
                        score=item.score,
                    )
                )
            self._note("search", scope, step.logical, None, "ok", len(out))
            return out
        if step.ready is not None:
            listed = cast(list[tuple[str, ...]], step.ready)
        else:
            merged: set[tuple[str, ...]] = set()
            for index, (scope, base) in zip(step.slots, step.bases, strict=True):
                for ns in cast(list[tuple[str, ...]], results[index]):
                    ns = tuple(ns)
                    if ns[: len(base)] == base:
                        merged.add((scope, *ns[len(base) :]))
            listed = sorted(merged)[step.offset : step.offset + step.limit]
        self._note("list", step.scope, step.logical, None, "ok", len(listed))
        return listed

    # ----------------------------------------------------------------- audit

    def _event(
        self,
        step_kind: str,
        scope: str,
        logical: tuple[str, ...],
        key: str | None,
        result: str,
        *,
        count: int | None = None,
        reason: str | None = None,
    ) -> None:
        assert self._audit is not None
        summary: dict[str, Any] = {"op": step_kind, "scope": scope}
        if logical:
            summary["namespace"] = digest(list(logical))
        if key is not None:
            summary["key"] = digest(key)
        if count is not None:
            summary["count"] = count
        ctx = self._context
        self._audit(
            dict(
                event="memory",
                call_id=self._call_id,
                thread_id=ctx.thread_id if ctx is not None else None,
                run_id=ctx.run_id if ctx is not None else None,
                result=result,
                reason=reason,
                summary=summary,
                **self._principal.audit_fields(),
            )
        )

    def _note(
        self,
        kind: str,
        scope: str,
        logical: tuple[str, ...],
        key: str | None,
        result: str,
        count: int | None = None,
    ) -> None:
        """One audit event, if the settings want this kind: writes always, reads under `all`."""
        if self._audit is not None and (self._audit_reads or kind in _WRITES):
            self._event(kind, scope, logical, key, result, count=count)

    def _note_writes(self, steps: list[_Step]) -> None:
        """Written down before the backend is touched: nothing changes unrecorded."""
        for step in steps:
            if step.kind in _WRITES:
                self._note(step.kind, step.scope, step.logical, step.key, step.kind)

    def _refused(self, kind: str, namespace: Any, exc: ScopeError) -> None:
        if self._audit is None:
            return
        scope = namespace[0] if isinstance(namespace, tuple) and namespace else None
        shown = scope if isinstance(scope, str) and scope in SCOPES else "?"
        self._event(kind, shown, (), None, "refused", reason=str(exc)[:200])

    def _refused_op(self, op: Op, exc: ScopeError) -> None:
        namespace = getattr(op, "namespace", None) or getattr(op, "namespace_prefix", None)
        if isinstance(op, PutOp):
            kind = "put" if op.value is not None else "delete"
        else:
            kind = {GetOp: "get", SearchOp: "search"}.get(type(op), "list")
        self._refused(kind, namespace, exc)

    def _prepare(self, ops: Iterable[Op]) -> tuple[list[_Step], list[Op]]:
        calls: list[Op] = []
        steps: list[_Step] = []
        for op in ops:
            try:
                steps.append(self._plan(op, calls))
            except ScopeError as exc:
                self._refused_op(op, exc)
                raise
        self._note_writes(steps)
        return steps, calls

    # ----------------------------------------------------------------- BaseStore

    # The single-item calls skip the batch planner: they are the hot path of tool memory.

    def _checked(
        self, kind: str, namespace: Any, key: Any
    ) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
        try:
            scope, physical, logical = self._split(namespace, "namespace")
            return scope, physical, logical, _check_key(key)
        except ScopeError as exc:
            self._refused(kind, namespace, exc)
            raise

    def _put_args(
        self, scope: str, logical: tuple[str, ...], key: str, value: Any, ttl: Any
    ) -> tuple[dict[str, Any], float | None]:
        try:
            data = copy_value(value)
            if ttl is NOT_PROVIDED:
                ttl = (self._store.ttl_config or {}).get("default_ttl")
            return data, self._ttl(scope, ttl)
        except ScopeError as exc:
            self._refused("put", logical, exc)
            raise

    def get(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        scope, physical, logical, key = self._checked("get", namespace, key)
        refresh = False if scope in self._retention else refresh_ttl
        item = self._store.get(physical, key, refresh_ttl=refresh)
        return self._got(scope, physical, logical, key, item)

    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        if self._blocking:
            return await asyncio.to_thread(self.get, namespace, key, refresh_ttl=refresh_ttl)
        scope, physical, logical, key = self._checked("get", namespace, key)
        refresh = False if scope in self._retention else refresh_ttl
        op = GetOp(physical, key, True if refresh is None else refresh)
        found = await self._inner_abatch([op])
        return self._got(scope, physical, logical, key, found[0])

    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        scope, physical, logical, key = self._checked("put", namespace, key)
        data, minutes = self._put_args(scope, logical, key, value, ttl)
        self._note("put", scope, logical, key, "put")
        self._store.batch([PutOp(physical, key, data, index=index, ttl=minutes)])

    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        if self._blocking:
            return await asyncio.to_thread(self.put, namespace, key, value, index, ttl=ttl)
        scope, physical, logical, key = self._checked("put", namespace, key)
        data, minutes = self._put_args(scope, logical, key, value, ttl)
        self._note("put", scope, logical, key, "put")
        await self._inner_abatch([PutOp(physical, key, data, index=index, ttl=minutes)])

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        scope, physical, logical, key = self._checked("delete", namespace, key)
        self._note("delete", scope, logical, key, "delete")
        self._store.batch([PutOp(physical, key, None)])

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        if self._blocking:
            return await asyncio.to_thread(self.delete, namespace, key)
        scope, physical, logical, key = self._checked("delete", namespace, key)
        self._note("delete", scope, logical, key, "delete")
        await self._inner_abatch([PutOp(physical, key, None)])

    async def _inner_abatch(self, calls: list[Op]) -> list[Result]:
        try:
            return await self._store.abatch(calls)
        except NotImplementedError:  # sync-only stores, e.g. SqliteStore
            return await asyncio.to_thread(self._store.batch, calls)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        steps, calls = self._prepare(ops)
        results = self._store.batch(calls) if calls else []
        return [self._answer(step, results) for step in steps]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        if self._blocking:
            return await asyncio.to_thread(self.batch, list(ops))
        steps, calls = self._prepare(ops)
        results = await self._inner_abatch(calls) if calls else []
        return [self._answer(step, results) for step in steps]
