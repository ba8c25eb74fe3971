"""Three guarded agents for `langgraph dev` (see `langgraph.json` at the repository root).

- `server_agent`: a `create_agent` graph; identity from the server's auth handler
  (`FromServerAuth`); whatever the client writes into the run `context` is ignored for identity.
- `toolnode_agent`: the same tools and guard settings in a hand-built `StateGraph` with
  `GuardedModelNode` + `GuardedToolNode`.
- `naive_agent`: the default `FromContext` identity, which refuses every call on a server
  because there the client writes the run context.

`send_email` needs the acting user's confirmation here (the demo policy, with
`confirmation: confirm` added for it): the run pauses with an interrupt, and only an answer
carrying an approval assertion signed with the approval key counts (production mode). Studio
walk-through: docs/studio.md. Make an answer with `sign_answer(...)`, or from a shell:

    python examples/studio_graphs.py sign <thread_id> approve      # prints the resume value

Memory: `remember` and `recall` keep notes in the acting user's own memory (`("user",
"notes")`) through LangGraph's store injection (`ToolRuntime.store`). The server's store is
`examples/studio_store.py`, a `GuardedStore` scoped per operation to the user the auth handler
authenticated, so a note written in a run is the one the same user reads through the server's
HTTP store API, and nobody else's.

The chat model is offline and deterministic: a user message `call <tool> <json-args>` (for
example `call get_contact {"contact_id": "c-101"}` or `call remember {"note": "..."}`) becomes
that tool call; after a tool result it answers `tool said: <content>`. Swap in a real chat
model to use Studio interactively.
The graphs are compiled without a checkpointer or store: the server provides them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from uuid import uuid4

from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolRuntime, tools_condition
from langgraph.store.base import BaseStore

from agentguard import Guard, GuardedModelNode, GuardedToolNode
from agentguard import args_digest as digest
from agentguard.approvals import gate
from agentguard.approvals.assertions import (
    ApprovalAssertionVerifier,
    ApprovalSigner,
    Binding,
    DecisionKind,
)
from agentguard.approvals.gate import Approvals
from agentguard.audit import AuditLog
from agentguard.audit.defaults import default_audit_log
from agentguard.demo import crm
from agentguard.identity import FromServerAuth, IdentitySource
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.policy.loader import load_policy, parse_policy_text
from agentguard.policy.model import Policy

log = logging.getLogger("agentguard.studio")

_CALL = re.compile(r"^\s*call\s+([A-Za-z0-9_\-]+)\s*(.*)$", re.DOTALL)


def _unmarked(text: str) -> str:
    """The data inside the guard's spotlight markers (a real model reads the markers)."""
    lines = text.split("\n")
    if (
        len(lines) >= 2
        and lines[0].startswith("<<untrusted-data ")
        and lines[-1].startswith("<<end-untrusted-data ")
    ):
        return "\n".join(lines[1:-1])
    return text


class CommandChatModel(BaseChatModel):
    """Offline chat model that turns `call <tool> <json-args>` into a tool call."""

    @property
    def _llm_type(self) -> str:
        return "agentguard-studio-command"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> CommandChatModel:
        return self  # it calls whatever the user names; the guard decides what runs

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages))])

    @staticmethod
    def _answer(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1] if messages else None
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"tool said: {_unmarked(last.text)}")
        if isinstance(last, HumanMessage):
            match = _CALL.match(last.text)
            if match:
                name, raw = match.group(1), match.group(2).strip() or "{}"
                try:
                    args = json.loads(raw)
                except json.JSONDecodeError as exc:
                    return AIMessage(content=f"could not parse the arguments: {exc}")
                call_id = f"call-{len(messages)}"
                return AIMessage(
                    content="", tool_calls=[{"name": name, "args": args, "id": call_id}]
                )
        return AIMessage(content='say: call <tool> <json-args>, e.g. call get_contact {"...": ""}')


# -- approvals: who may answer a paused call, and where decisions are kept -----------------

APPROVAL_KEY_ENV = "AGENTGUARD_STUDIO_APPROVAL_KEY"
APPROVAL_KID = "studio"
APPROVAL_ALGORITHM = "HS256"
#: DEMO ONLY. This key is published in this repository, so a signature made with it proves
#: nothing: anyone can sign with it. It is here so Studio and the tests work out of the box.
#: Anything real sets `AGENTGUARD_STUDIO_APPROVAL_KEY` (hex, >= 32 bytes) and keeps it in the
#: approval service only; better, an asymmetric key whose private half only that service holds.
DEMO_APPROVAL_KEY_HEX = (  # "agentguard-studio-DEMO-ONLY-key-never-use-in-prod"
    "6167656e7467756172642d73747564696f2d44454d4f2d4f4e4c592d6b65792d"
    "6e657665722d7573652d696e2d70726f64"
)


def approval_key() -> bytes:
    """The HS256 approval key: `$AGENTGUARD_STUDIO_APPROVAL_KEY` (hex), else the demo key."""
    return bytes.fromhex(os.environ.get(APPROVAL_KEY_ENV, "").strip() or DEMO_APPROVAL_KEY_HEX)


def approvals_path() -> str:
    """Consent ledger + approval store (SQLite), outside the project folder: a file written
    inside it would trigger `langgraph dev`'s hot reload."""
    return os.environ.get(gate.PATH_ENV) or str(
        Path(tempfile.gettempdir()) / "agentguard-studio-approvals.sqlite3"
    )


def _approvals() -> Approvals:
    if not os.environ.get(APPROVAL_KEY_ENV, "").strip():
        log.warning(
            "agentguard studio: approvals are verified with the published DEMO key; set %s",
            APPROVAL_KEY_ENV,
        )
    verifier = ApprovalAssertionVerifier(
        {APPROVAL_KID: approval_key()}, algorithms=[APPROVAL_ALGORITHM]
    )
    path = approvals_path()
    return Approvals(verifier=verifier, ledger=path, store=path)


def sign_answer(
    action_request: Mapping[str, Any],
    decision: DecisionKind,
    *,
    approver: str,
    approver_role: str,
    tenant: str,
    edited_args: Mapping[str, Any] | None = None,
    message: str | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """A resume value for one paused call: the answer plus its signed approval assertion.

    `action_request` is `interrupt.value["action_requests"][0]`. This is what an approval
    service does after it authenticated the reviewer (`approver`, `approver_role`, `tenant`);
    it is the only place that needs the key.
    """
    binding = Binding.from_claims(action_request["agentguard"]["binding"])
    signer = ApprovalSigner(key or approval_key(), kid=APPROVAL_KID, algorithm=APPROVAL_ALGORITHM)
    answer: dict[str, Any] = {"type": decision}
    edited_digest = None
    if decision == "edit":
        if edited_args is None:
            raise ValueError("an edit needs edited_args")
        answer["edited_action"] = {"name": action_request["name"], "args": dict(edited_args)}
        edited_digest = digest(answer["edited_action"]["args"])
    if decision in ("reject", "respond") and message is not None:
        answer["message"] = message
    elif decision == "respond":
        raise ValueError("a respond answer needs a message")
    answer["assertion"] = signer.sign(
        approver=approver,
        approver_role=approver_role,
        tenant=tenant,
        decision=decision,
        binding=binding,
        edited_args_digest=edited_digest,
    )
    return answer


# -- memory tools: the acting user's notes, through store injection -------------------------

NOTES = ("user", "notes")  # scope label first: the store maps it to this user's own memory


def _memory(runtime: ToolRuntime) -> BaseStore:
    if runtime.store is None:
        raise RuntimeError("no memory store: serve the graph with the store in langgraph.json")
    return runtime.store


@tool
def remember(note: str, runtime: ToolRuntime) -> str:
    """Remember a note for the user; only they can read it back."""
    key = uuid4().hex
    _memory(runtime).put(NOTES, key, {"note": note})
    return f"remembered ({key})"


@tool
def recall(runtime: ToolRuntime) -> str:
    """The user's notes, newest first."""
    items = _memory(runtime).search(NOTES, limit=20)
    items.sort(key=lambda item: item.updated_at, reverse=True)
    return "\n".join(str(item.value.get("note")) for item in items) or "no notes"


def all_tools() -> list[BaseTool]:
    """The demo CRM tools and the two memory tools."""
    return [*crm.all_tools(), remember, recall]


# -- the graphs ----------------------------------------------------------------------------


def _policy() -> Policy:
    """The demo CRM policy, with `send_email` needing the acting user's confirmation, and
    entries for the memory tools (a tool without one is refused)."""
    text = resources.files("agentguard.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
    data = parse_policy_text(text)
    data["version"] = f"{data['version']}+studio"
    data["tools"]["send_email"]["confirmation"] = "confirm"
    data["tools"]["remember"] = {
        "description": "Writes a note to the acting user's own memory.",
        "risk": "low",
        "args": {"note": {"max_length": 500}},
    }
    data["tools"]["recall"] = {"description": "Reads the acting user's notes.", "risk": "low"}
    return load_policy(data)


def _shared_audit() -> AuditLog:
    """One audit log per process, for every guard here and for the memory store.

    A second `AuditLog` on the same SQLite file (with `AGENTGUARD_AUDIT_KEY` set) would fork
    the hash chain, and the file refuses the second writer. `langgraph dev` imports this file
    twice: once through `studio_store.py` (the store factory, loaded first) and once for the
    graphs, under another module name; the second copy takes the first one's log.
    """
    here = Path(__file__).resolve()
    for module in list(sys.modules.values()):
        log_ = getattr(module, "AUDIT", None)
        file = getattr(module, "__file__", None)
        if isinstance(log_, AuditLog) and file and Path(file).resolve() == here:
            return log_
    return default_audit_log()


POLICY = _policy()
APPROVALS = _approvals()
AUDIT = _shared_audit()


def record_memory_event(fields: dict[str, Any]) -> None:
    """The memory store's audit writer: its events join the guards' hash chain."""
    AUDIT.append_fields(fields)


def _guard(identity: IdentitySource | None) -> Guard:
    """Audit: `AUDIT` (in memory unless `AGENTGUARD_AUDIT_KEY` is set); approvals are
    signed-only (production mode)."""
    return Guard(
        POLICY,
        identity=identity,
        resources={"contact": crm.contact_owner},
        approvals=APPROVALS,
        audit=AUDIT,
    )


def build_agent(identity: IdentitySource | None) -> Any:
    """A `create_agent` graph over the demo CRM tools and the memory tools."""
    guard = _guard(identity)
    return create_agent(CommandChatModel(), all_tools(), middleware=[GuardMiddleware(guard)])


def build_toolnode_agent(identity: IdentitySource | None) -> Any:
    """The same agent, hand-built: model node -> guarded tool node -> model node."""
    guard = _guard(identity)
    tools = all_tools()
    builder = StateGraph(MessagesState)
    builder.add_node("model", GuardedModelNode(CommandChatModel(), tools, guard=guard))
    builder.add_node("tools", GuardedToolNode(tools, guard=guard))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "model")
    return builder.compile()  # no checkpointer: `langgraph dev` provides one


server_agent = build_agent(FromServerAuth())
toolnode_agent = build_toolnode_agent(FromServerAuth())
naive_agent = build_agent(None)  # FromContext: refuses on a server


# -- command line --------------------------------------------------------------------------


def smoke() -> None:
    """In-process smoke run (FromContext is fine here: this process writes the context)."""
    from agentguard import Principal

    alice = Principal(tenant="acme", user="alice", role="employee")
    for contact_id in ("c-101", "c-900"):
        text = f'call get_contact {{"contact_id": "{contact_id}"}}'
        result = naive_agent.invoke(
            {"messages": [HumanMessage(text)]}, context={"principal": alice}
        )
        print(f"alice> {text}\n  {result['messages'][-1].text}")
    print("Serve the graphs with: .venv/bin/langgraph dev --no-browser  (see langgraph.json)")


def sign_pending(args: argparse.Namespace) -> None:
    """Print a signed resume value for the call pending on a thread (demo approval service).

    It signs as the acting user in the payload, which is what `confirm` needs. A real approval
    service signs for the reviewer it authenticated, never for whoever the payload names.
    """
    from langgraph_sdk import get_sync_client

    client = get_sync_client(
        url=args.url, api_key=None, headers={"Authorization": f"Bearer {args.token}"}
    )
    pending = client.threads.get_state(args.thread_id).get("interrupts") or []
    if not pending:
        raise SystemExit(f"no pending interrupt on thread {args.thread_id}")
    request = pending[0]["value"]["action_requests"][0]
    who = request["agentguard"]["principal"]
    answer = sign_answer(
        request,
        args.decision,
        approver=who["user"],
        approver_role=who["role"],
        tenant=who["tenant"],
        edited_args=json.loads(args.args) if args.args else None,
        message=args.message,
    )
    print(json.dumps(answer, indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sign = sub.add_parser("sign", help="print a signed answer for the call paused on a thread")
    sign.add_argument("thread_id")
    sign.add_argument("decision", choices=["approve", "edit", "reject", "respond"])
    sign.add_argument("--args", help="edit: the new arguments, as JSON")
    sign.add_argument("--message", help="reject / respond: the text the model reads")
    sign.add_argument("--url", default="http://127.0.0.1:2024")
    sign.add_argument("--token", default="alice-demo-token")
    args = parser.parse_args(argv)
    if args.command == "sign":
        sign_pending(args)
    else:
        smoke()


if __name__ == "__main__":
    main()
