"""Shared fixtures: a small CRM toolset whose calls are counted, a policy, and principals."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Literal

import pytest
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel

from agentguard import Guard, Principal
from agentguard.checks.authz import ResourceInfo
from agentguard.identity import CallContext

from .services import postgres_url, redis_url  # noqa: F401 - session fixtures for real servers

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("LANGGRAPH_NO_VERSION_CHECK", "true")

RAN: Counter[str] = Counter()


class Recipient(BaseModel):
    email: str
    name: str | None = None


@tool
def search_contacts(query: str, limit: int = 5) -> str:
    """Search contacts."""
    RAN["search_contacts"] += 1
    return f"found {query!r} (limit {limit})"


@tool
def get_contact(contact_id: str) -> str:
    """Get one contact."""
    RAN["get_contact"] += 1
    return f"contact {contact_id}"


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    RAN["send_email"] += 1
    return f"sent to {to}"


@tool
def send_bulk(recipients: list[Recipient], subject: str) -> str:
    """Send one email to several recipients."""
    RAN["send_bulk"] += 1
    return f"sent to {len(recipients)}"


@tool
def export_contacts(format: Literal["csv", "json"]) -> str:
    """Export every contact."""
    RAN["export_contacts"] += 1
    return "exported"


@tool
def delete_contact(contact_id: str) -> str:
    """Delete a contact."""
    RAN["delete_contact"] += 1
    return "deleted"


@tool
def wire_funds(iban: str, amount_cents: int) -> str:
    """Move money."""
    RAN["wire_funds"] += 1
    return "sent"


@tool
def project_report(project: str, tenant_id: str) -> str:
    """Report on a project."""
    RAN["project_report"] += 1
    return "report"


ALL_TOOLS: list[BaseTool] = [
    search_contacts,
    get_contact,
    send_email,
    send_bulk,
    export_contacts,
    delete_contact,
    wire_funds,
    project_report,
]

POLICY: dict[str, Any] = {
    "version": "test-1",
    "tools": {
        "search_contacts": {
            "risk": "low",
            "scopes": ["contacts:read"],
            "args": {"query": {"max_length": 100}, "limit": {"minimum": 1, "maximum": 20}},
        },
        "get_contact": {
            "risk": "low",
            "scopes": ["contacts:read"],
            "resources": [{"path": "contact_id", "type": "contact"}],
        },
        "send_email": {
            "risk": "medium",
            "scopes": ["emails:send"],
            "egress": True,
            "args": {"to": {"pattern": r"^[^@\s]+@[^@\s]+$"}, "subject": {"max_length": 50}},
            # the recipient field holds an address by design; the body is still scanned
            "dlp": {"fields": {"to": {"EMAIL_ADDRESS": "allow"}}},
        },
        "send_bulk": {
            "risk": "medium",
            "scopes": ["emails:send"],
            "egress": True,
            "dlp": {"fields": {"recipients[*].email": {"EMAIL_ADDRESS": "allow"}}},
        },
        "export_contacts": {
            "risk": "high",
            "scopes": ["contacts:read"],
            "roles": ["admin"],
            "confirmation": "admin_approval",
        },
        "delete_contact": {
            "risk": "critical",
            "scopes": ["contacts:write"],
            "confirmation": "four_eyes",
            "resources": [{"path": "contact_id", "type": "contact", "checks": ["tenant", "owner"]}],
        },
        "wire_funds": {"risk": "forbidden_for_ai", "scopes": ["billing:write"]},
        "project_report": {
            "risk": "low",
            "scopes": ["projects:read"],
            "resources": [
                {"path": "project", "type": "project", "checks": ["grant"]},
                {"path": "tenant_id", "type": "tenant"},
            ],
        },
    },
}

CONTACTS = {
    "c-1": ResourceInfo(tenant="acme", owner="alice"),
    "c-2": ResourceInfo(tenant="acme", owner="bob"),
    "c-9": ResourceInfo(tenant="globex", owner="dana"),
}

ALICE = Principal(
    tenant="acme", user="alice", role="employee", grants={"project": frozenset({"apollo"})}
)
ADMIN = Principal(tenant="acme", user="root", role="admin")
VIEWER = Principal(tenant="acme", user="vic", role="viewer")


def ctx_for(principal: Principal | None) -> CallContext:
    return CallContext(runtime_context={"principal": principal} if principal else None)


def tools_by_name() -> dict[str, BaseTool]:
    return {t.name: t for t in ALL_TOOLS}


def call(name: str, args: Any, call_id: str = "call-1") -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


@pytest.fixture(autouse=True)
def _reset_counts() -> None:
    RAN.clear()


@pytest.fixture
def guard() -> Guard:
    g = Guard(POLICY, resources={"contact": CONTACTS.get})
    g.prepare(ALL_TOOLS)
    return g
