"""Doors for LangChain: `create_agent` middleware, and wrapped tools for any other tool user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.messages import AnyMessage, ToolCall, ToolMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolRuntime
from langgraph.store.base import BaseStore
from langgraph.types import Command
from pydantic import ConfigDict

from agentguard.checks.limits import MARK
from agentguard.content.receive import LABEL_KEY
from agentguard.errors import GuardError
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.integrations._enact import (
    Settled,
    arun_guarded,
    execution_outcome,
    note_edit,
    off_loop,
    receive_result,
    record_error,
    refusal_message,
    run_guarded,
    scoped_runtime,
    screen_reply,
    settle,
    stop_if_asked,
)
from agentguard.integrations.present import present_messages, with_instructions
from agentguard.policy.model import SpotlightMode
from agentguard.verdict import Verdict


def _tool_choice_name(choice: Any) -> str | None:
    if isinstance(choice, str) and choice not in ("auto", "any", "none", "required"):
        return choice
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        return name if isinstance(name, str) else None
    return None


class GuardMiddleware(AgentMiddleware[Any, Any, Any]):
    """`create_agent(..., middleware=[GuardMiddleware(guard)])`.

    `wrap_model_call` shows the model only the tools its principal may call (tools the guard
    cannot see into, such as provider-side tool dicts, are never shown); `wrap_tool_call`
    enforces the guard on every call, shown or not.
    """

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard
        self._prepared: set[int] = set()

    def _visible_request(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        ctx = CallContext.from_langgraph(request.runtime, state=request.state)
        tools = [t for t in request.tools if isinstance(t, BaseTool)]
        fresh = [t for t in tools if id(t) not in self._prepared]
        if fresh:  # compile once, so a policy/tool mismatch fails on the first model call
            self.guard.prepare(fresh)
            self._prepared.update(id(t) for t in fresh)
        visible = self.guard.vet_tools(self.guard.visible_tools(tools, ctx))
        names = {t.name for t in visible}
        choice = request.tool_choice
        forced = _tool_choice_name(choice)
        if (forced is not None and forced not in names) or (not visible and choice is not None):
            choice = None
        messages, note = present_messages(self.guard, request.messages, ctx.run_id)
        return request.override(
            tools=list(visible),
            tool_choice=choice,
            messages=cast("list[AnyMessage]", messages),
            system_message=with_instructions(request.system_message, note),
        )

    def _screened(self, request: ModelRequest[Any], response: Any) -> Any:
        """The reply after `dlp.answers` (unchanged when the policy does not ask for it)."""
        if not self.guard.screens_answers:
            return response
        ctx = CallContext.from_langgraph(request.runtime, state=request.state)
        if isinstance(response, ModelResponse):
            return replace(
                response, result=[screen_reply(self.guard, m, ctx) for m in response.result]
            )
        return screen_reply(self.guard, response, ctx)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> Any:
        return self._screened(request, handler(self._visible_request(request)))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> Any:
        response = await handler(self._visible_request(request))
        return await off_loop(self.guard, self._screened, request, response)

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        return run_guarded(self.guard, request, handler)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        return await arun_guarded(self.guard, request, handler)


class CallRefused(GuardError):
    """A wrapped tool was invoked directly (not with a ToolCall) and the guard refused."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.model_message or "refused")


def _current_runtime(config: RunnableConfig | None) -> Any:
    configurable = (config or {}).get("configurable") or {}
    runtime = configurable.get("__pregel_runtime")
    if runtime is not None:
        return runtime
    try:
        from langgraph.runtime import get_runtime

        return get_runtime()
    except Exception:  # outside a graph run: identity comes from acting_for()
        return None


def _declared_args(tool: BaseTool) -> set[str]:
    """Every parameter the tool takes, including injected ones (`tool.args` leaves those out)."""
    try:
        schema = tool.get_input_schema()
    except Exception:
        schema = None
    fields = getattr(schema, "model_fields", None)
    if isinstance(fields, dict):
        return set(fields)
    return set(getattr(tool, "args", {}) or {})


class GuardedTool(BaseTool):
    """A LangChain tool whose every invocation passes the guard first.

    Invoked with a ToolCall it answers a refusal as an error ToolMessage (the model can read
    it); invoked with plain arguments it raises `CallRefused`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseTool
    guard: Any

    def __init__(self, inner: BaseTool, guard: Guard) -> None:
        super().__init__(
            name=inner.name,
            description=inner.description,
            args_schema=inner.args_schema,
            return_direct=inner.return_direct,
            response_format=inner.response_format,
            inner=inner,
            guard=guard,
        )

    @property
    def tool_call_schema(self) -> Any:
        return self.inner.tool_call_schema

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - invoke is overridden
        raise GuardError("GuardedTool runs only through invoke/ainvoke")

    def _split(self, tool_input: Any) -> tuple[ToolCall | None, Any, dict[str, Any]]:
        """(tool call or None, model-visible args, injected args passed through untouched)."""
        is_call = isinstance(tool_input, dict) and tool_input.get("type") == "tool_call"
        raw = tool_input.get("args") if is_call else tool_input
        injected: dict[str, Any] = {}
        compiled = self.guard.compile(self.inner)
        if isinstance(raw, dict) and compiled is not None:  # no policy: the guard refuses anyway
            visible = set(compiled.schema.get("properties", {}))
            declared = _declared_args(self.inner)
            hidden = declared - visible
            injected = {k: v for k, v in raw.items() if k in hidden}
            raw = {k: v for k, v in raw.items() if k not in hidden}
        call: ToolCall | None = tool_input if is_call else None
        return call, raw, injected

    def _decide(
        self, tool_input: Any, config: RunnableConfig | None
    ) -> tuple[Settled, CallContext, ToolCall | None, dict[str, Any]]:
        call, raw, injected = self._split(tool_input)
        runtime = _current_runtime(config)
        ctx = CallContext.from_langgraph(runtime, config=config)
        request = {"name": self.name, "args": raw, "id": call.get("id") if call else None}
        tools = {self.name: self.inner}
        verdict = self.guard.check(request, ctx, tools)
        stop_if_asked(verdict)
        return settle(self.guard, verdict, ctx, tools), ctx, call, injected

    @staticmethod
    def _instead(settled: Settled, call: ToolCall | None) -> Any:
        """What the caller gets when the tool does not run."""
        message = settled.message
        if call is not None:
            return message
        if message is not None and message.status == "success":
            return message.content  # a reviewer answered in the tool's place
        raise CallRefused(settled.verdict)

    def _inner_input(
        self, settled: Settled, ctx: CallContext, call: ToolCall | None, injected: dict[str, Any]
    ) -> Any:
        verdict = settled.verdict
        scoped = {k: self._scoped(v, verdict, ctx) for k, v in injected.items()}
        args = {**dict(verdict.args or {}), **scoped}
        return {**call, "args": args} if call is not None else args

    def _scoped(self, value: Any, verdict: Verdict, ctx: CallContext) -> Any:
        """Injected memory reaches the tool only as the principal's scoped view."""
        if isinstance(value, BaseStore):
            return self.guard.memory_for(value, verdict, ctx)
        if isinstance(value, ToolRuntime):
            return scoped_runtime(self.guard, verdict, ctx, value)
        return value

    def _done(self, settled: Settled, ctx: CallContext, call: ToolCall | None, result: Any) -> Any:
        status, output = execution_outcome(result)
        self.guard.record_execution(settled.verdict, ctx, status=status, output=output)
        result = receive_result(self.guard, settled.verdict, ctx, result)
        return note_edit(result) if settled.edited and call is not None else result

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        settled, ctx, call, injected = self._decide(input, config)
        if settled.message is not None or not settled.verdict.allowed:
            return self._instead(settled, call)
        already = self.guard.claim_approved(settled.verdict)
        if already is not None:
            return self._instead(Settled(already, refusal_message(already)), call)
        try:
            result = self.inner.invoke(
                self._inner_input(settled, ctx, call, injected), config, **kwargs
            )
        except Exception:
            self.guard.record_execution(settled.verdict, ctx, status="error")
            raise
        return self._done(settled, ctx, call, result)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        guard = self.guard
        settled, ctx, call, injected = await off_loop(guard, self._decide, input, config)
        if settled.message is not None or not settled.verdict.allowed:
            return self._instead(settled, call)
        already = await off_loop(guard, guard.claim_approved, settled.verdict)
        if already is not None:
            return self._instead(Settled(already, refusal_message(already)), call)
        try:
            result = await self.inner.ainvoke(
                self._inner_input(settled, ctx, call, injected), config, **kwargs
            )
        except Exception:
            await off_loop(guard, record_error, guard, settled.verdict, ctx)
            raise
        return await off_loop(guard, self._done, settled, ctx, call, result)


def wrap_tools(guard: Guard, tools: Sequence[BaseTool]) -> list[GuardedTool]:
    """Wrap tools so that any LangChain caller goes through the guard."""
    guard.prepare(tools)
    return [t if isinstance(t, GuardedTool) else GuardedTool(t, guard) for t in tools]


class GuardedRetriever(BaseRetriever):
    """A retriever whose documents come back as data: sanitized, scored and labelled.

    `source` names the retriever in the policy (a `tools:` entry sets its trust, spotlight mode,
    allowed hosts and thresholds; unknown sources are untrusted). Each document's label is in
    `metadata["agentguard"]`; a quarantined document's text is replaced by a note (the original
    stays in that metadata for a reviewer), a blocked one's is dropped. Retrieval exposed to an
    agent as a tool also gets taint tracking; documents used directly in a chain get the rest.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseRetriever
    guard: Any
    source: str = "retriever"

    def _receive(self, docs: Sequence[Document]) -> list[Document]:
        out = []
        for i, doc in enumerate(docs):
            call_id = str(doc.id) if doc.id else f"{self.source}:{i}"
            received = self.guard.receive(
                None, None, doc.page_content, source=self.source, call_id=call_id
            )
            mark: dict[str, Any] = {"kind": "result", LABEL_KEY: received.label.to_dict()}
            if received.withheld is not None:
                mark["withheld"] = received.withheld
            metadata = {**doc.metadata, MARK: mark}
            out.append(doc.model_copy(update={"page_content": received.text, "metadata": metadata}))
        return out

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        docs = self.inner.invoke(query, config={"callbacks": run_manager.get_child()})
        return self._receive(docs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        docs = await self.inner.ainvoke(query, config={"callbacks": run_manager.get_child()})
        return await off_loop(self.guard, self._receive, docs)


def present_documents(
    guard: Guard, documents: Sequence[Document], run_id: str | None = None
) -> tuple[list[str], str]:
    """(each document's text as a model should see it, the system note on how data is marked):
    for prompts built from retrieved documents by hand."""
    from agentguard.content.receive import Label, label_of

    boundary = guard.content.boundary_for(run_id)
    modes: set[SpotlightMode] = set()
    texts = []
    for doc in documents:
        label = label_of(doc.metadata) or Label(source="retriever", call_id=None, trust="untrusted")
        text, mode = guard.content.present_text(doc.page_content, label, boundary)
        if mode != "none":
            modes.add(mode)
        texts.append(text)
    return texts, guard.content.instructions(modes, boundary) if modes else ""
