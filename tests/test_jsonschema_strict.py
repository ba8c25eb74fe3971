"""Closing schemas must only ever make them stricter about unknown keys, never looser."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agentguard._jsonschema import explain, strict_schema


def valid(schema: dict[str, Any], value: Any) -> bool:
    return Draft202012Validator(schema).is_valid(value)


def test_plain_objects_are_closed_and_nested_ones_too() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
    }
    strict = strict_schema(schema)
    assert valid(strict, {"a": {"b": "x"}})
    assert not valid(strict, {"a": {"b": "x"}, "z": 1})
    assert not valid(strict, {"a": {"b": "x", "z": 1}})


def test_free_form_maps_stay_open() -> None:
    schema = {
        "type": "object",
        "properties": {
            "meta": {"type": "object"},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    strict = strict_schema(schema)
    assert valid(strict, {"meta": {"anything": 1}, "tags": {"k": "v"}})
    assert not valid(strict, {"tags": {"k": 1}})


def test_not_and_if_are_left_alone_so_they_keep_refusing() -> None:
    negated = {
        "type": "object",
        "properties": {"secret": {}, "other": {}},
        "not": {"required": ["secret"]},
    }
    assert not valid(strict_schema(negated), {"secret": 1, "other": 2})
    conditional = {
        "type": "object",
        "properties": {"a": {}, "b": {}, "c": {}},
        "if": {"properties": {"a": {"const": 1}}},
        "then": {"required": ["c"]},
    }
    assert not valid(strict_schema(conditional), {"a": 1, "b": 2})
    assert valid(strict_schema(conditional), {"a": 1, "b": 2, "c": 3})


def test_all_of_branches_merge_instead_of_contradicting() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"properties": {"b": {"type": "integer"}}},
        ]
    }
    strict = strict_schema(schema)
    assert valid(strict, {"a": "x", "b": 1})
    assert not valid(strict, {"a": "x", "b": 1, "c": 2})


def test_union_branches_and_refs_are_closed() -> None:
    schema = {
        "type": "object",
        "properties": {"r": {"anyOf": [{"$ref": "#/$defs/R"}, {"type": "null"}]}},
        "$defs": {"R": {"type": "object", "properties": {"email": {"type": "string"}}}},
    }
    strict = strict_schema(schema)
    assert valid(strict, {"r": {"email": "a"}}) and valid(strict, {"r": None})
    assert not valid(strict, {"r": {"email": "a", "cc": "b"}})


def test_discriminated_objects_with_own_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"kind": {"type": "string"}},
        "oneOf": [
            {"properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "string"}}, "required": ["b"]},
        ],
    }
    strict = strict_schema(schema)
    assert valid(strict, {"kind": "x", "a": "1"})
    assert not valid(strict, {"kind": "x", "a": "1", "z": 0})


def test_pattern_properties_are_not_reported_as_unexpected() -> None:
    schema = strict_schema(
        {"type": "object", "properties": {"a": {}}, "patternProperties": {"^x-": {}}}
    )
    errors = Draft202012Validator(schema).iter_errors({"a": 1, "x-ok": 2, "bad": 3})
    assert explain(errors) == ["(arguments): unexpected argument 'bad' is not allowed (allowed: a)"]


def test_unevaluated_properties_error_names_the_key() -> None:
    schema = strict_schema({"allOf": [{"type": "object", "properties": {"a": {}}}]})
    lines = explain(Draft202012Validator(schema).iter_errors({"a": 1, "bcc": 2}))
    assert "unexpected argument 'bcc'" in lines[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "z"]), kids, max_size=3)
    ),
    max_leaves=10,
)
SCHEMAS = [
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "object", "properties": {"c": {}}}},
    },
    {"properties": {"a": {}, "b": {}}, "not": {"required": ["a"]}},
    {
        "properties": {"a": {}, "c": {}},
        "if": {"properties": {"a": {"const": 1}}},
        "then": {"required": ["c"]},
        "else": {"properties": {"c": {"type": "string"}}},
    },
    {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}], "type": "object"},
    {
        "anyOf": [
            {"type": "object", "properties": {"a": {}}},
            {"type": "array", "items": {"properties": {"c": {}}}},
        ]
    },
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_strict_never_accepts_what_the_original_rejects(schema: dict[str, Any], value: Any) -> None:
    if valid(strict_schema(schema), value):
        assert valid(schema, value)
