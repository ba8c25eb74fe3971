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
    from agentguard.approvals.assertions import (
        ApprovalAssertionVerifier,
        ApprovalSigner,
        Binding,
        GrantTerms,
    )
    from agentguard.approvals.gate import Approvals
    from agentguard.approvals.ledger import ConsentEntry, open_ledger
    from agentguard.approvals.stepup import IdpAssertionVerifier, StepUpVerifier, TotpVerifier
    from agentguard.approvals.store import open_store
    from agentguard.audit import AuditLog, JsonlSink, MemorySink, SqliteSink, verify_events
    from agentguard.checks.authz import (
        AuthzRequest,
        AuthzResult,
        DecisionPoint,
        PolicyDecisionPoint,
        ResourceInfo,
    )
    from agentguard.checks.dlp import DlpCheck
    from agentguard.dlp.vault import (
        MemoryPseudonymVault,
        PostgresPseudonymVault,
        SqlitePseudonymVault,
        open_vault,
    )
    from agentguard.guard import AuditUnavailable, Check, CheckInput, CheckResult, Guard
    from agentguard.integrations.langchain import (
        CallRefused,
        GuardedRetriever,
        GuardedTool,
        GuardMiddleware,
        present_documents,
        wrap_tools,
    )
    from agentguard.integrations.langgraph import (
        GuardedModelNode,
        GuardedToolNode,
        route_tool_calls,
    )
    from agentguard.integrations.structured_output import OutputValidator, StructuredOutputError
    from agentguard.killswitch import (
        FileKillSwitch,
        KillSwitch,
        MemoryKillSwitch,
        RedisKillSwitch,
        open_kill_switch,
    )

_LAZY = {
    "Approvals": "agentguard.approvals.gate",
    "GuardedRetriever": "agentguard.integrations.langchain",
    "present_documents": "agentguard.integrations.langchain",
    "ApprovalSigner": "agentguard.approvals.assertions",
    "ApprovalAssertionVerifier": "agentguard.approvals.assertions",
    "Binding": "agentguard.approvals.assertions",
    "args_digest": "agentguard.approvals.assertions",
    "GrantTerms": "agentguard.approvals.assertions",
    "TotpVerifier": "agentguard.approvals.stepup",
    "IdpAssertionVerifier": "agentguard.approvals.stepup",
    "StepUpVerifier": "agentguard.approvals.stepup",
    "ConsentEntry": "agentguard.approvals.ledger",
    "open_ledger": "agentguard.approvals.ledger",
    "open_store": "agentguard.approvals.store",
    "GuardedStore": "agentguard.memory",
    "OwnedCheckpointer": "agentguard.memory",
    "ScopedStore": "agentguard.memory",
    "KillSwitch": "agentguard.killswitch",
    "MemoryKillSwitch": "agentguard.killswitch",
    "FileKillSwitch": "agentguard.killswitch",
    "RedisKillSwitch": "agentguard.killswitch",
    "open_kill_switch": "agentguard.killswitch",
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
    "DlpCheck": "agentguard.checks.dlp",
    "MemoryPseudonymVault": "agentguard.dlp.vault",
    "SqlitePseudonymVault": "agentguard.dlp.vault",
    "PostgresPseudonymVault": "agentguard.dlp.vault",
    "open_vault": "agentguard.dlp.vault",
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
    "route_tool_calls": "agentguard.integrations.langgraph",
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
    "ApprovalAssertionVerifier",
    "ApprovalSigner",
    "Approvals",
    "ArgConstraint",
    "AuditLog",
    "AuditUnavailable",
    "AuthzRequest",
    "AuthzResult",
    "Binding",
    "CallContext",
    "CallRefused",
    "Check",
    "CheckInput",
    "CheckResult",
    "ConfigurationError",
    "Confirmation",
    "ConsentEntry",
    "Decision",
    "DecisionPoint",
    "Delegation",
    "DlpCheck",
    "FileKillSwitch",
    "FromContext",
    "FromJWT",
    "FromServerAuth",
    "GrantTerms",
    "Guard",
    "GuardError",
    "GuardMiddleware",
    "GuardedModelNode",
    "GuardedRetriever",
    "GuardedStore",
    "GuardedTool",
    "GuardedToolNode",
    "IdentityError",
    "IdentitySource",
    "IdpAssertionVerifier",
    "JsonlSink",
    "KillSwitch",
    "Level",
    "Limits",
    "MemoryKillSwitch",
    "MemoryPseudonymVault",
    "MemorySink",
    "OutputValidator",
    "OwnedCheckpointer",
    "Policy",
    "PolicyDecisionPoint",
    "PolicyError",
    "PostgresPseudonymVault",
    "Principal",
    "Reason",
    "RedisKillSwitch",
    "ResourceInfo",
    "ResourceRule",
    "Risk",
    "RolePolicy",
    "RunAborted",
    "ScopedStore",
    "SqlitePseudonymVault",
    "SqliteSink",
    "StepUpVerifier",
    "StructuredOutputError",
    "ToolPolicy",
    "TotpVerifier",
    "Trust",
    "Verdict",
    "acting_for",
    "args_digest",
    "lint_policy",
    "load_policy",
    "open_kill_switch",
    "open_ledger",
    "open_store",
    "open_vault",
    "present_documents",
    "route_tool_calls",
    "verify_events",
    "wrap_tools",
]
