"""Unit tests for `agentkit.tool`: schema generation, docstring parsing, binding, errors."""

import asyncio
import dataclasses
import datetime
import enum
import inspect
import json
import math
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, Optional

import jsonschema
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.errors import ToolArgumentsError, ToolDefinitionError
from agentkit.schema import example_value
from agentkit.tool import BoundTool, FunctionTool, Tool, ToolOptions, ToolSpec, as_tool, to_json_value, tool

# --- types and tools shared by the tests ----------------------------------------------


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Address(pydantic.BaseModel):
    street: str
    city: str


class Person(pydantic.BaseModel):
    name: str
    address: Address


class Document(pydantic.BaseModel):
    title: str
    body: str = ""


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    """A plain class: pydantic has no schema for it."""


UNTITLED = Document(title="Untitled")


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather for a city.

    Looks the city up in the forecast service.

    Args:
        city: The city's name,
            e.g. "Paris".
        unit: The temperature unit.

    Returns:
        A one-line forecast.

    Raises:
        LookupError: the city is unknown.
    """
    return f"{city}: 21 {unit}"


@tool
def kitchen_sink(
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    mode: Literal["fast", "slow"],
    unit: Unit,
    maybe: Optional[int],  # noqa: UP045 - the Optional spelling is what is under test
    either: int | None,
    numbers: list[int],
    scores: dict[str, int],
    person: Person,
    title: str,
    limit: int = 10,
    label: str | None = None,
) -> dict[str, Any]:
    """Take one argument of every supported type and echo them back."""
    return dict(locals())


@tool
def no_docstring(x: int) -> int:
    return x


@tool
async def slow_double(n: int) -> int:
    """Double a number, asynchronously.

    Args:
        n: The number.
    """
    await asyncio.sleep(0)
    return 2 * n


class Counter:
    """An object with method tools, like an Agent."""

    def __init__(self, start: int) -> None:
        self.total = start

    @tool
    def add(self, amount: int) -> int:
        """Add to the running total.

        Args:
            amount: How much to add.
        """
        self.total += amount
        return self.total

    @tool
    async def peek(self) -> int:
        """The running total."""
        return self.total

    def reset(self, value: int) -> None:
        """Not decorated: `as_tool` wraps it when given through an instance."""
        self.total = value


class SearchDocs(Tool):
    """Search the documentation.

    Matches page titles and bodies.
    """

    query: str
    """What to look for."""
    limit: int = pydantic.Field(2, description="How many hits to return.")
    title: str | None = None
    """Only pages with this title."""

    def run(self) -> list[str]:
        return [f"{self.query} #{i}" for i in range(self.limit)]


class FetchPage(Tool):
    """Fetch a web page."""

    tool_name = "fetch"
    tool_options = ToolOptions(retries=2, timeout=1.5, requires_approval=True, idempotent=False)
    tool_examples = ({"url": "https://example.org"},)

    url: str
    """The page's address."""

    async def run(self) -> str:
        await asyncio.sleep(0)
        return f"<html>{self.url}</html>"


class Echo(Tool):
    """Echo the text."""

    text: str = "hi"

    def run(self) -> str:
        return self.text


class NoRun(Tool):
    """Forgot to implement run()."""

    x: int


def _subclass(base: type[Tool], class_name: str, /, **namespace: Any) -> type[Tool]:
    """A subclass of `base` made at test time (the class name is part of what is tested)."""
    cls: type[Tool] = type(class_name, (base,), {"__module__": __name__, **namespace})
    return cls


def _schema_keys(node: Any) -> Iterator[str]:
    """The keywords of every schema object in `node` (property names and values excluded)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            if key in ("properties", "$defs"):
                for sub in value.values():
                    yield from _schema_keys(sub)
            elif key not in ("default", "enum", "const", "examples"):
                yield from _schema_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_keys(item)


# --- the function form ----------------------------------------------------------------


def test_bare_decorator_builds_spec_and_stays_callable() -> None:
    assert isinstance(get_weather, FunctionTool)
    assert get_weather("Oslo", unit="fahrenheit") == "Oslo: 21 fahrenheit"
    assert get_weather.spec.name == "get_weather"
    assert get_weather.options == ToolOptions()
    assert get_weather.__name__ == "get_weather"
    assert get_weather.__doc__ is not None
    assert get_weather.__doc__.startswith("Get the current weather")
    assert get_weather.__wrapped__("Rome") == "Rome: 21 celsius"


def test_decorator_with_options() -> None:
    def lookup(key: str, fresh: bool = False) -> str:
        """Look a key up."""
        return key.upper() if fresh else key

    decorated = tool(
        name="kv_lookup",
        description="Read the key-value store.",
        retries=3,
        timeout=2.5,
        requires_approval=True,
        idempotent=False,
        examples=[{"key": "colour"}, {"key": "size", "fresh": True}],
    )(lookup)

    assert decorated("abc", fresh=True) == "ABC"
    assert decorated.spec.name == "kv_lookup"
    assert decorated.spec.description == "Read the key-value store."
    assert decorated.spec.examples == ({"key": "colour"}, {"key": "size", "fresh": True})
    assert decorated.options == ToolOptions(retries=3, timeout=2.5, requires_approval=True, idempotent=False)
    bound = decorated.bind()
    assert bound.name == "kv_lookup"
    assert bound.options is decorated.options
    assert bound.is_async is False


def test_decorator_with_empty_parentheses_uses_defaults() -> None:
    def ping() -> str:
        return "pong"

    decorated = tool()(ping)

    assert decorated.spec == ToolSpec(
        name="ping",
        description="",
        parameters={"additionalProperties": False, "properties": {}, "type": "object"},
        result={"type": "string"},
    )
    assert decorated.options == ToolOptions(retries=0, timeout=None, requires_approval=False, idempotent=True)
    assert decorated.bind().validate({})() == "pong"


def test_explicit_empty_description_overrides_docstring() -> None:
    def documented(x: int) -> int:
        """A description that should not be used."""
        return x

    assert tool(description="")(documented).spec.description == ""


def test_async_function_tool() -> None:
    bound = slow_double.bind()

    assert bound.is_async is True
    assert asyncio.run(bound.validate({"n": 21})()) == 42
    assert asyncio.run(slow_double(5)) == 10


def test_validate_does_not_run_the_tool_until_the_thunk_is_called() -> None:
    calls: list[str] = []

    def record(word: str) -> None:
        calls.append(word)

    run = tool(record).bind().validate({"word": "once"})
    assert calls == []
    run()
    assert calls == ["once"]


# --- method tools -----------------------------------------------------------------------


def test_method_tool_spec_leaves_out_self() -> None:
    spec = Counter.add.spec

    assert spec.name == "add"
    assert spec.description == "Add to the running total."
    assert spec.parameters == {
        "additionalProperties": False,
        "properties": {"amount": {"description": "How much to add.", "type": "integer"}},
        "required": ["amount"],
        "type": "object",
    }
    assert Counter.peek.spec.parameters["properties"] == {}


def test_method_tool_through_an_instance_binds_to_that_instance() -> None:
    first, second = Counter(10), Counter(100)

    assert first.add.spec is Counter.add.spec
    assert first.add.bind().validate({"amount": 5})() == 15
    assert second.add.bind().validate({"amount": 1})() == 101
    assert (first.total, second.total) == (15, 101)


def test_method_tool_through_an_instance_is_callable_like_a_bound_method() -> None:
    counter = Counter(1)

    assert counter.add(2) == 3
    assert counter.add(amount=4) == 7
    # Through the class it is the FunctionTool itself, called with an explicit instance.
    assert Counter.add(counter, 1) == 8


def test_async_method_tool() -> None:
    bound = Counter(7).peek.bind()

    assert bound.is_async is True
    assert asyncio.run(bound.validate({})()) == 7


def test_binding_a_method_tool_without_an_instance_raises() -> None:
    with pytest.raises(ToolDefinitionError, match=r"Counter\.add.*is a method"):
        Counter.add.bind()


# --- the class form ---------------------------------------------------------------------


def test_tool_class_spec() -> None:
    spec = SearchDocs.spec

    assert spec.name == "search_docs"
    assert spec.description == "Search the documentation.\n\nMatches page titles and bodies."
    assert spec.parameters == {
        "additionalProperties": False,
        "properties": {
            "query": {"description": "What to look for.", "type": "string"},
            "limit": {"default": 2, "description": "How many hits to return.", "type": "integer"},
            "title": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
                "description": "Only pages with this title.",
            },
        },
        "required": ["query"],
        "type": "object",
    }
    assert spec.result == {"items": {"type": "string"}, "type": "array"}
    assert spec.examples == ()


def test_tool_class_sync_run() -> None:
    bound = SearchDocs.bind()

    assert bound.is_async is False
    assert bound.options == ToolOptions()
    assert bound.validate({"query": "retries"})() == ["retries #0", "retries #1"]
    assert bound.validate({"query": "x", "limit": 3})() == ["x #0", "x #1", "x #2"]


def test_tool_class_async_run_and_class_variable_options() -> None:
    bound = FetchPage.bind()

    assert bound.name == "fetch"
    assert bound.is_async is True
    assert bound.options == ToolOptions(retries=2, timeout=1.5, requires_approval=True, idempotent=False)
    assert bound.spec.examples == ({"url": "https://example.org"},)
    assert bound.spec.result == {"type": "string"}
    assert asyncio.run(bound.validate({"url": "https://a.example"})()) == "<html>https://a.example</html>"


@pytest.mark.parametrize(
    ("class_name", "tool_name"),
    [("Search", "search"), ("GetWeather", "get_weather"), ("ReadFileLines", "read_file_lines")],
)
def test_tool_class_name_defaults_to_snake_case(class_name: str, tool_name: str) -> None:
    assert _subclass(Echo, class_name).spec.name == tool_name


def test_tool_class_name_class_variable_overrides() -> None:
    assert _subclass(Echo, "LongClassName", tool_name="short").spec.name == "short"


def test_tool_class_without_run_has_no_spec_and_cannot_be_used() -> None:
    # A class without run() may be a base for other tools: defining it is fine.
    assert "spec" not in vars(NoRun)
    with pytest.raises(ToolDefinitionError, match=r"NoRun.*implement run\(\)"):
        as_tool(NoRun)


def test_tool_class_spec_is_built_once_per_class() -> None:
    child = _subclass(Echo, "LoudEcho")

    assert Echo.spec is Echo.spec
    assert child.spec.name == "loud_echo"
    assert Echo.spec.name == "echo"


def test_tool_class_with_bad_example_fails_when_defined() -> None:
    with pytest.raises(ToolDefinitionError, match=r"BadExample.*txt"):
        _subclass(Echo, "BadExample", tool_examples=({"txt": "typo"},))


def test_tool_class_with_bad_name_fails_when_defined() -> None:
    with pytest.raises(ToolDefinitionError, match=r"BadName.*'bad name'"):
        _subclass(Echo, "BadName", tool_name="bad name")


@pytest.mark.parametrize("field", ["run", "spec", "bind", "tool_name"])
def test_tool_class_fields_may_not_take_tool_s_own_names(field: str) -> None:
    # Pydantic warns about the shadowing first; agentkit then refuses the class.
    with (
        pytest.warns(UserWarning, match="shadows an attribute"),
        pytest.raises(ToolDefinitionError, match=rf"Clash.*\['{field}'\] belong to Tool itself"),
    ):
        type(
            "Clash",
            (Echo,),
            {"__module__": __name__, "__annotations__": {field: str}, field: "x", "run": Echo.run},
        )


def test_tool_class_with_a_field_of_no_schema_fails_when_defined() -> None:
    with pytest.raises(ToolDefinitionError, match=r"Hook.*no JSON Schema"):

        class Hook(Tool):
            """Takes a callback."""

            callback: Callable[[], None]

            def run(self) -> None:
                self.callback()


def test_tool_class_invalid_arguments_raise() -> None:
    with pytest.raises(ToolArgumentsError, match=r"'search_docs'.*limit") as info:
        SearchDocs.bind().validate({"query": "x", "limit": "many"})
    assert info.value.tool == "search_docs"


# --- generated JSON Schema --------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "fragment"),
    [
        ("text", {"type": "string"}),
        ("count", {"type": "integer"}),
        ("ratio", {"type": "number"}),
        ("flag", {"type": "boolean"}),
        ("mode", {"enum": ["fast", "slow"], "type": "string"}),
        ("unit", {"$ref": "#/$defs/Unit"}),
        ("maybe", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ("either", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ("numbers", {"items": {"type": "integer"}, "type": "array"}),
        ("scores", {"additionalProperties": {"type": "integer"}, "type": "object"}),
        ("person", {"$ref": "#/$defs/Person"}),
        ("title", {"type": "string"}),
        ("limit", {"default": 10, "type": "integer"}),
        ("label", {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}),
    ],
)
def test_schema_of_each_supported_type(param: str, fragment: dict[str, Any]) -> None:
    assert kitchen_sink.spec.parameters["properties"][param] == fragment


def test_schema_defs_of_enum_and_nested_models() -> None:
    assert kitchen_sink.spec.parameters["$defs"] == {
        "Unit": {"enum": ["celsius", "fahrenheit"], "type": "string"},
        "Address": {
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            "required": ["street", "city"],
            "type": "object",
        },
        "Person": {
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/Address"}},
            "required": ["name", "address"],
            "type": "object",
        },
    }


def test_schema_requires_exactly_the_parameters_without_default() -> None:
    parameters = kitchen_sink.spec.parameters

    assert parameters["type"] == "object"
    assert parameters["additionalProperties"] is False
    assert parameters["required"] == [
        "text",
        "count",
        "ratio",
        "flag",
        "mode",
        "unit",
        "maybe",
        "either",
        "numbers",
        "scores",
        "person",
        "title",
    ]
    assert get_weather.spec.parameters["required"] == ["city"]
    assert get_weather.spec.parameters["properties"]["unit"]["default"] == "celsius"


@pytest.mark.parametrize(
    "spec",
    [get_weather.spec, kitchen_sink.spec, Counter.add.spec, SearchDocs.spec, FetchPage.spec],
    ids=lambda spec: spec.name,
)
def test_no_title_keywords_remain_but_a_property_named_title_is_kept(spec: ToolSpec) -> None:
    keys = set(_schema_keys(spec.parameters)) | set(_schema_keys(spec.result))

    assert "title" not in keys
    assert "type" in keys
    if spec.name in ("kitchen_sink", "search_docs"):
        assert "title" in spec.parameters["properties"]


def test_a_model_field_named_title_is_kept() -> None:
    def publish(doc: Document) -> Document:
        return doc

    spec = tool(publish).spec

    assert spec.parameters["$defs"]["Document"]["properties"]["title"] == {"type": "string"}
    assert spec.parameters["$defs"]["Document"]["required"] == ["title"]
    assert spec.result is not None
    assert spec.result["properties"]["title"] == {"type": "string"}


def test_a_default_value_with_a_title_key_is_kept() -> None:
    def publish(doc: Document = UNTITLED) -> str:
        return doc.title

    spec = tool(publish).spec

    assert spec.parameters["properties"]["doc"]["default"] == {"title": "Untitled", "body": ""}


ALL_SPECS = [
    get_weather.spec,
    kitchen_sink.spec,
    no_docstring.spec,
    slow_double.spec,
    Counter.add.spec,
    Counter.peek.spec,
    SearchDocs.spec,
    FetchPage.spec,
    Echo.spec,
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda spec: spec.name)
def test_schemas_are_valid_json_schema(spec: ToolSpec) -> None:
    jsonschema.Draft202012Validator.check_schema(spec.parameters)
    if spec.result is not None:
        jsonschema.Draft202012Validator.check_schema(spec.result)


BINDABLE = [get_weather, kitchen_sink, no_docstring, slow_double, SearchDocs, FetchPage, Echo]


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(candidate=st.sampled_from(BINDABLE))
def test_example_values_are_accepted_by_validate(candidate: Any) -> None:
    bound = as_tool(candidate)
    example = example_value(bound.spec.parameters)

    jsonschema.Draft202012Validator(bound.spec.parameters).validate(example)
    run = bound.validate(example)
    result = asyncio.run(run()) if bound.is_async else run()
    json.dumps(to_json_value(result))


ARGUMENT_TYPES: list[Any] = [
    str,
    int,
    float,
    bool,
    Literal["low", "high"],
    Unit,
    Optional[int],  # noqa: UP045 - both spellings of an optional are supported
    str | None,
    list[int],
    dict[str, int],
    Address,
    list[Address],
    Address | None,
]
ARGUMENT_NAMES = ["query", "count", "title", "ratio", "enabled", "mode", "unit", "tags", "scores", "address"]


def _echo_function(arguments: list[tuple[str, Any]]) -> Any:
    """A function named `echo` with the given typed keyword arguments, returning them."""

    def echo(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    parameters = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a) for n, a in arguments]
    echo.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    echo.__annotations__ = {**dict(arguments), "return": dict[str, Any]}
    return echo


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    arguments=st.lists(
        st.tuples(st.sampled_from(ARGUMENT_NAMES), st.sampled_from(ARGUMENT_TYPES)),
        max_size=5,
        unique_by=lambda pair: pair[0],
    )
)
def test_generated_signatures_round_trip_their_example_arguments(arguments: list[tuple[str, Any]]) -> None:
    bound = tool(_echo_function(arguments)).bind()
    parameters = bound.spec.parameters

    jsonschema.Draft202012Validator.check_schema(parameters)
    assert sorted(parameters["properties"]) == sorted(name for name, _ in arguments)
    example = example_value(parameters)
    jsonschema.Draft202012Validator(parameters).validate(example)
    received = bound.validate(example)()
    assert to_json_value(received) == example


# --- docstrings -----------------------------------------------------------------------


def test_docstring_argument_descriptions_land_on_their_properties() -> None:
    properties = get_weather.spec.parameters["properties"]

    assert properties["unit"] == {
        "default": "celsius",
        "description": "The temperature unit.",
        "enum": ["celsius", "fahrenheit"],
        "type": "string",
    }
    assert properties["city"]["description"] == 'The city\'s name,\ne.g. "Paris".'


def test_description_excludes_args_returns_and_raises_sections() -> None:
    assert get_weather.spec.description == (
        "Get the current weather for a city.\n\nLooks the city up in the forecast service."
    )


def test_no_docstring_gives_an_empty_description() -> None:
    assert no_docstring.spec.description == ""
    assert no_docstring.spec.parameters["properties"] == {"x": {"type": "integer"}}


def test_a_wrapped_summary_is_not_split_into_paragraphs() -> None:
    def forecast(city: str) -> str:
        """Get the forecast for a city over
        the next three days.

        Args:
            city: The city's name.
        """
        return city

    description = tool(forecast).spec.description

    assert "\n\n" not in description
    assert " ".join(description.split()) == "Get the forecast for a city over the next three days."


def test_annotated_field_description_is_kept() -> None:
    def repeat(times: Annotated[int, pydantic.Field(ge=1, description="How many times.")]) -> int:
        return times

    assert tool(repeat).spec.parameters["properties"]["times"] == {
        "description": "How many times.",
        "minimum": 1,
        "type": "integer",
    }


# --- result schema --------------------------------------------------------------------


def returns_text() -> str:
    return ""


def returns_person() -> Person:
    return Person(name="n", address=Address(street="s", city="c"))


def returns_numbers() -> list[int]:
    return []


def returns_none() -> None:
    return None


def returns_unannotated():
    return 1


def returns_opaque() -> Opaque:
    return Opaque()


@pytest.mark.parametrize(
    ("func", "result"),
    [
        (returns_text, {"type": "string"}),
        (returns_numbers, {"items": {"type": "integer"}, "type": "array"}),
        (returns_none, None),
        (returns_unannotated, None),
    ],
)
def test_result_schema_from_return_annotation(func: Any, result: dict[str, Any] | None) -> None:
    assert tool(func).spec.result == result


def test_result_schema_of_a_pydantic_model() -> None:
    assert tool(returns_person).spec.result == {
        "$defs": {
            "Address": {
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                "required": ["street", "city"],
                "type": "object",
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/Address"}},
        "required": ["name", "address"],
        "type": "object",
    }


def test_return_type_without_json_schema_raises() -> None:
    with pytest.raises(ToolDefinitionError, match=r"returns_opaque.*return type .*Opaque"):
        tool(returns_opaque)


# --- definition errors ----------------------------------------------------------------


def takes_varargs(*items: int) -> int:
    return len(items)


def takes_kwargs(**options: str) -> int:
    return len(options)


def takes_unannotated(count) -> int:
    return int(count)


def takes_positional_only(count: int, /) -> int:
    return count


def takes_opaque(thing: Opaque) -> str:
    return repr(thing)


def takes_private(_secret: int) -> int:
    return _secret


@pytest.mark.parametrize(
    ("func", "param", "reason"),
    [
        (takes_varargs, "items", "*args and **kwargs"),
        (takes_kwargs, "options", "*args and **kwargs"),
        (takes_unannotated, "count", "add a type annotation"),
        (takes_positional_only, "count", "positional-only"),
        (takes_opaque, "thing", "has no JSON Schema"),
    ],
)
def test_undescribable_signatures_raise(func: Any, param: str, reason: str) -> None:
    with pytest.raises(ToolDefinitionError) as info:
        tool(func)

    message = str(info.value)
    assert func.__name__ in message
    assert f"parameter {param!r}" in message
    assert reason in message
    assert isinstance(info.value, TypeError)


def test_leading_underscore_and_basemodel_names_are_plain_arguments() -> None:
    # Parameters become pydantic fields under internal names with the parameter's
    # name as the alias, so names pydantic reserves are still usable.
    bound = tool(takes_private).bind()
    assert "_secret" in bound.spec.parameters["properties"]
    assert bound.spec.parameters["required"] == ["_secret"]

    @tool
    def shadowing(json: str, schema: int, model_config: bool) -> str:
        """Names that BaseModel uses itself."""
        return f"{json}-{schema}-{model_config}"

    assert sorted(shadowing.spec.parameters["properties"]) == ["json", "model_config", "schema"]
    assert shadowing.bind().validate({"json": "a", "schema": 2, "model_config": True})() == "a-2-True"


@pytest.mark.parametrize("bad_name", ["bad name", "1st", "kebab-case", "dotted.name", "x" * 65, "naïve"])
def test_bad_tool_names_raise(bad_name: str) -> None:
    with pytest.raises(ToolDefinitionError) as info:
        tool(name=bad_name)(returns_text)

    assert "returns_text" in str(info.value)
    assert repr(bad_name) in str(info.value)


def test_a_64_character_name_is_accepted() -> None:
    assert tool(name="x" * 64)(returns_text).spec.name == "x" * 64


def test_a_name_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(ToolDefinitionError):
        tool(name="search\n")(returns_text)


def test_an_empty_name_is_rejected() -> None:
    with pytest.raises(ToolDefinitionError):
        tool(name="")(returns_text)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ToolDefinitionError, match="'<lambda>'"):
        as_tool(lambda: None)


@pytest.mark.parametrize(
    ("example", "field"),
    [({"unit": "celsius"}, "city"), ({"city": "Oslo", "unit": "kelvin"}, "unit"), ({"city": "Oslo", "zip": 1}, "zip")],
)
def test_an_example_that_does_not_fit_raises(example: dict[str, Any], field: str) -> None:
    with pytest.raises(ToolDefinitionError) as info:
        tool(examples=[example])(get_weather.func)

    message = str(info.value)
    assert "get_weather" in message
    assert "does not fit" in message
    assert f"{field}:" in message


@pytest.mark.parametrize(("option", "value"), [("retries", -1), ("timeout", 0), ("timeout", -2.5)])
def test_bad_options_raise(option: str, value: float) -> None:
    def noop() -> None:
        """Nothing."""

    with pytest.raises(ToolDefinitionError, match=rf"{option} must be .*got {value}"):
        tool(**{option: value})(noop)


@pytest.mark.parametrize(("option", "value"), [("retries", -1), ("timeout", 0)])
def test_bad_option_errors_name_the_function(option: str, value: float) -> None:
    with pytest.raises(ToolDefinitionError, match=rf"returns_text.*{option}|{option}.*returns_text"):
        tool(**{option: value})(returns_text)


def test_a_nan_timeout_is_rejected() -> None:
    with pytest.raises(ToolDefinitionError, match="timeout"):
        tool(timeout=math.nan)(returns_text)


@pytest.mark.parametrize("options", [{"retries": -1}, {"timeout": 0}], ids=["retries", "timeout"])
def test_tool_class_bad_options_raise(options: dict[str, Any]) -> None:
    with pytest.raises(ToolDefinitionError, match="BadOptions"):
        _subclass(Echo, "BadOptions", tool_options=ToolOptions(**options))


def test_tool_class_fields_may_use_the_names_of_tool_settings() -> None:
    class CreateUser(Tool):
        """Create a user."""

        name: str
        """The user's name."""
        timeout: int
        """Session timeout in minutes."""
        examples: list[str] = []
        """Sample posts."""

        def run(self) -> str:
            return f"{self.name}/{self.timeout}/{len(self.examples)}"

    bound = as_tool(CreateUser)
    assert bound.spec.name == "create_user"
    assert bound.spec.parameters["required"] == ["name", "timeout"]
    assert bound.options == ToolOptions()
    assert bound.validate({"name": "ada", "timeout": 5})() == "ada/5/0"


def test_tool_class_name_splits_a_leading_acronym() -> None:
    assert _subclass(Echo, "HTTPFetch").spec.name == "http_fetch"


# --- validating arguments ---------------------------------------------------------------


def test_valid_arguments_run_the_tool_with_coerced_values() -> None:
    arguments = {
        "text": "hello",
        "count": "3",
        "ratio": 2,
        "flag": True,
        "mode": "slow",
        "unit": "fahrenheit",
        "maybe": None,
        "either": 4,
        "numbers": [1, 2],
        "scores": {"a": 1},
        "person": {"name": "Ada", "address": {"street": "1 Main St", "city": "London"}},
        "title": "Dr",
    }

    received = kitchen_sink.bind().validate(arguments)()

    assert received["unit"] is Unit.FAHRENHEIT
    assert received["person"] == Person(name="Ada", address=Address(street="1 Main St", city="London"))
    assert isinstance(received["person"].address, Address)
    assert received["count"] == 3
    assert isinstance(received["ratio"], float)
    assert (received["limit"], received["label"]) == (10, None)
    assert received["numbers"] == [1, 2]


@pytest.mark.parametrize(
    ("arguments", "field", "problem"),
    [
        ({"city": 3}, "city", "valid string"),
        ({}, "city", "Field required"),
        ({"city": "Oslo", "country": "NO"}, "country", "Extra inputs are not permitted"),
        ({"city": "Oslo", "unit": "kelvin"}, "unit", "'celsius' or 'fahrenheit'"),
        (["Oslo"], "(arguments)", "valid dictionary"),
    ],
)
def test_invalid_arguments_raise(arguments: Any, field: str, problem: str) -> None:
    with pytest.raises(ToolArgumentsError) as info:
        get_weather.bind().validate(arguments)

    error = info.value
    assert error.tool == "get_weather"
    assert str(error).startswith("invalid arguments for tool 'get_weather': ")
    assert f"{field}: " in error.details
    assert problem in error.details
    assert isinstance(error, ValueError)


def test_invalid_nested_argument_names_its_path() -> None:
    arguments = example_value(kitchen_sink.spec.parameters)
    arguments["person"] = {"name": "Ada", "address": {"street": "1 Main St"}}

    with pytest.raises(ToolArgumentsError, match=r"person\.address\.city: Field required"):
        kitchen_sink.bind().validate(arguments)


# --- to_json_value ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        (3, 3),
        (2.5, 2.5),
        (None, None),
        (False, False),
        (Address(street="s", city="c"), {"street": "s", "city": "c"}),
        (Point(x=1, y=2), {"x": 1, "y": 2}),
        (Unit.CELSIUS, "celsius"),
        (
            [
                Person(name="a", address=Address(street="s", city="c")),
                Person(name="b", address=Address(street="t", city="d")),
            ],
            [
                {"name": "a", "address": {"street": "s", "city": "c"}},
                {"name": "b", "address": {"street": "t", "city": "d"}},
            ],
        ),
        ({"when": datetime.date(2024, 1, 2), "where": (1, 2)}, {"when": "2024-01-02", "where": [1, 2]}),
    ],
    ids=["str", "int", "float", "none", "bool", "model", "dataclass", "enum", "list_of_models", "dict_of_date_tuple"],
)
def test_to_json_value(value: Any, expected: Any) -> None:
    converted = to_json_value(value)

    assert converted == expected
    assert type(converted) is type(expected)
    assert json.loads(json.dumps(converted)) == expected


def test_to_json_value_of_an_unserialisable_object_raises() -> None:
    with pytest.raises(TypeError) as info:
        to_json_value(object())

    message = str(info.value)
    assert "cannot serialise a object" in message
    assert "return a str, a dict, a list, a dataclass or a Pydantic model" in message


def test_to_json_value_names_the_unserialisable_item_in_a_container() -> None:
    with pytest.raises(TypeError, match="Opaque"):
        to_json_value([Opaque()])


# --- as_tool ----------------------------------------------------------------------------


def test_as_tool_accepts_a_function_tool() -> None:
    bound = as_tool(get_weather)

    assert isinstance(bound, BoundTool)
    assert bound.spec is get_weather.spec
    assert bound.validate({"city": "Oslo"})() == "Oslo: 21 celsius"


def test_as_tool_accepts_a_tool_class() -> None:
    bound = as_tool(SearchDocs)

    assert bound.spec is SearchDocs.spec
    assert bound.validate({"query": "q", "limit": 1})() == ["q #0"]


def test_as_tool_accepts_a_plain_typed_function() -> None:
    def multiply(a: int, b: int = 2) -> int:
        """Multiply two numbers.

        Args:
            a: The first factor.
        """
        return a * b

    bound = as_tool(multiply)

    assert bound.name == "multiply"
    assert bound.spec.description == "Multiply two numbers."
    assert bound.spec.parameters["properties"]["a"]["description"] == "The first factor."
    assert bound.options == ToolOptions()
    assert bound.validate({"a": 3})() == 6


def test_as_tool_returns_a_bound_tool_unchanged() -> None:
    bound = get_weather.bind()

    assert as_tool(bound) is bound


def test_as_tool_accepts_method_tools_and_plain_methods_of_an_instance() -> None:
    counter = Counter(0)

    assert as_tool(counter.add).validate({"amount": 2})() == 2
    reset = as_tool(counter.reset)
    assert reset.spec.parameters["properties"] == {"value": {"type": "integer"}}
    reset.validate({"value": 9})()
    assert counter.total == 9
    with pytest.raises(ToolDefinitionError, match="is a method"):
        as_tool(Counter.add)


@pytest.mark.parametrize("obj", [42, "get_weather", None, Echo(), Counter, len, takes_unannotated])
def test_as_tool_rejects_what_is_not_a_tool(obj: Any) -> None:
    with pytest.raises(ToolDefinitionError):
        as_tool(obj)


# --- where a sync tool runs ------------------------------------------------------------


def _threads_of(fn: Any, calls: int, **options: Any) -> list[str]:
    import asyncio
    import threading

    from agentkit.executor import Executor
    from agentkit.messages import ToolCall

    seen: list[str] = []

    def where(n: int) -> int:
        """Say where it ran.

        Args:
            n: A number.
        """
        seen.append(threading.current_thread().name)
        fn()
        return n

    bound = tool(**options)(where).bind()
    executor = Executor({bound.name: bound})

    async def go() -> None:
        for n in range(calls):
            result = await executor.run(ToolCall(name="where", arguments={"n": n}))
            assert result.content == n

    asyncio.run(go())
    return ["loop" if name == threading.main_thread().name else "thread" for name in seen]


@pytest.fixture
def lenient_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    # "Fast" is 50 µs of the tool's own time; a loaded CI machine can stretch a
    # no-op past that now and then. The logic, not the machine, is under test.
    monkeypatch.setattr(sys.modules["agentkit.tool"], "PACE_FAST", 0.5)


@pytest.mark.usefixtures("lenient_pace")
def test_a_fast_sync_tool_moves_onto_the_loop_after_proving_fast() -> None:
    from agentkit.tool import PACE_CALLS

    places = _threads_of(lambda: None, PACE_CALLS + 3)
    assert places == ["thread"] * PACE_CALLS + ["loop"] * 3


def test_a_slow_sync_tool_stays_in_threads() -> None:
    import time

    assert _threads_of(lambda: time.sleep(0.002), 12) == ["thread"] * 12  # 2 ms: never "fast"


@pytest.mark.usefixtures("lenient_pace")
def test_inline_false_always_hops_and_a_timeout_needs_a_thread() -> None:
    assert _threads_of(lambda: None, 12, inline=False) == ["thread"] * 12
    assert _threads_of(lambda: None, 12, timeout=5) == ["thread"] * 12
    assert _threads_of(lambda: None, 2, inline=True) == ["loop"] * 2


@pytest.mark.usefixtures("lenient_pace")
def test_a_paced_tool_that_turns_slow_goes_back_to_threads() -> None:
    import time

    from agentkit.tool import PACE_CALLS

    calls = iter(range(100))

    def sometimes_slow() -> None:
        if next(calls) == PACE_CALLS:  # the first inline call
            time.sleep(0.005)  # over PACE_SLOW (1 ms)

    places = _threads_of(sometimes_slow, 3 * PACE_CALLS + 3)
    # Back to threads after the slow call, and inline again only after twice as many fast calls.
    assert places == ["thread"] * PACE_CALLS + ["loop"] + ["thread"] * 2 * PACE_CALLS + ["loop"] * 2


def test_an_unknown_tool_setting_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) timout; known: .*'timeout'"):
        tool(timout=5)  # type: ignore[call-overload]
