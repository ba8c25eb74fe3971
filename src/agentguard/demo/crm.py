"""The demo's toolset: an in-memory CRM with two tenants and an outbox."""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import BaseTool, tool

from agentguard.checks.authz import ResourceInfo

CONTACTS = {
    "c-101": {"tenant": "acme", "name": "Bob Lee", "email": "bob.lee@acme.example"},
    "c-102": {"tenant": "acme", "name": "Carol Diaz", "email": "carol@acme.example"},
    "c-900": {"tenant": "globex", "name": "Dana Wu", "email": "dana@globex.example"},
}
OUTBOX: list[dict[str, str]] = []


def contact_owner(contact_id: str) -> ResourceInfo | None:
    """Resolver the guard uses to learn which tenant a contact lives in."""
    row = CONTACTS.get(contact_id)
    return ResourceInfo(tenant=row["tenant"]) if row else None


@tool
def search_contacts(query: str, limit: int = 5) -> list[dict[str, str]]:
    """Search contacts by name. Returns id, name and email."""
    hits = [
        {"id": cid, "name": c["name"], "email": c["email"]}
        for cid, c in CONTACTS.items()
        if c["tenant"] == "acme" and query.lower() in c["name"].lower()
    ]
    return hits[:limit]


@tool
def get_contact(contact_id: str) -> dict[str, str]:
    """Fetch one contact by id."""
    return dict(CONTACTS[contact_id])


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    OUTBOX.append({"to": to, "subject": subject, "body": body})
    return f"queued message #{len(OUTBOX)} to {to}: {subject}"


@tool
def export_contacts(format: Literal["csv", "json"]) -> str:
    """Export every contact."""
    return "id,name,email\n" + "\n".join(
        f"{k},{v['name']},{v['email']}" for k, v in CONTACTS.items()
    )


@tool
def delete_contact(contact_id: str) -> str:
    """Delete a contact."""
    CONTACTS.pop(contact_id, None)
    return "deleted"


@tool
def wire_funds(iban: str, amount_cents: int) -> str:
    """Move money."""
    return "sent"


def all_tools() -> list[BaseTool]:
    return [search_contacts, get_contact, send_email, export_contacts, delete_contact, wire_funds]
