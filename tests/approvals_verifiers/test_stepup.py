"""Step-up verifiers refuse anything but fresh, unused proof for exactly this user."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agentguard import Principal
from agentguard.approvals.assertions import InMemoryReplayStore
from agentguard.approvals.stepup import (
    IdpAssertionVerifier,
    StepUpResult,
    StepUpVerifier,
    TotpVerifier,
)
from agentguard.errors import ConfigurationError

NOW = 1_750_000_005.0  # 5 s into a 30 s step
ALICE = Principal(tenant="acme", user="alice", role="manager")
BOB = Principal(tenant="acme", user="bob", role="manager")
SECRETS = {"alice": pyotp.random_base32(), "bob": pyotp.random_base32()}


def code_for(user: str, at: float = NOW) -> str:
    return pyotp.TOTP(SECRETS[user]).at(at)


@pytest.fixture
def totp() -> TotpVerifier:
    return TotpVerifier(lambda p: SECRETS.get(p.user))


# ---------------------------------------------------------------- TOTP


def test_protocol_is_satisfied(totp: TotpVerifier) -> None:
    assert isinstance(totp, StepUpVerifier)
    assert totp.method == "step_up:totp"


def test_valid_code_passes(totp: TotpVerifier) -> None:
    assert totp.verify(ALICE, {"totp": code_for("alice")}, now=NOW) == StepUpResult(
        ok=True, method="step_up:totp"
    )


def test_code_from_previous_step_within_window_passes(totp: TotpVerifier) -> None:
    assert totp.verify(ALICE, {"totp": code_for("alice", NOW - 30)}, now=NOW).ok


def test_same_code_twice_is_a_replay(totp: TotpVerifier) -> None:
    code = code_for("alice")
    assert totp.verify(ALICE, {"totp": code}, now=NOW).ok
    again = totp.verify(ALICE, {"totp": code}, now=NOW + 10)
    assert not again.ok
    assert again.reason is not None and "already used" in again.reason
    assert code not in again.reason


def test_replay_is_per_user_and_tenant() -> None:
    shared = pyotp.random_base32()
    verifier = TotpVerifier(lambda p: shared)
    code = pyotp.TOTP(shared).at(NOW)
    assert verifier.verify(ALICE, {"totp": code}, now=NOW).ok
    assert verifier.verify(BOB, {"totp": code}, now=NOW).ok
    other_tenant = Principal(tenant="globex", user="alice", role="manager")
    assert verifier.verify(other_tenant, {"totp": code}, now=NOW).ok


def test_wrong_code_refused(totp: TotpVerifier) -> None:
    good = code_for("alice")
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    result = totp.verify(ALICE, {"totp": wrong}, now=NOW)
    assert not result.ok
    assert result.reason == "code is not valid"


def test_code_from_three_steps_ago_refused(totp: TotpVerifier) -> None:
    assert not totp.verify(ALICE, {"totp": code_for("alice", NOW - 90)}, now=NOW).ok


@pytest.mark.parametrize(
    "evidence",
    [
        {"totp": "12345"},
        {"totp": "1234567"},
        {"totp": "\uff11\uff12\uff13\uff14\uff15\uff16"},  # full-width digits
        {"totp": "12345\u0660"},  # Arabic-Indic zero: str.isdigit() would accept it
        {"totp": " 12345"},
        {"totp": 123456},
        {"totp": None},
        {"totp": ["123456"]},
        {},
    ],
)
def test_malformed_codes_refused(totp: TotpVerifier, evidence: dict[str, Any]) -> None:
    result = totp.verify(ALICE, evidence, now=NOW)
    assert not result.ok
    assert result.reason == "enter the 6-digit code from your authenticator"


def test_malformed_evidence_object_refused(totp: TotpVerifier) -> None:
    assert not totp.verify(ALICE, "123456", now=NOW).ok  # type: ignore[arg-type]


def test_user_without_secret_refused(totp: TotpVerifier) -> None:
    carol = Principal(tenant="acme", user="carol", role="manager")
    result = totp.verify(carol, {"totp": code_for("alice")}, now=NOW)
    assert not result.ok
    assert result.reason == "no authenticator is enrolled for this user"


def test_another_users_code_refused(totp: TotpVerifier) -> None:
    assert not totp.verify(ALICE, {"totp": code_for("bob")}, now=NOW).ok


def test_replay_race_exactly_one_wins(totp: TotpVerifier) -> None:
    code = code_for("alice")
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        results.append(totp.verify(ALICE, {"totp": code}, now=NOW).ok)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_replay_record_is_pruned_as_time_moves_on() -> None:
    clock = [0.0]
    store = InMemoryReplayStore(clock=lambda: clock[0])
    verifier = TotpVerifier(lambda p: SECRETS.get(p.user), replay_store=store)
    assert verifier.verify(ALICE, {"totp": code_for("alice")}, now=NOW).ok
    assert len(store) == 1
    clock[0] += 120  # the step left the window long ago
    assert len(store) == 0


def test_full_replay_record_fails_closed() -> None:
    store = InMemoryReplayStore(max_entries=1)
    verifier = TotpVerifier(lambda p: SECRETS.get(p.user), replay_store=store)
    assert verifier.verify(ALICE, {"totp": code_for("alice")}, now=NOW).ok
    result = verifier.verify(BOB, {"totp": code_for("bob")}, now=NOW)
    assert not result.ok
    assert result.reason is not None and "unavailable" in result.reason


def test_eight_digit_codes() -> None:
    verifier = TotpVerifier(lambda p: SECRETS["alice"], digits=8)
    code = pyotp.TOTP(SECRETS["alice"], digits=8).at(NOW)
    assert not verifier.verify(ALICE, {"totp": code[:6]}, now=NOW).ok
    assert verifier.verify(ALICE, {"totp": code}, now=NOW).ok


def test_misconfiguration_raises() -> None:
    with pytest.raises(ConfigurationError):
        TotpVerifier(lambda p: None, digits=4)
    with pytest.raises(ConfigurationError):
        TotpVerifier(lambda p: None, valid_window=-1)
    broken = TotpVerifier(lambda p: "not base32 !!")
    with pytest.raises(ConfigurationError) as info:
        broken.verify(ALICE, {"totp": "123456"}, now=NOW)
    assert "not base32 !!" not in str(info.value)


# ---------------------------------------------------------------- IdP

ISSUER = "https://idp.example"
AUDIENCE = "agentguard-client"


@pytest.fixture(scope="module")
def idp_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def idp(idp_key: ec.EllipticCurvePrivateKey) -> IdpAssertionVerifier:
    return IdpAssertionVerifier(
        idp_key.public_key(),
        algorithms=["ES256"],
        issuer=ISSUER,
        audience=AUDIENCE,
        max_age=300,
        acr_values={"urn:mfa"},
    )


_JTI = iter(range(10**9))


def id_token(key: Any, *, algorithm: str = "ES256", drop: tuple[str, ...] = (), **over: Any) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "tenant": "acme",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "auth_time": NOW - 10,
        "acr": "urn:mfa",
        "jti": f"jti-{next(_JTI)}",
    }
    claims.update(over)
    for name in drop:
        claims.pop(name)
    return jwt.encode(claims, key, algorithm=algorithm)


def test_idp_valid(idp: IdpAssertionVerifier, idp_key: ec.EllipticCurvePrivateKey) -> None:
    assert isinstance(idp, StepUpVerifier)
    assert idp.verify(ALICE, {"id_token": id_token(idp_key)}, now=NOW) == StepUpResult(
        ok=True, method="step_up:idp"
    )


@pytest.mark.parametrize(
    ("over", "drop", "reason"),
    [
        ({"sub": "bob"}, (), "sign-in is for another user"),
        ({"tenant": "globex"}, (), "sign-in is for another tenant"),
        ({}, ("tenant",), "sign-in is for another tenant"),
        ({"auth_time": NOW - 301}, (), "sign-in is too old; sign in again"),
        ({"auth_time": NOW + 60}, (), "sign-in time is in the future"),
        ({"acr": "urn:password"}, (), "sign-in method is not strong enough"),
        ({"acr": ["urn:mfa"]}, (), "sign-in method is not strong enough"),
        ({}, ("acr",), "sign-in method is not strong enough"),
        ({"exp": NOW - 6, "iat": NOW - 100}, (), "sign-in token has expired"),
        ({"iat": NOW + 60}, (), "sign-in token is not valid yet"),
        ({}, ("auth_time",), "sign-in token is not valid"),
        ({}, ("jti",), "sign-in token is not valid"),
        ({}, ("exp",), "sign-in token is not valid"),
        ({"auth_time": "yesterday"}, (), "sign-in token is not valid"),
        ({"aud": "someone-else"}, (), "sign-in token is not valid"),
        ({"iss": "https://evil.example"}, (), "sign-in token is not valid"),
    ],
)
def test_idp_refusals(
    idp: IdpAssertionVerifier,
    idp_key: ec.EllipticCurvePrivateKey,
    over: dict[str, Any],
    drop: tuple[str, ...],
    reason: str,
) -> None:
    result = idp.verify(ALICE, {"id_token": id_token(idp_key, drop=drop, **over)}, now=NOW)
    assert result == StepUpResult(ok=False, method="step_up:idp", reason=reason)


def test_idp_bad_signature(idp: IdpAssertionVerifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    result = idp.verify(ALICE, {"id_token": id_token(other)}, now=NOW)
    assert result.reason == "sign-in token is not valid"


def test_idp_alg_none_token(idp: IdpAssertionVerifier) -> None:
    token = id_token(None, algorithm="none")
    assert not idp.verify(ALICE, {"id_token": token}, now=NOW).ok


def test_idp_algorithm_confusion_refused(idp_key: ec.EllipticCurvePrivateKey) -> None:
    # HS256 is configured too, but it cannot be used with an EC key, so it is dropped for it.
    verifier = IdpAssertionVerifier(
        idp_key.public_key(), algorithms=["ES256", "HS256"], issuer=ISSUER, audience=AUDIENCE
    )
    forged = id_token(secrets.token_bytes(32), algorithm="HS256")
    assert verifier.verify(ALICE, {"id_token": forged}, now=NOW).reason == (
        "sign-in token is not valid"
    )
    assert verifier.verify(ALICE, {"id_token": id_token(idp_key)}, now=NOW).ok


def test_idp_replayed_jti(idp: IdpAssertionVerifier, idp_key: ec.EllipticCurvePrivateKey) -> None:
    token = id_token(idp_key)
    assert idp.verify(ALICE, {"id_token": token}, now=NOW).ok
    result = idp.verify(ALICE, {"id_token": token}, now=NOW + 1)
    assert result.reason == "sign-in token was already used"


def test_idp_refused_token_does_not_burn_jti(
    idp: IdpAssertionVerifier, idp_key: ec.EllipticCurvePrivateKey
) -> None:
    token = id_token(idp_key)
    assert not idp.verify(BOB, {"id_token": token}, now=NOW).ok
    assert idp.verify(ALICE, {"id_token": token}, now=NOW).ok


@pytest.mark.parametrize(
    "evidence",
    [{}, {"id_token": None}, {"id_token": 1}, {"id_token": ""}, {"id_token": "x" * 20000}],
)
def test_idp_missing_or_garbage_evidence(
    idp: IdpAssertionVerifier, evidence: dict[str, Any]
) -> None:
    assert idp.verify(ALICE, evidence, now=NOW).reason == "sign in again to confirm"


def test_idp_garbage_token(idp: IdpAssertionVerifier) -> None:
    for token in ("not.a.jwt", "a.b", "....", "eyJhbGciOiJFUzI1NiJ9.@@@.###"):
        assert idp.verify(ALICE, {"id_token": token}, now=NOW).reason == (
            "sign-in token is not valid"
        )


def test_idp_eddsa_without_acr_requirement() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    verifier = IdpAssertionVerifier(
        key.public_key(), algorithms=["EdDSA"], issuer=ISSUER, audience=AUDIENCE
    )
    assert verifier.verify(
        ALICE, {"id_token": id_token(key, algorithm="EdDSA", acr="x")}, now=NOW
    ).ok


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": ["none"]},
        {"algorithms": ["NONE"]},
        {"algorithms": []},
        {"algorithms": "ES256"},
        {"algorithms": ["HS256"]},  # the EC key fits no configured algorithm
        {"algorithms": ["ES256"], "acr_values": set()},
        {"algorithms": ["ES256"], "max_age": 0},
    ],
)
def test_idp_misconfiguration_refused(
    idp_key: ec.EllipticCurvePrivateKey, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        IdpAssertionVerifier(idp_key.public_key(), issuer=ISSUER, audience=AUDIENCE, **kwargs)
