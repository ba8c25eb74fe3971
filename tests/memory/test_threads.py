"""OwnedCheckpointer: a LangGraph thread belongs to the principal that created it.

Real graphs, real savers (in-memory, SQLite, the suite's PostgreSQL; async SQLite and Postgres),
each test named for the attack it stops.
"""

from __future__ import annotations

import contextlib
import operator
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from agentguard import Principal
from agentguard.errors import GuardError, IdentityError
from agentguard.identity import CallContext, acting_for
from agentguard.memory.threads import (
    OWNER_TENANT_KEY,
    OWNER_USER_KEY,
    OwnedCheckpointer,
    ThreadAccessError,
)

from ..services import fresh_schema

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.services)]
ASYNC_BACKENDS = ["aiosqlite", pytest.param("apostgres", marks=pytest.mark.services)]


def who(tenant: str, user: str) -> Principal:
    return Principal(tenant=tenant, user=user, role="member")


ALICE = who("acme", "alice")
BOB = who("acme", "bob")  # a teammate: same tenant
ALICE_GLOBEX = who("globex", "alice")  # same user id, another tenant

SIDE: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_side_effects() -> None:
    SIDE.clear()


class State(TypedDict, total=False):
    count: Annotated[int, operator.add]
    trail: Annotated[list[str], operator.add]


def mark(p: Principal) -> str:
    return f"{p.tenant}/{p.user}"


def bump(state: State) -> State:
    SIDE["bump"] += 1
    return {"count": 1}


def confirm(state: State) -> State:
    answer = interrupt("send the quarterly report?")
    SIDE["sent"] += 1  # the side effect a resume would trigger
    return {"trail": [f"answer:{answer}"]}


def counter_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    g = StateGraph(State)
    g.add_node("bump", bump)
    g.add_edge(START, "bump")
    g.add_edge("bump", END)
    return g.compile(checkpointer=saver)


def approval_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    g = StateGraph(State)
    g.add_node("bump", bump)
    g.add_node("confirm", confirm)
    g.add_edge(START, "bump")
    g.add_edge("bump", "confirm")
    g.add_edge("confirm", END)
    return g.compile(checkpointer=saver)


def nested_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    sub = StateGraph(State)
    sub.add_node("bump", bump)
    sub.add_node("confirm", confirm)
    sub.add_edge(START, "bump")
    sub.add_edge("bump", "confirm")
    g = StateGraph(State)
    g.add_node("sub", sub.compile())
    g.add_edge(START, "sub")
    g.add_edge("sub", END)
    return g.compile(checkpointer=saver)


def cfg(thread_id: str, **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, **extra}}


def ctx(p: Principal) -> dict[str, Any]:
    return {"principal": p}


def new_thread() -> str:
    return f"th-{uuid.uuid4().hex[:12]}"


def own_marks_only(values: dict[str, Any], p: Principal) -> bool:
    return all(e == mark(p) or e.startswith("answer:") for e in values.get("trail", []))


def stored(inner: BaseCheckpointSaver[Any], thread_id: str | None = None) -> list[Any]:
    """Straight from the storage, around the wrapper."""
    return list(inner.list(cfg(thread_id) if thread_id else None))


@contextlib.contextmanager
def open_saver(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BaseCheckpointSaver[Any]]:
    if kind == "memory":
        yield InMemorySaver()
    elif kind == "sqlite":
        with SqliteSaver.from_conn_string(str(tmp_path / "threads.sqlite")) as saver:
            yield saver
    else:
        base_url: str = request.getfixturevalue("postgres_url")
        with (
            fresh_schema(base_url, "threads") as (url, _),
            PostgresSaver.from_conn_string(url) as pg,
        ):
            pg.setup()
            yield pg


@contextlib.asynccontextmanager
async def open_async_saver(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if kind == "aiosqlite":
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "threads.sqlite")) as saver:
            yield saver
    else:
        base_url: str = request.getfixturevalue("postgres_url")
        with fresh_schema(base_url, "athreads") as (url, _):
            async with AsyncPostgresSaver.from_conn_string(url) as pg:
                await pg.setup()
                yield pg


@pytest.fixture(params=BACKENDS)
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointSaver[Any]]:
    with open_saver(request.param, tmp_path, request) as saver:
        yield saver


def started_approval(inner: BaseCheckpointSaver[Any], owner: Principal = ALICE) -> tuple[Any, str]:
    """An approval graph paused at its interrupt, on a thread `owner` created."""
    graph = approval_graph(OwnedCheckpointer(inner))
    thread = new_thread()
    out = graph.invoke({"trail": [mark(owner)]}, cfg(thread), context=ctx(owner))
    assert "__interrupt__" in out and SIDE["bump"] == 1 and SIDE["sent"] == 0
    return graph, thread


# ------------------------------------------------------------------------------- owners


def test_owner_reads_resumes_and_lists_own_thread(inner: BaseCheckpointSaver[Any]) -> None:
    graph, thread = started_approval(inner)
    with acting_for(ALICE):
        snap = graph.get_state(cfg(thread))
        assert snap.next == ("confirm",) and snap.values["trail"] == [mark(ALICE)]
        assert len(list(graph.get_state_history(cfg(thread)))) >= 3
    out = graph.invoke(Command(resume="yes"), cfg(thread), context=ctx(ALICE))
    assert SIDE["sent"] == 1 and out["trail"] == [mark(ALICE), "answer:yes"]
    # every checkpoint carries the owner stamp, in storage
    assert {(t.metadata[OWNER_TENANT_KEY], t.metadata[OWNER_USER_KEY]) for t in stored(inner)} == {
        ("acme", "alice")
    }


def test_run_under_acting_for_without_run_context(inner: BaseCheckpointSaver[Any]) -> None:
    """The binding reaches the checkpointer calls LangGraph makes from its worker threads."""
    graph = counter_graph(OwnedCheckpointer(inner))
    thread = new_thread()
    with acting_for(BOB):
        assert graph.invoke({"trail": [mark(BOB)]}, cfg(thread))["count"] == 1
        assert graph.invoke({"trail": [mark(BOB)]}, cfg(thread))["count"] == 2
    with acting_for(ALICE), pytest.raises(ThreadAccessError):
        graph.invoke({}, cfg(thread))


# ------------------------------------------------------------------- teammate attacks


def test_teammate_cannot_read_state_or_history(inner: BaseCheckpointSaver[Any]) -> None:
    graph, thread = started_approval(inner)
    owned = OwnedCheckpointer(inner)
    with acting_for(BOB):
        with pytest.raises(ThreadAccessError):
            graph.get_state(cfg(thread))
        with pytest.raises(ThreadAccessError):
            list(graph.get_state_history(cfg(thread)))
        with pytest.raises(ThreadAccessError):
            owned.get_tuple(cfg(thread))
        with pytest.raises(ThreadAccessError):
            owned.list(cfg(thread))  # refused at call time, before iteration
        with pytest.raises(ThreadAccessError):
            owned.get(cfg(thread))


def test_teammate_cannot_resume_interrupt(inner: BaseCheckpointSaver[Any]) -> None:
    graph, thread = started_approval(inner)
    before = len(stored(inner, thread))
    with pytest.raises(ThreadAccessError):
        graph.invoke(Command(resume="yes"), cfg(thread), context=ctx(BOB))
    with pytest.raises(ThreadAccessError):
        list(graph.stream(Command(resume="yes"), cfg(thread), context=ctx(BOB)))
    assert SIDE["sent"] == 0 and SIDE["bump"] == 1  # nothing ran
    assert len(stored(inner, thread)) == before  # nothing written
    with acting_for(ALICE):
        assert graph.get_state(cfg(thread)).next == ("confirm",)  # still pending for her
    graph.invoke(Command(resume="ok"), cfg(thread), context=ctx(ALICE))
    assert SIDE["sent"] == 1


def test_teammate_cannot_continue_thread_with_new_input(inner: BaseCheckpointSaver[Any]) -> None:
    owned = OwnedCheckpointer(inner)
    graph = counter_graph(owned)
    thread = new_thread()
    graph.invoke({"trail": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
    with pytest.raises(ThreadAccessError):
        graph.invoke({"trail": [mark(BOB)]}, cfg(thread), context=ctx(BOB))
    assert SIDE["bump"] == 1
    with acting_for(ALICE):
        assert graph.get_state(cfg(thread)).values == {"count": 1, "trail": [mark(ALICE)]}


def test_teammate_cannot_fork_from_earlier_checkpoint(inner: BaseCheckpointSaver[Any]) -> None:
    graph, thread = started_approval(inner)
    with acting_for(ALICE):
        history = list(graph.get_state_history(cfg(thread)))
    earlier = history[-1].config  # the first checkpoint of the thread
    assert earlier["configurable"]["checkpoint_id"]
    before = len(stored(inner, thread))
    with acting_for(BOB):
        with pytest.raises(ThreadAccessError):
            graph.update_state(earlier, {"trail": [mark(BOB)]}, as_node="bump")
        with pytest.raises(ThreadAccessError):
            graph.get_state(earlier)
    with pytest.raises(ThreadAccessError):
        graph.invoke(None, earlier, context=ctx(BOB))  # replay/fork from that checkpoint
    assert len(stored(inner, thread)) == before and SIDE["bump"] == 1
    with acting_for(ALICE):  # the owner may fork
        forked = graph.update_state(history[1].config, {"trail": ["fork"]}, as_node="bump")
        assert forked["configurable"]["thread_id"] == thread


def test_teammate_cannot_write_directly_through_the_saver(inner: BaseCheckpointSaver[Any]) -> None:
    graph, thread = started_approval(inner)
    owned = OwnedCheckpointer(inner)
    with acting_for(ALICE):
        head = owned.get_tuple(cfg(thread))
    assert head is not None
    with acting_for(BOB):
        with pytest.raises(ThreadAccessError):
            owned.put_writes(head.config, [("trail", [mark(BOB)])], str(uuid.uuid4()))
        with pytest.raises(ThreadAccessError):
            owned.put(head.config, head.checkpoint, {"source": "update", "step": 9}, {})
        with pytest.raises(ThreadAccessError):
            owned.delete_thread(thread)
        with pytest.raises(ThreadAccessError):
            owned.get_delta_channel_history(config=head.config, channels=["trail"])
    with acting_for(ALICE):
        assert graph.get_state(cfg(thread)).values["trail"] == [mark(ALICE)]


def test_same_user_id_in_another_tenant_is_refused(inner: BaseCheckpointSaver[Any]) -> None:
    graph, thread = started_approval(inner)
    with pytest.raises(ThreadAccessError):
        graph.invoke(Command(resume="yes"), cfg(thread), context=ctx(ALICE_GLOBEX))
    with acting_for(ALICE_GLOBEX):
        with pytest.raises(ThreadAccessError):
            graph.get_state(cfg(thread))
        with pytest.raises(ThreadAccessError):
            list(graph.get_state_history(cfg(thread)))
        assert list(OwnedCheckpointer(inner).list(None)) == []
    assert SIDE["sent"] == 0


# ------------------------------------------------------------------ forged ownership


FORGED_FOR_ALICE = {OWNER_TENANT_KEY: "acme", OWNER_USER_KEY: "alice"}


def test_forged_metadata_cannot_claim_a_new_thread(inner: BaseCheckpointSaver[Any]) -> None:
    """Mallory creates a thread while claiming, in config metadata and configurable, to be
    Alice: the stamp is Mallory's, Alice cannot be framed, and Mallory keeps her own thread."""
    mallory = who("acme", "mallory")
    graph = counter_graph(OwnedCheckpointer(inner))
    thread = new_thread()
    forged: RunnableConfig = {
        "configurable": {"thread_id": thread, **FORGED_FOR_ALICE},
        "metadata": dict(FORGED_FOR_ALICE),
    }
    graph.invoke({"trail": [mark(mallory)]}, forged, context=ctx(mallory))
    stamps = {(t.metadata[OWNER_TENANT_KEY], t.metadata[OWNER_USER_KEY]) for t in stored(inner)}
    assert stamps == {("acme", "mallory")}
    with acting_for(ALICE), pytest.raises(ThreadAccessError):
        graph.get_state(cfg(thread))
    with acting_for(mallory):
        assert graph.get_state(cfg(thread)).values["count"] == 1


def test_forged_metadata_cannot_take_over_or_hand_over_a_thread(
    inner: BaseCheckpointSaver[Any],
) -> None:
    graph = counter_graph(OwnedCheckpointer(inner))
    thread = new_thread()
    graph.invoke({"trail": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
    claim_bob = {OWNER_TENANT_KEY: "acme", OWNER_USER_KEY: "bob"}
    # Bob claims Alice's thread through metadata: refused
    with pytest.raises(ThreadAccessError):
        graph.invoke({}, {**cfg(thread), "metadata": claim_bob}, context=ctx(BOB))
    with acting_for(BOB), pytest.raises(ThreadAccessError):
        graph.update_state({**cfg(thread), "metadata": claim_bob}, {"count": 1}, as_node="bump")
    # Alice's own run with a metadata "gift" to Bob does not hand it over
    graph.invoke({}, {**cfg(thread), "metadata": claim_bob}, context=ctx(ALICE))
    with acting_for(BOB), pytest.raises(ThreadAccessError):
        graph.get_state(cfg(thread))
    for t in stored(inner, thread):
        assert t.metadata[OWNER_USER_KEY] == "alice"
    # and a metadata filter cannot widen a listing
    with acting_for(BOB):
        assert list(OwnedCheckpointer(inner).list(None, filter=dict(FORGED_FOR_ALICE))) == []


# --------------------------------------------------------------------- legacy threads


def test_legacy_unowned_thread_refused_unless_adopted(inner: BaseCheckpointSaver[Any]) -> None:
    thread = new_thread()
    counter_graph(inner).invoke({"trail": ["legacy"]}, cfg(thread))  # before the wrapper
    strict = counter_graph(OwnedCheckpointer(inner))
    with acting_for(ALICE), pytest.raises(ThreadAccessError, match="without an owner"):
        strict.get_state(cfg(thread))
    with pytest.raises(ThreadAccessError):
        strict.invoke({}, cfg(thread), context=ctx(ALICE))

    adopting = counter_graph(OwnedCheckpointer(inner, adopt_unowned=True))
    with acting_for(ALICE):
        assert adopting.get_state(cfg(thread)).values["trail"] == ["legacy"]
    with acting_for(BOB), pytest.raises(ThreadAccessError):  # Alice holds it now
        adopting.get_state(cfg(thread))
    adopting.invoke({}, cfg(thread), context=ctx(ALICE))  # her write stamps it for good
    # a fresh wrapper (another process) sees Alice's stamp, even when adopting
    later = counter_graph(OwnedCheckpointer(inner, adopt_unowned=True))
    with acting_for(BOB), pytest.raises(ThreadAccessError):
        later.get_state(cfg(thread))
    with acting_for(ALICE):
        assert later.get_state(cfg(thread)).values["count"] == 2
        # the unstamped legacy checkpoints stay readable to the owner, in her history
        assert len(list(later.get_state_history(cfg(thread)))) > 3


# ------------------------------------------------------------------------- listing


def test_listing_across_threads_returns_only_own_threads(inner: BaseCheckpointSaver[Any]) -> None:
    graph = counter_graph(OwnedCheckpointer(inner))
    people = ((ALICE, 2), (BOB, 1), (ALICE_GLOBEX, 1))
    threads: dict[str, set[str]] = {mark(p): set() for p, _ in people}
    for p, n in people:
        for _ in range(n):
            thread = new_thread()
            threads[mark(p)].add(thread)
            graph.invoke({"trail": [mark(p)]}, cfg(thread), context=ctx(p))
    counter_graph(inner).invoke({"trail": ["legacy"]}, cfg("legacy-thread"))
    owned = OwnedCheckpointer(inner, adopt_unowned=True)
    for p, _ in people:
        mine = threads[mark(p)]
        with acting_for(p):
            found = list(owned.list(None))
            assert {t.config["configurable"]["thread_id"] for t in found} == mine
            assert all(own_marks_only(t.checkpoint["channel_values"], p) for t in found)
            assert len(list(owned.list(None, limit=1))) == 1
            assert list(owned.list(None, filter={"source": "input"}))


# ---------------------------------------------------------------------- fail closed


def test_no_identity_raises_and_writes_nothing(inner: BaseCheckpointSaver[Any]) -> None:
    owned = OwnedCheckpointer(inner)
    graph = counter_graph(owned)
    thread = new_thread()
    with pytest.raises(IdentityError):
        graph.invoke({"trail": ["anon"]}, cfg(thread))
    with pytest.raises(IdentityError):
        graph.invoke({"trail": ["anon"]}, cfg(thread), context={"user": "alice"})
    with pytest.raises(IdentityError):
        graph.update_state(cfg(thread), {"count": 1}, as_node="bump")
    with pytest.raises(IdentityError):
        graph.get_state(cfg(thread))
    with pytest.raises(IdentityError):
        owned.list(None)
    with pytest.raises(IdentityError):
        owned.delete_thread(thread)
    assert stored(inner) == [] and SIDE["bump"] == 0


def test_identity_source_that_breaks_fails_closed() -> None:
    class Broken:
        def resolve(self, ctx: CallContext) -> Principal:
            raise RuntimeError("directory unreachable")

    inner = InMemorySaver()
    graph = counter_graph(OwnedCheckpointer(inner, identity=Broken()))
    with pytest.raises(IdentityError, match="identity source failed"):
        graph.invoke({}, cfg(new_thread()), context=ctx(ALICE))
    assert stored(inner) == [] and SIDE["bump"] == 0


def test_refusal_message_does_not_reveal_the_owner() -> None:
    owner = who("initech-secret-tenant", "milton-secret-user")
    inner = InMemorySaver()
    graph = approval_graph(OwnedCheckpointer(inner))
    thread = "shared-thread-42"
    graph.invoke({"trail": [mark(owner)]}, cfg(thread), context=ctx(owner))
    errors: list[ThreadAccessError] = []
    for intruder in (who("initech-secret-tenant", "bob"), who("acme", "milton-secret-user")):
        with pytest.raises(ThreadAccessError) as info:
            graph.invoke(Command(resume="y"), cfg(thread), context=ctx(intruder))
        errors.append(info.value)
        with acting_for(intruder), pytest.raises(ThreadAccessError) as info:
            graph.get_state(cfg(thread))
        errors.append(info.value)
    for exc in errors:
        text = f"{exc} {exc!r} {vars(exc)}"
        assert "initech" not in text and "milton" not in text
        assert thread in str(exc) and exc.reason == "foreign"
        assert isinstance(exc, GuardError)


# ------------------------------------------------------------------ subgraphs, delete


def test_subgraph_checkpoints_belong_to_the_thread_owner(inner: BaseCheckpointSaver[Any]) -> None:
    owned = OwnedCheckpointer(inner)
    graph = nested_graph(owned)
    thread = new_thread()
    graph.invoke({"trail": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
    namespaces = {t.config["configurable"]["checkpoint_ns"] for t in stored(inner, thread)}
    sub_ns = next(ns for ns in namespaces if ns)
    assert all(t.metadata[OWNER_USER_KEY] == "alice" for t in stored(inner, thread))
    with acting_for(BOB):
        with pytest.raises(ThreadAccessError):
            graph.get_state(cfg(thread), subgraphs=True)
        with pytest.raises(ThreadAccessError):
            owned.get_tuple(cfg(thread, checkpoint_ns=sub_ns))
        with pytest.raises(ThreadAccessError):
            owned.list(cfg(thread, checkpoint_ns=sub_ns))
    with pytest.raises(ThreadAccessError):  # the interrupt is inside the subgraph
        graph.invoke(Command(resume="y"), cfg(thread), context=ctx(BOB))
    assert SIDE["sent"] == 0
    with acting_for(ALICE):
        snap = graph.get_state(cfg(thread), subgraphs=True)
        assert snap.tasks and snap.tasks[0].state is not None
    graph.invoke(Command(resume="y"), cfg(thread), context=ctx(ALICE))
    assert SIDE["sent"] == 1


def test_only_the_owner_deletes_and_the_id_is_free_afterwards(
    inner: BaseCheckpointSaver[Any],
) -> None:
    owned = OwnedCheckpointer(inner)
    graph = counter_graph(owned)
    thread = new_thread()
    graph.invoke({"trail": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
    with acting_for(BOB), pytest.raises(ThreadAccessError):
        owned.delete_thread(thread)
    assert stored(inner, thread)
    with acting_for(ALICE):
        owned.delete_thread(thread)
    assert stored(inner, thread) == []
    graph.invoke({"trail": [mark(BOB)]}, cfg(thread), context=ctx(BOB))  # a new thread now
    with acting_for(ALICE), pytest.raises(ThreadAccessError):
        graph.get_state(cfg(thread))


class CopyingSaver(InMemorySaver):
    """InMemorySaver with `copy_thread` (none of the stock savers implement it)."""

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        for ns, checkpoints in list(self.storage[source_thread_id].items()):
            self.storage[target_thread_id][ns].update(checkpoints)
        for (tid, ns, cid), writes in list(self.writes.items()):
            if tid == source_thread_id:
                self.writes[(target_thread_id, ns, cid)] = dict(writes)
        for (tid, ns, ch, version), blob in list(self.blobs.items()):
            if tid == source_thread_id:
                self.blobs[(target_thread_id, ns, ch, version)] = blob


def test_copy_thread_cannot_steal_or_overwrite() -> None:
    inner = CopyingSaver()
    owned = OwnedCheckpointer(inner, adopt_unowned=True)
    graph = counter_graph(owned)
    alices, bobs = new_thread(), new_thread()
    graph.invoke({"trail": [mark(ALICE)]}, cfg(alices), context=ctx(ALICE))
    graph.invoke({"trail": [mark(BOB)]}, cfg(bobs), context=ctx(BOB))
    with acting_for(BOB):
        with pytest.raises(ThreadAccessError):
            owned.copy_thread(alices, "bobs-loot")
        assert stored(inner, "bobs-loot") == []
    with acting_for(ALICE):
        with pytest.raises(ThreadAccessError):
            owned.copy_thread(alices, bobs)  # into someone else's thread
        owned.copy_thread(alices, "alices-copy")
        assert graph.get_state(cfg("alices-copy")).values["trail"] == [mark(ALICE)]
    with acting_for(BOB), pytest.raises(ThreadAccessError):
        graph.get_state(cfg("alices-copy"))
    # an adopted but never stamped legacy thread cannot be spread by copying
    counter_graph(inner).invoke({"trail": ["legacy"]}, cfg("legacy"))
    with acting_for(ALICE):
        graph.get_state(cfg("legacy"))  # adopted in this process
        with pytest.raises(ThreadAccessError, match="without an owner"):
            owned.copy_thread("legacy", "legacy-copy")


def test_creation_race_refuses_a_racer_and_leaks_nothing() -> None:
    """Two principals create the same thread id at once: both pass the "new thread" check and
    both write (forced with a barrier). At least one is refused, exactly one owns the thread
    afterwards, and neither ever reads the other's checkpoint."""

    class RacingSaver(InMemorySaver):
        def __init__(self) -> None:
            super().__init__()
            self.barrier = threading.Barrier(2, timeout=10)
            self.lock = threading.Lock()
            self.seen: set[str] = set()

        def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            with self.lock:
                first = metadata[OWNER_USER_KEY] not in self.seen
                self.seen.add(metadata[OWNER_USER_KEY])
            if first:  # both have passed the ownership check; now both write
                self.barrier.wait()
            return super().put(config, checkpoint, metadata, new_versions)

    inner = RacingSaver()
    graph = counter_graph(OwnedCheckpointer(inner))
    outcomes: dict[str, Any] = {}

    def run(p: Principal) -> None:
        try:
            outcomes[p.user] = graph.invoke({"trail": [mark(p)]}, cfg("T"), context=ctx(p))
        except Exception as exc:
            outcomes[p.user] = exc

    workers = [threading.Thread(target=run, args=(p,)) for p in (ALICE, BOB)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    refused = [o for o in outcomes.values() if isinstance(o, ThreadAccessError)]
    assert len(outcomes) == 2 and refused and all(e.reason == "contested" for e in refused)

    readers = []
    for p in (ALICE, BOB):
        fresh = counter_graph(OwnedCheckpointer(inner))  # as another process would see it
        with acting_for(p):
            try:
                snap = fresh.get_state(cfg("T"))
            except ThreadAccessError:
                continue
            readers.append(p)
            assert own_marks_only(snap.values, p)
            for past in fresh.get_state_history(cfg("T")):
                assert own_marks_only(past.values, p)
    assert len(readers) == 1


def test_with_allowlist_clone_keeps_the_guard() -> None:
    """`compile()` derives a saver with a msgpack allowlist: the derived one stays guarded and
    shares the owners learned so far."""
    inner = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=None))  # strict
    owned = OwnedCheckpointer(inner)
    clone = owned.with_allowlist({("tests", "Thing")})
    assert isinstance(clone, OwnedCheckpointer) and clone.saver is not inner
    graph = counter_graph(owned)
    assert isinstance(graph.checkpointer, OwnedCheckpointer)
    thread = new_thread()
    graph.invoke({"trail": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
    with acting_for(BOB):
        with pytest.raises(ThreadAccessError):
            owned.get_tuple(cfg(thread))
        with pytest.raises(ThreadAccessError):
            clone.get_tuple(cfg(thread))


def extend(state: list[str] | None, writes: Any) -> list[str]:
    return [*(state or []), *(w for batch in writes for w in batch)]


class DeltaState(TypedDict, total=False):
    items: Annotated[list[str], DeltaChannel(extend)]


def delta_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    g = StateGraph(DeltaState)
    g.add_node("add", lambda s: {"items": ["node"]})
    g.add_edge(START, "add")
    return g.compile(checkpointer=saver)


def test_delta_channel_history_is_read_only_by_the_owner() -> None:
    """DeltaChannel state is rebuilt through `get_delta_channel_history`: the same boundary."""
    graph = delta_graph(OwnedCheckpointer(InMemorySaver()))
    thread = new_thread()
    for _ in range(2):
        graph.invoke({"items": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
    with acting_for(ALICE):
        assert graph.get_state(cfg(thread)).values["items"] == [mark(ALICE), "node"] * 2
    with pytest.raises(ThreadAccessError):
        graph.invoke({"items": [mark(BOB)]}, cfg(thread), context=ctx(BOB))
    with acting_for(BOB), pytest.raises(ThreadAccessError):
        graph.get_state(cfg(thread))


# ---------------------------------------------------------------------------- async


@pytest.mark.parametrize("kind", ASYNC_BACKENDS)
async def test_async_saver_owner_and_intruders(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_async_saver(kind, tmp_path, request) as inner:
        owned = OwnedCheckpointer(inner)
        graph = approval_graph(owned)
        thread = new_thread()
        out = await graph.ainvoke({"trail": [mark(ALICE)]}, cfg(thread), context=ctx(ALICE))
        assert "__interrupt__" in out

        for intruder in (BOB, ALICE_GLOBEX):
            with pytest.raises(ThreadAccessError):
                await graph.ainvoke(Command(resume="y"), cfg(thread), context=ctx(intruder))
            with pytest.raises(ThreadAccessError):
                async for _ in graph.astream(Command(resume="y"), cfg(thread), context=ctx(BOB)):
                    pass
            with acting_for(intruder):
                with pytest.raises(ThreadAccessError):
                    await graph.aget_state(cfg(thread))
                with pytest.raises(ThreadAccessError):
                    _ = [s async for s in graph.aget_state_history(cfg(thread))]
                with pytest.raises(ThreadAccessError):
                    await graph.aupdate_state(cfg(thread), {"trail": ["x"]}, as_node="bump")
                assert [t async for t in owned.alist(None)] == []
        assert SIDE["sent"] == 0

        with pytest.raises(IdentityError):
            await graph.ainvoke({}, cfg(new_thread()))

        async for _ in graph.astream(Command(resume="ok"), cfg(thread), context=ctx(ALICE)):
            pass
        assert SIDE["sent"] == 1
        with acting_for(ALICE):
            snap = await graph.aget_state(cfg(thread))
            assert snap.values["trail"] == [mark(ALICE), "answer:ok"]
            mine = [t async for t in owned.alist(None)]
            assert {t.config["configurable"]["thread_id"] for t in mine} == {thread}
        stamps = {t.metadata.get(OWNER_USER_KEY) async for t in inner.alist(None)}
        assert stamps == {"alice"}
        with acting_for(BOB), pytest.raises(ThreadAccessError):
            await owned.adelete_thread(thread)
        with acting_for(ALICE):
            await owned.adelete_thread(thread)
        assert [t async for t in inner.alist(cfg(thread))] == []


# ------------------------------------------------------------------------- property

PRINCIPALS = [who(t, u) for t in ("acme", "globex") for u in ("alice", "bob")]
OPS = ["invoke", "get_state", "history", "update", "list_all"]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PRINCIPALS), st.sampled_from(OPS), st.sampled_from(["t0", "t1", "t2"])
        ),
        min_size=1,
        max_size=12,
    )
)
def test_property_only_new_or_own_threads_are_usable(
    steps: list[tuple[Principal, str, str]],
) -> None:
    """An operation succeeds iff the thread is new or the principal's own, and whatever comes
    back holds only that principal's data."""
    owned = OwnedCheckpointer(InMemorySaver())
    graph = counter_graph(owned)
    owners: dict[str, Principal] = {}
    for p, op, thread in steps:
        allowed = owners.get(thread, p) == p
        if op == "list_all":
            with acting_for(p):
                found = list(owned.list(None))
            assert {t.config["configurable"]["thread_id"] for t in found} == {
                t for t, o in owners.items() if o == p
            }
            assert all(own_marks_only(t.checkpoint["channel_values"], p) for t in found)
            continue
        try:
            with acting_for(p):
                if op == "invoke":
                    graph.invoke({"trail": [mark(p)]}, cfg(thread))
                    owners.setdefault(thread, p)
                elif op == "update":
                    graph.update_state(cfg(thread), {"trail": [mark(p)]}, as_node="bump")
                    owners.setdefault(thread, p)
                elif op == "get_state":
                    assert own_marks_only(graph.get_state(cfg(thread)).values, p)
                else:
                    for snap in graph.get_state_history(cfg(thread)):
                        assert own_marks_only(snap.values, p)
        except ThreadAccessError:
            assert not allowed, f"{mark(p)} refused its own or a new thread"
        else:
            assert allowed, f"{mark(p)} used another principal's thread"
