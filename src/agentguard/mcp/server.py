"""Server doors: verify proofs before an MCP server built with the official SDK acts.

- `ProofMiddleware` wraps the streamable HTTP ASGI app (`FastMCP.streamable_http_app()`). It
  reads each POST body once, checks every message whose method needs a proof, and answers a
  refusal itself as HTTP 200 with a JSON-RPC error (`error.data.reason`): an mcp 1.x client
  turns that into an `McpError` for that one call and its session lives on, where a 4xx would
  end it.
- `protect_tools` wraps the `tools/call` handler of a `FastMCP` or low-level `Server`, for
  stdio (it works on any transport; use one door or the other, not both, or every call would
  spend its nonce twice).

Both refuse anything they cannot check: a body that is not strict JSON (duplicate keys, NaN),
a protected call without a name, a body over the size limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from agentguard._strict_json import loads_strict
from agentguard.errors import ConfigurationError
from agentguard.mcp.proof import HEADER, ProofError, Reason, decode_header
from agentguard.mcp.verifier import ProofVerifier, VerifiedRequest

__all__ = ["PROOF_ERROR_CODE", "ProofMiddleware", "protect_tools"]

log = logging.getLogger("agentguard.mcp")

PROOF_ERROR_CODE = -32001  # implementation-defined server error: "request proof refused"
_PARSE_ERROR = -32700

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Unreadable(Exception):
    pass


def strict_json(body: bytes) -> Any:
    """Parse JSON the way no other parser could read differently (no duplicates, no NaN)."""
    try:
        return loads_strict(body)
    except (ValueError, RecursionError):
        raise _Unreadable("not strict JSON") from None


def error_message(request_id: Any, reason: Reason, message: str) -> dict[str, Any]:
    """The JSON-RPC error a refused request gets."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": PROOF_ERROR_CODE,
            "message": f"request refused ({reason}): {message}",
            "data": {"reason": reason},
        },
    }


async def _verify(verifier: ProofVerifier, **kwargs: Any) -> VerifiedRequest:
    def run() -> VerifiedRequest:
        try:
            return verifier.verify(**kwargs)
        except ProofError:
            raise
        except Exception as exc:  # the audit log or another backend failed: refuse
            log.error("agentguard.mcp: verification failed: %s", type(exc).__name__)
            raise ProofError("unavailable", "the request could not be verified") from None

    if verifier.blocking:
        return await anyio.to_thread.run_sync(run)
    return run()


class ProofMiddleware:
    """ASGI middleware for MCP over streamable HTTP: no valid proof, no call."""

    def __init__(
        self, app: ASGIApp, verifier: ProofVerifier, *, max_body_bytes: int = 4 * 1024 * 1024
    ) -> None:
        if not isinstance(verifier, ProofVerifier):
            raise ConfigurationError("ProofMiddleware needs a ProofVerifier")
        self.app = app
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = await self._body(receive)
        if body is None:
            await _answer(send, 413, error_message(None, "malformed_proof", "body too large"))
            return
        refusal = await self._refusal(scope, body)
        if refusal is not None:
            await _answer(send, 200, refusal)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refusal(self, scope: Scope, body: bytes) -> Any:
        """None to let the request through, or the JSON-RPC answer refusing it."""
        try:
            message = strict_json(body)
        except _Unreadable:
            return {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": _PARSE_ERROR, "message": "Parse error: not strict JSON"},
            }
        headers = _headers(scope)
        session_id = headers.get("mcp-session-id")
        raw_header = headers.get(HEADER)
        batch = isinstance(message, list)
        items = message if batch else [message]
        errors: list[dict[str, Any]] = []
        refused = False
        for item in items:
            if not isinstance(item, dict):
                continue  # the SDK refuses it; no call can run from it
            request_id = item.get("id")
            try:
                if not self.verifier.requires_proof(str(item.get("method"))):
                    errors.append(_cancelled(request_id))
                    continue
                if "id" not in item:
                    raise ProofError("malformed_proof", "a call must be a request, with an id")
                header_proof = None
                if raw_header is not None:
                    if batch:
                        raise ProofError("malformed_proof", "a header proof needs a single message")
                    header_proof = decode_header(raw_header)
                params = item.get("params")
                if not isinstance(params, dict) or not isinstance(params.get("name"), str):
                    raise ProofError("malformed_proof", "the call has no tool name")
                arguments = params.get("arguments")
                if arguments is not None and not isinstance(arguments, dict):
                    raise ProofError("malformed_proof", "the call's arguments are not an object")
                meta = params.get("_meta")
                await _verify(
                    self.verifier,
                    method=item["method"],
                    name=params["name"],
                    arguments=arguments,
                    meta=meta if isinstance(meta, dict) else None,
                    session_id=session_id,
                    header_proof=header_proof,
                    request_id=request_id,
                )
                errors.append(_cancelled(request_id))
            except ProofError as exc:
                refused = True
                errors.append(error_message(request_id, exc.reason, str(exc)))
        if not refused:
            return None
        if not batch:
            return errors[0]
        return errors  # a batch with one refused call is refused whole: nothing in it runs


def _cancelled(request_id: Any) -> dict[str, Any]:
    return error_message(request_id, "malformed_proof", "another request in the batch was refused")


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        if name in out:  # a repeated binding header is ambiguous: keep a value that never matches
            out[name] = "\x00ambiguous"
            continue
        out[name] = raw_value.decode("latin-1")
    return out


async def _answer(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def protect_tools(server: Any, verifier: ProofVerifier) -> None:
    """Verify the proof of every `tools/call` a `FastMCP` or low-level `Server` handles.

    Call it after the tools handler is registered (a `FastMCP` has one from the start; a
    low-level `Server` once `@server.call_tool()` has run).
    """
    from mcp import types
    from mcp.shared.exceptions import McpError

    low = getattr(server, "_mcp_server", server)
    handlers = getattr(low, "request_handlers", None)
    if not isinstance(handlers, dict):
        raise ConfigurationError("protect_tools needs a FastMCP or a low-level mcp Server")
    inner = handlers.get(types.CallToolRequest)
    if inner is None:
        raise ConfigurationError("the server has no tools/call handler to protect yet")
    if getattr(inner, "__agentguard_protected__", False):
        raise ConfigurationError("this server's tools are already protected")

    async def verified(request: types.CallToolRequest) -> types.ServerResult:
        params = request.params
        meta = params.meta.model_dump(by_alias=True) if params.meta is not None else None
        try:
            http_request = low.request_context.request
        except LookupError:
            http_request = None
        headers = getattr(http_request, "headers", None)
        session_id = headers.get("mcp-session-id") if headers is not None else None
        raw_header = headers.get(HEADER) if headers is not None else None
        try:
            await _verify(
                verifier,
                method="tools/call",
                name=params.name,
                arguments=params.arguments,
                meta=meta,
                session_id=session_id,
                header_proof=decode_header(raw_header) if raw_header is not None else None,
                request_id=low.request_context.request_id,
            )
        except ProofError as exc:
            payload = error_message(None, exc.reason, str(exc))["error"]
            raise McpError(types.ErrorData(**payload)) from None
        result: types.ServerResult = await inner(request)
        return result

    verified.__agentguard_protected__ = True  # type: ignore[attr-defined]
    handlers[types.CallToolRequest] = verified
