"""Agent memory with boundaries, over any LangGraph `BaseStore`.

The physical namespace is always built from the trusted `Principal`, never from arguments:

- user:   `(prefix, "t", tenant, "u", user, *namespace)`
- team:   `(prefix, "t", tenant, "team", team, *namespace)`
- tenant: `(prefix, "t", tenant, "all", *namespace)`

Identity labels outside `[A-Za-z0-9_-]` are hex-encoded behind a `~` marker (which the plain
alphabet never contains), so the mapping is injective: tenant "a.b" / user "c" and tenant "a" /
user "b.c" can never share a namespace. Callers only ever see their logical namespace back.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast, get_args

from langgraph.store.base import NOT_PROVIDED, BaseStore, Item, SearchItem
from langgraph.store.memory import InMemoryStore

from agentguard.context import Principal
from agentguard.errors import ConfigurationError, GuardError
from agentguard.identity import CallContext, IdentitySource

Scope = Literal["user", "team", "tenant"]
SCOPES: tuple[str, ...] = get_args(Scope)

MAX_LABELS = 8
MAX_LABEL_LEN = 128
MAX_KEY_LEN = 512

_SAFE_IDENT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Dots split labels in SQL backends, `*` is a wildcard in namespace listing, and control or
# format characters are invisible in logs: none of them belongs in a label.
_BAD_LABEL_RE = re.compile(r"[.*\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_BAD_KEY_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

T = TypeVar("T")


class ScopeError(GuardError):
    """A scope the principal does not have, or a namespace/key/value that could escape it."""


def encode_ident(value: str) -> str:
    """One principal id as a namespace label, injectively: plain ids stay readable."""
    if _SAFE_IDENT_RE.match(value):
        return value
    return "~" + value.encode("utf-8").hex()


def _check_labels(namespace: tuple[str, ...], what: str) -> tuple[str, ...]:
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
            raise ScopeError(f"{what} label {label!r} contains '.', '*' or a control character")
    return namespace


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ScopeError("key must be a non-empty string")
    if len(key) > MAX_KEY_LEN:
        raise ScopeError(f"key longer than {MAX_KEY_LEN} characters")
    if _BAD_KEY_RE.search(key):
        raise ScopeError("key contains a control character")
    return key


def _check_value(value: dict[str, Any]) -> dict[str, Any]:
    """A private JSON copy: validates serializability and cuts ties with the caller's dict."""
    if not isinstance(value, dict):
        raise ScopeError("value must be a dict")
    try:
        copied = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ScopeError(f"value is not JSON-serializable: {exc}") from None
    return cast(dict[str, Any], copied)


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScopeError(f"{name} must be an integer >= {minimum}")
    return value


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON data; much faster than `copy.deepcopy` on the hot path."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


class ScopedStore:
    """Memory for one principal: every namespace is prefixed from the trusted principal
    (never from arguments), and every value handed out is a copy."""

    def __init__(
        self, store: BaseStore, principal: Principal, *, prefix: str = "agentguard"
    ) -> None:
        if not isinstance(store, BaseStore):
            raise ConfigurationError("ScopedStore needs a langgraph BaseStore")
        if not isinstance(principal, Principal):
            raise ConfigurationError("ScopedStore needs a trusted Principal")
        if not isinstance(prefix, str) or not _SAFE_IDENT_RE.match(prefix) or prefix == "langgraph":
            raise ConfigurationError("prefix must match [A-Za-z0-9_-]+ and not be 'langgraph'")
        self._store = store
        self._principal = principal
        self._prefix = prefix
        tenant = (prefix, "t", encode_ident(principal.tenant))
        self._bases: dict[str, tuple[str, ...]] = {
            "user": (*tenant, "u", encode_ident(principal.user)),
            "tenant": (*tenant, "all"),
        }
        if principal.team is not None:
            self._bases["team"] = (*tenant, "team", encode_ident(principal.team))

    @classmethod
    def for_call(
        cls,
        store: BaseStore,
        source: IdentitySource,
        ctx: CallContext,
        *,
        prefix: str = "agentguard",
    ) -> ScopedStore:
        """Resolve the principal from trusted context, so a door never has to pick one."""
        return cls(store, source.resolve(ctx), prefix=prefix)

    @property
    def principal(self) -> Principal:
        return self._principal

    # ----------------------------------------------------------------- mapping

    def _base(self, scope: Scope) -> tuple[str, ...]:
        if scope not in SCOPES:
            raise ScopeError(f"unknown scope {scope!r}; expected one of {SCOPES}")
        base = self._bases.get(scope)
        if base is None:
            raise ScopeError(f"principal has no {scope!r}; cannot use {scope!r} memory")
        return base

    def _physical(self, scope: Scope, namespace: tuple[str, ...]) -> tuple[str, ...]:
        return self._base(scope) + _check_labels(namespace, "namespace")

    @staticmethod
    def _logical(base: tuple[str, ...], namespace: tuple[str, ...]) -> tuple[str, ...] | None:
        """The caller's view of a physical namespace, or None if it lies outside the scope."""
        if tuple(namespace[: len(base)]) != base:
            return None
        return tuple(namespace[len(base) :])

    def _get_result(
        self, scope: Scope, namespace: tuple[str, ...], key: str, item: Item | None
    ) -> Item | None:
        base = self._base(scope)
        if item is None or tuple(item.namespace) != base + namespace or item.key != key:
            return None  # defence in depth: a backend answering for another namespace
        return Item(
            value=_copy_json(item.value),
            key=item.key,
            namespace=namespace,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )

    def _search_results(self, base: tuple[str, ...], items: list[SearchItem]) -> list[SearchItem]:
        out: list[SearchItem] = []
        for item in items:
            logical = self._logical(base, tuple(item.namespace))
            if logical is None:
                continue  # never hand out another scope's data, whatever the backend says
            out.append(
                SearchItem(
                    namespace=logical,
                    key=item.key,
                    value=_copy_json(item.value),
                    created_at=item.created_at,
                    updated_at=item.updated_at,
                    score=item.score,
                )
            )
        return out

    def _namespace_results(
        self, base: tuple[str, ...], namespaces: list[tuple[str, ...]]
    ) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for ns in namespaces:
            logical = self._logical(base, tuple(ns))
            if logical is not None:
                out.append(logical)
        return out

    def _memory_namespaces(
        self, physical: tuple[str, ...], depth: int | None, limit: int, offset: int
    ) -> list[tuple[str, ...]]:
        """`list_namespaces` for InMemoryStore, derived from the items themselves.

        InMemoryStore lists every namespace anything (even a `get` or `delete`) ever touched,
        so a teammate's probe would show up as a namespace; the SQL stores list only
        namespaces that hold items. Deriving the list from items gives the SQL behaviour.
        """
        found: set[tuple[str, ...]] = set()
        page = 1000
        start = 0
        while True:
            batch = self._store.search(physical, limit=page, offset=start)
            for item in batch:
                ns = tuple(item.namespace)
                found.add(ns if depth is None else ns[:depth])
            if len(batch) < page:
                break
            start += page
        return sorted(found)[offset : offset + limit]

    def _ttl(self, ttl: float | None) -> Any:
        if ttl is None:
            return NOT_PROVIDED  # the store's default TTL (if any) applies
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise ScopeError("ttl must be a number of minutes")
        if not math.isfinite(ttl) or ttl <= 0:
            raise ScopeError("ttl must be a positive, finite number of minutes")
        if not self._store.supports_ttl:
            # Memory meant to expire that silently would not is a gap: refuse instead.
            raise ConfigurationError(f"{type(self._store).__name__} does not support TTL")
        return ttl

    def _search_args(
        self,
        scope: Scope,
        namespace_prefix: tuple[str, ...],
        filter: dict[str, Any] | None,
        limit: int,
        offset: int,
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        base = self._base(scope)
        _check_labels(namespace_prefix, "namespace_prefix")
        if filter is not None and not isinstance(filter, dict):
            raise ScopeError("filter must be a dict")
        _check_count(limit, "limit", 0)
        _check_count(offset, "offset", 0)
        return base, base + namespace_prefix

    def _list_args(
        self,
        scope: Scope,
        prefix: tuple[str, ...],
        max_depth: int | None,
        limit: int,
        offset: int,
    ) -> tuple[tuple[str, ...], tuple[str, ...], int | None]:
        base = self._base(scope)
        _check_labels(prefix, "prefix")
        if max_depth is not None:
            max_depth = len(base) + _check_count(max_depth, "max_depth", 1)
        _check_count(limit, "limit", 0)
        _check_count(offset, "offset", 0)
        return base, base + prefix, max_depth

    # ----------------------------------------------------------------- sync API

    def put(
        self,
        scope: Scope,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None = None,
    ) -> None:
        """Store a private copy of `value`; `ttl` in minutes (SQL backends only)."""
        physical = self._physical(scope, namespace)
        self._store.put(physical, _check_key(key), _check_value(value), ttl=self._ttl(ttl))

    def get(self, scope: Scope, namespace: tuple[str, ...], key: str) -> Item | None:
        """A deep copy of the item, with its logical namespace, or None."""
        physical = self._physical(scope, namespace)
        item = self._store.get(physical, _check_key(key))
        return self._get_result(scope, namespace, key, item)

    def delete(self, scope: Scope, namespace: tuple[str, ...], key: str) -> None:
        self._store.delete(self._physical(scope, namespace), _check_key(key))

    def search(
        self,
        scope: Scope,
        namespace_prefix: tuple[str, ...] = (),
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[SearchItem]:
        """Copies of the matching items, only ever from within `scope`."""
        base, physical = self._search_args(scope, namespace_prefix, filter, limit, offset)
        items = self._store.search(physical, query=query, filter=filter, limit=limit, offset=offset)
        return self._search_results(base, items)

    def list_namespaces(
        self,
        scope: Scope,
        *,
        prefix: tuple[str, ...] = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """Namespaces within `scope`, without the internal (identity-bearing) prefix."""
        base, physical, depth = self._list_args(scope, prefix, max_depth, limit, offset)
        if isinstance(self._store, InMemoryStore):
            found = self._memory_namespaces(physical, depth, limit, offset)
        else:
            found = self._store.list_namespaces(
                prefix=physical, max_depth=depth, limit=limit, offset=offset
            )
        return self._namespace_results(base, found)

    def erase_user(self) -> int:
        """Delete all of this user's private memory (right to erasure); returns how many."""
        base = self._base("user")
        count = 0
        while True:
            batch = self._store.search(base, limit=100)
            mine = [it for it in batch if self._logical(base, tuple(it.namespace)) is not None]
            if not mine:
                return count
            for it in mine:
                self._store.delete(tuple(it.namespace), it.key)
            count += len(mine)

    # ----------------------------------------------------------------- async API

    async def _run(self, coro: Callable[[], Awaitable[T]], sync: Callable[[], T]) -> T:
        """The store's async path, or its sync path on a thread for sync-only stores
        (e.g. `SqliteStore`, whose `abatch` raises)."""
        try:
            return await coro()
        except NotImplementedError:
            return await asyncio.to_thread(sync)

    async def aput(
        self,
        scope: Scope,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None = None,
    ) -> None:
        physical = self._physical(scope, namespace)
        key, data, t = _check_key(key), _check_value(value), self._ttl(ttl)
        await self._run(
            lambda: self._store.aput(physical, key, data, ttl=t),
            lambda: self._store.put(physical, key, data, ttl=t),
        )

    async def aget(self, scope: Scope, namespace: tuple[str, ...], key: str) -> Item | None:
        physical = self._physical(scope, namespace)
        _check_key(key)
        item = await self._run(
            lambda: self._store.aget(physical, key), lambda: self._store.get(physical, key)
        )
        return self._get_result(scope, namespace, key, item)

    async def adelete(self, scope: Scope, namespace: tuple[str, ...], key: str) -> None:
        physical = self._physical(scope, namespace)
        _check_key(key)
        await self._run(
            lambda: self._store.adelete(physical, key), lambda: self._store.delete(physical, key)
        )

    async def asearch(
        self,
        scope: Scope,
        namespace_prefix: tuple[str, ...] = (),
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[SearchItem]:
        base, physical = self._search_args(scope, namespace_prefix, filter, limit, offset)
        kwargs: dict[str, Any] = {
            "query": query,
            "filter": filter,
            "limit": limit,
            "offset": offset,
        }
        items = await self._run(
            lambda: self._store.asearch(physical, **kwargs),
            lambda: self._store.search(physical, **kwargs),
        )
        return self._search_results(base, items)

    async def alist_namespaces(
        self,
        scope: Scope,
        *,
        prefix: tuple[str, ...] = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        base, physical, depth = self._list_args(scope, prefix, max_depth, limit, offset)
        kwargs: dict[str, Any] = {
            "prefix": physical,
            "max_depth": depth,
            "limit": limit,
            "offset": offset,
        }
        if isinstance(self._store, InMemoryStore):
            return self._namespace_results(
                base, self._memory_namespaces(physical, depth, limit, offset)
            )
        found = await self._run(
            lambda: self._store.alist_namespaces(**kwargs),
            lambda: self._store.list_namespaces(**kwargs),
        )
        return self._namespace_results(base, found)
