"""Strict tool-call arguments: the tool's own schema, closed to extras, plus policy bounds.

LangChain drops arguments a tool does not declare and pydantic coerces `"5"` to `5`; both
hide what the model actually asked for. Here nothing is coerced and nothing is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from langchain_core.tools import BaseTool
from pydantic import BaseModel

from agentguard._jsonschema import explain, strict_schema
from agentguard.errors import ConfigurationError
from agentguard.policy.model import Limits, ToolPolicy
from agentguard.verdict import Level, Reason


def tool_json_schema(tool: BaseTool) -> dict[str, Any]:
    """The JSON Schema of the arguments a model may send (injected arguments excluded)."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return dict(schema)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    raise ConfigurationError(
        f"tool '{tool.name}': cannot derive a JSON Schema from {type(schema).__name__}"
    )


@dataclass(frozen=True)
class CompiledArgs:
    """A tool's final argument schema and its validator, built once per tool."""

    tool: str
    schema: dict[str, Any]
    validator: Draft202012Validator  # explains failures in words a model can act on
    fast: Any  # jsonschema_rs validator: decides, in about a microsecond
    max_bytes: int


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return target if isinstance(target, dict) else {}
    for key in ("allOf", "anyOf"):
        for branch in node.get(key) or []:
            if isinstance(branch, dict) and ("properties" in branch or "$ref" in branch):
                return _resolve(schema, branch)
    return node


def _path_exists(schema: dict[str, Any], path: list[str]) -> bool:
    node = schema
    for part in path:
        node = _resolve(schema, node)
        props = node.get("properties")
        if not isinstance(props, dict) or part not in props:
            return False
        node = props[part]
    return True


def _nest(path: list[str], leaf: dict[str, Any]) -> dict[str, Any]:
    out = leaf
    for part in reversed(path):
        out = {"properties": {part: out}}
    return out


def compile_args(
    name: str, base_schema: Mapping[str, Any], tool_policy: ToolPolicy, limits: Limits
) -> CompiledArgs:
    """Close the tool's schema and add the policy's constraints; unknown paths are errors."""
    schema = strict_schema(dict(base_schema))
    if schema.get("type") not in (None, "object"):
        raise ConfigurationError(f"tool '{name}': arguments schema must describe an object")
    schema.setdefault("type", "object")
    extra: list[dict[str, Any]] = []
    for arg_path, constraint in tool_policy.args.items():
        parts = arg_path.split(".")
        if not _path_exists(schema, parts):
            raise ConfigurationError(
                f"policy for tool '{name}' constrains argument '{arg_path}', which the tool "
                "does not have"
            )
        extra.append(_nest(parts, constraint.to_json_schema()))
    for rule in tool_policy.resources:
        top = rule.path.split(".")[0].removesuffix("[*]")
        if not _path_exists(schema, [top]):
            raise ConfigurationError(
                f"policy for tool '{name}' has a resource rule on '{rule.path}', but the tool "
                f"has no argument '{top}'"
            )
    if extra:
        schema = {**schema, "allOf": [*schema.get("allOf", []), *extra]}
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    try:
        fast = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    except Exception as exc:  # e.g. a pattern the validator cannot compile
        raise ConfigurationError(f"tool '{name}': argument schema rejected: {exc}") from None
    max_bytes = min(tool_policy.max_args_bytes or limits.max_args_bytes, limits.max_args_bytes)
    return CompiledArgs(name, schema, validator, fast, max_bytes)


def _shape_problem(args: Any, limits: Limits, max_bytes: int) -> Reason | None:
    """Refuse non-JSON, too deep, too many or too large arguments before schema validation,
    so hostile input is cheap to reject and cannot blow the stack."""
    if isinstance(args, str):
        return Reason(
            "schema.not_object",
            Level.SCHEMA,
            "arguments must be a JSON object, not a string (do not JSON-encode them)",
        )
    if not isinstance(args, dict):
        return Reason(
            "schema.not_object",
            Level.SCHEMA,
            f"arguments must be a JSON object, got {type(args).__name__}",
        )
    budget = max_bytes
    nodes = 0
    stack: list[tuple[Any, int]] = [(args, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            return Reason(
                "schema.too_large",
                Level.SCHEMA,
                f"arguments have more than {limits.max_nodes} values",
            )
        if depth > limits.max_depth:
            return Reason(
                "schema.too_deep",
                Level.SCHEMA,
                f"arguments nest deeper than {limits.max_depth} levels",
            )
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    return Reason("schema.not_json", Level.SCHEMA, "object keys must be strings")
                budget -= len(k)
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            budget -= len(value)
        elif isinstance(value, bool) or value is None or isinstance(value, int):
            budget -= 1
        elif isinstance(value, float):
            if not math.isfinite(value):
                return Reason("schema.not_json", Level.SCHEMA, "numbers must be finite")
        else:
            return Reason(
                "schema.not_json",
                Level.SCHEMA,
                f"arguments must be plain JSON values, found {type(value).__name__}",
            )
        if budget < 0:
            return Reason(
                "schema.too_large", Level.SCHEMA, f"arguments are larger than {max_bytes} bytes"
            )
    try:
        size = len(orjson.dumps(args))
    except orjson.JSONEncodeError:  # lone surrogates and the like: not JSON text
        return Reason(
            "schema.not_json",
            Level.SCHEMA,
            "arguments hold values JSON cannot carry (integers beyond 64 bits, lone surrogates)",
        )
    if size > max_bytes:
        return Reason(
            "schema.too_large", Level.SCHEMA, f"arguments are larger than {max_bytes} bytes"
        )
    return None


def validate_args(compiled: CompiledArgs, args: Any, limits: Limits) -> list[Reason]:
    """Empty when the arguments are exactly what the schema and policy allow."""
    shape = _shape_problem(args, limits, compiled.max_bytes)
    if shape is not None:
        return [shape]
    if compiled.fast.is_valid(args):
        return []
    lines = explain(compiled.validator.iter_errors(args))
    if not lines:  # the two validators disagree (formats are checked more strictly): still invalid
        lines = [_rs_line(e) for e in list(compiled.fast.iter_errors(args))[:5]]
    return [Reason("schema.invalid", Level.SCHEMA, line) for line in lines]


def _rs_line(error: Any) -> str:
    where = ""
    for part in error.instance_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = str(error.message)
    return f"{where or '(arguments)'}: {message if len(message) <= 160 else message[:157] + '...'}"
