"""The server half: decide whether one received request carries a fresh, valid, bound proof.

Order matters and is fixed: the time window first (cheap, and an old capture is refused before
any key is touched), then the key, the signature and the binding, recomputed from what the
server actually received, and only then the nonce. A nonce is recorded only once the signature
verified, so nobody can burn a client's nonces with forged proofs. A replay store that cannot
answer means reject.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentguard._canonical import canonical_json
from agentguard.audit.chain import AuditLog
from agentguard.audit.sinks import MemorySink
from agentguard.errors import ConfigurationError
from agentguard.mcp.keys import HmacKey, PublicKey, VerificationKey
from agentguard.mcp.proof import (
    META_KEY,
    Claims,
    ParsedProof,
    ProofError,
    arguments_digest,
    claims_json,
    hmac_matches,
    parse_proof,
)
from agentguard.replay import InMemoryReplayStore, ReplayStore

__all__ = ["ProofVerifier", "VerifiedRequest"]

log = logging.getLogger("agentguard.mcp")

_THUMBPRINTS = 1024  # distinct public JWKs remembered (header JSON -> thumbprint)


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose proof checked out: who signed it and which nonce it spent."""

    kid: str
    method: str
    name: str
    nonce: str
    issued_at: int


class ProofVerifier:
    """Checks MCP request proofs for one server.

    `keys` are the HMAC secrets and public keys the server trusts, known by their `kid` (the
    thumbprint, for public keys). `max_skew` bounds how far a proof's time may be from the
    server's clock, either way; nonces are remembered for twice that, so a proof can never be
    both fresh and forgotten.

    The default replay record is per process and holds 100,000 nonces: with `max_skew=60` that
    sustains about 800 verified calls per second, after which calls are refused
    (`unavailable`) until entries expire. Size `InMemoryReplayStore(max_entries=...)` as peak
    calls per second * (2 * max_skew + 1), or share a `RedisReplayStore` across replicas.
    """

    def __init__(
        self,
        *,
        audience: str,
        keys: Iterable[VerificationKey],
        replay: ReplayStore | None = None,
        max_skew: float = 60.0,
        clock: Callable[[], float] = time.time,
        audit: AuditLog | None = None,
        audit_accepted: bool = True,
        methods: Iterable[str] = ("tools/call",),
    ) -> None:
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience must be a non-empty string")
        if not 0 < max_skew <= 3600:
            raise ConfigurationError("max_skew must be between 0 and 3600 seconds")
        self.audience = audience
        self._keys: dict[str, VerificationKey] = {}
        for key in keys:
            if not isinstance(key, HmacKey | PublicKey):
                raise ConfigurationError("keys must be HmacKey or PublicKey objects")
            if key.kid in self._keys:
                raise ConfigurationError(f"two keys share the id {key.kid!r}")
            self._keys[key.kid] = key
        if not self._keys:
            raise ConfigurationError("a verifier needs at least one key")
        self.replay: ReplayStore = replay if replay is not None else InMemoryReplayStore()
        self.max_skew = float(max_skew)
        self._clock = clock
        self._audit = audit
        self._audit_accepted = audit_accepted
        self.methods = frozenset(methods)
        self._thumbprints: dict[bytes, str] = {}

    @property
    def blocking(self) -> bool:
        """True when verifying may wait on I/O (a Redis replay store, a file audit log)."""
        memory_audit = self._audit is None or isinstance(self._audit.sink, MemorySink)
        return not (isinstance(self.replay, InMemoryReplayStore) and memory_audit)

    def requires_proof(self, method: str) -> bool:
        """Whether requests with this JSON-RPC method must carry a proof."""
        return method in self.methods

    def verify(
        self,
        *,
        method: str,
        name: str,
        arguments: Mapping[str, Any] | None,
        meta: Mapping[str, Any] | None,
        session_id: str | None = None,
        header_proof: Any = None,
        request_id: Any = None,
    ) -> VerifiedRequest:
        """Accept the request or raise `ProofError` with a reason code; both are audited."""
        args_digest: str | None = None
        kid: str | None = None
        try:
            proof = meta.get(META_KEY) if isinstance(meta, Mapping) else None
            if proof is None:
                proof = header_proof
            elif header_proof is not None and header_proof != proof:
                raise ProofError("malformed_proof", "the header and _meta carry different proofs")
            if proof is None:
                raise ProofError("missing_proof", f"{method} requires a signed proof")
            parsed = parse_proof(proof)
            claims = parsed.claims
            kid = claims.kid
            args_digest = arguments_digest(arguments)
            self._check(parsed, method, name, args_digest, session_id)
        except ProofError as exc:
            self._note(method, name, args_digest, kid, "rejected", exc.reason, request_id)
            raise
        except Exception as exc:  # unexpected input shapes: refuse, never let it through
            log.exception("agentguard.mcp: proof check failed unexpectedly")
            self._note(method, name, args_digest, kid, "rejected", "malformed_proof", request_id)
            raise ProofError("malformed_proof", f"proof could not be checked ({exc})") from None
        self._note(method, name, args_digest, kid, "accepted", None, request_id)
        return VerifiedRequest(claims.kid, method, name, claims.nonce, claims.iat)

    def _check(
        self, parsed: ParsedProof, method: str, name: str, args_digest: str, sid: str | None
    ) -> None:
        claims = parsed.claims
        now = self._clock()
        if abs(now - claims.iat) > self.max_skew:
            raise ProofError("stale", "the proof's time is outside the accepted window")
        self._check_signature(parsed)
        if claims.aud != self.audience:
            raise ProofError("binding_mismatch", "the proof was made for another server")
        if claims.sid != sid:
            raise ProofError("binding_mismatch", "the proof was made for another session")
        if claims.method != method:
            raise ProofError("binding_mismatch", "the proof was made for another method")
        if claims.name != name or claims.args != args_digest:
            raise ProofError("bad_signature", "the signed tool or arguments differ from received")
        self._spend(claims)

    def _check_signature(self, parsed: ParsedProof) -> None:
        claims = parsed.claims
        if parsed.sig is not None:
            key = self._keys.get(claims.kid)
            if not isinstance(key, HmacKey):
                raise ProofError("unknown_key", "the proof names a key this server does not trust")
            if not hmac_matches(key, parsed):
                raise ProofError("bad_signature", "the proof's signature does not verify")
            return
        assert parsed.jws is not None and parsed.jwk is not None
        thumbprint = self._thumbprint(parsed.jwk)
        public = self._keys.get(thumbprint)
        if not isinstance(public, PublicKey) or claims.kid != thumbprint:
            raise ProofError("unknown_key", "the proof's key is not one this server trusts")
        if public.alg != claims.alg:
            raise ProofError("bad_signature", "the proof uses another algorithm than its key")
        try:
            payload = public.verify_compact(parsed.jws)
        except Exception:
            raise ProofError("bad_signature", "the proof's signature does not verify") from None
        if payload != claims_json(claims):
            raise ProofError("bad_signature", "the signed claims are not in canonical form")

    def _thumbprint(self, jwk: Mapping[str, Any]) -> str:
        raw = canonical_json(dict(jwk))
        known = self._thumbprints.get(raw)
        if known is not None:
            return known
        try:
            thumbprint = PublicKey(jwk).kid
        except ConfigurationError:
            raise ProofError("unknown_key", "the proof's key is not a supported JWK") from None
        if len(self._thumbprints) >= _THUMBPRINTS:
            self._thumbprints.clear()
        self._thumbprints[raw] = thumbprint
        return thumbprint

    def _spend(self, claims: Claims) -> None:
        key = f"mcp:{claims.aud}:{claims.kid}:{claims.nonce}"
        try:
            fresh = self.replay.add_if_absent(key, 2 * self.max_skew + 1)
        except Exception as exc:
            log.error("agentguard.mcp: replay store unavailable: %s", type(exc).__name__)
            raise ProofError("unavailable", "the replay check could not be made") from None
        if not fresh:
            raise ProofError("replay", "this proof was already used")

    def _note(
        self,
        method: str,
        name: str,
        args_digest: str | None,
        kid: str | None,
        result: str,
        reason: str | None,
        request_id: Any,
    ) -> None:
        if reason is not None:
            log.warning(
                "agentguard.mcp: rejected %s %r (kid=%s, request id=%r): %s",
                method,
                name,
                kid,
                request_id,
                reason,
            )
        if self._audit is None or (reason is None and not self._audit_accepted):
            return
        fields = {
            "event": "mcp",
            "tool": name if isinstance(name, str) else None,
            "input_hash": args_digest,
            "result": result,
            "reason": reason,
            "summary": {"method": method, "kid": kid, "audience": self.audience},
        }
        self._audit.append_fields(fields)
