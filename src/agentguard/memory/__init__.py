"""Scoped agent memory: one tenant's data never reaches another, a user's never a teammate."""

from agentguard.memory.guarded import GuardedStore, current_call_context
from agentguard.memory.retention import RetentionSweeper, erase_memory, sweep_expired
from agentguard.memory.scoped import Scope, ScopedStore, ScopeError, encode_ident
from agentguard.memory.threads import OwnedCheckpointer, ThreadAccessError

__all__ = [
    "GuardedStore",
    "OwnedCheckpointer",
    "RetentionSweeper",
    "Scope",
    "ScopeError",
    "ScopedStore",
    "ThreadAccessError",
    "current_call_context",
    "encode_ident",
    "erase_memory",
    "sweep_expired",
]
