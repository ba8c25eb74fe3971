"""The policy model, loading and linting."""

from agentguard.policy.lint import Finding, lint_policy
from agentguard.policy.loader import load_policy
from agentguard.policy.model import (
    ALL_REVIEW_DECISIONS,
    ApprovalSettings,
    ArgConstraint,
    Confirmation,
    Limits,
    Policy,
    ResourceRule,
    ReviewDecision,
    Risk,
    RolePolicy,
    ToolPolicy,
    Trust,
    default_roles,
)

__all__ = [
    "ALL_REVIEW_DECISIONS",
    "ApprovalSettings",
    "ArgConstraint",
    "Confirmation",
    "Finding",
    "Limits",
    "Policy",
    "ResourceRule",
    "ReviewDecision",
    "Risk",
    "RolePolicy",
    "ToolPolicy",
    "Trust",
    "default_roles",
    "lint_policy",
    "load_policy",
]
