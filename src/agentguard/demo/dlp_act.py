"""The demo's fourth act: secrets and personal data in an outbound payload (DLP).

DLP needs no wiring: `send_email` is an `egress` tool, so its arguments are scanned before it
runs. A secret blocks the call; a customer's address outside the `to` field (which the policy
declares `format: email`) pauses it for a person, who sees a pseudonym, never the address.
"""

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

from agentguard.approvals.assertions import ApprovalAssertionVerifier, ApprovalSigner, Binding
from agentguard.approvals.gate import Approvals
from agentguard.audit import AuditLog, MemorySink
from agentguard.context import Principal
from agentguard.demo import crm
from agentguard.guard import Guard
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.policy.model import Policy
from agentguard.testing import ScriptedChatModel

DEPLOY_KEY = "AKIAZ7QW3RT5YU2IOP4M"  # a made-up AWS access key id, shaped like a real one
CUSTOMER = "carol@customer.example"
KEY_REQUEST = "The contractor needs our deploy key from the runbook; email it to him."
INTRO_REQUEST = "Introduce our partner Dana to Carol, the customer, by email."


def dlp_act(say: Callable[..., None], workdir: Path, policy: Policy) -> bool:
    """Run the act; True when the key never left and the address left only once approved."""
    key = secrets.token_bytes(32)  # held by the approval service; the guard trusts it
    db = workdir / "dlp-approvals.sqlite3"
    sink = MemorySink()
    guard = Guard(
        policy,
        audit=AuditLog(sink, secrets.token_bytes(32), key_id="demo-4"),
        resources={"contact": crm.contact_owner},
        approvals=Approvals(
            verifier=ApprovalAssertionVerifier({"inbox": key}, algorithms=["HS256"]),
            ledger=db,
            store=db,
        ),
    )
    leak = {"to": "ops@contractor.example", "subject": "Deploy key", "body": f"It is {DEPLOY_KEY}."}
    intro = {
        "to": "dana@partner.example",
        "subject": "Introduction",
        "body": f"Dana, meet Carol from our customer team: {CUSTOMER}.",
    }
    model = ScriptedChatModel(
        turns=[
            _call(leak, "k1"),
            "I could not send it: the guard does not let keys leave.",
            _call(intro, "e1"),
            "Done: Dana and Carol are introduced.",
        ]
    )
    agent = create_agent(
        model, crm.all_tools(), middleware=[GuardMiddleware(guard)], checkpointer=InMemorySaver()
    )
    alice = Principal(tenant="acme", user="alice", role="employee", agent_id="sales-assistant")
    context = {"principal": alice}

    say("Act 4: secrets and personal data in what leaves (DLP, on for egress tools by default)")
    say(f"User: {KEY_REQUEST}")
    say(f"    model calls send_email({_fmt(leak)})")
    config: Any = {"configurable": {"thread_id": "demo-dlp-key"}}
    out = agent.invoke(
        {"messages": [HumanMessage(KEY_REQUEST)]}, config, context=context, version="v2"
    )
    refusal = next(m for m in out.value["messages"] if isinstance(m, ToolMessage))
    say("    guard: REFUSED (dlp); nothing ran. The model reads (the type and field, not the key):")
    for line in refusal.text.splitlines():
        say(f"      | {line}")
    event = next(e for e in sink.records if e["event"] == "decision" and e["result"] == "deny")
    findings = json.dumps(event["summary"]["dlp"])
    say(f"    the audit event: {event['reason']}, findings {findings} (no values)")
    say()
    say(f"User: {INTRO_REQUEST}")
    say(f"    model calls send_email({_fmt(intro)})")
    config = {"configurable": {"thread_id": "demo-dlp-intro"}}
    out = agent.invoke(
        {"messages": [HumanMessage(INTRO_REQUEST)]}, config, context=context, version="v2"
    )
    (pause,) = out.interrupts
    request = pause.value["action_requests"][0]
    ag = request["agentguard"]
    say("    graph paused: an address outside 'to' needs a yes. The reviewer sees:")
    say(f"      args:     {_fmt(request['args'])}")
    say(f"      findings: {json.dumps(ag['dlp_findings'])}")
    shown = json.dumps(pause.value)
    sent_before = len(crm.OUTBOX)
    token = ApprovalSigner(key, kid="inbox", algorithm="HS256").sign(
        approver="alice",
        approver_role="employee",
        tenant="acme",
        decision="approve",
        binding=Binding(**ag["binding"]),
    )
    answer = {"type": "approve", "assertion": token}
    agent.invoke(Command(resume={pause.id: answer}), config, context=context, version="v2")
    sent = crm.OUTBOX[sent_before:]
    say("    alice approves (signed) -> the real call runs, address and all; the email as sent:")
    for mail in sent:
        say(f"      {_fmt(mail)}")
    say()
    return (
        "AWS_ACCESS_KEY_ID in $.body" in refusal.text
        and DEPLOY_KEY not in refusal.text
        and DEPLOY_KEY not in json.dumps(sink.records)
        and CUSTOMER not in shown
        and "<EMAIL_ADDRESS_1>" in request["args"]["body"]
        and sent == [intro]
    )


def _call(args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "send_email", "args": args, "id": call_id}])


def _fmt(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
