"""The pipeline as a whole: identity first, hidden equals unknown, every decision written down,
extra checks plug in, and any failure refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentguard import (
    Approval,
    CheckInput,
    CheckResult,
    Confirmation,
    Decision,
    Guard,
    Level,
    Reason,
)
from agentguard.audit import AuditEvent, AuditLog, MemorySink, verify_events
from agentguard.guard import AuditUnavailable

from .conftest import ALICE, CONTACTS, POLICY, VIEWER, call, ctx_for, tools_by_name


def test_no_identity_refuses_every_call_and_says_what_is_missing(guard: Guard) -> None:
    for name, args in [("search_contacts", {"query": "x"}), ("nope", {})]:
        v = guard.check(call(name, args), ctx_for(None), tools_by_name())
        assert v.decision is Decision.DENY
        assert v.primary_reason.level is Level.IDENTITY
        assert "missing" in v.model_message and "principal" in v.model_message
    assert guard.visible_names(list(tools_by_name()), ctx_for(None)) == []


def test_hidden_tool_answers_exactly_like_a_missing_one(guard: Guard) -> None:
    hidden = guard.check(
        call("export_contacts", {"format": "csv"}), ctx_for(ALICE), tools_by_name()
    )
    missing = guard.check(
        call("export_contactz", {"format": "csv"}), ctx_for(ALICE), tools_by_name()
    )
    assert hidden.model_message == missing.model_message.replace(
        "export_contactz", "export_contacts"
    )
    assert hidden.model_message.startswith(
        "Error: export_contacts is not a valid tool, try one of ["
    )
    assert "export_contacts," not in hidden.model_message.split("[", 1)[1]
    events = list(guard.audit.events())
    assert [e.reason for e in events[-2:]] == ["tool.hidden", "tool.unknown"]


def test_tool_registered_but_not_in_policy_is_unknown() -> None:
    g = Guard({"version": "1", "tools": {}})
    v = g.check(call("search_contacts", {"query": "x"}), ctx_for(ALICE), tools_by_name())
    assert v.decision is Decision.DENY and v.primary_reason.code == "tool.unknown"


def test_policy_tool_without_implementation_is_unknown(guard: Guard) -> None:
    v = guard.check(call("search_contacts", {"query": "x"}), ctx_for(ALICE), {})
    assert v.primary_reason.code == "tool.unknown"


@pytest.mark.parametrize(
    "name", ["send_ema\u0456l", "send_email\u200b", "", "x" * 500, None, 7, "../etc"]
)
def test_odd_tool_names_are_unknown(guard: Guard, name: Any) -> None:
    v = guard.check({"name": name, "args": {}, "id": "1"}, ctx_for(ALICE), tools_by_name())
    assert v.decision is Decision.DENY and v.primary_reason.code == "tool.unknown"
    assert len(v.model_message) < 400


def test_visibility_matches_enforcement(guard: Guard) -> None:
    names = list(tools_by_name())
    shown = set(guard.visible_names(names, ctx_for(VIEWER)))
    assert shown == {"search_contacts", "get_contact", "project_report"}
    for name in set(names) - shown:
        v = guard.check(call(name, {}), ctx_for(VIEWER), tools_by_name())
        assert v.decision is Decision.DENY and v.reasons[0].level is Level.TOOL


def test_audit_event_holds_hashes_and_shapes_never_values(guard: Guard) -> None:
    secret = "4111 1111 1111 1111"
    guard.check(
        call("send_email", {"to": "a@b.c", "subject": "s", "body": secret}),
        ctx_for(ALICE),
        tools_by_name(),
    )
    guard.check(
        call("send_email", {"to": "a@b.c", "subject": "s", "body": secret, "x": secret}),
        ctx_for(ALICE),
        tools_by_name(),
    )
    events = list(guard.audit.events())
    dumped = json.dumps([e.model_dump() for e in events])
    assert secret not in dumped and "a@b.c" not in dumped
    blocked, deny = events[-2:]
    # the card number in an egress body is stopped by DLP, and recorded by type and field only
    assert blocked.result == "deny" and blocked.reason == "dlp.blocked"
    assert [(f["entity"], f["path"]) for f in blocked.summary["dlp"]] == [("CREDIT_CARD", "$.body")]
    assert deny.result == "deny"
    assert blocked.tenant == "acme" and blocked.user == "alice"
    assert blocked.policy_version == "test-1"
    assert blocked.input_hash.startswith("sha256:") and blocked.risk == "medium"
    assert deny.summary["args"]["body"] == "string(19)"
    assert deny.level == "schema"


def test_audit_failure_fails_closed() -> None:
    class BrokenSink(MemorySink):
        def append(self, record: dict[str, Any]) -> None:
            raise OSError("disk full")

    g = Guard(POLICY, audit=AuditLog(BrokenSink(), b"k" * 32), resources={"contact": CONTACTS.get})
    with pytest.raises(AuditUnavailable):
        g.check(call("search_contacts", {"query": "x"}), ctx_for(ALICE), tools_by_name())


class Redact:
    name = "redact"

    def evaluate(self, call: CheckInput) -> CheckResult:
        if call.tool != "send_email":
            return CheckResult()
        return CheckResult(
            args={**call.args, "body": "[redacted]"}, annotations={"redacted": ["body"]}
        )


class NeedsStepUp:
    name = "step-up"

    def evaluate(self, call: CheckInput) -> CheckResult:
        return CheckResult(
            approval=Approval(
                Confirmation.STEP_UP, (Reason("x.step", Level.CONFIRMATION, "new device"),)
            )
        )


class Boom:
    name = "boom"

    def evaluate(self, call: CheckInput) -> CheckResult:
        raise RuntimeError("detector crashed")


def test_extra_checks_transform_escalate_or_fail_closed() -> None:
    args = {"to": "a@b.c", "subject": "s", "body": "secret"}
    g = Guard(POLICY, resources={"contact": CONTACTS.get}, checks=[Redact()])
    v = g.check(call("send_email", args), ctx_for(ALICE), tools_by_name())
    assert v.decision is Decision.ALLOW_WITH and v.args["body"] == "[redacted]"
    assert v.annotations == {"redacted": ["body"]}
    assert (
        v.input_hash
        != g.check(
            call("send_email", {**args, "body": "other"}), ctx_for(ALICE), tools_by_name()
        ).input_hash
    )

    g = Guard(POLICY, resources={"contact": CONTACTS.get}, checks=[NeedsStepUp()])
    v = g.check(call("send_email", args), ctx_for(ALICE), tools_by_name())
    assert v.decision is Decision.APPROVE_FIRST and v.approval.kind is Confirmation.STEP_UP

    g = Guard(POLICY, resources={"contact": CONTACTS.get}, checks=[Boom()])
    v = g.check(call("send_email", args), ctx_for(ALICE), tools_by_name())
    assert v.decision is Decision.DENY and v.primary_reason.level is Level.INTERNAL
    assert "RuntimeError" in v.primary_reason.detail and "detector crashed" not in v.model_message


def test_checks_do_not_run_for_calls_already_denied() -> None:
    seen: list[str] = []

    class Spy:
        name = "spy"

        def evaluate(self, call: CheckInput) -> CheckResult:
            seen.append(call.tool)
            return CheckResult()

    g = Guard(POLICY, resources={"contact": CONTACTS.get}, checks=[Spy()])
    g.check(call("get_contact", {"contact_id": "c-9"}), ctx_for(ALICE), tools_by_name())
    assert seen == []


def test_invalid_call_budget_counts_per_run() -> None:
    g = Guard(
        {**POLICY, "limits": {"max_invalid_calls_per_run": 2}}, resources={"contact": CONTACTS.get}
    )
    ctx = ctx_for(ALICE)
    from dataclasses import replace

    run = replace(ctx, run_id="run-1")
    first = g.check(call("nope", {}), run, tools_by_name())
    assert first.invalid and not first.stop_run
    second = g.check(call("search_contacts", {"q": 1}), run, tools_by_name())
    assert second.stop_run and second.reasons[-1].level is Level.LIMITS
    other_run = g.check(call("nope", {}), replace(ctx, run_id="run-2"), tools_by_name())
    assert not other_run.stop_run


def test_audit_chain_of_a_guarded_session_verifies() -> None:
    key = b"k" * 32
    sink = MemorySink()
    g = Guard(POLICY, audit=AuditLog(sink, key), resources={"contact": CONTACTS.get})
    for i in range(5):
        g.check(
            call("search_contacts", {"query": str(i)}, f"c{i}"), ctx_for(ALICE), tools_by_name()
        )
    assert verify_events(list(sink.read()), key).ok
    assert isinstance(next(iter(g.audit.events())), AuditEvent)


def test_visibility_cache_keeps_principals_apart(guard: Guard) -> None:
    from agentguard import Delegation

    names = list(tools_by_name())
    narrowed = ALICE.model_copy(update={"scopes": frozenset({"contacts:read"})})
    delegated = ALICE.model_copy(
        update={"delegation": Delegation(on_behalf_of="alice", scopes=frozenset({"contacts:read"}))}
    )
    for _ in range(2):  # second round answers from the cache
        assert "send_email" in guard.visible_names(names, ctx_for(ALICE))
        assert "send_email" not in guard.visible_names(names, ctx_for(narrowed))
        assert "send_email" not in guard.visible_names(names, ctx_for(delegated))
        assert "send_email" not in guard.visible_names(names, ctx_for(VIEWER))


def test_default_audit_is_sqlite_when_a_key_is_configured(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentguard.audit import SqliteSink, read_events

    path = tmp_path / "trail.sqlite3"
    monkeypatch.setenv("AGENTGUARD_AUDIT_KEY", "hex:" + "ab" * 32)
    monkeypatch.setenv("AGENTGUARD_AUDIT_PATH", str(path))
    for i in range(2):  # a second guard (a restarted process) continues the same chain
        g = Guard(POLICY, resources={"contact": CONTACTS.get})
        assert isinstance(g.audit.sink, SqliteSink)
        g.check(call("search_contacts", {"query": "x"}, f"c{i}"), ctx_for(ALICE), tools_by_name())
        g.audit.close()
    records = list(read_events(path))
    assert [r["seq"] for r in records] == [0, 1]
    assert verify_events(records, bytes.fromhex("ab" * 32)).ok


def test_default_audit_key_errors_and_in_memory_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentguard import ConfigurationError

    monkeypatch.setenv("AGENTGUARD_AUDIT_KEY", "hex:not-hex")
    with pytest.raises(ConfigurationError, match="AGENTGUARD_AUDIT_KEY"):
        Guard(POLICY, resources={"contact": CONTACTS.get})
    monkeypatch.setenv("AGENTGUARD_AUDIT_KEY", "short")
    with pytest.raises(ConfigurationError, match="at least 16"):
        Guard(POLICY, resources={"contact": CONTACTS.get})
    monkeypatch.delenv("AGENTGUARD_AUDIT_KEY")
    g = Guard(POLICY, resources={"contact": CONTACTS.get})
    assert isinstance(g.audit.sink, MemorySink) and g.audit.key_id == "ephemeral"
