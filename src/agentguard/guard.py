"""The pipeline every tool call passes before anything runs.

identity → tool known and visible → arguments strictly valid → six-level authorization →
extra checks (`Check`) → one Verdict, written to the audit trail. Any exception on the way is a
denial: the guard fails closed.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_core.tools import BaseTool

from agentguard._canonical import digest
from agentguard._summary import clip_key as _clip_key
from agentguard._summary import describe_args as _describe
from agentguard._summary import safe_name as _safe_name
from agentguard.audit import AuditLog
from agentguard.audit.defaults import default_audit_log
from agentguard.checks.authz import (
    AuthzRequest,
    DecisionPoint,
    PolicyDecisionPoint,
    ResourceResolver,
)
from agentguard.checks.limits import RunCounter, invalid_calls_in_state
from agentguard.checks.schema import CompiledArgs, compile_args, tool_json_schema, validate_args
from agentguard.context import Principal
from agentguard.errors import ConfigurationError, GuardError, IdentityError
from agentguard.identity import CallContext, FromContext, IdentitySource
from agentguard.policy.loader import load_policy
from agentguard.policy.model import TOOL_NAME_RE, Confirmation, Policy, Risk, ToolPolicy
from agentguard.verdict import (
    Approval,
    Decision,
    Level,
    Reason,
    ToolCallInfo,
    Verdict,
    combine_denials,
)

if TYPE_CHECKING:
    from agentguard.approvals.gate import ApprovalFlow, Approvals
    from agentguard.checks.dlp import DlpCheck
    from agentguard.content.receive import Received
    from agentguard.content.signals import Detector
    from agentguard.killswitch import KillSwitch


log = logging.getLogger("agentguard")

_NAME_OK = re.compile(TOOL_NAME_RE)
UNKNOWN_TOOL_TEMPLATE = "Error: {name} is not a valid tool, try one of [{available}]."


class AuditUnavailable(GuardError):
    """The decision could not be written down, so the call must not run."""


@dataclass(frozen=True)
class CheckInput:
    """What an extra check sees: the call after identity, schema and authorization passed."""

    principal: Principal
    tool: str
    tool_policy: ToolPolicy
    policy: Policy
    args: Mapping[str, Any]
    context: CallContext


@dataclass(frozen=True)
class CheckResult:
    denials: tuple[Reason, ...] = ()
    approval: Approval | None = None
    args: Mapping[str, Any] | None = None  # replaces the arguments (redaction, rewriting)
    annotations: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Check(Protocol):
    """A check added after the built-in ones (DLP, provenance, ...). Raising denies."""

    name: str

    def evaluate(self, call: CheckInput) -> CheckResult: ...


def _strongest(a: Approval | None, b: Approval | None) -> Approval | None:
    if a is None or b is None:
        return a or b
    kind = a.kind if a.kind.rank >= b.kind.rank else b.kind
    return Approval(kind=kind, reasons=a.reasons + b.reasons)


def _walk_digest(value: Any, max_nodes: int = 1_000_000) -> str:
    """Iterative digest for arguments too deep or odd for canonical JSON (no recursion)."""
    h = hashlib.sha256()
    stack: list[Any] = [value]
    nodes = 0
    while stack and nodes < max_nodes:
        item = stack.pop()
        nodes += 1
        if isinstance(item, dict):
            h.update(b"{%d" % len(item))
            for k, v in item.items():
                h.update(b"k" + str(k).encode("utf-8", "surrogatepass")[:4096])
                stack.append(v)
        elif isinstance(item, list):
            h.update(b"[%d" % len(item))
            stack.extend(item)
        else:
            h.update(
                b"v"
                + type(item).__name__.encode()
                + str(item)[:4096].encode("utf-8", "surrogatepass")
            )
    return "sha256-walk:" + h.hexdigest()


def _input_hash(args: Any) -> str:
    """Canonical digest (what approvals bind to) when the arguments are plain JSON."""
    try:
        return digest(args)
    except Exception:  # not JSON, or nested past the recursion limit
        return _walk_digest(args)


class Guard:
    """One policy, one identity source, one audit log; shared by every door.

    Args:
        policy: a `Policy`, a path to a YAML/JSON policy file, or a mapping.
        audit: where decisions go. Default: SQLite signed with `AGENTGUARD_AUDIT_KEY` when
            that is set (see `agentguard.audit.defaults`), else an in-memory log with a random
            key (fine for notebooks and tests, lost on exit).
        identity: where the principal comes from (default: the in-process run context).
        decision_point: an external authorization engine instead of the policy's own rules.
        resources: resolvers per resource type, for `tenant` / `owner` resource rules.
        checks: extra checks run after authorization passes.
        approvals: how calls that need a human are paused and answered (`Approvals`). Without
            it, such calls are refused with a message saying so.
        kill_switch: checked before every call (and again when a paused call resumes).
        detectors: injection detectors added to the built-in rule scorer (e.g. a classifier).
        provenance: gate calls whose arguments carry values from untrusted results (on by
            default; the policy's `taint` settings say what happens).
        dlp: the DLP check for outbound payloads. Default: built from the policy's `dlp`
            settings (on unless the policy says `dlp.enabled: false`, so turning it off is a
            reviewed policy change, not a code path). Pass your own `DlpCheck` to choose its
            pseudonym vault or hash key.
        blocking: whether deciding may block (disk or network), so async doors decide in a
            worker thread instead of on the event loop. Default: worked out from the audit
            sink, kill switch and approval storage; pass True when your resolvers or decision
            point do I/O.
    """

    def __init__(
        self,
        policy: Policy | str | Path | Mapping[str, Any],
        *,
        audit: AuditLog | None = None,
        identity: IdentitySource | None = None,
        decision_point: DecisionPoint | None = None,
        resources: Mapping[str, ResourceResolver] | None = None,
        checks: Sequence[Check] = (),
        approvals: Approvals | None = None,
        kill_switch: KillSwitch | None = None,
        blocking: bool | None = None,
        detectors: Sequence[Detector] = (),
        provenance: bool = True,
        dlp: DlpCheck | None = None,
    ) -> None:
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.audit = audit or default_audit_log()
        self.identity: IdentitySource = identity or FromContext()
        self.resources = dict(resources or {})
        if decision_point is None:
            self._check_resolvers()
            decision_point = PolicyDecisionPoint(self.resources)
        self.decision_point = decision_point
        self._cache_visibility = type(decision_point) is PolicyDecisionPoint
        self._visibility: dict[tuple[Any, ...], tuple[Reason, ...]] = {}
        from agentguard.checks.provenance import ProvenanceCheck
        from agentguard.content.receive import ContentGuard

        self.content = ContentGuard(self.policy, detectors)
        self._vetted: dict[tuple[int, str], BaseTool | None] = {}
        from agentguard.checks.dlp import DlpCheck

        given = [c for c in checks if isinstance(c, DlpCheck)]
        if dlp is not None and given:
            raise ConfigurationError("pass the DLP check as dlp=..., not also in checks")
        self.dlp: DlpCheck | None = dlp or (given[0] if given else None)
        if self.dlp is None and self.policy.dlp.enabled:
            self.dlp = DlpCheck(self.policy.dlp)
        first: tuple[Check, ...] = (
            (ProvenanceCheck(reveal=self._reveal_for_check),) if provenance else ()
        )
        if self.dlp is not None and not given:
            first += (self.dlp,)
        self.checks = first + tuple(checks)
        self.approvals = approvals
        if approvals is not None:
            approvals.check_policy(self.policy)
        self.kill_switch = kill_switch
        self.blocking = self._may_block() if blocking is None else blocking
        self._compiled: dict[tuple[str, int], CompiledArgs] = {}
        self._lock = threading.Lock()
        self._run_counter = RunCounter()
        # Decision ids: a random per-guard prefix and a counter, unique without a syscall each.
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count(1)

    def _reveal_for_check(self, call: CheckInput, text: str) -> str:
        if self.dlp is None:
            return text
        from agentguard.dlp.pseudonyms import vault_scope

        return self.dlp.reveal(vault_scope(call.principal, call.context.thread_id), text)

    def _may_block(self) -> bool:
        """Does a decision touch a disk or a network? Then async doors decide off the loop."""
        from agentguard.audit.sinks import MemorySink

        if not isinstance(getattr(self.audit, "sink", None), MemorySink):
            return True
        if self.dlp is not None:
            from agentguard.dlp.vault import MemoryPseudonymVault

            if not isinstance(self.dlp.vault, MemoryPseudonymVault):
                return True
        if self.kill_switch is not None:
            from agentguard.killswitch import MemoryKillSwitch

            if not isinstance(self.kill_switch, MemoryKillSwitch):
                return True
        if self.approvals is not None:
            from agentguard.approvals.ledger import MemoryConsentLedger
            from agentguard.approvals.store import MemoryApprovalStore

            memory = isinstance(self.approvals.ledger, MemoryConsentLedger) and isinstance(
                self.approvals.store, MemoryApprovalStore
            )
            return not memory or bool(self.approvals.step_up)
        return False

    def _next_decision_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):x}"

    # -- set-up ---------------------------------------------------------------------------

    def _check_resolvers(self) -> None:
        needed = {
            rule.type
            for tool in self.policy.tools.values()
            for rule in tool.resources
            if rule.type != "tenant" and ({"tenant", "owner"} & set(rule.checks))
        }
        missing = sorted(needed - set(self.resources))
        if missing:
            raise ConfigurationError(
                "the policy checks tenancy or ownership of resource types with no resolver: "
                + ", ".join(missing)
                + " (pass resources={type: resolver})"
            )

    def compile(self, tool: BaseTool) -> CompiledArgs | None:
        """The strict argument schema for a tool (None when the policy does not know it)."""
        tool_policy = self.policy.tools.get(tool.name)
        if tool_policy is None:
            return None
        key = (tool.name, id(tool))
        found = self._compiled.get(key)
        if found is not None:
            return found
        compiled = compile_args(tool.name, tool_json_schema(tool), tool_policy, self.policy.limits)
        with self._lock:
            self._compiled[key] = compiled
        return compiled

    def prepare(self, tools: Iterable[BaseTool]) -> None:
        """Compile every tool now, so a policy/tool mismatch fails at start-up, not mid-run."""
        for tool in tools:
            self.compile(tool)

    def wrap_tools(self, tools: Sequence[BaseTool]) -> list[BaseTool]:
        """Wrap tools so any LangChain caller goes through this guard (see `GuardedTool`)."""
        from agentguard.integrations.langchain import wrap_tools

        return list(wrap_tools(self, tools))

    # -- visibility -----------------------------------------------------------------------

    def _static_denials(self, principal: Principal, name: str) -> tuple[Reason, ...]:
        tool_policy = self.policy.tools.get(name)
        if tool_policy is None:
            return (Reason("tool.no_policy", Level.TOOL, "no policy for this tool"),)
        floor = self._floor(tool_policy)
        if floor:
            return floor
        if not self._cache_visibility:
            return self.decision_point.decide(
                AuthzRequest(principal, name, tool_policy, self.policy, None)
            ).denials
        # The built-in evaluator's answer without arguments depends on nothing else: cache it.
        delegated = principal.delegation.scopes if principal.delegation is not None else None
        key = (name, principal.role, principal.tenant, principal.scopes, delegated)
        cached = self._visibility.get(key)
        if cached is None:
            cached = self.decision_point.decide(
                AuthzRequest(principal, name, tool_policy, self.policy, None)
            ).denials
            if len(self._visibility) >= 50_000:
                self._visibility.clear()
            self._visibility[key] = cached
        return cached

    def visible_names(self, names: Iterable[str], ctx: CallContext) -> list[str]:
        """The tool names this call's principal may be shown (none without an identity)."""
        try:
            principal = self.identity.resolve(ctx)
        except IdentityError:
            return []
        out = []
        for name in names:
            try:
                if not self._static_denials(principal, name):
                    out.append(name)
            except Exception:
                log.exception("agentguard: visibility check failed for %r; hiding it", name)
        return out

    def vet_tools(self, tools: Sequence[BaseTool]) -> list[BaseTool]:
        """Tool descriptions are content too (an MCP server writes them): hidden characters are
        removed, and a tool whose description tries to instruct the model is not shown."""
        out = []
        for tool in tools:
            key = (id(tool), tool.description)
            if key in self._vetted:
                vetted = self._vetted[key]
            else:
                vetted = self._vet(tool)
                if len(self._vetted) > 10_000:
                    self._vetted.clear()
                self._vetted[key] = vetted
            if vetted is not None:
                out.append(vetted)
        return out

    def _vet(self, tool: BaseTool) -> BaseTool | None:
        """The tool as it may be shown (description cleaned), or None: not shown at all."""
        received = self.content.receive_text(tool.description or "", source=tool.name, call_id=None)
        label = received.label
        if label.action in ("quarantine", "block"):
            log.warning(
                "agentguard: hiding tool %r: its description reads as instructions", tool.name
            )
            self.record_event(
                dict(
                    event="content",
                    tool=_safe_name(tool.name),
                    result="tool_hidden",
                    reason=label.signals[0] if label.signals else None,
                    level=Level.PROVENANCE.value,
                    summary={"score": label.score, "signals": list(label.signals[:8])},
                    policy_version=self.policy.version,
                )
            )
            return None
        if received.text == (tool.description or ""):
            return tool
        try:
            cleaned: BaseTool = tool.model_copy(update={"description": received.text})
            return cleaned
        except Exception:  # a tool that cannot be copied: shown as it is, already scored
            return tool

    def visible_tools(self, tools: Sequence[BaseTool], ctx: CallContext) -> list[BaseTool]:
        allowed = set(self.visible_names([t.name for t in tools], ctx))
        return [t for t in tools if t.name in allowed]

    @staticmethod
    def _floor(tool_policy: ToolPolicy) -> tuple[Reason, ...]:
        """Refusals no decision point can override."""
        if tool_policy.risk is Risk.FORBIDDEN_FOR_AI:
            return (
                Reason(
                    "risk.forbidden_for_ai",
                    Level.RISK,
                    "this tool may never be called by an AI agent",
                ),
            )
        if tool_policy.confirmation is Confirmation.NOT_ALLOWED_FOR_AI:
            return (
                Reason(
                    "confirmation.not_allowed_for_ai",
                    Level.CONFIRMATION,
                    "this tool is not allowed for AI agents",
                ),
            )
        return ()

    # -- the decision ---------------------------------------------------------------------

    def check(
        self,
        call: Mapping[str, Any],
        ctx: CallContext,
        tools: Mapping[str, BaseTool],
    ) -> Verdict:
        """Decide one tool call and write the decision down.

        `tools` are the tools the door can run, by name. Raises `AuditUnavailable` when the
        decision cannot be recorded (the door must not run the call then).
        """
        info = ToolCallInfo(
            name=call.get("name") if isinstance(call, Mapping) else None,  # type: ignore[arg-type]
            args=call.get("args") if isinstance(call, Mapping) else None,
            id=call.get("id") if isinstance(call, Mapping) else None,
        )
        try:
            verdict = self._decide(info, ctx, tools)
        except Exception as exc:
            log.exception("agentguard: decision failed; refusing the call")
            verdict = self._deny(
                info,
                None,
                [
                    Reason(
                        "internal.error",
                        Level.INTERNAL,
                        "the guard could not evaluate this call safely",
                        detail=f"{type(exc).__name__}: {str(exc)[:200]}",
                    )
                ],
            )
        self._record_decision(verdict, ctx)
        return verdict

    def _decide(
        self, info: ToolCallInfo, ctx: CallContext, tools: Mapping[str, BaseTool]
    ) -> Verdict:
        try:
            principal = self.identity.resolve(ctx)
        except IdentityError as exc:
            return self._deny(
                info,
                None,
                [
                    Reason(
                        "identity.missing",
                        Level.IDENTITY,
                        f"no trusted identity (missing: {', '.join(exc.missing) or '?'}): {exc}",
                    )
                ],
            )

        name = info.name
        if self.kill_switch is not None:
            stopped = self.kill_switch.engaged(principal, name if isinstance(name, str) else "")
            if stopped is not None:
                return self._deny(
                    info,
                    principal,
                    [
                        Reason(
                            "limits.kill_switch",
                            Level.LIMITS,
                            "tool calls are stopped by an operator (kill switch)",
                            detail=f"{stopped.scope}:{stopped.value or '*'}: {stopped.reason}"[
                                :300
                            ],
                        )
                    ],
                )
        tool = tools.get(name) if isinstance(name, str) else None
        tool_policy = self.policy.tools.get(name) if isinstance(name, str) else None
        if (
            not isinstance(name, str)
            or not _NAME_OK.match(name)
            or tool is None
            or tool_policy is None
        ):
            detail = "not registered" if tool_policy is not None else "no such tool in policy"
            return self._unknown(info, principal, ctx, tools, "tool.unknown", detail)
        hidden = self._static_denials(principal, name)
        if hidden:
            detail = "; ".join(f"[{r.level.value}] {r.message}" for r in hidden)
            return self._unknown(info, principal, ctx, tools, "tool.hidden", detail)

        compiled = self.compile(tool)
        assert compiled is not None
        raw_args = info.args
        if self.dlp is not None and self.dlp.settings.enabled and isinstance(raw_args, Mapping):
            # pseudonyms the model copied from a screened result: every check sees the value
            from agentguard.dlp.errors import ScanIncomplete
            from agentguard.dlp.pseudonyms import UnknownPseudonym, vault_scope

            try:
                raw_args = self.dlp.refill(raw_args, vault_scope(principal, ctx.thread_id))
            except ScanIncomplete as exc:  # an unknown pseudonym, or a vault that failed
                code = (
                    "dlp.unknown_pseudonym"
                    if isinstance(exc, UnknownPseudonym)
                    else ("dlp.incomplete")
                )
                return self._deny(info, principal, [Reason(code, Level.DLP, str(exc))], tool_policy)
        problems = validate_args(compiled, raw_args, self.policy.limits)
        if problems:
            lines = "\n".join(f"- {r.message}" for r in problems)
            message = (
                f"Invalid arguments for tool '{name}'. Nothing was run.\n{lines}\n"
                f"Fix the arguments and call '{name}' again."
            )
            return self._invalid(info, principal, ctx, problems, message, tool_policy)

        args: Mapping[str, Any] = raw_args
        result = self.decision_point.decide(
            AuthzRequest(principal, name, tool_policy, self.policy, args)
        )
        denials = list(self._floor(tool_policy)) + list(result.denials)
        approval = result.approval
        transformed = raw_args is not info.args
        annotations: dict[str, Any] = {}
        if not denials:
            for check in self.checks:
                outcome = check.evaluate(
                    CheckInput(principal, name, tool_policy, self.policy, args, ctx)
                )
                denials.extend(outcome.denials)
                approval = _strongest(approval, outcome.approval)
                annotations.update(outcome.annotations)
                if outcome.args is not None:
                    args, transformed = outcome.args, True
                if denials:
                    break
        if denials:
            denied = self._deny(info, principal, denials, tool_policy)
            # what a check found (e.g. DLP findings by type and field) is audited on refusals too
            return denied.with_(annotations=annotations) if annotations else denied
        base = Verdict(
            decision=Decision.ALLOW,
            call=info,
            args=args,
            risk=tool_policy.risk.value,
            policy_version=self.policy.version,
            input_hash=_input_hash(info.args),
            principal=principal,
            decision_id=self._next_decision_id(),
            annotations=annotations,
        )
        if approval is not None:
            return base.with_(
                decision=Decision.APPROVE_FIRST,
                approval=approval,
                reasons=approval.reasons,
                model_message=(
                    f"'{name}' needs human approval ({approval.kind.value}) before it can run, "
                    "and no approval channel is configured for this agent, so it was not run.\n"
                    + "\n".join(f"- [{r.level.value}] {r.message}" for r in approval.reasons)
                ),
            )
        if transformed:
            return base.with_(decision=Decision.ALLOW_WITH)
        return base

    def _deny(
        self,
        info: ToolCallInfo,
        principal: Principal | None,
        reasons: Sequence[Reason],
        tool_policy: ToolPolicy | None = None,
    ) -> Verdict:
        ordered = combine_denials(reasons)
        if ordered[0].level in (Level.IDENTITY, Level.INTERNAL):
            message = f"Refused: {ordered[0].message}. Nothing was run."
        else:
            lines = "\n".join(f"- [{r.level.value}] {r.message}" for r in ordered)
            message = f"Refused by policy. Nothing was run.\n{lines}"
        return Verdict(
            decision=Decision.DENY,
            call=info,
            reasons=ordered,
            risk=tool_policy.risk.value if tool_policy else None,
            policy_version=self.policy.version,
            input_hash=_input_hash(info.args),
            principal=principal,
            decision_id=self._next_decision_id(),
            model_message=message,
        )

    def _unknown(
        self,
        info: ToolCallInfo,
        principal: Principal,
        ctx: CallContext,
        tools: Mapping[str, BaseTool],
        code: str,
        detail: str,
    ) -> Verdict:
        # Hidden and non-existent tools must be indistinguishable to the model.
        available = ", ".join(self.visible_names(list(tools), ctx))
        message = UNKNOWN_TOOL_TEMPLATE.format(name=_safe_name(info.name), available=available)
        reason = Reason(code, Level.TOOL, "not a valid tool", detail=detail)
        return self._invalid(info, principal, ctx, [reason], message, None)

    def _invalid(
        self,
        info: ToolCallInfo,
        principal: Principal,
        ctx: CallContext,
        reasons: Sequence[Reason],
        message: str,
        tool_policy: ToolPolicy | None,
    ) -> Verdict:
        verdict = self._deny(info, principal, reasons, tool_policy).with_(
            model_message=message, invalid=True
        )
        budget = self.policy.limits.max_invalid_calls_per_run
        before = invalid_calls_in_state(ctx.state)
        if before is not None:
            count = before + 1
        elif ctx.run_id is not None:
            count = self._run_counter.add(ctx.run_id)
        else:
            count = 0  # no run to count against (a bare tool call outside any run)
        if count >= budget:
            stop = Reason(
                "limits.invalid_calls",
                Level.LIMITS,
                f"{count} invalid tool calls in this run (limit {budget}): the run is stopped",
            )
            verdict = verdict.with_(stop_run=True, reasons=(*verdict.reasons, stop))
        return verdict

    # -- the record -----------------------------------------------------------------------

    def _identity_fields(self, verdict: Verdict) -> dict[str, Any]:
        p = verdict.principal
        return p.audit_fields() if isinstance(p, Principal) else {}

    def _record_decision(self, verdict: Verdict, ctx: CallContext) -> None:
        first = verdict.primary_reason
        tool_name = verdict.call.name if isinstance(verdict.call.name, str) else None
        tool_policy = self.policy.tools.get(tool_name) if tool_name else None
        event = dict(
            event="decision",
            tool=_safe_name(tool_name) if tool_name is not None else _safe_name(verdict.call.name),
            call_id=_clip_key(verdict.call.id) if verdict.call.id is not None else None,
            thread_id=ctx.thread_id,
            run_id=ctx.run_id,
            risk=verdict.risk,
            confirmation=verdict.approval.kind.value if verdict.approval else None,
            confirmation_id=verdict.decision_id if verdict.approval else None,
            input_hash=verdict.input_hash,
            result=verdict.decision.value,
            reason=first.code if first else None,
            level=first.level.value if first else None,
            summary={
                "args": _describe(verdict.call.args),
                "reasons": [
                    {"code": r.code, "level": r.level.value, "detail": r.detail or r.message}
                    for r in verdict.reasons[:8]
                ],
                "egress": bool(tool_policy and tool_policy.egress),
                "stop_run": verdict.stop_run,
                "decision_id": verdict.decision_id,
                # DLP findings as type, field and action: never the values
                **(
                    {"dlp": list(dlp)[:64]}
                    if (dlp := (verdict.annotations or {}).get("dlp_findings"))
                    else {}
                ),
            },
            policy_version=self.policy.version,
            **self._identity_fields(verdict),
        )
        self.record_event(event)

    @staticmethod
    def _execution_summary(verdict: Verdict) -> dict[str, Any]:
        summary: dict[str, Any] = {"decision_id": verdict.decision_id}
        approval = (verdict.annotations or {}).get("approval")
        if isinstance(approval, Mapping):
            summary["approval"] = {
                "request_id": approval.get("request_id"),
                "consents": list(approval.get("consents") or [])[:8],
            }
        return summary

    def memory_for(self, store: Any, verdict: Verdict, ctx: CallContext) -> Any:
        """The store a tool of this call may use: scoped to the call's principal and audited.

        A store that is already scoped (`ScopedStore`, `GuardedStore`) is handed on as it is;
        None stays None. A call without a principal gets no store at all."""
        if store is None or getattr(store, "agentguard_scoped", False):
            return store
        from agentguard.memory.scoped import ScopedStore

        if not isinstance(verdict.principal, Principal):
            raise IdentityError("no principal for this call; memory stays closed")
        call_id = verdict.call.id if isinstance(verdict.call.id, str) else None
        return ScopedStore(
            store,
            verdict.principal,
            settings=self.policy.memory,
            audit=self.record_event,
            context=ctx,
            call_id=_clip_key(call_id) if call_id is not None else None,
            blocking=self.blocking,
        )

    def record_event(self, fields: dict[str, Any]) -> None:
        """Append one event to the trail (fail closed: the caller must not go on)."""
        try:
            self.audit.append_fields(fields)
        except Exception as exc:
            log.exception("agentguard: audit write failed")
            raise AuditUnavailable(f"audit log unavailable: {type(exc).__name__}") from exc

    def approval_flow(
        self,
        verdict: Verdict,
        ctx: CallContext,
        tools: Mapping[str, BaseTool],
        *,
        namespace: str | None,
    ) -> ApprovalFlow:
        """The review of one `approve_first` verdict; edits are re-checked by this guard."""
        from agentguard.approvals.gate import ApprovalFlow

        if self.approvals is None:
            raise GuardError("no approvals are configured for this guard")
        name, call_id = verdict.call.name, verdict.call.id

        def recheck(args: Mapping[str, Any]) -> Verdict:
            return self.check({"name": name, "args": args, "id": call_id}, ctx, tools)

        return ApprovalFlow(
            self.approvals,
            policy=self.policy,
            verdict=verdict,
            thread_id=ctx.thread_id,
            namespace=namespace,
            recheck=recheck,
            audit=self.record_event,
            run_id=ctx.run_id,
        )

    def claim_approved(self, verdict: Verdict) -> Verdict | None:
        """Right before an approved call runs: None to go on, or the refusal if it already ran."""
        if self.approvals is None or "approval" not in (verdict.annotations or {}):
            return None
        from agentguard.approvals.gate import claim_run

        return claim_run(self.approvals, verdict, self.record_event)

    def receive(
        self,
        verdict: Verdict | None,
        ctx: CallContext | None,
        text: str,
        *,
        source: str | None = None,
        call_id: str | None = None,
    ) -> Received:
        """The way back for one result: sanitized, scored, labelled, and written down.

        `verdict` is the call that produced it (None for a retrieved document)."""
        if verdict is not None:
            name = source or (verdict.call.name if isinstance(verdict.call.name, str) else "tool")
            call_id = verdict.call.id if isinstance(verdict.call.id, str) else call_id
        else:
            name = source or "retriever"
        received = self.content.receive_text(text, source=name, call_id=call_id)
        label = received.label
        screened = None
        if label.untrusted and self.dlp is not None and self.dlp.settings.enabled:
            received = self._defanged(received)
        if label.untrusted and self._screens_results(name):
            received, screened = self._screen_result(received, verdict, ctx)
        if label.untrusted:
            identity = self._identity_fields(verdict) if verdict is not None else {}
            self.record_event(
                dict(
                    event="content",
                    tool=_safe_name(name),
                    call_id=_clip_key(call_id) if call_id is not None else None,
                    thread_id=ctx.thread_id if ctx is not None else None,
                    run_id=ctx.run_id if ctx is not None else None,
                    risk=verdict.risk if verdict is not None else None,
                    input_hash=verdict.input_hash if verdict is not None else None,
                    output_hash=_input_hash(text),
                    result=label.action,
                    reason=label.signals[0] if label.signals else None,
                    level=Level.PROVENANCE.value,
                    summary={
                        "score": label.score,
                        "signals": list(label.signals[:8]),
                        "changes": [list(c) for c in label.changes],
                        "chars": label.chars,
                        **(
                            {"dlp": list(screened.findings), "dlp_blocked": screened.blocked}
                            if screened is not None and screened.findings
                            else {}
                        ),
                    },
                    policy_version=self.policy.version,
                    **identity,
                )
            )
        return received

    # -- DLP on the way in, and pseudonyms ---------------------------------------------------

    def _scope(self, principal: Any, ctx: CallContext | None) -> str | None:
        from agentguard.dlp.pseudonyms import vault_scope

        if not isinstance(principal, Principal):
            return None
        return vault_scope(principal, ctx.thread_id if ctx is not None else None)

    @staticmethod
    def _defanged(received: Received) -> Received:
        from agentguard.content.receive import Received
        from agentguard.dlp.pseudonyms import defang

        text = defang(received.text)
        withheld = defang(received.withheld) if received.withheld is not None else None
        if text is received.text and withheld is received.withheld:
            return received
        return Received(text, received.label, withheld, received.assessment)

    def _screens_results(self, source: str) -> bool:
        if self.dlp is None or not self.dlp.settings.enabled:
            return False
        tool = self.policy.tools.get(source)
        if tool is not None and tool.dlp.scan_results is not None:
            return tool.dlp.scan_results
        return self.dlp.settings.results.scan

    def _screen_result(
        self, received: Received, verdict: Verdict | None, ctx: CallContext | None
    ) -> tuple[Received, Any]:
        """An untrusted result after DLP: what the model may read, and what a reviewer may."""
        from agentguard.content.receive import Received

        assert self.dlp is not None
        stage = self.dlp.settings.results
        scope = self._scope(verdict.principal if verdict is not None else None, ctx)
        if scope is None and ctx is not None:
            try:
                scope = self._scope(self.identity.resolve(ctx), ctx)
            except IdentityError:
                scope = None
        label = received.label
        shown = self.dlp.screen(received.text, stage, scope)
        withheld = received.withheld
        if withheld is not None:
            kept = self.dlp.screen(withheld, stage, scope)
            withheld = kept.text if not kept.blocked else None
        if shown.blocked:
            note = (
                f"[agentguard] The result of '{label.source}' was withheld: it carries data that "
                f"may not be shown to the assistant ({shown.why}). Tell the user; do not retry "
                "to get it."
            )
            return Received(note, label, withheld, received.assessment), shown
        return Received(shown.text, label, withheld, received.assessment), shown

    @property
    def screens_answers(self) -> bool:
        return self.dlp is not None and self.dlp.settings.enabled and self.dlp.settings.answers.scan

    def screen_answer(self, text: str, ctx: CallContext) -> tuple[str, bool]:
        """The model's reply to the user after `dlp.answers` (text, whether it changed).

        Off unless the policy sets `dlp.answers.scan`. A reply that must not be shown is
        replaced by a note; its findings are audited as types only."""
        if not self.screens_answers or not text:
            return text, False
        try:
            principal: Any = self.identity.resolve(ctx)
        except IdentityError:
            principal = None
        assert self.dlp is not None
        screened = self.dlp.screen(text, self.dlp.settings.answers, self._scope(principal, ctx))
        if not screened.findings:
            return text, False
        self.record_event(
            dict(
                event="content",
                tool="answer",
                thread_id=ctx.thread_id,
                run_id=ctx.run_id,
                output_hash=_input_hash(text),
                result="block" if screened.blocked else "rewrite",
                reason="dlp.answer",
                level=Level.DLP.value,
                summary={"dlp": list(screened.findings), "chars": len(text)},
                policy_version=self.policy.version,
                **(principal.audit_fields() if isinstance(principal, Principal) else {}),
            )
        )
        if screened.blocked:
            return (
                "[agentguard] This answer was withheld: it carried data that may not be shown "
                f"here ({screened.why}).",
                True,
            )
        return screened.text, True

    def reveal(self, text: str, ctx: CallContext) -> str:
        """`text` with the pseudonyms of this call's principal and thread put back: for showing
        that principal what DLP withheld from the model or from a reviewer."""
        if self.dlp is None:
            return text
        scope = self._scope(self.identity.resolve(ctx), ctx)
        assert scope is not None
        return self.dlp.reveal(scope, text)

    def forget_pseudonyms(self, principal: Principal, thread_id: str | None = None) -> int:
        """Erase what DLP's pseudonyms stand for: one thread's, or all of the principal's user
        in its tenant (right to erasure). Written down; the number of values erased."""
        if self.dlp is None:
            return 0
        erased = self.dlp.forget(principal, thread_id)
        self.record_event(
            dict(
                event="content",
                tool="pseudonyms",
                thread_id=thread_id,
                result="erased",
                reason="dlp.erasure",
                level=Level.DLP.value,
                summary={"values": erased, "scope": "thread" if thread_id else "user"},
                policy_version=self.policy.version,
                **principal.audit_fields(),
            )
        )
        return erased

    def record_execution(
        self, verdict: Verdict, ctx: CallContext, *, status: str, output: Any = None
    ) -> None:
        """Write down that an allowed call ran (status `success` or `error`)."""
        event = dict(
            event="execution",
            tool=_safe_name(verdict.call.name),
            call_id=_clip_key(verdict.call.id) if verdict.call.id is not None else None,
            thread_id=ctx.thread_id,
            run_id=ctx.run_id,
            risk=verdict.risk,
            input_hash=verdict.input_hash,
            output_hash=_input_hash(output) if output is not None else None,
            result=status,
            policy_version=self.policy.version,
            summary=self._execution_summary(verdict),
            **self._identity_fields(verdict),
        )
        self.record_event(event)
