"""Step-up verification: proof that the approving user is present *now*, not just logged in.

A ``step_up`` approval only counts after a fresh check of the acting user. Each method is a
:class:`StepUpVerifier`; TOTP codes and IdP re-authentication tokens ship here, and others
(passkeys/WebAuthn, push approval, ...) plug in by implementing the same protocol.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jwt
import pyotp

from agentguard.approvals.assertions import (
    MAX_TOKEN_CHARS,
    InMemoryReplayStore,
    ReplayStore,
    ReplayStoreFull,
    _algorithms_for_key,
)
from agentguard.context import Principal
from agentguard.errors import ConfigurationError

__all__ = ["IdpAssertionVerifier", "StepUpResult", "StepUpVerifier", "TotpVerifier"]

_ASCII_DIGITS = frozenset("0123456789")
_UNAVAILABLE = "verification temporarily unavailable; try again shortly"


@dataclass(frozen=True)
class StepUpResult:
    """Outcome of one step-up check. ``reason`` is short and safe to show the user: it never
    carries codes, tokens or secrets."""

    ok: bool
    method: str
    reason: str | None = None


@runtime_checkable
class StepUpVerifier(Protocol):
    """A way to freshly verify the acting user (TOTP, IdP re-login, passkey/WebAuthn, ...).

    ``method`` names the method in audit records (e.g. ``"step_up:webauthn"``). ``verify``
    must not raise for bad, missing or hostile evidence: it returns ``ok=False`` with a
    reason. Raising is reserved for misconfiguration (e.g. an unreadable enrolled secret).
    Implementations must make evidence single-use, or a captured proof could be replayed.
    """

    method: str

    def verify(
        self,
        principal: Principal,
        evidence: Mapping[str, Any],
        *,
        now: float | None = None,
        challenge: str | None = None,
    ) -> StepUpResult:
        """Check ``evidence`` for ``principal`` at ``now`` (seconds since the epoch).

        ``challenge`` is the approval request's id: a method that can carry a nonce (an IdP
        re-login, a WebAuthn assertion) should bind its proof to it, so a proof made for one
        approval cannot approve another.
        """
        ...


class TotpVerifier:
    """RFC 6238 codes from an authenticator app; evidence ``{"totp": "123456"}``.

    A code is accepted once per user and time step: a code seen over someone's shoulder, or
    sent twice, does not count again.
    """

    method: str = "step_up:totp"

    def __init__(
        self,
        secret_for: Callable[[Principal], str | None],
        *,
        valid_window: int = 1,
        digits: int = 6,
        interval: int = 30,
        replay_store: ReplayStore | None = None,
    ) -> None:
        if not 0 <= valid_window <= 10:
            raise ConfigurationError("TotpVerifier: valid_window must be between 0 and 10")
        if not 6 <= digits <= 10:
            raise ConfigurationError("TotpVerifier: digits must be between 6 and 10")
        if interval < 1:
            raise ConfigurationError("TotpVerifier: interval must be at least 1 second")
        self._secret_for = secret_for
        self.valid_window = valid_window
        self.digits = digits
        self.interval = interval
        self._replay: ReplayStore = (
            replay_store if replay_store is not None else InMemoryReplayStore()
        )

    def verify(
        self,
        principal: Principal,
        evidence: Mapping[str, Any],
        *,
        now: float | None = None,
        challenge: str | None = None,
    ) -> StepUpResult:
        """Accept a well-formed, current, not yet used code for this user's enrolled secret.

        A TOTP code cannot carry the challenge; single use per time step is what binds it."""
        code = evidence.get("totp") if isinstance(evidence, Mapping) else None
        if (
            not isinstance(code, str)
            or len(code) != self.digits
            or not _ASCII_DIGITS.issuperset(code)
        ):
            return self._fail(f"enter the {self.digits}-digit code from your authenticator")
        secret = self._secret_for(principal)
        if not secret:
            return self._fail("no authenticator is enrolled for this user")
        t = time.time() if now is None else float(now)
        step = self._matching_step(secret, code, t)
        if step is None:
            return self._fail("code is not valid")
        # Replayable while the step is inside the window around the current one; no longer.
        ttl = (step + self.valid_window + 1) * self.interval - t + 1.0
        key = json.dumps(["totp", principal.tenant, principal.user, step])
        try:
            fresh = self._replay.add_if_absent(key, ttl)
        except ReplayStoreFull:
            return self._fail(_UNAVAILABLE)
        if not fresh:
            return self._fail("code was already used; wait for the next one")
        return StepUpResult(ok=True, method=self.method)

    def _matching_step(self, secret: str, code: str, t: float) -> int | None:
        """The time step whose code equals ``code`` (nearest first), like pyotp's verify."""
        try:
            totp = pyotp.TOTP(secret, digits=self.digits, interval=self.interval)
        except ValueError:  # binascii.Error; the message never carries the secret
            raise ConfigurationError(
                "TotpVerifier: the enrolled TOTP secret is not valid base32"
            ) from None
        try:
            current = totp.timecode(t)
        except ValueError:
            raise ConfigurationError("TotpVerifier: `now` is outside the supported range") from None
        offsets = sorted(range(-self.valid_window, self.valid_window + 1), key=abs)
        matched: int | None = None
        for offset in offsets:
            step = current + offset
            if step < 0:
                continue
            try:
                expected = totp.generate_otp(step)
            except ValueError:  # binascii.Error: the enrolled secret is not base32
                raise ConfigurationError(
                    "TotpVerifier: the enrolled TOTP secret is not valid base32"
                ) from None
            # Compare every candidate so timing does not reveal which step matched.
            if hmac.compare_digest(expected.encode(), code.encode()) and matched is None:
                matched = step
        return matched

    def _fail(self, reason: str) -> StepUpResult:
        return StepUpResult(ok=False, method=self.method, reason=reason)


class IdpAssertionVerifier:
    """A fresh re-login at the identity provider; evidence ``{"id_token": "<JWT>"}``.

    The token must be signed by the IdP, name this user and tenant, show an authentication
    (``auth_time``) within ``max_age`` seconds, meet ``acr_values`` when configured, and not
    have been used before (``jti``).
    """

    method: str = "step_up:idp"

    def __init__(
        self,
        key: Any,
        *,
        algorithms: Sequence[str],
        issuer: str,
        audience: str,
        max_age: float = 300.0,
        acr_values: Collection[str] | None = None,
        leeway: float = 5.0,
        replay_store: ReplayStore | None = None,
        require_nonce: bool = False,
    ) -> None:
        self._algorithms = _algorithms_for_key(key, algorithms, what="IdpAssertionVerifier")
        self.require_nonce = require_nonce
        if not issuer or not audience:
            raise ConfigurationError("IdpAssertionVerifier: issuer and audience are required")
        if not math.isfinite(max_age) or max_age <= 0:
            raise ConfigurationError("IdpAssertionVerifier: max_age must be positive")
        if not math.isfinite(leeway) or leeway < 0:
            raise ConfigurationError("IdpAssertionVerifier: leeway must be >= 0")
        if acr_values is not None and (isinstance(acr_values, str) or not acr_values):
            raise ConfigurationError("IdpAssertionVerifier: acr_values must be a non-empty set")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.max_age = float(max_age)
        self.leeway = float(leeway)
        self.acr_values = frozenset(acr_values) if acr_values is not None else None
        self._replay: ReplayStore = (
            replay_store if replay_store is not None else InMemoryReplayStore()
        )

    def verify(
        self,
        principal: Principal,
        evidence: Mapping[str, Any],
        *,
        now: float | None = None,
        challenge: str | None = None,
    ) -> StepUpResult:
        """Accept a valid, recent, unused IdP token for exactly this user and tenant (and, with
        ``require_nonce``, made for this very approval: its ``nonce`` is the challenge)."""
        token = evidence.get("id_token") if isinstance(evidence, Mapping) else None
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            return self._fail("sign in again to confirm")
        t = time.time() if now is None else float(now)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=list(self._algorithms),
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "iat", "sub", "auth_time", "jti", "aud", "iss"],
                    "enforce_minimum_key_length": True,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return self._fail("sign-in token is not valid")

        times = {name: _number(claims.get(name)) for name in ("exp", "iat", "auth_time")}
        exp, iat, auth_time = times["exp"], times["iat"], times["auth_time"]
        nbf = _number(claims["nbf"]) if "nbf" in claims else None
        jti = claims.get("jti")
        if exp is None or iat is None or auth_time is None or not isinstance(jti, str) or not jti:
            return self._fail("sign-in token is not valid")
        if exp <= t - self.leeway:
            return self._fail("sign-in token has expired")
        if iat > t + self.leeway or (nbf is not None and nbf > t + self.leeway):
            return self._fail("sign-in token is not valid yet")
        if claims.get("sub") != principal.user:
            return self._fail("sign-in is for another user")
        if claims.get("tenant") != principal.tenant:
            return self._fail("sign-in is for another tenant")
        if auth_time > t + self.leeway:
            return self._fail("sign-in time is in the future")
        if t - auth_time > self.max_age:
            return self._fail("sign-in is too old; sign in again")
        acr = claims.get("acr")
        if self.acr_values is not None and not (isinstance(acr, str) and acr in self.acr_values):
            return self._fail("sign-in method is not strong enough")
        if self.require_nonce and (
            not isinstance(challenge, str)
            or not challenge
            or not hmac.compare_digest(str(claims.get("nonce", "")), challenge)
        ):
            return self._fail("sign-in was made for another approval request")
        key = json.dumps(["idp", self.issuer, jti])
        try:
            fresh = self._replay.add_if_absent(key, exp - t + self.leeway)
        except ReplayStoreFull:
            return self._fail(_UNAVAILABLE)
        if not fresh:
            return self._fail("sign-in token was already used")
        return StepUpResult(ok=True, method=self.method)

    def _fail(self, reason: str) -> StepUpResult:
        return StepUpResult(ok=False, method=self.method, reason=reason)


def _number(value: object) -> float | None:
    """A finite JSON number as float, else None (booleans are not times)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None
