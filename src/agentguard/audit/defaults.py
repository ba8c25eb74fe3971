"""The audit log a Guard gets when it is given none.

With `AGENTGUARD_AUDIT_KEY` set, decisions go to SQLite (`AGENTGUARD_AUDIT_PATH`, default
`agentguard-audit.sqlite3`; a `.jsonl` path gives JSON lines), signed with that key, so the
trail survives restarts and verifies with `agentguard audit verify`. Without a key there is
nothing durable to sign with: the log is kept in memory under a random key, and a warning says
so once.
"""

from __future__ import annotations

import logging
import os
import secrets

from agentguard.audit.chain import AuditLog
from agentguard.audit.keys import parse_key
from agentguard.audit.sinks import MemorySink, open_sink
from agentguard.errors import ConfigurationError

log = logging.getLogger("agentguard")

KEY_ENV = "AGENTGUARD_AUDIT_KEY"
PATH_ENV = "AGENTGUARD_AUDIT_PATH"
KEY_ID_ENV = "AGENTGUARD_AUDIT_KEY_ID"
DEFAULT_PATH = "agentguard-audit.sqlite3"
_warned = False


def default_audit_log() -> AuditLog:
    """SQLite under the configured key, else an in-memory log (with a one-time warning)."""
    global _warned
    text = os.environ.get(KEY_ENV)
    if text:
        try:
            key = parse_key(text, KEY_ENV)
            return AuditLog(
                open_sink(os.environ.get(PATH_ENV) or DEFAULT_PATH),
                key,
                key_id=os.environ.get(KEY_ID_ENV) or "k1",
            )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"audit log from the environment: {exc}") from None
    if not _warned:
        _warned = True
        log.warning(
            "agentguard: %s is not set; decisions go to an in-memory audit log that is lost "
            "on exit (pass audit=AuditLog(...) or set the key for a SQLite trail)",
            KEY_ENV,
        )
    return AuditLog(MemorySink(), secrets.token_bytes(32), key_id="ephemeral")
