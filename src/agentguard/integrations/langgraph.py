"""Doors for hand-built LangGraph graphs: a guarded ToolNode and a model node that only shows
the model the tools its principal may use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as create_tool
from langgraph._internal._runnable import RunnableCallable
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
from langgraph.types import Command

from agentguard.errors import GuardError
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.integrations._enact import arun_guarded, run_guarded

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

            return run_guarded(guard, request, run)

        async def aguarded(request: ToolCallRequest, execute: Callable[..., Any]) -> Any:
            async def run(req: ToolCallRequest) -> ToolMessage | Command[Any]:
                if inner_async is not None:
                    return await inner_async(req, execute)
                result: ToolMessage | Command[Any] = await execute(req)
                return result

            return await arun_guarded(guard, request, run)

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
        visible = self.guard.visible_tools(self.tools, ctx)
        if not visible:
            return self.model
        return self.model.bind_tools(visible, **self.bind_kwargs)

    def _messages(self, state: Any) -> Any:
        return (
            state[self.messages_key]
            if isinstance(state, dict)
            else getattr(state, self.messages_key)
        )

    def _call(self, state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        response = self._bound(state, config, runtime).invoke(self._messages(state), config)
        return {self.messages_key: [response]}

    async def _acall(self, state: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        model = self._bound(state, config, runtime)
        response = await model.ainvoke(self._messages(state), config)
        return {self.messages_key: [response]}
