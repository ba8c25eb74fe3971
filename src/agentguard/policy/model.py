"""The policy: what each tool risks, needs and may touch, and what each role may do.

Every model forbids unknown keys: a misspelt key is an error, never a silently ignored rule.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from agentguard.dlp.entities import ALL_TYPES, SECRET_TYPES

TOOL_NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$"
SCOPE_RE = r"^(\*|[A-Za-z0-9_\-.]+|\*:[A-Za-z0-9_\-.*]+|[A-Za-z0-9_\-.]+:[A-Za-z0-9_\-.*]+)$"

ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME_RE)]
Scope = Annotated[str, StringConstraints(pattern=SCOPE_RE, max_length=128)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Risk(str, Enum):
    """Ordered: comparing two risks compares their rank."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    FORBIDDEN_FOR_AI = "forbidden_for_ai"

    @property
    def rank(self) -> int:
        return _RISK_ORDER.index(self)


_RISK_ORDER = [Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL, Risk.FORBIDDEN_FOR_AI]


class Confirmation(str, Enum):
    """Who must say yes before the call runs; ordered from weakest to strongest."""

    NONE = "none"
    CONFIRM = "confirm"
    STEP_UP = "step_up"
    ADMIN_APPROVAL = "admin_approval"
    FOUR_EYES = "four_eyes"
    NOT_ALLOWED_FOR_AI = "not_allowed_for_ai"

    @property
    def rank(self) -> int:
        return _CONFIRM_ORDER.index(self)


_CONFIRM_ORDER = [
    Confirmation.NONE,
    Confirmation.CONFIRM,
    Confirmation.STEP_UP,
    Confirmation.ADMIN_APPROVAL,
    Confirmation.FOUR_EYES,
    Confirmation.NOT_ALLOWED_FOR_AI,
]


class Trust(str, Enum):
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


JSONScalar = str | int | float | bool | None


class ArgConstraint(_Strict):
    """Extra bounds on one argument, on top of the tool's own schema (all must hold)."""

    enum: list[JSONScalar] | None = Field(default=None, min_length=1)
    pattern: str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = Field(default=None, ge=0)
    max_items: int | None = Field(default=None, ge=0)
    format: Literal["email", "uri", "date", "date-time", "uuid", "hostname", "ipv4"] | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ArgConstraint:
        for lo, hi in (
            ("min_length", "max_length"),
            ("minimum", "maximum"),
            ("min_items", "max_items"),
        ):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b}): nothing could match")
        return self

    def to_json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = {
            "enum": "enum",
            "pattern": "pattern",
            "min_length": "minLength",
            "max_length": "maxLength",
            "minimum": "minimum",
            "maximum": "maximum",
            "min_items": "minItems",
            "max_items": "maxItems",
            "format": "format",
        }
        for field, keyword in names.items():
            value = getattr(self, field)
            if value is not None:
                out[keyword] = value
        return out


ResourceCheck = Literal["tenant", "grant", "owner"]


class ResourceRule(_Strict):
    """Binds the value(s) at an argument path to a resource the principal must be allowed to touch.

    `path` is dotted, with `[*]` for every item of a list: `contact_id`, `to[*]`,
    `attachments[*].file_id`. Checks: `tenant` (the resource lives in the principal's tenant),
    `grant` (the id is in the principal's grants for `type`), `owner` (the principal owns it).
    For `type: tenant` the value itself is a tenant id and must be the principal's.
    """

    path: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9_]+(\[\*\])?(\.[A-Za-z0-9_]+(\[\*\])?)*$")
    ]
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
    checks: list[ResourceCheck] = Field(default_factory=lambda: ["tenant"], min_length=1)  # type: ignore[arg-type]


ReviewDecision = Literal["approve", "edit", "reject", "respond"]
ALL_REVIEW_DECISIONS: tuple[ReviewDecision, ...] = ("approve", "edit", "reject", "respond")


class ApprovalSettings(_Strict):
    """How a human review of this tool's calls works (used when a call needs approval)."""

    decisions: list[ReviewDecision] = Field(
        default_factory=lambda: list(ALL_REVIEW_DECISIONS), min_length=1
    )
    expires_after_seconds: int = Field(default=900, gt=0, le=7 * 24 * 3600)
    max_grant_seconds: int = Field(default=0, ge=0, le=24 * 3600)

    @field_validator("decisions")
    @classmethod
    def _unique(cls, v: list[ReviewDecision]) -> list[ReviewDecision]:
        if len(set(v)) != len(v):
            raise ValueError("decisions must not repeat")
        return v


SpotlightMode = Literal["none", "delimit", "datamark", "base64"]
TaintAction = Literal["allow", "approve", "deny"]
HostName = Annotated[str, StringConstraints(pattern=r"^(\*\.)?[A-Za-z0-9.\-]{1,253}$")]


class InjectionThresholds(_Strict):
    """Injection scores (0..1) at which an untrusted result is annotated, quarantined, blocked."""

    annotate: float = Field(default=0.3, ge=0, le=1)
    quarantine: float = Field(default=0.6, ge=0, le=1)
    block: float = Field(default=0.85, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> InjectionThresholds:
        if not self.annotate <= self.quarantine <= self.block:
            raise ValueError("thresholds must satisfy annotate <= quarantine <= block")
        return self


class ContentSettings(_Strict):
    """How untrusted results are made inert before the model reads them."""

    spotlight: SpotlightMode = "delimit"
    allowed_hosts: list[HostName] = Field(default_factory=list)
    trusted_domains: list[HostName] = Field(
        default_factory=list,
        description="your own domains: emails and URLs there found in untrusted content do not "
        "count as planted values (an insider's or a compromised mailbox's still could be)",
    )
    injection: InjectionThresholds = Field(default_factory=InjectionThresholds)


class ToolContentSettings(_Strict):
    """Per-tool overrides of the policy's `content` settings (unset: inherit)."""

    spotlight: SpotlightMode | None = None
    allowed_hosts: list[HostName] = Field(default_factory=list)  # added to the policy's
    injection: InjectionThresholds | None = None


DlpAction = Literal["allow", "redact", "mask", "hash", "pseudonymize", "approve", "block"]


def _known_entity(name: str) -> str:
    # A misspelt type ("EMAIL") would be a rule that never fires: refuse it.
    if name != "*" and name not in ALL_TYPES:
        raise ValueError(f"unknown DLP entity type {name!r}; known: {', '.join(sorted(ALL_TYPES))}")
    return name


DlpEntity = Annotated[
    str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,63}$"), AfterValidator(_known_entity)
]
# In a field rule, `*` stands for every type found in that field.
DlpFieldEntity = Annotated[
    str, StringConstraints(pattern=r"^(?:[A-Z][A-Z0-9_]{1,63}|\*)$"), AfterValidator(_known_entity)
]
# A field path as the scanner reports it, without "$.": `to`, `cc[*]`, `headers.*`,
# `body<form>.to`, `payload.**`; `[*]` is any index, `*` one key, `**` any depth.
DlpField = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def default_dlp_actions() -> dict[str, DlpAction]:
    """Secrets and payment/identity numbers never leave; contact details need a yes."""
    actions: dict[str, DlpAction] = dict.fromkeys(SECRET_TYPES, "block")
    actions.update(
        {
            "CREDIT_CARD": "block",
            "US_SSN": "block",
            "IBAN_CODE": "approve",
            "EMAIL_ADDRESS": "approve",
            "PHONE_NUMBER": "approve",
            "IP_ADDRESS": "allow",
            "PERSON": "allow",
            "LOCATION": "allow",
            "ORGANIZATION": "allow",
            "NRP": "allow",
        }
    )
    return actions


# What can happen to a finding in text coming in (a tool result before the model reads it, a
# reply before the user reads it): no one is there to approve, so `approve` is not offered.
DlpInboundAction = Literal["allow", "redact", "mask", "hash", "pseudonymize", "block"]


def default_inbound_actions() -> dict[str, DlpInboundAction]:
    """Secrets and payment/identity numbers are cut out; everything else passes."""
    actions: dict[str, DlpInboundAction] = dict.fromkeys(SECRET_TYPES, "redact")
    actions.update({"CREDIT_CARD": "redact", "US_SSN": "redact"})
    return actions


class DlpInbound(_Strict):
    """DLP on text coming in: off unless `scan` is set."""

    scan: bool = False
    entities: dict[DlpEntity, DlpInboundAction] = Field(
        default_factory=default_inbound_actions,
        description="entity -> action, over the defaults (secrets, cards, SSNs: redact)",
    )
    default_action: DlpInboundAction = Field(
        default="allow", description="for entity types not listed in `entities`"
    )

    @field_validator("entities", mode="after")
    @classmethod
    def _over_defaults(cls, given: dict[str, DlpInboundAction]) -> dict[str, DlpInboundAction]:
        # Naming one type never drops the others' defaults: a secret passing needs saying so.
        return {**default_inbound_actions(), **given}


class DlpSettings(_Strict):
    """What outbound payloads are scanned for, and what happens to what is found."""

    enabled: bool = True
    profile: Literal["patterns", "ner"] = "patterns"
    scan: Literal["egress", "all"] = Field(
        default="egress", description="which tools' arguments are scanned: egress tools, or all"
    )
    entities: dict[DlpEntity, DlpAction] = Field(
        default_factory=default_dlp_actions,
        description="entity -> action, over the defaults (secrets, cards, SSNs: block; "
        "IBAN, email, phone: approve)",
    )
    default_action: DlpAction = Field(
        default="block", description="for entity types not listed in `entities`"
    )
    approval: Confirmation = Field(
        default=Confirmation.CONFIRM, description="who says yes when an action is 'approve'"
    )
    max_chars: int = Field(default=1_000_000, gt=0, le=50_000_000)
    time_budget_ms: int = Field(default=2_000, gt=0, le=60_000)
    results: DlpInbound = Field(
        default_factory=DlpInbound,
        description="untrusted tool results, before the model reads them (e.g. pseudonymize "
        "addresses so the model works with tokens the guard re-fills on the way out)",
    )
    answers: DlpInbound = Field(
        default_factory=DlpInbound,
        description="the text the model writes to the user, before it is shown or stored",
    )

    @field_validator("entities", mode="after")
    @classmethod
    def _over_defaults(cls, given: dict[str, DlpAction]) -> dict[str, DlpAction]:
        # Naming one type never drops the others' defaults: a secret leaving needs saying so.
        return {**default_dlp_actions(), **given}

    @model_validator(mode="after")
    def _approval_kind(self) -> DlpSettings:
        if self.approval in (Confirmation.NONE, Confirmation.NOT_ALLOWED_FOR_AI):
            raise ValueError("dlp.approval must name who approves (confirm, step_up, ...)")
        return self


class ToolDlpSettings(_Strict):
    """Per-tool DLP: force scanning on or off, and actions per entity and per field."""

    scan: bool | None = Field(default=None, description="unset: the policy's `dlp.scan` decides")
    scan_results: bool | None = Field(
        default=None, description="unset: the policy's `dlp.results.scan` decides"
    )
    entities: dict[DlpEntity, DlpAction] = Field(default_factory=dict)
    fields: dict[DlpField, dict[DlpFieldEntity, DlpAction]] = Field(
        default_factory=dict,
        description="field path -> entity (or '*') -> action; the most specific rule wins",
    )


class ToolPolicy(_Strict):
    """Everything the guard needs to know about one tool."""

    description: str | None = None
    risk: Risk
    scopes: list[Scope] = Field(default_factory=list)
    confirmation: Confirmation = Confirmation.NONE
    egress: bool = False
    destructive: bool = False
    output_trust: Trust = Trust.UNTRUSTED
    content: ToolContentSettings = Field(default_factory=ToolContentSettings)
    taint: TaintAction | None = Field(
        default=None,
        description="arguments carrying values from untrusted content: allow, approve or deny "
        "(default: approve for egress, destructive or high-risk tools, else allow)",
    )
    roles: list[NonEmpty] | None = None
    tenants: list[NonEmpty] | None = None
    resources: list[ResourceRule] = Field(default_factory=list)
    args: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")],
        ArgConstraint,
    ] = Field(default_factory=dict)
    max_args_bytes: int | None = Field(default=None, gt=0)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    dlp: ToolDlpSettings = Field(default_factory=ToolDlpSettings)


class RolePolicy(_Strict):
    """What a role grants: scopes, and the highest risk it may reach without / with approval."""

    description: str | None = None
    scopes: list[Scope] = Field(default_factory=list)
    max_risk: Risk = Risk.LOW
    approval_ceiling: Risk = Risk.CRITICAL

    @model_validator(mode="after")
    def _ceiling(self) -> RolePolicy:
        if self.max_risk is Risk.FORBIDDEN_FOR_AI or self.approval_ceiling is Risk.FORBIDDEN_FOR_AI:
            raise ValueError("'forbidden_for_ai' cannot be reached by any role")
        if self.approval_ceiling.rank < self.max_risk.rank:
            raise ValueError(
                f"approval_ceiling ({self.approval_ceiling.value}) is below max_risk "
                f"({self.max_risk.value})"
            )
        return self


class Limits(_Strict):
    """Bounds that keep hostile input cheap to refuse."""

    max_args_bytes: int = Field(default=64 * 1024, gt=0, le=16 * 1024 * 1024)
    max_depth: int = Field(default=32, gt=0, le=256)
    max_nodes: int = Field(default=10_000, gt=0)
    max_invalid_calls_per_run: int = Field(default=3, ge=1)


def default_roles() -> dict[str, RolePolicy]:
    """The five roles agentguard ships with; a policy that lists `roles` replaces them."""
    return {
        "admin": RolePolicy(
            description="Everything; high-risk calls without approval, critical with.",
            scopes=["*"],
            max_risk=Risk.HIGH,
        ),
        "manager": RolePolicy(
            description="Read, write and send; medium risk without approval.",
            scopes=["*:read", "*:write", "*:send"],
            max_risk=Risk.MEDIUM,
        ),
        "employee": RolePolicy(
            description="Read and write; medium risk without approval, up to high with.",
            scopes=["*:read", "*:write", "*:send"],
            max_risk=Risk.MEDIUM,
            approval_ceiling=Risk.HIGH,
        ),
        "viewer": RolePolicy(
            description="Read only; low risk.",
            scopes=["*:read"],
            max_risk=Risk.LOW,
            approval_ceiling=Risk.LOW,
        ),
        "external_client": RolePolicy(
            description="Nothing unless a tool's scopes are granted explicitly.",
            scopes=[],
            max_risk=Risk.LOW,
            approval_ceiling=Risk.LOW,
        ),
    }


MemoryScope = Literal["user", "team", "tenant"]


class MemorySettings(_Strict):
    """How agent memory is kept: where it lives, how long, what is written down, who erases."""

    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] = "agentguard"
    # Days an item is kept after its last write; a scope left out keeps items until deleted.
    retention_days: dict[MemoryScope, Annotated[float, Field(gt=0, le=36500)]] = Field(
        default_factory=dict
    )
    # Which operations produce audit events: every read and write, only writes, or none.
    audit: Literal["all", "writes", "none"] = "all"
    # Roles that may erase another user's, a team's or the whole tenant's memory.
    erase_roles: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]] = Field(
        default_factory=lambda: ["admin"]
    )

    @field_validator("prefix")
    @classmethod
    def _not_langgraph(cls, v: str) -> str:
        if v == "langgraph":
            raise ValueError("'langgraph' is reserved by LangGraph")
        return v


class Policy(_Strict):
    """A versioned policy. Build it in Python or load it with `load_policy` from YAML."""

    version: NonEmpty
    description: str | None = None
    roles: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")], RolePolicy
    ] = Field(default_factory=default_roles)
    tools: dict[ToolName, ToolPolicy] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    content: ContentSettings = Field(default_factory=ContentSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    dlp: DlpSettings = Field(default_factory=DlpSettings)

    @model_validator(mode="after")
    def _references(self) -> Policy:
        problems = []
        for name, tool in self.tools.items():
            for role in tool.roles or []:
                if role not in self.roles:
                    problems.append(f"tools.{name}.roles: unknown role '{role}'")
            if tool.risk is Risk.FORBIDDEN_FOR_AI and tool.confirmation not in (
                Confirmation.NONE,
                Confirmation.NOT_ALLOWED_FOR_AI,
            ):
                problems.append(
                    f"tools.{name}: risk 'forbidden_for_ai' contradicts confirmation "
                    f"'{tool.confirmation.value}' (it can never be approved)"
                )
        if not self.roles:
            problems.append("roles: at least one role is needed")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def tool(self, name: str) -> ToolPolicy | None:
        return self.tools.get(name)

    def taint_action(self, tool: ToolPolicy) -> TaintAction:
        """What tainted arguments do to a call of this tool."""
        if tool.taint is not None:
            return tool.taint
        escalate = tool.egress or tool.destructive or tool.risk.rank >= Risk.HIGH.rank
        return "approve" if escalate else "allow"

    def content_for(
        self, tool: ToolPolicy | None
    ) -> tuple[SpotlightMode, list[str], InjectionThresholds]:
        """The effective spotlight mode, allowed hosts and thresholds for a tool's results."""
        base = self.content
        if tool is None:
            return base.spotlight, list(base.allowed_hosts), base.injection
        own = tool.content
        return (
            own.spotlight or base.spotlight,
            [*base.allowed_hosts, *own.allowed_hosts],
            own.injection or base.injection,
        )
