"""The client half: one fresh proof per request, from a key the model never sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from agentguard.errors import ConfigurationError
from agentguard.mcp.keys import AsymmetricKey, HmacKey, SigningKey
from agentguard.mcp.proof import make_proof, signing_claims

__all__ = ["RequestSigner"]


class RequestSigner:
    """Signs MCP requests for one server (`audience`) with one key.

    The audience is the name the server verifies against (its URL, or any agreed name); a
    proof made for one server is refused by every other.
    """

    def __init__(
        self,
        key: SigningKey,
        *,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(key, HmacKey | AsymmetricKey):
            raise ConfigurationError("key must be an HmacKey or an AsymmetricKey")
        if not isinstance(audience, str) or not audience or len(audience) > 512:
            raise ConfigurationError("audience must be a non-empty string (at most 512 chars)")
        self._key = key
        self.audience = audience
        self._clock = clock

    @property
    def kid(self) -> str:
        """The id the server knows the key by."""
        return self._key.kid

    def proof(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        session_id: str | None = None,
        method: str = "tools/call",
    ) -> dict[str, Any]:
        """The `_meta` proof for one request, exactly as it must go on the wire."""
        claims = signing_claims(
            self._key,
            audience=self.audience,
            session_id=session_id,
            issued_at=int(self._clock()),
            method=method,
            name=name,
            arguments=arguments,
        )
        return make_proof(self._key, claims)

    def __repr__(self) -> str:
        return f"RequestSigner(audience={self.audience!r}, key={self._key!r})"
