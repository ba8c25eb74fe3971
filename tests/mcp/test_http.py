"""Signed calls over streamable HTTP, against the real example server (official SDK) on 127.0.0.1.

The client is `langchain-mcp-adapters` with `SigningAuth` on its connection, as users wire it.
Each attack is replayed with raw HTTP, the way an attacker holding a captured request would
send it, and must come back as a JSON-RPC error with its reason code while the legitimate
session goes on working.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator

import httpx
import orjson
import pytest
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp.shared.exceptions import McpError

from agentguard.mcp import (
    META_KEY,
    PROOF_ERROR_CODE,
    AsymmetricKey,
    HmacKey,
    RequestSigner,
    SigningAuth,
)

from .servers import AUDIENCE, HMAC_KID, HMAC_SECRET, http_server, server_env

pytestmark = pytest.mark.anyio

ED = AsymmetricKey.generate("Ed25519")
ES = AsymmetricKey.generate("ES256")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server():
    env = server_env(jwks=json.dumps([ED.public_jwk(), ES.public_jwk()]))
    with http_server(env=env) as srv:
        yield srv


class Capture(httpx.Auth):
    """Signs like `SigningAuth` and keeps what went on the wire (an attacker's capture)."""

    requires_request_body = True

    def __init__(self, inner: httpx.Auth | None) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.inner is not None:
            request = next(self.inner.auth_flow(request))
        self.sent.append(request)
        yield request

    def last_call(self) -> httpx.Request:
        return [r for r in self.sent if b'"tools/call"' in r.content][-1]

    def session_id(self) -> str:
        return next(r.headers["mcp-session-id"] for r in self.sent if "mcp-session-id" in r.headers)


def hmac_signer(**kw) -> RequestSigner:
    return RequestSigner(HmacKey(HMAC_KID, HMAC_SECRET), audience=AUDIENCE, **kw)


def client(url: str, auth: httpx.Auth | None) -> MultiServerMCPClient:
    connection: dict = {"transport": "streamable_http", "url": url}
    if auth is not None:
        connection["auth"] = auth
    return MultiServerMCPClient({"crm": connection})  # type: ignore[dict-item]


async def post(url: str, body: bytes, headers: httpx.Headers | dict) -> dict:
    """Send captured or crafted bytes as they are; returns the JSON-RPC answer."""
    keep = {
        k: v
        for k, v in dict(headers).items()
        if k.lower() in ("mcp-session-id", "mcp-protocol-version", "agentguard-proof")
    }
    keep.update(
        {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    )
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(url, content=body, headers=keep)
    assert answer.status_code == 200, answer.text
    if answer.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in answer.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return answer.json()


def call_body(name: str, arguments: dict, proof: dict | None, request_id: int = 1) -> bytes:
    """A raw `tools/call` JSON-RPC request carrying `proof` (or none)."""
    params: dict = {"name": name, "arguments": arguments}
    if proof is not None:
        params["_meta"] = {META_KEY: proof}
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    )


def reason(answer: dict) -> str | None:
    error = answer.get("error")
    if error is None:
        return None
    assert error["code"] == PROOF_ERROR_CODE
    return error["data"]["reason"]


async def refused(session, name: str, args: dict) -> str:
    with pytest.raises(McpError) as info:
        await session.call_tool(name, args)
    assert info.value.error.code == PROOF_ERROR_CODE
    return info.value.error.data["reason"]


# ------------------------------------------------------------------ what passes


@pytest.mark.parametrize("key", ["hmac", "ed25519", "es256"])
async def test_signed_tools_from_langchain_mcp_adapters_run(server, key):
    signer = {
        "hmac": hmac_signer(),
        "ed25519": RequestSigner(ED, audience=AUDIENCE),
        "es256": RequestSigner(ES, audience=AUDIENCE),
    }[key]
    async with client(server.url, SigningAuth(signer)).session("crm") as session:
        tools = {t.name: t for t in await load_mcp_tools(session)}
        out = await tools["lookup_customer"].ainvoke({"customer_id": "c-1"})
        assert "Ada Lovelace" in str(out)
        out = await tools["send_invoice"].ainvoke({"customer_id": "c-2", "amount_cents": 1200})
        assert "1200 cents sent to c-2" in str(out)


async def test_connection_tools_sign_each_fresh_session(server):
    """Tools loaded from a connection open a new session per call: each is bound to its own."""
    tools = {t.name: t for t in await client(server.url, SigningAuth(hmac_signer())).get_tools()}
    for _ in range(3):
        assert "Ada Lovelace" in str(await tools["lookup_customer"].ainvoke({"customer_id": "c-1"}))


async def test_the_proof_may_travel_in_a_header(server):
    capture = Capture(SigningAuth(hmac_signer(), place="header"))
    async with client(server.url, capture).session("crm") as session:
        result = await session.call_tool("lookup_customer", {"customer_id": "c-2"})
        assert "Alan Turing" in result.content[0].text
    sent = capture.last_call()
    assert "agentguard-proof" in sent.headers
    assert META_KEY.encode() not in sent.content


async def test_every_proof_is_bound_to_the_session_it_travels_in(server):
    capture = Capture(SigningAuth(hmac_signer()))
    async with client(server.url, capture).session("crm") as session:
        await session.call_tool("lookup_customer", {"customer_id": "c-1"})
        sent = capture.last_call()
        proof = json.loads(sent.content)["params"]["_meta"][META_KEY]
        assert proof["sid"] == sent.headers["mcp-session-id"] == capture.session_id()
        assert proof["aud"] == AUDIENCE and proof["name"] == "lookup_customer"


# ------------------------------------------------------------------ each attack


async def test_an_exact_replay_is_refused(server):
    capture = Capture(SigningAuth(hmac_signer()))
    async with client(server.url, capture).session("crm") as session:
        await session.call_tool("send_invoice", {"customer_id": "c-1", "amount_cents": 10})
        sent = capture.last_call()
        assert reason(await post(server.url, sent.content, sent.headers)) == "replay"
        # the legitimate session is unharmed
        ok = await session.call_tool("lookup_customer", {"customer_id": "c-1"})
        assert "Ada Lovelace" in ok.content[0].text


async def test_tampered_arguments_are_refused(server):
    capture = Capture(SigningAuth(hmac_signer()))
    async with client(server.url, capture).session("crm") as session:
        await session.list_tools()
        headers = {"mcp-session-id": capture.session_id(), "mcp-protocol-version": "2025-06-18"}
        original = {"customer_id": "c-1", "amount_cents": 10}
        proof = hmac_signer().proof("send_invoice", original, session_id=capture.session_id())

        def body(arguments: dict) -> bytes:
            return call_body("send_invoice", arguments, proof, 9)

        tampered = await post(server.url, body({**original, "amount_cents": 10_000_000}), headers)
        assert reason(tampered) == "bad_signature"
        # the refusal spent nothing: the request as signed still runs, once
        assert "10 cents sent" in json.dumps(await post(server.url, body(original), headers))
        assert reason(await post(server.url, body(original), headers)) == "replay"


async def test_a_renamed_tool_is_refused(server):
    capture = Capture(SigningAuth(hmac_signer()))
    async with client(server.url, capture).session("crm") as session:
        await session.list_tools()
        sid = capture.session_id()
        proof = hmac_signer().proof("lookup_customer", {"customer_id": "c-1"}, session_id=sid)
        body = call_body("send_invoice", {"customer_id": "c-1"}, proof, 50)
        headers = {"mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
        assert reason(await post(server.url, body, headers)) == "bad_signature"


async def test_a_stale_proof_is_refused(server):
    old = hmac_signer(clock=lambda: time.time() - 3600)
    async with client(server.url, SigningAuth(old)).session("crm") as session:
        assert await refused(session, "lookup_customer", {"customer_id": "c-1"}) == "stale"
        assert len((await session.list_tools()).tools) == 3  # the session lives on


async def test_a_proof_made_for_another_server_is_refused(server):
    other = RequestSigner(HmacKey(HMAC_KID, HMAC_SECRET), audience="mcp://billing")
    async with client(server.url, SigningAuth(other)).session("crm") as session:
        assert await refused(session, "lookup_customer", {"customer_id": "c-1"}) == (
            "binding_mismatch"
        )


async def test_a_proof_made_for_another_session_is_refused(server):
    a, b = Capture(SigningAuth(hmac_signer())), Capture(SigningAuth(hmac_signer()))
    async with (
        client(server.url, a).session("crm") as sa,
        client(server.url, b).session("crm") as sb,
    ):
        await sa.list_tools()
        await sb.list_tools()
        sid_a, sid_b = a.session_id(), b.session_id()
        assert sid_a != sid_b
        proof = hmac_signer().proof("lookup_customer", {"customer_id": "c-1"}, session_id=sid_a)
        body = call_body("lookup_customer", {"customer_id": "c-1"}, proof, 7)
        headers = {"mcp-protocol-version": "2025-06-18"}
        answer = await post(server.url, body, {**headers, "mcp-session-id": sid_b})
        assert reason(answer) == "binding_mismatch"
        # the same, untouched proof still works in its own session: nothing was spent
        answer = await post(server.url, body, {**headers, "mcp-session-id": sid_a})
        assert reason(answer) is None and "Ada Lovelace" in json.dumps(answer)


async def test_an_unknown_key_is_refused(server):
    for key in (HmacKey("k9", HMAC_SECRET), AsymmetricKey.generate()):
        stranger = RequestSigner(key, audience=AUDIENCE)
        async with client(server.url, SigningAuth(stranger)).session("crm") as session:
            assert await refused(session, "lookup_customer", {"customer_id": "c-1"}) == (
                "unknown_key"
            )


async def test_a_wrong_secret_is_refused(server):
    forger = RequestSigner(HmacKey(HMAC_KID, b"\x00" * 32), audience=AUDIENCE)
    async with client(server.url, SigningAuth(forger)).session("crm") as session:
        assert await refused(session, "lookup_customer", {"customer_id": "c-1"}) == "bad_signature"


async def test_a_missing_proof_is_refused_and_the_session_lives_on(server):
    async with client(server.url, None).session("crm") as session:
        assert await refused(
            session, "send_invoice", {"customer_id": "c-1", "amount_cents": 1}
        ) == ("missing_proof")
        tools = await load_mcp_tools(session)
        with pytest.raises(McpError):
            await next(t for t in tools if t.name == "lookup_customer").ainvoke(
                {"customer_id": "c-1"}
            )
        assert len((await session.list_tools()).tools) == 3


# ------------------------------------------------------------------ what the middleware refuses


async def test_bodies_another_parser_could_read_differently_are_refused(server):
    capture = Capture(None)
    async with client(server.url, capture).session("crm") as session:
        await session.list_tools()
        headers = {"mcp-session-id": capture.session_id(), "mcp-protocol-version": "2025-06-18"}
    smuggled = (
        b'{"jsonrpc":"2.0","id":3,"method":"ping","method":"tools/call",'
        b'"params":{"name":"send_invoice","arguments":{"customer_id":"c-1","amount_cents":1}}}'
    )
    answer = await post(server.url, smuggled, headers)
    assert answer["error"]["code"] == -32700
    nan = (
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call",'
        b'"params":{"name":"echo","arguments":{"payload":{"x":NaN}}}}'
    )
    assert (await post(server.url, nan, headers))["error"]["code"] == -32700


async def test_a_batch_with_an_unsigned_call_is_refused_whole(server):
    capture = Capture(None)
    async with client(server.url, capture).session("crm") as session:
        await session.list_tools()
        headers = {"mcp-session-id": capture.session_id(), "mcp-protocol-version": "2025-06-18"}
        body = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "lookup_customer", "arguments": {"customer_id": "c-1"}},
                },
            ]
        )
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                server.url,
                content=body,
                headers={
                    **headers,
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                },
            )
        errors = answer.json()
        assert isinstance(errors, list) and len(errors) == 2
        assert all("error" in e for e in errors)
        assert {e["error"]["data"]["reason"] for e in errors} == {
            "missing_proof",
            "malformed_proof",
        }


async def test_a_call_sent_as_a_notification_is_refused(server):
    body = orjson.dumps(
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "lookup_customer"}}
    )
    assert reason(await post(server.url, body, {})) == "malformed_proof"


async def test_an_oversized_body_is_refused(server):
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"payload":{"x":"'
        + b"a" * (5 * 1024 * 1024)
        + b'"}}}}'
    )
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            server.url, content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == PROOF_ERROR_CODE


async def test_the_signing_key_never_reaches_the_wire_or_the_model(server):
    capture = Capture(SigningAuth(hmac_signer()))
    async with client(server.url, capture).session("crm") as session:
        tools = await load_mcp_tools(session)
        echoed = await next(t for t in tools if t.name == "echo").ainvoke({"payload": {"a": 1}})
    seen = b"".join(r.content + str(r.headers).encode() for r in capture.sent)
    seen += str(echoed).encode() + str([(t.name, t.description, t.args) for t in tools]).encode()
    assert HMAC_SECRET not in seen and HMAC_SECRET.hex().encode() not in seen


def test_signing_auth_signs_whatever_way_the_method_is_spelt():
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools\\/call",'
        b'"params":{"name":"lookup_customer","arguments":{"customer_id":"c-1"}}}'
    )
    request = httpx.Request("POST", "http://127.0.0.1/mcp", content=body)
    signed = next(SigningAuth(hmac_signer()).auth_flow(request))
    sent = json.loads(signed.content)
    assert sent["params"]["_meta"][META_KEY]["name"] == "lookup_customer"
    assert signed.headers["content-length"] == str(len(signed.content))
    untouched = httpx.Request("POST", "http://127.0.0.1/mcp", content=b'{"method":"ping"}')
    assert next(SigningAuth(hmac_signer()).auth_flow(untouched)) is untouched
