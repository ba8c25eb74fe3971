"""A scripted chat model for offline demos and tests: no API key, deterministic turns.

LangChain's fake chat models raise on `bind_tools`; this one accepts it and records which
tools each turn was shown, so tests can assert what the model could see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

Turn = AIMessage | str | Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(BaseChatModel):
    """Answers with the next scripted turn. A turn may be a function of the conversation so
    far, to script a model that reacts to what the guard told it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    turns: list[Any] = Field(default_factory=list)
    bound_tool_names: list[str] | None = None
    _state: dict[str, Any] = PrivateAttr(default_factory=lambda: {"i": 0, "seen": []})
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "agentguard-scripted"

    @property
    def seen_tools(self) -> list[list[str] | None]:
        """For each turn answered, the tool names the model was shown (None: no tools bound)."""
        return list(self._state["seen"])

    @property
    def calls(self) -> int:
        return int(self._state["i"])

    def reset(self) -> None:
        """Rewind the script (for benchmarks and repeated runs); bindings share the rewind."""
        with self._lock:
            self._state["i"] = 0
            self._state["seen"].clear()

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        bound = self.model_copy(update={"bound_tool_names": names})
        bound._state = self._state  # one script, however many bindings
        bound._lock = self._lock
        return bound

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            i = self._state["i"]
            if i >= len(self.turns):
                raise RuntimeError(
                    f"ScriptedChatModel: script has {len(self.turns)} turns, asked for more"
                )
            self._state["i"] = i + 1
            self._state["seen"].append(self.bound_tool_names)
        turn = self.turns[i]
        if callable(turn) and not isinstance(turn, BaseMessage):
            turn = turn(list(messages))
        message = turn if isinstance(turn, AIMessage) else AIMessage(content=str(turn))
        return ChatResult(generations=[ChatGeneration(message=message)])
