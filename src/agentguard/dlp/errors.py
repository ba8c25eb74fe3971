"""Why a scan did not finish: the payload must then not go out."""

from __future__ import annotations

from agentguard.errors import GuardError

__all__ = ["ScanIncomplete", "ScanTimeout"]


class ScanIncomplete(GuardError):
    """The payload could not be fully scanned (too big, too deep, too slow): it must not go."""


class ScanTimeout(ScanIncomplete):
    """A pattern or the whole scan ran out of time."""
