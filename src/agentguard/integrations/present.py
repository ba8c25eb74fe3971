"""What a model is shown: untrusted results spotlighted with this run's boundary, and a
system note saying how data is marked. Applied per model call, never saved to the state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage, ToolMessage

from agentguard.checks.limits import INVALID_KIND, MARK
from agentguard.content.receive import Label, label_of
from agentguard.guard import Guard
from agentguard.policy.model import SpotlightMode, Trust

__all__ = ["for_model", "present_messages", "with_instructions"]


def _label(guard: Guard, message: ToolMessage) -> Label | None:
    mark = message.additional_kwargs.get(MARK)
    if isinstance(mark, dict) and mark.get("kind") in (INVALID_KIND, "refused", "responded"):
        return None  # the guard's own words
    label = label_of(message.additional_kwargs)
    if label is not None:
        return label
    # A result that came through no guard (another node, an older run): data all the same.
    name = message.name or "tool"
    tool = guard.policy.tools.get(name)
    trust = tool.output_trust.value if tool is not None else Trust.UNTRUSTED.value
    return Label(source=name, call_id=message.tool_call_id, trust=trust, action="pass")


def present_messages(
    guard: Guard, messages: Sequence[BaseMessage], run_id: str | None
) -> tuple[list[BaseMessage], str]:
    """(messages as the model sees them, system instructions to add — "" when none)."""
    boundary = guard.content.boundary_for(run_id)
    modes: set[SpotlightMode] = set()
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, ToolMessage) and isinstance(message.content, str):
            label = _label(guard, message)
            if label is not None and label.untrusted:
                text = message.content
                if label_of(message.additional_kwargs) is None:
                    text = guard.content.receive_text(
                        text, source=label.source, call_id=label.call_id
                    ).text
                shown, mode = guard.content.present_text(text, label, boundary)
                if mode != "none":
                    modes.add(mode)
                    message = message.model_copy(update={"content": shown})
        out.append(message)
    return out, guard.content.instructions(modes, boundary) if modes else ""


def with_instructions(system: SystemMessage | None, instructions: str) -> SystemMessage | None:
    """The system message with the data-marking note appended (or a new one)."""
    if not instructions:
        return system
    if system is None:
        return SystemMessage(content=instructions)
    content: Any = system.content
    if isinstance(content, str):
        return system.model_copy(update={"content": f"{content}\n\n{instructions}"})
    return system.model_copy(update={"content": [*content, {"type": "text", "text": instructions}]})


def for_model(
    guard: Guard, messages: Sequence[BaseMessage], run_id: str | None
) -> list[BaseMessage]:
    """For hand-built graphs: the messages to send, data marked, with the note in the system
    message (merged into a leading system message, or added in front)."""
    shown, note = present_messages(guard, messages, run_id)
    if not note:
        return shown
    if shown and isinstance(shown[0], SystemMessage):
        merged = with_instructions(shown[0], note)
        assert merged is not None
        return [merged, *shown[1:]]
    return [SystemMessage(content=note), *shown]
