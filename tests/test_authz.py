"""Six levels, each refusal naming its level; deny overrides everything; engines are pluggable."""

from __future__ import annotations

from typing import Any

import pytest

from agentguard import (
    AuthzRequest,
    AuthzResult,
    ConfigurationError,
    Confirmation,
    Decision,
    Guard,
    Level,
    Principal,
    Reason,
)

from .conftest import ADMIN, ALICE, POLICY, VIEWER, call, ctx_for, tools_by_name


def decide(guard: Guard, who: Principal, name: str, args: dict[str, Any]) -> Any:
    return guard.check(call(name, args), ctx_for(who), tools_by_name())


def levels(verdict: Any) -> list[str]:
    return [r.level.value for r in verdict.reasons]


def test_role_unknown_to_the_policy(guard: Guard) -> None:
    ghost = Principal(tenant="acme", user="g", role="superuser")
    v = decide(guard, ghost, "search_contacts", {"query": "x"})
    # an unknown role sees no tools at all: the call reads like an unknown tool
    assert v.decision is Decision.DENY and v.primary_reason.code == "tool.hidden"
    assert "role 'superuser' is not defined" in v.primary_reason.detail


def test_role_not_permitted_for_tool_is_hidden_and_refused(guard: Guard) -> None:
    v = decide(guard, ALICE, "export_contacts", {"format": "csv"})
    assert v.decision is Decision.DENY
    assert "[role]" in v.primary_reason.detail


def test_tenant_level_resource_in_another_tenant(guard: Guard) -> None:
    v = decide(guard, ALICE, "get_contact", {"contact_id": "c-9"})
    assert v.decision is Decision.DENY
    assert levels(v) == ["tenant"]
    assert "globex" in v.reasons[0].detail  # the audit knows; the model does not
    assert "globex" not in v.model_message


def test_not_found_and_other_tenant_look_the_same_to_the_model(guard: Guard) -> None:
    a = decide(guard, ALICE, "get_contact", {"contact_id": "c-9"})
    b = decide(guard, ALICE, "get_contact", {"contact_id": "c-404"})
    assert a.model_message.replace("c-9", "X") == b.model_message.replace("c-404", "X")


def test_tenant_argument_must_be_the_principals(guard: Guard) -> None:
    ok = decide(guard, ALICE, "project_report", {"project": "apollo", "tenant_id": "acme"})
    assert ok.decision is Decision.ALLOW
    v = decide(guard, ALICE, "project_report", {"project": "apollo", "tenant_id": "globex"})
    assert levels(v) == ["tenant"]


def test_tool_enabled_only_for_some_tenants() -> None:
    policy = {
        "version": "1",
        "tools": {
            "search_contacts": {"risk": "low", "scopes": ["contacts:read"], "tenants": ["globex"]}
        },
    }
    g = Guard(policy)
    v = decide(g, ALICE, "search_contacts", {"query": "x"})
    assert v.decision is Decision.DENY and "[tenant]" in v.primary_reason.detail


def test_tool_scope_missing_and_token_scopes_only_narrow(guard: Guard) -> None:
    narrowed = ALICE.model_copy(update={"scopes": frozenset({"contacts:read"})})
    v = decide(guard, narrowed, "send_email", {"to": "a@b.c", "subject": "s", "body": "b"})
    assert (
        v.decision is Decision.DENY
        and "[tool_scope] missing scope(s): emails:send" in v.primary_reason.detail
    )
    # '*' in the principal's own scopes cannot widen the viewer role
    greedy = VIEWER.model_copy(update={"scopes": frozenset({"*"})})
    v = decide(guard, greedy, "send_email", {"to": "a@b.c", "subject": "s", "body": "b"})
    assert v.decision is Decision.DENY
    assert decide(guard, greedy, "search_contacts", {"query": "x"}).decision is Decision.ALLOW


def test_delegation_scopes_narrow_further(guard: Guard) -> None:
    from agentguard import Delegation

    delegated = ALICE.model_copy(
        update={"delegation": Delegation(on_behalf_of="alice", scopes=frozenset({"contacts:read"}))}
    )
    v = decide(guard, delegated, "send_email", {"to": "a@b.c", "subject": "s", "body": "b"})
    assert v.decision is Decision.DENY


def test_resource_scope_grant(guard: Guard) -> None:
    v = decide(guard, ALICE, "project_report", {"project": "zeus", "tenant_id": "acme"})
    assert levels(v) == ["resource_scope"]
    assert "no access to project 'zeus'" in v.model_message


def test_owner_check_and_approval_together(guard: Guard) -> None:
    mine = decide(
        guard, ADMIN.model_copy(update={"user": "alice"}), "delete_contact", {"contact_id": "c-1"}
    )
    assert mine.decision is Decision.APPROVE_FIRST
    assert mine.approval.kind is Confirmation.FOUR_EYES
    theirs = decide(guard, ADMIN, "delete_contact", {"contact_id": "c-2"})
    assert theirs.decision is Decision.DENY and levels(theirs) == ["resource_scope"]


def test_forbidden_for_ai_is_hidden_and_refused_for_everyone(guard: Guard) -> None:
    v = decide(guard, ADMIN, "wire_funds", {"iban": "DE00", "amount_cents": 1})
    assert v.decision is Decision.DENY
    assert "[risk] this tool may never be called by an AI agent" in v.primary_reason.detail


def test_risk_above_ceiling_is_refused_and_above_max_needs_admin() -> None:
    policy = {
        "version": "1",
        "tools": {
            "send_email": {"risk": "high", "scopes": ["emails:send"], "confirmation": "confirm"}
        },
    }
    g = Guard(policy)
    args = {"to": "a@b.c", "subject": "s", "body": "b"}
    # employee: max_risk medium, ceiling high → approval, and admin approval outranks confirm
    v = decide(g, ALICE, "send_email", args)
    assert v.decision is Decision.APPROVE_FIRST
    assert v.approval.kind is Confirmation.ADMIN_APPROVAL
    assert {r.code for r in v.approval.reasons} == {"risk.needs_approval", "confirmation.confirm"}
    # manager: ceiling critical but max medium → approval; admin: within max → only confirm
    assert decide(g, ADMIN, "send_email", args).approval.kind is Confirmation.CONFIRM
    crit = Guard(
        {
            "version": "1",
            "tools": {
                "send_email": {
                    "risk": "critical",
                    "scopes": ["emails:send"],
                    "confirmation": "confirm",
                }
            },
        }
    )
    v = decide(crit, ALICE, "send_email", args)
    assert v.decision is Decision.DENY and "[risk]" in v.primary_reason.detail


def test_not_allowed_for_ai_confirmation() -> None:
    g = Guard(
        {
            "version": "1",
            "tools": {"search_contacts": {"risk": "low", "confirmation": "not_allowed_for_ai"}},
        }
    )
    v = decide(g, ADMIN, "search_contacts", {"query": "x"})
    assert v.decision is Decision.DENY and "[confirmation]" in v.primary_reason.detail


def test_every_refusal_is_kept_and_deny_overrides_approval() -> None:
    policy = {
        "version": "1",
        "tools": {
            "project_report": {
                "risk": "high",
                "scopes": ["projects:read"],
                "confirmation": "confirm",
                "resources": [
                    {"path": "project", "type": "project", "checks": ["grant"]},
                    {"path": "tenant_id", "type": "tenant"},
                ],
            }
        },
    }
    v = decide(Guard(policy), ALICE, "project_report", {"project": "zeus", "tenant_id": "globex"})
    assert v.decision is Decision.DENY
    assert levels(v) == ["tenant", "resource_scope"]
    assert v.approval is None


def test_resolver_is_required_and_its_failure_denies() -> None:
    with pytest.raises(ConfigurationError, match="no resolver: contact"):
        Guard(POLICY)

    def broken(_: str) -> Any:
        raise RuntimeError("db down")

    g = Guard(POLICY, resources={"contact": broken})
    v = decide(g, ALICE, "get_contact", {"contact_id": "c-1"})
    assert v.decision is Decision.DENY and v.primary_reason.level is Level.INTERNAL


def test_resource_value_of_wrong_type_is_refused() -> None:
    policy = {
        "version": "1",
        "tools": {
            "send_bulk": {
                "risk": "low",
                "scopes": ["emails:send"],
                "resources": [
                    {"path": "recipients[*].email", "type": "mailbox", "checks": ["grant"]}
                ],
            }
        },
    }
    g = Guard(policy)
    who = ALICE.model_copy(update={"grants": {"mailbox": frozenset({"a@acme.example"})}})
    ok = decide(g, who, "send_bulk", {"recipients": [{"email": "a@acme.example"}], "subject": "s"})
    assert ok.decision is Decision.ALLOW
    v = decide(
        g,
        who,
        "send_bulk",
        {"recipients": [{"email": "a@acme.example"}, {"email": "x@evil.example"}], "subject": "s"},
    )
    assert v.decision is Decision.DENY and "recipients[1].email" in v.model_message


class AllowEverything:
    def __init__(self) -> None:
        self.requests: list[AuthzRequest] = []

    def decide(self, request: AuthzRequest) -> AuthzResult:
        self.requests.append(request)
        return AuthzResult()


def test_external_decision_point_decides_but_cannot_lift_the_floor() -> None:
    pdp = AllowEverything()
    g = Guard(POLICY, decision_point=pdp)
    v = decide(g, VIEWER, "send_email", {"to": "a@b.c", "subject": "s", "body": "b"})
    assert v.decision is Decision.ALLOW  # the engine said yes
    assert pdp.requests[-1].args == {"to": "a@b.c", "subject": "s", "body": "b"}
    assert any(r.is_visibility for r in pdp.requests)
    # forbidden_for_ai stays forbidden whatever the engine says
    assert (
        decide(g, ADMIN, "wire_funds", {"iban": "x", "amount_cents": 1}).decision is Decision.DENY
    )
    # schema strictness is not the engine's to waive
    bad = decide(g, VIEWER, "send_email", {"to": "a@b.c", "subject": "s", "body": "b", "x": 1})
    assert bad.decision is Decision.DENY


class DenyWithReason:
    def decide(self, request: AuthzRequest) -> AuthzResult:
        if request.is_visibility:
            return AuthzResult()
        return AuthzResult(
            denials=(Reason("cedar.forbid", Level.RESOURCE_SCOPE, "forbidden by cedar"),)
        )


class Exploding:
    def decide(self, request: AuthzRequest) -> AuthzResult:
        raise RuntimeError("engine down")


def test_external_engine_denials_and_failures() -> None:
    v = decide(
        Guard(POLICY, decision_point=DenyWithReason()), ALICE, "search_contacts", {"query": "x"}
    )
    assert v.decision is Decision.DENY and v.primary_reason.code == "cedar.forbid"
    v = decide(Guard(POLICY, decision_point=Exploding()), ALICE, "search_contacts", {"query": "x"})
    assert v.decision is Decision.DENY  # engine down: fail closed
