"""What a reviewer may send back to a paused call, as LangGraph `response_schema` types.

The shapes follow LangChain's human-in-the-loop decisions (`approve`, `edit`, `reject`,
`respond`, optionally wrapped in `{"decisions": [...]}`) with a few additions: who decided
(`approver`), the signed proof of it (`assertion`), step-up `evidence`, and an optional
time-limited `grant`. Every model is closed (`extra="forbid"`): a misspelt field is an invalid
answer, never a silently ignored one, so a typo cannot turn into an approval.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, create_model

from agentguard.policy.model import ReviewDecision

__all__ = [
    "AnswerDecision",
    "ApproveDecision",
    "EditDecision",
    "EditedAction",
    "GrantRequest",
    "RejectDecision",
    "RespondDecision",
    "decision_of",
    "response_type",
]

_Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_ArgName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GrantRequest(_Closed):
    """ "Don't ask again for `ttl_seconds` when these arguments are the same"."""

    ttl_seconds: int = Field(gt=0, le=24 * 3600)
    match: list[_ArgName] = Field(min_length=1, max_length=16)


class _Decided(_Closed):
    approver: _Id | None = Field(
        default=None, description="who decided (must match the signed assertion, if any)"
    )
    approver_role: _Id | None = Field(default=None, description="development mode only")
    assertion: Annotated[str, StringConstraints(min_length=1, max_length=16_384)] | None = Field(
        default=None, description="approval assertion (JWT) signed by your approval service"
    )
    evidence: dict[_ArgName, Annotated[str, StringConstraints(max_length=16_384)]] | None = Field(
        default=None, description='step-up proof, e.g. {"totp": "123456"}'
    )


class ApproveDecision(_Decided):
    type: Literal["approve"]
    grant: GrantRequest | None = None


class EditedAction(_Closed):
    name: str
    args: dict[str, Any]


class EditDecision(_Decided):
    type: Literal["edit"]
    edited_action: EditedAction


class RejectDecision(_Decided):
    type: Literal["reject"]
    message: Annotated[str, StringConstraints(max_length=4000)] | None = None


class RespondDecision(_Decided):
    type: Literal["respond"]
    message: Annotated[str, StringConstraints(max_length=20_000)]


AnswerDecision = ApproveDecision | EditDecision | RejectDecision | RespondDecision


@functools.lru_cache(maxsize=512)
def response_type(tool: str, allowed: tuple[ReviewDecision, ...]) -> Any:
    """The answer type for one call: its allowed decisions, bare or as `{"decisions": [d]}`.

    An edit's `name` is pinned to `tool` in the schema clients see (and checked again when the
    answer is evaluated): an edit can never change which tool runs.
    """
    pinned_action = create_model(
        "EditedAction",
        __base__=EditedAction,
        name=(Literal[tool], ...),  # type: ignore[arg-type]
    )
    pinned_edit = create_model(
        "EditDecision",
        __base__=EditDecision,
        edited_action=(pinned_action, ...),
    )
    by_type: dict[str, Any] = {
        "approve": ApproveDecision,
        "edit": pinned_edit,
        "reject": RejectDecision,
        "respond": RespondDecision,
    }
    members = tuple(by_type[d] for d in dict.fromkeys(allowed))
    one: Any = (
        members[0] if len(members) == 1 else Annotated[Union[members], Discriminator("type")]  # noqa: UP007
    )
    wrapped = create_model(
        "Decisions",
        __config__=ConfigDict(extra="forbid", frozen=True),
        decisions=(list[one], Field(min_length=1, max_length=1)),
    )
    return Union[wrapped, one]  # noqa: UP007


def decision_of(answer: Any) -> AnswerDecision:
    """The single decision inside an answer validated by `response_type`."""
    decisions: Sequence[Any] | None = getattr(answer, "decisions", None)
    found = decisions[0] if decisions is not None else answer
    if not isinstance(found, (ApproveDecision, EditDecision, RejectDecision, RespondDecision)):
        raise TypeError(f"not a decision: {type(found).__name__}")
    return found
