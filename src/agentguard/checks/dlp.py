"""The DLP check: what an outbound payload may carry, decided per entity, per field, per tool.

For a tool the policy scans (egress tools by default), every leaf of the arguments is scanned
(`agentguard.dlp.Scanner`). Each finding gets an action, the most specific rule winning:
the tool's `dlp.fields` rule for that field (entity, then `*`), the tool's `dlp.entities`, the
policy's `dlp.entities`, then `dlp.default_action`. Then, strongest first:

- `block`: the call is refused; the model reads the types and fields, never the values;
- `approve`: the call pauses for a human (`dlp.approval`); the request lists the findings by
  type and field (annotation `dlp_findings`, which the approval gate strips of anything else);
- `redact` / `mask` / `hash` / `pseudonymize`: the call runs with those spans replaced, the
  payload's structure kept; pseudonyms are reversible per thread (`PseudonymVault`);
- `allow`: nothing.

A scan that cannot complete (too big, too deep, too slow) refuses the call. Findings go to the
audit trail as types, fields and counts only.

Pseudonyms work both ways. A call that pauses for approval shows the reviewer its flagged
values as pseudonyms (the interrupt, which the checkpoint keeps and Studio shows, never holds
them); once approved, the call runs with the real values. With `dlp.results`, untrusted
tool results can reach the model pseudonymized; tokens the model copies into a later call are
re-filled from the vault before the call is checked (`refill`), so every check sees the real
value, and a token the vault does not know for this principal and thread refuses the call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentguard.dlp.errors import ScanIncomplete
from agentguard.dlp.paths import CannotRewrite, field_matches, rewrite_at, steps_of
from agentguard.dlp.pseudonyms import (
    TooDeep,
    UnknownPseudonym,
    is_ours,
    map_strings,
    put_back,
    tokens_in_leaves,
    vault_owner,
    vault_scope,
)
from agentguard.dlp.scan import Finding, Scanner
from agentguard.dlp.vault import MemoryPseudonymVault, PseudonymVault
from agentguard.verdict import Approval, Level, Reason

if TYPE_CHECKING:
    from agentguard.context import Principal
    from agentguard.guard import CheckInput, CheckResult
    from agentguard.policy.model import DlpAction, DlpInbound, DlpSettings, ToolPolicy

__all__ = ["SHOWN_KEY", "DlpCheck", "Screened"]

_TRANSFORMS = ("redact", "mask", "hash", "pseudonymize")
SHOWN_KEY = "dlp_shown_args"  # verdict annotation: the arguments as a reviewer may see them


@dataclass(frozen=True)
class Screened:
    """Text coming in after DLP: `text` is what may be shown; `findings` are type/field/action."""

    text: str
    findings: tuple[dict[str, str], ...] = ()
    blocked: bool = False
    why: str = ""  # for a blocked text: what was found, by type and field


@dataclass(frozen=True)
class _Decided:
    finding: Finding
    action: DlpAction


class DlpCheck:
    """A `Check`: scan outbound arguments, then block, ask, transform or allow (see module).

    Also screens text coming in (`screen`: tool results, the model's replies) and owns the
    pseudonym vault (`refill`, `reveal`)."""

    name = "dlp"

    def __init__(
        self,
        settings: DlpSettings,
        *,
        scanner: Scanner | None = None,
        vault: PseudonymVault | None = None,
        hash_key: bytes | None = None,
    ) -> None:
        self.settings = settings
        self.scanner = scanner or Scanner(
            settings.profile,
            max_chars=settings.max_chars,
            time_budget=settings.time_budget_ms / 1000,
        )
        if settings.enabled and settings.profile == "ner" and scanner is None:
            from agentguard.dlp.engine import spacy_model

            spacy_model()  # fail at start-up, not on the first outbound call
        self.vault: PseudonymVault = vault if vault is not None else MemoryPseudonymVault()
        # Hashes are keyed: an unkeyed hash of an email address is guessed in seconds.
        self._hash_key = hash_key or secrets.token_bytes(32)

    def applies(self, tool: ToolPolicy) -> bool:
        if not self.settings.enabled:
            return False
        if tool.dlp.scan is not None:
            return tool.dlp.scan
        return self.settings.scan == "all" or tool.egress

    def evaluate(self, call: CheckInput) -> CheckResult:
        from agentguard.guard import CheckResult

        if not self.applies(call.tool_policy):
            return CheckResult()
        try:
            findings = self.scanner.scan(call.args)
        except ScanIncomplete as exc:
            return CheckResult(denials=(_incomplete(exc),))
        decided = [_Decided(f, self.action(call.tool_policy, f)) for f in findings]
        noted = [d for d in decided if d.action != "allow"]
        if not noted:
            return CheckResult()
        annotations: dict[str, Any] = {"dlp_findings": _summary(noted)}
        blocked = [d for d in noted if d.action == "block"]
        if blocked:
            return CheckResult(
                denials=(
                    Reason(
                        "dlp.blocked",
                        Level.DLP,
                        "the payload carries data that must not leave: " + _listing(blocked),
                    ),
                ),
                annotations=annotations,
            )
        asks = [d for d in noted if d.action == "approve"]
        transforms = [d for d in noted if d.action in _TRANSFORMS]
        args: Mapping[str, Any] | None = None
        scope = vault_scope(call.principal, call.context.thread_id)
        try:
            if transforms:
                args = self._transform(call.args, transforms, scope)
            if asks:
                # The reviewer sees a value that needs a yes as a pseudonym, never as itself
                # (the interrupt is kept in the checkpoint and shown in Studio); the call that
                # runs once approved is the verdict's, with the real value.
                shown = transforms + [_Decided(d.finding, "pseudonymize") for d in asks]
                annotations[SHOWN_KEY] = self._transform(call.args, shown, scope)
        except (CannotRewrite, ScanIncomplete) as exc:
            return CheckResult(
                denials=(Reason("dlp.blocked", Level.DLP, str(exc)),),
                annotations=annotations,
            )
        approval = None
        if asks:
            approval = Approval(
                kind=self.settings.approval,
                reasons=(
                    Reason(
                        "dlp.approval",
                        Level.DLP,
                        "the payload carries personal data: " + _listing(asks),
                    ),
                ),
            )
        return CheckResult(approval=approval, args=args, annotations=annotations)

    def action(self, tool: ToolPolicy, finding: Finding) -> DlpAction:
        """The action for one finding: field rule, tool rule, a field the policy declares to
        hold that type (`format: email`), policy rule, default."""
        field = finding.path[2:] if finding.path.startswith("$.") else finding.path[1:]
        for pattern, rules in tool.dlp.fields.items():
            if field_matches(pattern, field):
                if finding.entity in rules:
                    return rules[finding.entity]
                if "*" in rules:
                    return rules["*"]
        if finding.entity in tool.dlp.entities:
            return tool.dlp.entities[finding.entity]
        if _declared_as(tool, field, finding.entity):
            return "allow"
        return self.settings.entities.get(finding.entity, self.settings.default_action)

    # -------------------------------------------------------------- pseudonyms

    def refill(self, args: Mapping[str, Any], scope: str) -> Mapping[str, Any]:
        """`args` with the pseudonyms this scope issued put back (the same object when there
        are none). Raises `UnknownPseudonym` for a token of a known type it never issued."""
        try:
            found = tokens_in_leaves(args)
        except TooDeep:  # deeper than any policy allows: validation refuses the call anyway
            return args
        if not found:
            return args
        known = self.vault.values(scope, found)
        unknown = [t for t in found if t not in known and is_ours(t)]
        if unknown:
            raise UnknownPseudonym(
                f"the call carries {len(unknown)} pseudonym(s) this conversation never issued "
                f"or that have expired ({', '.join(unknown[:4])})"
            )
        if not known:
            return args
        refilled: Mapping[str, Any] = map_strings(args, lambda text: put_back(text, known))
        return refilled

    def forget(self, principal: Principal, thread: str | None = None) -> int:
        """Erase a principal's pseudonyms: one thread's, or (no thread) all of the user's in
        the tenant. The number of live values erased."""
        if thread is not None:
            return self.vault.forget(vault_scope(principal, thread))
        return self.vault.forget_owner(vault_owner(principal))

    def reveal(self, scope: str, text: str) -> str:
        """`text` with the scope's pseudonyms replaced by their values, for the person
        entitled to see them (the principal of that thread)."""
        return self.vault.reveal(scope, text)

    # -------------------------------------------------------------- coming in

    def screen(self, text: str, stage: DlpInbound, scope: str | None) -> Screened:
        """Text coming in (a tool result, a reply), with findings dealt with per `stage`.

        Without a scope (no principal), pseudonyms cannot be issued: those spans are redacted.
        A scan that cannot complete withholds the whole text."""
        try:
            findings = self.scanner.scan(text)
        except ScanIncomplete as exc:
            note = f"could not be fully scanned ({str(exc)[:120]})"
            return Screened("", ({"entity": "*", "path": "$", "action": "block"},), True, note)
        decided: list[_Decided] = []
        for f in findings:
            action: str = stage.entities.get(f.entity, stage.default_action)
            if action == "pseudonymize" and scope is None:
                action = "redact"
            if action != "allow":
                decided.append(_Decided(f, action))  # type: ignore[arg-type]
        if not decided:
            return Screened(text)
        summary = tuple(_summary(decided))
        blocked = [d for d in decided if d.action == "block"]
        if blocked:
            return Screened("", summary, True, _listing(blocked))
        try:
            out = self._rewrite(text, decided, scope or "-")
        except (CannotRewrite, ScanIncomplete) as exc:
            return Screened("", summary, True, str(exc)[:200])
        return Screened(str(out), summary)

    # -------------------------------------------------------------- transforms

    def _replacement(self, action: str, entity: str, value: str, scope: str) -> str:
        if action == "redact":
            return f"[{entity}]"
        if action == "mask":
            keep = 4 if len(value) > 8 else 0
            return "*" * (len(value) - keep) + value[len(value) - keep :]
        if action == "hash":
            mac = hmac.new(self._hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
            return f"[{entity}:{mac.hexdigest()[:16]}]"
        return self.vault.token(scope, entity, value)

    def _transform(
        self, args: Mapping[str, Any], decided: list[_Decided], scope: str
    ) -> dict[str, Any]:
        """A rewritten copy of `args` (the caller's is left as it was)."""
        return dict(self._rewrite(dict(args), decided, scope))

    def _rewrite(self, root: Any, decided: list[_Decided], scope: str) -> Any:
        """`root` (arguments, or one text scanned as `$`) with every finding rewritten."""
        by_path: dict[str, list[_Decided]] = {}
        for d in decided:
            by_path.setdefault(d.finding.path, []).append(d)
        for path, items in by_path.items():
            root = self._apply(root, path, items, scope)
        return root

    def _apply(self, root: Any, path: str, items: list[_Decided], scope: str) -> Any:
        # A form field's offsets are into the whole form body: rewrite that leaf.
        steps = steps_of(path.split("<form>", 1)[0])
        if steps is None:
            raise CannotRewrite(f"cannot rewrite field {path}: the call was not sent")

        def rewrite(value: Any) -> Any:
            if not isinstance(value, str):
                raise CannotRewrite(
                    f"a {items[0].finding.entity} in {path} is not text and cannot be "
                    "rewritten: the call was not sent"
                )
            for group in reversed(_merged(items)):
                lead = group[0]
                start = min(d.finding.start for d in group)
                end = max(d.finding.end for d in group)
                token = self._replacement(lead.action, lead.finding.entity, value[start:end], scope)
                value = value[:start] + token + value[end:]
            return value

        return rewrite_at(root, steps, rewrite)


def _incomplete(exc: Exception) -> Reason:
    return Reason(
        "dlp.incomplete",
        Level.DLP,
        "the outbound payload could not be fully scanned, so it was not sent",
        detail=str(exc)[:200],
    )


def _summary(decided: Sequence[_Decided]) -> list[dict[str, str]]:
    """Findings as type, field and action: what approvals, the model and the audit may see."""
    return [
        {"entity": d.finding.entity, "path": d.finding.path, "action": d.action}
        for d in decided[:64]
    ]


# Overlapping findings in one leaf (an AWS key that is also a generic secret) are rewritten as
# one span, by the strongest action among them (a pseudonym where any asks for one).
_RANK = {"pseudonymize": 4, "hash": 3, "redact": 2, "mask": 1}


def _merged(items: list[_Decided]) -> list[list[_Decided]]:
    groups: list[list[_Decided]] = []
    end = -1
    for d in sorted(items, key=lambda d: (d.finding.start, -d.finding.end)):
        if groups and d.finding.start < end:
            groups[-1].append(d)
            end = max(end, d.finding.end)
        else:
            groups.append([d])
            end = d.finding.end
    for group in groups:
        group.sort(key=lambda d: (-_RANK.get(d.action, 0), d.finding.start - d.finding.end))
    return groups


# An argument the policy itself declares to be an address (`format: email`) may carry one:
# a recipient field is where an email address belongs. Anything else in it is still scanned.
_FORMAT_ENTITY = {"email": "EMAIL_ADDRESS", "ipv4": "IP_ADDRESS"}
_INDEX = re.compile(r"\[\d+\]")


def _declared_as(tool: ToolPolicy, field: str, entity: str) -> bool:
    if not tool.args or "<" in field or '"' in field:
        return False
    constraint = tool.args.get(_INDEX.sub("", field))
    return constraint is not None and _FORMAT_ENTITY.get(constraint.format or "") == entity


def _listing(decided: list[_Decided]) -> str:
    seen = dict.fromkeys(f"{d.finding.entity} in {d.finding.path}" for d in decided)
    items = list(seen)
    more = f" and {len(items) - 8} more" if len(items) > 8 else ""
    return ", ".join(items[:8]) + more
