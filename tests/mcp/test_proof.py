"""The proof format and the verifier, without a transport: every reason code, every binding.

The attacks: a captured request sent again (replay), held back and sent later (stale), edited
in flight (tampered name or arguments), sent to another server or session (binding), signed
with a key the server never trusted (unknown key), or with no proof at all.
"""

from __future__ import annotations

import base64
import json
import logging

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentguard.audit import AuditLog, MemorySink, verify_events
from agentguard.errors import ConfigurationError
from agentguard.mcp import (
    META_KEY,
    AsymmetricKey,
    HmacKey,
    ProofError,
    ProofVerifier,
    PublicKey,
    RequestSigner,
)
from agentguard.mcp.proof import decode_header, encode_header
from agentguard.replay import InMemoryReplayStore

SECRET = b"\x11" * 32
AUD = "mcp://crm"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hmac_key(kid: str = "k1", secret: bytes = SECRET) -> HmacKey:
    return HmacKey(kid, secret)


def verifier(*keys, clock=None, **kwargs) -> ProofVerifier:
    return ProofVerifier(
        audience=kwargs.pop("audience", AUD),
        keys=keys or [hmac_key()],
        clock=clock or Clock(),
        **kwargs,
    )


def signer(key=None, *, audience: str = AUD, clock=None) -> RequestSigner:
    return RequestSigner(key or hmac_key(), audience=audience, clock=clock or Clock())


def verify(v: ProofVerifier, proof, name="send_invoice", arguments=..., sid=None, **kw):
    args = {"customer_id": "c-1", "amount_cents": 500} if arguments is ... else arguments
    return v.verify(
        method=kw.pop("method", "tools/call"),
        name=name,
        arguments=args,
        meta={META_KEY: proof} if proof is not None else None,
        session_id=sid,
        **kw,
    )


def reason_of(fn) -> str:
    with pytest.raises(ProofError) as info:
        fn()
    return info.value.reason


ARGS = {"customer_id": "c-1", "amount_cents": 500}
KEYS = {
    "HS256": lambda: hmac_key(),
    "Ed25519": lambda: AsymmetricKey.generate("Ed25519"),
    "ES256": lambda: AsymmetricKey.generate("ES256"),
}


def trusted(key):
    return key if isinstance(key, HmacKey) else key.public_key()


@pytest.fixture(params=sorted(KEYS))
def key(request):
    return KEYS[request.param]()


# ------------------------------------------------------------------ the happy path


def test_a_fresh_signed_request_verifies_once(key):
    v = verifier(trusted(key))
    proof = signer(key).proof("send_invoice", ARGS)
    ok = verify(v, proof)
    assert ok.kid == key.kid and ok.name == "send_invoice" and ok.issued_at == int(NOW)
    assert reason_of(lambda: verify(v, proof)) == "replay"


def test_key_order_and_spacing_of_arguments_do_not_matter():
    v = verifier()
    proof = signer().proof("t", {"b": [1, {"y": 2, "x": 1.0}], "a": "é"})
    verify(v, proof, name="t", arguments=json.loads('{"a":"é","b":[1,{"x":1,"y":2}]}'))


def test_absent_and_empty_arguments_are_the_same_call():
    v = verifier()
    verify(v, signer().proof("t", None), name="t", arguments={})
    verify(v, signer().proof("t", {}), name="t", arguments=None)


def test_nonces_are_128_random_bits_and_never_repeat():
    s = signer()
    nonces = {s.proof("t", {})["nonce"] for _ in range(2000)}
    assert len(nonces) == 2000
    assert all(len(base64.urlsafe_b64decode(n + "==")) == 16 for n in nonces)


# ------------------------------------------------------------------ each reason code


def test_missing_proof_is_refused():
    v = verifier()
    assert reason_of(lambda: verify(v, None)) == "missing_proof"
    assert reason_of(lambda: v.verify(method="tools/call", name="t", arguments={}, meta={})) == (
        "missing_proof"
    )


@pytest.mark.parametrize("offset", [-61, 61, -3600, 10**6])
def test_a_proof_outside_the_time_window_is_stale(key, offset):
    v = verifier(trusted(key), max_skew=60)
    proof = signer(key, clock=Clock(NOW + offset)).proof("send_invoice", ARGS)
    assert reason_of(lambda: verify(v, proof)) == "stale"


def test_a_proof_inside_the_window_passes_either_way(key):
    v = verifier(trusted(key), max_skew=60)
    for offset in (-60, 59):
        verify(v, signer(key, clock=Clock(NOW + offset)).proof("send_invoice", ARGS))


def test_a_stale_proof_is_refused_before_its_nonce_is_spent():
    clock = Clock()
    v = verifier(clock=clock)
    proof = signer().proof("send_invoice", ARGS)
    clock.now = NOW + 1000
    assert reason_of(lambda: verify(v, proof)) == "stale"
    clock.now = NOW
    verify(v, proof)  # nothing was recorded by the refusal


def test_the_nonce_is_remembered_for_as_long_as_the_proof_is_fresh():
    monotonic = Clock(0.0)
    replay = InMemoryReplayStore(clock=monotonic)
    clock = Clock()
    v = verifier(clock=clock, replay=replay, max_skew=30)
    proof = signer().proof("send_invoice", ARGS)
    verify(v, proof)
    for step in (29.0, 59.0):  # a receiver clock anywhere in the window still refuses it
        monotonic.now = step
        clock.now = NOW + 29
        assert reason_of(lambda: verify(v, proof)) == "replay"


def test_tampered_arguments_or_tool_fail(key):
    v = verifier(trusted(key))
    proof = signer(key).proof("send_invoice", ARGS)
    evil = {**ARGS, "amount_cents": 500_000}
    assert reason_of(lambda: verify(v, proof, arguments=evil)) == "bad_signature"
    assert reason_of(lambda: verify(v, proof, name="delete_customer")) == "bad_signature"
    assert reason_of(lambda: verify(v, proof, arguments={**ARGS, "bcc": "x"})) == "bad_signature"
    verify(v, proof)  # the refusals spent nothing: the genuine request still runs


def test_tampered_claims_fail_the_signature():
    v = verifier()
    proof = signer().proof("send_invoice", ARGS)
    for field, value in [("iat", int(NOW) - 1), ("nonce", "A" * 22), ("aud", "mcp://other")]:
        forged = {**proof, field: value}
        assert reason_of(lambda f=forged: verify(v, f)) == "bad_signature", field
    forged_sig = {**proof, "sig": proof["sig"][:-2] + ("AA" if proof["sig"][-2:] != "AA" else "BA")}
    assert reason_of(lambda: verify(v, forged_sig)) == "bad_signature"


def test_a_proof_for_another_server_is_a_binding_mismatch(key):
    v = verifier(trusted(key))
    proof = signer(key, audience="mcp://billing").proof("send_invoice", ARGS)
    assert reason_of(lambda: verify(v, proof)) == "binding_mismatch"


def test_a_proof_for_another_session_is_a_binding_mismatch(key):
    v = verifier(trusted(key))
    proof = signer(key).proof("send_invoice", ARGS, session_id="session-a")
    assert reason_of(lambda: verify(v, proof, sid="session-b")) == "binding_mismatch"
    assert reason_of(lambda: verify(v, proof, sid=None)) == "binding_mismatch"
    verify(v, proof, sid="session-a")


def test_a_proof_for_another_method_is_a_binding_mismatch():
    v = verifier(methods=["tools/call", "resources/read"])
    proof = signer().proof("send_invoice", ARGS, method="resources/read")
    assert reason_of(lambda: verify(v, proof)) == "binding_mismatch"


def test_unknown_keys_are_refused():
    v = verifier(hmac_key("k1"))
    assert reason_of(lambda: verify(v, signer(hmac_key("k2")).proof("t", ARGS), "t")) == (
        "unknown_key"
    )
    # same kid, another secret: the signature cannot verify
    assert reason_of(
        lambda: verify(v, signer(hmac_key("k1", b"\x22" * 32)).proof("t", ARGS), "t")
    ) == ("bad_signature")
    stranger = AsymmetricKey.generate()
    assert reason_of(lambda: verify(v, signer(stranger).proof("t", ARGS), "t")) == "unknown_key"


def test_a_jws_cannot_claim_a_trusted_kid_with_its_own_key():
    trusted_key, attacker = AsymmetricKey.generate(), AsymmetricKey.generate()
    v = verifier(trusted_key.public_key())
    proof = signer(attacker).proof("t", ARGS)
    header_b64, payload_b64, sig = proof["jws"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    claims["kid"] = trusted_key.kid
    relabelled = base64.urlsafe_b64encode(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
    token = f"{header_b64}.{relabelled.rstrip(b'=').decode()}.{sig}"
    assert reason_of(lambda: verify(v, {"v": 1, "jws": token}, "t")) == "unknown_key"


def test_an_hmac_key_id_cannot_be_used_for_a_jws_or_the_reverse():
    shared = hmac_key("k1")
    pair = AsymmetricKey.generate()
    v = verifier(shared, pair.public_key())
    proof = signer(pair).proof("t", ARGS)
    hs_looking = {
        **json.loads(base64.urlsafe_b64decode(proof["jws"].split(".")[1] + "==")),
        "sig": "A" * 43,
    }
    hs_looking["kid"] = pair.kid
    hs_looking["alg"] = "HS256"
    assert reason_of(lambda: verify(v, hs_looking, "t")) == "unknown_key"


@pytest.mark.parametrize(
    "proof",
    [
        "a string",
        [],
        {},
        {"v": 1, "jws": "a.b"},
        {"v": 1, "jws": "a.b.c", "extra": 1},
        {"v": 2, "jws": "a.b.c"},
        {"v": 1, "jws": "e30.e30.e30"},
    ],
)
def test_malformed_proofs_are_refused(proof):
    assert reason_of(lambda: verify(verifier(), proof)) == "malformed_proof"


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"iat": 1.5},
        {"iat": "1800000000"},
        {"iat": True},
        {"nonce": "short"},
        {"args": "md5:abc"},
        {"sid": ""},
        {"kid": ""},
        {"aud": "x" * 600},
        {"alg": "none"},
        {"extra": "field"},
    ],
)
def test_malformed_hmac_fields_are_refused(change):
    proof = {**signer().proof("send_invoice", ARGS), **change}
    assert reason_of(lambda: verify(verifier(), proof)) == "malformed_proof"


def test_a_header_and_meta_proof_must_agree():
    v = verifier()
    s = signer()
    a, b = s.proof("send_invoice", ARGS), s.proof("send_invoice", ARGS)
    assert reason_of(lambda: verify(v, a, header_proof=b)) == "malformed_proof"
    verify(v, None, header_proof=decode_header(encode_header(a)))
    assert reason_of(lambda: verify(v, None, header_proof=decode_header(encode_header(a)))) == (
        "replay"
    )


def test_a_replay_store_that_cannot_answer_means_reject():
    class Broken:
        def add_if_absent(self, key, ttl):
            raise ConnectionError("redis is down")

    v = verifier(replay=Broken())
    assert reason_of(lambda: verify(v, signer().proof("send_invoice", ARGS))) == "unavailable"


def test_a_full_replay_store_means_reject():
    v = verifier(replay=InMemoryReplayStore(max_entries=1))
    verify(v, signer().proof("send_invoice", ARGS))
    assert reason_of(lambda: verify(v, signer().proof("send_invoice", ARGS))) == "unavailable"


def test_arguments_without_a_canonical_form_cannot_be_signed_or_verified():
    huge = {"n": 2**53}
    with pytest.raises(ProofError) as info:
        signer().proof("t", huge)
    assert info.value.reason == "malformed_proof"
    proof = signer().proof("t", {"n": 1})
    assert reason_of(lambda: verify(verifier(), proof, "t", huge)) == "malformed_proof"


# ------------------------------------------------------------------ audit and logs


def test_decisions_are_audited_and_logged_without_arguments_or_keys(caplog):
    audit = AuditLog(MemorySink(), b"a" * 32)
    v = verifier(audit=audit)
    proof = signer().proof("send_invoice", {"customer_id": "c-secret-customer", "amount_cents": 1})
    args = {"customer_id": "c-secret-customer", "amount_cents": 1}
    with caplog.at_level(logging.WARNING, logger="agentguard.mcp"):
        verify(v, proof, arguments=args)
        with pytest.raises(ProofError):
            verify(v, proof, arguments=args, request_id=7)
    records = audit.sink.records
    assert [(r["result"], r["reason"]) for r in records] == [
        ("accepted", None),
        ("rejected", "replay"),
    ]
    assert all(r["event"] == "mcp" and r["tool"] == "send_invoice" for r in records)
    assert records[0]["input_hash"].startswith("sha256:")
    verify_events(records, b"a" * 32)
    blob = json.dumps(records) + caplog.text
    assert "c-secret-customer" not in blob and SECRET.hex() not in blob
    assert "replay" in caplog.text and "request id=7" in caplog.text


def test_an_audit_log_that_fails_refuses_the_call():
    class Failing(MemorySink):
        def append(self, record):
            raise OSError("disk full")

    v = verifier(audit=AuditLog(Failing(), b"a" * 32))
    with pytest.raises(OSError):
        verify(v, signer().proof("send_invoice", ARGS))


def test_keys_never_show_in_reprs_or_proofs():
    key = hmac_key()
    pair = AsymmetricKey.generate()
    texts = [repr(key), repr(pair), repr(signer(key)), repr(signer(pair))]
    texts += [json.dumps(signer(k).proof("t", ARGS)) for k in (key, pair)]
    private_d = pair.private_jwk()["d"]
    for text in texts:
        assert SECRET.hex() not in text and private_d not in text
        assert base64.urlsafe_b64encode(SECRET).decode().rstrip("=") not in text


# ------------------------------------------------------------------ configuration errors


def test_configuration_is_checked():
    with pytest.raises(ConfigurationError):
        HmacKey("k1", b"short")
    with pytest.raises(ConfigurationError):
        HmacKey("", SECRET)
    with pytest.raises(ConfigurationError):
        ProofVerifier(audience=AUD, keys=[])
    with pytest.raises(ConfigurationError):
        ProofVerifier(audience=AUD, keys=[hmac_key(), hmac_key()])
    with pytest.raises(ConfigurationError):
        ProofVerifier(audience="", keys=[hmac_key()])
    with pytest.raises(ConfigurationError):
        ProofVerifier(audience=AUD, keys=[hmac_key()], max_skew=0)
    with pytest.raises(ConfigurationError):
        RequestSigner(hmac_key(), audience="")
    with pytest.raises(ConfigurationError):
        PublicKey({"kty": "RSA", "n": "x", "e": "AQAB"})
    with pytest.raises(ConfigurationError):
        AsymmetricKey.from_jwk(AsymmetricKey.generate().public_jwk())  # no private part


def test_keys_round_trip_through_jwk():
    for alg in ("Ed25519", "ES256"):
        key = AsymmetricKey.generate(alg)
        again = AsymmetricKey.from_jwk(key.private_jwk())
        assert again.kid == key.kid == PublicKey(key.public_jwk()).kid
        v = verifier(PublicKey(key.public_jwk()))
        verify(v, signer(again).proof("t", ARGS), "t")
        # a public JWK that carries the private part is stripped of it, never stored
        assert not PublicKey(key.private_jwk())._key.is_private


# ------------------------------------------------------------------ properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=arguments, data=st.data())
def test_any_change_to_any_byte_of_the_signed_content_fails(args, data):
    """Flip one byte of the request as sent (tool name, arguments or proof): never accepted."""
    key = hmac_key()
    proof = signer(key).proof("send_invoice", args)
    wire = orjson.dumps({"name": "send_invoice", "arguments": args, "_meta": {META_KEY: proof}})
    i = data.draw(st.integers(0, len(wire) - 1), label="byte")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != wire[i]), label="value")
    mutated = wire[:i] + bytes([new]) + wire[i + 1 :]
    try:
        params = json.loads(mutated)
    except (ValueError, UnicodeDecodeError):
        return  # not even JSON: the server's parser refuses it before any check

    def content(p: object) -> bytes:
        # The signed content: name, arguments (absent counts as {}) and the proof. Other
        # params are not covered (docs/mcp.md), so a byte flip that only renames a key into
        # an unknown param and leaves the call the same is not a change of signed content.
        if isinstance(p, dict):
            p = {
                "name": p.get("name"),
                "arguments": p.get("arguments") or {},
                "_meta": p.get("_meta"),
            }
        return orjson.dumps(p, option=orjson.OPT_SORT_KEYS)

    # e.g. "\u001f" vs "\u001F", or a renamed empty "arguments": the same call, spelt otherwise
    assume(content(params) != content(json.loads(wire)))
    v = verifier(key)
    meta = params.get("_meta") if isinstance(params, dict) else None
    name = params.get("name") if isinstance(params, dict) else None
    arguments_ = params.get("arguments") if isinstance(params, dict) else None
    with pytest.raises(ProofError):
        v.verify(
            method="tools/call",
            name=name if isinstance(name, str) else "",
            arguments=arguments_ if isinstance(arguments_, dict) else None,
            meta=meta if isinstance(meta, dict) else None,
        )


@settings(max_examples=100, deadline=None)
@given(args=arguments)
def test_whatever_the_arguments_a_genuine_request_verifies_exactly_once(args):
    v = verifier()
    proof = signer().proof("t", args)
    received = json.loads(orjson.dumps(args))  # what the server parses
    verify(v, proof, "t", received)
    assert reason_of(lambda: verify(v, proof, "t", received)) == "replay"


@settings(max_examples=60, deadline=None)
@given(args=arguments, other=arguments)
def test_a_proof_never_covers_other_arguments(args, other):
    assume(
        orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
        != orjson.dumps(other, option=orjson.OPT_SORT_KEYS)
    )
    from agentguard._canonical import canonical_json

    assume(canonical_json(args) != canonical_json(other))
    v = verifier()
    proof = signer().proof("t", args)
    assert reason_of(lambda: verify(v, proof, "t", other)) == "bad_signature"


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=30).filter(bool),
    sid=st.none() | st.text(min_size=1, max_size=30),
    iat=st.integers(0, 2**40 - 1),
)
def test_the_fast_claims_encoding_is_exactly_rfc_8785(text, sid, iat):
    import rfc8785

    from agentguard.mcp.proof import Claims, claims_json

    claims = Claims(
        "HS256", text, text, sid, iat, "A" * 22, "tools/call", text, "sha256:" + "0" * 64
    )
    try:
        fast = claims_json(claims)
    except orjson.JSONEncodeError:
        return  # lone surrogates: refused, never signed differently
    assert fast == rfc8785.dumps(claims.as_dict())
