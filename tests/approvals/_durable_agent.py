"""One step of a guarded agent's life, in a process of its own (driven by test_durability.py).

    python tests/approvals/_durable_agent.py STEP CONFIG_JSON

Every process builds the same agent from nothing: the same policy, tools and scripted model,
a guard in production mode (signed answers only) whose consent ledger, approval store and audit
log live in SQLite files or PostgreSQL, and a LangGraph checkpointer of the same kind. Nothing
passes from one process to the next but what those stores hold, so each step after `start`
runs as after a restart.

Steps (each prints exactly one JSON line on stdout):

- ``start``: run the agent until it pauses; prints the pending interrupts (id and value) and
  the id of the checkpoint it paused at.
- ``approve`` / ``reject``: resume interrupt ``interrupt_id`` with an answer of that type,
  carrying ``assertion`` (a signed approval assertion: the key's holder, the test, plays the
  approval service) or, without one, unsigned. ``checkpoint_id`` resumes from that earlier
  checkpoint instead of the thread's latest (LangGraph then re-runs the paused task with the
  answer, as after a crash between running the tool and saving its result). Prints the
  interrupts pending before the answer, those pending after it, and the final messages.
- ``ledger``: the consent entries (``open_ledger(...).query(limit=100)``) and the audit log,
  verified.

On any exception: prints ``{"error": "..."}`` (the traceback goes to stderr) and exits 3.

Config (JSON): ``checkpointer`` ("sqlite" or "postgres"), ``checkpoints`` (SQLite path or
Postgres URL), ``approvals`` (SQLite path or Postgres URL, for both ledger and store),
``audit`` (SQLite path), ``runs`` (each tool execution appends one JSON line there),
``thread_id``, plus the step's own keys above. The HMAC key for assertions and the audit log
comes hex-encoded in the environment variable ``DURABLE_AGENT_KEY``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentguard import Principal
from agentguard.approvals.ledger import open_ledger
from agentguard.audit import AuditLog, SqliteSink

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool

# LangChain is imported where the agent is built, not here: it takes most of a process's
# two seconds, and the `ledger` step does not need it.

KEY_ENV = "DURABLE_AGENT_KEY"
ERROR_EXIT = 3

POLICY: dict[str, Any] = {
    "version": "durable-1",
    "tools": {
        "send_email": {
            "risk": "medium",
            "scopes": ["emails:send"],
            "confirmation": "confirm",
            "output_trust": "trusted",  # our own mail API's receipt
        },
        "search": {"risk": "low", "scopes": ["x:read"]},
    },
}
ALICE = Principal(tenant="acme", user="alice", role="employee")
CALL_ID = "call-send-1"
TO = "carol.durable@example.com"
BODY = "Quarterly figures: PINEAPPLE-4711, do not forward"
FINAL_PREFIX = "final answer; the tool said: "


def make_tools(runs: Path) -> list[BaseTool]:
    """The agent's tools; each execution is appended to `runs`, for the parent to count."""
    from langchain_core.tools import tool

    def note(name: str, args: dict[str, Any]) -> None:
        with runs.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": name, "args": args, "pid": os.getpid()}) + "\n")

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        note("send_email", {"to": to, "body": body})
        return f"sent to {to}"

    @tool
    def search(query: str) -> str:
        """Search documents."""
        note("search", {"query": query})
        return f"results for {query}"

    return [send_email, search]


def model_turn(messages: list[BaseMessage]) -> AIMessage:
    """The same model in every process: call send_email once, then answer with its result.

    A function of the conversation rather than a fixed list of turns, because each process
    starts its script afresh: the one that pauses needs the tool-call turn, one that resumes
    only the final answer (the model is not asked again until the tool message exists). The
    final answer repeats the tool message, so the parent can see what the model was told.
    """
    from langchain_core.messages import AIMessage, ToolMessage

    last = messages[-1]
    if isinstance(last, ToolMessage):
        return AIMessage(content=f"{FINAL_PREFIX}{last.content}")
    call = {"name": "send_email", "args": {"to": TO, "body": BODY}, "id": CALL_ID}
    return AIMessage(content="", tool_calls=[{**call, "type": "tool_call"}])


@contextlib.contextmanager
def open_checkpointer(cfg: dict[str, Any]) -> Iterator[Any]:
    kind = cfg["checkpointer"]
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(cfg["checkpoints"], check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
    elif kind == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(cfg["checkpoints"]) as pg_saver:
            pg_saver.setup()
            yield pg_saver
    else:
        raise ValueError(f"unknown checkpointer {kind!r}")


def load_key() -> bytes:
    return bytes.fromhex(os.environ[KEY_ENV])


def interrupts_json(interrupts: Any) -> list[dict[str, Any]]:
    # json round trip: an interrupt value that is not plain JSON fails here (exit 3)
    return [{"id": i.id, "value": json.loads(json.dumps(i.value))} for i in interrupts]


def messages_json(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    from langchain_core.messages import AIMessage, ToolMessage

    out = []
    for m in messages:
        item: dict[str, Any] = {"type": m.type, "content": m.content}
        if isinstance(m, ToolMessage):
            item.update(tool_call_id=m.tool_call_id, status=m.status)
        if isinstance(m, AIMessage) and m.tool_calls:
            item["tool_calls"] = [{"name": c["name"], "id": c["id"]} for c in m.tool_calls]
        out.append(item)
    return out


def run_agent(step: str, cfg: dict[str, Any]) -> dict[str, Any]:
    if step not in ("start", "approve", "reject"):
        raise ValueError(f"unknown step {step!r}")
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage
    from langgraph.types import Command

    from agentguard import ApprovalAssertionVerifier, Approvals, Guard
    from agentguard.integrations.langchain import GuardMiddleware
    from agentguard.testing import ScriptedChatModel

    key = load_key()
    verifier = ApprovalAssertionVerifier({"k1": key}, algorithms=["HS256"])
    approvals = Approvals(verifier=verifier, ledger=cfg["approvals"], store=cfg["approvals"])
    audit = AuditLog(SqliteSink(cfg["audit"]), key, key_id="k1")
    guard = Guard(POLICY, audit=audit, approvals=approvals)
    model = ScriptedChatModel(turns=[model_turn] * 4)
    config: RunnableConfig = {"configurable": {"thread_id": cfg["thread_id"]}}
    context = {"principal": ALICE}
    try:
        with open_checkpointer(cfg) as saver:
            agent = create_agent(
                model,
                make_tools(Path(cfg["runs"])),
                middleware=[GuardMiddleware(guard)],
                checkpointer=saver,
            )
            out: dict[str, Any] = {}
            if step == "start":
                result = agent.invoke(
                    {"messages": [HumanMessage("send the figures to carol")]},
                    config,
                    context=context,
                    version="v2",
                )
            else:
                at = config
                if cfg.get("checkpoint_id") is not None:
                    earlier = {"checkpoint_ns": "", "checkpoint_id": cfg["checkpoint_id"]}
                    at = {"configurable": {"thread_id": cfg["thread_id"], **earlier}}
                out["pending_before"] = interrupts_json(agent.get_state(at).interrupts)
                answer: dict[str, Any] = {"type": step}
                if step == "reject":
                    answer["message"] = cfg.get("message", "")
                if cfg.get("assertion") is not None:
                    answer["assertion"] = cfg["assertion"]
                result = agent.invoke(
                    Command(resume={cfg["interrupt_id"]: answer}),
                    at,
                    context=context,
                    version="v2",
                )
            out.update(
                interrupts=interrupts_json(result.interrupts),
                checkpoint_id=agent.get_state(config).config["configurable"]["checkpoint_id"],
                messages=messages_json(result.value["messages"]),
                model_calls=model.calls,
            )
            return out
    finally:
        approvals.ledger.close()
        approvals.store.close()
        audit.close()


def read_ledger(cfg: dict[str, Any]) -> dict[str, Any]:
    ledger = open_ledger(cfg["approvals"], readonly=True)
    try:
        entries = [e.model_dump(mode="json") for e in ledger.query(limit=100)]
    finally:
        ledger.close()
    audit = AuditLog(SqliteSink(cfg["audit"]), load_key(), key_id="k1")
    try:
        report = audit.verify()
        events = [e.model_dump(mode="json") for e in audit.events()]
    finally:
        audit.close()
    return {
        "entries": entries,
        "audit": {"ok": report.ok, "count": report.count, "reason": report.reason},
        "audit_events": events,
    }


def main(argv: list[str]) -> int:
    try:
        if len(argv) != 3:
            raise ValueError("usage: _durable_agent.py STEP CONFIG_JSON")
        step, cfg = argv[1], json.loads(argv[2])
        out = read_ledger(cfg) if step == "ledger" else run_agent(step, cfg)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return ERROR_EXIT
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
