"""Turning a Verdict into what LangGraph expects. Shared by every door; no policy here."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, interrupt

from agentguard._canonical import canonical_json
from agentguard.checks.limits import INVALID_KIND, MARK
from agentguard.content.receive import LABEL_KEY
from agentguard.errors import RunAborted
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.verdict import Decision, Level, Reason, Verdict

ToolResult = ToolMessage | Command[Any]
T = TypeVar("T")


def refusal_message(verdict: Verdict) -> ToolMessage:
    """The error ToolMessage the model reads instead of a result."""
    first = verdict.primary_reason
    name = verdict.call.name if isinstance(verdict.call.name, str) else "invalid"
    return ToolMessage(
        content=verdict.model_message or "Refused. Nothing was run.",
        name=name[:64],
        tool_call_id=str(verdict.call.id or ""),
        status="error",
        additional_kwargs={
            MARK: {
                "kind": INVALID_KIND if verdict.invalid else "refused",
                "decision": verdict.decision.value,
                "reason": first.code if first else None,
                "level": first.level.value if first else None,
                "decision_id": verdict.decision_id,
            }
        },
    )


def _tools_of(request: ToolCallRequest) -> Mapping[str, BaseTool]:
    runtime_tools = getattr(request.runtime, "tools", None) or []
    tools = {t.name: t for t in runtime_tools if isinstance(t, BaseTool)}
    if request.tool is not None:
        tools.setdefault(request.tool.name, request.tool)
    return tools


EDIT_NOTE = (
    "[agentguard] A human reviewer edited this call before it ran: it ran with different "
    "arguments than the ones you sent. Do not repeat your original call.\n\n"
)


@dataclass(frozen=True)
class Settled:
    """A verdict after any human review: run `verdict`, or answer with `message` instead."""

    verdict: Verdict
    message: ToolMessage | None = None
    edited: bool = False


def _graph_namespace() -> tuple[bool, str | None]:
    """(can this task pause and resume?, its checkpoint namespace)."""
    try:
        from langgraph.config import get_config

        configurable = get_config().get("configurable") or {}
    except Exception:  # not inside a graph run
        return False, None
    paused_ok = configurable.get("__pregel_checkpointer") is not None
    ns = configurable.get("checkpoint_ns")
    return paused_ok, str(ns) if ns is not None else None


def _cannot_pause(guard: Guard, verdict: Verdict, ctx: CallContext) -> Verdict:
    kind = verdict.approval.kind.value if verdict.approval else "approval"
    message = (
        f"'{verdict.call.name}' needs human approval ({kind}), but this run cannot pause for it "
        "(no checkpointer, or not inside a LangGraph run); it was not run."
    )
    refused = verdict.with_(
        decision=Decision.DENY,
        reasons=(Reason("approval.cannot_pause", Level.CONFIRMATION, message),),
        model_message=message,
    )
    guard.record_event(
        dict(
            event="approval",
            tool=str(verdict.call.name),
            call_id=verdict.call.id,
            thread_id=ctx.thread_id,
            run_id=ctx.run_id,
            risk=verdict.risk,
            confirmation=kind,
            input_hash=verdict.input_hash,
            result="cannot_pause",
            reason="approval.cannot_pause",
            level=Level.CONFIRMATION.value,
            policy_version=verdict.policy_version,
            **(verdict.principal.audit_fields() if verdict.principal is not None else {}),
        )
    )
    return refused


def settle(
    guard: Guard, verdict: Verdict, ctx: CallContext, tools: Mapping[str, BaseTool]
) -> Settled:
    """Ask a human when the verdict says so (pausing the graph), and return what to do."""
    if verdict.decision is not Decision.APPROVE_FIRST or guard.approvals is None:
        return Settled(verdict, None if verdict.allowed else refusal_message(verdict))
    paused_ok, namespace = _graph_namespace()
    if not paused_ok:
        return Settled(refusal := _cannot_pause(guard, verdict, ctx), refusal_message(refusal))
    flow = guard.approval_flow(verdict, ctx, tools, namespace=namespace)
    outcome = flow.use_grant()
    while outcome is None:
        with flow.answering():
            step = interrupt(flow.request(), response_schema=flow.response_schema())
        flow.take(step)
        outcome = flow.outcome
    if outcome.kind == "run":
        return Settled(outcome.verdict, None, outcome.edited)
    if outcome.kind == "respond":
        return Settled(outcome.verdict, _answer_message(outcome.verdict, outcome.message or ""))
    return Settled(outcome.verdict, refusal_message(outcome.verdict))


def _answer_message(verdict: Verdict, text: str) -> ToolMessage:
    """A reviewer's answer standing in for the tool's result (the tool did not run)."""
    name = verdict.call.name if isinstance(verdict.call.name, str) else "tool"
    return ToolMessage(
        content=text,
        name=name[:64],
        tool_call_id=str(verdict.call.id or ""),
        status="success",
        additional_kwargs={MARK: {"kind": "responded", "decision_id": verdict.decision_id}},
    )


def screen_reply(guard: Guard, message: Any, ctx: CallContext) -> Any:
    """The model's reply with its text screened by `dlp.answers` (tool calls untouched: the
    guard checks those when they run)."""
    if not isinstance(message, AIMessage):
        return message
    content = message.content
    if isinstance(content, str):
        text, changed = guard.screen_answer(content, ctx)
        return message.model_copy(update={"content": text}) if changed else message
    blocks: list[Any] = []
    changed = False
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            text, did = guard.screen_answer(str(block.get("text", "")), ctx)
            changed = changed or did
            blocks.append({**block, "text": text} if did else block)
        else:
            blocks.append(block)
    return message.model_copy(update={"content": blocks}) if changed else message


def note_edit(result: Any) -> Any:
    """Tell the model its call ran with a reviewer's arguments, not its own."""
    if isinstance(result, ToolMessage) and isinstance(result.content, str):
        return result.model_copy(update={"content": EDIT_NOTE + result.content})
    return result


def stop_if_asked(verdict: Verdict) -> None:
    """Enact a verdict that ends the run (after it was written down)."""
    if verdict.stop_run:
        raise RunAborted(f"agentguard stopped the run: {verdict.reasons[-1].message}")


def decide(guard: Guard, request: ToolCallRequest) -> tuple[Settled, CallContext]:
    """The guard's verdict on one call, after any human review it needs."""
    ctx = CallContext.from_langgraph(request.runtime, state=request.state)
    tools = _tools_of(request)
    verdict = guard.check(request.tool_call, ctx, tools)
    stop_if_asked(verdict)
    return settle(guard, verdict, ctx, tools), ctx


def scoped_runtime(guard: Guard, verdict: Verdict, ctx: CallContext, runtime: Any) -> Any:
    """The tool's runtime with the graph's store swapped for the principal's scoped view, so
    store injection (`InjectedStore`, `ToolRuntime.store`) never hands a tool the raw store."""
    store = getattr(runtime, "store", None)
    scoped = guard.memory_for(store, verdict, ctx)
    if scoped is store:
        return runtime
    return dataclasses.replace(runtime, store=scoped)


def allowed_request(
    guard: Guard, request: ToolCallRequest, settled: Settled, ctx: CallContext
) -> ToolCallRequest | None:
    """The request to execute, with the validated arguments and scoped memory; None when it
    must not run."""
    verdict = settled.verdict
    if settled.message is not None or not verdict.allowed:
        return None
    assert verdict.args is not None
    return dataclasses.replace(  # `override()` does not take a runtime
        request,
        tool_call={**request.tool_call, "args": dict(verdict.args)},
        runtime=scoped_runtime(guard, verdict, ctx, request.runtime),
    )


def execution_outcome(result: Any) -> tuple[str, Any]:
    """(status, output to hash) of what a tool returned: an error ToolMessage is an error."""
    if isinstance(result, ToolMessage):
        return ("error" if result.status == "error" else "success"), result.content
    if isinstance(result, Command):
        return "success", None
    try:
        canonical_json(result)
    except Exception:  # not JSON: hash its text form
        return "success", repr(result)
    return "success", result


def _finish(guard: Guard, settled: Settled, ctx: CallContext, result: ToolResult) -> ToolResult:
    status, output = execution_outcome(result)
    guard.record_execution(settled.verdict, ctx, status=status, output=output)
    result = receive_result(guard, settled.verdict, ctx, result)
    return note_edit(result) if settled.edited else result


def _receive_message(guard: Guard, verdict: Verdict, ctx: CallContext, msg: ToolMessage) -> Any:
    content = msg.content
    source = msg.name or (verdict.call.name if isinstance(verdict.call.name, str) else None)
    if isinstance(content, str):
        received = guard.receive(verdict, ctx, content, source=source)
        new_content: Any = received.text
    else:  # content blocks: each text block passes; other blocks (images) are kept as they are
        blocks: list[Any] = []
        texts = [
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        ]
        received = guard.receive(verdict, ctx, "\n".join(texts), source=source)
        if received.label.action in ("quarantine", "block"):
            blocks = [{"type": "text", "text": received.text}]
        else:
            for block in content:
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    text = guard.content.clean(block["text"], source=received.label.source)
                    blocks.append({**block, "text": text})
                else:
                    blocks.append(block)
        new_content = blocks
    mark: dict[str, Any] = {"kind": "result", LABEL_KEY: received.label.to_dict()}
    if received.withheld is not None:
        mark["withheld"] = received.withheld  # for a human reviewer; never sent to a model
    kwargs = {**msg.additional_kwargs, MARK: mark}
    return msg.model_copy(update={"content": new_content, "additional_kwargs": kwargs})


def receive_result(guard: Guard, verdict: Verdict, ctx: CallContext, result: Any) -> Any:
    """The way back: what a tool returned, sanitized, scored and labelled as data."""
    if isinstance(result, ToolMessage):
        return _receive_message(guard, verdict, ctx, result)
    if isinstance(result, str):
        return guard.receive(verdict, ctx, result).text
    if isinstance(result, Command) and isinstance(result.update, dict):
        messages = result.update.get("messages")
        if isinstance(messages, list):
            changed = [
                _receive_message(guard, verdict, ctx, m) if isinstance(m, ToolMessage) else m
                for m in messages
            ]
            return Command(
                graph=result.graph,
                update={**result.update, "messages": changed},
                resume=result.resume,
                goto=result.goto,
            )
    return result


def run_guarded(
    guard: Guard,
    request: ToolCallRequest,
    execute: Callable[[ToolCallRequest], ToolResult],
) -> ToolResult:
    settled, ctx = decide(guard, request)
    return run_settled(guard, request, settled, ctx, execute)


def run_settled(
    guard: Guard,
    request: ToolCallRequest,
    settled: Settled,
    ctx: CallContext,
    execute: Callable[[ToolCallRequest], ToolResult],
) -> ToolResult:
    run = allowed_request(guard, request, settled, ctx)
    if run is None:
        return settled.message or refusal_message(settled.verdict)
    already = guard.claim_approved(settled.verdict)
    if already is not None:
        return refusal_message(already)
    try:
        result = execute(run)
    except GraphBubbleUp:
        raise
    except Exception:
        guard.record_execution(settled.verdict, ctx, status="error")
        raise
    return _finish(guard, settled, ctx, result)


async def off_loop(guard: Guard, fn: Callable[..., T], *args: Any) -> T:
    """Run a guard step that may block (SQLite, Postgres, Redis) off the event loop.

    The thread gets a copy of the context, so LangGraph's `interrupt()` works there too.
    """
    if guard.blocking:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def arun_guarded(
    guard: Guard,
    request: ToolCallRequest,
    execute: Callable[[ToolCallRequest], Awaitable[ToolResult]],
) -> ToolResult:
    settled, ctx = await off_loop(guard, decide, guard, request)
    return await arun_settled(guard, request, settled, ctx, execute)


async def arun_settled(
    guard: Guard,
    request: ToolCallRequest,
    settled: Settled,
    ctx: CallContext,
    execute: Callable[[ToolCallRequest], Awaitable[ToolResult]],
) -> ToolResult:
    run = allowed_request(guard, request, settled, ctx)
    if run is None:
        return settled.message or refusal_message(settled.verdict)
    already = await off_loop(guard, guard.claim_approved, settled.verdict)
    if already is not None:
        return refusal_message(already)
    try:
        result = await execute(run)
    except GraphBubbleUp:
        raise
    except Exception:
        await off_loop(guard, record_error, guard, settled.verdict, ctx)
        raise
    return await off_loop(guard, _finish, guard, settled, ctx, result)


def record_error(guard: Guard, verdict: Verdict, ctx: CallContext) -> None:
    guard.record_execution(verdict, ctx, status="error")
