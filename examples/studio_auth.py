"""Demo auth handler for `langgraph dev` (see `langgraph.json`).

DEMO ONLY: bearer tokens are looked up in a static table. A real deployment verifies a signed
token (e.g. a JWT from your identity provider) and builds the same user dict from its claims.
The user dict is what `agentguard.FromServerAuth()` reads: `identity` -> user, `tenant`, `role`,
`team`, `permissions` -> scopes. The graphs' guard and the memory store
(`examples/studio_store.py`) both take the principal from it, never from the run `context`.
"""

from __future__ import annotations

from typing import Any, cast

from langgraph_sdk import Auth

auth = Auth()

DEMO_TOKENS: dict[str, dict[str, Any]] = {
    "alice-demo-token": {
        "identity": "alice",
        "tenant": "acme",
        "team": "sales",
        "role": "employee",
        "permissions": ["contacts:read", "emails:send"],
    },
    "bob-demo-token": {  # alice's teammate: same tenant, same team, his own user memory
        "identity": "bob",
        "tenant": "acme",
        "team": "sales",
        "role": "employee",
        "permissions": ["contacts:read", "emails:send"],
    },
    "dana-demo-token": {
        "identity": "dana",
        "tenant": "globex",
        "team": "ops",
        "role": "admin",
        "permissions": ["contacts:read", "contacts:export", "contacts:write", "emails:send"],
    },
    "alice-globex-demo-token": {  # another "alice", in another tenant: shares nothing
        "identity": "alice",
        "tenant": "globex",
        "team": "ops",
        "role": "employee",
        "permissions": ["contacts:read"],
    },
}

#: The first label of every store namespace: the scope `agentguard.memory.ScopedStore` maps
#: to the caller's own user, team or tenant.
MEMORY_SCOPES = ("user", "team", "tenant")


def _field(user: Any, name: str) -> Any:
    """A field of the authenticated user (the server hands handlers a dict-like proxy)."""
    try:
        return user[name]
    except (KeyError, TypeError):
        return getattr(user, name, None)


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Map `Authorization: Bearer <token>` to a user; anything else is a 401."""
    scheme, _, token = (authorization or "").partition(" ")
    user = DEMO_TOKENS.get(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="invalid or missing token")
    return cast(Auth.types.MinimalUserDict, {**user, "permissions": list(user["permissions"])})


@auth.on.threads
async def owner_only(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, Any]:
    """Threads belong to whoever created them: stamp owner and tenant, filter every access by
    both (user ids are only unique within a tenant). A user without a tenant (LangGraph's
    Studio user) gets the empty tenant, which no real user has."""
    filters = {"owner": ctx.user.identity, "tenant": str(_field(ctx.user, "tenant") or "")}
    metadata = value.setdefault("metadata", {})
    if metadata is None:
        value["metadata"] = metadata = {}
    metadata.update(filters)
    return filters


@auth.on.store
async def scoped_memory(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Refuse, with a clear 403, store requests the scoped store would refuse anyway.

    The store (`GuardedStore`) maps `("user", ...)`, `("team", ...)` and `("tenant", ...)` to
    the caller's own memory and enforces that itself; this handler only turns the obvious
    mistakes into a client error instead of a server error. Listing namespaces without a
    prefix is fine: it lists the caller's own scopes.
    """
    if not _field(ctx.user, "tenant"):
        raise Auth.exceptions.HTTPException(
            status_code=403, detail="memory needs a user with a tenant"
        )
    namespace = value.get("namespace")
    if namespace is None and ctx.action == "list_namespaces":
        return None
    if not namespace or namespace[0] not in MEMORY_SCOPES:
        raise Auth.exceptions.HTTPException(
            status_code=403,
            detail=f"a memory namespace starts with its scope, one of {list(MEMORY_SCOPES)}",
        )
    if namespace[0] == "team" and not _field(ctx.user, "team"):
        raise Auth.exceptions.HTTPException(status_code=403, detail="you have no team")
    return None


if __name__ == "__main__":
    print("Demo tokens for `langgraph dev` (send as `Authorization: Bearer <token>`):")
    for token, user in DEMO_TOKENS.items():
        print(f"  {token}: {user['identity']} ({user['tenant']}/{user['team']}, {user['role']})")
