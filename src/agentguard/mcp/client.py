"""Client doors: sign every MCP request that must carry a proof, on any transport.

- `SigningAuth`, an `httpx.Auth`, for streamable HTTP (and SSE): it sees the exact bytes and
  the `Mcp-Session-Id` of each POST, adds the proof to `params._meta` (and, if asked, to the
  `AgentGuard-Proof` header) and binds it to the session. Hand it to `langchain-mcp-adapters`
  as a connection's `"auth"`, or to `streamablehttp_client(auth=...)`.
- `signed_session`, a proxy around an initialized `mcp.ClientSession`, for stdio (and any
  transport): `call_tool` goes out with the proof in `meta`. Give it to `load_mcp_tools`.

The key lives in the signer, outside anything a model sees: tool descriptions, arguments and
results never carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

from agentguard.errors import ConfigurationError
from agentguard.mcp.proof import HEADER, META_KEY, encode_header
from agentguard.mcp.signer import RequestSigner

if TYPE_CHECKING:
    from mcp import ClientSession

__all__ = ["SigningAuth", "signed_session"]

_SESSION_HEADER = "mcp-session-id"


class SigningAuth(httpx.Auth):
    """Adds a fresh proof to each JSON-RPC request whose method needs one.

    `place` picks where the proof travels: `"meta"` (default, `params._meta`), `"header"`, or
    `"both"`. A body this auth cannot read as JSON-RPC is sent unchanged only if it names no
    method that needs a proof; it is never silently sent unsigned when it does.
    """

    requires_request_body = True

    def __init__(
        self,
        signer: RequestSigner,
        *,
        place: Literal["meta", "header", "both"] = "meta",
        methods: Iterable[str] = ("tools/call",),
    ) -> None:
        if place not in ("meta", "header", "both"):
            raise ConfigurationError("place must be 'meta', 'header' or 'both'")
        self._signer = signer
        self._place = place
        self._methods = frozenset(methods)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.method == "POST" and request.content:
            request = self._signed(request)
        yield request

    def _signed(self, request: httpx.Request) -> httpx.Request:
        content = request.content
        if b"\\" not in content and not any(m.encode() in content for m in self._methods):
            return request  # initialize, notifications, list calls: nothing to sign
        try:
            message = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise ConfigurationError("cannot sign a request body that is not JSON") from None
        session_id = request.headers.get(_SESSION_HEADER)
        batch = isinstance(message, list)
        items = message if batch else [message]
        proofs = [p for p in (self._sign_message(m, session_id) for m in items) if p is not None]
        if not proofs:
            return request
        if batch and self._place != "meta":
            raise ConfigurationError("a header proof can only sign a single JSON-RPC message")
        headers = httpx.Headers(request.headers)
        headers.pop("content-length", None)
        if self._place != "meta":
            headers[HEADER] = encode_header(proofs[0])
        return httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=orjson.dumps(message),
            extensions=request.extensions,
        )

    def _sign_message(self, message: Any, session_id: str | None) -> dict[str, Any] | None:
        if not isinstance(message, dict) or message.get("method") not in self._methods:
            return None
        params = message.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            raise ConfigurationError(f"cannot sign a {message['method']} request without a name")
        proof = self._signer.proof(
            params["name"],
            params.get("arguments"),
            session_id=session_id,
            method=message["method"],
        )
        if self._place != "header":
            meta = params.get("_meta")
            params["_meta"] = {**(meta if isinstance(meta, dict) else {}), META_KEY: proof}
        return proof


class _SignedSession:
    """Delegates to a `ClientSession`; `call_tool` carries a proof in `_meta`."""

    def __init__(
        self,
        session: ClientSession,
        signer: RequestSigner,
        session_id: Callable[[], str | None] | None,
    ) -> None:
        self._session = session
        self._signer = signer
        self._session_id = session_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: timedelta | None = None,
        progress_callback: Any = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        from mcp import types

        # Sign the arguments exactly as the SDK will serialize them.
        wire = types.CallToolRequestParams(name=name, arguments=arguments).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        sent = wire.get("arguments")
        sid = self._session_id() if self._session_id is not None else None
        proof = self._signer.proof(name, sent, session_id=sid)
        return await self._session.call_tool(
            name,
            sent,
            read_timeout_seconds=read_timeout_seconds,
            progress_callback=progress_callback,
            meta={**(meta or {}), META_KEY: proof},
        )


def signed_session(
    session: ClientSession,
    signer: RequestSigner,
    *,
    session_id: Callable[[], str | None] | None = None,
) -> ClientSession:
    """`session`, but every `call_tool` carries a fresh proof.

    Over streamable HTTP pass the transport's `get_session_id` as `session_id` so the proof is
    bound to the session (or use `SigningAuth`, which reads it from each request).
    """
    return _SignedSession(session, signer, session_id)  # type: ignore[return-value]
