"""Identity comes from the host or a verified token, never from the model; missing → refused."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from agentguard import CallContext, FromContext, FromJWT, FromServerAuth, IdentityError, Principal
from agentguard.identity import acting_for

from .conftest import ALICE


def test_principal_from_run_context_instance_or_mapping() -> None:
    src = FromContext()
    assert src.resolve(CallContext(runtime_context={"principal": ALICE})) == ALICE
    assert src.resolve(CallContext(runtime_context=ALICE)) == ALICE
    got = src.resolve(
        CallContext(runtime_context={"principal": {"tenant": "t", "user": "u", "role": "viewer"}})
    )
    assert got.tenant == "t"

    class Ctx:
        principal = ALICE

    assert src.resolve(CallContext(runtime_context=Ctx())) == ALICE


def test_missing_identity_names_what_is_missing() -> None:
    src = FromContext()
    with pytest.raises(IdentityError, match="no principal") as exc:
        src.resolve(CallContext())
    assert exc.value.missing == ["principal"]
    with pytest.raises(IdentityError) as exc:
        src.resolve(CallContext(runtime_context={"principal": {"user": "u"}}))
    assert "missing role, tenant" in str(exc.value)
    assert exc.value.missing == ["role", "tenant"]


@pytest.mark.parametrize(
    "bad",
    [
        {"tenant": "", "user": "u", "role": "r"},
        {"tenant": "a\nb", "user": "u", "role": "r"},
        {"tenant": "acme\u202e", "user": "u", "role": "r"},
        {"tenant": "acme", "user": "u", "role": "r", "is_admin": True},
        {"tenant": "x" * 300, "user": "u", "role": "r"},
    ],
)
def test_malformed_identity_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(IdentityError):
        FromContext().resolve(CallContext(runtime_context={"principal": bad}))


def test_mappings_can_be_refused_for_stricter_hosts() -> None:
    src = FromContext(accept_mappings=False)
    with pytest.raises(IdentityError, match="not a Principal"):
        src.resolve(
            CallContext(runtime_context={"principal": {"tenant": "t", "user": "u", "role": "r"}})
        )


def test_acting_for_binds_outside_a_graph_and_conflicts_are_refused() -> None:
    src = FromContext()
    with acting_for(ALICE):
        assert src.resolve(CallContext()) == ALICE
        other = Principal(tenant="globex", user="eve", role="admin")
        with pytest.raises(IdentityError, match="conflicting"):
            src.resolve(CallContext(runtime_context={"principal": other}))
    with pytest.raises(IdentityError):
        src.resolve(CallContext())


def test_principal_is_immutable() -> None:
    with pytest.raises(ValidationError):
        ALICE.role = "admin"  # type: ignore[misc]


def test_server_auth_user_maps_to_principal() -> None:
    from langgraph_sdk.auth.types import StudioUser  # noqa: F401  (the SDK is installed)

    user = {
        "identity": "alice",
        "tenant": "acme",
        "role": "employee",
        "permissions": ["emails:send"],
    }
    p = FromServerAuth().resolve(CallContext(server_user=user))
    assert (p.user, p.tenant, p.scopes) == ("alice", "acme", frozenset({"emails:send"}))
    with pytest.raises(IdentityError, match="no authenticated server user"):
        FromServerAuth().resolve(CallContext(runtime_context={"principal": ALICE}))
    with pytest.raises(IdentityError, match="missing tenant"):
        FromServerAuth().resolve(CallContext(server_user={"identity": "a", "role": "r"}))


def test_server_user_from_config_key() -> None:
    config = {
        "configurable": {"langgraph_auth_user": {"identity": "u", "tenant": "t", "role": "viewer"}}
    }
    ctx = CallContext.from_langgraph(None, config=config)
    assert FromServerAuth().resolve(ctx).user == "u"


SECRET = "s3cret-key-for-tests-only-32bytes!"


def _token(claims: dict[str, Any], key: Any = SECRET, alg: str = "HS256") -> str:
    now = int(time.time())
    base = {"iss": "https://idp.example", "aud": "agentguard", "iat": now, "exp": now + 300}
    return jwt.encode({**base, **claims}, key, algorithm=alg)


def _jwt_src(key: Any = SECRET, algs: tuple[str, ...] = ("HS256",)) -> FromJWT:
    return FromJWT(key, algorithms=list(algs), issuer="https://idp.example", audience="agentguard")


def test_jwt_identity_verified() -> None:
    token = _token(
        {
            "sub": "alice",
            "tenant": "acme",
            "role": "employee",
            "scope": "a:read b:write",
            "azp": "web",
        }
    )
    p = _jwt_src().resolve(CallContext(runtime_context={"identity_token": token}))
    assert (p.user, p.tenant, p.role, p.client_id) == ("alice", "acme", "employee", "web")
    assert p.scopes == frozenset({"a:read", "b:write"})


def test_jwt_es256_with_real_keys() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = _token({"sub": "alice", "tenant": "acme", "role": "viewer"}, key, "ES256")
    src = _jwt_src(key.public_key(), ("ES256",))
    assert src.resolve(CallContext(runtime_context={"identity_token": token})).user == "alice"
    other = ec.generate_private_key(ec.SECP256R1())
    forged = _token({"sub": "alice", "tenant": "acme", "role": "admin"}, other, "ES256")
    with pytest.raises(IdentityError, match="rejected"):
        src.resolve(CallContext(runtime_context={"identity_token": forged}))


@pytest.mark.parametrize(
    ("claims", "key"),
    [
        ({"sub": "a", "tenant": "t", "role": "r", "exp": int(time.time()) - 3600}, SECRET),
        ({"sub": "a", "tenant": "t", "role": "r", "aud": "someone-else"}, SECRET),
        ({"sub": "a", "tenant": "t", "role": "r", "iss": "https://evil.example"}, SECRET),
        ({"sub": "a", "tenant": "t", "role": "r"}, "a-different-secret-of-32-bytes!!"),
    ],
)
def test_jwt_forged_expired_or_misaddressed_tokens_are_refused(
    claims: dict[str, Any], key: str
) -> None:
    with pytest.raises(IdentityError, match="rejected"):
        _jwt_src().resolve(CallContext(runtime_context={"identity_token": _token(claims, key)}))


def test_jwt_alg_none_and_missing_claims() -> None:
    with pytest.raises(IdentityError):
        FromJWT(SECRET, algorithms=["none"], issuer="i", audience="a")
    unsigned = jwt.encode({"sub": "a", "tenant": "t", "role": "admin"}, None, algorithm="none")
    with pytest.raises(IdentityError):
        _jwt_src().resolve(CallContext(runtime_context={"identity_token": unsigned}))
    with pytest.raises(IdentityError, match="missing tenant"):
        _jwt_src().resolve(
            CallContext(runtime_context={"identity_token": _token({"sub": "a", "role": "r"})})
        )
    with pytest.raises(IdentityError, match="no identity token"):
        _jwt_src().resolve(CallContext(runtime_context={}))


def test_run_context_is_not_trusted_on_a_langgraph_server() -> None:
    forged = {"principal": {"tenant": "globex", "user": "eve", "role": "admin"}}
    config = {"configurable": {"langgraph_auth_user": {"identity": "alice"}}}
    ctx = CallContext.from_langgraph(None, config=config)
    ctx = CallContext(runtime_context=forged, config=config, on_server=ctx.on_server)
    assert ctx.on_server
    with pytest.raises(IdentityError, match="written by the client"):
        FromContext().resolve(ctx)
    assert FromContext(trust_server_context=True).resolve(ctx).user == "eve"
    local = CallContext.from_langgraph(None, config={"configurable": {"thread_id": "t"}})
    assert not local.on_server
