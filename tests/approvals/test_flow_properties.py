"""Properties of the review state machine, driven the way LangGraph drives it.

LangGraph re-runs a paused task from the start on every resume and replays the answers it
saved; an answer that fails validation is not saved. The simulation below does the same with
random answers, and checks the outcome against a plain statement of the four-eyes rule.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from agentguard import Guard
from agentguard.approvals.gate import ApprovalFlow
from agentguard.identity import CallContext
from agentguard.verdict import Decision

from .flowkit import ALICE, POLICY, Ran, dev, make_tools

ROLES = {"alice": "employee", "mia": "manager", "max": "manager", "root": "admin", "vic": "viewer"}
APPROVING = {"mia", "max", "root"}  # four-eyes roles (admin, manager), never the requester

answers = st.one_of(
    st.builds(
        lambda who: {"type": "approve", "approver": who, "approver_role": ROLES[who]},
        st.sampled_from(sorted(ROLES)),
    ),
    st.builds(
        lambda who: {"type": "reject", "approver": who, "approver_role": ROLES[who]},
        st.sampled_from(sorted(ROLES)),
    ),
    st.just({"type": "approve"}),  # names nobody
    st.just({"type": "maybe"}),
)


def oracle(sequence: list[dict[str, Any]]) -> str:
    """What the four-eyes rule says should happen to the call."""
    approved: list[str] = []
    seen: set[str] = set()
    for answer in sequence:
        if answer["type"] not in ("approve", "reject"):
            continue  # malformed: refused by the schema, as if never sent
        key = json.dumps(answer, sort_keys=True)
        if key in seen:
            continue  # the same answer again: it counts for nothing
        seen.add(key)
        who = answer.get("approver")
        if answer["type"] == "reject" and (who == "alice" or who in APPROVING):
            return "refuse"
        if answer["type"] == "approve" and who in APPROVING and who not in approved:
            approved.append(who)
            if len(approved) == 2:
                return "run"
    return "pending"


def new_flow(guard: Guard, tools: dict[str, Any]) -> ApprovalFlow:
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t", run_id="r")
    call = {"name": "delete_contact", "args": {"contact_id": "k-1"}, "id": "d1"}
    verdict = guard.check(call, ctx, tools)
    assert verdict.decision is Decision.APPROVE_FIRST
    return guard.approval_flow(verdict, ctx, tools, namespace="tools:task-1")


def ask(flow: ApprovalFlow, answer: Any) -> Any:
    """What `interrupt(..., response_schema=...)` does with an answer."""
    with flow.answering():
        return TypeAdapter(flow.response_schema()).validate_python(answer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(answers, max_size=8))
def test_four_eyes_outcome_matches_the_rule_under_replay(sequence: list[dict[str, Any]]) -> None:
    guard = Guard(POLICY, approvals=dev())
    tools = {t.name: t for t in make_tools(Ran())}
    saved: list[Any] = []
    outcome = None
    for answer in sequence:
        flow = new_flow(guard, tools)  # the task re-runs from the start...
        for old in saved:  # ...and LangGraph replays what it saved, which must never fail
            flow.take(ask(flow, old))
        assert flow.outcome is None
        try:
            step = ask(flow, answer)
        except ValidationError:
            continue  # refused: not saved, the question stays open
        saved.append(answer)
        flow.take(step)
        if flow.outcome is not None:
            outcome = flow.outcome.kind
            break
    assert (outcome or "pending") == oracle(sequence)
    if outcome == "run":
        ledger = guard.approvals.ledger if guard.approvals else None
        assert ledger is not None
        approvers = {e.approvers[0] for e in ledger.query(limit=100) if e.decision == "approve"}
        assert len(approvers & APPROVING) >= 2 and "alice" not in approvers
