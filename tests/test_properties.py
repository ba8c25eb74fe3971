"""Property tests: whatever the model sends, a call that fails validation or authorization never
reaches the tool, and an allowed call reaches it with exactly the arguments sent."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from agentguard import Guard, Principal, acting_for
from agentguard.checks.authz import ResourceInfo

RECEIVED: list[tuple[str, dict[str, Any]]] = []


@tool
def lookup(contact_id: str, fields: list[str] | None = None) -> str:
    """Look a contact up."""
    RECEIVED.append(("lookup", {"contact_id": contact_id, "fields": fields}))
    return "ok"


@tool
def notify(to: str, urgent: bool, count: int = 1) -> str:
    """Send a notification."""
    RECEIVED.append(("notify", {"to": to, "urgent": urgent, "count": count}))
    return "ok"


@tool
def purge(tenant_id: str) -> str:
    """Purge a tenant."""
    RECEIVED.append(("purge", {"tenant_id": tenant_id}))
    return "ok"


TOOLS = [lookup, notify, purge]
POLICY = {
    "version": "prop-1",
    "tools": {
        "lookup": {
            "risk": "low",
            "scopes": ["contacts:read"],
            "resources": [{"path": "contact_id", "type": "contact"}],
            "args": {"fields": {"max_items": 3}},
        },
        "notify": {
            "risk": "medium",
            "scopes": ["alerts:send"],
            "args": {"count": {"minimum": 1, "maximum": 5}},
        },
        "purge": {
            "risk": "low",
            "scopes": ["tenants:admin"],
            "roles": ["admin"],
            "resources": [{"path": "tenant_id", "type": "tenant"}],
        },
    },
}
CONTACTS = {"c-1": ResourceInfo("acme"), "c-2": ResourceInfo("acme"), "c-9": ResourceInfo("globex")}

# Independent oracles, written by hand: who may call what, and the exact argument shapes.
ALLOWED = {
    ("employee", "lookup"),
    ("employee", "notify"),
    ("admin", "lookup"),
    ("admin", "notify"),
    ("admin", "purge"),
    ("viewer", "lookup"),
}
SCHEMAS = {
    "lookup": {
        "type": "object",
        "properties": {
            "contact_id": {"type": "string"},
            "fields": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                    {"type": "null"},
                ]
            },
        },
        "required": ["contact_id"],
        "additionalProperties": False,
    },
    "notify": {
        "type": "object",
        "properties": {
            "to": {"type": "string"},
            "urgent": {"type": "boolean"},
            "count": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["to", "urgent"],
        "additionalProperties": False,
    },
    "purge": {
        "type": "object",
        "properties": {"tenant_id": {"type": "string"}},
        "required": ["tenant_id"],
        "additionalProperties": False,
    },
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["contact_id", "fields", "to", "urgent", "count", "tenant_id", "extra", "principal"]
)
near_valid = st.dictionaries(
    keys,
    st.one_of(
        st.sampled_from(["c-1", "c-2", "c-9", "c-404", "acme", "globex", "a@b.c"]),
        st.booleans(),
        st.integers(-3, 9),
        st.lists(st.sampled_from(["name", "email"]), max_size=5),
        json_values,
    ),
    max_size=4,
)
principals = st.builds(
    Principal,
    tenant=st.sampled_from(["acme", "acme", "globex"]),
    user=st.sampled_from(["alice", "bob"]),
    role=st.sampled_from(["employee", "admin", "admin", "viewer", "external_client", "ghost"]),
)
names = st.sampled_from(["lookup", "notify", "purge", "delete_all", "lookup ", "LOOKUP"]) | st.text(
    max_size=10
)
args_strategy = near_valid | json_values | st.text(max_size=20)


def _guard() -> Guard:
    return Guard(POLICY, resources={"contact": CONTACTS.get})


GUARD = _guard()
WRAPPED = {t.name: t for t in GUARD.wrap_tools(TOOLS)}


def _expected_ok(p: Principal, name: str, args: Any) -> bool:
    if (p.role, name) not in ALLOWED:
        return False
    if not Draft202012Validator(SCHEMAS[name]).is_valid(args):
        return False
    if name == "lookup" and CONTACTS.get(args["contact_id"], ResourceInfo(None)).tenant != p.tenant:
        return False
    return not (name == "purge" and args["tenant_id"] != p.tenant)


VALID = {
    "lookup": st.fixed_dictionaries(
        {"contact_id": st.sampled_from(["c-1", "c-2", "c-9", "c-404"])},
        optional={"fields": st.none() | st.lists(st.sampled_from(["name", "email"]), max_size=4)},
    ),
    "notify": st.fixed_dictionaries(
        {"to": st.text(max_size=8), "urgent": st.booleans()},
        optional={"count": st.integers(-1, 7)},
    ),
    "purge": st.fixed_dictionaries({"tenant_id": st.sampled_from(["acme", "globex"])}),
}


def _mutate(args: dict[str, Any], extra: Any, drop: bool) -> dict[str, Any]:
    out = dict(args)
    if drop and out:
        out.pop(sorted(out)[0])
    else:
        out["extra"] = extra
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(principal=principals, data=st.data())
def test_only_valid_authorized_calls_reach_tools(principal: Principal, data: st.DataObject) -> None:
    known = data.draw(st.integers(0, 4)) > 0
    name = data.draw(st.sampled_from(sorted(VALID)) if known else names)
    if name in VALID and data.draw(st.integers(0, 4)) > 0:
        args: Any = data.draw(VALID[name])
        if data.draw(st.integers(0, 3)) == 0:
            args = _mutate(args, data.draw(json_values), data.draw(st.booleans()))
    else:
        args = data.draw(args_strategy)
    RECEIVED.clear()
    tool_ = WRAPPED.get(name)
    call = {"name": name, "args": args, "id": "p1", "type": "tool_call"}
    with acting_for(principal):
        if tool_ is None:
            verdict = GUARD.check(call, _ctx(), WRAPPED)
            assert not verdict.allowed
            event("unknown tool")
            return
        out = tool_.invoke(call)
    assert isinstance(out, ToolMessage)
    expected = _expected_ok(principal, name, args)
    event("ran" if RECEIVED else "refused")
    if RECEIVED:
        assert expected, f"{principal.role}/{principal.tenant} ran {name}({args!r})"
        got_name, got = RECEIVED[0]
        assert got_name == name
        for key, value in args.items():  # nothing dropped, nothing coerced
            assert got[key] == value and type(got[key]) is type(value)
        assert out.status != "error"
    else:
        assert not expected, f"refused a call the oracle allows: {name}({args!r}): {out.content}"
        assert out.status == "error"


def _ctx() -> Any:
    from agentguard.identity import CallContext

    return CallContext()


@settings(max_examples=200, deadline=None)
@given(
    call=st.fixed_dictionaries(
        {"name": names | json_values, "args": args_strategy, "id": st.text(max_size=5) | st.none()}
    )
)
def test_the_guard_never_raises_on_any_call_shape(call: dict[str, Any]) -> None:
    with acting_for(Principal(tenant="acme", user="alice", role="employee")):
        verdict = GUARD.check(call, _ctx(), WRAPPED)
    assert verdict.model_message or verdict.allowed
