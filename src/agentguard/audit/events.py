"""What one audit event holds. Hashes and redacted summaries only: raw arguments never get here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventKind = Literal["decision", "execution", "approval", "content", "guard", "memory", "mcp"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class AuditEvent(BaseModel):
    """One decision, execution or approval step, as the guard saw it.

    `seq`, `prev_hash`, `hash` and `key_id` are filled in by the audit log when the event is
    appended; callers leave them unset.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: EventKind
    tool: str | None = None
    call_id: str | None = None
    tenant: str | None = None
    user: str | None = None
    agent: str | None = None
    client: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    risk: str | None = None
    confirmation: str | None = None
    confirmation_id: str | None = None
    input_hash: str | None = None
    output_hash: str | None = None
    result: str
    reason: str | None = None
    level: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    policy_version: str | None = None
    created_at: str = Field(default_factory=_now)
    # Filled by the log on append.
    seq: int | None = None
    prev_hash: str | None = None
    key_id: str | None = None
    hash: str | None = None
