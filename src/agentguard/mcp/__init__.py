"""MCP requests that are fresh, bound and verifiable, and MCP tools that cannot change silently.

Client: `RequestSigner` + `SigningAuth` (streamable HTTP) or `signed_session` (stdio, any
transport). Server: `ProofVerifier` + `ProofMiddleware` (ASGI) or `protect_tools` (handlers).
Both ends: `HmacKey`, `AsymmetricKey` / `PublicKey`. Tools: `ToolPins` + `pin_tools`.

Nothing here imports the MCP SDK until a door that needs it is used.
"""

from __future__ import annotations

from agentguard.mcp.client import SigningAuth, signed_session
from agentguard.mcp.keys import AsymmetricKey, HmacKey, PublicKey
from agentguard.mcp.pinning import PinDecision, ToolPins, check_tools, pin_tools, tool_fingerprint
from agentguard.mcp.proof import HEADER, META_KEY, ProofError, Reason
from agentguard.mcp.server import PROOF_ERROR_CODE, ProofMiddleware, protect_tools
from agentguard.mcp.signer import RequestSigner
from agentguard.mcp.verifier import ProofVerifier, VerifiedRequest

__all__ = [
    "HEADER",
    "META_KEY",
    "PROOF_ERROR_CODE",
    "AsymmetricKey",
    "HmacKey",
    "PinDecision",
    "ProofError",
    "ProofMiddleware",
    "ProofVerifier",
    "PublicKey",
    "Reason",
    "RequestSigner",
    "SigningAuth",
    "ToolPins",
    "VerifiedRequest",
    "check_tools",
    "pin_tools",
    "protect_tools",
    "signed_session",
    "tool_fingerprint",
]
