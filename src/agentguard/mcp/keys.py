"""Keys for signing MCP requests: a shared HMAC secret, or an Ed25519 / P-256 key pair.

Why both: a shared secret is the fastest (tens of thousands of checks per second on one core)
and fits one team running both ends; a key pair lets a server trust many clients without
holding anything that could sign for them. Asymmetric keys are named by their RFC 7638
thumbprint, as DPoP does, so a key id can never point at a different key.

Secrets never appear in a `repr`, a log line or an error: they must not reach model-visible
content by any path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Literal

from agentguard.errors import ConfigurationError

__all__ = ["AsymmetricKey", "HmacKey", "PublicKey", "SigningKey", "VerificationKey"]

Algorithm = Literal["HS256", "Ed25519", "ES256"]
_MIN_SECRET = 32
_KID_MAX = 128


def _check_kid(kid: str) -> str:
    if not isinstance(kid, str) or not kid or len(kid) > _KID_MAX or not kid.isprintable():
        raise ConfigurationError(f"a key id must be 1-{_KID_MAX} printable characters")
    return kid


class HmacKey:
    """A shared secret (at least 32 bytes) known to the client and the server."""

    alg: Algorithm = "HS256"

    def __init__(self, kid: str, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray) or len(secret) < _MIN_SECRET:
            raise ConfigurationError(f"an HMAC secret must be at least {_MIN_SECRET} bytes")
        self.kid = _check_kid(kid)
        self._secret = bytes(secret)

    @classmethod
    def generate(cls, kid: str) -> HmacKey:
        """A fresh 256-bit secret."""
        return cls(kid, secrets.token_bytes(32))

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of `message`."""
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    @property
    def secret(self) -> bytes:
        """The raw secret, for provisioning the other end; never log it."""
        return self._secret

    def __repr__(self) -> str:
        return f"HmacKey(kid={self.kid!r}, secret=<redacted>)"


class AsymmetricKey:
    """A private Ed25519 or P-256 key that signs proofs as compact JWS (joserfc)."""

    def __init__(self, key: Any, alg: Algorithm) -> None:
        self._key = key
        self.alg = alg
        self.kid: str = key.thumbprint()
        self._public = dict(key.as_dict(private=False))

    @classmethod
    def generate(cls, alg: Literal["Ed25519", "ES256"] = "Ed25519") -> AsymmetricKey:
        """A fresh key pair."""
        _need_joserfc()
        from joserfc.jwk import ECKey, OKPKey

        if alg == "Ed25519":
            return cls(OKPKey.generate_key("Ed25519"), "Ed25519")
        if alg == "ES256":
            return cls(ECKey.generate_key("P-256"), "ES256")
        raise ConfigurationError(f"unsupported signing algorithm {alg!r}: use Ed25519 or ES256")

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> AsymmetricKey:
        """Load a private JWK (OKP Ed25519 or EC P-256)."""
        key, alg = _import(jwk, private=True)
        return cls(key, alg)

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK, for storing in a secret manager; never log it."""
        return dict(self._key.as_dict(private=True))

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK to give the server."""
        return dict(self._public)

    def public_key(self) -> PublicKey:
        """The matching verification key."""
        return PublicKey(self._public)

    def sign_compact(self, header: Mapping[str, Any], payload: bytes) -> str:
        """A compact JWS over `payload`."""
        from joserfc.jws import serialize_compact

        return str(serialize_compact(dict(header), payload, self._key, algorithms=[self.alg]))

    def __repr__(self) -> str:
        return f"AsymmetricKey(alg={self.alg!r}, kid={self.kid!r}, private=<redacted>)"


class PublicKey:
    """A client's public key, trusted by a server under its RFC 7638 thumbprint."""

    def __init__(self, jwk: Mapping[str, Any]) -> None:
        self._key, self.alg = _import(jwk, private=False)
        self.kid: str = self._key.thumbprint()

    def verify_compact(self, token: str) -> bytes:
        """The payload of `token` if its signature verifies with this key; raises otherwise."""
        from joserfc.jws import deserialize_compact

        return bytes(deserialize_compact(token, self._key, algorithms=[self.alg]).payload)

    def __repr__(self) -> str:
        return f"PublicKey(alg={self.alg!r}, kid={self.kid!r})"


def _need_joserfc() -> None:
    import importlib.util

    if importlib.util.find_spec("joserfc") is None:
        raise ConfigurationError("key pairs need joserfc: pip install 'agentguard[mcp]'")


def _import(jwk: Mapping[str, Any], *, private: bool) -> tuple[Any, Algorithm]:
    _need_joserfc()
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, OKPKey

    if not isinstance(jwk, Mapping):
        raise ConfigurationError("a JWK must be a JSON object")
    fields = dict(jwk)
    if not private:
        fields.pop("d", None)  # a public key never needs, and must never hold, the private part
    try:
        if fields.get("kty") == "OKP" and fields.get("crv") == "Ed25519":
            key, alg = OKPKey.import_key(fields), "Ed25519"
        elif fields.get("kty") == "EC" and fields.get("crv") == "P-256":
            key, alg = ECKey.import_key(fields), "ES256"
        else:
            raise ConfigurationError("only Ed25519 (OKP) and P-256 (EC) keys are supported")
    except JoseError as exc:
        raise ConfigurationError(f"not a usable JWK: {exc.error}") from None
    if private and not key.is_private:
        raise ConfigurationError("a signing key needs the private part ('d')")
    return key, alg  # type: ignore[return-value]


SigningKey = HmacKey | AsymmetricKey
VerificationKey = HmacKey | PublicKey
