"""A small kit for driving guarded agents into approval interrupts and answering them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.types import Command, Interrupt

from agentguard import Guard, Principal
from agentguard._canonical import digest
from agentguard.approvals.assertions import ApprovalAssertionVerifier, ApprovalSigner, Binding
from agentguard.approvals.gate import Approvals
from agentguard.approvals.stepup import TotpVerifier
from agentguard.audit import AuditLog, MemorySink
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.integrations.langgraph import (
    GuardedModelNode,
    GuardedToolNode,
    route_tool_calls,
)
from agentguard.testing import ScriptedChatModel

KEY = b"approval-test-key-0123456789abcdef"
ALICE = Principal(tenant="acme", user="alice", role="employee", agent_id="crm-agent")

POLICY: dict[str, Any] = {
    "version": "flow-1",
    "tools": {
        "search": {"risk": "low", "scopes": ["docs:read"]},
        "send_email": {
            "risk": "medium",
            "scopes": ["emails:send"],
            "confirmation": "confirm",
            "egress": True,
            "args": {"to": {"pattern": r"^[^@\s]+@example\.com$"}},
            "dlp": {"fields": {"to": {"EMAIL_ADDRESS": "allow"}}},
            "approval": {"max_grant_seconds": 900},
        },
        "pay_invoice": {
            "risk": "medium",
            "scopes": ["billing:write"],
            "confirmation": "step_up",
        },
        "export_contacts": {
            "risk": "medium",
            "scopes": ["contacts:read"],
            "confirmation": "admin_approval",
        },
        "delete_contact": {
            "risk": "medium",
            "scopes": ["contacts:write"],
            "confirmation": "four_eyes",
        },
        "close_account": {
            "risk": "medium",
            "scopes": ["accounts:write"],
            "confirmation": "not_allowed_for_ai",
        },
        "ask_user": {
            "risk": "low",
            "scopes": ["docs:read"],
            "confirmation": "confirm",
            "approval": {"decisions": ["respond", "reject"]},
        },
    },
}


@dataclass
class Ran:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)


def make_tools(ran: Ran) -> list[BaseTool]:
    @tool
    def search(query: str) -> str:
        """Search documents."""
        ran.calls.append(("search", {"query": query}))
        return f"results for {query}"

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        ran.calls.append(("send_email", {"to": to, "body": body}))
        return f"sent to {to}"

    @tool
    def pay_invoice(invoice_id: str, amount_cents: int) -> str:
        """Pay an invoice."""
        ran.calls.append(("pay_invoice", {"invoice_id": invoice_id}))
        return f"paid {invoice_id}"

    @tool
    def export_contacts(format: str) -> str:
        """Export contacts."""
        ran.calls.append(("export_contacts", {"format": format}))
        return "exported"

    @tool
    def delete_contact(contact_id: str) -> str:
        """Delete a contact."""
        ran.calls.append(("delete_contact", {"contact_id": contact_id}))
        return f"deleted {contact_id}"

    @tool
    def close_account(account_id: str) -> str:
        """Close an account."""
        ran.calls.append(("close_account", {"account_id": account_id}))
        return "closed"

    @tool
    def ask_user(question: str) -> str:
        """Ask the user something."""
        ran.calls.append(("ask_user", {"question": question}))
        return "the tool itself should never answer"

    return [
        search,
        send_email,
        pay_invoice,
        export_contacts,
        delete_contact,
        close_account,
        ask_user,
    ]


def tool_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def calls_turn(*calls: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(calls))


def no_totp() -> TotpVerifier:
    """A step-up verifier nobody is enrolled with (the policy has a step_up tool)."""
    return TotpVerifier(lambda p: None)


def production(tmp_path: Path, **kwargs: Any) -> Approvals:
    verifier = ApprovalAssertionVerifier({"k1": KEY}, algorithms=["HS256"])
    db = tmp_path / f"approvals-{secrets.token_hex(4)}.sqlite3"
    kwargs.setdefault("step_up", no_totp())
    return Approvals(verifier=verifier, ledger=db, store=db, **kwargs)


def dev(**kwargs: Any) -> Approvals:
    kwargs.setdefault("step_up", no_totp())
    return Approvals(development=True, **kwargs)


SIGNER = ApprovalSigner(KEY, kid="k1", algorithm="HS256")


def action(intr: Interrupt) -> dict[str, Any]:
    request: dict[str, Any] = intr.value["action_requests"][0]
    return request


def sign(
    intr: Interrupt,
    decision: str = "approve",
    *,
    approver: str = "alice",
    role: str = "employee",
    tenant: str = "acme",
    edited_args: dict[str, Any] | None = None,
    signer: ApprovalSigner = SIGNER,
    **kw: Any,
) -> str:
    binding = Binding(**action(intr)["agentguard"]["binding"])
    return signer.sign(
        approver=approver,
        approver_role=role,
        tenant=tenant,
        decision=decision,  # type: ignore[arg-type]
        binding=binding,
        edited_args_digest=digest(edited_args) if edited_args is not None else None,
        **kw,
    )


class Agent:
    """A guarded agent (create_agent, or a hand-built graph with GuardedToolNode)."""

    def __init__(
        self,
        turns: Sequence[Any],
        *,
        approvals: Approvals | None,
        policy: dict[str, Any] | None = None,
        kind: str = "create_agent",
        checkpointer: Any = "memory",
        principal: Principal = ALICE,
        guard_kwargs: dict[str, Any] | None = None,
        thread: str = "t-1",
    ) -> None:
        self.ran = Ran()
        self.tools = make_tools(self.ran)
        self.audit = AuditLog(MemorySink(), secrets.token_bytes(32), key_id="t")
        self.guard = Guard(
            policy or POLICY, audit=self.audit, approvals=approvals, **(guard_kwargs or {})
        )
        self.model = ScriptedChatModel(turns=list(turns) + ["done"] * 3)
        saver = InMemorySaver() if checkpointer == "memory" else checkpointer
        if kind == "create_agent":
            self.graph = create_agent(
                self.model,
                self.tools,
                middleware=[GuardMiddleware(self.guard)],
                checkpointer=saver,
            )
        else:
            g = StateGraph(MessagesState)
            g.add_node("model", GuardedModelNode(self.model, self.tools, guard=self.guard))
            g.add_node("tools", GuardedToolNode(self.tools, guard=self.guard))
            g.add_edge(START, "model")
            if kind == "toolnode-send":  # every call its own task
                g.add_conditional_edges("model", route_tool_calls, ["tools", END])
            else:
                g.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
            g.add_edge("tools", "model")
            self.graph = g.compile(checkpointer=saver)
        self.config: dict[str, Any] = {"configurable": {"thread_id": thread}}
        self.principal = principal
        self.result: Any = None

    def start(self, text: str = "go") -> tuple[Interrupt, ...]:
        self.result = self.graph.invoke(
            {"messages": [("user", text)]},
            self.config,
            context={"principal": self.principal},
            version="v2",
        )
        return tuple(self.result.interrupts)

    def answer(self, resume: Any, *, principal: Principal | None = None) -> tuple[Interrupt, ...]:
        self.result = self.graph.invoke(
            Command(resume=resume),
            self.config,
            context={"principal": principal or self.principal},
            version="v2",
        )
        return tuple(self.result.interrupts)

    async def astart(self, text: str = "go") -> tuple[Interrupt, ...]:
        self.result = await self.graph.ainvoke(
            {"messages": [("user", text)]},
            self.config,
            context={"principal": self.principal},
            version="v2",
        )
        return tuple(self.result.interrupts)

    async def aanswer(self, resume: Any) -> tuple[Interrupt, ...]:
        self.result = await self.graph.ainvoke(
            Command(resume=resume),
            self.config,
            context={"principal": self.principal},
            version="v2",
        )
        return tuple(self.result.interrupts)

    def pending(self) -> tuple[Interrupt, ...]:
        return tuple(self.graph.get_state(self.config).interrupts)

    def messages(self) -> list[BaseMessage]:
        return list(self.graph.get_state(self.config).values["messages"])

    def tool_messages(self) -> dict[str, ToolMessage]:
        return {str(m.tool_call_id): m for m in self.messages() if isinstance(m, ToolMessage)}

    def events(self, kind: str | None = None) -> list[Any]:
        return [e for e in self.audit.events() if kind is None or e.event == kind]

    def by_name(self, interrupts: Sequence[Interrupt]) -> dict[str, Interrupt]:
        return {action(i)["name"]: i for i in interrupts}


Answer = Callable[[Interrupt], Any]
