"""Pending approvals survive a restart: pause in one process, answer in another.

Each step runs `_durable_agent.py` in a fresh Python process, which builds the guarded agent
from nothing; processes share only the checkpointer, the consent ledger, the approval store
and the audit log. Backends go together: LangGraph's SqliteSaver with SQLite approval files,
or PostgresSaver with a PostgreSQL ledger and store, on the real server `postgres_url` starts
(each story in a schema of its own).

A process costs about two seconds (mostly importing LangChain), so each backend's three
stories (approve, reject, unsigned answer) run side by side, once, in a module fixture; the
tests then read what every process printed and what had run after each step.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
from psycopg import sql

from agentguard import ApprovalSigner, Binding

from ..services import fresh_schema

SCRIPT = Path(__file__).with_name("_durable_agent.py")
STEP_TIMEOUT = 90.0  # seconds, per process
# Offline and quiet, as conftest.py makes the test process (unless the caller says otherwise).
CHILD_ENV = {"TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "", "LANGGRAPH_NO_VERSION_CHECK": "true"}
KEY = secrets.token_bytes(32)
SIGNER = ApprovalSigner(KEY, kid="k1", algorithm="HS256")

# What the scripted model asks for (see _durable_agent.py): values that must never reach
# the consent ledger, only their digest and shape.
TO = "carol.durable@example.com"
BODY = "Quarterly figures: PINEAPPLE-4711, do not forward"
RAW_VALUES = (TO, BODY, "carol.durable", "PINEAPPLE-4711")
CALL_ID = "call-send-1"
FINAL_PREFIX = "final answer; the tool said: "
REJECT_NOTE = "not to carol, she left the company"


# --------------------------------------------------------------------------- processes


@dataclass
class Step:
    """One process: what it printed, and the tool executions on record after it ended."""

    name: str
    returncode: int
    out: dict[str, Any]
    stdout: str
    stderr: str
    runs: list[dict[str, Any]]
    seconds: float

    def describe(self) -> str:
        return (
            f"step {self.name!r} exited {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )

    def ok(self) -> dict[str, Any]:
        assert self.returncode == 0 and self.out and "error" not in self.out, self.describe()
        return self.out


@dataclass
class Story:
    """One thread of one agent, driven step by step, each step in a new process."""

    backend: str
    config: dict[str, Any]
    steps: list[Step] = field(default_factory=list)

    def run(self, step: str, **extra: Any) -> Step:
        runs_file = Path(self.config["runs"])
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), step, json.dumps({**self.config, **extra})],
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            env={**CHILD_ENV, **os.environ, "DURABLE_AGENT_KEY": KEY.hex()},
            check=False,
        )
        lines = proc.stdout.strip().splitlines()
        try:
            out = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            out = {}
        runs = []
        if runs_file.exists():
            runs = [json.loads(line) for line in runs_file.read_text().splitlines() if line]
        done = Step(
            step, proc.returncode, out, proc.stdout, proc.stderr, runs, time.monotonic() - began
        )
        self.steps.append(done)
        return done

    def start(self) -> tuple[Step, dict[str, Any]]:
        """Process A: run until the agent pauses; its one interrupt."""
        started = self.run("start")
        interrupts = started.ok()["interrupts"]
        assert len(interrupts) == 1, started.describe()
        return started, interrupts[0]


def sign(interrupt: dict[str, Any], decision: Literal["approve", "reject"]) -> str:
    """The approval service: alice's signed decision on exactly the call the request shows."""
    request = interrupt["value"]["action_requests"][0]
    return SIGNER.sign(
        approver="alice",
        approver_role="employee",
        tenant="acme",
        decision=decision,
        binding=Binding(**request["agentguard"]["binding"]),
    )


# ------------------------------------------------------------------------------ stories


def approve_story(story: Story) -> None:
    """A pauses; B approves; C sends the same answer again; D replays it from the checkpoint
    A paused at (LangGraph re-runs the paused task: the tool must not run a second time); E
    reads the consent ledger and the audit log."""
    started, interrupt = story.start()
    token = sign(interrupt, "approve")
    answer = {"interrupt_id": interrupt["id"], "assertion": token}
    story.run("approve", **answer).ok()
    story.run("approve", **answer).ok()
    story.run("approve", **answer, checkpoint_id=started.out["checkpoint_id"]).ok()
    story.run("ledger").ok()


def reject_story(story: Story) -> None:
    """A pauses; B rejects with a note."""
    _, interrupt = story.start()
    token = sign(interrupt, "reject")
    story.run("reject", interrupt_id=interrupt["id"], assertion=token, message=REJECT_NOTE)


def unsigned_story(story: Story) -> None:
    """A pauses; B answers without a signature (refused); C answers with one."""
    _, interrupt = story.start()
    story.run("approve", interrupt_id=interrupt["id"])
    story.run("approve", interrupt_id=interrupt["id"], assertion=sign(interrupt, "approve"))


STORIES: dict[str, Callable[[Story], None]] = {
    "approve": approve_story,
    "reject": reject_story,
    "unsigned": unsigned_story,
}


# ----------------------------------------------------------------------------- storage


def stored_rows(story: Story) -> tuple[int, int]:
    """(checkpoints of the story's thread, consent entries), read straight from storage."""
    cfg = story.config
    if story.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(cfg["checkpoints"])) as conn:
            checkpoints = conn.execute(
                "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (cfg["thread_id"],)
            ).fetchone()[0]
        with contextlib.closing(sqlite3.connect(cfg["approvals"])) as conn:
            consents = conn.execute("SELECT count(*) FROM consent_entries").fetchone()[0]
        return int(checkpoints), int(consents)
    with psycopg.connect(cfg["postgres_url"], autocommit=True) as pg:
        schema = sql.Identifier(cfg["schema"])
        row = pg.execute(
            sql.SQL("SELECT count(*) FROM {}.checkpoints WHERE thread_id = %s").format(schema),
            (cfg["thread_id"],),
        ).fetchone()
        entries = pg.execute(
            sql.SQL("SELECT count(*) FROM {}.consent_entries").format(schema)
        ).fetchone()
    assert row is not None and entries is not None
    return int(row[0]), int(entries[0])


@dataclass
class Results:
    futures: dict[str, Future[None]]
    stories: dict[str, Story]

    def story(self, name: str) -> Story:
        self.futures[name].result()  # re-raises what went wrong while it ran
        return self.stories[name]


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)],
)
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Results]:
    backend: str = request.param
    with contextlib.ExitStack() as stack:
        stories: dict[str, Story] = {}
        for name in STORIES:
            tmp = tmp_path_factory.mktemp(f"durable-{backend}-{name}")
            config: dict[str, Any] = {
                "checkpointer": backend,
                "audit": str(tmp / "audit.sqlite3"),
                "runs": str(tmp / "runs.jsonl"),
                "thread_id": f"{backend}-{name}-{uuid.uuid4().hex[:8]}",
            }
            if backend == "sqlite":
                config["checkpoints"] = str(tmp / "checkpoints.sqlite3")
                config["approvals"] = str(tmp / "approvals.sqlite3")
            else:
                server = request.getfixturevalue("postgres_url")
                url, schema = stack.enter_context(fresh_schema(server, "durable"))
                config.update(checkpoints=url, approvals=url, schema=schema, postgres_url=server)
            stories[name] = Story(backend, config)
        with ThreadPoolExecutor(max_workers=len(stories)) as pool:
            futures = {name: pool.submit(STORIES[name], s) for name, s in stories.items()}
        yield Results(futures, stories)


# -------------------------------------------------------------------------------- tests


def test_approved_call_runs_once_across_processes(results: Results) -> None:
    story = results.story("approve")
    start, approve, again, replay, _ledger = story.steps

    # A: one interrupt, for exactly the call the model made; nothing ran.
    (interrupt,) = start.out["interrupts"]
    request = interrupt["value"]["action_requests"][0]
    assert request["name"] == "send_email"
    assert request["args"] == {"to": TO, "body": BODY}
    assert request["agentguard"]["confirmation"] == "confirm"
    assert request["agentguard"]["signed_assertion_required"] is True
    assert request["agentguard"]["binding"]["call_id"] == CALL_ID
    assert request["agentguard"]["binding"]["thread_id"] == story.config["thread_id"]
    assert start.runs == []

    # B, a new process, finds the interrupt pending and runs the call: once, there.
    assert [i["id"] for i in approve.out["pending_before"]] == [interrupt["id"]]
    assert approve.out["interrupts"] == []
    assert len(approve.runs) == 1
    ran = approve.runs[0]
    assert ran["tool"] == "send_email" and ran["args"] == {"to": TO, "body": BODY}
    assert ran["pid"] not in (None, os.getpid())
    tool_messages = [m for m in approve.out["messages"] if m["type"] == "tool"]
    assert tool_messages == [
        {"type": "tool", "content": f"sent to {TO}", "tool_call_id": CALL_ID, "status": "success"}
    ]
    assert approve.out["messages"][-1] == {"type": "ai", "content": f"{FINAL_PREFIX}sent to {TO}"}
    assert approve.out["model_calls"] == 1  # B's model only wrote the final answer

    # C: the same answer again, on the finished thread: nothing is pending, nothing runs.
    assert again.out["pending_before"] == [] and again.out["interrupts"] == []
    assert again.out["model_calls"] == 0
    assert again.out["messages"] == approve.out["messages"]
    assert len(again.runs) == 1

    # D: the same answer replayed at the checkpoint A paused at. LangGraph re-runs the paused
    # task, the gate recognizes the answer from the ledger, and the at-most-once claim B took
    # refuses a second execution: the model is told so instead.
    assert [i["id"] for i in replay.out["pending_before"]] == [interrupt["id"]]
    assert replay.out["interrupts"] == []
    assert len(replay.runs) == 1
    (refused,) = [m for m in replay.out["messages"] if m["type"] == "tool"]
    assert refused["status"] == "error" and refused["tool_call_id"] == CALL_ID
    assert "already started once; it will not run again" in refused["content"]

    # What the stores hold: checkpoints for the thread, one consent decision.
    checkpoints, consents = stored_rows(story)
    assert checkpoints >= 3 and consents == 1


def test_rejected_call_never_runs(results: Results) -> None:
    story = results.story("reject")
    start, reject = story.steps
    assert start.runs == []
    out = reject.ok()
    assert [i["id"] for i in out["pending_before"]] == [start.out["interrupts"][0]["id"]]
    assert out["interrupts"] == []
    assert reject.runs == []  # and the runs file was never even created
    assert not Path(story.config["runs"]).exists()
    (tool_message,) = [m for m in out["messages"] if m["type"] == "tool"]
    assert tool_message["status"] == "error" and tool_message["tool_call_id"] == CALL_ID
    assert "rejected" in tool_message["content"] and REJECT_NOTE in tool_message["content"]
    # The model saw the reviewer's rejection, note included, as the tool's result.
    assert out["messages"][-1] == {
        "type": "ai",
        "content": FINAL_PREFIX + tool_message["content"],
    }


def test_decision_is_in_the_ledger_read_from_another_process(results: Results) -> None:
    story = results.story("approve")
    start, approve, *_rest, ledger = story.steps
    out = ledger.ok()
    request = start.out["interrupts"][0]["value"]["action_requests"][0]["agentguard"]
    (entry,) = out["entries"]
    assert entry["decision"] == "approve"
    assert entry["approvers"] == ["alice"]
    assert entry["approver_role"] == "employee"
    assert entry["method"] == "confirm"  # signed: an unsigned one would say "confirm:unsigned"
    assert entry["input_hash"] == request["args_digest"] == request["binding"]["args_digest"]
    assert entry["input_hash"].startswith("sha256:")
    assert entry["consent_id"] == f"{request['request_id']}:0"
    assert (entry["tenant"], entry["user"], entry["tool"]) == ("acme", "alice", "send_email")
    assert (entry["thread_id"], entry["call_id"]) == (story.config["thread_id"], CALL_ID)
    assert entry["policy_version"] == "durable-1"
    assert entry["input_summary"] == {"to": f"string({len(TO)})", "body": f"string({len(BODY)})"}

    # No raw argument value anywhere: not in the ledger, not in the audit trail.
    for value in RAW_VALUES:
        assert value not in ledger.stdout, value
    if story.backend == "sqlite":  # nor anywhere in the approvals database file
        for path in Path(story.config["approvals"]).parent.glob("approvals.sqlite3*"):
            data = path.read_bytes()
            assert all(v.encode() not in data for v in RAW_VALUES), path

    # The audit trail, written by processes A, B and D, is one intact chain; it tells the
    # story, the refused replay included.
    assert out["audit"] == {"ok": True, "count": len(out["audit_events"]), "reason": None}
    approvals = [e["result"] for e in out["audit_events"] if e["event"] == "approval"]
    assert approvals == ["requested", "approve", "claim_refused"]
    executions = [e for e in out["audit_events"] if e["event"] == "execution"]
    assert [e["result"] for e in executions] == ["success"]
    consent_id = entry["consent_id"]
    assert executions[0]["summary"]["approval"]["consents"] == [consent_id]
    assert approve.runs == ledger.runs  # reading the ledger ran nothing


def test_unsigned_answer_refused_and_the_request_stays_pending(results: Results) -> None:
    story = results.story("unsigned")
    start, unsigned, signed = story.steps
    interrupt_id = start.out["interrupts"][0]["id"]

    # B: refused, with an error line and exit status 3; nothing ran.
    assert unsigned.returncode == 3, unsigned.describe()
    assert set(unsigned.out) == {"error"}
    assert "approval refused (unsigned)" in unsigned.out["error"]
    assert unsigned.runs == []

    # C: the same interrupt is still pending (the refused answer was not saved, nor recorded
    # in the ledger, or C's answer to round 0 would be "already answered"), and a signed
    # answer runs the call, once.
    out = signed.ok()
    assert [i["id"] for i in out["pending_before"]] == [interrupt_id]
    assert out["interrupts"] == []
    assert [r["tool"] for r in signed.runs] == ["send_email"]
    assert out["messages"][-1] == {"type": "ai", "content": f"{FINAL_PREFIX}sent to {TO}"}
