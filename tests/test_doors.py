"""The three doors — GuardedToolNode, wrapped tools, create_agent middleware — sync and async:
a refused call never reaches the tool, and the model only sees what it may use."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition

from agentguard import (
    CallRefused,
    Guard,
    GuardedModelNode,
    GuardedToolNode,
    GuardMiddleware,
    RunAborted,
    acting_for,
)
from agentguard.testing import ScriptedChatModel

from .conftest import ALICE, ALL_TOOLS, CONTACTS, POLICY, RAN, VIEWER, call


def ai_call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


GOOD_EMAIL = {"to": "bob@acme.example", "subject": "hi", "body": "text"}


def script() -> list[Any]:
    return [
        ai_call("send_email", {**GOOD_EMAIL, "bcc": "x@evil.example"}, "c1"),
        ai_call("send_email", GOOD_EMAIL, "c2"),
        ai_call("export_contacts", {"format": "csv"}, "c3"),
        ai_call("get_contact", {"contact_id": "c-9"}, "c4"),
        AIMessage(content="done"),
    ]


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def assert_guarded_outcome(result: dict[str, Any]) -> None:
    msgs = tool_messages(result)
    assert [m.status for m in msgs] == ["error", "success", "error", "error"]
    assert "unexpected argument 'bcc'" in msgs[0].content
    assert msgs[2].content.startswith("Error: export_contacts is not a valid tool")
    assert "[tenant]" in msgs[3].content
    assert RAN == {"send_email": 1}


def build_graph(model: ScriptedChatModel, guard: Guard, **node_kwargs: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("model", GuardedModelNode(model, ALL_TOOLS, guard=guard))
    builder.add_node("tools", GuardedToolNode(ALL_TOOLS, guard=guard, **node_kwargs))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver())


@pytest.fixture
def guard() -> Guard:
    return Guard(POLICY, resources={"contact": CONTACTS.get})


def _config(thread: str = "t1") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def test_guarded_tool_node_sync(guard: Guard) -> None:
    model = ScriptedChatModel(turns=script())
    graph = build_graph(model, guard)
    result = graph.invoke(
        {"messages": [HumanMessage("go")]}, _config(), context={"principal": ALICE}
    )
    assert_guarded_outcome(result)
    assert "export_contacts" not in model.seen_tools[0]
    assert "wire_funds" not in model.seen_tools[0]
    assert "send_email" in model.seen_tools[0]


async def test_guarded_tool_node_async(guard: Guard) -> None:
    model = ScriptedChatModel(turns=script())
    graph = build_graph(model, guard)
    result = await graph.ainvoke(
        {"messages": [HumanMessage("go")]}, _config(), context={"principal": ALICE}
    )
    assert_guarded_outcome(result)


def test_create_agent_middleware_sync(guard: Guard) -> None:
    model = ScriptedChatModel(turns=script())
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    result = agent.invoke({"messages": [HumanMessage("go")]}, context={"principal": ALICE})
    assert_guarded_outcome(result)
    assert set(model.seen_tools[0]) == {
        "search_contacts",
        "get_contact",
        "send_email",
        "send_bulk",
        "project_report",
    }


async def test_create_agent_middleware_async(guard: Guard) -> None:
    model = ScriptedChatModel(turns=script())
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    result = await agent.ainvoke({"messages": [HumanMessage("go")]}, context={"principal": ALICE})
    assert_guarded_outcome(result)


def test_viewer_sees_only_read_tools_and_cannot_call_send(guard: Guard) -> None:
    model = ScriptedChatModel(
        turns=[ai_call("send_email", GOOD_EMAIL, "c1"), AIMessage(content="ok")]
    )
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    result = agent.invoke({"messages": [HumanMessage("go")]}, context={"principal": VIEWER})
    assert set(model.seen_tools[0]) == {"search_contacts", "get_contact", "project_report"}
    assert tool_messages(result)[0].content.startswith("Error: send_email is not a valid tool")
    assert RAN == {}


def test_no_identity_means_no_tools_and_no_runs(guard: Guard) -> None:
    model = ScriptedChatModel(
        turns=[ai_call("search_contacts", {"query": "x"}, "c1"), AIMessage(content="ok")]
    )
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    result = agent.invoke({"messages": [HumanMessage("go")]})
    assert model.seen_tools[0] is None  # nothing bound at all
    assert "no trusted identity" in tool_messages(result)[0].content
    assert RAN == {}


def test_forged_identity_in_tool_arguments_changes_nothing(guard: Guard) -> None:
    forged = {
        "contact_id": "c-9",
        "principal": {"tenant": "globex", "user": "dana", "role": "admin"},
    }
    model = ScriptedChatModel(turns=[ai_call("get_contact", forged, "c1"), AIMessage(content="ok")])
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    result = agent.invoke({"messages": [HumanMessage("go")]}, context={"principal": ALICE})
    assert "unexpected argument 'principal'" in tool_messages(result)[0].content
    assert RAN == {}


def test_approval_required_is_refused_clearly_until_approvals_exist(guard: Guard) -> None:
    admin_alice = ALICE.model_copy(update={"role": "admin"})
    model = ScriptedChatModel(
        turns=[ai_call("delete_contact", {"contact_id": "c-1"}, "c1"), AIMessage(content="ok")]
    )
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    result = agent.invoke({"messages": [HumanMessage("go")]}, context={"principal": admin_alice})
    msg = tool_messages(result)[0]
    assert "needs human approval (four_eyes)" in msg.content and "not run" in msg.content
    assert RAN == {}


def test_too_many_invalid_calls_stop_the_run(guard: Guard) -> None:
    turns = [ai_call("nope", {}, f"c{i}") for i in range(5)]
    model = ScriptedChatModel(turns=turns)
    agent = create_agent(model, ALL_TOOLS, middleware=[GuardMiddleware(guard)])
    with pytest.raises(RunAborted, match="3 invalid tool calls"):
        agent.invoke({"messages": [HumanMessage("go")]}, context={"principal": ALICE})
    assert model.calls == 3
    assert list(guard.audit.events())[-1].summary["stop_run"] is True


def test_a_new_user_turn_resets_the_invalid_call_budget(guard: Guard) -> None:
    turns = [ai_call("nope", {}, "a1"), ai_call("nope", {}, "a2"), AIMessage(content="sorry")] * 2
    agent = create_agent(
        ScriptedChatModel(turns=turns),
        ALL_TOOLS,
        middleware=[GuardMiddleware(guard)],
        checkpointer=InMemorySaver(),
    )
    for _ in range(2):
        agent.invoke(
            {"messages": [HumanMessage("go")]}, _config("budget"), context={"principal": ALICE}
        )


def test_user_error_handling_never_swallows_a_guard_stop(guard: Guard) -> None:
    turns = [ai_call("nope", {}, f"c{i}") for i in range(5)]
    graph = build_graph(ScriptedChatModel(turns=turns), guard, handle_tool_errors=True)
    with pytest.raises(RunAborted):
        graph.invoke({"messages": [HumanMessage("go")]}, _config(), context={"principal": ALICE})


def test_user_wrappers_run_inside_the_guard(guard: Guard) -> None:
    seen: list[dict[str, Any]] = []

    def mine(request: Any, execute: Any) -> Any:
        seen.append(request.tool_call["args"])
        return execute(request)

    graph = build_graph(ScriptedChatModel(turns=script()), guard, wrap_tool_call=mine)
    graph.invoke({"messages": [HumanMessage("go")]}, _config(), context={"principal": ALICE})
    assert seen == [GOOD_EMAIL]  # only the allowed call, with validated arguments


def test_wrapped_tools_with_tool_calls_and_plain_arguments(guard: Guard) -> None:
    tools = {t.name: t for t in guard.wrap_tools(ALL_TOOLS)}
    send = tools["send_email"]
    assert (
        send.tool_call_schema.model_json_schema()
        == ALL_TOOLS[2].tool_call_schema.model_json_schema()
    )
    with acting_for(ALICE):
        msg = send.invoke(call("send_email", {**GOOD_EMAIL, "cc": "x"}, "w1"))
        assert isinstance(msg, ToolMessage) and msg.status == "error"
        ok = send.invoke(call("send_email", GOOD_EMAIL, "w2"))
        assert isinstance(ok, ToolMessage) and ok.content == "sent to bob@acme.example"
        assert send.invoke(GOOD_EMAIL) == "sent to bob@acme.example"
        with pytest.raises(CallRefused, match="unexpected argument"):
            send.invoke({**GOOD_EMAIL, "cc": "x"})
        with pytest.raises(CallRefused, match="tenant"):
            tools["get_contact"].invoke({"contact_id": "c-9"})
    with pytest.raises(CallRefused, match="no trusted identity"):
        send.invoke(GOOD_EMAIL)
    assert RAN == {"send_email": 2}


async def test_wrapped_tools_async(guard: Guard) -> None:
    send = guard.wrap_tools(ALL_TOOLS)[2]
    with acting_for(ALICE):
        assert await send.ainvoke(GOOD_EMAIL) == "sent to bob@acme.example"
        with pytest.raises(CallRefused):
            await send.ainvoke({**GOOD_EMAIL, "cc": "x"})


def test_wrapped_tools_inside_a_plain_tool_node(guard: Guard) -> None:
    from langgraph.prebuilt import ToolNode

    builder = StateGraph(MessagesState)
    builder.add_node("model", lambda s: {"messages": []})
    model = ScriptedChatModel(turns=script())
    builder.add_node("llm", lambda s: {"messages": [model.invoke(s["messages"])]})
    builder.add_node("tools", ToolNode(guard.wrap_tools(ALL_TOOLS)))
    builder.add_edge(START, "llm")
    builder.add_conditional_edges("llm", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "llm")
    graph = builder.compile()
    result = graph.invoke({"messages": [HumanMessage("go")]}, context={"principal": ALICE})
    msgs = tool_messages(result)
    assert "unexpected argument 'bcc'" in msgs[0].content
    assert msgs[1].content == "sent to bob@acme.example"
    assert "[tenant]" in msgs[3].content
    assert RAN == {"send_email": 1}


def test_audit_records_decisions_and_executions(guard: Guard) -> None:
    agent = create_agent(
        ScriptedChatModel(turns=script()), ALL_TOOLS, middleware=[GuardMiddleware(guard)]
    )
    agent.invoke({"messages": [HumanMessage("go")]}, context={"principal": ALICE})
    rows = [(e.event, e.tool, e.result) for e in guard.audit.events()]
    assert rows == [
        ("decision", "send_email", "deny"),
        ("decision", "send_email", "allow"),
        ("execution", "send_email", "success"),
        ("content", "send_email", "pass"),  # its (untrusted) result, sanitized and scored
        ("decision", "export_contacts", "deny"),
        ("decision", "get_contact", "deny"),
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_parallel_calls_in_one_step_are_each_decided(guard: Guard, mode: str) -> None:
    many = AIMessage(
        content="",
        tool_calls=[
            {"name": "send_email", "args": GOOD_EMAIL, "id": "p1"},
            {"name": "get_contact", "args": {"contact_id": "c-9"}, "id": "p2"},
            {"name": "search_contacts", "args": {"query": "bob"}, "id": "p3"},
            {"name": "wire_funds", "args": {"iban": "DE00", "amount_cents": 5}, "id": "p4"},
        ],
    )
    graph = build_graph(ScriptedChatModel(turns=[many, AIMessage(content="ok")]), guard)
    inputs = {"messages": [HumanMessage("go")]}
    if mode == "sync":
        result = graph.invoke(inputs, _config(), context={"principal": ALICE})
    else:
        result = await graph.ainvoke(inputs, _config(), context={"principal": ALICE})
    by_id = {m.tool_call_id: m for m in tool_messages(result)}
    assert by_id["p1"].status == "success" and by_id["p3"].status == "success"
    assert by_id["p2"].status == "error" and by_id["p4"].status == "error"
    assert RAN == {"send_email": 1, "search_contacts": 1}
    assert guard.audit.verify().ok


def test_scripted_model_reset_rewinds_every_binding() -> None:
    model = ScriptedChatModel(turns=[AIMessage(content="one")])
    bound = model.bind_tools(ALL_TOOLS[:1])
    assert bound.invoke("x").content == "one"
    model.reset()
    assert bound.invoke("x").content == "one" and model.calls == 1
    with pytest.raises(RuntimeError, match="script has 1 turns"):
        model.invoke("x")


def test_wrapped_tool_without_policy_is_refused_not_crashed() -> None:
    g = Guard({"version": "1", "tools": {}})
    wrapped = g.wrap_tools(ALL_TOOLS[:1])[0]
    with acting_for(ALICE), pytest.raises(CallRefused, match="not a valid tool"):
        wrapped.invoke({"query": "x"})
    assert RAN == {}


def test_wrapped_tool_error_results_are_audited_as_errors() -> None:
    from langchain_core.tools import ToolException, tool

    @tool
    def flaky(query: str) -> str:
        """Always fails."""
        raise ToolException("backend down")

    flaky.handle_tool_error = True

    g = Guard({"version": "1", "tools": {"flaky": {"risk": "low"}}})
    wrapped = g.wrap_tools([flaky])[0]
    with acting_for(ALICE):
        msg = wrapped.invoke(call("flaky", {"query": "x"}, "f1"))
    assert isinstance(msg, ToolMessage) and msg.status == "error"
    executions = [(e.event, e.result) for e in g.audit.events() if e.event == "execution"]
    assert executions[-1] == ("execution", "error")
