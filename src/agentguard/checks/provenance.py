"""Taint-aware gating: arguments that carry values from untrusted content, and where from.

The conversation is the memory: every untrusted result is saved sanitized and labelled (see
`content.receive`), so the check needs nothing but the run's state and is as durable as the
checkpointer. The values in each result are found once per process and cached by digest.
Values the user wrote themselves are exempt. The policy says what a tainted call does: `allow`
(annotated), `approve` (a human sees the provenance), or `deny`; egress, destructive and
high-risk tools escalate by default, and a read whose URL carries a query string counts as
egress.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentguard.content.receive import label_of
from agentguard.content.sanitize import host_allowed
from agentguard.content.taint import Provenance, fingerprints_of, trace
from agentguard.policy.model import Confirmation
from agentguard.verdict import Approval, Level, Reason

if TYPE_CHECKING:
    from agentguard.guard import CheckInput, CheckResult

__all__ = ["ProvenanceCheck"]

_MAX_SOURCES = 256


def _messages(state: Any) -> Sequence[Any]:
    if isinstance(state, Mapping):
        found = state.get("messages")
    else:
        found = getattr(state, "messages", None)
    if isinstance(found, Sequence) and not isinstance(found, (str, bytes)):
        return found
    return ()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts)
    return ""


def _sends_data_out(args: Any) -> bool:
    """A URL argument with a query string: even a 'read' then carries data to its host."""
    stack = [args]
    seen = 0
    while stack and seen < 10_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item[:8].lower().startswith(("http://", "https://")):
            try:
                if urlsplit(item).query:
                    return True
            except ValueError:
                return True  # unparseable URL: treat as sending out
    return False


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@([A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8})")
_URL = re.compile(r"(?i)\bhttps?://([A-Za-z0-9.\-]{1,253})[^\s<>\"']{0,2000}")


def _without_trusted_domains(args: Any, domains: Sequence[str]) -> Any:
    """The arguments with emails and URLs at the policy's own domains blanked out."""
    if not domains:
        return args

    def scrub(text: str) -> str:
        def email(m: re.Match[str]) -> str:
            return "" if host_allowed(m.group(1), domains) else m.group(0)

        def url(m: re.Match[str]) -> str:
            return "" if host_allowed(m.group(1), domains) else m.group(0)

        return _URL.sub(url, _EMAIL.sub(email, text))

    def walk(value: Any, depth: int) -> Any:
        if depth > 64:
            return value
        if isinstance(value, str):
            return scrub(value) if ("@" in value or "://" in value) else value
        if isinstance(value, Mapping):
            return {k: walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        return value

    return walk(args, 0)


class ProvenanceCheck:
    """A `Check` the guard runs on every call that passed authorization."""

    name = "provenance"

    def __init__(
        self,
        cache_size: int = 4096,
        *,
        reveal: Callable[[CheckInput, str], str] | None = None,
    ) -> None:
        # `reveal` puts DLP pseudonyms back into a saved result, so a value the model saw only
        # as a token still counts as planted when the guard re-fills it into a call.
        self._reveal = reveal
        self._cache: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _fingerprints(self, text: str) -> tuple[str, ...]:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        found = tuple(fingerprints_of(text))
        with self._lock:
            self._cache[key] = found
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def evaluate(self, call: CheckInput) -> CheckResult:
        from agentguard.guard import CheckResult

        messages = _messages(call.context.state)
        tainted: dict[str, list[str]] = {}
        untrusted_texts: list[tuple[str, str]] = []
        user_texts: list[str] = []
        for message in messages:
            kind = getattr(message, "type", None)
            if kind == "human":
                user_texts.append(_text(getattr(message, "content", "")))
                continue
            if kind != "tool":
                continue
            kwargs = getattr(message, "additional_kwargs", None)
            label = label_of(kwargs)
            if label is None or not label.untrusted:
                continue
            if len(untrusted_texts) >= _MAX_SOURCES:
                break
            ref = label.source_ref
            if label.action in ("pass", "annotate"):
                text = _text(getattr(message, "content", ""))
            else:  # withheld from the model, but its values are no less planted
                mark = (kwargs or {}).get("agentguard") or {}
                withheld = mark.get("withheld")
                text = withheld if isinstance(withheld, str) else ""
            if self._reveal is not None and "<" in text:
                text = self._reveal(call, text)
            untrusted_texts.append((ref, text))
            for fp in self._fingerprints(text):
                sources = tainted.setdefault(fp, [])
                if ref not in sources and len(sources) < 5:
                    sources.append(ref)
        if not tainted and not untrusted_texts:
            return CheckResult()
        trusted: set[str] = set()
        for text in user_texts:
            trusted.update(self._fingerprints(text))
        args = _without_trusted_domains(call.args, call.policy.content.trusted_domains)
        found = trace(
            args,
            tainted,
            trusted,
            untrusted_texts=untrusted_texts,
            user_texts=user_texts,
        )
        if not found:
            return CheckResult()
        return self._decide(call, found)

    def _decide(self, call: CheckInput, found: list[Provenance]) -> CheckResult:
        from agentguard.guard import CheckResult

        annotations = {
            "untrusted_args": sorted({p.path for p in found}),
            "provenance": [
                {"path": p.path, "kind": p.kind, "preview": p.preview, "sources": list(p.sources)}
                for p in found[:32]
            ],
        }
        action = call.policy.taint_action(call.tool_policy)
        if action == "allow" and call.tool_policy.taint is None and _sends_data_out(call.args):
            action = "approve"
        if action == "allow":
            return CheckResult(annotations=annotations)
        where = ", ".join(
            f"'{p.path}' ({p.kind} {p.preview} from {', '.join(p.sources)})" for p in found[:4]
        )
        message = f"arguments carry values from untrusted content: {where}"
        if action == "deny":
            reason = Reason(
                "provenance.untrusted_args",
                Level.PROVENANCE,
                message + "; this tool may not act on them",
            )
            return CheckResult(denials=(reason,), annotations=annotations)
        kind = call.tool_policy.confirmation
        if kind.rank < Confirmation.CONFIRM.rank:
            kind = Confirmation.CONFIRM
        reason = Reason("provenance.untrusted_args", Level.PROVENANCE, message)
        return CheckResult(approval=Approval(kind=kind, reasons=(reason,)), annotations=annotations)
