"""Guarding plain LangChain tools, outside any graph: `guard.wrap_tools` + `acting_for`.

Run: .venv/bin/python examples/wrapped_tools.py
"""

from __future__ import annotations

from agentguard import CallRefused, Guard, Principal, acting_for
from agentguard.demo import crm

guard = Guard(
    {
        "version": "example-1",
        "tools": {
            "get_contact": {
                "risk": "low",
                "scopes": ["contacts:read"],
                "resources": [{"path": "contact_id", "type": "contact"}],
            }
        },
    },
    resources={"contact": crm.contact_owner},
)
get_contact = guard.wrap_tools([crm.get_contact])[0]

with acting_for(Principal(tenant="acme", user="alice", role="employee")):
    print(get_contact.invoke({"contact_id": "c-101"}))
    try:
        get_contact.invoke({"contact_id": "c-900"})
    except CallRefused as refused:
        print("refused:", refused)
