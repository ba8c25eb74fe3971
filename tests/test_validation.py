"""Strict tool-call arguments: nothing coerced, nothing dropped, hostile shapes cheap to refuse."""

from __future__ import annotations

import math
from typing import Annotated, Any

import pytest
from langchain_core.tools import InjectedToolArg, tool

from agentguard import ConfigurationError, Decision, Guard, Level

from .conftest import ALICE, ALL_TOOLS, POLICY, call, ctx_for, tools_by_name


def check(guard: Guard, name: str, args: Any) -> Any:
    return guard.check(call(name, args), ctx_for(ALICE), tools_by_name())


def test_valid_call_is_allowed_with_exact_arguments(guard: Guard) -> None:
    v = check(guard, "send_email", {"to": "bob@acme.example", "subject": "hi", "body": "text"})
    assert v.decision is Decision.ALLOW
    assert v.args == {"to": "bob@acme.example", "subject": "hi", "body": "text"}


def test_unknown_extra_argument_is_refused_and_named(guard: Guard) -> None:
    v = check(
        guard,
        "send_email",
        {"to": "b@a.example", "subject": "s", "body": "b", "bcc": "x@evil.example"},
    )
    assert v.decision is Decision.DENY
    assert v.primary_reason.level is Level.SCHEMA
    assert "unexpected argument 'bcc'" in v.model_message
    assert "allowed: body, subject, to" in v.model_message
    assert "x@evil.example" not in v.model_message


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"query": "x", "limit": "5"}, "limit: expected integer, got string"),
        ({"query": "x", "limit": True}, "limit: expected integer, got boolean"),
        ({"query": 5}, "query: expected string, got integer"),
        ({"query": "x", "limit": 50}, "limit: maximum is 20"),
        ({"query": "x" * 101}, "query: maxLength is 100"),
        ({}, "'query' is a required property"),
    ],
)
def test_no_type_coercion_and_policy_bounds(
    guard: Guard, args: dict[str, Any], fragment: str
) -> None:
    v = check(guard, "search_contacts", args)
    assert v.decision is Decision.DENY, args
    assert fragment in v.model_message


def test_policy_pattern_applies(guard: Guard) -> None:
    v = check(guard, "send_email", {"to": "not an address", "subject": "s", "body": "b"})
    assert "to: does not match the required pattern" in v.model_message


def test_nested_objects_are_closed_too(guard: Guard) -> None:
    ok = check(guard, "send_bulk", {"recipients": [{"email": "a@b.c"}], "subject": "s"})
    assert ok.decision is Decision.ALLOW
    v = check(
        guard, "send_bulk", {"recipients": [{"email": "a@b.c", "cc": "x@y.z"}], "subject": "s"}
    )
    assert v.decision is Decision.DENY
    assert "recipients[0]: unexpected argument 'cc'" in v.model_message


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ('{"query": "x"}', "schema.not_object"),
        (["query", "x"], "schema.not_object"),
        (None, "schema.not_object"),
        (42, "schema.not_object"),
        ({"query": math.nan}, "schema.not_json"),
        ({"query": math.inf}, "schema.not_json"),
        ({"query": object()}, "schema.not_json"),
        ({"query": b"bytes"}, "schema.not_json"),
        ({1: "x"}, "schema.not_json"),
    ],
)
def test_garbage_arguments_are_refused(guard: Guard, args: Any, code: str) -> None:
    v = check(guard, "search_contacts", args)
    assert v.decision is Decision.DENY
    assert v.primary_reason.code == code


def test_huge_and_deep_arguments_are_refused_cheaply(guard: Guard) -> None:
    big = check(guard, "send_email", {"to": "a@b.c", "subject": "s", "body": "x" * 200_000})
    assert big.primary_reason.code == "schema.too_large"
    deep: Any = "leaf"
    for _ in range(50_000):  # far past Python's recursion limit
        deep = {"d": deep}
    v = check(guard, "send_email", {"to": "a@b.c", "subject": "s", "body": deep})
    assert v.primary_reason.code == "schema.too_deep"
    wide = check(guard, "send_bulk", {"recipients": [{"email": "a@b.c"}] * 20_000, "subject": "s"})
    assert wide.primary_reason.code == "schema.too_large"


def test_per_tool_size_limit_is_not_above_the_global_one() -> None:
    policy = {
        **POLICY,
        "tools": {
            **POLICY["tools"],
            "search_contacts": {"risk": "low", "scopes": ["contacts:read"], "max_args_bytes": 20},
        },
    }
    g = Guard(policy, resources={"contact": dict().get})
    v = g.check(call("search_contacts", {"query": "x" * 30}), ctx_for(ALICE), tools_by_name())
    assert v.primary_reason.code == "schema.too_large"


def test_policy_constraint_on_an_argument_the_tool_lacks_fails_at_start_up() -> None:
    policy = {
        "version": "1",
        "tools": {"send_email": {"risk": "low", "args": {"too": {"max_length": 3}}}},
    }
    with pytest.raises(ConfigurationError, match="'too', which the tool does not have"):
        Guard(policy).prepare(ALL_TOOLS)
    bad_rule = {
        "version": "1",
        "tools": {
            "send_email": {"risk": "low", "resources": [{"path": "recipient", "type": "tenant"}]}
        },
    }
    with pytest.raises(ConfigurationError, match="no argument 'recipient'"):
        Guard(bad_rule).prepare(ALL_TOOLS)


def test_injected_arguments_cannot_be_supplied_by_the_model() -> None:
    @tool
    def whoami(note: str, user_id: Annotated[str, InjectedToolArg]) -> str:
        """Echo."""
        return user_id

    g = Guard({"version": "1", "tools": {"whoami": {"risk": "low"}}})
    v = g.check(
        call("whoami", {"note": "n", "user_id": "admin"}), ctx_for(ALICE), {"whoami": whoami}
    )
    assert v.decision is Decision.DENY
    assert "unexpected argument 'user_id'" in v.model_message
