"""The proof one MCP request carries, and how it is made: one format for both ends.

A proof binds a request to one moment (`iat`), one use (`nonce`, 128 random bits), one server
(`aud`), one session (`sid`, the `Mcp-Session-Id` where the transport has one), one key (`kid`),
one method and tool (`method`, `name`) and one set of arguments (`args`, the sha256 of their
RFC 8785 canonical JSON). The signature covers all of it:

- HMAC: the claims plus `sig`, HMAC-SHA256 over a domain-separated canonical encoding;
- Ed25519 / ES256: `{"v": 1, "jws": <compact JWS>}` whose payload is the canonical claims and
  whose protected header carries the public JWK (DPoP style), so `kid` is its thumbprint.

The proof travels in `params._meta["io.agentguard/proof"]`; over HTTP it may also travel in
the `AgentGuard-Proof` header (base64url of the canonical proof JSON).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from agentguard._canonical import canonical_json, digest
from agentguard.mcp.keys import AsymmetricKey, HmacKey, SigningKey

__all__ = [
    "HEADER",
    "META_KEY",
    "Claims",
    "ProofError",
    "Reason",
    "arguments_digest",
    "decode_header",
    "encode_header",
    "make_proof",
    "parse_proof",
]

META_KEY = "io.agentguard/proof"
HEADER = "agentguard-proof"
VERSION = 1
JWS_TYPE = "agentguard-mcp-proof+jws"
_DOMAIN = b"agentguard-mcp-proof.v1\n"

Reason = Literal[
    "missing_proof",
    "malformed_proof",
    "stale",
    "unknown_key",
    "bad_signature",
    "binding_mismatch",
    "replay",
    "unavailable",
]

_CLAIMS = frozenset({"v", "alg", "kid", "aud", "sid", "iat", "nonce", "method", "name", "args"})
_NONCE = re.compile(r"[A-Za-z0-9_-]{22}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_PROOF = 8192  # bytes of an encoded proof: a JWS with an EC key is about 700
_MAX_TEXT = 512


class ProofError(Exception):
    """A request that must not run, with a machine-readable reason code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class Claims:
    """What a proof asserts, as parsed from the wire (before or after verification)."""

    alg: str
    kid: str
    aud: str
    sid: str | None
    iat: int
    nonce: str
    method: str
    name: str
    args: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "alg": self.alg,
            "kid": self.kid,
            "aud": self.aud,
            "sid": self.sid,
            "iat": self.iat,
            "nonce": self.nonce,
            "method": self.method,
            "name": self.name,
            "args": self.args,
        }


def arguments_digest(arguments: Mapping[str, Any] | None) -> str:
    """The sha256 of the canonical JSON of a call's arguments (absent arguments count as {}).

    Values RFC 8785 cannot encode exactly (integers beyond 2**53, NaN, lone surrogates) make
    a request that cannot be signed or verified: `ProofError('malformed_proof')`.
    """
    try:
        return digest({} if arguments is None else arguments)
    except Exception as exc:
        raise ProofError(
            "malformed_proof", f"the arguments have no canonical JSON form ({type(exc).__name__})"
        ) from None


def new_nonce() -> str:
    """128 random bits, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_json(claims: Claims) -> bytes:
    """The canonical (RFC 8785) JSON of the claims.

    Every claim is ASCII-keyed and holds a string, a safe integer or null, the case where
    orjson with sorted keys writes exactly the RFC 8785 bytes; skipping the general encoder's
    type walk halves the cost of a verification (a test holds the two equal).
    """
    return orjson.dumps(claims.as_dict(), option=orjson.OPT_SORT_KEYS)


def hmac_input(claims: Claims) -> bytes:
    """The exact bytes an HMAC proof signs."""
    return _DOMAIN + claims_json(claims)


def make_proof(key: SigningKey, claims: Claims) -> dict[str, Any]:
    """The `_meta` proof object for `claims`, signed with `key`."""
    if isinstance(key, HmacKey):
        return {**claims.as_dict(), "sig": _b64(key.mac(hmac_input(claims)))}
    header = {"alg": key.alg, "typ": JWS_TYPE, "jwk": key.public_jwk()}
    return {"v": VERSION, "jws": key.sign_compact(header, claims_json(claims))}


def encode_header(proof: Mapping[str, Any]) -> str:
    """The proof as one HTTP header value."""
    return _b64(canonical_json(dict(proof)))


def decode_header(value: str) -> Any:
    """The proof object from an `AgentGuard-Proof` header value."""
    if len(value) > _MAX_PROOF * 2 or not re.fullmatch(r"[A-Za-z0-9_-]*", value):
        raise ProofError("malformed_proof", "the proof header is not base64url")
    try:
        return orjson.loads(_unb64(value))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise ProofError("malformed_proof", "the proof header is not base64url JSON") from None


@dataclass(frozen=True)
class ParsedProof:
    """A proof taken apart, its signature not yet checked."""

    claims: Claims
    sig: bytes | None = None  # HMAC
    jws: str | None = None  # asymmetric
    jwk: Mapping[str, Any] | None = None


def _text(value: Any, what: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProofError("malformed_proof", f"proof field {what!r} must be a non-empty string")
    return value


def _claims(body: Any) -> Claims:
    if not isinstance(body, dict) or body.keys() != _CLAIMS:
        raise ProofError("malformed_proof", "the proof does not have exactly the expected fields")
    if body["v"] != VERSION or type(body["v"]) is not int:
        raise ProofError("malformed_proof", f"unsupported proof version {body['v']!r}")
    iat, nonce, args, sid = body["iat"], body["nonce"], body["args"], body["sid"]
    if type(iat) is not int or not 0 <= iat < 2**40:
        raise ProofError("malformed_proof", "proof field 'iat' must be whole seconds")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise ProofError("malformed_proof", "proof field 'nonce' must be 128 bits of base64url")
    if not isinstance(args, str) or not _DIGEST.fullmatch(args):
        raise ProofError("malformed_proof", "proof field 'args' must be a sha256 digest")
    if sid is not None:
        _text(sid, "sid")
    return Claims(
        alg=_text(body["alg"], "alg", 16),
        kid=_text(body["kid"], "kid", 128),
        aud=_text(body["aud"], "aud"),
        sid=sid,
        iat=iat,
        nonce=nonce,
        method=_text(body["method"], "method", 64),
        name=_text(body["name"], "name"),
        args=args,
    )


def parse_proof(proof: Any) -> ParsedProof:
    """Take a wire proof apart; `ProofError('malformed_proof')` for anything unexpected."""
    if not isinstance(proof, dict):
        raise ProofError("malformed_proof", "the proof must be a JSON object")
    if "jws" in proof:
        return _parse_jws(proof)
    sig = proof.get("sig")
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        raise ProofError("malformed_proof", "an HMAC proof needs a 256-bit base64url 'sig'")
    claims = _claims({k: v for k, v in proof.items() if k != "sig"})
    if claims.alg != "HS256":
        raise ProofError("malformed_proof", "a proof with 'sig' must use HS256")
    return ParsedProof(claims, sig=_unb64(sig))


def _segment_json(segment: str) -> Any:
    try:
        return orjson.loads(_unb64(segment))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise ProofError("malformed_proof", "a JWS segment is not base64url JSON") from None


def _parse_jws(proof: dict[str, Any]) -> ParsedProof:
    token = proof.get("jws")
    if proof.keys() != {"v", "jws"} or proof.get("v") != VERSION or type(proof["v"]) is not int:
        raise ProofError("malformed_proof", "a JWS proof is exactly {'v': 1, 'jws': ...}")
    if not isinstance(token, str) or len(token) > _MAX_PROOF:
        raise ProofError("malformed_proof", "the JWS must be a compact string")
    parts = token.split(".")
    if len(parts) != 3 or not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
        raise ProofError("malformed_proof", "the JWS must be three base64url segments")
    header = _segment_json(parts[0])
    if not isinstance(header, dict) or header.get("typ") != JWS_TYPE:
        raise ProofError("malformed_proof", f"the JWS header must have typ {JWS_TYPE!r}")
    jwk = header.get("jwk")
    if set(header) != {"alg", "typ", "jwk"} or not isinstance(jwk, dict) or "d" in jwk:
        raise ProofError("malformed_proof", "the JWS header must carry alg, typ and a public jwk")
    claims = _claims(_segment_json(parts[1]))
    if claims.alg != header.get("alg"):
        raise ProofError("malformed_proof", "the JWS header and claims name different algorithms")
    return ParsedProof(claims, jws=token, jwk=jwk)


def hmac_matches(key: HmacKey, parsed: ParsedProof) -> bool:
    """Constant-time check of an HMAC proof's signature."""
    assert parsed.sig is not None
    return hmac.compare_digest(key.mac(hmac_input(parsed.claims)), parsed.sig)


def signing_claims(
    key: SigningKey,
    *,
    audience: str,
    session_id: str | None,
    issued_at: int,
    method: str,
    name: str,
    arguments: Mapping[str, Any] | None,
) -> Claims:
    """Fresh claims for one request."""
    return Claims(
        alg=key.alg if isinstance(key, AsymmetricKey) else "HS256",
        kid=key.kid,
        aud=audience,
        sid=session_id,
        iat=issued_at,
        nonce=new_nonce(),
        method=method,
        name=name,
        args=arguments_digest(arguments),
    )
