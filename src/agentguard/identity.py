"""Where the principal comes from. Only places the host application or server controls:

- `FromContext`: the run context an in-process host passes (`graph.invoke(..., context=...)`)
  or a principal bound with `acting_for(...)`. Do not use it behind `langgraph dev` / a server,
  where the client writes `context`.
- `FromServerAuth`: the user a LangGraph server's auth handler authenticated.
- `FromJWT`: a signed identity token (from your IdP or your backend) verified with PyJWT.

Never tool arguments, never model output.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jwt
from pydantic import ValidationError

from agentguard.context import Principal
from agentguard.errors import IdentityError

_BOUND: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "agentguard_principal", default=None
)


@contextlib.contextmanager
def acting_for(principal: Principal) -> Iterator[Principal]:
    """Bind a principal for calls made outside a LangGraph run (plain tool use, scripts)."""
    if not isinstance(principal, Principal):
        raise IdentityError("acting_for() takes a Principal instance")
    token = _BOUND.set(principal)
    try:
        yield principal
    finally:
        _BOUND.reset(token)


@dataclass(frozen=True)
class CallContext:
    """What a door knows about the call's surroundings; the core reads identity from here."""

    runtime_context: Any = None
    config: Mapping[str, Any] | None = None
    server_user: Any = None
    state: Any = None
    thread_id: str | None = None
    run_id: str | None = None
    on_server: bool = False  # running under LangGraph Server / `langgraph dev`

    @classmethod
    def from_langgraph(
        cls, runtime: Any, config: Mapping[str, Any] | None = None, state: Any = None
    ) -> CallContext:
        """Build from a LangGraph `Runtime`/`ToolRuntime` (either may be None outside a graph)."""
        if config is None:
            config = getattr(runtime, "config", None)
        configurable: Mapping[str, Any] = (config or {}).get("configurable") or {}
        info = getattr(runtime, "execution_info", None)
        server = getattr(runtime, "server_info", None)
        server_user = getattr(server, "user", None) or configurable.get("langgraph_auth_user")
        on_server = server is not None or "langgraph_auth_user" in configurable
        thread_id = getattr(info, "thread_id", None) or configurable.get("thread_id")
        run_id = getattr(info, "run_id", None) or (config or {}).get("run_id")
        return cls(
            runtime_context=getattr(runtime, "context", None),
            config=config,
            server_user=server_user,
            state=state if state is not None else getattr(runtime, "state", None),
            thread_id=str(thread_id) if thread_id is not None else None,
            run_id=str(run_id) if run_id is not None else None,
            on_server=on_server,
        )


@runtime_checkable
class IdentitySource(Protocol):
    """Turns a call's trusted surroundings into a Principal, or raises IdentityError."""

    def resolve(self, ctx: CallContext) -> Principal: ...


def _principal_from_mapping(data: Mapping[str, Any], source: str) -> Principal:
    try:
        return Principal.model_validate(dict(data))
    except ValidationError as exc:
        missing = sorted(
            {".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"}
        )
        bad = sorted({".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] != "missing"})
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if bad:
            parts.append("invalid " + ", ".join(bad))
        raise IdentityError(
            f"incomplete identity from {source}: {'; '.join(parts)}", missing=missing or bad
        ) from None


class FromContext:
    """Principal from the in-process run context (`context=`), or from `acting_for()`.

    Under LangGraph Server or `langgraph dev` the client writes the run context, so there this
    source refuses (use `FromServerAuth` or `FromJWT`) unless `trust_server_context=True`.
    """

    def __init__(
        self,
        key: str = "principal",
        *,
        accept_mappings: bool = True,
        trust_server_context: bool = False,
    ) -> None:
        self.key = key
        self.accept_mappings = accept_mappings
        self.trust_server_context = trust_server_context

    def _lookup(self, context: Any) -> Any:
        if context is None:
            return None
        if isinstance(context, Principal):
            return context
        if isinstance(context, Mapping):
            return context.get(self.key)
        return getattr(context, self.key, None)

    def resolve(self, ctx: CallContext) -> Principal:
        if ctx.on_server and not self.trust_server_context:
            raise IdentityError(
                "on a LangGraph server the run context is written by the client and cannot "
                "carry identity; use FromServerAuth() or FromJWT()",
                missing=["server identity"],
            )
        found = self._lookup(ctx.runtime_context)
        bound = _BOUND.get()
        if found is None and bound is None:
            raise IdentityError(
                f"no principal: the run context has no '{self.key}' and none is bound with "
                "acting_for()",
                missing=["principal"],
            )
        if found is None:
            assert bound is not None
            return bound
        if isinstance(found, Principal):
            principal = found
        elif isinstance(found, Mapping) and self.accept_mappings:
            principal = _principal_from_mapping(found, f"context['{self.key}']")
        else:
            raise IdentityError(
                f"context['{self.key}'] is a {type(found).__name__}, not a Principal",
                missing=["principal"],
            )
        if bound is not None and bound != principal:
            raise IdentityError("conflicting identities: run context and acting_for() differ")
        return principal


UserMapper = Callable[[Any], Mapping[str, Any]]


def _server_user_fields(user: Any) -> Mapping[str, Any]:
    def get(name: str) -> Any:
        try:
            return user[name]
        except (KeyError, TypeError, IndexError):
            return getattr(user, name, None)

    fields: dict[str, Any] = {}
    for key in ("tenant", "role", "team", "agent_id", "client_id", "grants"):
        value = get(key)
        if value is not None:
            fields[key] = value
    ident = get("identity")
    if ident is not None:
        fields["user"] = ident
    perms = get("permissions")
    if perms is not None:
        fields["scopes"] = frozenset(perms)
    return fields


class FromServerAuth:
    """Principal from the user a LangGraph server's `@auth.authenticate` handler returned.

    The default mapping reads `identity` (→ user), `tenant`, `role`, `team`, `permissions`
    (→ scopes) from the user object; pass `mapper` to read other fields.
    """

    def __init__(self, mapper: UserMapper | None = None) -> None:
        self.mapper = mapper or _server_user_fields

    def resolve(self, ctx: CallContext) -> Principal:
        if ctx.server_user is None:
            raise IdentityError(
                "no authenticated server user (is a LangGraph auth handler configured?)",
                missing=["server_user"],
            )
        return _principal_from_mapping(self.mapper(ctx.server_user), "server auth user")


class FromJWT:
    """Principal from a signed identity token found at `context[token_key]`.

    The signature, expiry, issuer and audience are checked with PyJWT; claims map onto the
    principal (`sub` → user, `tenant_claim` → tenant, `role`, `scope`/`scp` → scopes,
    `azp`/`client_id` → client, `agent_id`).
    """

    def __init__(
        self,
        key: Any,
        *,
        algorithms: Sequence[str],
        issuer: str,
        audience: str,
        token_key: str = "identity_token",  # noqa: S107 - a context key, not a secret
        tenant_claim: str = "tenant",
        leeway: float = 30.0,
    ) -> None:
        if not algorithms or any(a.lower() == "none" for a in algorithms):
            raise IdentityError("FromJWT needs explicit signing algorithms ('none' is refused)")
        self.key = key
        self.algorithms = list(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.token_key = token_key
        self.tenant_claim = tenant_claim
        self.leeway = leeway

    def resolve(self, ctx: CallContext) -> Principal:
        context = ctx.runtime_context
        if isinstance(context, Mapping):
            token = context.get(self.token_key)
        else:
            token = getattr(context, self.token_key, None)
        if not isinstance(token, str) or not token:
            raise IdentityError(
                f"no identity token at context['{self.token_key}']", missing=[self.token_key]
            )
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise IdentityError(f"identity token rejected: {exc}", missing=["valid token"])
        fields: dict[str, Any] = {"user": claims.get("sub")}
        if self.tenant_claim in claims:
            fields["tenant"] = claims[self.tenant_claim]
        for name in ("role", "team", "agent_id", "grants"):
            if name in claims:
                fields[name] = claims[name]
        scopes = claims.get("scope", claims.get("scp"))
        if isinstance(scopes, str):
            fields["scopes"] = frozenset(scopes.split())
        elif isinstance(scopes, list):
            fields["scopes"] = frozenset(map(str, scopes))
        client = claims.get("azp", claims.get("client_id"))
        if client is not None:
            fields["client_id"] = client
        return _principal_from_mapping(fields, "identity token")
