"""Authorization on six levels: role, tenant, tool scope, resource scope, risk, confirmation.

Every level is evaluated and every refusal is kept, so the audit trail says all that was
wrong; any refusal denies (deny overrides allow). `DecisionPoint` lets an external engine
(Cedar, OPA, your own service) decide instead of the built-in `PolicyDecisionPoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentguard.context import Principal
from agentguard.policy.model import Confirmation, Policy, ResourceRule, Risk, ToolPolicy
from agentguard.policy.scopes import missing_for
from agentguard.verdict import Approval, Level, Reason


@dataclass(frozen=True)
class ResourceInfo:
    """What the host knows about one resource: whose tenant it lives in and who owns it."""

    tenant: str | None
    owner: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


ResourceResolver = Callable[[str], "ResourceInfo | None"]


@dataclass(frozen=True)
class AuthzRequest:
    """One question for a decision point. `args is None` asks "may this tool be shown?"."""

    principal: Principal
    tool: str
    tool_policy: ToolPolicy
    policy: Policy
    args: Mapping[str, Any] | None

    @property
    def is_visibility(self) -> bool:
        return self.args is None


@dataclass(frozen=True)
class AuthzResult:
    denials: tuple[Reason, ...] = ()
    approval: Approval | None = None


@runtime_checkable
class DecisionPoint(Protocol):
    """Answers an AuthzRequest. Raising is a denial (the guard fails closed)."""

    def decide(self, request: AuthzRequest) -> AuthzResult: ...


def iter_path(args: Mapping[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    """Values at a dotted path with `[*]` list wildcards, with their concrete paths."""
    frontier: list[tuple[str, Any]] = [("", args)]
    for part in path.split("."):
        star = part.endswith("[*]")
        key = part.removesuffix("[*]")
        nxt: list[tuple[str, Any]] = []
        for where, node in frontier:
            if not isinstance(node, Mapping) or key not in node:
                continue
            value = node[key]
            here = f"{where}.{key}" if where else key
            if star:
                if isinstance(value, list):
                    nxt.extend((f"{here}[{i}]", v) for i, v in enumerate(value))
                else:
                    nxt.append((here, value))  # not a list: checked as-is and refused below
            else:
                nxt.append((here, value))
        frontier = nxt
    yield from frontier


class PolicyDecisionPoint:
    """The built-in evaluator of a `Policy`."""

    def __init__(self, resolvers: Mapping[str, ResourceResolver] | None = None) -> None:
        self.resolvers = dict(resolvers or {})

    def decide(self, request: AuthzRequest) -> AuthzResult:
        p, tp, policy = request.principal, request.tool_policy, request.policy
        denials: list[Reason] = []
        approvals: list[tuple[Confirmation, Reason]] = []
        role = policy.roles.get(p.role)

        # 1. role
        if role is None:
            denials.append(
                Reason("role.unknown", Level.ROLE, f"role '{p.role}' is not defined in the policy")
            )
        elif tp.roles is not None and p.role not in tp.roles:
            denials.append(
                Reason("role.not_permitted", Level.ROLE, f"role '{p.role}' may not use this tool")
            )
        # 2. tenant (tool enabled for the tenant; resource tenancy is checked with resources)
        if tp.tenants is not None and p.tenant not in tp.tenants:
            denials.append(
                Reason(
                    "tenant.not_enabled", Level.TENANT, "this tool is not enabled for your tenant"
                )
            )
        # 3. tool scope
        if role is not None:
            delegated = p.delegation.scopes if p.delegation is not None else None
            missing = missing_for(tuple(role.scopes), p.scopes, delegated, tuple(tp.scopes))
            if missing:
                denials.append(
                    Reason(
                        "tool_scope.missing",
                        Level.TOOL_SCOPE,
                        f"missing scope(s): {', '.join(missing)}",
                    )
                )
        # 4. resource scope (only with arguments)
        if request.args is not None:
            for rule in tp.resources:
                denials.extend(self._check_resource(p, rule, request.args))
        # 5. risk
        if tp.risk is Risk.FORBIDDEN_FOR_AI:
            denials.append(
                Reason(
                    "risk.forbidden_for_ai",
                    Level.RISK,
                    "this tool may never be called by an AI agent",
                )
            )
        elif role is not None:
            if tp.risk.rank > role.approval_ceiling.rank:
                denials.append(
                    Reason(
                        "risk.above_ceiling",
                        Level.RISK,
                        f"risk '{tp.risk.value}' is above what role '{p.role}' may reach",
                    )
                )
            elif tp.risk.rank > role.max_risk.rank:
                approvals.append(
                    (
                        Confirmation.ADMIN_APPROVAL,
                        Reason(
                            "risk.needs_approval",
                            Level.RISK,
                            f"risk '{tp.risk.value}' is above role '{p.role}''s "
                            f"'{role.max_risk.value}' without approval",
                        ),
                    )
                )
        # 6. confirmation
        if tp.confirmation is Confirmation.NOT_ALLOWED_FOR_AI:
            denials.append(
                Reason(
                    "confirmation.not_allowed_for_ai",
                    Level.CONFIRMATION,
                    "this tool is not allowed for AI agents",
                )
            )
        elif tp.confirmation is not Confirmation.NONE:
            approvals.append(
                (
                    tp.confirmation,
                    Reason(
                        f"confirmation.{tp.confirmation.value}",
                        Level.CONFIRMATION,
                        f"this tool needs '{tp.confirmation.value}' before it runs",
                    ),
                )
            )
        approval = None
        if approvals:
            kind = max((k for k, _ in approvals), key=lambda k: k.rank)
            approval = Approval(kind=kind, reasons=tuple(r for _, r in approvals))
        return AuthzResult(tuple(denials), approval)

    def _check_resource(
        self, p: Principal, rule: ResourceRule, args: Mapping[str, Any]
    ) -> list[Reason]:
        out: list[Reason] = []
        found = list(iter_path(args, rule.path))
        if not found:
            return out  # argument absent: nothing is touched; the schema decides if it is required
        for where, value in found:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                out.append(
                    Reason(
                        "resource_scope.bad_value",
                        Level.RESOURCE_SCOPE,
                        f"{where}: a {rule.type} reference must be a string or integer",
                    )
                )
                continue
            ident = str(value)
            if rule.type == "tenant":
                if ident != p.tenant:
                    out.append(
                        Reason(
                            "tenant.cross_tenant",
                            Level.TENANT,
                            f"{where}: refers to another tenant",
                        )
                    )
                continue
            if "grant" in rule.checks:
                granted = p.grants.get(rule.type, frozenset())
                if ident not in granted and "*" not in granted:
                    out.append(
                        Reason(
                            "resource_scope.not_granted",
                            Level.RESOURCE_SCOPE,
                            f"{where}: you have no access to {rule.type} '{_clip(ident)}'",
                        )
                    )
            if "tenant" in rule.checks or "owner" in rule.checks:
                out.extend(self._check_owned(p, rule, where, ident))
        return out

    def _check_owned(
        self, p: Principal, rule: ResourceRule, where: str, ident: str
    ) -> list[Reason]:
        resolver = self.resolvers.get(rule.type)
        if resolver is None:
            return [
                Reason(
                    "internal.no_resolver",
                    Level.INTERNAL,
                    "the guard cannot check this resource",
                    detail=f"no resolver for resource type '{rule.type}'",
                )
            ]
        info = resolver(ident)
        # Not found and another tenant's look the same to the caller: no probing for ids.
        if info is None or ("tenant" in rule.checks and info.tenant != p.tenant):
            return [
                Reason(
                    "tenant.cross_tenant",
                    Level.TENANT,
                    f"{where}: {rule.type} '{_clip(ident)}' is not in your tenant",
                    detail="not found" if info is None else f"belongs to tenant {info.tenant!r}",
                )
            ]
        if "owner" in rule.checks and info.owner != p.user:
            return [
                Reason(
                    "resource_scope.not_owner",
                    Level.RESOURCE_SCOPE,
                    f"{where}: you do not own {rule.type} '{_clip(ident)}'",
                )
            ]
        return []


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
