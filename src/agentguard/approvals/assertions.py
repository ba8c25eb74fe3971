"""Signed approval assertions: a human decision counts only when a trusted key vouches for it.

Whoever can resume a paused graph can write anything into its state, so a bare
``{"decision": "approve"}`` proves nothing. The approval back-end signs a short-lived JWT
(:class:`ApprovalSigner`) bound to the exact call being approved (:class:`Binding`); the guard
checks it (:class:`ApprovalAssertionVerifier`) against keys it trusts, and accepts each
assertion once.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, cast, get_args

import jwt
from jwt.api_jws import PyJWS

from agentguard._canonical import digest as args_digest
from agentguard.errors import ConfigurationError, GuardError
from agentguard.replay import InMemoryReplayStore, ReplayStore, ReplayStoreFull

__all__ = [
    "ASSERTION_TYP",
    "DEFAULT_AUDIENCE",
    "ApprovalAssertion",
    "ApprovalAssertionVerifier",
    "ApprovalSigner",
    "Binding",
    "DecisionKind",
    "GrantTerms",
    "InMemoryReplayStore",
    "InvalidAssertion",
    "InvalidAssertionCode",
    "ReplayStore",
    "ReplayStoreFull",
    "args_digest",
]

DecisionKind = Literal["approve", "edit", "reject", "respond"]
InvalidAssertionCode = Literal[
    "bad_signature",
    "unknown_key",
    "expired",
    "not_yet_valid",
    "binding_mismatch",
    "replayed",
    "malformed",
    "wrong_tenant",
]

DEFAULT_AUDIENCE = "agentguard-approvals"
# Explicit typing (RFC 8725 section 3.11): another JWT signed by the same key, such as a login
# token, can never pass for an approval.
ASSERTION_TYP = "agentguard-approval+jwt"
# Far above any real assertion; stops a huge token from costing work before it is refused.
MAX_TOKEN_CHARS = 16_384

_DECISIONS: frozenset[str] = frozenset(get_args(DecisionKind))
_CLAIMS_REQUIRED = ["sub", "role", "tenant", "decision", "binding", "jti", "iat", "exp", "aud"]


class InvalidAssertion(GuardError):
    """The approval assertion was refused; ``code`` says why in machine-readable form."""

    def __init__(self, code: InvalidAssertionCode, message: str) -> None:
        self.code: InvalidAssertionCode = code
        super().__init__(f"{code}: {message}")


def _algorithms_for_key(key: Any, algorithms: Sequence[str], *, what: str) -> tuple[str, ...]:
    """The configured algorithms this key can really be used with.

    Narrowing per key stops algorithm confusion (a token claiming HS256 "signed" with an
    EC public key) and turns a key that fits none of them into a configuration error.
    """
    if isinstance(algorithms, str):
        raise ConfigurationError(f"{what}: algorithms must be a list, not a string")
    if not algorithms:
        raise ConfigurationError(f"{what}: at least one algorithm is required")
    jws = PyJWS()
    supported = jws.get_algorithms()
    usable: list[str] = []
    for alg in algorithms:
        if not isinstance(alg, str) or alg.lower() == "none":
            raise ConfigurationError(f"{what}: algorithm {alg!r} is not allowed")
        if alg not in supported:
            raise ConfigurationError(f"{what}: algorithm {alg!r} is not supported")
        if isinstance(key, jwt.PyJWK):
            if key.algorithm_name == alg:
                usable.append(alg)
            continue
        alg_obj = jws.get_algorithm_by_name(alg)
        try:
            prepared = alg_obj.prepare_key(key)
        except (jwt.InvalidKeyError, TypeError, ValueError):
            continue
        weakness = alg_obj.check_key_length(prepared)
        if weakness:
            raise ConfigurationError(f"{what}: key too weak for {alg}: {weakness}")
        usable.append(alg)
    if not usable:
        raise ConfigurationError(f"{what}: the key fits none of the algorithms {list(algorithms)}")
    return tuple(usable)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidAssertion("malformed", f"claim {name!r} must be a number")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidAssertion("malformed", f"claim {name!r} must be finite")
    return result


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidAssertion("malformed", f"claim {name!r} must be a non-empty string")
    return value


def _check_edit_digest(decision: str, edited_args_digest: object) -> None:
    if decision == "edit":
        if not isinstance(edited_args_digest, str) or not edited_args_digest:
            raise InvalidAssertion("malformed", "an 'edit' decision needs edited_args_digest")
    elif edited_args_digest is not None:
        raise InvalidAssertion("malformed", "edited_args_digest is only allowed with 'edit'")


@dataclass(frozen=True)
class Binding:
    """The exact call a decision is about: approving one call must not approve another."""

    tool: str
    args_digest: str
    principal_user: str
    tenant: str
    thread_id: str | None
    policy_version: str
    call_id: str | None

    def to_claims(self) -> dict[str, str | None]:
        """The ``binding`` claim object (every field present, ``None`` as JSON null)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Binding:
        """Parse a ``binding`` claim strictly: exactly these keys, strings (or null if optional).

        Unknown keys are refused, since a signer may have meant them to restrict the approval.
        """
        if not isinstance(claims, Mapping):
            raise InvalidAssertion("malformed", "binding must be an object")
        names = [f.name for f in fields(cls)]
        if set(claims) != set(names):
            raise InvalidAssertion("malformed", f"binding must have exactly the keys {names}")
        optional = {"thread_id", "call_id"}
        for name in names:
            value = claims[name]
            if value is None and name in optional:
                continue
            if not isinstance(value, str):
                raise InvalidAssertion("malformed", f"binding field {name!r} must be a string")
        return cls(**{name: claims[name] for name in names})

    def differences(self, other: Binding) -> list[str]:
        """Names of the fields whose values differ."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@dataclass(frozen=True)
class GrantTerms:
    """A time-limited grant an approver adds to an approval: later calls of the same tool by
    the same principal whose `match` arguments equal this call's run without asking again."""

    ttl_seconds: int
    match: tuple[str, ...]

    def __post_init__(self) -> None:
        ttl = self.ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("grant ttl_seconds must be a positive integer")
        names = self.match
        if (
            not isinstance(names, tuple)
            or not names
            or len(names) > 16
            or any(not isinstance(n, str) or not n or len(n) > 64 for n in names)
            or list(names) != sorted(set(names))
        ):
            raise ValueError("grant match must be 1-16 distinct argument names, sorted")

    def to_claims(self) -> dict[str, Any]:
        return {"ttl_seconds": self.ttl_seconds, "match": list(self.match)}

    @classmethod
    def from_claims(cls, claims: Any) -> GrantTerms:
        if not isinstance(claims, Mapping) or set(claims) != {"ttl_seconds", "match"}:
            raise InvalidAssertion("malformed", "grant must have exactly ttl_seconds and match")
        match = claims["match"]
        try:
            return cls(claims["ttl_seconds"], tuple(match) if isinstance(match, list) else ())
        except ValueError as exc:
            raise InvalidAssertion("malformed", str(exc)) from None


@dataclass(frozen=True)
class ApprovalAssertion:
    """A verified human decision: who decided what, about which call, valid until when."""

    approver: str
    approver_role: str
    tenant: str
    decision: DecisionKind
    binding: Binding
    jti: str
    issued_at: float
    expires_at: float
    edited_args_digest: str | None = None
    grant: GrantTerms | None = None


class ApprovalSigner:
    """Issues approval assertions; runs in the approval inbox/back-end, which holds the key."""

    def __init__(
        self,
        key: Any,
        *,
        kid: str,
        algorithm: str,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        lifetime: float = 300.0,
    ) -> None:
        if not isinstance(kid, str) or not kid:
            raise ConfigurationError("ApprovalSigner: kid must be a non-empty string")
        if not math.isfinite(lifetime) or lifetime <= 0:
            raise ConfigurationError("ApprovalSigner: lifetime must be positive")
        _algorithms_for_key(key, [algorithm], what="ApprovalSigner")
        self._key = key
        self.kid = kid
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.lifetime = float(lifetime)

    def sign(
        self,
        *,
        approver: str,
        approver_role: str,
        tenant: str,
        decision: DecisionKind,
        binding: Binding,
        edited_args_digest: str | None = None,
        grant: GrantTerms | None = None,
        now: float | None = None,
    ) -> str:
        """A compact JWT for one decision, bound to ``binding``, valid for ``lifetime`` seconds."""
        if decision not in _DECISIONS:
            raise ValueError(f"decision must be one of {sorted(_DECISIONS)}")
        for name, value in (("approver", approver), ("approver_role", approver_role)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if not isinstance(tenant, str) or not tenant:
            raise ValueError("tenant must be a non-empty string")
        try:
            _check_edit_digest(decision, edited_args_digest)
        except InvalidAssertion as exc:
            raise ValueError(str(exc)) from None
        issued = time.time() if now is None else float(now)
        claims: dict[str, Any] = {
            "sub": approver,
            "role": approver_role,
            "tenant": tenant,
            "decision": decision,
            "binding": binding.to_claims(),
            "jti": secrets.token_urlsafe(16),
            "iat": issued,
            "exp": issued + self.lifetime,
            "aud": self.audience,
        }
        if edited_args_digest is not None:
            claims["edited_args_digest"] = edited_args_digest
        if grant is not None:
            if decision != "approve":
                raise ValueError("a grant can only come with an 'approve' decision")
            claims["grant"] = grant.to_claims()
        if self.issuer is not None:
            claims["iss"] = self.issuer
        return jwt.encode(
            claims,
            self._key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, "typ": ASSERTION_TYP},
        )


class ApprovalAssertionVerifier:
    """Checks approval assertions against trusted keys and accepts each one exactly once."""

    def __init__(
        self,
        keys: Mapping[str, Any],
        *,
        algorithms: Sequence[str],
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        leeway: float = 5.0,
        max_lifetime: float = 3600.0,
        replay_store: ReplayStore | None = None,
    ) -> None:
        if not keys:
            raise ConfigurationError("ApprovalAssertionVerifier: at least one key is required")
        if not math.isfinite(leeway) or leeway < 0:
            raise ConfigurationError("ApprovalAssertionVerifier: leeway must be >= 0")
        if not math.isfinite(max_lifetime) or max_lifetime <= 0:
            raise ConfigurationError("ApprovalAssertionVerifier: max_lifetime must be positive")
        self._keys: dict[str, tuple[Any, tuple[str, ...]]] = {}
        for kid, key in keys.items():
            if not isinstance(kid, str) or not kid:
                raise ConfigurationError("ApprovalAssertionVerifier: kids must be non-empty")
            algs = _algorithms_for_key(key, algorithms, what=f"key {kid!r}")
            self._keys[kid] = (key, algs)
        self.audience = audience
        self.issuer = issuer
        self.leeway = float(leeway)
        self.max_lifetime = float(max_lifetime)
        self._replay: ReplayStore = (
            replay_store if replay_store is not None else InMemoryReplayStore()
        )

    def verify(
        self, token: str, *, expected: Binding, now: float | None = None
    ) -> ApprovalAssertion:
        """The verified assertion, or :class:`InvalidAssertion` with a ``code``.

        The jti is recorded only after every other check passed, so a token refused for a
        binding mismatch does not burn a valid one sent for the right call.
        """
        t = time.time() if now is None else float(now)
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidAssertion("malformed", "token must be a non-empty compact JWT")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidAssertion("malformed", "token header cannot be read") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise InvalidAssertion("unknown_key", "token is not signed by a trusted key id")
        if header.get("typ") != ASSERTION_TYP:
            raise InvalidAssertion("malformed", f"token type must be {ASSERTION_TYP!r}")
        key, algorithms = self._keys[kid]
        claims = self._decode(token, key, algorithms)

        issued_at = _number(claims, "iat")
        expires_at = _number(claims, "exp")
        if expires_at <= issued_at:
            raise InvalidAssertion("malformed", "exp must be after iat")
        if expires_at - issued_at > self.max_lifetime:
            raise InvalidAssertion("malformed", "assertion lifetime exceeds the allowed maximum")
        if issued_at > t + self.leeway:
            raise InvalidAssertion("not_yet_valid", "assertion issued in the future")
        if "nbf" in claims and _number(claims, "nbf") > t + self.leeway:
            raise InvalidAssertion("not_yet_valid", "assertion not valid yet")
        if expires_at <= t - self.leeway:
            raise InvalidAssertion("expired", "assertion has expired")

        approver = _text(claims, "sub")
        role = _text(claims, "role")
        tenant = _text(claims, "tenant")
        jti = _text(claims, "jti")
        decision = claims.get("decision")
        if not isinstance(decision, str) or decision not in _DECISIONS:
            raise InvalidAssertion("malformed", f"decision must be one of {sorted(_DECISIONS)}")
        edited = claims.get("edited_args_digest")
        _check_edit_digest(decision, edited)
        binding = Binding.from_claims(claims["binding"])
        grant = GrantTerms.from_claims(claims["grant"]) if "grant" in claims else None
        if grant is not None and decision != "approve":
            raise InvalidAssertion("malformed", "a grant can only come with 'approve'")

        diff = binding.differences(expected)
        if diff:
            raise InvalidAssertion(
                "binding_mismatch", f"assertion is for a different call (fields: {', '.join(diff)})"
            )
        if tenant != expected.tenant:
            raise InvalidAssertion("wrong_tenant", "approver belongs to another tenant")

        replay_key = json.dumps(["approval", self.issuer, kid, jti])
        if not self._replay.add_if_absent(replay_key, expires_at - t + self.leeway):
            raise InvalidAssertion("replayed", "assertion was already used")
        return ApprovalAssertion(
            approver=approver,
            approver_role=role,
            tenant=tenant,
            decision=cast(DecisionKind, decision),
            binding=binding,
            jti=jti,
            issued_at=issued_at,
            expires_at=expires_at,
            edited_args_digest=cast("str | None", edited),
            grant=grant,
        )

    def _decode(self, token: str, key: Any, algorithms: tuple[str, ...]) -> dict[str, Any]:
        """Signature, audience and issuer via PyJWT; times are checked by the caller at `now`."""
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "strict_aud": True,
                    "verify_iss": self.issuer is not None,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": list(_CLAIMS_REQUIRED) + (["iss"] if self.issuer else []),
                    "enforce_minimum_key_length": True,
                },
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise InvalidAssertion("bad_signature", "signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise InvalidAssertion("malformed", "assertion is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidAssertion("malformed", "assertion is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidAssertion("malformed", f"missing claim {exc.claim!r}") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidAssertion("malformed", "token cannot be decoded") from None
