"""Approvals through the other doors: a hand-built graph with GuardedToolNode, and wrapped tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command
from pydantic import ValidationError

from agentguard import Guard, acting_for
from agentguard.integrations.langchain import CallRefused, wrap_tools

from .flowkit import (
    ALICE,
    POLICY,
    Agent,
    Ran,
    action,
    calls_turn,
    dev,
    make_tools,
    production,
    sign,
    tool_call,
)

EMAIL_A = {"to": "a@example.com", "body": "hello"}
EMAIL_B = {"to": "b@example.com", "body": "hello"}


def three_calls() -> AIMessage:
    return calls_turn(
        tool_call("search", {"query": "q"}, "s1"),
        tool_call("send_email", EMAIL_A, "c1"),
        tool_call("send_email", EMAIL_B, "c2"),
    )


def test_tool_node_reviews_every_call_before_any_runs(tmp_path: Path) -> None:
    agent = Agent([three_calls()], approvals=production(tmp_path), kind="toolnode")
    (first,) = agent.start()
    assert action(first)["args"] == EMAIL_A
    assert agent.ran.calls == []  # not even the safe search: nothing runs mid-review
    (second,) = agent.answer({first.id: {"type": "approve", "assertion": sign(first)}})
    assert action(second)["args"] == EMAIL_B
    assert agent.ran.calls == []
    assert agent.answer({second.id: {"type": "reject", "assertion": sign(second, "reject")}}) == ()
    assert agent.ran.calls == [("search", {"query": "q"}), ("send_email", EMAIL_A)]
    messages = agent.tool_messages()
    assert messages["c1"].text == "sent to a@example.com"
    assert "rejected" in messages["c2"].text and messages["c2"].status == "error"
    assert messages["s1"].text == "results for q"


def test_tool_node_edit_runs_the_edited_call_once() -> None:
    agent = Agent(
        [calls_turn(tool_call("send_email", EMAIL_A, "c1"))], approvals=dev(), kind="toolnode"
    )
    agent.start()
    new = {"to": "c@example.com", "body": "edited"}
    agent.answer({"type": "edit", "edited_action": {"name": "send_email", "args": new}})
    assert agent.ran.calls == [("send_email", new)]
    assert "reviewer edited" in agent.tool_messages()["c1"].text


def test_tool_node_refused_answer_keeps_the_review_pending(tmp_path: Path) -> None:
    agent = Agent([three_calls()], approvals=production(tmp_path), kind="toolnode")
    (first,) = agent.start()
    with pytest.raises(ValidationError, match="unsigned"):
        agent.answer({first.id: {"type": "approve"}})
    assert [i.id for i in agent.pending()] == [first.id]
    assert agent.ran.calls == []


def test_tool_node_refuses_repeated_call_ids() -> None:
    turn = calls_turn(
        tool_call("search", {"query": "a"}, "dup"), tool_call("search", {"query": "b"}, "dup")
    )
    agent = Agent([turn], approvals=dev(), kind="toolnode")
    assert agent.start() == ()
    assert agent.ran.calls == []
    assert all("repeated id" in m.text for m in agent.messages() if isinstance(m, ToolMessage))


async def test_tool_node_async_pauses_and_resumes(tmp_path: Path) -> None:
    agent = Agent([three_calls()], approvals=production(tmp_path), kind="toolnode")
    (first,) = await agent.astart()
    (second,) = await agent.aanswer({first.id: {"type": "approve", "assertion": sign(first)}})
    await agent.aanswer({second.id: {"type": "approve", "assertion": sign(second)}})
    assert agent.ran.count("send_email") == 2 and agent.ran.count("search") == 1


def _wrapped_graph(guard: Guard, ran: Ran, checkpointer: Any) -> Any:
    """A custom node that calls a wrapped tool itself (no ToolNode)."""
    tools = {t.name: t for t in wrap_tools(guard, make_tools(ran))}

    def act(state: MessagesState) -> dict[str, Any]:
        call = tool_call("send_email", EMAIL_A, "w1")
        result = tools["send_email"].invoke(call)
        return {"messages": [result]}

    g = StateGraph(MessagesState)
    g.add_node("act", act)
    g.add_edge(START, "act")
    return g.compile(checkpointer=checkpointer)


def test_wrapped_tools_pause_inside_a_graph() -> None:
    ran = Ran()
    guard = Guard(POLICY, approvals=dev())
    graph = _wrapped_graph(guard, ran, InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "w"}}
    context = {"principal": ALICE}
    result = graph.invoke({"messages": []}, config, context=context, version="v2")
    (intr,) = result.interrupts
    assert action(intr)["name"] == "send_email" and ran.calls == []
    graph.invoke(Command(resume={"type": "approve"}), config, context=context, version="v2")
    assert ran.calls == [("send_email", EMAIL_A)]


def test_wrapped_tools_outside_a_graph_refuse_what_needs_approval() -> None:
    ran = Ran()
    guard = Guard(POLICY, approvals=dev())
    send = {t.name: t for t in wrap_tools(guard, make_tools(ran))}["send_email"]
    with acting_for(ALICE):
        with pytest.raises(CallRefused, match="cannot pause"):
            send.invoke(EMAIL_A)
        message = send.invoke(tool_call("send_email", EMAIL_A, "x"))
    assert isinstance(message, ToolMessage) and "cannot pause" in message.text
    assert ran.calls == []


@pytest.mark.parametrize("kind", ["create_agent", "toolnode"])
async def test_async_doors_keep_blocking_io_off_the_event_loop(tmp_path: Path, kind: str) -> None:
    """LangGraph servers refuse blocking calls on the loop (blockbuster); SQLite must not be."""
    from blockbuster import blockbuster_ctx

    from agentguard.audit import AuditLog, MemorySink, SqliteSink

    assert Guard(POLICY, approvals=production(tmp_path)).blocking  # SQLite storage: off the loop
    assert not Guard(POLICY, audit=AuditLog(MemorySink(), b"k" * 32), approvals=None).blocking
    agent = Agent([three_calls()], approvals=production(tmp_path), kind=kind)
    agent.guard.audit = AuditLog(SqliteSink(tmp_path / "audit.sqlite3"), b"k" * 32, key_id="t")
    agent.guard.blocking = True
    with blockbuster_ctx():
        pending = await agent.astart()
        while pending:
            answers = {i.id: {"type": "approve", "assertion": sign(i)} for i in pending}
            pending = await agent.aanswer(answers)
    assert agent.ran.count("send_email") == 2 and agent.ran.count("search") == 1


def test_routing_each_call_to_its_own_task_pauses_them_all_at_once(tmp_path: Path) -> None:
    agent = Agent([three_calls()], approvals=production(tmp_path), kind="toolnode-send")
    pending = agent.start()
    assert len(pending) == 2  # both emails wait at once, each with its own interrupt
    assert agent.ran.calls == [("search", {"query": "q"})]  # the safe call already ran, once
    by_to = {action(i)["args"]["to"]: i for i in pending}
    left = agent.answer(
        {by_to["b@example.com"].id: {"type": "approve", "assertion": sign(by_to["b@example.com"])}}
    )
    assert [i.id for i in left] == [by_to["a@example.com"].id]
    first = by_to["a@example.com"]
    agent.answer({first.id: {"type": "reject", "assertion": sign(first, "reject")}})
    assert agent.ran.calls == [("search", {"query": "q"}), ("send_email", EMAIL_B)]
    messages = agent.tool_messages()
    assert "rejected" in messages["c1"].text and messages["c2"].text == "sent to b@example.com"
