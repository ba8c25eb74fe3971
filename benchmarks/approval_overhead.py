"""What configuring human approval costs a call that does not need it.

The same allowed call (an employee sending an email below their risk threshold) is decided by
two guards in the same run: one with no approval set-up, one with production `Approvals`
(SQLite ledger and store, a signature verifier) and an `approval:` block on the tool. Both the
decision alone (`Guard.check` + the door's settle and claim steps) and a whole
`GuardedToolNode` call are timed, in interleaved blocks so that drift hits both alike.

Goal: under 0.05 ms (50 µs) added per call.  Run: `python benchmarks/approval_overhead.py`
(`--quick` for a smoke run).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _bench import timed
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.runtime import Runtime

from agentguard import ApprovalAssertionVerifier, Approvals, Guard, Principal
from agentguard.audit import AuditLog, MemorySink
from agentguard.identity import CallContext
from agentguard.integrations._enact import settle
from agentguard.integrations.langgraph import GuardedToolNode

GOAL_US = 50.0
ALICE = Principal(tenant="acme", user="alice", role="employee")
ARGS = {"to": "bob@acme.example", "subject": "Moved", "body": "Now at 3pm."}


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    return "queued"


def policy(with_approval_block: bool) -> dict[str, Any]:
    tool_policy: dict[str, Any] = {
        "risk": "medium",
        "scopes": ["emails:send"],
        "egress": True,
        "args": {"to": {"format": "email"}},  # a recipient field: DLP lets the address stand
    }
    if with_approval_block:
        tool_policy["approval"] = {"expires_after_seconds": 600, "max_grant_seconds": 300}
    return {"version": "bench-1", "tools": {"send_email": tool_policy}}


def make_guard(approvals: Approvals | None) -> Guard:
    audit = AuditLog(MemorySink(), b"k" * 32, key_id="bench")
    return Guard(policy(approvals is not None), audit=audit, approvals=approvals)


def decision_path(guard: Guard) -> Callable[[], None]:
    tools = {"send_email": send_email}
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t", run_id="r")
    call = {"name": "send_email", "args": ARGS, "id": "c1"}

    def run() -> None:
        verdict = guard.check(call, ctx, tools)
        settled = settle(guard, verdict, ctx, tools)
        assert settled.message is None and settled.verdict.allowed
        assert guard.claim_approved(settled.verdict) is None

    return run


def node_path(guard: Guard) -> Callable[[], None]:
    node = GuardedToolNode([send_email], guard=guard)
    message = AIMessage(content="", tool_calls=[{"name": "send_email", "args": ARGS, "id": "c1"}])
    config: Any = {"configurable": {"__pregel_runtime": Runtime(context={"principal": ALICE})}}

    def run() -> None:
        out = node.invoke({"messages": [message]}, config)
        assert out["messages"][0].content == "queued"

    return run


def compare(
    name: str, base: Callable[[], None], gated: Callable[[], None], n: int, blocks: int
) -> float:
    for fn in (base, gated):  # warm up both
        timed(fn, max(20, n // 10))
    a: list[float] = []
    b: list[float] = []
    for i in range(blocks):  # alternate which goes first, so drift and caches hit both alike
        if i % 2:
            b += timed(gated, n)
            a += timed(base, n)
        else:
            a += timed(base, n)
            b += timed(gated, n)
    pa, pb = statistics.median(a), statistics.median(b)
    qa, qb = statistics.quantiles(a, n=10)[-1], statistics.quantiles(b, n=10)[-1]
    added = pb - pa
    print(
        f"{name:<34} {pa:9.1f} µs {pb:9.1f} µs {added:+9.1f} µs {100 * added / pa:+7.1f} %"
        f"   (p90 {qa:.1f} / {qb:.1f})"
    )
    return added


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    n, blocks = (50, 2) if quick else (500, 10)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "approvals.sqlite3"
        approvals = Approvals(
            verifier=ApprovalAssertionVerifier({"k1": b"s" * 32}, algorithms=["HS256"]),
            ledger=db,
            store=db,
        )
        plain, configured = make_guard(None), make_guard(approvals)
        print(f"python {sys.version.split()[0]}; {n} calls x {blocks} blocks per variant; p50\n")
        print(f"{'path':<34} {'no approvals':>12} {'configured':>12} {'added':>12} {'ratio':>8}")
        core = compare(
            "Guard.check + settle + claim",
            decision_path(plain),
            decision_path(configured),
            n,
            blocks,
        )
        node = compare(
            "GuardedToolNode call", node_path(plain), node_path(configured), max(n // 5, 10), blocks
        )
        print()
        verdict = "met" if max(core, node) < GOAL_US else "NOT met"
        print(f"goal: under {GOAL_US:.0f} µs added per call not gated -> {verdict}")
        approvals.ledger.close()
        approvals.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
