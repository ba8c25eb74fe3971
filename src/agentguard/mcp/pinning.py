"""Tool pinning: an MCP tool the agent was shown once cannot quietly become another tool.

On first contact each tool's name, description and input schema are fingerprinted and pinned
(trust on first use). A later listing whose fingerprint differs blocks that tool until someone
approves the exact new fingerprint (`agentguard mcp pins approve`). A description, or any
description inside the input schema, that carries hidden instructions (invisible characters,
fake role markers, text the injection rules score) is flagged and blocked from the start.

Blocked tools are left out of the list the agent gets: a model cannot call what it is not
offered, and the guard refuses a call to a tool it does not know.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from agentguard._canonical import digest
from agentguard.audit.chain import AuditLog
from agentguard.errors import ConfigurationError, GuardError

__all__ = ["PinDecision", "ToolPins", "check_tools", "pin_tools", "tool_fingerprint"]

log = logging.getLogger("agentguard.mcp")

Status = Literal["pinned", "new", "changed", "flagged"]
T = TypeVar("T")
_MAX_TEXTS = 256  # description strings collected from one schema
# Sanitizer findings that mean "text meant for the model, not the reader"; a plain link in a
# tool's documentation is not one of them.
_HIDDEN = frozenset(
    {"tag_chars", "invisible", "bidi", "role_marker", "tool_call_syntax", "image_defanged"}
)


def tool_fingerprint(name: str, description: str | None, input_schema: Any) -> str:
    """The sha256 of the canonical JSON of what the model is told about the tool."""
    return digest({"name": name, "description": description or "", "inputSchema": input_schema})


def _parts(tool: Any) -> tuple[str, str, Any]:
    """(name, description, input schema) of a LangChain tool or an `mcp.types.Tool`."""
    name = getattr(tool, "name", None)
    if not isinstance(name, str):
        raise ConfigurationError("a tool to pin needs a name")
    schema = getattr(tool, "inputSchema", None)
    if schema is None:
        schema = getattr(tool, "args_schema", None)
        if schema is not None and not isinstance(schema, Mapping):
            schema = schema.model_json_schema()
    return name, getattr(tool, "description", None) or "", schema if schema is not None else {}


def _texts(schema: Any) -> Iterator[str]:
    stack, seen = [schema], 0
    while stack and seen < _MAX_TEXTS:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("description", "title") and isinstance(value, str):
                    seen += 1
                    yield value
                elif isinstance(value, Mapping | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def hidden_instructions(description: str, input_schema: Any) -> list[str]:
    """What makes a tool's text look like it addresses the model, as short flag names."""
    from agentguard.content.sanitize import sanitize
    from agentguard.content.signals import ANNOTATE_AT, RuleDetector

    flags: set[str] = set()
    detector = RuleDetector()
    for text in [description, *_texts(input_schema)]:
        if not text:
            continue
        flags.update(f"sanitized:{c.kind}" for c in sanitize(text).changes if c.kind in _HIDDEN)
        assessment = detector.assess(text)
        if assessment.score >= ANNOTATE_AT:
            flags.update(f"signal:{s.name}" for s in assessment.signals)
    return sorted(flags)


@dataclass(frozen=True)
class PinDecision:
    """What pinning decided for one tool of one server."""

    server: str
    tool: str
    status: Status
    fingerprint: str
    pinned: str | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def allowed(self) -> bool:
        return self.status in ("pinned", "new")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ToolPins:
    """Pinned fingerprints per server and tool: in memory, or in a JSON file (`path`).

    The file is rewritten atomically; one process should own it (the CLI edits it offline).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, Any]]] = self._load()

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            raw = json.loads(self._path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise GuardError(f"tool pins at {self._path} are unreadable: {exc}") from None
        servers = raw.get("servers") if isinstance(raw, dict) else None
        if raw.get("version") != 1 or not isinstance(servers, dict):
            raise GuardError(f"tool pins at {self._path} are not a version 1 pin file")
        return servers

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".pins-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"version": 1, "servers": self._data}, out, indent=2, sort_keys=True)
        os.replace(tmp, self._path)

    def entry(self, server: str, tool: str) -> dict[str, Any] | None:
        """The stored record of one tool (a copy), or None."""
        with self._lock:
            found = self._data.get(server, {}).get(tool)
            return json.loads(json.dumps(found)) if found is not None else None

    def entries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every record, sorted by server and tool."""
        with self._lock:
            return [
                (server, tool, json.loads(json.dumps(record)))
                for server, tools in sorted(self._data.items())
                for tool, record in sorted(tools.items())
            ]

    def observe(
        self, server: str, tool: str, fingerprint: str, flags: Sequence[str]
    ) -> PinDecision:
        """Compare one listing with the pin; pin a clean newcomer, hold back anything else."""
        with self._lock:
            tools = self._data.setdefault(server, {})
            record = tools.get(tool)
            pinned = record.get("fingerprint") if record is not None else None
            if pinned == fingerprint:
                return PinDecision(server, tool, "pinned", fingerprint, pinned)
            if record is None and not flags:
                tools[tool] = {"fingerprint": fingerprint, "pinned_at": _now(), "approved_by": None}
                self._save()
                return PinDecision(server, tool, "new", fingerprint, None)
            status: Status = "flagged" if flags else "changed"
            record = record if record is not None else {"fingerprint": None}
            pending = record.get("pending")
            if not isinstance(pending, dict) or pending.get("fingerprint") != fingerprint:
                record["pending"] = {
                    "fingerprint": fingerprint,
                    "seen_at": _now(),
                    "flags": list(flags),
                }
                tools[tool] = record
                self._save()
            return PinDecision(server, tool, status, fingerprint, pinned, tuple(flags))

    def approve(self, server: str, tool: str, fingerprint: str, *, by: str) -> None:
        """Accept the pending fingerprint of a blocked tool; it must be the one reviewed."""
        if not by:
            raise ConfigurationError("an approval needs the approver's name")
        with self._lock:
            record = self._data.get(server, {}).get(tool)
            pending = record.get("pending") if record is not None else None
            if not isinstance(pending, dict):
                raise GuardError(f"{server}/{tool} has no change waiting for approval")
            if pending.get("fingerprint") != fingerprint:
                raise GuardError(
                    f"{server}/{tool} changed again: the pending fingerprint is "
                    f"{pending.get('fingerprint')}, not {fingerprint}"
                )
            assert record is not None
            self._data[server][tool] = {
                "fingerprint": fingerprint,
                "pinned_at": _now(),
                "approved_by": by,
            }
            self._save()


def check_tools(
    tools: Sequence[Any], pins: ToolPins, *, server: str, audit: AuditLog | None = None
) -> list[PinDecision]:
    """One decision per tool (LangChain tools or `mcp.types.Tool`), audited when not pinned."""
    if not isinstance(server, str) or not server:
        raise ConfigurationError("server must name the MCP server the tools came from")
    decisions = []
    for tool in tools:
        name, description, schema = _parts(tool)
        fingerprint = tool_fingerprint(name, description, schema)
        known = pins.entry(server, name)
        clean = known is not None and known.get("fingerprint") == fingerprint
        flags = [] if clean else hidden_instructions(description, schema)
        decision = pins.observe(server, name, fingerprint, flags)
        decisions.append(decision)
        if decision.status != "pinned":
            _report(decision, audit)
    return decisions


def pin_tools(
    tools: Sequence[T], pins: ToolPins, *, server: str, audit: AuditLog | None = None
) -> list[T]:
    """The tools that may be offered: pinned or clean newcomers; changed and flagged ones held."""
    decisions = check_tools(tools, pins, server=server, audit=audit)
    return [tool for tool, decision in zip(tools, decisions, strict=True) if decision.allowed]


def _report(decision: PinDecision, audit: AuditLog | None) -> None:
    if not decision.allowed:
        log.warning(
            "agentguard.mcp: tool %s/%s held back (%s%s); approve fingerprint %s to use it",
            decision.server,
            decision.tool,
            decision.status,
            f": {', '.join(decision.flags)}" if decision.flags else "",
            decision.fingerprint,
        )
    if audit is None:
        return
    audit.append_fields(
        {
            "event": "mcp",
            "tool": decision.tool,
            "result": "pinned" if decision.allowed else "held",
            "reason": None if decision.allowed else f"tool_{decision.status}",
            "summary": {
                "server": decision.server,
                "fingerprint": decision.fingerprint,
                "pinned": decision.pinned,
                "flags": list(decision.flags),
            },
        }
    )
