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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agentguard.dlp.errors import ScanIncomplete
from agentguard.dlp.scan import Finding, Scanner
from agentguard.verdict import Approval, Level, Reason

if TYPE_CHECKING:
    from agentguard.guard import CheckInput, CheckResult
    from agentguard.policy.model import DlpAction, DlpSettings, ToolPolicy

__all__ = ["DlpCheck", "PseudonymVault"]

_TRANSFORMS = ("redact", "mask", "hash", "pseudonymize")


class PseudonymVault:
    """Reversible tokens per thread: the same value gets the same token within a thread.

    In memory and bounded (oldest threads forgotten first). `reveal` puts the values back into
    a text, for the user who may see them, or to re-fill an approved call.
    """

    def __init__(self, *, max_threads: int = 10_000, max_values: int = 10_000) -> None:
        # thread -> (token -> value, (entity, value) -> token)
        self._threads: OrderedDict[str, tuple[dict[str, str], dict[tuple[str, str], str]]] = (
            OrderedDict()
        )
        self._max_threads = max_threads
        self._max_values = max_values
        self._lock = threading.Lock()

    def token(self, thread: str, entity: str, value: str) -> str:
        with self._lock:
            values, tokens = self._threads.setdefault(thread, ({}, {}))
            self._threads.move_to_end(thread)
            while len(self._threads) > self._max_threads:
                self._threads.popitem(last=False)
            known = tokens.get((entity, value))
            if known is not None:
                return known
            if len(values) >= self._max_values:
                raise ScanIncomplete("too many pseudonyms in this thread")
            token = f"<{entity}_{len(values) + 1}>"
            values[token] = value
            tokens[(entity, value)] = token
            return token

    def reveal(self, thread: str, text: str) -> str:
        """`text` with this thread's tokens replaced by the values they stand for."""
        with self._lock:
            table = dict(self._threads[thread][0]) if thread in self._threads else {}
        if not table:
            return text
        pattern = re.compile("|".join(re.escape(t) for t in sorted(table, key=len, reverse=True)))
        return pattern.sub(lambda m: table[m.group()], text)


@dataclass(frozen=True)
class _Decided:
    finding: Finding
    action: DlpAction


class DlpCheck:
    """A `Check`: scan outbound arguments, then block, ask, transform or allow (see module)."""

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
        self.vault = vault or PseudonymVault()
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
            return CheckResult(
                denials=(
                    Reason(
                        "dlp.incomplete",
                        Level.DLP,
                        "the outbound payload could not be fully scanned, so it was not sent",
                        detail=str(exc)[:200],
                    ),
                )
            )
        decided = [_Decided(f, self.action(call.tool_policy, f)) for f in findings]
        noted = [d for d in decided if d.action != "allow"]
        if not noted:
            return CheckResult()
        summary = [{**d.finding.describe(), "action": d.action} for d in noted][:64]
        annotations = {
            "dlp_findings": [
                {"entity": s["type"], "path": s["path"], "action": s["action"]} for s in summary
            ]
        }
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
        args: Mapping[str, Any] | None = None
        transforms = [d for d in noted if d.action in _TRANSFORMS]
        if transforms:
            try:
                args = self._transform(call.args, transforms, call.context.thread_id or "-")
            except (_CannotTransform, ScanIncomplete) as exc:
                return CheckResult(
                    denials=(Reason("dlp.blocked", Level.DLP, str(exc)),),
                    annotations=annotations,
                )
        asks = [d for d in noted if d.action == "approve"]
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
        """The action for one finding: field rule, tool rule, policy rule, default."""
        field = finding.path[2:] if finding.path.startswith("$.") else finding.path[1:]
        for pattern, rules in tool.dlp.fields.items():
            if _field_matches(pattern, field):
                if finding.entity in rules:
                    return rules[finding.entity]
                if "*" in rules:
                    return rules["*"]
        if finding.entity in tool.dlp.entities:
            return tool.dlp.entities[finding.entity]
        return self.settings.entities.get(finding.entity, self.settings.default_action)

    # -------------------------------------------------------------- transforms

    def _replacement(self, action: str, entity: str, value: str, thread: str) -> str:
        if action == "redact":
            return f"[{entity}]"
        if action == "mask":
            keep = 4 if len(value) > 8 else 0
            return "*" * (len(value) - keep) + value[len(value) - keep :]
        if action == "hash":
            mac = hmac.new(self._hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
            return f"[{entity}:{mac.hexdigest()[:16]}]"
        return self.vault.token(thread, entity, value)

    def _transform(
        self, args: Mapping[str, Any], decided: list[_Decided], thread: str
    ) -> dict[str, Any]:
        out: Any = dict(args)
        by_path: dict[str, list[_Decided]] = {}
        for d in decided:
            by_path.setdefault(d.finding.path, []).append(d)
        for path, items in by_path.items():
            out = self._apply(out, path, items, thread)
        return dict(out)

    def _apply(self, root: Any, path: str, items: list[_Decided], thread: str) -> Any:
        # A form field's offsets are into the whole form body: rewrite that leaf.
        steps = _steps(path.split("<form>", 1)[0])
        if steps is None:
            raise _CannotTransform(f"cannot rewrite field {path}: the call was not sent")

        def rewrite(value: Any) -> Any:
            if not isinstance(value, str):
                raise _CannotTransform(
                    f"a {items[0].finding.entity} in {path} is not text and cannot be "
                    "rewritten: the call was not sent"
                )
            for d in sorted(items, key=lambda d: d.finding.start, reverse=True):
                f = d.finding
                token = self._replacement(d.action, f.entity, value[f.start : f.end], thread)
                value = value[: f.start] + token + value[f.end :]
            return value

        return _update(root, steps, rewrite)


class _CannotTransform(Exception):
    pass


def _listing(decided: list[_Decided]) -> str:
    seen = dict.fromkeys(f"{d.finding.entity} in {d.finding.path}" for d in decided)
    items = list(seen)
    more = f" and {len(items) - 8} more" if len(items) > 8 else ""
    return ", ".join(items[:8]) + more


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(\"(?:[^\"\\]|\\.)*\")\]|<(json|key)>")


def _steps(path: str) -> list[tuple[str, Any]] | None:
    """`$.a[0]["b c"]<json>.d` as steps: ("key", "a"), ("index", 0), ("key", "b c"), ..."""
    if not path.startswith("$"):
        return None
    steps: list[tuple[str, Any]] = []
    pos = 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            return None
        name, index, quoted, marker = m.groups()
        if name is not None:
            steps.append(("key", name))
        elif index is not None:
            steps.append(("index", int(index)))
        elif quoted is not None:
            steps.append(("key", json.loads(quoted)))
        else:
            steps.append(("json" if marker == "json" else "keyname", None))
        pos = m.end()
    return steps


def _update(node: Any, steps: list[tuple[str, Any]], rewrite: Any) -> Any:
    """A copy of `node` with the leaf at `steps` rewritten (containers copied on the way)."""
    if not steps:
        return rewrite(node)
    (kind, arg), rest = steps[0], steps[1:]
    if kind == "json" and isinstance(node, str):
        inner = _update(json.loads(node), rest, rewrite)
        return json.dumps(inner, ensure_ascii=False)
    if kind == "key" and isinstance(node, Mapping) and arg in node:
        out = dict(node)
        out[arg] = _update(node[arg], rest, rewrite)
        return out
    if kind == "index" and isinstance(node, list | tuple) and 0 <= arg < len(node):
        items = list(node)
        items[arg] = _update(node[arg], rest, rewrite)
        return items
    # a dict key ("<key>") or a path that no longer matches: refuse rather than send it
    raise _CannotTransform("a finding in a key or an unexpected place cannot be rewritten")


@lru_cache(maxsize=256)
def _field_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern.startswith("[*]", i):
            out.append(r"\[\d+\]")
            i += 3
        elif pattern[i] == "*":
            out.append(r"[^.\[<]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _field_matches(pattern: str, field: str) -> bool:
    return _field_regex(pattern).fullmatch(field) is not None
