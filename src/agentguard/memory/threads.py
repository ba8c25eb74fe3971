"""Threads belong to their owners: a checkpointer wrapper for in-process hosts.

`OwnedCheckpointer` wraps any LangGraph `BaseCheckpointSaver` (in-memory, SQLite, Postgres, sync
or async) and binds every thread to the principal that created it, `(tenant, user)`. Reading
(`get_state`, `get_state_history`, `get_tuple`, `list`), resuming (`invoke`/`stream` on an
existing thread, `Command(resume=...)`) and forking (`checkpoint_id` of an earlier checkpoint,
`update_state`, `copy_thread`) someone else's thread raises `ThreadAccessError` before the inner
saver returns anything, so no node runs on it.

Where identity comes from, per call (verified against langgraph 1.2):

- during a run (`invoke`/`stream`/`ainvoke`/`astream`, subgraphs included) every checkpointer
  call receives the run's `Runtime` in `config["configurable"]["__pregel_runtime"]`, so the
  principal comes from the run `context=`;
- `get_state`, `get_state_history`, `update_state` (and their async forms), `delete_thread`,
  `copy_thread`, `prune` carry no runtime: the host binds the principal with `acting_for(...)`.

No principal → `IdentityError`, and nothing is read or written.

Ownership is stamped into each checkpoint's metadata under `OWNER_TENANT_KEY`/`OWNER_USER_KEY`,
overwritten on every `put`: a `config["metadata"]` or `configurable` entry with the same keys can
neither claim nor hand over a thread (savers only merge config keys the metadata lacks).

Guarantees and limits:

- A checkpoint stamped for one principal is never returned to another: besides the per-thread
  check, every tuple read back is checked against its own stamp.
- A thread's owner is the one stamped on its newest checkpoint (any namespace: subgraph
  checkpoints share the thread's owner). Owners never change, so a positive lookup is cached
  per process; "no such thread" is never cached.
- Creation race: the saver API has no compare-and-set, so two principals that create the same
  new thread id at the same moment can both write a first checkpoint. After writing the first
  checkpoint of a thread it believed new, the wrapper re-reads the thread; if anything there
  carries another stamp it raises, so at least one racer is always refused (possibly both), and
  neither ever reads the other's checkpoints (race leftovers are skipped in listings). The run
  of the refused racer may already have started on its own input. Use unguessable thread ids
  (uuid4) and the race has nothing to race for.
- Deleting a thread forgets its cached owner in this process only. If another process deletes
  a thread and a different principal re-creates the same id, this process's cache may still
  name the old owner: reads stay safe (stamps are checked on every tuple), but a direct `put` by
  the old owner could land in the new thread. Do not reuse deleted thread ids across owners.
- Threads written before the wrapper (no stamp) are refused, unless `adopt_unowned=True`: then
  the first principal that touches one holds it in this process and owns it for good with its
  first write (stamped). Until that write another process could let another principal adopt it;
  cross-thread `list(None, ...)` never lists unstamped threads.
- A refusal says only that the thread belongs to someone else, never who.
"""

from __future__ import annotations

import builtins
import inspect
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from agentguard.context import Principal
from agentguard.errors import ConfigurationError, GuardError, IdentityError
from agentguard.identity import CallContext, FromContext, IdentitySource

__all__ = ["OWNER_TENANT_KEY", "OWNER_USER_KEY", "OwnedCheckpointer", "ThreadAccessError"]

OWNER_TENANT_KEY = "agentguard_owner_tenant"
OWNER_USER_KEY = "agentguard_owner_user"

# LangGraph puts the run's Runtime here for every checkpointer call made during a run.
RUNTIME_KEY = "__pregel_runtime"

Owner = tuple[str, str]
Reason = Literal["foreign", "unowned", "contested", "no_thread"]

# A stamp that is present but malformed: equal to no principal (idents cannot hold NUL).
_BROKEN: Owner = ("\x00", "\x00")
# How many checkpoints of a thread just created are re-read to detect a creation race.
_CONFIRM_LIMIT = 64
_CACHE_SIZE = 65_536

_MESSAGES: dict[Reason, str] = {
    "foreign": "belongs to another principal",
    "unowned": (
        "has checkpoints written without an owner (pass adopt_unowned=True to let the first "
        "principal that uses it claim it)"
    ),
    "contested": "was created at the same time by another principal; use a new thread id",
    "no_thread": "is missing: the config has no configurable.thread_id",
}


class ThreadAccessError(GuardError):
    """A thread of another principal was read, resumed, forked or deleted: nothing ran.

    The message names the thread (the caller supplied it) and the operation, never the owner.
    """

    def __init__(self, thread_id: Any, operation: str, reason: Reason) -> None:
        self.thread_id = None if thread_id is None else str(thread_id)
        self.operation = operation
        self.reason: Reason = reason
        name = "the thread" if thread_id is None else f"thread {str(thread_id)!r}"
        super().__init__(f"{operation} refused: {name} {_MESSAGES[reason]}")


def _stamp_of(metadata: Mapping[str, Any] | None) -> Owner | None:
    """The owner stamped in checkpoint metadata; None if unstamped, `_BROKEN` if malformed."""
    if not metadata:
        return None
    tenant = metadata.get(OWNER_TENANT_KEY)
    user = metadata.get(OWNER_USER_KEY)
    if tenant is None and user is None:
        return None
    if isinstance(tenant, str) and isinstance(user, str) and tenant and user:
        return (tenant, user)
    return _BROKEN


def _owner(principal: Principal) -> Owner:
    return (principal.tenant, principal.user)


def _stamped(metadata: CheckpointMetadata, owner: Owner) -> CheckpointMetadata:
    """Always overwrite: the stamp comes from the trusted principal, never from the caller."""
    out: dict[str, Any] = dict(metadata)
    out[OWNER_TENANT_KEY], out[OWNER_USER_KEY] = owner
    return cast(CheckpointMetadata, out)


def _thread_config(thread_id: Any) -> RunnableConfig:
    """Every namespace of one thread (no checkpoint_ns: subgraphs included)."""
    return {"configurable": {"thread_id": thread_id}}


def _cache_key(thread_id: Any) -> tuple[str, str]:
    # Keep `1` and `"1"` apart: some savers treat them as two threads.
    return (type(thread_id).__name__, str(thread_id))


def _thread_id_of(config: RunnableConfig | None, operation: str) -> Any:
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None or thread_id == "":
        raise ThreadAccessError(None, operation, "no_thread")
    return thread_id


class _OwnerCache:
    """Thread → owner, learned from stamps. Bounded; forgetting only costs a lookup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: OrderedDict[tuple[str, str], Owner] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Owner | None:
        with self._lock:
            owner = self._owners.get(key)
            if owner is not None:
                self._owners.move_to_end(key)
            return owner

    def claim(self, key: tuple[str, str], owner: Owner) -> Owner:
        """Set if absent, atomically; returns whoever holds the thread now."""
        with self._lock:
            held = self._owners.setdefault(key, owner)
            self._owners.move_to_end(key)
            while len(self._owners) > _CACHE_SIZE:
                self._owners.popitem(last=False)
            return held

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._owners.pop(key, None)


class OwnedCheckpointer(BaseCheckpointSaver[Any]):
    """A checkpointer whose threads belong to the principal that created them.

    `saver` is the real storage (call its `setup()` yourself); `identity` turns each call's
    config into a Principal (default `FromContext()`: the run `context=` or `acting_for`);
    `adopt_unowned` lets the first principal claim threads written before the wrapper.
    """

    def __init__(
        self,
        saver: BaseCheckpointSaver[Any],
        *,
        identity: IdentitySource | None = None,
        adopt_unowned: bool = False,
    ) -> None:
        if not isinstance(saver, BaseCheckpointSaver):
            raise ConfigurationError("OwnedCheckpointer wraps a LangGraph BaseCheckpointSaver")
        if identity is not None and not isinstance(identity, IdentitySource):
            raise ConfigurationError("identity must be an IdentitySource (has .resolve(ctx))")
        super().__init__(serde=saver.serde)
        self.saver = saver
        self.identity: IdentitySource = identity if identity is not None else FromContext()
        self.adopt_unowned = adopt_unowned
        self._owners = _OwnerCache()
        self._put_writes_path = _accepts_task_path(saver.put_writes)
        self._aput_writes_path = _accepts_task_path(saver.aput_writes)

    # ------------------------------------------------------------------ identity, decisions

    def principal_for(self, config: RunnableConfig | None) -> Principal:
        """The principal a checkpointer call acts for, from the run's Runtime or `acting_for`."""
        configurable = (config or {}).get("configurable") or {}
        runtime = configurable.get(RUNTIME_KEY)
        ctx = CallContext.from_langgraph(runtime, config=config)
        try:
            principal = self.identity.resolve(ctx)
        except IdentityError:
            raise
        except Exception as exc:  # an identity source that breaks must not open the door
            raise IdentityError(
                f"identity source failed: {type(exc).__name__}", missing=["principal"]
            ) from exc
        if not isinstance(principal, Principal):
            raise IdentityError("identity source returned no Principal", missing=["principal"])
        return principal

    def _settle(
        self, thread_id: Any, newest: CheckpointTuple | None, me: Owner, operation: str
    ) -> bool:
        """Decide from the thread's newest checkpoint; True when the thread does not exist."""
        if newest is None:
            return True  # never cached: whoever writes first stamps it
        key = _cache_key(thread_id)
        stamp = _stamp_of(newest.metadata)
        if stamp is None:
            if not self.adopt_unowned:
                raise ThreadAccessError(thread_id, operation, "unowned")
            stamp = self._owners.claim(key, me)
        elif stamp is not _BROKEN:
            stamp = self._owners.claim(key, stamp)
        if stamp != me:
            raise ThreadAccessError(thread_id, operation, "foreign")
        return False

    def _cached(self, thread_id: Any, me: Owner, operation: str) -> bool:
        """True when the owner is known here (and is `me`); raises when it is someone else."""
        held = self._owners.get(_cache_key(thread_id))
        if held is None:
            return False
        if held != me:
            raise ThreadAccessError(thread_id, operation, "foreign")
        return True

    def _check_tuple(self, tup: CheckpointTuple, thread_id: Any, me: Owner, op: str) -> None:
        """The stamp on what is returned wins over any cached belief."""
        stamp = _stamp_of(tup.metadata)
        if stamp is not None and stamp != me:
            self._owners.forget(_cache_key(thread_id))
            raise ThreadAccessError(thread_id, op, "foreign")

    def _confirm(self, thread_id: Any, tuples: Sequence[CheckpointTuple], me: Owner) -> None:
        """After creating a thread: anything stamped otherwise means a creation race."""
        if any(_stamp_of(t.metadata) != me for t in tuples):
            raise ThreadAccessError(thread_id, "write", "contested")
        self._owners.claim(_cache_key(thread_id), me)

    # ----------------------------------------------------------------------- sync lookups

    def _authorize(self, thread_id: Any, me: Owner, operation: str) -> bool:
        if self._cached(thread_id, me, operation):
            return False
        newest = _first(self.saver.list(_thread_config(thread_id), limit=1))
        return self._settle(thread_id, newest, me, operation)

    def _require_stamped(self, thread_id: Any, me: Owner, operation: str) -> None:
        """Fresh lookup, no cache, no adoption: the newest checkpoint must carry `me`."""
        newest = _first(self.saver.list(_thread_config(thread_id), limit=1))
        if newest is not None and _stamp_of(newest.metadata) != me:
            reason: Reason = "unowned" if _stamp_of(newest.metadata) is None else "foreign"
            raise ThreadAccessError(thread_id, operation, reason)

    def _after_create(self, thread_id: Any, me: Owner) -> None:
        tuples = list(self.saver.list(_thread_config(thread_id), limit=_CONFIRM_LIMIT))
        self._confirm(thread_id, tuples, me)

    # ------------------------------------------------------------------------- sync API

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint, if the caller owns its thread (or the thread does not exist)."""
        me = _owner(self.principal_for(config))
        thread_id = _thread_id_of(config, "read")
        self._authorize(thread_id, me, "read")
        tup = self.saver.get_tuple(config)
        if tup is not None:
            self._check_tuple(tup, thread_id, me, "read")
        return tup

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """One owned thread's checkpoints, or (config None) only the caller's own threads.

        Identity and the thread check are taken now, not when iteration starts.
        """
        me = _owner(self.principal_for(config))
        if config is None:
            owned = {**(filter or {}), OWNER_TENANT_KEY: me[0], OWNER_USER_KEY: me[1]}
            found = self.saver.list(None, filter=owned, before=before, limit=limit)
            return (t for t in found if _stamp_of(t.metadata) == me)
        thread_id = _thread_id_of(config, "read")
        self._authorize(thread_id, me, "read")
        flt = _without_owner_keys(filter)
        found = self.saver.list(config, filter=flt, before=before, limit=limit)
        return (t for t in found if _stamp_of(t.metadata) in (None, me))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Write a checkpoint stamped with the caller, into a new or an owned thread."""
        me = _owner(self.principal_for(config))
        thread_id = _thread_id_of(config, "write")
        created = self._authorize(thread_id, me, "write")
        result = self.saver.put(config, checkpoint, _stamped(metadata, me), new_versions)
        if created:
            self._after_create(thread_id, me)
        return result

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Pending writes (resume values, node outputs) only into an owned thread."""
        me = _owner(self.principal_for(config))
        self._authorize(_thread_id_of(config, "write"), me, "write")
        if self._put_writes_path:
            self.saver.put_writes(config, writes, task_id, task_path)
        else:
            self.saver.put_writes(config, writes, task_id)

    def delete_thread(self, thread_id: str) -> None:
        """Only the owner deletes; the principal comes from `acting_for`."""
        me = _owner(self.principal_for(None))
        self._authorize(thread_id, me, "delete")
        self.saver.delete_thread(thread_id)
        self._owners.forget(_cache_key(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Only when every checkpoint of those runs is stamped for the caller."""
        me = _owner(self.principal_for(None))
        for run_id in run_ids:
            for tup in self.saver.list(None, filter={"run_id": run_id}):
                if _stamp_of(tup.metadata) != me:
                    raise ThreadAccessError(_thread_of(tup), "delete", "foreign")
        self.saver.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """A fork into another thread id: the source must be stamped for the caller, and the
        target new or the caller's own (the copy carries the source's stamps)."""
        me = _owner(self.principal_for(None))
        self._authorize(source_thread_id, me, "copy")
        self._require_stamped(source_thread_id, me, "copy")
        created = self._authorize(target_thread_id, me, "copy")
        self.saver.copy_thread(source_thread_id, target_thread_id)
        if created:
            self._after_create(target_thread_id, me)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Only the caller's own threads."""
        me = _owner(self.principal_for(None))
        for thread_id in thread_ids:
            self._authorize(thread_id, me, "prune")
        self.saver.prune(thread_ids, strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Channel history is thread data: same check as a read."""
        me = _owner(self.principal_for(config))
        self._authorize(_thread_id_of(config, "read"), me, "read")
        return self.saver.get_delta_channel_history(config=config, channels=channels)

    # ----------------------------------------------------------------------- async lookups

    async def _aauthorize(self, thread_id: Any, me: Owner, operation: str) -> bool:
        if self._cached(thread_id, me, operation):
            return False
        newest = await _afirst(self.saver.alist(_thread_config(thread_id), limit=1))
        return self._settle(thread_id, newest, me, operation)

    async def _arequire_stamped(self, thread_id: Any, me: Owner, operation: str) -> None:
        newest = await _afirst(self.saver.alist(_thread_config(thread_id), limit=1))
        if newest is not None and _stamp_of(newest.metadata) != me:
            reason: Reason = "unowned" if _stamp_of(newest.metadata) is None else "foreign"
            raise ThreadAccessError(thread_id, operation, reason)

    async def _aafter_create(self, thread_id: Any, me: Owner) -> None:
        tuples = [
            t async for t in self.saver.alist(_thread_config(thread_id), limit=_CONFIRM_LIMIT)
        ]
        self._confirm(thread_id, tuples, me)

    # ------------------------------------------------------------------------ async API

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async `get_tuple`."""
        me = _owner(self.principal_for(config))
        thread_id = _thread_id_of(config, "read")
        await self._aauthorize(thread_id, me, "read")
        tup = await self.saver.aget_tuple(config)
        if tup is not None:
            self._check_tuple(tup, thread_id, me, "read")
        return tup

    def alist(  # a plain def: identity is taken at call time, like `list`
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async `list`: the principal is resolved when called, the thread checked on first
        iteration."""
        me = _owner(self.principal_for(config))
        thread_id = None if config is None else _thread_id_of(config, "read")
        return self._alist(config, thread_id, me, filter, before, limit)

    async def _alist(
        self,
        config: RunnableConfig | None,
        thread_id: Any,
        me: Owner,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> AsyncIterator[CheckpointTuple]:
        if config is None:
            owned = {**(filter or {}), OWNER_TENANT_KEY: me[0], OWNER_USER_KEY: me[1]}
            async for t in self.saver.alist(None, filter=owned, before=before, limit=limit):
                if _stamp_of(t.metadata) == me:
                    yield t
            return
        await self._aauthorize(thread_id, me, "read")
        flt = _without_owner_keys(filter)
        async for t in self.saver.alist(config, filter=flt, before=before, limit=limit):
            if _stamp_of(t.metadata) in (None, me):
                yield t

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async `put`."""
        me = _owner(self.principal_for(config))
        thread_id = _thread_id_of(config, "write")
        created = await self._aauthorize(thread_id, me, "write")
        result = await self.saver.aput(config, checkpoint, _stamped(metadata, me), new_versions)
        if created:
            await self._aafter_create(thread_id, me)
        return result

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async `put_writes`."""
        me = _owner(self.principal_for(config))
        await self._aauthorize(_thread_id_of(config, "write"), me, "write")
        if self._aput_writes_path:
            await self.saver.aput_writes(config, writes, task_id, task_path)
        else:
            await self.saver.aput_writes(config, writes, task_id)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async `delete_thread`."""
        me = _owner(self.principal_for(None))
        await self._aauthorize(thread_id, me, "delete")
        await self.saver.adelete_thread(thread_id)
        self._owners.forget(_cache_key(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async `delete_for_runs`."""
        me = _owner(self.principal_for(None))
        for run_id in run_ids:
            async for tup in self.saver.alist(None, filter={"run_id": run_id}):
                if _stamp_of(tup.metadata) != me:
                    raise ThreadAccessError(_thread_of(tup), "delete", "foreign")
        await self.saver.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async `copy_thread`."""
        me = _owner(self.principal_for(None))
        await self._aauthorize(source_thread_id, me, "copy")
        await self._arequire_stamped(source_thread_id, me, "copy")
        created = await self._aauthorize(target_thread_id, me, "copy")
        await self.saver.acopy_thread(source_thread_id, target_thread_id)
        if created:
            await self._aafter_create(target_thread_id, me)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async `prune`."""
        me = _owner(self.principal_for(None))
        for thread_id in thread_ids:
            await self._aauthorize(thread_id, me, "prune")
        await self.saver.aprune(thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async `get_delta_channel_history`."""
        me = _owner(self.principal_for(config))
        await self._aauthorize(_thread_id_of(config, "read"), me, "read")
        return await self.saver.aget_delta_channel_history(config=config, channels=channels)

    # ------------------------------------------------------------------- pass-through

    @property
    def config_specs(self) -> builtins.list[Any]:
        """The inner saver's configurable fields."""
        return list(self.saver.config_specs)

    def get_next_version(self, current: Any, channel: None) -> Any:
        """Version numbering is the storage's business (its format must not change)."""
        return self.saver.get_next_version(current, channel)

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> OwnedCheckpointer:
        """`compile()` calls this: the allowlist must reach the inner saver's serializer, and
        the clone shares this wrapper's owner cache (same storage, same owners)."""
        inner = self.saver.with_allowlist(extra_allowlist)
        if inner is self.saver:
            return self
        clone = OwnedCheckpointer(inner, identity=self.identity, adopt_unowned=self.adopt_unowned)
        clone._owners = self._owners
        return clone


def _without_owner_keys(filter: dict[str, Any] | None) -> dict[str, Any] | None:
    """Within one owned thread the owner is already settled; a filter on it only hides rows."""
    if not filter:
        return filter
    return {k: v for k, v in filter.items() if k not in (OWNER_TENANT_KEY, OWNER_USER_KEY)}


def _thread_of(tup: CheckpointTuple) -> Any:
    return (tup.config.get("configurable") or {}).get("thread_id")


def _accepts_task_path(method: Any) -> bool:
    try:
        return "task_path" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _first(items: Iterator[CheckpointTuple]) -> CheckpointTuple | None:
    """First item, closing the saver's generator at once (some hold a connection lock)."""
    try:
        return next(iter(items), None)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


async def _afirst(items: AsyncIterator[CheckpointTuple]) -> CheckpointTuple | None:
    """Async `_first`."""
    try:
        async for item in items:
            return item
        return None
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
