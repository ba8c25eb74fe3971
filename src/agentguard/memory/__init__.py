"""Scoped agent memory: one tenant's data never reaches another, a user's never a teammate."""

from agentguard.memory.scoped import Scope, ScopedStore, ScopeError, encode_ident

__all__ = ["Scope", "ScopeError", "ScopedStore", "encode_ident"]
