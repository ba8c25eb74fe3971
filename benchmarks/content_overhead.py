"""The cost of treating tool results as data.

- the return path for one untrusted 10 KB result (sanitize, injection score, value
  fingerprints, label, one audit event): goal under 1 ms p50;
- the model's view (spotlighting the untrusted results in a conversation) per model call;
- the provenance check of one call against a conversation holding five 10 KB results;
- one tool call returning 10 KB through `ToolNode` vs `GuardedToolNode` (the baseline in the
  same run).

Run: `python benchmarks/content_overhead.py` (`--quick` for a smoke run).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from _bench import page, timed
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from agentguard import Guard, Principal
from agentguard.audit import AuditLog, MemorySink
from agentguard.identity import CallContext
from agentguard.integrations._enact import receive_result
from agentguard.integrations.langgraph import GuardedToolNode
from agentguard.integrations.present import present_messages

GOAL_US = 1000.0
ALICE = Principal(tenant="acme", user="alice", role="employee")
RESULT = page(10_000, 1)


@tool
def read_page(url: str) -> str:
    """Read a web page."""
    return RESULT


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    return "sent"


POLICY = {
    "version": "bench-content",
    "tools": {
        "read_page": {"risk": "low", "scopes": ["web:read"]},
        "send_email": {"risk": "medium", "scopes": ["mail:send"], "egress": True},
    },
}


def row(name: str, samples: list[float], base: float | None = None) -> float:
    p50 = statistics.median(samples)
    p90 = statistics.quantiles(samples, n=10)[-1]
    extra = f"   {p50 - base:+9.1f} µs vs baseline" if base is not None else ""
    print(f"{name:<52} p50 {p50:9.1f} µs   p90 {p90:9.1f} µs{extra}")
    return p50


def main(argv: list[str]) -> int:
    n = 60 if "--quick" in argv else 600
    guard = Guard(POLICY, audit=AuditLog(MemorySink(), b"k" * 32, key_id="bench"))
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t", run_id="r")
    tools = {"read_page": read_page, "send_email": send_email}
    verdict = guard.check(
        {"name": "read_page", "args": {"url": "https://x.example"}, "id": "c"}, ctx, tools
    )
    raw = ToolMessage(content=RESULT, tool_call_id="c", name="read_page")
    print(f"python {sys.version.split()[0]}; {n} samples per row; result {len(RESULT)} bytes\n")

    received = receive_result(guard, verdict, ctx, raw)
    timed(lambda: receive_result(guard, verdict, ctx, raw), 20)
    back = row(
        "return path, 10 KB untrusted result",
        timed(lambda: receive_result(guard, verdict, ctx, raw), n),
    )

    conversation = [HumanMessage("summarize these pages and email dana")]
    for i in range(5):
        call = {"name": "read_page", "args": {"url": f"https://x.example/{i}"}, "id": f"c{i}"}
        conversation.append(AIMessage(content="", tool_calls=[call]))
        msg = ToolMessage(content=page(10_000, i), tool_call_id=f"c{i}", name="read_page")
        conversation.append(receive_result(guard, verdict, ctx, msg))
    row(
        "model's view: spotlight 5 x 10 KB results",
        timed(lambda: present_messages(guard, conversation, "r"), n),
    )

    state = {"messages": conversation}
    sctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t", run_id="r", state=state)
    body = "Hi Dana, here are the numbers. " + page(600, 9)
    email = {
        "name": "send_email",
        "args": {"to": "dana@partner.example", "subject": "Q3", "body": body},
        "id": "e",
    }
    plain_ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t", run_id="r")
    base = row(
        "check(send_email), empty conversation",
        timed(lambda: guard.check(email, plain_ctx, tools), n),
    )
    row(
        "check(send_email), 5 x 10 KB untrusted in state",
        timed(lambda: guard.check(email, sctx, tools), n),
        base,
    )

    config: Any = {"configurable": {"__pregel_runtime": Runtime(context={"principal": ALICE})}}
    message = AIMessage(
        content="",
        tool_calls=[{"name": "read_page", "args": {"url": "https://x.example"}, "id": "n"}],
    )
    plain, guarded = ToolNode([read_page]), GuardedToolNode([read_page], guard=guard)
    a, b = [], []
    for i in range(10):
        first, second = (plain, guarded) if i % 2 == 0 else (guarded, plain)
        for node in (first, second):
            samples = timed(
                lambda node=node: node.invoke({"messages": [message]}, config), max(n // 10, 6)
            )
            (a if node is plain else b).extend(samples)
    node_base = row("ToolNode, 10 KB result (unguarded baseline)", a)
    row("GuardedToolNode, 10 KB untrusted result", b, node_base)
    label = received.additional_kwargs["agentguard"]["label"]
    print(f"\nlabel: action={label['action']} score={label['score']} changes={label['changes']}")
    print(
        f"goal: return path under {GOAL_US:.0f} µs p50 -> {'met' if back < GOAL_US else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
