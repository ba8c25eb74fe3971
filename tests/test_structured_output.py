"""The structured-output validator: a real LangGraph graph, a scripted model, and the promise
that only a schema-valid answer reaches `structured_response`, with repairs bounded exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ValidationError, field_validator
from typing_extensions import NotRequired, TypedDict

from agentguard._jsonschema import strict_schema
from agentguard.errors import ConfigurationError, GuardError
from agentguard.integrations.structured_output import OutputValidator, StructuredOutputError


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    structured_response: NotRequired[Any]


class Answer(BaseModel):
    name: str
    age: int
    tags: list[str] = []


DICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
}

QUESTION = HumanMessage("Who is the user? Answer in JSON.")


class ScriptedGraph:
    """A model node that replays `answers` in order and records every call it gets."""

    def __init__(self, validator: OutputValidator, answers: list[Any]) -> None:
        replies = [a if isinstance(a, AIMessage) else AIMessage(content=a) for a in answers]
        self.model = GenericFakeChatModel(messages=iter(replies))
        self.calls: list[list[BaseMessage]] = []
        builder = StateGraph(State)
        builder.add_node("model", self.call_model)
        builder.add_edge(START, "model")
        builder.add_edge("model", "validate_output")
        validator.add_to_graph(builder, model_node="model")
        self.graph = builder.compile()

    def call_model(self, state: State) -> dict[str, Any]:
        self.calls.append(list(state["messages"]))
        return {"messages": [self.model.invoke(state["messages"])]}

    def invoke(self) -> dict[str, Any]:
        return self.graph.invoke({"messages": [QUESTION]})


def repairs(messages: list[BaseMessage]) -> list[HumanMessage]:
    return [
        m
        for m in messages
        if isinstance(m, HumanMessage)
        and m.additional_kwargs.get("agentguard", {}).get("kind") == "output_repair"
    ]


# -- happy paths ----------------------------------------------------------------------------


def test_valid_answer_passes_first_time_as_model_instance() -> None:
    run = ScriptedGraph(OutputValidator(Answer), ['{"name": "Ada", "age": 36}'])
    out = run.invoke()
    assert out["structured_response"] == Answer(name="Ada", age=36)
    assert isinstance(out["structured_response"], Answer)
    assert len(run.calls) == 1
    assert repairs(out["messages"]) == []


def test_fenced_json_block_is_accepted() -> None:
    answer = '```json\n{"name": "Ada", "age": 36, "tags": ["x"]}\n```'
    out = ScriptedGraph(OutputValidator(Answer), [answer]).invoke()
    assert out["structured_response"] == Answer(name="Ada", age=36, tags=["x"])


def test_content_blocks_are_joined() -> None:
    blocks: list[str | dict[Any, Any]] = [
        {"type": "reasoning", "reasoning": "thinking..."},
        {"type": "text", "text": '{"name": "Ada", '},
        {"type": "text", "text": '"age": 36}'},
    ]
    out = ScriptedGraph(OutputValidator(Answer), [AIMessage(content=blocks)]).invoke()
    assert out["structured_response"] == Answer(name="Ada", age=36)


def test_json_schema_dict_variant_returns_the_parsed_object() -> None:
    answers = [
        '{"city": "Oslo", "population": 709000, "mayor": "x"}',
        '{"city": "Oslo", "population": 709000}',
    ]
    run = ScriptedGraph(OutputValidator(DICT_SCHEMA), answers)
    out = run.invoke()
    assert out["structured_response"] == {"city": "Oslo", "population": 709000}
    [repair] = repairs(out["messages"])
    assert "'mayor'" in repair.content


# -- repairs --------------------------------------------------------------------------------


def test_extra_field_is_repaired_once_and_the_message_names_it() -> None:
    answers = ['{"name": "Ada", "age": 36, "email": "a@x"}', '{"name": "Ada", "age": 36}']
    run = ScriptedGraph(OutputValidator(Answer), answers)
    out = run.invoke()
    assert out["structured_response"] == Answer(name="Ada", age=36)
    assert len(run.calls) == 2
    [repair] = repairs(out["messages"])
    assert isinstance(repair.content, str)
    assert "unexpected argument 'email' is not allowed (allowed: age, name, tags)" in repair.content
    assert "Reply with only a JSON object" in repair.content
    assert repair.name == "agentguard"
    assert repair.additional_kwargs == {"agentguard": {"kind": "output_repair", "attempt": 1}}
    # The model saw the repair request as the last message of its second call.
    assert run.calls[1][-1].content == repair.content


def test_string_for_integer_is_not_coerced() -> None:
    answers = ['{"name": "Ada", "age": "36"}', '{"name": "Ada", "age": 36}']
    run = ScriptedGraph(OutputValidator(Answer), answers)
    out = run.invoke()
    [repair] = repairs(out["messages"])
    assert 'age: expected integer, got string "36"' in repair.content
    assert out["structured_response"].age == 36


def test_string_for_integer_fails_closed_without_repairs() -> None:
    run = ScriptedGraph(OutputValidator(Answer, max_repairs=0), ['{"name": "Ada", "age": "36"}'])
    with pytest.raises(StructuredOutputError) as info:
        run.invoke()
    assert info.value.errors == ['age: expected integer, got string "36"']
    assert info.value.attempts == 1


def test_non_json_text_gets_a_repair_with_the_parse_error() -> None:
    answers = ["Sure! The user is Ada, 36.", '{"name": "Ada", "age": 36}']
    out = ScriptedGraph(OutputValidator(Answer), answers).invoke()
    [repair] = repairs(out["messages"])
    assert "the answer is not valid JSON: Expecting value (line 1, column 1)" in repair.content


def test_prose_around_a_fenced_block_is_refused() -> None:
    answer = 'Here you go:\n```json\n{"name": "Ada", "age": 36}\n```'
    run = ScriptedGraph(OutputValidator(Answer, max_repairs=0), [answer])
    with pytest.raises(StructuredOutputError) as info:
        run.invoke()
    assert "exactly one ```json fenced block with nothing around it" in info.value.errors[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"name": "Ada", "age": NaN}', "NaN is not a JSON number"),
        ('{"name": "Ada", "age": 1e999}', "out of range"),
        ('{"name": "Ada", "name": "Bob", "age": 1}', 'duplicate key "name"'),
        ('```json\n{"name": "Ada", "age": 1}\n```\n```json\n{}\n```', "exactly one"),
        ('```python\n{"name": "Ada", "age": 1}\n```', "marked 'python'"),
        ("", "the answer is empty"),
        ("[" * 50_000, "nested too deeply"),
    ],
)
def test_ambiguous_or_non_json_answers_are_refused(text: str, problem: str) -> None:
    validator = OutputValidator(Answer, max_repairs=0)
    with pytest.raises(StructuredOutputError) as info:
        validator.node({"messages": [QUESTION, AIMessage(content=text)]})
    assert problem in info.value.errors[0]
    assert info.value.errors[0].startswith("the answer is not valid JSON")


def test_top_level_non_object_is_validated_like_anything_else() -> None:
    validator = OutputValidator(Answer)
    update = validator.node({"messages": [QUESTION, AIMessage(content="[1, 2]")]})
    [repair] = update["messages"]
    assert "(answer): expected object, got array [1, 2]" in repair.content


def test_model_level_validation_runs_after_the_schema() -> None:
    class Adult(BaseModel):
        age: int

        @field_validator("age")
        @classmethod
        def _grown_up(cls, value: int) -> int:
            if value < 18:
                raise ValueError("must be at least 18")
            return value

    validator = OutputValidator(Adult, max_repairs=0)
    with pytest.raises(StructuredOutputError) as info:
        validator.node({"messages": [QUESTION, AIMessage(content='{"age": 3}')]})
    assert info.value.errors == ["age: Value error, must be at least 18"]


def test_repairs_exhausted_fail_closed_with_the_exact_count() -> None:
    bad = '{"name": "Ada", "age": 36, "email": "a@x"}'
    run = ScriptedGraph(OutputValidator(Answer, max_repairs=2), [bad, bad, bad])
    with pytest.raises(StructuredOutputError) as info:
        run.invoke()
    assert len(run.calls) == 3
    assert info.value.attempts == 3
    assert info.value.errors == [
        "(answer): unexpected argument 'email' is not allowed (allowed: age, name, tags)"
    ]
    assert isinstance(info.value, GuardError)
    attempts_seen = [m.additional_kwargs["agentguard"]["attempt"] for m in repairs(run.calls[-1])]
    assert attempts_seen == [1, 2]


def test_a_new_user_turn_resets_the_repair_budget() -> None:
    validator = OutputValidator(Answer, max_repairs=1)
    bad = AIMessage(content="{}")
    first = validator.node({"messages": [QUESTION, bad]})
    [repair] = first["messages"]
    history: list[BaseMessage] = [QUESTION, bad, repair, bad]
    with pytest.raises(StructuredOutputError):
        validator.node({"messages": history})
    # A genuine user message starts a new budget; the older repair no longer counts.
    update = validator.node({"messages": [*history, HumanMessage("try again"), bad]})
    assert update["messages"][0].additional_kwargs["agentguard"]["attempt"] == 1


def test_tool_calls_are_not_a_final_answer() -> None:
    validator = OutputValidator(Answer)
    call = {"name": "lookup", "args": {}, "id": "c1", "type": "tool_call"}
    state = {"messages": [QUESTION, AIMessage(content="", tool_calls=[call])]}
    assert validator.node(state) == {}
    assert validator.route(state) == "done"


def test_no_model_answer_fails_closed() -> None:
    with pytest.raises(StructuredOutputError) as info:
        OutputValidator(Answer).node({"messages": [QUESTION]})
    assert info.value.attempts == 0


def test_custom_keys_are_honoured() -> None:
    validator = OutputValidator(Answer, messages_key="chat", output_key="answer")
    ok = validator.node({"chat": [QUESTION, AIMessage(content='{"name": "A", "age": 1}')]})
    assert ok == {"answer": Answer(name="A", age=1)}
    bad = validator.node({"chat": [QUESTION, AIMessage(content="{}")]})
    assert list(bad) == ["chat"]
    assert validator.route({"chat": bad["chat"]}) == "repair"


def test_error_is_picklable() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(StructuredOutputError(["a: b"], attempts=2)))
    assert (err.errors, err.attempts) == (["a: b"], 2)


# -- async ----------------------------------------------------------------------------------


class AsyncSpy(OutputValidator):
    def __init__(self, schema: Any, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self.async_calls = 0

    async def anode(self, state: Any) -> dict[str, Any]:
        self.async_calls += 1
        return await super().anode(state)


async def test_async_path_via_ainvoke() -> None:
    validator = AsyncSpy(Answer, max_repairs=1)
    model = GenericFakeChatModel(
        messages=iter(
            [AIMessage(content='{"name": "Ada"}'), AIMessage(content='{"name": "Ada", "age": 1}')]
        )
    )

    async def call_model(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(State)
    builder.add_node("model", call_model)
    builder.add_edge(START, "model")
    builder.add_edge("model", "validate_output")
    validator.add_to_graph(builder, model_node="model", end=END)
    out = await builder.compile().ainvoke({"messages": [QUESTION]})
    assert out["structured_response"] == Answer(name="Ada", age=1)
    assert validator.async_calls == 2
    [repair] = repairs(out["messages"])
    assert "(answer): 'age' is a required property" in repair.content


async def test_async_path_fails_closed() -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="nope")] * 2))

    async def call_model(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(State)
    builder.add_node("model", call_model)
    builder.add_edge(START, "model")
    builder.add_edge("model", "validate_output")
    OutputValidator(Answer, max_repairs=1).add_to_graph(builder, model_node="model")
    with pytest.raises(StructuredOutputError) as info:
        await builder.compile().ainvoke({"messages": [QUESTION]})
    assert info.value.attempts == 2


# -- construction ---------------------------------------------------------------------------


def test_broken_dict_schema_raises_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"not a valid JSON Schema at type"):
        OutputValidator({"type": "objekt"})


def test_dangling_ref_raises_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"does not resolve: '#/\$defs/Missing'"):
        OutputValidator({"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}})


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_max_repairs_must_be_a_non_negative_int(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_repairs"):
        OutputValidator(Answer, max_repairs=bad)


def test_schema_must_be_a_model_or_a_dict() -> None:
    with pytest.raises(ConfigurationError, match="pydantic BaseModel subclass or a JSON Schema"):
        OutputValidator(Answer(name="a", age=1))  # type: ignore[arg-type]


def test_small_schema_is_shown_large_schema_is_not() -> None:
    small = OutputValidator(DICT_SCHEMA).node({"messages": [QUESTION, AIMessage(content="1")]})
    assert '"required":["city","population"]' in small["messages"][0].content
    big_schema = {
        "type": "object",
        "properties": {f"field_{i:03d}": {"type": "string"} for i in range(200)},
    }
    big = OutputValidator(big_schema).node({"messages": [QUESTION, AIMessage(content="1")]})
    assert "JSON Schema:" not in big["messages"][0].content
    assert "(answer): expected object, got integer 1" in big["messages"][0].content


# -- property -------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Shapes close to a valid answer, so both outcomes are exercised, not just rejection.
NEAR_ANSWERS = st.fixed_dictionaries(
    {"name": st.text(max_size=5) | JSON_SCALARS, "age": st.integers() | JSON_SCALARS},
    optional={"tags": st.lists(st.text(max_size=3)) | JSON_VALUES, "extra": JSON_SCALARS},
)
NEAR_CITIES = st.fixed_dictionaries(
    {"city": st.text(max_size=5) | JSON_SCALARS, "population": st.integers() | JSON_SCALARS}
)
VALID_ANSWERS = st.fixed_dictionaries(
    {"name": st.text(max_size=5), "age": st.integers()},
    optional={"tags": st.lists(st.text(max_size=3), max_size=3)},
)
VALID_CITIES = st.fixed_dictionaries(
    {"city": st.text(max_size=5), "population": st.integers(min_value=0)}
)
SCHEMAS: dict[str, type[BaseModel] | dict[str, Any]] = {"model": Answer, "dict": DICT_SCHEMA}


def _oracle(schema: type[BaseModel] | dict[str, Any]) -> Draft202012Validator:
    raw = schema if isinstance(schema, dict) else schema.model_json_schema()
    return Draft202012Validator(strict_schema(raw))


def _model_accepts(schema: type[BaseModel] | dict[str, Any], value: Any) -> bool:
    """A pydantic model may refuse what its JSON Schema allows (e.g. 9.2e18 for an int)."""
    if isinstance(schema, dict):
        return True
    try:
        schema.model_validate(value)
    except ValidationError:
        return False
    return True


def _wrap(value: Any, style: str) -> str:
    text = json.dumps(value)
    return f"```json\n{text}\n```" if style == "fenced" else text


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=JSON_VALUES | NEAR_ANSWERS | NEAR_CITIES | VALID_ANSWERS | VALID_CITIES,
    style=st.sampled_from(["bare", "fenced"]),
    max_repairs=st.integers(min_value=0, max_value=3),
    prior=st.integers(min_value=0, max_value=2),
)
def test_property_accepts_only_schema_valid_answers(
    kind: str, value: Any, style: str, max_repairs: int, prior: int
) -> None:
    schema = SCHEMAS[kind]
    validator = OutputValidator(schema, max_repairs=max_repairs)
    history: list[BaseMessage] = [QUESTION]
    for n in range(1, prior + 1):
        history += [
            AIMessage(content="{}"),
            HumanMessage(
                "fix it",
                name="agentguard",
                additional_kwargs={"agentguard": {"kind": "output_repair", "attempt": n}},
            ),
        ]
    history.append(AIMessage(content=_wrap(value, style)))
    valid = _oracle(schema).is_valid(value) and _model_accepts(schema, value)

    try:
        update = validator.node({"messages": history})
    except StructuredOutputError as err:
        event("failed closed")
        assert not valid
        assert prior >= max_repairs
        assert err.attempts == prior + 1
        assert err.errors
        return

    if "structured_response" in update:
        event("accepted")
        assert valid, "accepted a value the JSON Schema validator rejects"
        result = update["structured_response"]
        if isinstance(schema, dict):
            assert result == value
        else:
            assert isinstance(result, schema)
            assert _oracle(schema).is_valid(result.model_dump(mode="json"))
    else:
        event("repair requested")
        assert prior < max_repairs
        [repair] = update["messages"]
        assert validator.route({"messages": [*history, repair]}) == "repair"
        assert repair.additional_kwargs["agentguard"]["attempt"] == prior + 1
        if isinstance(schema, dict):
            # No false rejections for plain JSON Schema: a repair means the value was invalid.
            assert not valid


def _script(values: list[str]) -> Iterator[AIMessage]:
    return iter(AIMessage(content=v) for v in values)


def test_graph_terminates_at_end_after_success() -> None:
    model = GenericFakeChatModel(messages=_script(['{"name": "A", "age": 1}']))
    builder = StateGraph(State)
    builder.add_node("model", lambda s: {"messages": [model.invoke(s["messages"])]})
    builder.add_node("after", lambda s: {"messages": [AIMessage(content="post-processed")]})
    builder.add_edge(START, "model")
    builder.add_edge("model", "check")
    builder.add_edge("after", END)
    OutputValidator(Answer).add_to_graph(builder, model_node="model", name="check", end="after")
    out = builder.compile().invoke({"messages": [QUESTION]})
    assert out["structured_response"] == Answer(name="A", age=1)
    assert out["messages"][-1].content == "post-processed"
