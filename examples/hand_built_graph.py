"""A hand-built LangGraph graph guarded by GuardedModelNode + GuardedToolNode.

Run: .venv/bin/python examples/hand_built_graph.py
Swap ScriptedChatModel for a real chat model (e.g. `init_chat_model("openai:gpt-4.1")`) to
use it for real; nothing else changes.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition

from agentguard import Guard, GuardedModelNode, GuardedToolNode, Principal
from agentguard.demo import crm
from agentguard.testing import ScriptedChatModel

POLICY = {
    "version": "example-1",
    "tools": {
        "search_contacts": {"risk": "low", "scopes": ["contacts:read"]},
        "send_email": {"risk": "medium", "scopes": ["emails:send"], "egress": True},
    },
}


def build(model: ScriptedChatModel, guard: Guard) -> Any:
    tools = [crm.search_contacts, crm.send_email]
    builder = StateGraph(MessagesState)
    builder.add_node("model", GuardedModelNode(model, tools, guard=guard))
    builder.add_node("tools", GuardedToolNode(tools, guard=guard))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver())


def main() -> None:
    guard = Guard(POLICY)
    model = ScriptedChatModel(
        turns=[
            AIMessage(
                content="",
                tool_calls=[{"name": "search_contacts", "args": {"query": "Bob"}, "id": "1"}],
            ),
            AIMessage(content="Found Bob Lee."),
        ]
    )
    graph = build(model, guard)
    viewer = Principal(tenant="acme", user="vic", role="viewer")
    result = graph.invoke(
        {"messages": [HumanMessage("find Bob")]},
        {"configurable": {"thread_id": "example"}},
        context={"principal": viewer},
    )
    for message in result["messages"]:
        print(f"{message.type:>6}: {message.content or message.tool_calls}")
    print("tools the viewer's model saw:", model.seen_tools[0])


if __name__ == "__main__":
    main()
