"""Demo auth handler for `langgraph dev` (see `langgraph.json`).

DEMO ONLY: bearer tokens are looked up in a static table. A real deployment verifies a signed
token (e.g. a JWT from your identity provider) and builds the same user dict from its claims.
The user dict is what `agentguard.FromServerAuth()` reads: `identity` -> user, `tenant`, `role`,
`permissions` -> scopes.
"""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

auth = Auth()

DEMO_TOKENS: dict[str, dict[str, Any]] = {
    "alice-demo-token": {
        "identity": "alice",
        "tenant": "acme",
        "role": "employee",
        "permissions": ["contacts:read", "emails:send"],
    },
    "dana-demo-token": {
        "identity": "dana",
        "tenant": "globex",
        "role": "admin",
        "permissions": ["contacts:read", "contacts:export", "contacts:write", "emails:send"],
    },
}


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Map `Authorization: Bearer <token>` to a user; anything else is a 401."""
    scheme, _, token = (authorization or "").partition(" ")
    user = DEMO_TOKENS.get(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="invalid or missing token")
    return {**user, "permissions": list(user["permissions"])}  # type: ignore[return-value]


@auth.on.threads
async def owner_only(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, Any]:
    """Threads belong to whoever created them: stamp the owner, and filter every access by it."""
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    if metadata is None:
        value["metadata"] = metadata = {}
    metadata.update(filters)
    return filters


if __name__ == "__main__":
    print("Demo tokens for `langgraph dev` (send as `Authorization: Bearer <token>`):")
    for token, user in DEMO_TOKENS.items():
        print(f"  {token}: {user['identity']} ({user['tenant']}, {user['role']})")
