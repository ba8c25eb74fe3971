"""Turning a Verdict into what LangGraph expects. Shared by every door; no policy here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from agentguard._canonical import canonical_json
from agentguard.checks.limits import INVALID_KIND, MARK
from agentguard.errors import RunAborted
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.verdict import Verdict

ToolResult = ToolMessage | Command[Any]


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


def stop_if_asked(verdict: Verdict) -> None:
    """Enact a verdict that ends the run (after it was written down)."""
    if verdict.stop_run:
        raise RunAborted(f"agentguard stopped the run: {verdict.reasons[-1].message}")


def decide(guard: Guard, request: ToolCallRequest) -> tuple[Verdict, CallContext]:
    ctx = CallContext.from_langgraph(request.runtime, state=request.state)
    verdict = guard.check(request.tool_call, ctx, _tools_of(request))
    stop_if_asked(verdict)
    return verdict, ctx


def allowed_request(request: ToolCallRequest, verdict: Verdict) -> ToolCallRequest | None:
    """The request to execute, with the validated arguments; None when it must not run."""
    if not verdict.allowed:
        return None
    assert verdict.args is not None
    return request.override(tool_call={**request.tool_call, "args": dict(verdict.args)})


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


def _finish(guard: Guard, verdict: Verdict, ctx: CallContext, result: ToolResult) -> ToolResult:
    status, output = execution_outcome(result)
    guard.record_execution(verdict, ctx, status=status, output=output)
    return result


def run_guarded(
    guard: Guard,
    request: ToolCallRequest,
    execute: Callable[[ToolCallRequest], ToolResult],
) -> ToolResult:
    verdict, ctx = decide(guard, request)
    run = allowed_request(request, verdict)
    if run is None:
        return refusal_message(verdict)
    try:
        result = execute(run)
    except GraphBubbleUp:
        raise
    except Exception:
        guard.record_execution(verdict, ctx, status="error")
        raise
    return _finish(guard, verdict, ctx, result)


async def arun_guarded(
    guard: Guard,
    request: ToolCallRequest,
    execute: Callable[[ToolCallRequest], Awaitable[ToolResult]],
) -> ToolResult:
    verdict, ctx = decide(guard, request)
    run = allowed_request(request, verdict)
    if run is None:
        return refusal_message(verdict)
    try:
        result = await execute(run)
    except GraphBubbleUp:
        raise
    except Exception:
        guard.record_execution(verdict, ctx, status="error")
        raise
    return _finish(guard, verdict, ctx, result)
