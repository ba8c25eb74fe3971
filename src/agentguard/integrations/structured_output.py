"""Force a model's structured final answer into a declared schema, or stop the run.

A model asked for JSON sometimes adds a field, quotes a number, wraps the object in prose or
forgets a bracket. Downstream code then either crashes far from the cause or, worse, acts on
a value nobody declared. `OutputValidator` is a LangGraph node that sits after the model's
final answer: it validates the answer against a closed JSON Schema (no unknown fields, no type
coercion), sends the model the exact problems for a bounded number of repairs, and raises
`StructuredOutputError` when the repairs are used up, so nothing downstream ever sees an
unvalidated answer.

Repairs are counted from the message history rather than from a state key, so the count
survives checkpoints and replays and the user's state needs only a messages list (with the
`add_messages` reducer) and a key for the result.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, StateGraph
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from agentguard._jsonschema import compile_validator, explain, strict_schema
from agentguard._strict_json import no_duplicate_keys, reject_constant
from agentguard.errors import ConfigurationError, GuardError

__all__ = ["OutputValidator", "StructuredOutputError"]

_MARKER_KEY = "agentguard"
_REPAIR_KIND = "output_repair"
_SENDER_NAME = "agentguard"
_MAX_SCHEMA_IN_PROMPT = 2000
_MAX_PROBLEMS = 5

_FENCE_PROBLEM = (
    "the answer is not valid JSON: send bare JSON or exactly one ```json fenced block "
    "with nothing around it"
)
# One fenced block and nothing around it. The info string is captured so that a block marked
# as another language is refused rather than guessed at.
_FENCE = re.compile(r"\A```(?P<lang>[A-Za-z0-9_+-]*)[ \t]*\n?(?P<body>.*?)\s*```\Z", re.DOTALL)


class StructuredOutputError(GuardError):
    """The model's final answer still broke the schema when its repairs were used up.

    `errors` are the problems with the last answer, in the words the model was shown;
    `attempts` is how many answers were examined (repairs sent + 1).
    """

    def __init__(self, errors: list[str], attempts: int) -> None:
        self.errors = list(errors)
        self.attempts = attempts
        detail = "".join(f"\n  - {e}" for e in self.errors)
        super().__init__(
            f"structured output rejected after {attempts} attempt(s); last answer:{detail}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error picklable (checkpointers, multiprocessing) despite the custom init.
        return (type(self), (self.errors, self.attempts))


class _Rejected(Exception):
    """Internal: the answer text is not acceptable JSON; carries the model-facing reason."""


class OutputValidator:
    """A LangGraph node that accepts only a final answer matching `schema`.

    `schema` is a pydantic model class (the result is an instance of it) or a JSON Schema dict
    (the result is the parsed JSON). Either way the schema is closed with `strict_schema` and
    checked with JSON Schema first, so `"5"` for an integer is an error the model must fix
    instead of a value pydantic quietly converts. `max_repairs` bounds how many repair
    requests are sent between two user turns before the run fails closed.
    """

    def __init__(
        self,
        schema: type[pydantic.BaseModel] | dict[str, Any],
        *,
        max_repairs: int = 2,
        messages_key: str = "messages",
        output_key: str = "structured_response",
    ) -> None:
        if isinstance(max_repairs, bool) or not isinstance(max_repairs, int) or max_repairs < 0:
            raise ConfigurationError(f"max_repairs must be an integer >= 0, got {max_repairs!r}")
        self.max_repairs = max_repairs
        self.messages_key = messages_key
        self.output_key = output_key
        self.model: type[pydantic.BaseModel] | None
        if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
            self.model = schema
            try:
                raw = schema.model_json_schema()
            except pydantic.PydanticUserError as err:
                raise ConfigurationError(
                    f"cannot build a JSON Schema for {schema.__name__}: {err}"
                ) from err
        elif isinstance(schema, dict):
            self.model = None
            raw = schema
        else:
            raise ConfigurationError(
                "schema must be a pydantic BaseModel subclass or a JSON Schema dict, "
                f"got {type(schema).__name__}"
            )
        self.schema: dict[str, Any] = strict_schema(raw)
        self._validator = _compile(self.schema)
        compact = json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)
        self._schema_text = compact if len(compact) < _MAX_SCHEMA_IN_PROMPT else None
        self._wants_object = self.schema.get("type") == "object"

    # -- LangGraph entry points -------------------------------------------------------------

    def node(self, state: Any) -> dict[str, Any]:
        """Validate the last model answer: the result, a repair request, or StructuredOutputError.

        An answer that carries tool calls is not a final answer; the graph should not route
        here then, and if it does, nothing is changed.
        """
        messages = self._messages(state)
        answer = _last_ai_message(messages)
        if answer is None:
            # Mis-wired graph: there is nothing the model could repair, so stop.
            raise StructuredOutputError(["there is no model answer to validate"], attempts=0)
        if answer.tool_calls:
            return {}
        ok, result = self._check(answer)
        if ok:
            return {self.output_key: result}
        problems: list[str] = result
        sent = _repairs_since_last_user_turn(messages)
        if sent >= self.max_repairs:
            raise StructuredOutputError(problems, attempts=sent + 1)
        return {self.messages_key: [self._repair_message(problems, attempt=sent + 1)]}

    async def anode(self, state: Any) -> dict[str, Any]:
        """Async twin of `node`; validation is CPU-only, so the logic is shared as is."""
        return self.node(state)

    def route(self, state: Any) -> str:
        """`"repair"` when this validator just asked the model for a fix, else `"done"`."""
        messages = self._messages(state)
        return "repair" if messages and _is_repair(messages[-1]) else "done"

    def add_to_graph(
        self,
        builder: StateGraph[Any, Any, Any, Any],
        *,
        model_node: str,
        name: str = "validate_output",
        end: str = END,
    ) -> None:
        """Add the validator node and its exits: back to `model_node` to repair, else `end`.

        The edge *into* the validator is left to you, because only your graph knows when the
        model is done (typically: its reply has no tool calls). With nodes "model" and "tools"::

            builder.add_edge(START, "model")
            builder.add_conditional_edges(
                "model", tools_condition, {"tools": "tools", END: "validate_output"}
            )
            builder.add_edge("tools", "model")
            OutputValidator(Answer).add_to_graph(builder, model_node="model")

        `messages_key` must use the `add_messages` reducer so repair requests are appended.
        """
        builder.add_node(name, RunnableLambda(self.node, afunc=self.anode, name=name))
        builder.add_conditional_edges(name, self.route, {"repair": model_node, "done": end})

    # -- internals --------------------------------------------------------------------------

    def _messages(self, state: Any) -> list[BaseMessage]:
        raw = state.get(self.messages_key) if isinstance(state, Mapping) else None
        if raw is None and not isinstance(state, Mapping):
            raw = getattr(state, self.messages_key, None)
        if raw is None:
            return []
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            raise ConfigurationError(
                f"state[{self.messages_key!r}] must be a list of messages, got {type(raw).__name__}"
            )
        return convert_to_messages(raw)

    def _check(self, answer: AIMessage) -> tuple[bool, Any]:
        """`(True, result)` or `(False, problems)` where problems are model-facing lines."""
        try:
            data = _parse_answer(str(answer.text))
        except _Rejected as rejected:
            return False, [str(rejected)]
        try:
            problems = explain(self._validator.iter_errors(data), limit=_MAX_PROBLEMS)
        except RecursionError:
            return False, ["the answer is nested too deeply"]
        problems = [_relabel_root(p) for p in problems]
        if problems:
            return False, problems
        if self.model is None:
            return True, data
        try:
            return True, self.model.model_validate(data)
        except pydantic.ValidationError as err:
            return False, _pydantic_problems(err)

    def _repair_message(self, problems: list[str], *, attempt: int) -> HumanMessage:
        shape = "a JSON object" if self._wants_object else "a JSON value"
        lines = [
            "Your final answer does not match the required schema:",
            *(f"- {p}" for p in problems),
            "",
            f"Reply with only {shape} that matches the schema: no prose, no extra fields, "
            "no quoted numbers or booleans.",
        ]
        if self._schema_text is not None:
            lines += ["JSON Schema:", self._schema_text]
        return HumanMessage(
            content="\n".join(lines),
            additional_kwargs={_MARKER_KEY: {"kind": _REPAIR_KIND, "attempt": attempt}},
            name=_SENDER_NAME,
        )


# -- schema setup ---------------------------------------------------------------------------


def _compile(schema: dict[str, Any]) -> Draft202012Validator:
    """Compile now so a broken schema fails at construction, not on the first answer."""
    try:
        validator = compile_validator(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise ConfigurationError(
            f"output schema is not a valid JSON Schema at {where}: {err.message}"
        ) from err
    _check_refs(schema)
    return validator


def _check_refs(schema: dict[str, Any]) -> None:
    """Every `$ref` must resolve inside the schema: a dangling one would only fail later,
    on some answer that happens to reach it. Subtrees with their own `$id` are skipped,
    since their refs resolve against another base."""
    root_id = schema.get("$id", "")
    registry: Registry[Any] = Registry().with_resource(
        uri=root_id if isinstance(root_id, str) else "",
        resource=DRAFT202012.create_resource(schema),
    )
    resolver = registry.resolver(base_uri=root_id if isinstance(root_id, str) else "")
    for ref in _local_refs(schema, is_root=True):
        try:
            resolver.lookup(ref)
        except Unresolvable as err:
            raise ConfigurationError(
                f"output schema has a $ref that does not resolve: {ref!r} ({err})"
            ) from err


_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _local_refs(node: Any, *, is_root: bool = False) -> list[str]:
    refs: list[str] = []
    if isinstance(node, dict):
        if not is_root and "$id" in node:
            return refs
        ref = node.get("$ref")
        if isinstance(ref, str):
            refs.append(ref)
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                refs.extend(_local_refs(value))
    elif isinstance(node, list):
        for item in node:
            refs.extend(_local_refs(item))
    return refs


# -- reading the answer ---------------------------------------------------------------------


def _last_ai_message(messages: list[BaseMessage]) -> AIMessage | None:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return message
    return None


def _is_repair(message: BaseMessage) -> bool:
    if not isinstance(message, HumanMessage):
        return False
    marker = message.additional_kwargs.get(_MARKER_KEY)
    return isinstance(marker, dict) and marker.get("kind") == _REPAIR_KIND


def _repairs_since_last_user_turn(messages: list[BaseMessage]) -> int:
    """Repair requests sent after the last genuine user message (a new turn resets the budget)."""
    count = 0
    for message in reversed(messages):
        if _is_repair(message):
            count += 1
        elif isinstance(message, HumanMessage):
            break
    return count


def _parse_answer(text: str) -> Any:
    """Bare JSON, or exactly one fenced block (```json or ```) with nothing around it."""
    body = text.strip()
    if body.startswith("```"):
        match = _FENCE.fullmatch(body)
        if match is None or "```" in match.group("body"):
            raise _Rejected(_FENCE_PROBLEM)
        lang = match.group("lang")
        if lang.lower() not in ("", "json"):
            raise _Rejected(f"the answer is not valid JSON: the fenced block is marked {lang!r}")
        body = match.group("body")
    if not body:
        raise _Rejected("the answer is not valid JSON: the answer is empty")
    try:
        return json.loads(
            body,
            parse_constant=reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=no_duplicate_keys,
        )
    except json.JSONDecodeError as err:
        if "```" in body:
            # Prose around a fenced block: say what shape is wanted, not where parsing broke.
            raise _Rejected(_FENCE_PROBLEM) from None
        raise _Rejected(
            f"the answer is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from None
    except ValueError as err:
        # Our hooks, or Python's limit on integer digits.
        raise _Rejected(f"the answer is not valid JSON: {_clip(str(err), 120)}") from None
    except RecursionError:
        raise _Rejected("the answer is not valid JSON: it is nested too deeply") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {_clip(text, 30)} is out of range")
    return value


# -- wording --------------------------------------------------------------------------------


def _relabel_root(line: str) -> str:
    # `explain` names the top level "(arguments)" (its tool-call origin); here it is the answer.
    return "(answer)" + line[len("(arguments)") :] if line.startswith("(arguments)") else line


def _pydantic_problems(err: pydantic.ValidationError) -> list[str]:
    """Errors pydantic finds after JSON Schema passed (formats, custom validators)."""
    lines: list[str] = []
    for item in err.errors(include_url=False):
        where = ""
        for part in item["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
        line = f"{where or '(answer)'}: {_clip(item['msg'], 160)}"
        if line not in lines:
            lines.append(line)
    if len(lines) > _MAX_PROBLEMS:
        rest = len(lines) - _MAX_PROBLEMS
        lines = [*lines[:_MAX_PROBLEMS], f"... and {rest} more problem(s)"]
    return lines or ["(answer): rejected by the schema's model"]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
