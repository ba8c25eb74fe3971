"""Two guarded agents for `langgraph dev` (see `langgraph.json` at the repository root).

- `server_agent`: identity from the server's auth handler (`FromServerAuth`); whatever the
  client writes into the run `context` is ignored for identity.
- `naive_agent`: the default `FromContext` identity, which refuses every call on a server
  because there the client writes the run context.

The chat model is offline and deterministic: a user message `call <tool> <json-args>` (for
example `call get_contact {"contact_id": "c-101"}`) becomes that tool call; after a tool result
it answers `tool said: <content>`. Swap in a real chat model to use Studio interactively.
The graphs are compiled without a checkpointer or store: the server provides them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from agentguard import Guard
from agentguard.demo import crm
from agentguard.identity import FromServerAuth, IdentitySource
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.policy.loader import load_policy

_CALL = re.compile(r"^\s*call\s+([A-Za-z0-9_\-]+)\s*(.*)$", re.DOTALL)


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
            return AIMessage(content=f"tool said: {last.text}")
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


def _policy() -> Any:
    text = resources.files("agentguard.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
    return load_policy(text)


POLICY = _policy()


def build_agent(identity: IdentitySource | None) -> Any:
    """A `create_agent` graph over the demo CRM tools; audit defaults to in-memory."""
    guard = Guard(POLICY, identity=identity, resources={"contact": crm.contact_owner})
    return create_agent(CommandChatModel(), crm.all_tools(), middleware=[GuardMiddleware(guard)])


server_agent = build_agent(FromServerAuth())
naive_agent = build_agent(None)  # FromContext: refuses on a server


def main() -> None:
    """In-process smoke run (FromContext is fine here: this process writes the context)."""
    from agentguard import Principal

    alice = Principal(tenant="acme", user="alice", role="employee")
    for contact_id in ("c-101", "c-900"):
        text = f'call get_contact {{"contact_id": "{contact_id}"}}'
        result = naive_agent.invoke(
            {"messages": [HumanMessage(text)]}, context={"principal": alice}
        )
        print(f"alice> {text}\n  {result['messages'][-1].text}")
    print("Serve both graphs with: .venv/bin/langgraph dev --no-browser  (see langgraph.json)")


if __name__ == "__main__":
    main()
