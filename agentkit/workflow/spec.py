"""The workflow file's shape, as Pydantic models; its JSON Schema is what editors validate against.

    name: weather-report
    runtime: vllm:default
    inputs:
      cities: {type: list, items: string}
    mcp_servers:
      maps: {command: [python, maps_server.py], include: [distance]}
    steps:
      - id: forecasts
        foreach: "{{ inputs.cities }}"
        as: city
        concurrency: 2
        steps:
          - id: forecast
            agent: {instructions: "Forecast the weather.", tools: [mytools:get_weather, mcp:maps]}
            prompt: "Weather in {{ city }}?"
    output: "{{ steps.forecasts.output }}"

A step is one of six kinds, told apart by the key it has: `agent`, `tool`,
`when`, `foreach`, `parallel` or `max_iterations`; an MCP server is one of two,
by `command` (stdio) or `url` (streamable HTTP). Only the shape is checked
here; what the names refer to is checked by `agentkit.workflow.check`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "KINDS",
    "AgentSpec",
    "AgentStep",
    "ForeachStep",
    "HttpServerSpec",
    "InputSpec",
    "LoopStep",
    "MCPServerSpec",
    "ParallelStep",
    "SamplingSpec",
    "StdioServerSpec",
    "Step",
    "ToolStep",
    "WhenStep",
    "WorkflowSpec",
    "json_schema",
]

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""A step id is a name templates can write as `steps.<id>` (so no hyphens)."""

KINDS = ("agent", "tool", "when", "foreach", "parallel", "max_iterations")
"""The step kinds, each named by the key that makes a step that kind."""

Template = Annotated[
    Any,
    Field(description='A value; strings may hold templates such as "{{ inputs.x }}" or "{{ steps.id.output }}".'),
]
Condition = Annotated[
    str,
    Field(
        description="A Jinja expression on inputs and earlier steps, e.g. steps.triage.output.urgent "
        '(the "{{ }}" around it are optional).'
    ),
]
Ref = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", description="An import path, module:name.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """One input of the workflow: a type, and a default unless it is required."""

    type: Literal["string", "integer", "number", "boolean", "enum", "list", "object"]
    description: str = ""
    default: Any = None
    """The value when none is given; without `default` the input is required."""
    values: list[str | int | float | bool] | None = Field(default=None, min_length=1)
    """The allowed values of an `enum`."""
    items: Literal["string", "integer", "number", "boolean", "object"] | None = None
    """The type of a `list`'s items (default: any)."""

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class SamplingSpec(_Strict):
    """Decoding settings of an inline agent (see `agentkit.Sampling`)."""

    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=512, ge=1)
    seed: int | None = None


class AgentSpec(_Strict):
    """An agent written in the workflow file."""

    instructions: str = Field(description="The system prompt; may hold templates.")
    tools: list[str] = Field(
        default_factory=list,
        description="Tools by name from agentkit.tools (e.g. calculate), by import path module:function, "
        "or from an MCP server of mcp_servers: mcp:NAME (all its tools) or mcp:NAME/TOOL.",
    )
    output: dict[str, Any] | None = Field(
        default=None, description="A JSON Schema the final answer must fit (default: plain text)."
    )
    max_steps: int = Field(default=10, ge=1, description="Most model turns in one run.")
    planning: bool = Field(
        default=False,
        description="Plan mode: the model writes every call in one turn, later calls using earlier results "
        "($1, $1.field); they run as a graph, then the model answers or plans again.",
    )
    max_replans: int = Field(default=2, ge=0, description="In plan mode, plans after the first.")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="Decoding settings.")
    name: str | None = Field(
        default=None, description="The agent's name in stored runs and traces (default: the step id)."
    )


class _ServerSpec(_Strict):
    include: list[str] | None = Field(
        default=None,
        description="Offer only these of its tools (names as the server lists them; * patterns allowed).",
    )
    exclude: list[str] = Field(default_factory=list, description="Never offer these tools (names or patterns).")
    requires_approval: bool | list[str] = Field(
        default=False, description="Calls of its tools need a decision: all of them (true), or these tools' calls."
    )
    examples: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="Example arguments per tool (by the name the server lists it under), for the worked examples "
        "small models copy; each must fit the tool's schema.",
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds one call may take.")
    connect_timeout: float = Field(default=30.0, gt=0, description="Seconds to start the server and list its tools.")


class StdioServerSpec(_ServerSpec):
    """An MCP server started as a subprocess, spoken to over its stdin and stdout."""

    command: list[str] = Field(
        min_length=1,
        description="The program and its arguments, e.g. [python, notes_server.py]; ${VAR} reads the environment.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables added to the server's minimal environment; ${VAR} in a value reads yours.",
    )
    cwd: str | None = Field(
        default=None,
        description="Its working directory, relative to the workflow file (default: the file's directory).",
    )

    model_config = ConfigDict(coerce_numbers_to_str=True)


class HttpServerSpec(_ServerSpec):
    """An MCP server reached over streamable HTTP."""

    url: str = Field(description="Its endpoint, /mcp path included; ${VAR} reads the environment.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Sent with every request (an API key, say); ${VAR} in a value reads the environment.",
    )

    model_config = ConfigDict(coerce_numbers_to_str=True)


def _server_tag(value: Any) -> str | None:
    """Which kind a server is, by the key it has (None: both or neither); tags appear in error locations."""
    if isinstance(value, BaseModel):
        return "stdio server" if isinstance(value, StdioServerSpec) else "HTTP server"
    if isinstance(value, dict) and ("command" in value) != ("url" in value):
        return "stdio server" if "command" in value else "HTTP server"
    return None


MCPServerSpec = Annotated[
    Annotated[StdioServerSpec, Tag("stdio server")] | Annotated[HttpServerSpec, Tag("HTTP server")],
    Discriminator(
        _server_tag,
        custom_error_type="server_kind",
        custom_error_message="an MCP server needs one of the keys command (stdio) or url (HTTP)",
    ),
]
"""An entry of `mcp_servers`."""


class _Step(_Strict):
    id: str = Field(pattern=STEP_ID, description="The step's name, unique in the file; later steps read steps.<id>.")
    description: str = ""
    needs: list[str] = Field(
        default_factory=list,
        description="Earlier steps that must finish first, beyond those this step's templates read.",
    )


class AgentStep(_Step):
    """Run an agent on a prompt; the output is its final answer."""

    agent: Annotated[
        Annotated[Ref, Tag("agent class")] | Annotated[AgentSpec, Tag("inline agent")],
        Discriminator(lambda v: "agent class" if isinstance(v, str) else "inline agent"),
    ] = Field(description="An Agent subclass (module:Class) or an agent written here.")
    prompt: Template
    runtime: str | None = Field(default=None, description="A runtime URI for this step (default: the workflow's).")


class ToolStep(_Step):
    """Call one tool; the output is its result."""

    tool: str = Field(
        description="A tool by name from agentkit.tools, by import path module:function, "
        "or an MCP server's tool: mcp:NAME/TOOL."
    )
    arguments: dict[str, Template] = Field(default_factory=dict)


class WhenStep(_Step):
    """Run `then` if the condition holds, else `else`; the output is the last output of the branch taken."""

    when: Condition
    then: list[Step] = Field(min_length=1)
    else_: list[Step] = Field(default_factory=list, alias="else")

    model_config = ConfigDict(populate_by_name=True)


class ForeachStep(_Step):
    """Run `steps` once per item of a list; the output is the list of each run's last output."""

    foreach: Template = Field(description='The list, e.g. "{{ inputs.cities }}".')
    as_: str = Field(default="item", alias="as", pattern=STEP_ID, description="The item's name in templates.")
    concurrency: int = Field(default=4, ge=1, description="Most items run at once.")
    steps: list[Step] = Field(min_length=1)

    model_config = ConfigDict(populate_by_name=True)


class ParallelStep(_Step):
    """Run independent steps at once; the output maps each one's id to its output."""

    parallel: list[Step] = Field(min_length=2)


class LoopStep(_Step):
    """Run `steps` again until `until` holds, at most `max_iterations` times; the output is the last iteration's."""

    max_iterations: int = Field(ge=1)
    until: Condition
    steps: list[Step] = Field(min_length=1)


def step_kind(value: Any) -> str | None:
    """Which kind a step is: the first kind key it has (None: none, so not a step Pydantic can pick)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if isinstance(value, dict):
        return next((kind for kind in KINDS if kind in value), None)
    return None


def _step_tag(value: Any) -> str | None:
    # Tags appear in validation errors' locations; "agent step" cannot be mistaken for the key "agent".
    kind = step_kind(value)
    return f"{kind} step" if kind else None


Step = Annotated[
    Annotated[AgentStep, Tag("agent step")]
    | Annotated[ToolStep, Tag("tool step")]
    | Annotated[WhenStep, Tag("when step")]
    | Annotated[ForeachStep, Tag("foreach step")]
    | Annotated[ParallelStep, Tag("parallel step")]
    | Annotated[LoopStep, Tag("max_iterations step")],
    Discriminator(
        _step_tag,
        custom_error_type="step_kind",
        custom_error_message="a step needs one of the keys " + ", ".join(KINDS),
    ),
]

for _model in (WhenStep, ForeachStep, ParallelStep, LoopStep):
    _model.model_rebuild()


class WorkflowSpec(_Strict):
    """A workflow file."""

    name: str = Field(min_length=1)
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    runtime: str | None = Field(
        default=None, description="The runtime URI agent steps use unless they name their own (default: vllm:default)."
    )
    mcp_servers: dict[Annotated[str, Field(pattern=STEP_ID)], MCPServerSpec] = Field(
        default_factory=dict,
        title="MCP servers",
        description="MCP servers by name; steps use their tools as mcp:NAME or mcp:NAME/TOOL. "
        "A run starts each when a step first needs it and stops it when the run ends.",
        json_schema_extra={"propertyNames": {"pattern": STEP_ID}},
    )
    steps: list[Step] = Field(min_length=1)
    output: Template = Field(default=None, description="The workflow's result (default: the last step's output).")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files (what `agentkit workflow schema` prints)."""
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


def schema_text() -> str:
    """`json_schema()` as the text committed in docs/workflow.schema.json."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
