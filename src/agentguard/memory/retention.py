"""Keeping memory no longer than the policy says, and erasing it on request.

Retention is enforced in three places: scoped reads treat an item older than its scope's
retention as gone, stores with TTL get the retention as each item's TTL, and `sweep_expired`
deletes expired items physically from any store (run it on a schedule, or use
`RetentionSweeper`). Erasure removes everything of one user, team or tenant, only when the
acting principal may do it, and writes it down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from langgraph.store.base import BaseStore, Item

from agentguard._canonical import digest
from agentguard.context import Principal
from agentguard.errors import ConfigurationError
from agentguard.memory.scoped import (
    AuditWriter,
    ScopeError,
    scope_base,
    scope_of,
    tenant_base,
    timestamp_of,
)
from agentguard.policy.model import MemorySettings

_PAGE = 500
log = logging.getLogger(__name__)


def _delete_all(store: BaseStore, base: tuple[str, ...], keep: Callable[[Item], bool]) -> int:
    """Delete every item under `base` for which `keep` is false; returns how many."""
    deleted = 0
    offset = 0
    while True:
        page = store.search(base, limit=_PAGE, offset=offset)
        doomed = [it for it in page if tuple(it.namespace)[: len(base)] == base and not keep(it)]
        for it in doomed:
            store.delete(tuple(it.namespace), it.key)
        deleted += len(doomed)
        offset += len(page) - len(doomed)  # kept (or foreign) items stay ahead of the window
        if len(page) < _PAGE:
            return deleted


def sweep_expired(
    store: BaseStore,
    settings: MemorySettings,
    *,
    clock: Callable[[], float] = time.time,
) -> int:
    """Delete every item older than its scope's retention, across all tenants."""
    if not settings.retention_days:
        return 0
    now = clock()
    cutoffs = {scope: now - days * 86400.0 for scope, days in settings.retention_days.items()}

    def keep(item: Item) -> bool:
        scope = scope_of(settings.prefix, tuple(item.namespace))
        cutoff = cutoffs.get(scope) if scope is not None else None
        return cutoff is None or timestamp_of(item.updated_at) >= cutoff

    return _delete_all(store, (settings.prefix,), keep)


class RetentionSweeper:
    """Runs `sweep_expired` every `interval_seconds` on a daemon thread, for stores without TTL.

    A failed sweep is kept in `last_error` and tried again at the next interval; reads stay
    correct meanwhile because scoped reads hide expired items anyway.
    """

    def __init__(
        self,
        store: BaseStore,
        settings: MemorySettings,
        *,
        interval_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_seconds <= 0:
            raise ConfigurationError("interval_seconds must be positive")
        self._store = store
        self._settings = settings
        self._interval = interval_seconds
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swept = 0
        self.last_error: BaseException | None = None

    def sweep_now(self) -> int:
        try:
            count = sweep_expired(self._store, self._settings, clock=self._clock)
        except Exception as exc:
            self.last_error = exc
            raise
        self.swept += count
        self.last_error = None
        return count

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sweep_now()
            except Exception:  # kept in last_error; the next round tries again
                log.exception("agentguard: memory retention sweep failed")

    def start(self) -> RetentionSweeper:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="agentguard-retention", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> RetentionSweeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


Target = Literal["user", "team", "tenant"]


def erase_memory(
    store: BaseStore,
    actor: Principal,
    *,
    user: str | None = None,
    team: str | None = None,
    tenant: bool = False,
    settings: MemorySettings | None = None,
    audit: AuditWriter | None = None,
) -> int:
    """Erase one user's, one team's, or the whole tenant's memory in the actor's tenant.

    Anyone may erase their own user memory; everything else needs a role in
    `settings.erase_roles`. Exactly one of `user`, `team`, `tenant=True` names the target.
    Returns how many items were deleted; the erasure is audited (before and after).
    """
    settings = settings if settings is not None else MemorySettings()
    if not isinstance(actor, Principal):
        raise ConfigurationError("erase_memory needs the acting, trusted Principal")
    named = [x for x in (user is not None, team is not None, tenant) if x]
    if len(named) != 1:
        raise ScopeError("name exactly one of user=, team= or tenant=True")
    target: Target
    if user is not None:
        target, ident = "user", user
        physical = scope_base(settings.prefix, actor.tenant, "user", user)
    elif team is not None:
        target, ident = "team", team
        physical = scope_base(settings.prefix, actor.tenant, "team", team)
    else:  # everything under the tenant, not only its shared ("all") memory
        target, ident = "tenant", actor.tenant
        physical = tenant_base(settings.prefix, actor.tenant)
    own = target == "user" and user == actor.user
    privileged = actor.role in settings.erase_roles
    summary = {"op": "erase", "scope": target, "target": digest(ident)}

    def note(result: str, **extra: object) -> None:
        if audit is not None and settings.audit != "none":
            audit(
                dict(
                    event="memory",
                    result=result,
                    reason=extra.pop("reason", None),
                    summary={**summary, **extra},
                    **actor.audit_fields(),
                )
            )

    if not (own or privileged):
        note("refused", reason="erase needs one of the roles " + ", ".join(settings.erase_roles))
        raise ScopeError(
            f"role {actor.role!r} may not erase {target} memory other than one's own; "
            f"needs one of {settings.erase_roles}"
        )
    note("erase")

    # Tenant-wide erasure takes everything under the tenant, including namespaces of users and
    # teams that no longer exist; `scope_of` guards against a foreign prefix sharing the root.
    def keep(item: Item) -> bool:
        return scope_of(settings.prefix, tuple(item.namespace)) is None

    count = _delete_all(store, physical, keep)
    note("erased", count=count)
    return count
