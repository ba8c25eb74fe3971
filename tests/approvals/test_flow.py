"""Human approval through create_agent: the request, the answers, and the attacks each stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentguard import Guard, Principal
from agentguard._canonical import digest
from agentguard.approvals.assertions import ApprovalSigner, GrantTerms
from agentguard.approvals.gate import Approvals
from agentguard.approvals.ledger import MemoryConsentLedger
from agentguard.approvals.stepup import TotpVerifier
from agentguard.approvals.store import MemoryApprovalStore
from agentguard.errors import ConfigurationError
from agentguard.guard import CheckInput, CheckResult
from agentguard.killswitch import MemoryKillSwitch

from .flowkit import (
    ALICE,
    POLICY,
    Agent,
    action,
    calls_turn,
    dev,
    production,
    sign,
    tool_call,
)

EMAIL = {"to": "bob@example.com", "body": "Quarterly numbers attached"}


def email_turn(call_id: str = "c1", **args: Any) -> Any:
    return calls_turn(tool_call("send_email", {**EMAIL, **args}, call_id))


# -- the request --------------------------------------------------------------------------


def test_request_follows_the_hitl_shape_and_carries_what_binds_it(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    value = intr.value
    assert set(value) == {"action_requests", "review_configs"}
    req = action(intr)
    assert req["name"] == "send_email" and req["args"] == EMAIL
    assert "alice" in req["description"] and "medium risk" in req["description"]
    assert value["review_configs"] == [
        {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject", "respond"]}
    ]
    ag = req["agentguard"]
    assert ag["confirmation"] == "confirm" and ag["risk"] == "medium"
    assert ag["args_digest"] == digest(EMAIL)
    assert ag["policy_version"] == "flow-1"
    assert ag["tool_call_id"] == "c1" and ag["thread_id"] == "t-1"
    assert [r["code"] for r in ag["reasons"]] == ["confirmation.confirm"]
    assert ag["binding"] == {
        "tool": "send_email",
        "args_digest": digest(EMAIL),
        "principal_user": "alice",
        "tenant": "acme",
        "thread_id": "t-1",
        "policy_version": "flow-1",
        "call_id": "c1",
    }
    assert ag["signed_assertion_required"] is True
    assert ag["expires_at"] > ag["created_at"]
    assert ag["untrusted_args"] == [] and ag["dlp_findings"] == []
    assert intr.response_schema is not None  # clients see what an answer must look like
    assert agent.ran.calls == []


def test_request_shows_untrusted_args_and_dlp_findings_without_values(tmp_path: Path) -> None:
    class Flags:
        name = "flags"

        def evaluate(self, call: CheckInput) -> CheckResult:
            return CheckResult(
                annotations={
                    "untrusted_args": ["body"],
                    "dlp_findings": [
                        {"path": "body", "entity": "IBAN_CODE", "score": 0.9, "value": "DE89..."}
                    ],
                }
            )

    agent = Agent(
        [email_turn()], approvals=production(tmp_path), guard_kwargs={"checks": [Flags()]}
    )
    (intr,) = agent.start()
    ag = action(intr)["agentguard"]
    assert ag["untrusted_args"] == ["body"]
    assert ag["dlp_findings"] == [{"path": "body", "entity": "IBAN_CODE", "score": 0.9}]
    assert "DE89" not in repr(intr.value)


def test_expiry_is_fixed_when_first_asked(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    approvals = production(tmp_path, clock=lambda: clock[0])
    agent = Agent([email_turn()], approvals=approvals)
    (intr,) = agent.start()
    first = action(intr)["agentguard"]["expires_at"]
    clock[0] += 300
    with pytest.raises(ValidationError):  # a refused answer re-runs the task...
        agent.answer({"type": "approve"})
    (again,) = agent.pending()
    assert action(again)["agentguard"]["expires_at"] == first  # ...but the deadline stays


# -- answers ------------------------------------------------------------------------------


def test_signed_approval_runs_the_call_once_and_is_recorded(tmp_path: Path) -> None:
    approvals = production(tmp_path)
    agent = Agent([email_turn()], approvals=approvals)
    (intr,) = agent.start()
    assert agent.answer({"type": "approve", "assertion": sign(intr)}) == ()
    assert agent.ran.calls == [("send_email", EMAIL)]
    assert agent.tool_messages()["c1"].content == "sent to bob@example.com"
    (entry,) = approvals.ledger.query(limit=10)
    assert entry.decision == "approve" and entry.approvers == ("alice",)
    assert entry.method == "confirm" and entry.user == "alice" and entry.agent == "crm-agent"
    assert entry.input_hash == digest(EMAIL)
    assert "bob@example.com" not in entry.model_dump_json()  # shapes only, never the values
    (execution,) = agent.events("execution")
    assert execution.summary["approval"]["consents"] == [entry.consent_id]
    results = [e.result for e in agent.events("approval")]
    assert results == ["requested", "approve"]
    assert agent.audit.verify().ok


def test_the_hitl_response_wrapper_is_accepted(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    agent.answer({"decisions": [{"type": "approve", "assertion": sign(intr)}]})
    assert agent.ran.count("send_email") == 1


def test_reject_never_runs_and_the_model_reads_why(tmp_path: Path) -> None:
    approvals = production(tmp_path)
    agent = Agent([email_turn()], approvals=approvals)
    (intr,) = agent.start()
    agent.answer({"type": "reject", "message": "not to Bob", "assertion": sign(intr, "reject")})
    assert agent.ran.calls == []
    msg = agent.tool_messages()["c1"]
    assert msg.status == "error" and "rejected" in msg.text and "not to Bob" in msg.text
    assert [e.decision for e in approvals.ledger.query(limit=5)] == ["reject"]


def test_respond_answers_in_place_of_the_tool(tmp_path: Path) -> None:
    turn = calls_turn(tool_call("ask_user", {"question": "Which account?"}, "q1"))
    agent = Agent([turn], approvals=production(tmp_path))
    (intr,) = agent.start()
    assert action(intr)["agentguard"]["max_grant_seconds"] == 0
    assert intr.value["review_configs"][0]["allowed_decisions"] == ["respond", "reject"]
    agent.answer({"type": "respond", "message": "Account 42", "assertion": sign(intr, "respond")})
    assert agent.ran.calls == []
    msg = agent.tool_messages()["q1"]
    assert msg.status == "success" and msg.text == "Account 42"


def test_a_decision_the_tool_does_not_allow_is_refused(tmp_path: Path) -> None:
    turn = calls_turn(tool_call("ask_user", {"question": "Which account?"}, "q1"))
    agent = Agent([turn], approvals=production(tmp_path))
    (intr,) = agent.start()
    with pytest.raises(ValidationError):
        agent.answer({"type": "approve", "assertion": sign(intr)})
    assert agent.ran.calls == [] and len(agent.pending()) == 1


def test_edit_is_a_new_call_checked_again_and_the_model_is_told(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    new = {"to": "carol@example.com", "body": "Numbers attached"}
    answer = {
        "type": "edit",
        "edited_action": {"name": "send_email", "args": new},
        "assertion": sign(intr, "edit", edited_args=new),
    }
    agent.answer(answer)
    assert agent.ran.calls == [("send_email", new)]
    msg = agent.tool_messages()["c1"]
    assert "reviewer edited this call" in msg.text and msg.text.endswith(
        "sent to carol@example.com"
    )
    decisions = [e for e in agent.events("decision") if e.tool == "send_email"]
    assert digest(new) in {e.input_hash for e in decisions}  # the edit passed the pipeline


@pytest.mark.parametrize(
    ("edited_action", "why"),
    [
        ({"name": "search", "args": {"query": "x"}}, "tool"),  # switch tools
        ({"name": "send_email", "args": {**EMAIL, "bcc": "eve@evil.test"}}, "extra argument"),
        ({"name": "send_email", "args": {**EMAIL, "to": "eve@evil.test"}}, "policy pattern"),
        ({"name": "send_email", "args": {"to": "bob@example.com"}}, "missing argument"),
    ],
)
def test_an_edit_that_breaks_policy_is_refused_and_the_interrupt_stays(
    tmp_path: Path, edited_action: dict[str, Any], why: str
) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    answer = {
        "type": "edit",
        "edited_action": edited_action,
        "assertion": sign(intr, "edit", edited_args=edited_action["args"]),
    }
    with pytest.raises(ValidationError):
        agent.answer(answer)
    assert agent.ran.calls == [], why
    (still,) = agent.pending()
    assert still.id == intr.id  # same interrupt, still answerable
    agent.answer({"type": "approve", "assertion": sign(intr)})
    assert agent.ran.calls == [("send_email", EMAIL)]


@pytest.mark.parametrize(
    "answer",
    [
        {"type": "aprove"},  # typo in the decision
        {"type": "approve", "aprover": "alice"},  # typo in a field: never silently ignored
        {"type": "approve", "grant": {"ttl": 60}},
        {"decisions": []},
        {"decisions": [{"type": "approve"}, {"type": "approve"}]},
        "yes",
        None,
        {"approve": True},
    ],
)
def test_malformed_answers_leave_the_interrupt_pending(answer: Any) -> None:
    agent = Agent([email_turn()], approvals=dev())
    (intr,) = agent.start()
    with pytest.raises(ValidationError):
        agent.answer({intr.id: answer})
    assert agent.ran.calls == []
    assert [i.id for i in agent.pending()] == [intr.id]
    agent.answer({intr.id: {"type": "approve"}})
    assert agent.ran.count("send_email") == 1


# -- who may answer -----------------------------------------------------------------------


def test_unsigned_answers_are_refused_in_production(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (_intr,) = agent.start()
    with pytest.raises(ValidationError, match="unsigned"):
        agent.answer({"type": "approve", "approver": "alice"})
    assert agent.ran.calls == [] and len(agent.pending()) == 1
    assert agent.events("approval")[-1].reason == "unsigned"


def test_mis_signed_and_foreign_key_assertions_are_refused(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    other = ApprovalSigner(b"another-key-another-key-0123456789", kid="k1", algorithm="HS256")
    with pytest.raises(ValidationError, match="bad_signature"):
        agent.answer({"type": "approve", "assertion": sign(intr, signer=other)})
    token = sign(intr)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(ValidationError):
        agent.answer({"type": "approve", "assertion": tampered})
    assert agent.ran.calls == []


def test_forged_approver_is_refused(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    with pytest.raises(ValidationError, match="forged_approver"):
        agent.answer({"type": "approve", "approver": "ceo", "assertion": sign(intr)})
    with pytest.raises(ValidationError, match="decision_mismatch"):
        agent.answer({"type": "approve", "assertion": sign(intr, "reject")})
    assert agent.ran.calls == []


def test_an_assertion_for_another_call_or_thread_is_refused(tmp_path: Path) -> None:
    approvals = production(tmp_path)
    first = Agent([email_turn()], approvals=approvals, thread="t-1")
    (intr1,) = first.start()
    token_for_thread_1 = sign(intr1)
    second = Agent([email_turn()], approvals=approvals, thread="t-2")
    (intr2,) = second.start()
    with pytest.raises(ValidationError, match="binding_mismatch"):
        second.answer({"type": "approve", "assertion": token_for_thread_1})
    assert second.ran.calls == []
    # different arguments in the same thread: a new call needs its own approval
    binding = dict(action(intr2)["agentguard"]["binding"])
    binding["args_digest"] = digest({**EMAIL, "to": "eve@example.com"})
    from agentguard.approvals.assertions import Binding

    from .flowkit import SIGNER

    forged = SIGNER.sign(
        approver="alice",
        approver_role="employee",
        tenant="acme",
        decision="approve",
        binding=Binding(**binding),
    )
    with pytest.raises(ValidationError, match="binding_mismatch"):
        second.answer({"type": "approve", "assertion": forged})
    second.answer({"type": "approve", "assertion": sign(intr2)})
    assert second.ran.count("send_email") == 1


def test_a_replayed_assertion_is_refused(tmp_path: Path) -> None:
    agent = Agent([email_turn("c1"), "sent", email_turn("c1")], approvals=production(tmp_path))
    (intr,) = agent.start()
    token = sign(intr)
    agent.answer({"type": "approve", "assertion": token})
    assert agent.ran.count("send_email") == 1
    # The model repeats the very same call (same id, same args) in a later turn: same binding,
    # but the assertion was single-use.
    (again,) = agent.start("once more")
    with pytest.raises(ValidationError, match="replayed"):
        agent.answer({"type": "approve", "assertion": token})
    assert agent.ran.count("send_email") == 1
    assert len(agent.pending()) == 1 and agent.pending()[0].id == again.id


def test_confirm_must_come_from_the_acting_user() -> None:
    agent = Agent([email_turn()], approvals=dev())
    (_intr,) = agent.start()
    with pytest.raises(ValidationError, match="acting user"):
        agent.answer({"type": "approve", "approver": "mallory", "approver_role": "admin"})
    agent.answer({"type": "approve"})  # development mode: the acting user, unsigned
    assert agent.ran.count("send_email") == 1


def test_development_mode_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="agentguard"):
        agent = Agent([email_turn()], approvals=dev())
        agent.start()
        agent.answer({"type": "approve"})
    text = caplog.text
    assert "DEVELOPMENT mode" in text and "UNSIGNED" in text
    assert agent.events("approval")[-1].summary["signed"] is False


# -- kinds --------------------------------------------------------------------------------


def test_step_up_needs_a_fresh_single_use_code(tmp_path: Path) -> None:
    import pyotp

    secret = pyotp.random_base32()
    totp = TotpVerifier(lambda p: secret if p.user == "alice" else None)
    approvals = production(tmp_path, step_up=totp)
    turn = calls_turn(
        tool_call("pay_invoice", {"invoice_id": "inv-1", "amount_cents": 100}, "p1"),
        tool_call("pay_invoice", {"invoice_id": "inv-2", "amount_cents": 200}, "p2"),
    )
    agent = Agent([turn], approvals=approvals)
    first, second = agent.start()
    ag = action(first)["agentguard"]
    assert ag["confirmation"] == "step_up" and ag["step_up"]["methods"] == ["step_up:totp"]
    with pytest.raises(ValidationError, match="evidence"):
        agent.answer({first.id: {"type": "approve", "assertion": sign(first)}})
    with pytest.raises(ValidationError, match=r"step_up\.failed"):
        agent.answer(
            {
                first.id: {
                    "type": "approve",
                    "assertion": sign(first),
                    "evidence": {"totp": "000000"},
                }
            }
        )
    code = pyotp.TOTP(secret).now()
    agent.answer(
        {first.id: {"type": "approve", "assertion": sign(first), "evidence": {"totp": code}}}
    )
    assert agent.ran.count("pay_invoice") == 1
    with pytest.raises(ValidationError, match=r"step_up\.failed"):  # the same code, again
        agent.answer(
            {second.id: {"type": "approve", "assertion": sign(second), "evidence": {"totp": code}}}
        )
    assert agent.ran.count("pay_invoice") == 1
    (entry,) = [e for e in approvals.ledger.query(limit=5) if e.decision == "approve"]
    assert entry.method == "step_up:totp"


def test_step_up_without_a_verifier_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="step-up verifier"):
        Guard(POLICY, approvals=production(tmp_path, step_up=()))


def test_admin_approval_needs_an_admin_of_the_tenant_other_than_the_requester(
    tmp_path: Path,
) -> None:
    turn = calls_turn(tool_call("export_contacts", {"format": "csv"}, "e1"))
    agent = Agent([turn], approvals=production(tmp_path))
    (intr,) = agent.start()
    with pytest.raises(ValidationError, match="admin"):
        agent.answer({"type": "approve", "assertion": sign(intr)})  # alice, an employee
    with pytest.raises(ValidationError, match="wrong_tenant"):
        agent.answer(
            {
                "type": "approve",
                "assertion": sign(intr, approver="dana", role="admin", tenant="globex"),
            }
        )
    assert agent.ran.calls == []
    agent.answer({"type": "approve", "assertion": sign(intr, approver="root", role="admin")})
    assert agent.ran.count("export_contacts") == 1


def test_an_admin_cannot_admin_approve_their_own_agent(tmp_path: Path) -> None:
    boss = Principal(tenant="acme", user="root", role="admin")
    turn = calls_turn(tool_call("export_contacts", {"format": "csv"}, "e1"))
    agent = Agent([turn], approvals=production(tmp_path), principal=boss)
    (intr,) = agent.start()
    with pytest.raises(ValidationError, match="other than the requester"):
        agent.answer({"type": "approve", "assertion": sign(intr, approver="root", role="admin")})
    agent.answer({"type": "approve", "assertion": sign(intr, approver="ada", role="admin")})
    assert agent.ran.count("export_contacts") == 1


def test_four_eyes_needs_two_distinct_approvers_neither_the_requester(tmp_path: Path) -> None:
    approvals = production(tmp_path)
    turn = calls_turn(tool_call("delete_contact", {"contact_id": "k-1"}, "d1"))
    agent = Agent([turn], approvals=approvals)
    (intr,) = agent.start()
    assert action(intr)["agentguard"]["approvals_needed"] == 2
    with pytest.raises(ValidationError, match="neither of them the requester"):
        agent.answer({"type": "approve", "assertion": sign(intr, role="manager")})  # alice
    (intr2,) = agent.answer(
        {intr.id: {"type": "approve", "assertion": sign(intr, approver="mia", role="manager")}}
    )
    assert agent.ran.calls == []
    assert action(intr2)["agentguard"]["approvals"] == [{"approver": "mia", "method": "four_eyes"}]
    with pytest.raises(ValidationError, match="another person"):
        agent.answer(
            {
                intr2.id: {
                    "type": "approve",
                    "assertion": sign(intr2, approver="mia", role="manager"),
                }
            }
        )
    with pytest.raises(ValidationError, match="approving role"):
        agent.answer(
            {intr2.id: {"type": "approve", "assertion": sign(intr2, approver="vic", role="viewer")}}
        )
    assert (
        agent.answer(
            {intr2.id: {"type": "approve", "assertion": sign(intr2, approver="root", role="admin")}}
        )
        == ()
    )
    assert agent.ran.count("delete_contact") == 1
    assert sorted(a for e in approvals.ledger.query(limit=5) for a in e.approvers) == [
        "mia",
        "root",
    ]


def test_not_allowed_for_ai_never_asks() -> None:
    turn = calls_turn(tool_call("close_account", {"account_id": "a-1"}, "x1"))
    agent = Agent([turn], approvals=dev())
    assert agent.start() == ()  # no interrupt: there is nobody to ask
    assert agent.ran.calls == []
    assert "not a valid tool" in agent.tool_messages()["x1"].text  # hidden from the model too
    (decision,) = agent.events("decision")
    assert decision.reason == "tool.hidden"
    assert "not allowed for AI agents" in decision.summary["reasons"][0]["detail"]


# -- at most once -------------------------------------------------------------------------


def test_each_pending_call_gets_its_own_interrupt_and_runs_once(tmp_path: Path) -> None:
    turn = calls_turn(
        tool_call("send_email", {**EMAIL, "to": "a@example.com"}, "c1"),
        tool_call("send_email", {**EMAIL, "to": "b@example.com"}, "c2"),
        tool_call("search", {"query": "q"}, "s1"),
    )
    agent = Agent([turn], approvals=production(tmp_path))
    pending = agent.start()
    assert len(pending) == 2 and len({i.id for i in pending}) == 2
    assert agent.ran.calls == [("search", {"query": "q"})]  # the safe sibling ran once
    first, second = sorted(pending, key=lambda i: action(i)["args"]["to"])
    left = agent.answer({first.id: {"type": "approve", "assertion": sign(first)}})
    assert [i.id for i in left] == [second.id]
    assert agent.ran.count("send_email") == 1
    agent.answer({second.id: {"type": "reject", "assertion": sign(second, "reject")}})
    assert [args["to"] for n, args in agent.ran.calls if n == "send_email"] == ["a@example.com"]
    assert agent.ran.count("search") == 1
    # Resuming again, with the same answers, runs nothing more.
    agent.answer({first.id: {"type": "approve", "assertion": sign(first)}})
    assert agent.ran.count("send_email") == 1


def test_replaying_the_paused_checkpoint_does_not_run_the_call_twice() -> None:
    agent = Agent([email_turn()], approvals=dev())
    (_intr,) = agent.start()
    paused = agent.graph.get_state(agent.config).config
    agent.answer({"type": "approve"})
    assert agent.ran.count("send_email") == 1
    # Time travel: resume the checkpoint taken at the pause, again.
    agent.graph.invoke(
        __import__("langgraph.types", fromlist=["Command"]).Command(resume={"type": "approve"}),
        paused,
        context={"principal": ALICE},
        version="v2",
    )
    assert agent.ran.count("send_email") == 1
    assert any("already started once" in m.text for m in agent.tool_messages().values())


def test_without_a_checkpointer_the_call_is_refused_not_paused() -> None:
    agent = Agent([email_turn()], approvals=dev(), checkpointer=None)
    result = agent.graph.invoke(
        {"messages": [("user", "go")]}, context={"principal": ALICE}, version="v2"
    )
    assert tuple(result.interrupts) == ()
    tool_msg = next(m for m in result.value["messages"] if m.type == "tool")
    assert "cannot pause" in tool_msg.text and agent.ran.calls == []
    assert agent.events("approval")[-1].result == "cannot_pause"


def test_without_approvals_configured_the_call_is_refused_clearly() -> None:
    agent = Agent([email_turn()], approvals=None)
    assert agent.start() == ()
    assert "no approval channel" in agent.tool_messages()["c1"].text


# -- re-checked on resume -----------------------------------------------------------------


def test_a_role_revoked_while_waiting_stops_the_call(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    demoted = ALICE.model_copy(update={"role": "viewer"})
    agent.answer({"type": "approve", "assertion": sign(intr)}, principal=demoted)
    assert agent.ran.calls == []
    assert "not a valid tool" in agent.tool_messages()["c1"].text  # viewers cannot send
    assert agent.events("decision")[-1].reason == "tool.hidden"


def test_the_kill_switch_is_checked_again_on_resume(tmp_path: Path) -> None:
    switch = MemoryKillSwitch()
    agent = Agent(
        [email_turn()], approvals=production(tmp_path), guard_kwargs={"kill_switch": switch}
    )
    (intr,) = agent.start()
    switch.engage("tenant", "acme", reason="incident 42")
    agent.answer({"type": "approve", "assertion": sign(intr)})
    assert agent.ran.calls == []
    assert "kill switch" in agent.tool_messages()["c1"].text
    decision = agent.events("decision")[-1]
    assert decision.reason == "limits.kill_switch"


def test_a_policy_change_while_waiting_voids_earlier_answers() -> None:
    approvals = dev()
    agent = Agent(
        [calls_turn(tool_call("delete_contact", {"contact_id": "k-1"}, "d1"))],
        approvals=approvals,
    )
    (_intr,) = agent.start()
    (intr2,) = agent.answer({"type": "approve", "approver": "mia", "approver_role": "manager"})
    # The policy is updated while the call waits for its second approver.
    updated = {**POLICY, "version": "flow-2"}
    agent.guard.policy = Guard(updated).policy
    (intr3,) = agent.answer(
        {intr2.id: {"type": "approve", "approver": "root", "approver_role": "admin"}}
    )
    assert agent.ran.calls == []  # mia's approval was for flow-1
    ag = action(intr3)["agentguard"]
    assert ag["policy_version"] == "flow-2" and "earlier_answers_void" in ag
    agent.answer({intr3.id: {"type": "approve", "approver": "max", "approver_role": "manager"}})
    assert agent.ran.count("delete_contact") == 1


# -- grants and expiry --------------------------------------------------------------------


def test_a_grant_covers_the_same_recipient_until_it_expires(tmp_path: Path) -> None:
    clock = [2_000_000.0]
    approvals = production(tmp_path, clock=lambda: clock[0])
    turns = [
        email_turn("c1"),
        "sent",
        email_turn("c2", body="second"),
        "sent again",
        email_turn("c3", to="zed@example.com"),
        "not sent",
        email_turn("c4", body="later"),
    ]
    agent = Agent(turns, approvals=approvals)
    (intr,) = agent.start()
    grant = GrantTerms(900, ("to",))
    agent.answer(
        {
            "type": "approve",
            "grant": {"ttl_seconds": 900, "match": ["to"]},
            "assertion": sign(intr, grant=grant, now=clock[0]),
        }
    )
    (entry,) = approvals.ledger.query(limit=5)
    assert entry.expires_at is not None and entry.expires_at.timestamp() == clock[0] + 900
    assert agent.start("again") == ()  # same recipient, other body: covered
    assert agent.ran.count("send_email") == 2
    (other,) = agent.start("someone else")  # another recipient: asks
    assert action(other)["args"]["to"] == "zed@example.com"
    agent.answer({"type": "reject", "assertion": sign(other, "reject", now=clock[0])})
    clock[0] += 901
    (lapsed,) = agent.start("too late")
    assert action(lapsed)["agentguard"]["expired_grant"]["grant_id"] == entry.consent_id
    assert agent.ran.count("send_email") == 2
    assert "grant_used" in [e.result for e in agent.events("approval")]


@pytest.mark.parametrize(
    ("grant", "why"),
    [
        ({"ttl_seconds": 3600, "match": ["to"]}, "grant.too_long"),
        ({"ttl_seconds": 60, "match": ["cc"]}, "grant.bad_match"),
    ],
)
def test_grants_beyond_what_the_policy_allows_are_refused(grant: dict[str, Any], why: str) -> None:
    agent = Agent([email_turn()], approvals=dev())
    agent.start()
    with pytest.raises(ValidationError, match=why):
        agent.answer({"type": "approve", "grant": grant})
    assert agent.ran.calls == []


def test_an_unsigned_grant_cannot_ride_on_a_signed_approval(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    with pytest.raises(ValidationError, match=r"grant\.mismatch"):
        agent.answer(
            {
                "type": "approve",
                "grant": {"ttl_seconds": 900, "match": ["to"]},
                "assertion": sign(intr),
            }
        )
    assert agent.ran.calls == []


def test_four_eyes_never_creates_grants() -> None:
    policy = {
        **POLICY,
        "tools": {
            **POLICY["tools"],
            "delete_contact": {
                "risk": "medium",
                "scopes": ["contacts:write"],
                "confirmation": "four_eyes",
                "approval": {"max_grant_seconds": 600},
            },
        },
    }
    agent = Agent(
        [calls_turn(tool_call("delete_contact", {"contact_id": "k-1"}, "d1"))],
        approvals=dev(),
        policy=policy,
    )
    agent.start()
    with pytest.raises(ValidationError, match=r"grant\.not_allowed"):
        agent.answer(
            {
                "type": "approve",
                "approver": "mia",
                "approver_role": "manager",
                "grant": {"ttl_seconds": 60, "match": ["contact_id"]},
            }
        )


def test_an_answer_after_the_deadline_refuses_the_call(tmp_path: Path) -> None:
    clock = [3_000_000.0]
    approvals = production(tmp_path, clock=lambda: clock[0])
    agent = Agent([email_turn()], approvals=approvals)
    (intr,) = agent.start()
    clock[0] += 901
    agent.answer({"type": "approve", "assertion": sign(intr, now=clock[0])})
    assert agent.ran.calls == []
    assert "expired" in agent.tool_messages()["c1"].text
    assert [e.decision for e in approvals.ledger.query(limit=5)] == ["expired"]


# -- set-up -------------------------------------------------------------------------------


def test_production_needs_a_verifier_and_durable_storage() -> None:
    with pytest.raises(ConfigurationError, match="verifier"):
        Approvals()
    from agentguard.approvals.assertions import ApprovalAssertionVerifier

    verifier = ApprovalAssertionVerifier({"k1": b"k" * 32}, algorithms=["HS256"])
    with pytest.raises(ConfigurationError, match="in-memory"):
        Approvals(verifier=verifier, ledger=MemoryConsentLedger(), store=MemoryApprovalStore())


async def test_async_agents_pause_and_resume_the_same_way(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = await agent.astart()
    with pytest.raises(ValidationError):
        await agent.aanswer({"type": "approve"})
    await agent.aanswer({"type": "approve", "assertion": sign(intr)})
    assert agent.ran.count("send_email") == 1


def test_an_assertion_is_single_use_across_processes_sharing_the_store(tmp_path: Path) -> None:
    from agentguard.approvals.assertions import ApprovalAssertionVerifier

    from .flowkit import KEY, no_totp

    db = tmp_path / "shared.sqlite3"

    def replica() -> Approvals:  # each with its own in-memory replay store in the verifier
        verifier = ApprovalAssertionVerifier({"k1": KEY}, algorithms=["HS256"])
        return Approvals(verifier=verifier, ledger=db, store=db, step_up=no_totp())

    first = Agent([email_turn()], approvals=replica())
    (intr,) = first.start()
    token = sign(intr)
    first.answer({"type": "approve", "assertion": token})
    second = Agent([email_turn()], approvals=replica())  # same thread, call and arguments
    second.start()
    with pytest.raises(ValidationError, match="replayed"):
        second.answer({"type": "approve", "assertion": token})
    assert first.ran.count("send_email") == 1 and second.ran.calls == []


def test_refusals_never_echo_the_answer(tmp_path: Path) -> None:
    agent = Agent([email_turn()], approvals=production(tmp_path))
    (intr,) = agent.start()
    token = sign(intr, approver="mallory")
    with pytest.raises(ValidationError) as info:
        agent.answer({"type": "approve", "assertion": token})
    assert "not_authorized" in str(info.value)
    assert token[-12:] not in str(info.value) and token[:12] not in str(info.value)


def test_step_up_by_identity_provider_is_bound_to_the_request(tmp_path: Path) -> None:
    import time as _time

    import jwt

    from agentguard.approvals.stepup import IdpAssertionVerifier

    idp_key = b"identity-provider-key-0123456789abcdef"
    idp = IdpAssertionVerifier(
        idp_key, algorithms=["HS256"], issuer="idp", audience="agentguard", require_nonce=True
    )

    def id_token(nonce: str) -> str:
        now = int(_time.time())
        claims = {
            "iss": "idp",
            "aud": "agentguard",
            "sub": "alice",
            "tenant": "acme",
            "iat": now,
            "exp": now + 120,
            "auth_time": now - 5,
            "jti": f"login-{nonce[-6:]}-{now}",
            "nonce": nonce,
        }
        return jwt.encode(claims, idp_key, algorithm="HS256")

    turn = calls_turn(tool_call("pay_invoice", {"invoice_id": "inv-1", "amount_cents": 1}, "p1"))
    agent = Agent([turn], approvals=production(tmp_path, step_up=idp))
    (intr,) = agent.start()
    challenge = action(intr)["agentguard"]["step_up"]["challenge"]
    assert challenge == action(intr)["agentguard"]["request_id"]
    with pytest.raises(ValidationError, match="another approval request"):
        agent.answer(
            {
                "type": "approve",
                "assertion": sign(intr),
                "evidence": {"id_token": id_token("apr_someone_elses_request")},
            }
        )
    agent.answer(
        {"type": "approve", "assertion": sign(intr), "evidence": {"id_token": id_token(challenge)}}
    )
    assert agent.ran.count("pay_invoice") == 1
