"""Human approval that binds: what a paused call asks, which answers count, and what runs.

A door pauses a call whose verdict is `approve_first` with a LangGraph `interrupt()`; this
module decides everything else, without importing LangGraph:

- the request a reviewer sees (LangChain's `action_requests` / `review_configs` shape, plus
  risk, reasons, argument digest, policy version, untrusted arguments, DLP findings, expiry and
  the exact binding an approval service must sign);
- whether an answer counts: who gave it (a signed assertion in production), whether they may
  (confirm: the acting user; step_up: the acting user with fresh proof; admin_approval: an
  admin of the tenant; four_eyes: two distinct approvers, neither the requester), that it is
  about this very call (tool, argument digest, principal, thread, policy version), in time;
- what happens next: the call runs (once), is refused, or the reviewer's answer stands in for
  the tool's result. An edit is a new call that passes the whole pipeline again; it can never
  change which tool runs.

Answers are checked inside `interrupt()` (as a `response_schema` validator), so an answer that
does not count raises and is not saved: the interrupt stays pending and can be answered again.
LangGraph replays saved answers every time a paused task re-runs; each accepted answer is
written to the consent ledger with its digest, and a replayed answer is recognized there
instead of being verified (and its single-use proof spent) a second time.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, RootModel

from agentguard._canonical import digest
from agentguard._summary import describe_args
from agentguard.approvals.assertions import (
    ApprovalAssertion,
    ApprovalAssertionVerifier,
    Binding,
    GrantTerms,
    InvalidAssertion,
)
from agentguard.approvals.decisions import (
    AnswerDecision,
    ApproveDecision,
    EditDecision,
    decision_of,
    response_type,
)
from agentguard.approvals.ledger import (
    ConsentEntry,
    ConsentLedger,
    DuplicateConsent,
    MemoryConsentLedger,
    open_ledger,
)
from agentguard.approvals.ledger import (
    Decision as LedgerDecision,
)
from agentguard.approvals.stepup import StepUpVerifier
from agentguard.approvals.store import (
    ApprovalStore,
    Grant,
    MemoryApprovalStore,
    PendingRequest,
    open_store,
)
from agentguard.checks.dlp import SHOWN_KEY
from agentguard.context import Principal
from agentguard.errors import ConfigurationError
from agentguard.policy.model import Confirmation, Policy, ReviewDecision, ToolPolicy
from agentguard.verdict import Decision, Level, Reason, Verdict

log = logging.getLogger("agentguard")

__all__ = [
    "PATH_ENV",
    "ApprovalFlow",
    "Approvals",
    "Approver",
    "Outcome",
]

PATH_ENV = "AGENTGUARD_APPROVALS_PATH"
DEFAULT_PATH = "agentguard-approvals.sqlite3"
#: Answers that count one call may take (four-eyes and edits add rounds); beyond this, and
#: beyond four times as many answers of any kind, the call is refused.
MAX_ROUNDS = 12
#: How far back to look for an expired grant, to tell the reviewer it lapsed.
_GRANT_LOOKBACK = 24 * 3600.0

_DEV_WARNING = (
    "agentguard: approvals run in DEVELOPMENT mode: unsigned decisions are accepted, so anyone "
    "who can resume a thread can approve its calls. Never use this in production."
)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _iso(ts: float) -> str:
    return _utc(ts).isoformat(timespec="seconds")


class Approvals:
    """How a guard asks humans: who may answer, what proof it needs, where decisions are kept.

    Production (the default) accepts a decision only with an approval assertion signed by a
    key `verifier` trusts. `development=True` accepts unsigned decisions naming their
    approver, and says so loudly, once here and on every decision.

    Args:
        verifier: checks signed approval assertions (required unless `development`).
        step_up: how `step_up` approvals prove the acting user is present (TOTP, IdP, ...).
        ledger: the consent ledger (object, SQLite path or Postgres URL). Default: SQLite at
            `$AGENTGUARD_APPROVALS_PATH` or `agentguard-approvals.sqlite3` (memory in
            development mode).
        store: pending requests, at-most-once claims and grants; same defaults as `ledger`.
        admin_roles: roles whose holders may give `admin_approval`.
        four_eyes_roles: roles whose holders may be one of the two `four_eyes` approvers.
        allow_self_admin_approval: let an admin approve their own agent's call (off: an admin
            approval is a second person's).
    """

    def __init__(
        self,
        *,
        verifier: ApprovalAssertionVerifier | None = None,
        step_up: StepUpVerifier | Sequence[StepUpVerifier] = (),
        ledger: ConsentLedger | str | Path | None = None,
        store: ApprovalStore | str | Path | None = None,
        development: bool = False,
        admin_roles: Iterable[str] = ("admin",),
        four_eyes_roles: Iterable[str] = ("admin", "manager"),
        allow_self_admin_approval: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.development = bool(development)
        if not self.development and verifier is None:
            raise ConfigurationError(
                "Approvals needs a verifier (ApprovalAssertionVerifier) for signed decisions; "
                "pass development=True to accept unsigned ones while developing"
            )
        self.verifier = verifier
        self.step_up: tuple[StepUpVerifier, ...] = (
            (step_up,) if isinstance(step_up, StepUpVerifier) else tuple(step_up)
        )
        default = os.environ.get(PATH_ENV) or DEFAULT_PATH
        if ledger is None:
            ledger = MemoryConsentLedger() if self.development else default
        if store is None:
            store = MemoryApprovalStore() if self.development else default
        self.ledger: ConsentLedger = (
            open_ledger(ledger) if isinstance(ledger, (str, Path)) else ledger
        )
        self.store: ApprovalStore = open_store(store) if isinstance(store, (str, Path)) else store
        if not self.development and (
            isinstance(self.ledger, MemoryConsentLedger)
            or isinstance(self.store, MemoryApprovalStore)
        ):
            raise ConfigurationError(
                "in-memory consent ledger or approval store in production mode: approvals "
                "would not survive a restart and a call could run twice; use SQLite or Postgres"
            )
        self.admin_roles = frozenset(admin_roles)
        self.four_eyes_roles = frozenset(four_eyes_roles)
        if not self.admin_roles or not self.four_eyes_roles:
            raise ConfigurationError("admin_roles and four_eyes_roles must not be empty")
        self.allow_self_admin_approval = allow_self_admin_approval
        self.clock = clock
        if self.development:
            log.warning(_DEV_WARNING)

    def check_policy(self, policy: Policy) -> None:
        """Fail at start-up when the policy asks for an approval this set-up cannot give."""
        step_up_tools = [
            name for name, t in policy.tools.items() if t.confirmation is Confirmation.STEP_UP
        ]
        if step_up_tools and not self.step_up:
            raise ConfigurationError(
                "tools need step_up approval but no step-up verifier is configured: "
                + ", ".join(sorted(step_up_tools))
            )


@dataclass(frozen=True)
class Approver:
    """One accepted answer: who gave it and how it was proven."""

    user: str
    role: str | None
    decision: str
    method: str
    signed: bool
    consent_id: str


@dataclass(frozen=True)
class Outcome:
    """How a paused call ends: `run` (with `verdict.args`), `refuse`, or `respond`."""

    kind: Literal["run", "refuse", "respond"]
    verdict: Verdict
    message: str | None = None
    edited: bool = False
    approvers: tuple[Approver, ...] = ()


@dataclass(frozen=True)
class Step:
    """One answer, as checked (or recognized from the ledger)."""

    kind: Literal["approve", "edit", "reject", "respond", "expired", "stale", "void"]
    approver: Approver | None
    verdict: Verdict | None = None  # edit: the edited call's verdict
    message: str | None = None


@dataclass
class _Round:
    verdict: Verdict  # the call currently asked about (approve_first)
    approvals: list[Approver] = field(default_factory=list)


class AnswerRefused(ValueError):
    """An answer that does not count (LangGraph keeps the interrupt pending)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"approval refused ({code}): {message}")


def _subset_digest(
    args: Mapping[str, Any], names: Sequence[str], kind: Confirmation | None = None
) -> str | None:
    """What a grant matches: the named argument values, under one kind of approval (a grant
    given as a `confirm` never stands in for an admin's approval)."""
    if any(name not in args for name in names):
        return None
    values = {name: args[name] for name in names}
    return digest({"kind": kind.value if kind else None, "args": values})


class ApprovalFlow:
    """One paused call's review, rebuilt the same way every time the task re-runs.

    `recheck(args)` passes an edited call through the guard's whole pipeline.
    """

    def __init__(
        self,
        approvals: Approvals,
        *,
        policy: Policy,
        verdict: Verdict,
        thread_id: str | None,
        namespace: str | None,
        recheck: Callable[[Mapping[str, Any]], Verdict],
        audit: Callable[[dict[str, Any]], None],
        run_id: str | None = None,
    ) -> None:
        if verdict.decision is not Decision.APPROVE_FIRST or verdict.approval is None:
            raise ValueError("an approval flow starts from an approve_first verdict")
        principal = verdict.principal
        if not isinstance(principal, Principal):
            raise ValueError("an approval flow needs the verdict's principal")
        self.approvals = approvals
        self.policy = policy
        self.principal = principal
        self.tool = str(verdict.call.name)
        self.tool_policy: ToolPolicy = policy.tools[self.tool]
        self.settings = self.tool_policy.approval
        self.thread_id = thread_id
        self.run_id = run_id
        self._recheck = recheck
        self._audit = audit
        # The paused task's identity: stable across re-runs, so answers LangGraph replays are
        # found in the ledger. What an answer is bound to (principal, arguments, policy
        # version) is compared per answer: one given under other terms no longer counts.
        self.request_id = (
            "apr_"
            + digest(
                {"thread": thread_id, "ns": namespace, "call": verdict.call.id, "tool": self.tool}
            ).split(":", 1)[-1][:40]
        )
        self._pending: PendingRequest | None = None
        self.first_time = False
        self.original = verdict
        self._round = _Round(verdict)
        self._index = 0
        self._every: list[Approver] = []
        self._edited = False
        self.outcome: Outcome | None = None
        self._expired_grant: Grant | None = None
        self._stale = False
        self._effective = 0  # rounds whose answer counted (not echoes or voided answers)

    @property
    def pending(self) -> PendingRequest:
        """The stored request: its expiry is fixed when it is first opened, in any process."""
        if self._pending is None:
            now = self.approvals.clock()
            self._pending = self.approvals.store.open_request(
                self.request_id, now=now, ttl=float(self.settings.expires_after_seconds)
            )
            self.first_time = self._pending.created_at == now
            if self.first_time:
                self._event("requested", self.original, reason=None)
        return self._pending

    # -- before asking ----------------------------------------------------------------------

    @property
    def kind(self) -> Confirmation:
        approval = self._round.verdict.approval
        assert approval is not None
        return approval.kind

    def use_grant(self) -> Outcome | None:
        """Run without asking when an unexpired grant covers this call."""
        if self.settings.max_grant_seconds == 0 or self.kind is Confirmation.FOUR_EYES:
            return None
        now = self.approvals.clock()
        p = self.principal
        args = self.original.args or {}
        found = self.approvals.store.grants(
            tenant=p.tenant,
            user=p.user,
            agent=p.agent_id,
            tool=self.tool,
            since=now - _GRANT_LOOKBACK,
        )
        for grant in found:
            if _subset_digest(args, grant.match, self.kind) != grant.match_digest:
                continue
            # A grant never outlives what the policy allows today.
            deadline = min(grant.expires_at, grant.created_at + self.settings.max_grant_seconds)
            if deadline > now:
                self._event("grant_used", self.original, reason=None, consent_id=grant.grant_id)
                return self._run(self.original, ())
            self._expired_grant = self._expired_grant or grant
        return None

    # -- asking -----------------------------------------------------------------------------

    def request(self) -> dict[str, Any]:
        """The interrupt value: LangChain's HITL request for one action, plus what binds it."""
        v = self._round.verdict
        annotations = v.annotations or {}
        # DLP's view where it flagged values that need a yes: those as pseudonyms, not values
        shown = annotations.get(SHOWN_KEY)
        args = dict(shown if isinstance(shown, Mapping) else (v.args or {}))
        kind = self.kind
        reasons = [
            {"code": r.code, "level": r.level.value, "message": r.message} for r in v.reasons[:8]
        ]
        needed = 2 if kind is Confirmation.FOUR_EYES else 1
        binding = self._binding(v)
        extra: dict[str, Any] = {
            "version": 1,
            "request_id": self.request_id,
            "tool_call_id": v.call.id,
            "thread_id": self.thread_id,
            "principal": {
                "tenant": self.principal.tenant,
                "user": self.principal.user,
                "role": self.principal.role,
                "agent": self.principal.agent_id,
            },
            "confirmation": kind.value,
            "risk": v.risk,
            "reasons": reasons,
            "args_digest": v.input_hash,
            "policy_version": self.policy.version,
            "untrusted_args": _untrusted_paths(annotations),
            "provenance": _provenance(annotations),
            "dlp_findings": _dlp_findings(annotations),
            "created_at": _iso(self.pending.created_at),
            "expires_at": _iso(self.pending.expires_at),
            "round": self._index,
            "approvals_needed": needed,
            "approvals": [{"approver": a.user, "method": a.method} for a in self._round.approvals],
            "signed_assertion_required": not self.approvals.development,
            "binding": binding.to_claims(),
            "max_grant_seconds": (
                self.settings.max_grant_seconds if kind is not Confirmation.FOUR_EYES else 0
            ),
        }
        if kind is Confirmation.STEP_UP:
            extra["step_up"] = {
                "methods": [s.method for s in self.approvals.step_up],
                "challenge": self.request_id,
            }
        if self._expired_grant is not None:
            extra["expired_grant"] = {
                "grant_id": self._expired_grant.grant_id,
                "expired_at": _iso(self._expired_grant.expires_at),
            }
        if self._edited:
            extra["edited"] = True
        if self._stale:
            extra["earlier_answers_void"] = (
                "an earlier answer was given under another policy version, principal or "
                "arguments and no longer counts"
            )
        return {
            "action_requests": [
                {
                    "name": self.tool,
                    "args": args,
                    "description": self._description(kind, v, needed),
                    "agentguard": extra,
                }
            ],
            "review_configs": [
                {"action_name": self.tool, "allowed_decisions": list(self.settings.decisions)}
            ],
        }

    def response_schema(self) -> type[RootModel[Any]]:
        """The type LangGraph validates this round's answer with (invalid answers stay pending).

        Validate only inside `answering()`, which tells the validator whose question it is.
        """
        return _answer_model(self.tool, tuple(self.settings.decisions))

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Answers validated in this block are checked as this flow's current round."""
        token = _ANSWERING.set((self, self._index))
        try:
            yield
        finally:
            _ANSWERING.reset(token)

    def take(self, step: Step | RootModel[Any]) -> None:
        """Apply one checked answer; sets `outcome` when the review is over."""
        if isinstance(step, RootModel):
            step = step.root
        if not isinstance(step, Step):
            raise TypeError("take() expects the value interrupt() returned for this flow")
        self._index += 1
        if step.kind not in ("void", "stale"):
            self._effective += 1
        rnd = self._round
        if step.kind == "void":
            pass  # an earlier answer delivered again at a later round: ask again
        elif step.kind == "stale":
            self._stale = True  # answered under other terms: ask again
        elif step.kind == "expired":
            self.outcome = self._refuse(
                "approval.expired",
                f"The approval request for '{self.tool}' expired before it was approved; "
                "it was not run.",
            )
        elif step.kind == "reject":
            note = f" Reviewer's note: {step.message}" if step.message else ""
            self.outcome = self._refuse(
                "approval.rejected",
                f"A human reviewer rejected this call of '{self.tool}'; it was not run. "
                f"Do not retry it unless the user asks.{note}",
            )
        elif step.kind == "respond":
            self.outcome = Outcome("respond", rnd.verdict, message=step.message or "")
        elif step.kind == "approve":
            assert step.approver is not None
            rnd.approvals.append(step.approver)
            self._every.append(step.approver)
        elif step.kind == "edit":
            assert step.approver is not None and step.verdict is not None
            self._every.append(step.approver)
            self._edited = True
            new = step.verdict
            if new.decision is Decision.DENY:  # only on replay, after a policy change
                self.outcome = Outcome(
                    "refuse", new, message=new.model_message or "Refused. Nothing was run."
                )
            elif new.allowed:
                self.outcome = self._run(new, tuple(self._every))
            else:
                carried = [step.approver] if self._qualifies(step.approver, new) else []
                self._round = _Round(new, carried)
        if self.outcome is None and self._satisfied():
            self.outcome = self._run(self._round.verdict, tuple(self._every))
        if self.outcome is None and (
            self._effective >= MAX_ROUNDS or self._index >= 4 * MAX_ROUNDS
        ):
            self.outcome = self._refuse(
                "approval.too_many_rounds",
                f"The review of '{self.tool}' took too many rounds; it was not run.",
            )

    # -- checking one answer (runs inside interrupt()) --------------------------------------

    def _answer(self, index: int, answer: Any) -> Step:
        decision = decision_of(answer)
        consent_id = f"{self.request_id}:{index}"
        answer_hash = digest(decision.model_dump(mode="json"))
        known = self.approvals.ledger.get(consent_id)
        if known is not None:
            if known.response_hash != answer_hash:
                raise self._refused(
                    "already_answered",
                    "this request was already answered with a different decision "
                    f"(consent {consent_id})",
                )
            return self._recognized(decision, known)
        # An answer sent without an interrupt id stays in the checkpoint until the step ends, and
        # LangGraph hands it to each later question too (even when it was refused). An answer
        # already given at another round of this request is that echo: it counts for nothing.
        used = f"used:{self.request_id}:{answer_hash}"
        store = self.approvals.store
        if store.claimed(used) and not store.claimed(f"{used}:{index}"):
            return Step("void", None)
        try:
            step = self._fresh(decision, consent_id, answer_hash)
        except AnswerRefused as exc:
            self._mark_used(used, index)
            self._event("refused", self._round.verdict, reason=exc.code)
            raise
        self._mark_used(used, index)
        return step

    def _mark_used(self, used: str, index: int) -> None:
        now = self.approvals.clock()
        self.approvals.store.claim(used, now=now)
        self.approvals.store.claim(f"{used}:{index}", now=now)

    def _recognized(self, decision: AnswerDecision, entry: ConsentEntry) -> Step:
        """A replayed answer: already verified and recorded; rebuild its step."""
        p = self.principal
        current = self._round.verdict
        if (
            entry.user != p.user
            or entry.tenant != p.tenant
            or entry.agent != p.agent_id
            or entry.policy_version != self.policy.version
            or entry.input_hash != current.input_hash
        ):
            return Step("stale", None)
        approver = Approver(
            user=entry.approvers[0] if entry.approvers else "",
            role=entry.approver_role,
            decision=entry.decision,
            method=entry.method,
            signed=not entry.method.endswith(":unsigned"),
            consent_id=entry.consent_id,
        )
        if entry.decision == "expired":
            return Step("expired", approver)
        if isinstance(decision, EditDecision):
            # The edited call is checked again: policy may have changed since.
            return Step("edit", approver, verdict=self._recheck(decision.edited_action.args))
        message = getattr(decision, "message", None)
        return Step(decision.type, approver, message=message)

    def _fresh(self, decision: AnswerDecision, consent_id: str, answer_hash: str) -> Step:
        now = self.approvals.clock()
        current = self._round.verdict
        if decision.type not in self.settings.decisions:
            raise self._refused("not_allowed", f"'{decision.type}' is not allowed for this tool")
        assertion = self._verify_assertion(decision, current, now)
        user, role = self._who(decision, assertion)
        if decision.type in ("approve", "edit") and now >= self.pending.expires_at:
            approver = self._approver(
                user, role, "expired", consent_id, assertion, method="expired"
            )
            self._record(consent_id, answer_hash, "expired", approver, current, now)
            return Step("expired", approver)
        edited: Verdict | None = None
        if isinstance(decision, EditDecision):
            edited = self._check_edit(decision, assertion)
        method = self._authorize(decision, user, role, current, edited, now)
        approver = self._approver(user, role, decision.type, consent_id, assertion, method=method)
        grant = self._grant_terms(decision, assertion, current)
        grant_expires = now + grant.ttl_seconds if grant is not None else None
        self._record(consent_id, answer_hash, decision.type, approver, current, now, grant_expires)
        if grant is not None and grant_expires is not None:
            args = current.args or {}
            digest_ = _subset_digest(args, grant.match, self.kind)
            assert digest_ is not None
            self.approvals.store.add_grant(
                Grant(
                    grant_id=consent_id,
                    tenant=self.principal.tenant,
                    user=self.principal.user,
                    agent=self.principal.agent_id,
                    tool=self.tool,
                    match=grant.match,
                    match_digest=digest_,
                    created_at=now,
                    expires_at=grant_expires,
                    approvers=(user,),
                )
            )
        message = getattr(decision, "message", None)
        return Step(decision.type, approver, verdict=edited, message=message)

    def _verify_assertion(
        self, decision: AnswerDecision, current: Verdict, now: float
    ) -> ApprovalAssertion | None:
        if decision.assertion is None:
            if self.approvals.development:
                return None
            raise self._refused(
                "unsigned", "a signed approval assertion is required; unsigned answers are refused"
            )
        verifier = self.approvals.verifier
        if verifier is None:
            raise self._refused("unsigned", "this guard has no key to verify assertions with")
        try:
            assertion = verifier.verify(
                decision.assertion, expected=self._binding(current), now=now
            )
        except InvalidAssertion as exc:
            raise self._refused(f"assertion.{exc.code}", str(exc)) from None
        # Single use across every process sharing the store, whatever replay store the
        # verifier was given.
        if not self.approvals.store.claim(f"jti:{assertion.jti}", now=now):
            raise self._refused("assertion.replayed", "assertion was already used")
        if assertion.decision != decision.type:
            raise self._refused(
                "assertion.decision_mismatch",
                f"the assertion signs '{assertion.decision}', the answer says '{decision.type}'",
            )
        if decision.approver is not None and decision.approver != assertion.approver:
            raise self._refused("forged_approver", "approver does not match the signed assertion")
        if decision.approver_role is not None and decision.approver_role != assertion.approver_role:
            raise self._refused("forged_approver", "role does not match the signed assertion")
        return assertion

    def _who(
        self, decision: AnswerDecision, assertion: ApprovalAssertion | None
    ) -> tuple[str, str | None]:
        if assertion is not None:
            return assertion.approver, assertion.approver_role
        p = self.principal
        user = decision.approver or (
            p.user if self.kind in (Confirmation.CONFIRM, Confirmation.STEP_UP) else None
        )
        if user is None:
            raise self._refused(
                "no_approver", f"a '{self.kind.value}' answer must name its approver"
            )
        role = decision.approver_role or (p.role if user == p.user else None)
        return user, role

    def _check_edit(self, decision: EditDecision, assertion: ApprovalAssertion | None) -> Verdict:
        action = decision.edited_action
        if action.name != self.tool:
            raise self._refused("edit.tool_changed", "an edit cannot change which tool runs")
        if assertion is not None:
            try:
                edited_digest = digest(action.args)
            except Exception:
                raise self._refused("edit.invalid", "edited arguments are not plain JSON") from None
            if assertion.edited_args_digest != edited_digest:
                raise self._refused(
                    "assertion.binding_mismatch",
                    "the assertion signs different edited arguments",
                )
        new = self._recheck(action.args)
        if new.decision is Decision.DENY:
            raise self._refused(
                "edit.refused",
                "the edited call is refused by policy: "
                + (new.model_message or "refused").replace("\n", " "),
            )
        return new

    def _authorize(
        self,
        decision: AnswerDecision,
        user: str,
        role: str | None,
        current: Verdict,
        edited: Verdict | None,
        now: float,
    ) -> str:
        """The approval method this answer counts as, or a refusal."""
        p = self.principal
        kind = self.kind
        if (
            edited is not None
            and edited.approval is not None
            and edited.approval.kind.rank > kind.rank
        ):
            kind = edited.approval.kind
        is_requester = user == p.user
        if decision.type in ("reject", "respond"):
            if is_requester or self._may_approve(kind, user, role):
                return str(kind.value)
            raise self._refused("not_authorized", f"{user!r} may not answer this request")
        if kind in (Confirmation.CONFIRM, Confirmation.STEP_UP):
            if not is_requester:
                raise self._refused(
                    "not_authorized", f"'{kind.value}' must come from the acting user ({p.user})"
                )
            if kind is Confirmation.STEP_UP:
                return self._step_up(decision, now)
            return str(kind.value)
        if not self._may_approve(kind, user, role):
            if kind is Confirmation.ADMIN_APPROVAL:
                why = "needs an admin of this tenant" + (
                    "" if self.approvals.allow_self_admin_approval else ", other than the requester"
                )
            else:
                why = "needs two approvers with an approving role, neither of them the requester"
            raise self._refused("not_authorized", f"'{kind.value}' {why}")
        if kind is Confirmation.FOUR_EYES and any(a.user == user for a in self._round.approvals):
            raise self._refused(
                "four_eyes.same_approver", "the second approver must be another person"
            )
        return str(kind.value)

    def _may_approve(self, kind: Confirmation, user: str, role: str | None) -> bool:
        requester = user == self.principal.user
        if kind in (Confirmation.CONFIRM, Confirmation.STEP_UP):
            return requester
        if kind is Confirmation.ADMIN_APPROVAL:
            return role in self.approvals.admin_roles and (
                not requester or self.approvals.allow_self_admin_approval
            )
        if kind is Confirmation.FOUR_EYES:
            return role in self.approvals.four_eyes_roles and not requester
        return False

    def _qualifies(self, approver: Approver, verdict: Verdict) -> bool:
        """Does the editor's answer also approve the edited call?"""
        if verdict.approval is None:
            return True
        kind = verdict.approval.kind
        if kind is Confirmation.STEP_UP:
            return approver.method.startswith("step_up")
        return self._may_approve(kind, approver.user, approver.role)

    def _step_up(self, decision: AnswerDecision, now: float) -> str:
        evidence = decision.evidence or {}
        if not evidence:
            raise self._refused("step_up.missing", "fresh verification is required (evidence)")
        reasons = []
        for verifier in self.approvals.step_up:
            result = verifier.verify(self.principal, evidence, now=now, challenge=self.request_id)
            if result.ok:
                return result.method
            reasons.append(result.reason or "not verified")
        raise self._refused("step_up.failed", "; ".join(reasons) or "no step-up verifier")

    def _grant_terms(
        self, decision: AnswerDecision, assertion: ApprovalAssertion | None, current: Verdict
    ) -> GrantTerms | None:
        asked = decision.grant if isinstance(decision, ApproveDecision) else None
        if asked is None:
            if assertion is not None and assertion.grant is not None:
                raise self._refused(
                    "grant.mismatch", "the assertion signs a grant the answer lacks"
                )
            return None
        terms = GrantTerms(asked.ttl_seconds, tuple(sorted(set(asked.match))))
        if assertion is not None and assertion.grant != terms:
            raise self._refused("grant.mismatch", "the grant is not the one the assertion signs")
        limit = self.settings.max_grant_seconds
        if self.kind is Confirmation.FOUR_EYES or limit == 0:
            raise self._refused("grant.not_allowed", "grants are not allowed for this tool")
        if terms.ttl_seconds > limit:
            raise self._refused("grant.too_long", f"grants for this tool last at most {limit} s")
        if _subset_digest(current.args or {}, terms.match) is None:
            raise self._refused("grant.bad_match", "a grant can only match arguments of this call")
        return terms

    # -- results ----------------------------------------------------------------------------

    def _satisfied(self) -> bool:
        approvals = self._round.approvals
        if self.kind is Confirmation.FOUR_EYES:
            return len({a.user for a in approvals}) >= 2
        return bool(approvals)

    def _run(self, verdict: Verdict, approvers: tuple[Approver, ...]) -> Outcome:
        """Approved: run once. The claim that makes it once is taken right before it runs."""
        annotations = {
            **dict(verdict.annotations or {}),
            "approval": {
                "request_id": self.request_id,
                "claim": f"exec:{self.request_id}",
                "consents": [a.consent_id for a in approvers],
            },
        }
        run = verdict.with_(decision=Decision.ALLOW, annotations=annotations)
        return Outcome("run", run, edited=self._edited, approvers=approvers)

    def _refuse(self, code: str, message: str) -> Outcome:
        verdict = self._round.verdict.with_(
            decision=Decision.DENY,
            reasons=(Reason(code, Level.CONFIRMATION, message),),
            model_message=message,
        )
        return Outcome("refuse", verdict, message=message)

    def _refused(self, code: str, message: str) -> AnswerRefused:
        return AnswerRefused(code, message)

    def _binding(self, verdict: Verdict) -> Binding:
        return Binding(
            tool=self.tool,
            args_digest=str(verdict.input_hash),
            principal_user=self.principal.user,
            tenant=self.principal.tenant,
            thread_id=self.thread_id,
            policy_version=self.policy.version,
            call_id=verdict.call.id,
        )

    def _approver(
        self,
        user: str,
        role: str | None,
        decision: str,
        consent_id: str,
        assertion: ApprovalAssertion | None,
        *,
        method: str,
    ) -> Approver:
        signed = assertion is not None
        return Approver(
            user=user,
            role=role,
            decision=decision,
            method=method if signed else f"{method}:unsigned",
            signed=signed,
            consent_id=consent_id,
        )

    def _record(
        self,
        consent_id: str,
        answer_hash: str,
        decision: LedgerDecision,
        approver: Approver,
        current: Verdict,
        now: float,
        expires_at: float | None = None,
    ) -> None:
        p = self.principal
        summary = describe_args(current.args)
        entry = ConsentEntry(
            consent_id=consent_id,
            tenant=p.tenant,
            user=p.user,
            agent=p.agent_id,
            client=p.client_id,
            thread_id=self.thread_id,
            call_id=current.call.id,
            tool=self.tool,
            input_hash=str(current.input_hash),
            input_summary=summary if isinstance(summary, dict) else {"value": summary},
            risk=str(current.risk),
            decision=decision,
            approvers=(approver.user,),
            approver_role=approver.role,
            method=approver.method,
            policy_version=self.policy.version,
            decided_at=_utc(now),
            expires_at=_utc(expires_at) if expires_at is not None else None,
            response_hash=answer_hash,
        )
        if not approver.signed:
            log.warning(
                "agentguard: recording an UNSIGNED %s by %r (development mode)",
                decision,
                approver.user,
            )
        try:
            self.approvals.ledger.record(entry)
        except DuplicateConsent:
            # Two workers answered the same round at once: the first one recorded wins.
            raise self._refused(
                "already_answered", "this round was answered concurrently"
            ) from None
        self._event(
            decision,
            current,
            reason=None,
            consent_id=consent_id,
            approver=approver,
            grant_expires_at=_iso(expires_at) if expires_at is not None else None,
        )

    def _event(
        self,
        result: str,
        verdict: Verdict,
        *,
        reason: str | None,
        consent_id: str | None = None,
        approver: Approver | None = None,
        grant_expires_at: str | None = None,
    ) -> None:
        summary: dict[str, Any] = {"round": self._index, "kind": self.kind.value}
        if consent_id is not None:
            summary["consent_id"] = consent_id
        if approver is not None:
            summary.update(approver=approver.user, method=approver.method, signed=approver.signed)
        if grant_expires_at is not None:
            summary["grant_expires_at"] = grant_expires_at
        self._audit(
            dict(
                event="approval",
                tool=self.tool,
                call_id=verdict.call.id,
                thread_id=self.thread_id,
                run_id=self.run_id,
                risk=verdict.risk,
                confirmation=self.kind.value,
                confirmation_id=self.request_id,
                input_hash=verdict.input_hash,
                result=result,
                reason=reason,
                level=Level.CONFIRMATION.value,
                summary=summary,
                policy_version=self.policy.version,
                **self.principal.audit_fields(),
            )
        )

    def _description(self, kind: Confirmation, verdict: Verdict, needed: int) -> str:
        who = {
            Confirmation.CONFIRM: f"confirmation by {self.principal.user}",
            Confirmation.STEP_UP: f"confirmation by {self.principal.user} with fresh verification",
            Confirmation.ADMIN_APPROVAL: "approval by an admin of this tenant",
            Confirmation.FOUR_EYES: f"approval by {needed} people other than the requester",
        }.get(kind, kind.value)
        why = "; ".join(r.message for r in verdict.reasons[:4])
        return (
            f"'{self.tool}' ({verdict.risk} risk) needs {who} before it runs. {why}. "
            f"Expires {_iso(self.pending.expires_at)}."
        )


_ANSWERING: contextvars.ContextVar[tuple[ApprovalFlow, int] | None] = contextvars.ContextVar(
    "agentguard_answering", default=None
)


def _dispatch(answer: Any) -> Step:
    current = _ANSWERING.get()
    if current is None:
        raise ValueError("no approval review is being answered here")
    flow, index = current
    return flow._answer(index, answer)


@functools.lru_cache(maxsize=512)
def _answer_model(tool: str, allowed: tuple[ReviewDecision, ...]) -> type[RootModel[Any]]:
    """One answer type per tool and allowed decisions. Errors never echo the answer: a refused
    answer may hold a signed assertion, which has no business in logs."""
    inner: Any = Annotated[response_type(tool, allowed), AfterValidator(_dispatch)]
    model: type[RootModel[Any]] = type(
        "Answer",
        (RootModel[inner],),
        {"model_config": ConfigDict(hide_input_in_errors=True), "__module__": __name__},
    )
    return model


def claim_run(
    approvals: Approvals, verdict: Verdict, audit: Callable[[dict[str, Any]], None]
) -> Verdict | None:
    """Take the at-most-once claim of an approved call; a refusal verdict if it was taken."""
    approval = (verdict.annotations or {}).get("approval")
    key = approval.get("claim") if isinstance(approval, Mapping) else None
    if not isinstance(key, str):
        return None
    if approvals.store.claim(key, now=approvals.clock()):
        return None
    message = (
        f"This approved call of '{verdict.call.name}' already started once; it will not run again."
    )
    principal = verdict.principal
    audit(
        dict(
            event="approval",
            tool=str(verdict.call.name),
            call_id=verdict.call.id,
            risk=verdict.risk,
            confirmation_id=approval.get("request_id") if isinstance(approval, Mapping) else None,
            input_hash=verdict.input_hash,
            result="claim_refused",
            reason="approval.already_ran",
            level=Level.CONFIRMATION.value,
            policy_version=verdict.policy_version,
            **(principal.audit_fields() if isinstance(principal, Principal) else {}),
        )
    )
    return verdict.with_(
        decision=Decision.DENY,
        reasons=(Reason("approval.already_ran", Level.CONFIRMATION, message),),
        model_message=message,
    )


def _untrusted_paths(annotations: Mapping[str, Any]) -> list[str]:
    found = annotations.get("untrusted_args") or []
    return [str(p)[:200] for p in found if isinstance(p, str)][:64]


def _provenance(annotations: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which argument came from which untrusted result (redacted previews, never values)."""
    out = []
    for item in (annotations.get("provenance") or [])[:32]:
        if isinstance(item, Mapping):
            out.append(
                {
                    "path": str(item.get("path", ""))[:200],
                    "kind": str(item.get("kind", ""))[:16],
                    "preview": str(item.get("preview", ""))[:60],
                    "sources": [str(x)[:140] for x in list(item.get("sources") or [])[:5]],
                }
            )
    return out


_FINDING_KEYS = ("path", "entity", "score", "count", "start", "end", "action")


def _dlp_findings(annotations: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Findings as the DLP check reported them, minus anything that could carry a value."""
    out = []
    for item in (annotations.get("dlp_findings") or [])[:64]:
        if isinstance(item, Mapping):
            out.append(
                {
                    k: item[k]
                    for k in _FINDING_KEYS
                    if k in item
                    and isinstance(item[k], (str, int, float))
                    and not isinstance(item[k], bool)
                }
            )
    return out
