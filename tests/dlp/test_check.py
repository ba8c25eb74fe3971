"""The DLP check in the guard's pipeline: block, ask, rewrite or allow, per entity and field.

The attack each test stops: an agent that read customer data or a secret and puts it into an
outbound call (email body, webhook payload, shared document).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.tools import tool

from agentguard import Guard, Principal
from agentguard.checks.dlp import DlpCheck
from agentguard.dlp import Scanner
from agentguard.dlp.pseudonyms import vault_scope
from agentguard.dlp.vault import MemoryPseudonymVault
from agentguard.identity import CallContext
from agentguard.policy import load_policy
from agentguard.verdict import Decision

ALICE = Principal(tenant="acme", user="alice", role="employee")
KEY = "ghp_Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4u"


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    return "sent"


@tool
def post_webhook(url: str, payload: dict[str, Any]) -> str:
    """Post JSON to a webhook."""
    return "posted"


@tool
def save_note(text: str) -> str:
    """Save a note in our own CRM."""
    return "saved"


TOOLS = {t.name: t for t in (send_email, post_webhook, save_note)}


def policy(**dlp: Any) -> Any:
    return load_policy(
        {
            "version": "dlp-1",
            "tools": {
                "send_email": {
                    "risk": "medium",
                    "scopes": ["emails:send"],
                    "egress": True,
                    "dlp": {
                        "fields": {"to": {"EMAIL_ADDRESS": "allow"}},
                        "entities": {"PHONE_NUMBER": "mask"},
                    },
                },
                "post_webhook": {
                    "risk": "medium",
                    "scopes": ["hooks:send"],
                    "egress": True,
                    "dlp": {
                        "fields": {
                            "payload.customer.*": {"EMAIL_ADDRESS": "pseudonymize"},
                            "payload.notes[*]": {"*": "redact"},
                        }
                    },
                },
                "save_note": {"risk": "low", "scopes": ["notes:write"]},
            },
            "dlp": dlp,
        }
    )


def check(args: dict[str, Any], name: str = "send_email", thread: str = "t1", **dlp: Any):
    p = policy(**dlp)
    guard = Guard(p, checks=[DlpCheck(p.dlp)], provenance=False)
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id=thread)
    return guard.check({"name": name, "args": args, "id": "c1"}, ctx, TOOLS)


EMAIL = {"to": "bob@partner.example", "subject": "hi", "body": "see you"}


def test_a_recipient_field_may_hold_an_email_address():
    assert check(EMAIL).decision is Decision.ALLOW


def test_a_secret_in_the_body_blocks_the_call_without_echoing_it():
    verdict = check({**EMAIL, "body": f"here is the token {KEY}"})
    assert verdict.decision is Decision.DENY
    assert verdict.reasons[0].code == "dlp.blocked"
    assert "GITHUB_TOKEN in $.body" in verdict.model_message
    assert KEY not in verdict.model_message and KEY not in repr(verdict.reasons)


def test_personal_data_outside_the_allowed_field_needs_approval():
    verdict = check({**EMAIL, "body": "forwarding carol@customer.example as asked"})
    assert verdict.decision is Decision.APPROVE_FIRST
    assert verdict.approval is not None and verdict.approval.kind.value == "confirm"
    assert verdict.annotations["dlp_findings"] == [
        {"entity": "EMAIL_ADDRESS", "path": "$.body", "action": "approve"}
    ]
    assert "carol" not in json.dumps(verdict.annotations)


def test_masking_keeps_the_structure_and_the_last_digits():
    verdict = check({**EMAIL, "body": "call me at +1 415 555 2671 today"})
    assert verdict.decision is Decision.ALLOW_WITH
    assert verdict.args == {**EMAIL, "body": "call me at ***********2671 today"}


def test_pseudonyms_are_stable_per_thread_and_reversible():
    vault = MemoryPseudonymVault()
    p = policy()
    guard = Guard(p, checks=[DlpCheck(p.dlp, vault=vault)], provenance=False)
    payload = {
        "customer": {"primary": "ann@customer.example", "backup": "ann@customer.example"},
        "notes": ["card 4111 1111 1111 1111 on file", "no data here"],
    }
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t-9")
    call = {"name": "post_webhook", "args": {"url": "https://hooks.example/x", "payload": payload}}
    verdict = guard.check({**call, "id": "c1"}, ctx, TOOLS)
    assert verdict.decision is Decision.ALLOW_WITH
    sent = verdict.args["payload"]
    assert sent["customer"] == {"primary": "<EMAIL_ADDRESS_1>", "backup": "<EMAIL_ADDRESS_1>"}
    assert sent["notes"] == ["card [CREDIT_CARD] on file", "no data here"]
    mine = vault_scope(ALICE, "t-9")
    assert vault.reveal(mine, json.dumps(sent["customer"])) == json.dumps(payload["customer"])
    assert vault.reveal(vault_scope(ALICE, "t-8"), "<EMAIL_ADDRESS_1>") == "<EMAIL_ADDRESS_1>"
    bob = Principal(tenant="acme", user="bob", role="employee")
    assert vault.reveal(vault_scope(bob, "t-9"), "<EMAIL_ADDRESS_1>") == "<EMAIL_ADDRESS_1>"
    assert payload["customer"]["primary"] == "ann@customer.example"  # the caller's copy intact


def test_hashes_are_keyed_and_stable():
    p = policy(entities={"EMAIL_ADDRESS": "hash"})
    one = DlpCheck(p.dlp, hash_key=b"k" * 32)
    two = DlpCheck(p.dlp, hash_key=b"j" * 32)
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t")
    outs = []
    for check_ in (one, one, two):
        guard = Guard(p, checks=[check_], provenance=False)
        args = {"text": "from dan@x.example"}
        outs.append(guard.check({"name": "save_note", "args": args, "id": "c"}, ctx, TOOLS))
    # save_note is not egress: not scanned
    assert all(
        v.decision is Decision.ALLOW and v.args == {"text": "from dan@x.example"} for v in outs
    )
    p = policy(entities={"EMAIL_ADDRESS": "hash"}, scan="all")
    bodies = []
    for check_ in (DlpCheck(p.dlp, hash_key=b"k" * 32),) * 2 + (
        DlpCheck(p.dlp, hash_key=b"j" * 32),
    ):
        guard = Guard(p, checks=[check_], provenance=False)
        v = guard.check(
            {"name": "save_note", "args": {"text": "from dan@x.example"}, "id": "c"}, ctx, TOOLS
        )
        bodies.append(v.args["text"])
    assert bodies[0] == bodies[1] != bodies[2]
    assert bodies[0].startswith("from [EMAIL_ADDRESS:") and "dan" not in bodies[0]


def test_a_card_number_sent_as_a_number_cannot_be_rewritten_so_it_is_blocked():
    verdict = check(
        {"url": "https://hooks.example/x", "payload": {"notes": [4111111111111111]}},
        name="post_webhook",
    )
    assert verdict.decision is Decision.DENY and "not text" in verdict.model_message


def test_a_payload_that_cannot_be_scanned_is_not_sent():
    p = policy()
    guard = Guard(p, checks=[DlpCheck(p.dlp, scanner=Scanner(max_chars=100))], provenance=False)
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t")
    verdict = guard.check(
        {"name": "send_email", "args": {**EMAIL, "body": "x" * 500}, "id": "c"}, ctx, TOOLS
    )
    assert verdict.decision is Decision.DENY and verdict.reasons[0].code == "dlp.incomplete"


def test_json_inside_a_string_is_rewritten_inside():
    body = '{"contact": {"email": "eve\\u0040corp.example"}}'  # the @ escaped in JSON
    verdict = check({**EMAIL, "body": body}, entities={"EMAIL_ADDRESS": "redact"})
    assert verdict.decision is Decision.ALLOW_WITH
    assert json.loads(verdict.args["body"]) == {"contact": {"email": "[EMAIL_ADDRESS]"}}


@pytest.mark.parametrize(
    "bad",
    [
        {"entities": {"EMAIL_ADDRESS": "shred"}},
        {"scan": "sometimes"},
        {"approval": "none"},
        {"entities": {"lowercase": "block"}},
        {"entities": {"EMAIL": "allow"}},  # a misspelt type would be a rule that never fires
        {"entities": {"*": "allow"}},  # `*` belongs in field rules only
        {"results": {"entities": {"EMAIL_ADDRESS": "approve"}}},  # nobody to approve text in
        {"answers": {"scann": True}},  # a misspelt key
    ],
)
def test_malformed_dlp_policies_are_refused(bad):
    from agentguard.errors import PolicyError

    with pytest.raises(PolicyError):
        policy(**bad)


def test_findings_are_audited_as_types_and_fields_never_values():
    from agentguard.audit import AuditLog, MemorySink

    p = policy()
    audit = AuditLog(MemorySink(), b"a" * 32)
    guard = Guard(p, checks=[DlpCheck(p.dlp)], provenance=False, audit=audit)
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t")
    body = "call me at +1 415 555 2671, token " + KEY
    for args in ({**EMAIL, "body": "call me at +1 415 555 2671"}, {**EMAIL, "body": body}):
        guard.check({"name": "send_email", "args": args, "id": "c"}, ctx, TOOLS)
    events = [e for e in audit.sink.records if e["event"] == "decision"]
    assert events[0]["result"] == "allow_with"
    assert events[0]["summary"]["dlp"] == [
        {"entity": "PHONE_NUMBER", "path": "$.body", "action": "mask"}
    ]
    assert events[1]["result"] == "deny" and events[1]["reason"] == "dlp.blocked"
    blob = json.dumps(events)
    assert "2671" not in blob and KEY not in blob


def test_the_ner_profile_without_an_installed_model_fails_at_start_up():
    from agentguard.errors import ConfigurationError

    p = policy(profile="ner")
    with pytest.raises(ConfigurationError, match="spaCy English model"):
        DlpCheck(p.dlp)


def test_a_full_pseudonym_vault_refuses_rather_than_forgets():
    vault = MemoryPseudonymVault(max_values=1)
    scope = vault_scope(ALICE, "t")
    assert vault.token(scope, "EMAIL_ADDRESS", "a@x.example") == "<EMAIL_ADDRESS_1>"
    assert vault.token(scope, "EMAIL_ADDRESS", "a@x.example") == "<EMAIL_ADDRESS_1>"
    p = policy(entities={"EMAIL_ADDRESS": "pseudonymize"})
    guard = Guard(p, checks=[DlpCheck(p.dlp, vault=vault)], provenance=False)
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t")
    args = {**EMAIL, "body": "cc b@y.example"}
    verdict = guard.check({"name": "send_email", "args": args, "id": "c"}, ctx, TOOLS)
    assert verdict.decision is Decision.DENY and verdict.reasons[0].code == "dlp.blocked"


def test_a_field_of_a_form_body_is_rewritten_in_place():
    body = "to=ops&note=ask+carol%40customer.example&x=1"
    verdict = check({**EMAIL, "body": body}, entities={"EMAIL_ADDRESS": "redact"})
    assert verdict.decision is Decision.ALLOW_WITH
    assert verdict.args["body"] == "to=ops&note=ask+[EMAIL_ADDRESS]&x=1"
