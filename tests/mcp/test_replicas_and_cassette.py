"""The example MCP server as it runs in production: replicas, a shared Redis, a recorded session.

Replicas: two processes of `examples/mcp_server.py` behind no load balancer share one real
Redis for their replay record. One signed `tools/call`, sent 50 times at once to both, runs
exactly once; a replay store that cannot answer means every call is refused ("unavailable").

Cassette: the suite records a real client session (initialize, tools/list, two signed calls)
with vcrpy, stops the server, and plays the session back offline. Every replayed request
carries a new proof (nonce, time, signature), so the matcher ignores exactly those three; it
must still refuse a request whose tool, arguments or proof binding differ from the recording.

How vcrpy copes with the SDK's streaming client (vcrpy 9.4, `vcr/stubs/httpx_stubs.py`): it
patches `httpx.AsyncHTTPTransport.handle_async_request`, below `client.stream(...)`. A recorded
request has its whole response read before the client sees it, and a played one gets its body
as an `httpx.ByteStream`, so `stream=True` works as long as each response ends; with
`--json-response` every POST answer is one finite JSON body. The exception is the standalone
GET stream the SDK opens after `notifications/initialized`: an SSE stream that stays open until
the session ends. vcrpy can only store it once it ends, and by then the client has cancelled
it (it ends when the closing DELETE terminates the session, and the client cancels its tasks
right after that DELETE), so it is normally absent from the cassette. On playback it then finds
no match and vcrpy raises inside the SDK's `handle_get_stream`, which treats any error as a lost
stream (logs, waits 1 s, retries once); that touches no network, and the stream only carries
server-initiated messages, which this server never sends. Should a GET ever be recorded, the
matcher matches it by method and path (it has no body), as it does the DELETE.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import vcr
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.matchers import requests_match
from vcr.request import Request as VcrRequest

from agentguard.mcp import META_KEY, PROOF_ERROR_CODE, HmacKey, RequestSigner, SigningAuth

from ..services import RedisServer
from .servers import AUDIENCE, HMAC_KID, HMAC_SECRET, HttpServer, http_server, server_env

HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2025-06-18",
}
CONCURRENT = 50


@contextlib.contextmanager
def replicas(*flags: str, env: dict[str, str] | None = None) -> Iterator[list[HttpServer]]:
    """Two `http_server`s, started side by side (each start is a second of imports)."""
    managers = [http_server(*flags, env=env) for _ in range(2)]
    with ThreadPoolExecutor(len(managers)) as pool:
        started = [pool.submit(m.__enter__) for m in managers]
    with contextlib.ExitStack() as stack:
        for manager, future in zip(managers, started, strict=True):
            if future.exception() is None:
                stack.push(manager.__exit__)
        yield [future.result() for future in started]


def signer() -> RequestSigner:
    return RequestSigner(HmacKey(HMAC_KID, HMAC_SECRET), audience=AUDIENCE)


def signed_call(name: str, arguments: dict[str, Any], request_id: int = 1) -> bytes:
    """One raw JSON-RPC `tools/call` body with a fresh proof (no session: sid is null)."""
    proof = signer().proof(name, arguments)
    params = {"name": name, "arguments": arguments, "_meta": {META_KEY: proof}}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return json.dumps(message).encode()


def reason(answer: dict[str, Any]) -> str | None:
    error = answer.get("error")
    return error["data"]["reason"] if error is not None else None


async def post_all(urls: list[str], body: bytes) -> list[httpx.Response]:
    """POST `body` to `urls` all at once."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(u, content=body, headers=HEADERS) for u in urls))


# ------------------------------------------------------------------------------- replicas


@pytest.mark.services
async def test_one_signed_call_runs_once_across_two_replicas_sharing_redis(
    redis_url: str,
) -> None:
    env = server_env(redis_url=redis_url)
    with replicas("--stateless", "--json-response", env=env) as (one, two):
        body = signed_call("lookup_customer", {"customer_id": "c-1"})
        urls = [(one, two)[i % 2].url for i in range(CONCURRENT)]
        responses = await post_all(urls, body)

    assert [r.status_code for r in responses] == [200] * CONCURRENT
    answers = [r.json() for r in responses]
    assert all(a["id"] == 1 for a in answers)
    ran = [i for i, a in enumerate(answers) if "result" in a]
    assert len(ran) == 1, answers
    assert "Ada Lovelace" in responses[ran[0]].text
    assert answers[ran[0]]["result"]["isError"] is False
    refused = [a for a in answers if "error" in a]
    assert len(refused) == CONCURRENT - 1
    assert {reason(a) for a in refused} == {"replay"}
    assert {a["error"]["code"] for a in refused} == {PROOF_ERROR_CODE}
    # The replica that lost refused every one of its 25 copies: it saw the other's nonce.
    loser = 1 - ran[0] % 2
    assert all(reason(answers[i]) == "replay" for i in range(loser, CONCURRENT, 2))
    # The spent nonce is in the shared Redis, kept for 2 * max_skew + 1 seconds.
    nonce = json.loads(body)["params"]["_meta"][META_KEY]["nonce"]
    client = redis.Redis.from_url(redis_url)
    try:
        ttl = client.pttl(f"agentguard:replay:mcp:{AUDIENCE}:{HMAC_KID}:{nonce}")
    finally:
        client.close()
    assert 100_000 < ttl <= 121_000


async def test_replicas_without_a_shared_store_each_run_the_same_call() -> None:
    """The control: with per-process replay records the same proof runs once per replica."""
    with replicas("--stateless", "--json-response") as (one, two):
        body = signed_call("lookup_customer", {"customer_id": "c-1"})
        urls = [(one, two)[i % 2].url for i in range(10)]
        answers = [r.json() for r in await post_all(urls, body)]
    assert sum("result" in a for a in answers) == 2
    assert [reason(a) for a in answers].count("replay") == 8


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A local port that is bound but not listening: every connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def post_one(url: str, body: bytes) -> dict[str, Any]:
    response = httpx.post(url, content=body, headers=HEADERS, timeout=60)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def test_a_replica_whose_redis_is_unreachable_refuses_every_call() -> None:
    with (
        refusing_port() as port,
        http_server(
            "--stateless",
            "--json-response",
            env=server_env(redis_url=f"redis://127.0.0.1:{port}/0"),
        ) as srv,
    ):
        started = time.monotonic()
        answer = post_one(srv.url, signed_call("lookup_customer", {"customer_id": "c-1"}))
        assert time.monotonic() - started < 10
        # A call without a valid proof is still refused for what it is, before Redis is asked.
        unsigned = json.loads(signed_call("lookup_customer", {"customer_id": "c-1"}, 2))
        del unsigned["params"]["_meta"]
        missing = post_one(srv.url, json.dumps(unsigned).encode())
    assert reason(answer) == "unavailable"
    assert answer["error"]["code"] == PROOF_ERROR_CODE
    assert "Ada Lovelace" not in json.dumps(answer)
    assert reason(missing) == "missing_proof"


@pytest.mark.services
def test_a_replica_whose_redis_goes_away_refuses_every_call() -> None:
    server = RedisServer()
    try:
        server.start()
        env = server_env(redis_url=server.url)
        with http_server("--stateless", "--json-response", env=env) as srv:
            before = post_one(srv.url, signed_call("lookup_customer", {"customer_id": "c-1"}))
            server.stop_server()
            during = post_one(srv.url, signed_call("lookup_customer", {"customer_id": "c-1"}))
            # The next call, which has to reconnect rather than reuse a dead connection, too.
            again = post_one(
                srv.url, signed_call("send_invoice", {"customer_id": "c-1", "amount_cents": 5})
            )
    finally:
        server.stop()
    assert "Ada Lovelace" in json.dumps(before["result"])
    assert reason(during) == "unavailable"
    assert reason(again) == "unavailable"


# ------------------------------------------------------------------------------- cassette


FRESH = frozenset({"nonce", "iat", "sig", "jws"})  # what is new in every proof


def _jsonrpc(body: bytes | str | None) -> Any:
    """The JSON-RPC message(s) of a request body, the proof's fresh parts removed.

    Raw text if the body is not JSON. What stays of an HMAC proof still has to match: its
    key, audience, session, method, tool and arguments digest. A JWS proof keeps only `v`,
    enough to tell a signed request from an unsigned one.
    """
    if not body:
        return None  # GET (standalone SSE stream) and DELETE (session end) have no body
    try:
        message = json.loads(body)
    except ValueError:
        return body

    def strip(item: Any) -> Any:
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            return item
        params = dict(item["params"])
        meta = params.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(META_KEY), dict):
            # Anything else the client puts in _meta (a progress token, say) must match.
            stable = {k: v for k, v in meta[META_KEY].items() if k not in FRESH}
            params["_meta"] = {**meta, META_KEY: stable}
        return {**item, "params": params}

    return [strip(m) for m in message] if isinstance(message, list) else strip(message)


def jsonrpc_without_proof(r1: VcrRequest, r2: VcrRequest) -> None:
    """Same JSON-RPC method, params and id, the nonce, time and signature of a proof aside.

    The id is compared too, not ignored: `ClientSession` numbers its requests 0, 1, 2, ... in
    every session, so a replay of the same session sends the same ids, and the played answer
    must carry the id of the request it answers or the client could not route it.
    """
    one, two = _jsonrpc(r1.body), _jsonrpc(r2.body)
    assert one == two, f"{one!r} != {two!r}"


def cassette_vcr() -> vcr.VCR:
    """Matches on HTTP method and path (not host or port) and the JSON-RPC content."""
    recorder = vcr.VCR(match_on=["method", "scheme", "path", "query", "jsonrpc"])
    recorder.register_matcher("jsonrpc", jsonrpc_without_proof)
    return recorder


class KeepingSigner(RequestSigner):
    """A `RequestSigner` that keeps the proofs it makes, to compare runs."""

    def __init__(self) -> None:
        super().__init__(HmacKey(HMAC_KID, HMAC_SECRET), audience=AUDIENCE)
        self.made: list[dict[str, Any]] = []

    def proof(self, name: str, arguments: Any, **kwargs: Any) -> dict[str, Any]:
        made = super().proof(name, arguments, **kwargs)
        self.made.append(made)
        return made


async def client_session(url: str, signer: RequestSigner, customer: str = "c-1") -> list[Any]:
    """What a client sees of one full session: the tools and two tool results.

    `streamable_http_client` with an `httpx.AsyncClient(auth=SigningAuth(...))` is the current
    form of the deprecated `streamablehttp_client(url, auth=SigningAuth(...))`.
    """
    async with (
        httpx.AsyncClient(auth=SigningAuth(signer), timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()
        lookup = await session.call_tool("lookup_customer", {"customer_id": customer})
        invoice = await session.call_tool(
            "send_invoice", {"customer_id": customer, "amount_cents": 1200, "memo": "May"}
        )
    return [
        sorted(t.name for t in tools.tools),
        lookup.isError,
        lookup.structuredContent,
        invoice.isError,
        invoice.structuredContent,
    ]


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    inner = getattr(exc, "exceptions", None)
    if inner is None:
        yield exc
        return
    for one in inner:
        yield from _leaves(one)


EXPECTED_CALLS = [
    ("POST", "initialize"),
    ("POST", "notifications/initialized"),
    ("POST", "tools/list"),
    ("POST", "tools/call"),
    ("POST", "tools/call"),
    ("DELETE", None),
]
SIGNED = ["lookup_customer", "send_invoice"]


async def test_a_recorded_session_replays_offline_with_new_proofs(tmp_path: Path) -> None:
    cassette = tmp_path / "mcp.yaml"
    recorder = cassette_vcr()

    recording = KeepingSigner()
    with http_server("--json-response") as srv:
        url = srv.url
        with recorder.use_cassette(str(cassette), record_mode="all"):
            recorded = await client_session(url, recording)
    assert srv.process.poll() is not None  # the server is gone from here on
    assert recorded == [
        ["echo", "lookup_customer", "send_invoice"],
        False,
        {"id": "c-1", "name": "Ada Lovelace", "tier": "gold"},
        False,
        {"result": "invoice for 1200 cents sent to c-1 (3 char memo)"},
    ]

    replaying = KeepingSigner()
    with recorder.use_cassette(str(cassette), record_mode="none") as played:
        replayed = await client_session(url, replaying)
        assert played.all_played
        assert played.play_count == len(played)
    assert replayed == recorded

    # The cassette holds the recorded session, proofs included, and no secret.
    stored = cassette.read_bytes()
    text = stored.decode()
    calls = [
        (r.method, (_jsonrpc(r.body) or {}).get("method"))
        for r in played.requests
        if r.method != "GET"  # the standalone SSE stream: see the module docstring
    ]
    assert calls == EXPECTED_CALLS
    assert len(played) - len(calls) <= 1
    assert text.count(META_KEY) == 2
    sent, resent = recording.made, replaying.made
    assert [p["name"] for p in sent] == [p["name"] for p in resent] == SIGNED
    for proof in sent:
        assert proof["nonce"] in text and proof["sig"] in text
    for proof in resent:  # new proofs every time, which matched all the same
        assert proof["nonce"] not in text and proof["sig"] not in text
    assert {p["sid"] for p in sent} == {p["sid"] for p in resent} != {None}
    for secret in (
        HMAC_SECRET,
        HMAC_SECRET.hex().encode(),
        HMAC_SECRET.hex().upper().encode(),
        base64.b64encode(HMAC_SECRET).rstrip(b"="),
        base64.urlsafe_b64encode(HMAC_SECRET).rstrip(b"="),
    ):
        assert secret not in stored

    # The matcher is not vacuous: other arguments (or another customer) find no recording.
    with (
        recorder.use_cassette(str(cassette), record_mode="none"),
        pytest.raises(Exception) as refused,
    ):
        await client_session(url, KeepingSigner(), customer="c-2")
    leaves = list(_leaves(refused.value))
    assert any(isinstance(e, CannotOverwriteExistingCassetteException) for e in leaves), leaves


def test_the_matcher_ignores_only_the_proof_and_the_host() -> None:
    recorder = cassette_vcr()
    matchers = [recorder.matchers[name] for name in recorder.match_on]

    def request(body: Any, method: str = "POST", port: int = 1) -> VcrRequest:
        content = json.dumps(body) if body is not None else b""
        return VcrRequest(method, f"http://127.0.0.1:{port}/mcp", content, {})

    def matches(one: VcrRequest, two: VcrRequest) -> bool:
        return bool(requests_match(one, two, matchers))

    invoice = {"customer_id": "c-1", "amount_cents": 5}

    def call(arguments: dict[str, Any], name: str = "send_invoice", request_id: int = 1) -> Any:
        return json.loads(signed_call(name, arguments, request_id))

    first, second = call(invoice), call(invoice)
    assert first != second  # new nonce, new signature
    assert matches(request(first), request(second, port=2))

    unsigned = call(invoice)
    del unsigned["params"]["_meta"]
    with_token = call(invoice)
    with_token["params"]["_meta"]["progressToken"] = 7
    other_session = call(invoice)
    other_session["params"]["_meta"][META_KEY]["sid"] = "another-session"
    for different in (
        call({**invoice, "amount_cents": 6}),
        call({"customer_id": "c-1"}, "lookup_customer"),
        call(invoice, request_id=2),
        unsigned,  # a client that stopped signing does not replay
        other_session,
        with_token,
    ):
        assert not matches(request(first), request(different))
    assert not matches(request(first), request(first, method="PUT"))

    assert matches(request(None, "GET"), request(None, "GET", port=2))
    assert matches(request(None, "DELETE"), request(None, "DELETE", port=2))
    assert not matches(request(None, "GET"), request(None, "DELETE"))
    assert not matches(request(None, "DELETE"), request(first, "DELETE"))
