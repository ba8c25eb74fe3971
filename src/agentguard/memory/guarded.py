"""A store that scopes itself to whoever the current call acts for.

A graph is compiled with one store and serves many principals, so the scope has to be decided
per operation, from trusted surroundings only: the run the operation happens in (its context or
the server's authenticated user), an `acting_for()` binding, or, on a LangGraph server, the
user its auth handler authenticated for the HTTP store API. Nothing known: nothing happens.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from langchain_core.runnables.config import var_child_runnable_config
from langgraph.store.base import BaseStore, Op, Result

from agentguard.errors import ConfigurationError
from agentguard.identity import CallContext, FromContext, IdentitySource
from agentguard.memory.scoped import AuditWriter, ScopedStore, StoreView
from agentguard.policy.model import MemorySettings, Policy


def _server_auth_context() -> CallContext | None:
    """The user a LangGraph server's auth handler authenticated for this request, if any."""
    # Only a running server has loaded its utilities; importing them elsewhere reads the
    # server's configuration (and fails without it), so never import, only look.
    utils = sys.modules.get("langgraph_api.utils")
    get_auth_ctx = getattr(utils, "get_auth_ctx", None)
    if get_auth_ctx is None:
        return None
    auth = get_auth_ctx()
    if auth is None:
        return CallContext(on_server=True)
    return CallContext(server_user=auth.user, on_server=True)


def current_call_context() -> CallContext:
    """What is known, right now, about who the current operation runs for."""
    config = var_child_runnable_config.get()  # what `get_config()` reads, without raising
    if config is not None:
        runtime = (config.get("configurable") or {}).get("__pregel_runtime")
        ctx = CallContext.from_langgraph(runtime, config=config)
        if ctx.server_user is None:
            # A server with a custom `http.app` sets a partial config on every request; the
            # authenticated user is then only in the server's auth context.
            server = _server_auth_context()
            if server is not None and server.server_user is not None:
                return server
        return ctx
    return _server_auth_context() or CallContext()


def _blocks(audit: AuditWriter | None) -> bool:
    """A guard's `record_event` blocks when its audit log does (SQLite, files)."""
    owner = getattr(audit, "__self__", None)
    return bool(getattr(owner, "blocking", False))


def _settings_of(source: MemorySettings | Policy | None) -> MemorySettings:
    if source is None:
        return MemorySettings()
    if isinstance(source, Policy):
        return source.memory
    if isinstance(source, MemorySettings):
        return source
    raise ConfigurationError("settings must be a Policy or MemorySettings")


class GuardedStore(StoreView):
    """Compile a graph with it (`graph.compile(store=GuardedStore(...))`, or return it from a
    `langgraph.json` store factory) and every node and tool sees only the memory of the
    principal it runs for.

    `identity` decides who that is (default `FromContext()`; use `FromServerAuth()` behind a
    LangGraph server). `audit` receives one event per read and write (e.g. a guard's
    `record_event`); `settings` is a `Policy` or its `memory` section. `blocking` says whether
    an operation may block (a SQLite or file audit log, a sync store): async callers then run
    it on a worker thread, as LangGraph servers require; by default it follows the guard whose
    `record_event` is the audit writer.
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        identity: IdentitySource | None = None,
        settings: MemorySettings | Policy | None = None,
        audit: AuditWriter | None = None,
        blocking: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(store, BaseStore):
            raise ConfigurationError("GuardedStore needs a langgraph BaseStore")
        if getattr(store, "agentguard_scoped", False):
            raise ConfigurationError("this store is already scoped; do not scope it twice")
        identity = identity if identity is not None else FromContext()
        if not isinstance(identity, IdentitySource):
            raise ConfigurationError("identity must be an IdentitySource (e.g. FromServerAuth())")
        self._store = store
        self._identity = identity
        self._settings = _settings_of(settings)
        self._audit = audit
        self._blocking = _blocks(audit) if blocking is None else blocking
        self._clock = clock

    @property
    def inner(self) -> BaseStore:
        return self._store

    def scoped(self, ctx: CallContext | None = None) -> ScopedStore:
        """The view for the principal of `ctx` (default: the current call); raises
        `IdentityError` when nobody trusted can be named."""
        ctx = ctx if ctx is not None else current_call_context()
        principal = self._identity.resolve(ctx)
        return ScopedStore(
            self._store,
            principal,
            settings=self._settings,
            audit=self._audit,
            context=ctx,
            blocking=self._blocking,
            clock=self._clock,
        )

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self.scoped().batch(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self.scoped().abatch(ops)

    def __getattr__(self, name: str) -> Any:
        # Lifecycle helpers of the backend (setup, TTL sweepers) stay reachable; data access
        # does not, because it only exists through `batch`.
        if name in ("setup", "asetup", "start_ttl_sweeper", "stop_ttl_sweeper", "sweep_ttl"):
            return getattr(self._store, name)
        raise AttributeError(name)
