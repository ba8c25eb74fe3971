"""Signed calls over stdio: the example server (official SDK) as a child process, its tools/call
handler wrapped by `protect_tools`, the client session wrapped by `signed_session`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.server.fastmcp import FastMCP
from mcp.shared.exceptions import McpError

from agentguard.errors import ConfigurationError
from agentguard.mcp import (
    PROOF_ERROR_CODE,
    AsymmetricKey,
    HmacKey,
    ProofVerifier,
    RequestSigner,
    protect_tools,
    signed_session,
)

from .servers import AUDIENCE, HMAC_KID, HMAC_SECRET, server_env, stdio_params

pytestmark = pytest.mark.anyio

ARGS = {"customer_id": "c-1", "amount_cents": 25}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def hmac_signer(**kw) -> RequestSigner:
    return RequestSigner(HmacKey(HMAC_KID, HMAC_SECRET), audience=AUDIENCE, **kw)


@contextlib.asynccontextmanager
async def stdio_session(**env) -> AsyncIterator[ClientSession]:
    params = stdio_params(server_env(**env))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:  # type: ignore[arg-type]
        await session.initialize()
        yield session


async def refused(call) -> str:
    with pytest.raises(McpError) as info:
        await call
    assert info.value.error.code == PROOF_ERROR_CODE
    return info.value.error.data["reason"]


async def test_signed_calls_over_stdio_run_and_every_attack_is_refused():
    """One server process for the whole matrix: starting one costs about a second."""
    async with stdio_session() as raw:
        signed = signed_session(raw, hmac_signer())

        # a normal call through langchain-mcp-adapters tools
        tools = {t.name: t for t in await load_mcp_tools(signed)}
        assert "Ada Lovelace" in str(await tools["lookup_customer"].ainvoke({"customer_id": "c-1"}))
        assert "25 cents sent to c-1" in str(await tools["send_invoice"].ainvoke(ARGS))

        # missing proof: the bare session
        assert await refused(raw.call_tool("send_invoice", ARGS)) == "missing_proof"

        # exact replay: the same proof twice
        proof = hmac_signer().proof("send_invoice", ARGS)
        meta = {"io.agentguard/proof": proof}
        ok = await raw.call_tool("send_invoice", ARGS, meta=meta)
        assert not ok.isError and "25 cents" in ok.content[0].text
        assert await refused(raw.call_tool("send_invoice", ARGS, meta=meta)) == "replay"

        # tampered arguments / tool name under a never-used proof
        fresh = {"io.agentguard/proof": hmac_signer().proof("send_invoice", ARGS)}
        evil = {**ARGS, "amount_cents": 9_999_999}
        assert await refused(raw.call_tool("send_invoice", evil, meta=fresh)) == "bad_signature"
        assert await refused(raw.call_tool("echo", {"payload": {}}, meta=fresh)) == "bad_signature"
        assert not (await raw.call_tool("send_invoice", ARGS, meta=fresh)).isError

        # stale, other audience, unknown key, wrong secret, another session's proof
        stale = hmac_signer(clock=lambda: time.time() - 600)
        assert await refused(signed_session(raw, stale).call_tool("send_invoice", ARGS)) == "stale"
        billing = RequestSigner(HmacKey(HMAC_KID, HMAC_SECRET), audience="mcp://billing")
        assert await refused(signed_session(raw, billing).call_tool("send_invoice", ARGS)) == (
            "binding_mismatch"
        )
        bound = hmac_signer().proof("send_invoice", ARGS, session_id="an-http-session")
        assert await refused(
            raw.call_tool("send_invoice", ARGS, meta={"io.agentguard/proof": bound})
        ) == ("binding_mismatch")
        for key in (HmacKey("k9", HMAC_SECRET), AsymmetricKey.generate("ES256")):
            stranger = signed_session(raw, RequestSigner(key, audience=AUDIENCE))
            assert await refused(stranger.call_tool("send_invoice", ARGS)) == "unknown_key"
        forger = RequestSigner(HmacKey(HMAC_KID, b"\x01" * 32), audience=AUDIENCE)
        assert await refused(signed_session(raw, forger).call_tool("send_invoice", ARGS)) == (
            "bad_signature"
        )

        # malformed proofs
        assert await refused(
            raw.call_tool("send_invoice", ARGS, meta={"io.agentguard/proof": "x"})
        ) == ("malformed_proof")

        # after all that, the session still works
        assert "Alan Turing" in str(await tools["lookup_customer"].ainvoke({"customer_id": "c-2"}))


async def test_asymmetric_keys_over_stdio():
    import json

    key = AsymmetricKey.generate("Ed25519")
    async with stdio_session(jwks=json.dumps([key.public_jwk()])) as raw:
        signed = signed_session(raw, RequestSigner(key, audience=AUDIENCE))
        result = await signed.call_tool("lookup_customer", {"customer_id": "c-2"})
        assert not result.isError and "Alan Turing" in result.content[0].text


def test_protect_tools_refuses_to_wrap_twice_or_nothing():
    verifier = ProofVerifier(audience=AUDIENCE, keys=[HmacKey(HMAC_KID, HMAC_SECRET)])
    server = FastMCP("x")
    protect_tools(server, verifier)
    with pytest.raises(ConfigurationError, match="already protected"):
        protect_tools(server, verifier)
    from mcp.server.lowlevel import Server

    with pytest.raises(ConfigurationError, match="no tools/call handler"):
        protect_tools(Server("bare"), verifier)
    with pytest.raises(ConfigurationError):
        protect_tools(object(), verifier)
