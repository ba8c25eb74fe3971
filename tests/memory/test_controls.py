"""Memory controls around the scoped store: retention, erasure, audit, and how tools and nodes
get memory (store injection through the guard's doors, `GuardedStore` for whole graphs)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import InjectedStore, ToolRuntime, tools_condition
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from agentguard import Guard, GuardMiddleware, Principal, acting_for
from agentguard.errors import IdentityError
from agentguard.identity import CallContext
from agentguard.integrations.langgraph import GuardedModelNode, GuardedToolNode
from agentguard.memory import (
    GuardedStore,
    RetentionSweeper,
    ScopedStore,
    ScopeError,
    erase_memory,
    sweep_expired,
)
from agentguard.policy.model import MemorySettings
from agentguard.testing import ScriptedChatModel

DAY = 86400.0


def who(tenant: str, user: str, role: str = "employee", team: str | None = "red") -> Principal:
    return Principal(tenant=tenant, user=user, role=role, team=team)


ALICE = who("acme", "alice")
BOB = who("acme", "bob")
ADMIN = who("acme", "root", role="admin")
DANA = who("globex", "dana")


def later(days: float) -> Any:
    return lambda: time.time() + days * DAY


# ---------------------------------------------------------------------------- retention


def test_items_past_their_scopes_retention_are_gone_for_readers() -> None:
    backend = InMemoryStore()
    settings = MemorySettings(retention_days={"user": 1})
    ScopedStore(backend, ALICE, settings=settings).put(("user", "n"), "k", {"v": 1})
    ScopedStore(backend, ALICE, settings=settings).put(("team", "n"), "k", {"v": 2})

    tomorrow = ScopedStore(backend, ALICE, settings=settings, clock=later(1.5))
    assert tomorrow.get(("user", "n"), "k") is None
    assert tomorrow.search(("user",)) == []
    team = tomorrow.get(("team", "n"), "k")  # no retention set for team: kept
    assert team is not None and team.value == {"v": 2}
    today = ScopedStore(backend, ALICE, settings=settings)
    assert today.get(("user", "n"), "k") is not None


def test_sweep_deletes_expired_items_of_every_tenant_and_nothing_else() -> None:
    backend = InMemoryStore()
    settings = MemorySettings(retention_days={"user": 1, "tenant": 30})
    for p in (ALICE, BOB, DANA):
        mem = ScopedStore(backend, p, settings=settings)
        mem.put(("user", "n"), "k", {"v": p.user})
        mem.put(("team", "n"), "k", {"v": p.user})
        mem.put(("tenant", "n"), p.user, {"v": p.user})
    backend.put(("someone-else",), "k", {"v": "not ours"})

    assert sweep_expired(backend, settings, clock=later(2)) == 3  # three users' notes
    assert len(backend.search(("agentguard",), limit=100)) == 2 + 3  # team x2, tenant x3
    assert sweep_expired(backend, settings, clock=later(31)) == 3
    assert backend.get(("someone-else",), "k") is not None
    assert sweep_expired(backend, MemorySettings()) == 0  # no retention: nothing to do


def test_background_sweeper_runs_and_stops() -> None:
    backend = InMemoryStore()
    settings = MemorySettings(retention_days={"user": 1})
    ScopedStore(backend, ALICE, settings=settings).put(("user", "n"), "k", {"v": 1})
    sweeper = RetentionSweeper(backend, settings, interval_seconds=0.02, clock=later(2))
    with sweeper:
        deadline = time.monotonic() + 5
        while sweeper.swept == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sweeper.swept == 1 and sweeper.last_error is None
    assert backend.search(("agentguard",)) == []


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore.from_conn_string(str(tmp_path / "mem.sqlite")) as store:
        store.setup()
        yield store


def _ttl_rows(path: Path) -> list[tuple[float | None, str | None]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT ttl_minutes, expires_at FROM store ORDER BY key"))


def test_retention_becomes_the_backend_ttl_and_reads_do_not_extend_it(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    settings = MemorySettings(retention_days={"user": 2})
    mem = ScopedStore(sqlite_store, ALICE, settings=settings)
    mem.put(("user", "n"), "a", {"v": 1})  # no ttl asked: the retention applies
    mem.put(("user", "n"), "b", {"v": 1}, ttl=60)  # shorter than retention: kept
    mem.put(("user", "n"), "c", {"v": 1}, ttl=10 * 24 * 60)  # longer: capped
    rows = _ttl_rows(tmp_path / "mem.sqlite")
    assert [r[0] for r in rows] == [2 * 24 * 60, 60, 2 * 24 * 60]
    before = rows[0][1]
    time.sleep(0.01)
    assert mem.get(("user", "n"), "a") is not None
    assert mem.search(("user",)) != []
    assert _ttl_rows(tmp_path / "mem.sqlite")[0][1] == before  # reading did not refresh


# ---------------------------------------------------------------------------- erasure


def _fill(backend: BaseStore) -> None:
    for p in (ALICE, BOB, ADMIN, DANA):
        mem = ScopedStore(backend, p)
        mem.put(("user", "n"), "k", {"v": p.user})
        mem.put(("tenant", "n"), p.user, {"v": p.user})
    ScopedStore(backend, who("acme", "carol", team="blue")).put(("team", "n"), "k", {"v": 1})
    ScopedStore(backend, ALICE).put(("team", "n"), "k", {"v": 1})


def _users_left(backend: BaseStore) -> set[str]:
    return {it.value["v"] for it in backend.search(("agentguard",), limit=100)}


def test_a_user_may_erase_their_own_memory_and_nothing_else() -> None:
    backend = InMemoryStore()
    _fill(backend)
    assert erase_memory(backend, ALICE, user="alice") == 1
    assert ScopedStore(backend, ALICE).search(("user",)) == []
    assert ScopedStore(backend, BOB).get(("user", "n"), "k") is not None
    for target in ({"user": "bob"}, {"team": "red"}, {"tenant": True}):
        with pytest.raises(ScopeError, match="may not erase"):
            erase_memory(backend, ALICE, **target)  # type: ignore[arg-type]
    assert ScopedStore(backend, BOB).get(("user", "n"), "k") is not None


def test_an_admin_erases_a_user_a_team_or_the_tenant_but_never_another_tenant() -> None:
    backend = InMemoryStore()
    _fill(backend)
    assert erase_memory(backend, ADMIN, user="bob") == 1
    assert ScopedStore(backend, BOB).get(("user", "n"), "k") is None
    assert erase_memory(backend, ADMIN, team="blue") == 1
    assert ScopedStore(backend, ALICE).get(("team", "n"), "k") is not None  # team red kept
    remaining = erase_memory(backend, ADMIN, tenant=True)
    assert remaining == 1 + 1 + 3 + 1  # alice's, root's user memory; 3 tenant notes; team red
    assert _users_left(backend) == {"dana"}  # globex untouched


def test_erasure_takes_exactly_one_target() -> None:
    with pytest.raises(ScopeError, match="exactly one"):
        erase_memory(InMemoryStore(), ADMIN)
    with pytest.raises(ScopeError, match="exactly one"):
        erase_memory(InMemoryStore(), ADMIN, user="bob", tenant=True)


def test_erase_roles_come_from_the_policy() -> None:
    backend = InMemoryStore()
    _fill(backend)
    settings = MemorySettings(erase_roles=["dpo"])
    with pytest.raises(ScopeError):
        erase_memory(backend, ADMIN, user="bob", settings=settings)
    dpo = who("acme", "privacy", role="dpo")
    assert erase_memory(backend, dpo, user="bob", settings=settings) == 1


# ---------------------------------------------------------------------------- audit


def _memory_events(guard: Guard) -> list[Any]:
    return [e for e in guard.audit.events() if e.event == "memory"]


def test_reads_and_writes_are_audited_with_digests_never_values() -> None:
    guard = Guard({"version": "m-1", "tools": {}})
    mem = ScopedStore(InMemoryStore(), ALICE, audit=guard.record_event)
    mem.put(("user", "patients"), "jane.doe@example.com", {"diagnosis": "SECRET-VALUE"})
    mem.get(("user", "patients"), "jane.doe@example.com")
    mem.get(("user", "patients"), "nobody")
    mem.search(("user",))
    mem.list_namespaces()
    mem.delete(("user", "patients"), "jane.doe@example.com")
    with pytest.raises(ScopeError):
        mem.get(("team-of-someone-else", "x"), "k")

    events = _memory_events(guard)
    rows = [(e.summary["op"], e.result) for e in events]
    assert rows == [
        ("put", "put"),
        ("get", "hit"),
        ("get", "miss"),
        ("search", "ok"),
        ("list", "ok"),
        ("delete", "delete"),
        ("get", "refused"),
    ]
    assert all(e.tenant == "acme" and e.user == "alice" for e in events)
    put = events[0].summary
    assert put["scope"] == "user" and put["namespace"].startswith("sha256:")
    assert put["key"].startswith("sha256:")
    dumped = json.dumps([e.model_dump() for e in events])
    for raw in ("SECRET-VALUE", "jane.doe", "patients", "team-of-someone-else"):
        assert raw not in dumped
    assert events[3].summary["count"] == 1
    assert guard.audit.verify().ok


def test_audit_can_be_limited_to_writes_or_turned_off() -> None:
    guard = Guard({"version": "m-1", "tools": {}})
    writes = ScopedStore(
        InMemoryStore(), ALICE, settings=MemorySettings(audit="writes"), audit=guard.record_event
    )
    writes.put(("user", "n"), "k", {"v": 1})
    writes.get(("user", "n"), "k")
    writes.search(("user",))
    assert [e.summary["op"] for e in _memory_events(guard)] == ["put"]
    off = ScopedStore(
        InMemoryStore(), ALICE, settings=MemorySettings(audit="none"), audit=guard.record_event
    )
    off.put(("user", "n"), "k", {"v": 1})
    assert len(_memory_events(guard)) == 1


def test_a_write_that_cannot_be_written_down_does_not_happen() -> None:
    backend = InMemoryStore()

    def broken(_: dict[str, Any]) -> None:
        raise OSError("audit disk full")

    mem = ScopedStore(backend, ALICE, audit=broken)
    with pytest.raises(OSError):
        mem.put(("user", "n"), "k", {"v": 1})
    assert backend.search(("agentguard",)) == []


def test_erasure_is_audited_including_refusals() -> None:
    guard = Guard({"version": "m-1", "tools": {}})
    backend = InMemoryStore()
    _fill(backend)
    with pytest.raises(ScopeError):
        erase_memory(backend, ALICE, user="bob", audit=guard.record_event)
    erase_memory(backend, ADMIN, user="bob", audit=guard.record_event)
    rows = [(e.user, e.result, e.summary.get("count")) for e in _memory_events(guard)]
    assert rows == [("alice", "refused", None), ("root", "erase", None), ("root", "erased", 1)]
    assert "bob" not in json.dumps([e.summary for e in _memory_events(guard)])


# ---------------------------------------------------------------------------- GuardedStore


def _notes_graph(store: BaseStore) -> Any:
    def write(state: MessagesState, runtime: Runtime[Any]) -> dict[str, Any]:
        assert runtime.store is not None
        text = str(state["messages"][-1].content)
        runtime.store.put(("user", "notes"), "last", {"text": text})
        mine = runtime.store.search(("user",))
        shared = runtime.store.search(("tenant",))
        return {"messages": [AIMessage(f"{len(mine)} mine, {len(shared)} shared")]}

    builder = StateGraph(MessagesState)
    builder.add_node("write", write)
    builder.add_edge(START, "write")
    builder.add_edge("write", END)
    return builder.compile(store=store)


def test_guarded_store_gives_every_node_only_its_principals_memory() -> None:
    backend = InMemoryStore()
    graph = _notes_graph(GuardedStore(backend))
    graph.invoke({"messages": [HumanMessage("alice's note")]}, context={"principal": ALICE})
    graph.invoke({"messages": [HumanMessage("dana's note")]}, context={"principal": DANA})

    alice = ScopedStore(backend, ALICE).get(("user", "notes"), "last")
    dana = ScopedStore(backend, DANA).get(("user", "notes"), "last")
    assert alice is not None and alice.value == {"text": "alice's note"}
    assert dana is not None and dana.value == {"text": "dana's note"}
    assert ScopedStore(backend, BOB).get(("user", "notes"), "last") is None


def test_guarded_store_without_an_identity_does_nothing() -> None:
    backend = InMemoryStore()
    graph = _notes_graph(GuardedStore(backend))
    with pytest.raises(IdentityError):
        graph.invoke({"messages": [HumanMessage("who am I?")]})
    assert backend.search(()) == []
    with pytest.raises(IdentityError):
        GuardedStore(backend).put(("user", "n"), "k", {"v": 1})


def test_guarded_store_outside_a_graph_uses_the_bound_principal() -> None:
    backend = InMemoryStore()
    store = GuardedStore(backend)
    with acting_for(ALICE):
        store.put(("user", "n"), "k", {"v": 1})
        assert store.get(("user", "n"), "k") is not None
    with acting_for(BOB):
        assert store.get(("user", "n"), "k") is None


async def test_guarded_store_async_graph() -> None:
    backend = InMemoryStore()
    graph = _notes_graph(GuardedStore(backend))
    out = await graph.ainvoke({"messages": [HumanMessage("async")]}, context={"principal": BOB})
    assert out["messages"][-1].content == "1 mine, 0 shared"
    assert ScopedStore(backend, BOB).get(("user", "notes"), "last") is not None


def test_guarded_store_refuses_to_scope_twice() -> None:
    with pytest.raises(Exception, match="twice"):
        GuardedStore(GuardedStore(InMemoryStore()))


# ---------------------------------------------------------------------------- doors


@tool
def remember(note: str, runtime: ToolRuntime) -> str:
    """Remember a note for the user."""
    assert runtime.store is not None
    runtime.store.put(("user", "notes"), "last", {"note": note})
    return "remembered"


@tool
def recall(store: Annotated[BaseStore, InjectedStore()]) -> str:
    """Recall the user's last note."""
    item = store.get(("user", "notes"), "last")
    return "nothing" if item is None else str(item.value["note"])


@tool
def snoop(store: Annotated[BaseStore, InjectedStore()]) -> str:
    """Read memory the way unscoped LangGraph code would."""
    return str(store.search(("agentguard", "t", "globex")))


MEMORY_TOOLS = [remember, recall, snoop]
MEMORY_POLICY: dict[str, Any] = {
    "version": "mem-1",
    "tools": {
        "remember": {"risk": "low"},
        "recall": {"risk": "low", "output_trust": "trusted"},
        "snoop": {"risk": "low", "output_trust": "trusted"},
    },
    "memory": {"retention_days": {"user": 30}},
}


def ai_call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def _script() -> list[Any]:
    return [
        ai_call("remember", {"note": "buy milk"}, "c1"),
        ai_call("recall", {}, "c2"),
        AIMessage(content="done"),
    ]


def _tool_texts(result: dict[str, Any]) -> dict[str, str]:
    return {m.name: str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)}


def test_create_agent_tools_get_the_callers_scoped_store() -> None:
    backend = InMemoryStore()
    ScopedStore(backend, DANA).put(("user", "notes"), "last", {"note": "dana's secret"})
    guard = Guard(MEMORY_POLICY)
    agent = create_agent(
        ScriptedChatModel(turns=_script()),
        MEMORY_TOOLS,
        middleware=[GuardMiddleware(guard)],
        store=backend,
        checkpointer=InMemorySaver(),
    )
    result = agent.invoke(
        {"messages": [HumanMessage("note this")]},
        {"configurable": {"thread_id": "t1"}},
        context={"principal": ALICE},
    )
    assert "buy milk" in _tool_texts(result)["recall"]
    stored = backend.search(("agentguard", "t", "acme", "u", "alice"))
    assert [it.value for it in stored] == [{"note": "buy milk"}]
    ops = [(e.summary["op"], e.call_id) for e in guard.audit.events() if e.event == "memory"]
    assert ops == [("put", "c1"), ("get", "c2")]


def test_a_tool_reaching_for_another_tenants_namespace_stops_the_run() -> None:
    backend = InMemoryStore()
    ScopedStore(backend, DANA).put(("user", "notes"), "last", {"note": "dana's secret"})
    guard = Guard(MEMORY_POLICY)
    agent = create_agent(
        ScriptedChatModel(turns=[ai_call("snoop", {}, "c3"), AIMessage(content="done")]),
        MEMORY_TOOLS,
        middleware=[GuardMiddleware(guard)],
        store=backend,
    )
    with pytest.raises(ScopeError, match="must name a scope"):
        agent.invoke({"messages": [HumanMessage("look around")]}, context={"principal": ALICE})
    refused = [e for e in guard.audit.events() if e.event == "memory"]
    assert [(e.summary["op"], e.result, e.call_id) for e in refused] == [
        ("search", "refused", "c3")
    ]


async def test_guarded_tool_node_tools_get_the_callers_scoped_store_async() -> None:
    backend = InMemoryStore()
    ScopedStore(backend, DANA).put(("user", "notes"), "last", {"note": "dana's secret"})
    guard = Guard(MEMORY_POLICY)
    model = ScriptedChatModel(turns=_script())
    builder = StateGraph(MessagesState)
    builder.add_node("model", GuardedModelNode(model, MEMORY_TOOLS, guard=guard))
    builder.add_node("tools", GuardedToolNode(MEMORY_TOOLS, guard=guard))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "model")
    graph = builder.compile(store=backend, checkpointer=InMemorySaver())
    result = await graph.ainvoke(
        {"messages": [HumanMessage("note this")]},
        {"configurable": {"thread_id": "t1"}},
        context={"principal": ALICE},
    )
    assert "buy milk" in _tool_texts(result)["recall"]
    assert [it.value for it in backend.search(("agentguard", "t", "acme"))] == [
        {"note": "buy milk"}
    ]


def test_wrapped_tools_get_the_scoped_store_too() -> None:
    backend = InMemoryStore()
    guard = Guard(MEMORY_POLICY)
    wrapped = {t.name: t for t in guard.wrap_tools(MEMORY_TOOLS)}
    with acting_for(ALICE):
        wrapped["recall"].invoke({"store": backend})  # a host injecting the raw store
        call = {"name": "recall", "args": {"store": backend}, "id": "w1", "type": "tool_call"}
        message = wrapped["recall"].invoke(call)
        assert message.content == "nothing"
        ScopedStore(backend, ALICE).put(("user", "notes"), "last", {"note": "from alice"})
        assert wrapped["recall"].invoke({"store": backend}) == "from alice"
    with acting_for(BOB):
        assert wrapped["recall"].invoke({"store": backend}) == "nothing"


def test_a_store_that_is_already_scoped_is_passed_on_as_it_is() -> None:
    backend = InMemoryStore()
    guard = Guard(MEMORY_POLICY)
    store = GuardedStore(backend, settings=guard.policy, audit=guard.record_event)
    agent = create_agent(
        ScriptedChatModel(turns=_script()),
        MEMORY_TOOLS,
        middleware=[GuardMiddleware(guard)],
        store=store,
    )
    agent.invoke({"messages": [HumanMessage("note this")]}, context={"principal": ALICE})
    # one scoping, not two: the item lives right under alice's prefix
    assert [it.value for it in backend.search(("agentguard", "t", "acme", "u", "alice"))] == [
        {"note": "buy milk"}
    ]


async def test_async_memory_keeps_a_blocking_audit_log_off_the_event_loop(tmp_path: Path) -> None:
    """LangGraph servers refuse blocking calls on the loop (blockbuster): a SQLite audit log
    must be written from a worker thread, with the caller's identity still known there."""
    from blockbuster import blockbuster_ctx

    from agentguard.audit import AuditLog, SqliteSink

    guard = Guard(MEMORY_POLICY, audit=AuditLog(SqliteSink(tmp_path / "audit.sqlite3"), b"k" * 32))
    assert guard.blocking
    store = GuardedStore(InMemoryStore(), settings=guard.policy, audit=guard.record_event)
    with acting_for(ALICE), blockbuster_ctx():
        await store.aput(("user", "n"), "k", {"v": 1})
        got = await store.aget(("user", "n"), "k")
        assert got is not None and got.value == {"v": 1}
        assert len(await store.asearch(("user",))) == 1
        await store.adelete(("user", "n"), "k")
    assert [e.summary["op"] for e in _memory_events(guard)] == ["put", "get", "search", "delete"]
    # the view a door hands a tool takes the guard's setting
    mem = guard.memory_for(
        InMemoryStore(),
        guard.check(
            {"name": "remember", "args": {"note": "x"}, "id": "b1"},
            CallContext(runtime_context={"principal": ALICE}),
            {"remember": remember},
        ),
        CallContext(),
    )
    with blockbuster_ctx():
        await mem.aput(("user", "n"), "k", {"v": 1})
        assert await mem.aget(("user", "n"), "k") is not None
        await mem.adelete(("user", "n"), "k")


def test_a_server_request_with_a_partial_config_still_uses_the_authenticated_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server with a custom `http.app` sets a runnable config on every request that names no
    user; the auth handler's user is then taken from the server's auth context."""
    import sys
    import types

    from langchain_core.runnables.config import var_child_runnable_config

    from agentguard import FromServerAuth
    from agentguard.memory import current_call_context

    user = {"identity": "alice", "tenant": "acme", "role": "employee"}
    utils = types.ModuleType("langgraph_api.utils")
    utils.get_auth_ctx = lambda: types.SimpleNamespace(user=user)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "langgraph_api", types.ModuleType("langgraph_api"))
    monkeypatch.setitem(sys.modules, "langgraph_api.utils", utils)
    token = var_child_runnable_config.set({"configurable": {}})
    try:
        ctx = current_call_context()
    finally:
        var_child_runnable_config.reset(token)
    assert ctx.on_server and FromServerAuth().resolve(ctx).user == "alice"
    utils.get_auth_ctx = lambda: None  # type: ignore[attr-defined]
    with pytest.raises(IdentityError):
        FromServerAuth().resolve(current_call_context())
