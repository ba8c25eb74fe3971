"""Outbound payloads scanned for PII and secrets before they leave.

`Scanner` walks every leaf of a payload (decoding URL-encoded, quoted-printable and base64
text, JSON inside strings and form bodies) and reports `Finding`s by type and field path. The
detector behind it (Presidio's pattern recognizers plus agentguard's secret and email
recognizers) is built on first use, never on import, and never downloads anything.
"""

from __future__ import annotations

from agentguard.dlp.errors import ScanIncomplete, ScanTimeout
from agentguard.dlp.scan import Finding, Scanner

__all__ = ["Finding", "ScanIncomplete", "ScanTimeout", "Scanner"]
