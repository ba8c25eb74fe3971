"""Exceptions agentguard raises. Every one of them means: nothing ran."""

from __future__ import annotations


class GuardError(Exception):
    """Base class: the guard refused, or could not be set up safely."""


class PolicyError(GuardError):
    """A policy that cannot be trusted: malformed, contradictory, or naming unknown things."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        detail = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(message + detail)


class ConfigurationError(GuardError):
    """The guard was wired up in a way that would leave a gap (e.g. a missing resolver)."""


class IdentityError(GuardError):
    """No trusted principal could be established for the call."""

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        self.missing = list(missing or [])
        super().__init__(message)


class RunAborted(GuardError):
    """The guard stopped the run (e.g. too many invalid tool calls in one run)."""
