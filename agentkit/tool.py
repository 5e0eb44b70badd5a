"""What a tool is: a typed function or a Pydantic class the model may call.

Two forms, one result: both produce a `ToolSpec` (name, description, JSON Schema
of the arguments and of the result) and an executable `BoundTool`.

A function (sync or async), its description and per-argument descriptions
taken from the Google-style docstring:

    @tool
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
        '''Get the current weather for a city.

        Args:
            city: The city's name, e.g. "Paris".
            unit: The temperature unit.
        '''

A class, whose fields are the arguments:

    class Search(Tool):
        '''Search the documentation.'''

        query: str
        '''What to look for.'''

        def run(self) -> list[str]: ...

An argument typed `pydantic.SecretStr` (any argument its JSON Schema marks
`writeOnly`, or `format: password`) reaches the tool whole, and is declared a
secret when validated: the store, traces and logs show `[secret]` instead
(`agentkit.secrets`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, overload

import pydantic
import pydantic_core
from pydantic.alias_generators import to_snake

from agentkit.errors import ToolArgumentsError, ToolDefinitionError
from agentkit.grammar import Chars, Rep, regex, seq
from agentkit.schema import strip_titles
from agentkit.secrets import declare_arguments, marks_secrets

__all__ = ["BoundTool", "Tool", "ToolOptions", "ToolSpec", "as_tool", "to_json_value", "tool"]

P = ParamSpec("P")
R = TypeVar("R")

NAME = seq(Chars("A-Za-z_"), Rep(Chars("A-Za-z0-9_"), 0, 63))
"""A tool's name: what a model writes inside its call syntax (the grammar and the parsers read it so)."""
_NAME = re.compile(regex(NAME))


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """What the model is told about a tool."""

    name: str
    """The name the model calls it by: letters, digits and `_`."""
    description: str
    """What the tool does, from the docstring."""
    parameters: Mapping[str, Any]
    """JSON Schema (2020-12) of the arguments object."""
    result: Mapping[str, Any] | None = None
    """JSON Schema of the result, when the tool declares a return type."""
    examples: tuple[Mapping[str, Any], ...] = ()
    """Example argument objects, used to write worked examples for small models."""

    def __post_init__(self) -> None:
        # Every way to make one (`@tool`, `Tool`, a hand-written spec) is checked:
        # a name the parser cannot read would be offered, and every call to it refused.
        _check_name("ToolSpec", self.name)


@dataclass(frozen=True, kw_only=True)
class ToolOptions:
    """How the executor runs a tool."""

    retries: int = 0
    """Extra attempts after the tool raises (only worth it for transient failures)."""
    timeout: float | None = None
    """Seconds the tool may run; past that its call fails with a timeout result."""
    requires_approval: bool = False
    """Each call needs a decision before it runs: the agent's `approve`
    callback's, else the run pauses (`awaiting_approval`) until one is given."""
    idempotent: bool = True
    """Safe to run again with the same arguments (matters when a run is resumed)."""
    inline: bool | None = None
    """Run a sync tool on the event loop (True) or always in a worker thread (False).

    A thread hop costs 0.1-0.3 ms per call; for a tool that returns in
    microseconds (a lookup, arithmetic) that is most of a step. An inline tool
    blocks every other task on the loop while it runs, and cannot time out.
    None (the default) decides from the tool's pace: a sync tool without a
    `timeout` runs in a thread until its last `PACE_CALLS` calls each took
    under `PACE_FAST` seconds, then inline; an inline call over `PACE_SLOW`
    sends it back to threads, and it must then prove fast for twice as many
    calls (the process being preempted can make a quick call slow now and then)."""
    max_result_chars: int | None = None
    """Longest result the model reads: a longer one is cut, with a marker saying
    how much was left out. The store always keeps the whole result."""


PACE_CALLS = 8
"""Fast calls in a row after which a sync tool with `inline=None` runs inline."""
PACE_FAST = 50e-6
"""A call this quick (seconds of the tool's own time) counts as fast."""
PACE_SLOW = 1e-3
"""An inline call slower than this sends the tool back to threads (see `Pace`)."""


@dataclass(kw_only=True)
class Pace:
    """How fast a sync tool's recent calls were (see `ToolOptions.inline`)."""

    fast: int = 0
    """Fast calls in a row, in threads."""
    needed: int = PACE_CALLS
    """Fast calls in a row it takes to run inline; doubled by each slow inline call."""

    def inline(self) -> bool:
        return self.fast >= self.needed

    def record(self, seconds: float, *, inline: bool) -> None:
        if inline:
            if seconds > PACE_SLOW:  # back to threads, and slower to trust it again
                self.fast, self.needed = 0, self.needed * 2
        else:
            self.fast = self.fast + 1 if seconds < PACE_FAST else 0


@dataclass(frozen=True, kw_only=True)
class BoundTool:
    """A tool ready to run: its spec, its options, and how to validate and call it."""

    spec: ToolSpec
    options: ToolOptions
    validate: Callable[[Mapping[str, Any]], Callable[[], Any]]
    """Checks the arguments and returns a zero-argument callable that runs the tool."""
    is_async: bool
    """The callable returns an awaitable (run on the event loop, not in a thread)."""
    pace: Pace = field(default_factory=Pace, compare=False, repr=False)
    """How fast its recent calls were (a sync tool with `inline=None` goes by it)."""

    @property
    def name(self) -> str:
        return self.spec.name


# --- schema helpers -----------------------------------------------------------------


def _check_schema(owner: str, schema: Mapping[str, Any]) -> None:
    import jsonschema  # here, not at `import agentkit`: it takes longer to import than the rest of agentkit

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:  # pragma: no cover - pydantic emits valid schemas
        raise ToolDefinitionError(f"{owner}: generated an invalid JSON Schema: {exc.message}") from exc


def _check_name(owner: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ToolDefinitionError(
            f"{owner}: tool name {name!r} must be 1-64 letters, digits or '_' and not start "
            "with a digit (the model writes it inside its call syntax)"
        )
    return name


_TOOL_SETTINGS = frozenset(("name", "description", "examples", *(f.name for f in dataclasses.fields(ToolOptions))))


def _options(owner: str, **settings: Any) -> ToolOptions:
    """`ToolOptions` from `settings`, each checked (`owner` names the tool in errors)."""
    options = ToolOptions(**settings)
    retries, timeout, limit = options.retries, options.timeout, options.max_result_chars
    if not isinstance(retries, int) or retries < 0:
        raise ToolDefinitionError(f"{owner}: retries must be a whole number >= 0, got {retries!r}")
    if timeout is not None and not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ToolDefinitionError(f"{owner}: timeout must be a finite number of seconds > 0, got {timeout!r}")
    if options.inline is True and timeout is not None:
        raise ToolDefinitionError(f"{owner}: an inline tool runs on the event loop and cannot be timed out")
    if limit is not None and not (isinstance(limit, int) and limit >= 64):
        raise ToolDefinitionError(f"{owner}: max_result_chars must be a whole number >= 64, got {limit!r}")
    return options


def _describe(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description and the per-argument descriptions of a Google-style docstring."""
    if not doc:
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(inspect.cleandoc(doc), style=docstring_parser.DocstringStyle.GOOGLE)
    params = {p.arg_name: (p.description or "").strip() for p in parsed.params}
    return (parsed.description or "").strip(), params


def to_json_value(value: Any) -> Any:
    """Serialise a tool's return value to JSON-compatible data.

    Strings stay strings; Pydantic models, dataclasses, enums, dates and
    containers of them become plain JSON values.

    Raises:
        TypeError: the value has no JSON form.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value

    def refuse(item: Any) -> Any:
        raise TypeError(
            f"cannot serialise a {type(item).__name__} to JSON; return a str, a dict, a "
            "list, a dataclass or a Pydantic model"
        )

    return pydantic_core.to_jsonable_python(value, fallback=refuse)


def _format_validation_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


# --- the function form --------------------------------------------------------------


def _argument_field(
    owner: str, param: inspect.Parameter, hints: Mapping[str, Any], docs: Mapping[str, str]
) -> tuple[Any, Any]:
    """A function parameter as a field of the arguments' model: its type and a `pydantic.Field`.

    Raises:
        ToolDefinitionError: the parameter cannot be described to a model.
    """
    where = f"{owner}, parameter {param.name!r}"
    if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise ToolDefinitionError(
            f"{where}: *args and **kwargs cannot be described to a model; declare each argument with a type"
        )
    if param.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise ToolDefinitionError(f"{where}: positional-only parameters are not supported")
    if param.name not in hints:
        raise ToolDefinitionError(f"{where}: add a type annotation (the schema is built from it)")
    annotation = hints[param.name]
    try:
        pydantic.TypeAdapter(annotation).json_schema()
    except Exception as exc:
        raise ToolDefinitionError(
            f"{where}: type {annotation!r} has no JSON Schema ({exc}); use str, int, float, "
            "bool, Literal, Enum, Optional, list, dict or a Pydantic model"
        ) from exc
    default = ... if param.default is inspect.Parameter.empty else param.default
    # A description from `Annotated[..., Field(description=...)]` stands unless the docstring gives one.
    extra: dict[str, Any] = {"description": docs[param.name]} if docs.get(param.name) else {}
    return annotation, pydantic.Field(default, alias=param.name, **extra)


def _result_schema(owner: str, returns: Any) -> dict[str, Any] | None:
    """The JSON Schema of what a function returns (None when it says nothing useful)."""
    if returns in (inspect.Parameter.empty, None, type(None), Any):
        return None
    try:
        schema: dict[str, Any] = strip_titles(pydantic.TypeAdapter(returns).json_schema())
    except Exception as exc:
        raise ToolDefinitionError(
            f"{owner}: return type {returns!r} has no JSON Schema ({exc}); return a str, a "
            "dict, a list, a dataclass or a Pydantic model"
        ) from exc
    return schema


class FunctionTool(Generic[P, R]):
    """A function turned into a tool by `@tool`. Still callable as the function.

    Used on a method (an `Agent`'s, say), it binds to the instance like a method
    does, and the bound tool leaves `self` out of its schema.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        options: ToolOptions,
        examples: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        self.func = func
        self._pace = Pace()
        """Shared by every binding: the tool's pace outlives the agents that use it."""
        self.options = options
        owner = f"tool {getattr(func, '__qualname__', func)!r}"
        self._owner = owner
        sig = inspect.signature(func)
        params = list(sig.parameters.values())
        # A function defined in a class body takes `self` first: bind it later.
        self.is_method = (
            bool(params) and params[0].name in ("self", "cls") and (params[0].annotation is inspect.Parameter.empty)
        )
        if self.is_method:
            params = params[1:]
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:
            raise ToolDefinitionError(f"{owner}: cannot resolve its type hints: {exc}") from exc

        doc_description, arg_docs = _describe(func.__doc__)
        # Internal field names, the parameter's name as the alias: a parameter may
        # then be called `json`, `schema` or `_private` without clashing with
        # BaseModel's own attributes.
        fields: dict[str, Any] = {
            f"p{n}": _argument_field(owner, param, hints, arg_docs) for n, param in enumerate(params)
        }

        self._is_async = inspect.iscoroutinefunction(func)
        tool_name = _check_name(owner, func.__name__ if name is None else name)
        try:
            self.args_model: type[pydantic.BaseModel] = pydantic.create_model(
                f"{tool_name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
            )
            parameters = strip_titles(self.args_model.model_json_schema(by_alias=True))
        except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
            raise ToolDefinitionError(f"{owner}: its arguments cannot be described: {exc}") from exc
        _check_schema(owner, parameters)

        self.spec = ToolSpec(
            name=tool_name,
            description=(description if description is not None else doc_description),
            parameters=parameters,
            result=_result_schema(owner, hints.get("return", inspect.Parameter.empty)),
            examples=tuple(self._checked_examples(examples)),
        )
        self.__wrapped__ = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", tool_name)

    def _checked_examples(self, examples: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
        out = []
        for example in examples:
            try:
                self.args_model.model_validate(example)
            except pydantic.ValidationError as exc:
                raise ToolDefinitionError(
                    f"{self._owner}: example {example!r} does not fit the arguments: {_format_validation_error(exc)}"
                ) from exc
            out.append(dict(example))
        return out

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None or not self.is_method:
            return self
        return _BoundMethodTool(self, instance)

    def bind(self, instance: Any = None) -> BoundTool:
        """The executable form; `instance` is `self` for a method tool."""
        if self.is_method and instance is None:
            raise ToolDefinitionError(
                f"{self._owner} is a method: use it through an instance (e.g. an Agent's @tool method)"
            )
        func: Callable[..., Any] = self.func
        model = self.args_model
        field_names = tuple((key, f.alias or key) for key, f in model.model_fields.items())
        name, parameters = self.spec.name, self.spec.parameters
        secrets = marks_secrets(parameters)

        def validate(arguments: Mapping[str, Any]) -> Callable[[], Any]:
            if secrets:  # `SecretStr` arguments: the tool receives them, nothing records them
                declare_arguments(parameters, arguments)
            try:
                parsed = model.model_validate(arguments)
            except pydantic.ValidationError as exc:
                raise ToolArgumentsError(name, _format_validation_error(exc)) from exc
            kwargs = {alias: getattr(parsed, key) for key, alias in field_names}
            if instance is not None:
                return lambda: func(instance, **kwargs)
            return lambda: func(**kwargs)

        return BoundTool(
            spec=self.spec, options=self.options, validate=validate, is_async=self._is_async, pace=self._pace
        )

    def __repr__(self) -> str:
        return f"<tool {self.spec.name}>"


class _BoundMethodTool:
    """A method tool read from an instance: callable like the bound method."""

    def __init__(self, tool: FunctionTool[Any, Any], instance: Any) -> None:
        self.tool = tool
        self.instance = instance
        self.spec = tool.spec

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.tool.func(self.instance, *args, **kwargs)

    def bind(self) -> BoundTool:
        return self.tool.bind(self.instance)

    def __repr__(self) -> str:
        return f"<tool {self.spec.name} of {type(self.instance).__name__}>"


@overload
def tool(func: Callable[P, R], /) -> FunctionTool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    retries: int = 0,
    timeout: float | None = None,
    requires_approval: bool = False,
    idempotent: bool = True,
    inline: bool | None = None,
    max_result_chars: int | None = None,
    examples: list[Mapping[str, Any]] | None = None,
) -> Callable[[Callable[P, R]], FunctionTool[P, R]]: ...


def tool(
    func: Callable[P, R] | None = None, /, **settings: Any
) -> FunctionTool[P, R] | Callable[[Callable[P, R]], FunctionTool[P, R]]:
    """Turn a typed function (or an agent's method) into a tool.

    Use bare (`@tool`) or with options (`@tool(timeout=5, retries=2)`).

    Args:
        func: The function; its type hints become the argument schema and its
            Google-style docstring the descriptions.

    Keyword Args:
        name (str | None): The name the model sees (default: the function's name).
        description (str | None): Overrides the docstring's description.
        retries (int): Extra attempts when the tool raises.
        timeout (float | None): Seconds before a call fails with a timeout result.
        requires_approval (bool): Each call needs a decision first: the agent's
            `approve` callback's, else the run pauses until one is given.
        idempotent (bool): Safe to run twice with the same arguments.
        max_result_chars (int | None): Cut longer results for the model (the store keeps them whole).
        inline (bool | None): True runs a sync tool on the event loop, not in a thread (it
            then cannot have a timeout); False always in a thread; None (the
            default) inline once its calls prove to take microseconds.
        examples (list[Mapping[str, Any]] | None): Example argument objects (validated now), used to write
            worked examples for small models.

    Raises:
        ToolDefinitionError: the signature cannot be described as a JSON Schema
            (`*args`, a missing annotation, a type with no schema, a bad name).
    """

    # The keyword overload above is the typed signature; here the settings are checked by name.
    if unknown := sorted(set(settings) - _TOOL_SETTINGS):
        raise TypeError(
            f"tool() got unexpected keyword argument(s) {', '.join(unknown)}; known: {sorted(_TOOL_SETTINGS)}"
        )
    name, description = settings.pop("name", None), settings.pop("description", None)
    examples = tuple(settings.pop("examples", None) or ())

    def decorate(f: Callable[P, R]) -> FunctionTool[P, R]:
        options = _options(f"tool {getattr(f, '__qualname__', f)!r}", **settings)
        return FunctionTool(f, name=name, description=description, options=options, examples=examples)

    return decorate if func is None else decorate(func)


# --- the class form -----------------------------------------------------------------


class Tool(pydantic.BaseModel):
    """Base class of tools written as classes: the fields are the arguments.

    Subclass it, declare typed fields (documented by a docstring under each, or
    `Field(description=...)`) and implement `run` (sync or async). Class
    variables with a `tool_` prefix set the rest: `tool_name` (default: the
    class name in snake_case), `tool_options` (a `ToolOptions`) and
    `tool_examples`.

    Example:
        class Add(Tool):
            '''Add two numbers.'''

            a: float
            '''The first number.'''
            b: float
            '''The second number.'''

            def run(self) -> float:
                return self.a + self.b
    """

    # `use_attribute_docstrings` is added below, once this class exists: with it,
    # Pydantic reads a class's source as the class is made, which for this class
    # (no fields to document) would be a tenth of `import agentkit`.
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    # The tool's own settings carry a `tool_` prefix so that they never collide
    # with argument fields (a tool may well take a `name` or a `timeout`).
    tool_name: ClassVar[str | None] = None
    """The name the model calls it by (default: the class name in snake_case)."""
    tool_options: ClassVar[ToolOptions] = ToolOptions()
    """Retries, timeout, approval, idempotence, inline execution."""
    tool_examples: ClassVar[tuple[Mapping[str, Any], ...]] = ()
    """Example argument objects, for worked examples in small models' prompts."""

    spec: ClassVar[ToolSpec]
    """The tool's spec: set on each subclass that implements `run`, when it is defined."""

    def run(self) -> Any:
        """Do the work. Override this (it may be `async def`)."""
        raise NotImplementedError(f"{type(self).__name__}.run() is not implemented")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.run is not Tool.run:  # a base class for other tools may leave run() to them
            cls.spec = _class_spec(cls)

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        parameters: Mapping[str, Any],
        fn: Callable[..., Any],
        *,
        result: Mapping[str, Any] | None = None,
        examples: Sequence[Mapping[str, Any]] = (),
        **options: Any,
    ) -> BoundTool:
        """A tool known only by its JSON Schema (an MCP server's, a benchmark's), run by `fn`.

            lookup = Tool.from_schema(
                "lookup", "Find a word.", {"type": "object", "properties": {"word": {"type": "string"}}},
                lambda word: DICTIONARY.get(word),
            )
            Agent(tools=[lookup])

        `fn` is called with the arguments as keywords (`fn(**arguments)`: give it
        `**kwargs` when a key is no Python name); it may be `async`. The
        arguments are checked against `parameters` (JSON Schema 2020-12) before
        it runs. `options`: the `ToolOptions` fields (`timeout`, `retries`,
        `requires_approval`, `idempotent`, `inline`, `max_result_chars`).

        Raises:
            ToolDefinitionError: the name cannot be called, `parameters` (or
                `result`) is not a valid 2020-12 schema or not of an object, an
                example does not fit, or an option is out of range.
        """
        owner = f"tool {name!r}"
        _check_name(owner, name)
        unknown = set(options) - {f.name for f in dataclasses.fields(ToolOptions)}
        if unknown:
            raise ToolDefinitionError(f"{owner}: unknown option(s) {sorted(unknown)}")
        settings = _options(owner, **options)
        if not callable(fn):
            raise ToolDefinitionError(f"{owner}: fn must be callable, got {type(fn).__name__}")
        validator = _schema_validator(owner, "parameters", parameters)
        if parameters.get("type", "object") != "object":
            raise ToolDefinitionError(
                f"{owner}: parameters must describe an object (the call's arguments), not {parameters['type']!r}"
            )
        if result is not None:
            _schema_validator(owner, "result", result)
        for example in examples:
            problems = _schema_problems(validator, example)
            if problems:
                raise ToolDefinitionError(f"{owner}: example {dict(example)!r} does not fit: {problems}")
        spec = ToolSpec(
            name=name,
            description=description,
            parameters=dict(parameters),
            result=dict(result) if result is not None else None,
            examples=tuple(dict(e) for e in examples),
        )

        secrets = marks_secrets(spec.parameters)

        def validate(arguments: Mapping[str, Any]) -> Callable[[], Any]:
            if secrets:  # arguments the schema marks `writeOnly` or `format: password`
                declare_arguments(spec.parameters, arguments)
            problems = _schema_problems(validator, arguments)
            if problems:
                raise ToolArgumentsError(name, problems)
            given = dict(arguments)
            return lambda: fn(**given)

        # A sync callable that returns an awaitable is awaited too (the executor sees to it).
        return BoundTool(spec=spec, options=settings, validate=validate, is_async=inspect.iscoroutinefunction(fn))

    @classmethod
    def bind(cls) -> BoundTool:
        """The executable form of this tool class."""
        if cls.run is Tool.run:
            raise ToolDefinitionError(f"tool class {cls.__qualname__!r}: implement run()")
        spec = cls.spec
        name = spec.name
        secrets = marks_secrets(spec.parameters)

        def validate(arguments: Mapping[str, Any]) -> Callable[[], Any]:
            if secrets:  # `SecretStr` fields: the tool receives them, nothing records them
                declare_arguments(spec.parameters, arguments)
            try:
                instance = cls.model_validate(arguments)
            except pydantic.ValidationError as exc:
                raise ToolArgumentsError(name, _format_validation_error(exc)) from exc
            return instance.run

        options = _options(f"tool class {cls.__qualname__!r}", **dataclasses.asdict(cls.tool_options))
        return BoundTool(spec=spec, options=options, validate=validate, is_async=inspect.iscoroutinefunction(cls.run))


# Subclasses inherit it: their fields' docstrings become the descriptions the model reads.
Tool.model_config["use_attribute_docstrings"] = True

# Names a Tool subclass cannot use for fields: its own methods and class variables.
_TOOL_RESERVED = frozenset({"run", "spec", "bind", "from_schema", "tool_name", "tool_options", "tool_examples"})


def _schema_validator(owner: str, what: str, schema: Any) -> Any:
    """A 2020-12 validator of `schema` (with formats checked), or `ToolDefinitionError` saying what is wrong."""
    import jsonschema

    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(f"{owner}: {what} must be a JSON Schema object, got {type(schema).__name__}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ToolDefinitionError(
            f"{owner}: {what} is not a valid JSON Schema (2020-12) at {where}: {exc.message}"
        ) from None
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    try:
        validator.is_valid({})  # resolves the schema's local $refs: one that points nowhere is found now
    except Exception as exc:
        raise ToolDefinitionError(f"{owner}: {what} cannot be used: {exc}") from None
    return validator


def _schema_problems(validator: Any, value: Any) -> str:
    """What is wrong with `value` under `validator`, each problem with where it is; "" when nothing is."""
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    parts = [f"{'.'.join(str(p) for p in e.absolute_path) or '(arguments)'}: {e.message}" for e in errors[:5]]
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "; ".join(parts)


def _class_spec(cls: type[Tool]) -> ToolSpec:
    """Build (and check) a Tool subclass's spec; every problem is a ToolDefinitionError."""
    owner = f"tool class {cls.__qualname__!r}"
    for klass in cls.__mro__:
        if klass is Tool:
            break
        clash = _TOOL_RESERVED & set(vars(klass).get("__annotations__", {}))
        if clash:
            raise ToolDefinitionError(f"{owner}: {sorted(clash)} belong to Tool itself; rename the field(s)")
    _options(owner, **dataclasses.asdict(cls.tool_options))
    description, _ = _describe(cls.__doc__)
    try:
        parameters = strip_titles(cls.model_json_schema())
    except Exception as exc:
        raise ToolDefinitionError(f"{owner}: its fields have no JSON Schema: {exc}") from exc
    parameters.pop("description", None)
    _check_schema(owner, parameters)
    result = None
    try:
        returns = typing.get_type_hints(cls.run).get("return")
        if returns not in (None, type(None), Any):
            result = strip_titles(pydantic.TypeAdapter(returns).json_schema())
    except Exception as exc:
        raise ToolDefinitionError(f"{owner}: the return type of run() has no JSON Schema ({exc})") from exc
    for example in cls.tool_examples:
        try:
            cls.model_validate(example)
        except pydantic.ValidationError as exc:
            raise ToolDefinitionError(
                f"{owner}: example {example!r} does not fit: {_format_validation_error(exc)}"
            ) from exc
    return ToolSpec(
        name=_check_name(owner, to_snake(cls.__name__) if cls.tool_name is None else cls.tool_name),
        description=description,
        parameters=parameters,
        result=result,
        examples=tuple(dict(e) for e in cls.tool_examples),
    )


def as_tool(obj: Any) -> BoundTool:
    """Normalise anything an agent accepts as a tool into a `BoundTool`.

    Accepts a `@tool` function, a `Tool` subclass, an instance's `@tool`
    method, a `BoundTool`, or a plain typed function (wrapped as if decorated).

    Raises:
        ToolDefinitionError: `obj` is none of those, or cannot be described.
    """
    if isinstance(obj, BoundTool):
        return obj
    if isinstance(obj, FunctionTool | _BoundMethodTool):
        return obj.bind()
    if isinstance(obj, type) and issubclass(obj, Tool):
        return obj.bind()
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return FunctionTool(obj, options=ToolOptions()).bind(None)
    raise ToolDefinitionError(f"{obj!r} is not a tool: pass a @tool function, a Tool subclass or a typed function")
