"""Approval assertions: only a trusted key can decide, about exactly one call, exactly once."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import threading
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguard.approvals.assertions import (
    ASSERTION_TYP,
    ApprovalAssertion,
    ApprovalAssertionVerifier,
    ApprovalSigner,
    Binding,
    InMemoryReplayStore,
    InvalidAssertion,
    ReplayStore,
    ReplayStoreFull,
)
from agentguard.errors import ConfigurationError, GuardError

NOW = 1_750_000_000.0
BINDING = Binding(
    tool="send_email",
    args_digest="sha256:" + "ab" * 32,
    principal_user="alice",
    tenant="acme",
    thread_id="thread-1",
    policy_version="v7",
    call_id="call-9",
)

ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
HS_SECRET = secrets.token_bytes(32)

# kid -> (signing key, verification key, algorithm)
KEYS: dict[str, tuple[Any, Any, str]] = {
    "ed-1": (ED_KEY, ED_KEY.public_key(), "EdDSA"),
    "ec-1": (EC_KEY, EC_KEY.public_key(), "ES256"),
    "hs-1": (HS_SECRET, HS_SECRET, "HS256"),
}


def make_verifier(**kwargs: Any) -> ApprovalAssertionVerifier:
    return ApprovalAssertionVerifier(
        {kid: public for kid, (_, public, _) in KEYS.items()},
        algorithms=["EdDSA", "ES256", "HS256"],
        **kwargs,
    )


def make_signer(kid: str = "ed-1", **kwargs: Any) -> ApprovalSigner:
    private, _, alg = KEYS[kid]
    return ApprovalSigner(private, kid=kid, algorithm=alg, **kwargs)


def sign(signer: ApprovalSigner | None = None, **over: Any) -> str:
    args: dict[str, Any] = {
        "approver": "mallory-the-manager",
        "approver_role": "manager",
        "tenant": "acme",
        "decision": "approve",
        "binding": BINDING,
        "now": NOW,
    }
    args.update(over)
    return (signer or make_signer()).sign(**args)


def code_of(token: str, verifier: ApprovalAssertionVerifier | None = None, **kw: Any) -> str:
    with pytest.raises(InvalidAssertion) as info:
        (verifier or make_verifier()).verify(token, expected=kw.pop("expected", BINDING), **kw)
    assert isinstance(info.value, GuardError)
    return info.value.code


def payload_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("kid", sorted(KEYS))
def test_round_trip_each_algorithm(kid: str) -> None:
    token = sign(make_signer(kid))
    assert jwt.get_unverified_header(token)["alg"] == KEYS[kid][2]
    got = make_verifier().verify(token, expected=BINDING, now=NOW + 1)
    assert got == ApprovalAssertion(
        approver="mallory-the-manager",
        approver_role="manager",
        tenant="acme",
        decision="approve",
        binding=BINDING,
        jti=got.jti,
        issued_at=NOW,
        expires_at=NOW + 300,
    )
    assert len(got.jti) >= 20


def test_claims_layout() -> None:
    token = sign(make_signer(issuer="inbox"), decision="edit", edited_args_digest="sha256:ff")
    claims = payload_of(token)
    assert set(claims) == {
        "sub",
        "role",
        "tenant",
        "decision",
        "binding",
        "edited_args_digest",
        "jti",
        "iat",
        "exp",
        "aud",
        "iss",
    }
    assert claims["binding"] == BINDING.to_claims()
    assert Binding.from_claims(claims["binding"]) == BINDING
    assert claims["aud"] == "agentguard-approvals"
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": "ed-1", "typ": ASSERTION_TYP}
    got = make_verifier(issuer="inbox").verify(token, expected=BINDING, now=NOW)
    assert got.decision == "edit"
    assert got.edited_args_digest == "sha256:ff"


def test_edit_needs_digest_and_only_edit_has_one() -> None:
    with pytest.raises(ValueError):
        sign(decision="edit")
    with pytest.raises(ValueError):
        sign(decision="approve", edited_args_digest="sha256:ff")
    with pytest.raises(ValueError):
        sign(decision="maybe")


# ---------------------------------------------------------------- refusals


def test_tampered_payload_is_bad_signature() -> None:
    header, payload, sig = sign().split(".")
    i = len(payload) // 2
    flipped = "B" if payload[i] != "B" else "C"
    tampered = f"{header}.{payload[:i]}{flipped}{payload[i + 1 :]}.{sig}"
    assert code_of(tampered, now=NOW) == "bad_signature"


def test_tampered_signature_is_bad_signature() -> None:
    header, payload, _ = sign(make_signer("ec-1")).split(".")
    other = sign(make_signer("ec-1")).split(".")[2]
    assert code_of(f"{header}.{payload}.{other}", now=NOW) == "bad_signature"


def test_unknown_kid() -> None:
    stranger = ed25519.Ed25519PrivateKey.generate()
    token = sign(ApprovalSigner(stranger, kid="ed-9", algorithm="EdDSA"))
    assert code_of(token, now=NOW) == "unknown_key"


def test_missing_kid() -> None:
    claims = payload_of(sign())
    token = jwt.encode(claims, ED_KEY, algorithm="EdDSA", headers={"typ": ASSERTION_TYP})
    assert code_of(token, now=NOW) == "unknown_key"


def test_wrong_typ_is_malformed() -> None:
    claims = payload_of(sign())
    token = jwt.encode(claims, ED_KEY, algorithm="EdDSA", headers={"kid": "ed-1", "typ": "JWT"})
    assert code_of(token, now=NOW) == "malformed"


def test_trusted_kid_with_another_key_is_bad_signature() -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    token = sign(ApprovalSigner(impostor, kid="ed-1", algorithm="EdDSA"))
    assert code_of(token, now=NOW) == "bad_signature"


def test_alg_none_token_refused() -> None:
    claims = payload_of(sign())
    no_key: Any = None
    token = jwt.encode(
        claims, no_key, algorithm="none", headers={"kid": "ed-1", "typ": ASSERTION_TYP}
    )
    assert code_of(token, now=NOW) == "bad_signature"


def test_algorithm_confusion_refused() -> None:
    # An EC public key must never be usable as an HMAC secret, whatever the header says.
    claims = payload_of(sign())
    token = jwt.encode(
        claims,
        secrets.token_bytes(32),
        algorithm="HS256",
        headers={"kid": "ec-1", "typ": ASSERTION_TYP},
    )
    assert code_of(token, now=NOW) == "bad_signature"


def test_expired() -> None:
    token = sign()
    assert code_of(token, now=NOW + 300 + 6) == "expired"
    assert make_verifier().verify(token, expected=BINDING, now=NOW + 300 + 4).decision == "approve"


def test_not_yet_valid() -> None:
    assert code_of(sign(), now=NOW - 60) == "not_yet_valid"


def test_lifetime_too_long() -> None:
    token = sign(make_signer(lifetime=7200))
    assert code_of(token, now=NOW) == "malformed"
    assert code_of(sign(make_signer(lifetime=120)), make_verifier(max_lifetime=60), now=NOW) == (
        "malformed"
    )


def test_wrong_audience_and_issuer() -> None:
    assert code_of(sign(make_signer(audience="other")), now=NOW) == "malformed"
    assert code_of(sign(make_signer(issuer="evil")), make_verifier(issuer="inbox"), now=NOW) == (
        "malformed"
    )
    assert code_of(sign(), make_verifier(issuer="inbox"), now=NOW) == "malformed"


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Binding)])
def test_each_binding_field_is_checked(field: str) -> None:
    current = getattr(BINDING, field)
    expected = dataclasses.replace(BINDING, **{field: (current or "") + "-other"})
    with pytest.raises(InvalidAssertion) as info:
        make_verifier().verify(sign(), expected=expected, now=NOW)
    assert info.value.code == "binding_mismatch"
    assert field in str(info.value)


@pytest.mark.parametrize("field", ["thread_id", "call_id"])
def test_optional_binding_field_none_versus_value(field: str) -> None:
    changes: dict[str, Any] = {field: None}
    expected = dataclasses.replace(BINDING, **changes)
    assert code_of(sign(), expected=expected, now=NOW) == "binding_mismatch"


def test_wrong_tenant() -> None:
    assert code_of(sign(tenant="globex"), now=NOW) == "wrong_tenant"


def test_replay() -> None:
    verifier = make_verifier()
    token = sign()
    verifier.verify(token, expected=BINDING, now=NOW)
    assert code_of(token, verifier, now=NOW + 1) == "replayed"


def test_refused_token_does_not_burn_jti() -> None:
    verifier = make_verifier()
    token = sign()
    other = dataclasses.replace(BINDING, tool="delete_contact")
    assert code_of(token, verifier, expected=other, now=NOW) == "binding_mismatch"
    assert verifier.verify(token, expected=BINDING, now=NOW).approver == "mallory-the-manager"


def test_replay_race_exactly_one_wins() -> None:
    verifier = make_verifier()
    token = sign()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            verifier.verify(token, expected=BINDING, now=NOW)
            outcomes.append("ok")
        except InvalidAssertion as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["replayed"] * 7


def test_reject_cannot_become_approve() -> None:
    token = sign(decision="reject")
    claims = payload_of(token)
    claims["decision"] = "approve"
    # Editing the payload without re-signing breaks the signature.
    header, _, sig = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert code_of(f"{header}.{body}.{sig}", now=NOW) == "bad_signature"
    # Re-signing needs a trusted key: an attacker's own key is unknown, or fails under a known kid.
    attacker = ed25519.Ed25519PrivateKey.generate()
    for kid, expected_code in (("attacker", "unknown_key"), ("ed-1", "bad_signature")):
        forged = jwt.encode(
            claims, attacker, algorithm="EdDSA", headers={"kid": kid, "typ": ASSERTION_TYP}
        )
        assert code_of(forged, now=NOW) == expected_code
    assert make_verifier().verify(token, expected=BINDING, now=NOW).decision == "reject"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop("binding"),
        lambda c: c.update(binding="send_email"),
        lambda c: c["binding"].pop("call_id"),
        lambda c: c["binding"].update(extra="x"),
        lambda c: c["binding"].update(tool=7),
        lambda c: c["binding"].update(tool=None),
        lambda c: c.update(decision="approve please"),
        lambda c: c.update(sub=""),
        lambda c: c.pop("role"),
        lambda c: c.pop("jti"),
        lambda c: c.update(jti=5),
        lambda c: c.update(iat="yesterday"),
        lambda c: c.update(exp=True),
        lambda c: c.update(exp=c["iat"] - 1),
        lambda c: c.update(edited_args_digest="sha256:ff"),
        lambda c: c.update(decision="edit"),
    ],
)
def test_malformed_claims(mutate: Any) -> None:
    claims = payload_of(sign())
    mutate(claims)
    token = jwt.encode(
        claims, ED_KEY, algorithm="EdDSA", headers={"kid": "ed-1", "typ": ASSERTION_TYP}
    )
    assert code_of(token, now=NOW) == "malformed"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "...", "x" * 20_000, 42, None])
def test_garbage_tokens(token: Any) -> None:
    assert code_of(token, now=NOW) in {"malformed", "unknown_key"}


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": []},
        {"algorithms": ["none"]},
        {"algorithms": ["EdDSA", "none"]},
        {"algorithms": "EdDSA"},
        {"algorithms": ["HS256"]},  # the EdDSA key fits none
        {"algorithms": ["XX999"]},
        {"algorithms": ["EdDSA"], "max_lifetime": 0},
    ],
)
def test_verifier_misconfiguration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ApprovalAssertionVerifier({"ed-1": ED_KEY.public_key()}, **kwargs)


def test_short_hmac_secret_refused() -> None:
    with pytest.raises(ConfigurationError):
        ApprovalAssertionVerifier({"hs": b"short"}, algorithms=["HS256"])
    with pytest.raises(ConfigurationError):
        ApprovalSigner(b"short", kid="hs", algorithm="HS256")


def test_empty_keys_and_none_signer_refused() -> None:
    with pytest.raises(ConfigurationError):
        ApprovalAssertionVerifier({}, algorithms=["EdDSA"])
    with pytest.raises(ConfigurationError):
        ApprovalSigner(None, kid="k", algorithm="none")
    with pytest.raises(ConfigurationError):
        ApprovalSigner(ED_KEY, kid="k", algorithm="ES256")


# ---------------------------------------------------------------- replay store


def test_replay_store_prunes_expired_entries() -> None:
    clock = [100.0]
    store = InMemoryReplayStore(max_entries=2, clock=lambda: clock[0])
    assert isinstance(store, ReplayStore)
    assert store.add_if_absent("a", 10)
    assert store.add_if_absent("b", 50)
    assert not store.add_if_absent("a", 10)
    with pytest.raises(ReplayStoreFull):
        store.add_if_absent("c", 10)
    clock[0] = 110.0
    assert len(store) == 1  # "a" expired and was pruned
    assert store.add_if_absent("c", 10)
    with pytest.raises(ReplayStoreFull):  # full of live entries: refuse rather than forget
        store.add_if_absent("a", 10)
    clock[0] = 1_000.0
    assert len(store) == 0
    assert store.add_if_absent("a", 10)


def test_replay_store_rejects_bad_ttl() -> None:
    store = InMemoryReplayStore()
    for ttl in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            store.add_if_absent("k", ttl)


def test_verifier_uses_injected_store_with_entries_until_exp() -> None:
    clock = [0.0]
    store = InMemoryReplayStore(clock=lambda: clock[0])
    verifier = make_verifier(replay_store=store)
    token = sign()
    verifier.verify(token, expected=BINDING, now=NOW)
    assert len(store) == 1
    clock[0] = 300.0  # still before exp + leeway
    assert code_of(token, verifier, now=NOW) == "replayed"
    clock[0] = 306.0
    assert len(store) == 0  # pruned once the token could no longer verify anyway
    assert code_of(token, verifier, now=NOW + 306) == "expired"


# ---------------------------------------------------------------- properties

_opt_text = st.none() | st.text(max_size=30)
bindings = st.builds(
    Binding,
    tool=st.text(max_size=30),
    args_digest=st.text(max_size=30),
    principal_user=st.text(max_size=30),
    tenant=st.text(min_size=1, max_size=30),
    thread_id=_opt_text,
    policy_version=st.text(max_size=30),
    call_id=_opt_text,
)

PROPERTY_SIGNER = make_signer("hs-1")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed=bindings, other=bindings)
def test_property_binding_must_match_exactly(signed: Binding, other: Binding) -> None:
    verifier = make_verifier()
    token = sign(PROPERTY_SIGNER, tenant=signed.tenant, binding=signed)
    if other == signed:
        other = dataclasses.replace(signed, tool=signed.tool + "!")
    with pytest.raises(InvalidAssertion) as info:
        verifier.verify(token, expected=other, now=NOW)
    assert info.value.code == "binding_mismatch"
    got = verifier.verify(token, expected=signed, now=NOW)
    assert got.binding == signed
    with pytest.raises(InvalidAssertion) as again:
        verifier.verify(token, expected=signed, now=NOW)
    assert again.value.code == "replayed"


@settings(max_examples=100, deadline=None)
@given(signed=bindings, data=st.data())
def test_property_single_field_change(signed: Binding, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(Binding)]))
    value = data.draw(_opt_text if field in {"thread_id", "call_id"} else st.text(max_size=30))
    changes: dict[str, Any] = {field: value}
    changed = dataclasses.replace(signed, **changes)
    verifier = make_verifier()
    token = sign(PROPERTY_SIGNER, tenant=signed.tenant, binding=signed)
    if changed == signed:
        assert verifier.verify(token, expected=changed, now=NOW).binding == signed
        return
    with pytest.raises(InvalidAssertion) as info:
        verifier.verify(token, expected=changed, now=NOW)
    assert info.value.code == "binding_mismatch"
    assert field in str(info.value)
