"""Strict JSON Schema handling shared by tool-call and structured-output validation.

Pydantic and LangChain emit schemas that tolerate unknown keys; a model that adds an argument
the tool never declared must be refused, not silently trimmed. `strict_schema` closes every
object, and `explain` turns validation errors into text a model can act on.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_SINGLE = ("items", "additionalProperties")
_COMPOSITION = ("allOf", "anyOf", "oneOf", "$ref", "if", "dependentSchemas")
# Not descended into: closing inside `not` or `if` would make the whole schema *more*
# permissive; `contains`, `propertyNames`, `dependentSchemas` keep their author's meaning.


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of `schema` where every object that lists its properties allows no others.

    A plain object gets `additionalProperties: false`; one that also composes subschemas
    (`allOf`, `anyOf`, `$ref`...) gets `unevaluatedProperties: false`, which counts properties
    declared in those subschemas as known. Objects with no listed properties (free-form maps)
    and explicit `additionalProperties` / `unevaluatedProperties` are left as written.
    """
    out = copy.deepcopy(schema)
    _close(out, partial=False)
    return out


def _lists_properties(node: dict[str, Any]) -> bool:
    return "properties" in node or "patternProperties" in node


def _close(node: Any, *, partial: bool) -> None:
    if not isinstance(node, dict):
        return
    is_object = _lists_properties(node)
    composed = any(k in node for k in _COMPOSITION)
    open_ = "additionalProperties" not in node and "unevaluatedProperties" not in node
    if not partial and open_:
        if is_object:
            node["additionalProperties" if not composed else "unevaluatedProperties"] = False
        elif any(isinstance(b, dict) and _lists_properties(b) for b in node.get("allOf") or []):
            node["unevaluatedProperties"] = False
    for key in _SUBSCHEMA_MAPS:
        sub = node.get(key)
        if isinstance(sub, dict):
            for child in sub.values():
                _close(child, partial=False)
    for key in _SUBSCHEMA_SINGLE:
        _close(node.get(key), partial=False)
    for child in node.get("prefixItems") or []:
        _close(child, partial=False)
    # Alternatives describe the whole value, unless the node carries properties of its own.
    for key in ("anyOf", "oneOf"):
        for child in node.get(key) or []:
            _close(child, partial=is_object)
    # allOf branches are partial views of one value: the node itself is closed above.
    for child in node.get("allOf") or []:
        _close(child, partial=True)


def compile_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A draft 2020-12 validator; raises `jsonschema.SchemaError` on a broken schema."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_path(error: ValidationError) -> str:
    """`recipients[0].email`-style path, or `(arguments)` for the top level."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(arguments)"


def describe(error: ValidationError) -> str:
    """One line per error: which field, what was expected, never the whole offending value."""
    where = field_path(error)
    kw = error.validator
    if kw in ("additionalProperties", "unevaluatedProperties"):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = sorted((schema.get("properties") or {}).keys())
        if kw == "additionalProperties" and isinstance(error.instance, dict):
            patterns = list((schema.get("patternProperties") or {}).keys())
            extra = sorted(
                k
                for k in error.instance
                if k not in allowed and not any(re.search(p, k) for p in patterns)
            )
        else:
            extra = sorted(set(re.findall(r"'((?:[^'\\]|\\.)*)'", error.message)))
        names = ", ".join(repr(e) for e in extra) or "an unknown field"
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unexpected argument {names} is not allowed{hint}"
    if kw == "required":
        return f"{where}: {error.message}"
    if kw == "type":
        return (
            f"{where}: expected {error.validator_value}, got {_json_type(error.instance)} "
            f"{_short(error.instance)}"
        )
    if kw == "enum":
        return f"{where}: must be one of {_short(error.validator_value, 200)}"
    if kw == "pattern":
        return f"{where}: does not match the required pattern {error.validator_value!r}"
    if kw in ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"):
        return f"{where}: {kw} is {error.validator_value}"
    if kw in ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"):
        return f"{where}: {kw} is {error.validator_value}, got {_short(error.instance)}"
    return f"{where}: {error.message if len(error.message) <= 160 else error.message[:157] + '...'}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def explain(errors: Iterable[ValidationError], limit: int = 5) -> list[str]:
    """One line per distinct problem, ordered by field path; at most `limit` lines."""
    flat: list[ValidationError] = []
    for err in errors:
        flat.extend(_leaves(err))
    flat.sort(key=lambda e: (list(map(str, e.absolute_path)), e.validator or ""))
    lines: list[str] = []
    for err in flat:
        line = describe(err)
        if line not in lines:
            lines.append(line)
    if len(lines) > limit:
        rest = len(lines) - limit
        lines = [*lines[:limit], f"... and {rest} more problem(s)"]
    return lines


def _leaves(error: ValidationError) -> list[ValidationError]:
    # anyOf/oneOf failures carry their branches in `context`; the best branch is the most useful.
    if error.context and error.validator in ("anyOf", "oneOf"):
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        return [best] if best is not None else [error]
    return [error]
