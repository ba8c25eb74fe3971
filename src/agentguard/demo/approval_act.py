"""The demo's second act: a call that needs another person's approval pauses the graph."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import ValidationError

from agentguard.approvals.assertions import ApprovalAssertionVerifier, ApprovalSigner, Binding
from agentguard.approvals.gate import Approvals
from agentguard.approvals.stepup import TotpVerifier
from agentguard.audit import AuditLog, MemorySink
from agentguard.context import Principal
from agentguard.demo import crm
from agentguard.guard import Guard
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.policy.model import Policy
from agentguard.testing import ScriptedChatModel

REQUEST = "Export all contacts as CSV for the quarterly review."


def approval_act(say: Callable[..., None], workdir: Path, policy: Policy) -> bool:
    """Run the act; True when everything behaved as the demo promises."""
    key = secrets.token_bytes(32)  # held by the approval service; the guard trusts it
    db = workdir / "approvals.sqlite3"
    approvals = Approvals(
        verifier=ApprovalAssertionVerifier({"inbox": key}, algorithms=["HS256"]),
        step_up=TotpVerifier(lambda p: None),
        ledger=db,
        store=db,
    )
    guard = Guard(
        policy,
        audit=AuditLog(MemorySink(), secrets.token_bytes(32), key_id="demo-2"),
        resources={"contact": crm.contact_owner},
        approvals=approvals,
    )
    ran: list[dict[str, Any]] = []
    tools = [t for t in crm.all_tools() if t.name != "export_contacts"] + [_export(ran)]
    call = {"name": "export_contacts", "args": {"format": "csv"}, "id": "call-x"}
    model = ScriptedChatModel(
        turns=[AIMessage(content="", tool_calls=[call]), "Here is the export."]
    )
    agent = create_agent(
        model, tools, middleware=[GuardMiddleware(guard)], checkpointer=InMemorySaver()
    )
    root = Principal(tenant="acme", user="root", role="admin", agent_id="sales-assistant")
    config: Any = {"configurable": {"thread_id": "demo-approval"}}
    context = {"principal": root}

    say("Act 2: a call that needs another person's approval")
    say(f"Acting for {root.user}@{root.tenant} (role {root.role}). User: {REQUEST}")
    result = agent.invoke(
        {"messages": [HumanMessage(REQUEST)]}, config, context=context, version="v2"
    )
    (pause,) = result.interrupts
    request = pause.value["action_requests"][0]
    ag = request["agentguard"]
    say(f"    graph paused (interrupt {pause.id[:12]}...): {request['description']}")
    say(
        f"    binding to sign: tool={ag['binding']['tool']} args_digest="
        f"{ag['binding']['args_digest'][:19]}... thread={ag['binding']['thread_id']} "
        f"policy={ag['binding']['policy_version']}"
    )
    refused_self = _try(
        agent, pause.id, _answer(key, ag, approver="root", role="admin"), config, context
    )
    say(f"    root approves his own agent's export -> refused: {refused_self}")
    unsigned = {"type": "approve", "approver": "ada"}
    refused_unsigned = _try(agent, pause.id, unsigned, config, context)
    say(f"    an unsigned 'approve' from ada -> refused: {refused_unsigned}")
    say(f"    still pending: {[i.id == pause.id for i in agent.get_state(config).interrupts]}")
    answer = _answer(key, ag, approver="ada", role="admin")
    agent.invoke(Command(resume={pause.id: answer}), config, context=context, version="v2")
    tool_msg = next(
        m for m in agent.get_state(config).values["messages"] if isinstance(m, ToolMessage)
    )
    say(f"    ada (admin) approves, signed by the approval service -> ran: {tool_msg.text}")
    agent.invoke(Command(resume={pause.id: answer}), config, context=context, version="v2")
    say(f"    the same answer sent again -> the export ran {len(ran)} time(s) in total")
    say("$ agentguard consent list " + str(db))
    entries = approvals.ledger.query(limit=10)
    for e in entries:
        say(
            f"  {e.decided_at:%H:%M:%S} {e.tool} {e.decision} by {','.join(e.approvers)} "
            f"({e.approver_role}, {e.method}) for {e.user}@{e.tenant} input={e.input_hash[:19]}..."
            f" args={json.dumps(e.input_summary)}"
        )
    say()
    return (
        len(ran) == 1
        and "other than the requester" in refused_self
        and "unsigned" in refused_unsigned
        and [e.decision for e in entries] == ["approve"]
    )


def _export(ran: list[dict[str, Any]]) -> Any:
    from langchain_core.tools import tool

    @tool("export_contacts")
    def export_contacts(format: str) -> str:
        """Bulk export of every contact in the tenant."""
        ran.append({"format": format})
        return f"exported 3 contacts as {format}"

    return export_contacts


def _answer(key: bytes, ag: dict[str, Any], *, approver: str, role: str) -> dict[str, Any]:
    token = ApprovalSigner(key, kid="inbox", algorithm="HS256").sign(
        approver=approver,
        approver_role=role,
        tenant="acme",
        decision="approve",
        binding=Binding(**ag["binding"]),
    )
    return {"type": "approve", "assertion": token}


def _try(agent: Any, interrupt_id: str, answer: Any, config: Any, context: Any) -> str:
    try:
        agent.invoke(Command(resume={interrupt_id: answer}), config, context=context, version="v2")
    except ValidationError as exc:
        return str(exc).split("Value error, ", 1)[-1].split(" [type=", 1)[0]
    return "ACCEPTED (unexpected)"
