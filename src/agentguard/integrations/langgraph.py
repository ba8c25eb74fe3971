"""Doors for hand-built LangGraph graphs: a guarded ToolNode and a model node that only shows
the model the tools its principal may use."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as create_tool
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import (
    AsyncToolCallWrapper,
    ToolCallRequest,
    ToolCallWrapper,
    _default_handle_tool_errors,
    _handle_tool_error,
    _infer_handled_types,
)
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from agentguard.errors import GuardError
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.integrations._enact import (
    Settled,
    arun_guarded,
    arun_settled,
    off_loop,
    refusal_message,
    run_guarded,
    run_settled,
    screen_reply,
    settle,
    stop_if_asked,
)
from agentguard.integrations.present import for_model
from agentguard.verdict import Decision, Level, Reason

# Calls of the current node run, decided (and reviewed) before any of them executed.
_PRESOLVED: contextvars.ContextVar[dict[str, tuple[Settled, CallContext]] | None] = (
    contextvars.ContextVar("agentguard_presolved", default=None)
)

HandleToolErrors = bool | str | Callable[..., str] | type[Exception] | tuple[type[Exception], ...]


def _never_swallow_guard_errors(flag: HandleToolErrors) -> HandleToolErrors:
    """Keep the user's error handling for tool errors, but let guard stops end the run."""
    if flag is False:
        return False
    if flag is True or isinstance(flag, str):
        handled: tuple[type[Exception], ...] = (Exception,)
    elif isinstance(flag, type):
        handled = (flag,)
    elif isinstance(flag, tuple):
        handled = flag
    else:
        handled = _infer_handled_types(flag)

    def handler(e: Exception) -> str:
        if isinstance(e, GuardError) or not isinstance(e, handled):
            raise e
        return _handle_tool_error(e, flag=flag)

    return handler


class GuardedToolNode(ToolNode):
    """A drop-in for LangGraph's `ToolNode`: every call passes the guard before it runs.

    Your own `wrap_tool_call` / `awrap_tool_call` still run, inside the guard (they see only
    calls the guard allowed, with validated arguments).

    All calls of one step are decided, and any human review they need is finished, before
    the first of them runs: a ToolNode runs its calls in one task, and a task that pauses is
    re-run from the start when resumed, so a call that had already run would run again.
    Reviews within one step are asked one after the other. To have every call paused at once
    (each in its own task, as `create_agent` does), route to it with `route_tool_calls`.
    """

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        guard: Guard,
        name: str = "tools",
        tags: list[str] | None = None,
        handle_tool_errors: HandleToolErrors = _default_handle_tool_errors,
        messages_key: str = "messages",
        wrap_tool_call: ToolCallWrapper | None = None,
        awrap_tool_call: AsyncToolCallWrapper | None = None,
    ) -> None:
        self.guard = guard
        inner_sync = wrap_tool_call
        inner_async = awrap_tool_call

        def guarded(request: ToolCallRequest, execute: Callable[..., Any]) -> Any:
            def run(req: ToolCallRequest) -> ToolMessage | Command[Any]:
                return inner_sync(req, execute) if inner_sync else execute(req)

            known = _presolved_for(request)
            if known is None:
                return run_guarded(guard, request, run)
            return run_settled(guard, request, known[0], known[1], run)

        async def aguarded(request: ToolCallRequest, execute: Callable[..., Any]) -> Any:
            async def run(req: ToolCallRequest) -> ToolMessage | Command[Any]:
                if inner_async is not None:
                    return await inner_async(req, execute)
                result: ToolMessage | Command[Any] = await execute(req)
                return result

            known = _presolved_for(request)
            if known is None:
                return await arun_guarded(guard, request, run)
            return await arun_settled(guard, request, known[0], known[1], run)

        super().__init__(
            tools,
            name=name,
            tags=tags,
            handle_tool_errors=_never_swallow_guard_errors(handle_tool_errors),
            messages_key=messages_key,
            wrap_tool_call=guarded,
            # With only a sync user wrapper, ToolNode runs the sync path under ainvoke too.
            awrap_tool_call=None if inner_sync and not inner_async else aguarded,
        )
        guard.prepare(self.tools_by_name.values())

    def _presolve(
        self, input: Any, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, tuple[Settled, CallContext]]:
        """Decide every call of this step, one after the other, pausing for reviews."""
        tool_calls, _ = self._parse_input(input)
        ids = [c.get("id") for c in tool_calls]
        state = self._extract_state(input, config)
        ctx = CallContext.from_langgraph(runtime, config=config, state=state)
        out: dict[str, tuple[Settled, CallContext]] = {}
        for call in tool_calls:
            call_id = call.get("id")
            verdict = self.guard.check(call, ctx, self.tools_by_name)
            stop_if_asked(verdict)
            if not isinstance(call_id, str) or not call_id or ids.count(call_id) > 1:
                # Results and reviews are matched to calls by id: without a unique one, refuse.
                message = "Refused: this tool call has a missing or repeated id. Nothing was run."
                refused = verdict.with_(
                    decision=Decision.DENY,
                    reasons=(Reason("tool.call_id", Level.TOOL, message),),
                    model_message=message,
                    invalid=True,
                )
                out[str(call_id or "")] = (Settled(refused, refusal_message(refused)), ctx)
                continue
            out[call_id] = (settle(self.guard, verdict, ctx, self.tools_by_name), ctx)
        return out

    def _func(self, input: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        token = _PRESOLVED.set(self._presolve(input, config, runtime))
        try:
            return super()._func(input, config, runtime)
        finally:
            _PRESOLVED.reset(token)

    async def _afunc(self, input: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        presolved = await off_loop(self.guard, self._presolve, input, config, runtime)
        token = _PRESOLVED.set(presolved)
        try:
            return await super()._afunc(input, config, runtime)
        finally:
            _PRESOLVED.reset(token)


def _presolved_for(request: ToolCallRequest) -> tuple[Settled, CallContext] | None:
    table = _PRESOLVED.get()
    if table is None:
        return None
    return table.get(str(request.tool_call.get("id") or ""))


class GuardedModelNode(RunnableCallable):
    """A model node that binds only the tools the run's principal may see.

    Use it with `GuardedToolNode` in hand-built graphs; hiding is a courtesy to the model,
    the tool node still enforces every call.
    """

    def __init__(
        self,
        model: BaseChatModel,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        guard: Guard,
        messages_key: str = "messages",
        name: str = "model",
        bind_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(self._call, self._acall, name=name, trace=False)
        self.model = model
        self.tools = [t if isinstance(t, BaseTool) else create_tool(t) for t in tools]
        self.guard = guard
        self.messages_key = messages_key
        self.bind_kwargs = dict(bind_kwargs or {})
        guard.prepare(self.tools)

    def _bound(self, state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        ctx = CallContext.from_langgraph(runtime, config=config, state=state)
        visible = self.guard.vet_tools(self.guard.visible_tools(self.tools, ctx))
        if not visible:
            return self.model
        return self.model.bind_tools(visible, **self.bind_kwargs)

    def _shown(self, state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        ctx = CallContext.from_langgraph(runtime, config=config, state=state)
        return for_model(self.guard, self._messages(state), ctx.run_id)

    def _messages(self, state: Any) -> Any:
        return (
            state[self.messages_key]
            if isinstance(state, dict)
            else getattr(state, self.messages_key)
        )

    def _screened(
        self, response: Any, state: Any, config: RunnableConfig, runtime: Runtime[Any]
    ) -> Any:
        if not self.guard.screens_answers:
            return response
        ctx = CallContext.from_langgraph(runtime, config=config, state=state)
        return screen_reply(self.guard, response, ctx)

    def _call(self, state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        response = self._bound(state, config, runtime).invoke(
            self._shown(state, config, runtime), config
        )
        return {self.messages_key: [self._screened(response, state, config, runtime)]}

    async def _acall(self, state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        model = self._bound(state, config, runtime)
        response = await model.ainvoke(self._shown(state, config, runtime), config)
        screened = await off_loop(self.guard, self._screened, response, state, config, runtime)
        return {self.messages_key: [screened]}


def route_tool_calls(
    state: Any, *, node: str = "tools", messages_key: str = "messages"
) -> list[Send] | str:
    """A conditional edge that gives every tool call of the last AI message its own task.

    With it, a `GuardedToolNode` pauses several calls that need a human at once, one interrupt
    each, as `create_agent` does: `builder.add_conditional_edges("model", route_tool_calls,
    ["tools", END])`. Without it the node reviews the calls of a step one after another.
    """
    messages = (
        state.get(messages_key, []) if isinstance(state, dict) else getattr(state, messages_key)
    )
    last = messages[-1] if messages else None
    calls = getattr(last, "tool_calls", None) if isinstance(last, AIMessage) else None
    if not calls:
        return END
    return [Send(node, [{**call, "type": "tool_call"}]) for call in calls]
