"""agentguard: a client-side security layer for LangChain and LangGraph agents.

Import stays light: the LangChain/LangGraph doors load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentguard.context import Delegation, Principal
from agentguard.errors import (
    ConfigurationError,
    GuardError,
    IdentityError,
    PolicyError,
    RunAborted,
)
from agentguard.identity import (
    CallContext,
    FromContext,
    FromJWT,
    FromServerAuth,
    IdentitySource,
    acting_for,
)
from agentguard.policy import (
    ArgConstraint,
    Confirmation,
    Limits,
    Policy,
    ResourceRule,
    Risk,
    RolePolicy,
    ToolPolicy,
    Trust,
    lint_policy,
    load_policy,
)
from agentguard.verdict import Approval, Decision, Level, Reason, Verdict

if TYPE_CHECKING:
    from agentguard.audit import AuditLog, JsonlSink, MemorySink, SqliteSink, verify_events
    from agentguard.checks.authz import (
        AuthzRequest,
        AuthzResult,
        DecisionPoint,
        PolicyDecisionPoint,
        ResourceInfo,
    )
    from agentguard.guard import AuditUnavailable, Check, CheckInput, CheckResult, Guard
    from agentguard.integrations.langchain import (
        CallRefused,
        GuardedTool,
        GuardMiddleware,
        wrap_tools,
    )
    from agentguard.integrations.langgraph import GuardedModelNode, GuardedToolNode
    from agentguard.integrations.structured_output import OutputValidator, StructuredOutputError

_LAZY = {
    "AuditLog": "agentguard.audit",
    "JsonlSink": "agentguard.audit",
    "MemorySink": "agentguard.audit",
    "SqliteSink": "agentguard.audit",
    "verify_events": "agentguard.audit",
    "AuthzRequest": "agentguard.checks.authz",
    "AuthzResult": "agentguard.checks.authz",
    "DecisionPoint": "agentguard.checks.authz",
    "PolicyDecisionPoint": "agentguard.checks.authz",
    "ResourceInfo": "agentguard.checks.authz",
    "AuditUnavailable": "agentguard.guard",
    "Check": "agentguard.guard",
    "CheckInput": "agentguard.guard",
    "CheckResult": "agentguard.guard",
    "Guard": "agentguard.guard",
    "CallRefused": "agentguard.integrations.langchain",
    "GuardedTool": "agentguard.integrations.langchain",
    "GuardMiddleware": "agentguard.integrations.langchain",
    "wrap_tools": "agentguard.integrations.langchain",
    "GuardedModelNode": "agentguard.integrations.langgraph",
    "GuardedToolNode": "agentguard.integrations.langgraph",
    "OutputValidator": "agentguard.integrations.structured_output",
    "StructuredOutputError": "agentguard.integrations.structured_output",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentguard' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Approval",
    "ArgConstraint",
    "AuditLog",
    "AuditUnavailable",
    "AuthzRequest",
    "AuthzResult",
    "CallContext",
    "CallRefused",
    "Check",
    "CheckInput",
    "CheckResult",
    "ConfigurationError",
    "Confirmation",
    "Decision",
    "DecisionPoint",
    "Delegation",
    "FromContext",
    "FromJWT",
    "FromServerAuth",
    "Guard",
    "GuardError",
    "GuardMiddleware",
    "GuardedModelNode",
    "GuardedTool",
    "GuardedToolNode",
    "IdentityError",
    "IdentitySource",
    "JsonlSink",
    "Level",
    "Limits",
    "MemorySink",
    "OutputValidator",
    "Policy",
    "PolicyDecisionPoint",
    "PolicyError",
    "Principal",
    "Reason",
    "ResourceInfo",
    "ResourceRule",
    "Risk",
    "RolePolicy",
    "RunAborted",
    "SqliteSink",
    "StructuredOutputError",
    "ToolPolicy",
    "Trust",
    "Verdict",
    "acting_for",
    "lint_policy",
    "load_policy",
    "verify_events",
    "wrap_tools",
]
