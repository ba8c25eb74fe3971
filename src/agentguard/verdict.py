"""The typed outcome of one guard decision. Doors enact it; they never re-decide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from agentguard.policy.model import Confirmation


class Decision(str, Enum):
    ALLOW = "allow"
    ALLOW_WITH = "allow_with"  # run, but with transformed arguments
    APPROVE_FIRST = "approve_first"  # a human must decide before it runs
    DENY = "deny"


class Level(str, Enum):
    """Where a refusal came from, most fundamental first; the six authorization levels sit
    in the middle, in the order they are evaluated."""

    IDENTITY = "identity"
    TOOL = "tool"  # unknown or hidden tool
    LIMITS = "limits"
    SCHEMA = "schema"
    ROLE = "role"
    TENANT = "tenant"
    TOOL_SCOPE = "tool_scope"
    RESOURCE_SCOPE = "resource_scope"
    RISK = "risk"
    CONFIRMATION = "confirmation"
    PROVENANCE = "provenance"  # arguments carrying values from untrusted content
    DLP = "dlp"  # personal data or secrets in an outbound payload
    INTERNAL = "internal"  # the guard itself failed: fail closed


AUTHZ_LEVELS = (
    Level.ROLE,
    Level.TENANT,
    Level.TOOL_SCOPE,
    Level.RESOURCE_SCOPE,
    Level.RISK,
    Level.CONFIRMATION,
)


@dataclass(frozen=True)
class Reason:
    """One reason for a decision: a stable code, its level, and text the model may read.

    `detail` is for the audit trail only (never shown to the model).
    """

    code: str
    level: Level
    message: str
    detail: str | None = None


@dataclass(frozen=True)
class Approval:
    """What kind of human decision a call needs before it may run, and why."""

    kind: Confirmation
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class ToolCallInfo:
    """The call as the model proposed it (args untouched)."""

    name: str
    args: Any
    id: str | None


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    call: ToolCallInfo
    reasons: tuple[Reason, ...] = ()
    args: Mapping[str, Any] | None = None  # validated (and possibly transformed) arguments
    approval: Approval | None = None
    risk: str | None = None
    policy_version: str | None = None
    input_hash: str | None = None
    principal: Any = None
    decision_id: str | None = None
    model_message: str | None = None  # what the model is told when the call does not run
    invalid: bool = False  # malformed call (unknown tool or bad arguments): counts toward limits
    stop_run: bool = False  # the run must stop (e.g. too many invalid calls)
    annotations: Mapping[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.decision in (Decision.ALLOW, Decision.ALLOW_WITH)

    @property
    def primary_reason(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None

    def with_(self, **changes: Any) -> Verdict:
        return replace(self, **changes)


def combine_denials(reasons: Sequence[Reason]) -> tuple[Reason, ...]:
    """Order refusals by level so the first one named is the most fundamental."""
    order = {lvl: i for i, lvl in enumerate(Level)}
    return tuple(sorted(reasons, key=lambda r: order[r.level]))
