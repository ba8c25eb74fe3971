"""Tamper-evident audit trail: HMAC-chained events in an append-only sink."""

from __future__ import annotations

from agentguard.audit.chain import AuditLog, VerifyReport, verify_events
from agentguard.audit.events import AuditEvent
from agentguard.audit.sinks import (
    AuditLogCorrupt,
    AuditSink,
    JsonlSink,
    MemorySink,
    SqliteSink,
    open_sink,
    read_events,
)

__all__ = [
    "AuditEvent",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditSink",
    "JsonlSink",
    "MemorySink",
    "SqliteSink",
    "VerifyReport",
    "open_sink",
    "read_events",
    "verify_events",
]
