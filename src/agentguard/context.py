"""Who the agent acts for. Built by the host application or a server's auth handler, never by
the model: nothing here is ever read from tool arguments or model output."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# Printable, no control or format characters, bounded: identity strings end up in audit logs
# and namespaces, so a newline or a bidi override there is an attack, not a name.
_IDENT_RE = re.compile(r"^[^\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+$")

Ident = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_IDENT_RE.pattern)]


class Delegation(BaseModel):
    """Who handed authority to whom: the acting agent works for `on_behalf_of`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_behalf_of: Ident
    delegated_by: Ident | None = None
    chain: tuple[Ident, ...] = ()
    scopes: frozenset[str] | None = None
    expires_at: float | None = None


class Principal(BaseModel):
    """The trusted identity every decision is made for.

    `scopes`, when given, narrows what the role grants (a token can take rights away, never add
    them). `grants` lists, per resource type, the ids this principal may touch (`"*"` for all
    of that type in its tenant).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: Ident
    user: Ident
    role: Ident
    team: Ident | None = None
    scopes: frozenset[str] | None = None
    agent_id: Ident | None = None
    client_id: Ident | None = None
    session_id: Ident | None = None
    thread_id: Ident | None = None
    grants: Mapping[str, frozenset[str]] = Field(default_factory=dict)
    delegation: Delegation | None = None
    attributes: Mapping[str, Any] = Field(default_factory=dict)

    @field_validator("grants")
    @classmethod
    def _freeze_grants(cls, v: Mapping[str, Any]) -> Mapping[str, frozenset[str]]:
        return {str(k): frozenset(vals) for k, vals in v.items()}

    def audit_fields(self) -> dict[str, str | None]:
        """The identity columns every audit event carries."""
        return {
            "tenant": self.tenant,
            "user": self.user,
            "agent": self.agent_id,
            "client": self.client_id,
        }
