"""Outbound payloads scanned for PII and secrets before they leave.

`Scanner` walks every leaf of a payload (decoding URL-encoded, quoted-printable and base64
text, JSON inside strings and form bodies) and reports `Finding`s by type and field path. The
detector behind it (Presidio's pattern recognizers plus agentguard's secret and email
recognizers) is built on first use, never on import, and never downloads anything. The
pseudonym vaults keep the values behind reversible pseudonyms, per principal and thread.
"""

from __future__ import annotations

from agentguard.dlp.errors import ScanIncomplete, ScanTimeout
from agentguard.dlp.scan import Finding, Scanner
from agentguard.dlp.vault import (
    MemoryPseudonymVault,
    PostgresPseudonymVault,
    PseudonymVault,
    SqlitePseudonymVault,
    open_vault,
    vault_key_from_env,
)

__all__ = [
    "Finding",
    "MemoryPseudonymVault",
    "PostgresPseudonymVault",
    "PseudonymVault",
    "ScanIncomplete",
    "ScanTimeout",
    "Scanner",
    "SqlitePseudonymVault",
    "open_vault",
    "vault_key_from_env",
]
