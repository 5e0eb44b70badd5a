"""Everything about a workflow file that can be known before it runs, checked at once.

`check(source)` turns a parsed file into a `Plan`, or raises one
`WorkflowSpecError` listing every problem with its line, column and path:
the shape (unknown keys, wrong types, unknown step kinds), step ids, what
each template reads (inputs that exist, steps that come earlier and are in
reach), imports (allowed, existing, really an agent or a tool), tool
arguments, output schemas, runtime URIs and MCP servers (their declarations,
and the steps' `mcp:NAME` tools; the servers are not started).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import jsonschema
import pydantic
from jinja2 import TemplateSyntaxError

from agentkit.agent import Agent
from agentkit.errors import AgentkitError
from agentkit.tool import BoundTool, as_tool
from agentkit.workflow import servers
from agentkit.workflow.imports import Importer, ImportRefused
from agentkit.workflow.servers import ServerUse
from agentkit.workflow.source import DocPath, Problem, Source, format_path
from agentkit.workflow.spec import (
    KINDS,
    AgentSpec,
    AgentStep,
    ForeachStep,
    HttpServerSpec,
    LoopStep,
    ParallelStep,
    SamplingSpec,
    StdioServerSpec,
    Step,
    ToolStep,
    WhenStep,
    WorkflowSpec,
    step_kind,
)
from agentkit.workflow.templates import Reference, has_template, references

__all__ = ["STEP_FIELDS", "Node", "Plan", "check", "json_schema_output"]

STEP_FIELDS = ("output", "status", "run_id")
"""What `steps.<id>` has: its output, its status (done or skipped) and its agent run's id."""

_BODIES = {"then": "then", "else_": "else", "steps": "steps", "parallel": "parallel"}
_VOCABULARY = sorted(
    {
        field.alias or name
        for model in (
            WorkflowSpec,
            AgentSpec,
            SamplingSpec,
            AgentStep,
            ToolStep,
            WhenStep,
            ForeachStep,
            ParallelStep,
            LoopStep,
            StdioServerSpec,
            HttpServerSpec,
        )
        for name, field in model.model_fields.items()
    }
    | {"type", "description", "default", "values", "items"}
)


@dataclass(eq=False)
class Node:
    """A step in its place: where it was written, what it contains, what it reads."""

    spec: Step
    path: DocPath
    parent: Node | None
    siblings: list[Node]
    """The step list it is in (itself included)."""
    bodies: dict[str, list[Node]] = field(default_factory=dict)
    """Its nested step lists by key: then/else, steps, parallel."""
    reads: set[str] = field(default_factory=set)
    """Ids of the steps its templates (and those nested in it) read, and its `needs`."""
    agent_class: type[Agent[Any]] | None = None
    tools: list[BoundTool] = field(default_factory=list)
    """An inline agent's tools, or a tool step's one tool."""
    mcp: list[ServerUse] = field(default_factory=list)
    """The MCP servers' tools an inline agent offers (one use per server), or a tool step's one tool."""
    mcp_at: int = 0
    """Where among an inline agent's `tools` the servers' tools go: where the file names the first."""
    output_type: Any = str
    """An inline agent's output type (from its `output` schema)."""

    @property
    def id(self) -> str:
        return self.spec.id

    def __repr__(self) -> str:
        return f"<Node {self.id} ({self.kind}) at {format_path(self.path)}>"

    @property
    def kind(self) -> str:
        return step_kind(self.spec) or "?"

    @property
    def deps(self) -> list[Node]:
        """The earlier steps of its own list it must wait for."""
        before = self.siblings[: self.siblings.index(self)]
        return [n for n in before if n.id in self.reads]


@dataclass
class Plan:
    """A checked workflow, ready to run."""

    spec: WorkflowSpec
    source: Source
    steps: list[Node]
    by_id: dict[str, Node]

    def users(self) -> dict[str, list[str]]:
        """The ids of the steps that use each MCP server, by the server's name (every declared server)."""
        found: dict[str, list[str]] = {name: [] for name in self.spec.mcp_servers}
        for node in _nodes(self.steps):
            for use in node.mcp:
                found[use.server].append(node.id)
        return found


def _nodes(nodes: list[Node]) -> Iterator[Node]:
    for node in nodes:
        yield node
        for body in node.bodies.values():
            yield from _nodes(body)


def check(source: Source, importer: Importer | None = None) -> Plan:
    """Check a parsed workflow file.

    Args:
        source: The parsed file.
        importer: What imports are allowed (default: `agentkit.tools` and the
            file's own directory).

    Raises:
        WorkflowSpecError: every problem found.
    """
    spec = _shape(source)
    checker = _Checker(source, spec, importer or Importer(source.directory))
    plan = checker.run()
    if checker.problems:
        raise source.error(checker.problems)
    return plan


def json_schema_output(schema: Mapping[str, Any]) -> Any:
    """An output type for `Agent` from a JSON Schema: constrained by it and validated against it."""
    validator = jsonschema.validators.validator_for(schema)(schema)

    def fits(value: Any) -> Any:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = format_path(list(error.absolute_path))
            raise ValueError(f"{where}: {error.message}" if error.absolute_path else error.message)
        return value

    return Annotated[Any, pydantic.WithJsonSchema(dict(schema)), pydantic.AfterValidator(fits)]


# --- the shape ------------------------------------------------------------------------------


def _shape(source: Source) -> WorkflowSpec:
    if not isinstance(source.data, dict):
        raise source.error([source.problem("a workflow is a mapping with name and steps", ())])
    try:
        return WorkflowSpec.model_validate(source.data)
    except pydantic.ValidationError as exc:
        problems: dict[tuple[DocPath, str], Problem] = {}
        for error in exc.errors():
            problem = _shape_problem(source, error)
            problems.setdefault((problem.path, problem.message.split(":")[0]), problem)
        raise source.error(list(problems.values())) from None


def _data_path(data: Any, loc: Sequence[str | int]) -> tuple[DocPath, Any]:
    """Pydantic's location as a path in the document: union tags and member names are not in the data."""
    path: list[str | int] = []
    value = data
    for part in loc:
        part = _ALIASES.get(part, part) if isinstance(part, str) else part
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_list or (isinstance(value, dict) and part in value):
            value = value[part]
        elif isinstance(value, dict) and isinstance(part, str) and _is_field(part):
            path.append(part)  # a missing key: its place is in this mapping
            return tuple(path), None
        else:
            continue  # a union's tag, or a value the error is about
        path.append(part)
    return tuple(path), value


_ALIASES = {"else_": "else", "as_": "as"}
_TAGGED: dict[str, type[pydantic.BaseModel]] = {
    "inline agent": AgentSpec,
    "stdio server": StdioServerSpec,
    "HTTP server": HttpServerSpec,
    "agent step": AgentStep,
    "tool step": ToolStep,
    "when step": WhenStep,
    "foreach step": ForeachStep,
    "parallel step": ParallelStep,
    "max_iterations step": LoopStep,
}


def _is_field(name: str) -> bool:
    return name in _VOCABULARY


def _shape_problem(source: Source, error: Any) -> Problem:
    kind, loc = error["type"], tuple(error["loc"])
    path, value = _data_path(source.data, loc)
    if kind == "extra_forbidden":
        key = path[-1]
        tags = [part for part in loc if isinstance(part, str) and part.endswith((" step", " agent", " server"))]
        owner = f" in {'an' if tags and tags[-1][0] in 'aeiouH' else 'a'} {tags[-1]}" if tags else ""
        model = _TAGGED.get(tags[-1]) if tags else None
        words = sorted(f.alias or n for n, f in model.model_fields.items()) if model else _VOCABULARY
        close = [c for c in difflib.get_close_matches(str(key), words, n=2, cutoff=0.7) if c != key]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if tags and tags[-1].endswith(" server") and key in _OTHER_SERVER_KEYS:
            hint = f"; {_OTHER_SERVER_KEYS[key]}"
        return source.problem(f"unknown key {key!r}{owner}{hint}", path, key=True)
    if kind == "missing":
        name = _ALIASES.get(str(loc[-1]), loc[-1])
        parent = path[:-1] if path and path[-1] == name else path
        return source.problem(f"missing key {name!r}", parent)
    if kind == "step_kind":
        step = error["input"]
        if isinstance(step, dict):
            others = [k for k in step if not _is_field(k)]
            if others:
                return source.problem(
                    f"unknown step kind {others[0]!r}: a step is one of {', '.join(KINDS)}",
                    (*path, others[0]),
                    key=True,
                )
            return source.problem(f"the step has no kind: give it one of the keys {', '.join(KINDS)}", path)
        return source.problem(f"a step is a mapping with an id and one of {', '.join(KINDS)}, got {_show(step)}", path)
    if kind == "server_kind":
        return source.problem(_server_kind_problem(error["input"]), path)
    if kind == "string_pattern_mismatch" and loc[0] == "mcp_servers" and loc[-1] == "[key]":
        return source.problem(
            f"{_show(path[-1])} is not a valid server name: use letters, digits and _, not starting with a digit",
            path,
            key=True,
        )
    server_key = path[2] if len(path) == 3 and path[0] == "mcp_servers" else None
    if kind == "list_type" and server_key == "command":
        return source.problem(
            f"write the program and its arguments as a list: [prog, arg, ...], got {_show(value)}", path
        )
    if server_key == "requires_approval":
        return source.problem(f"requires_approval is true, false or a list of tool names, got {_show(value)}", path)
    if kind == "string_pattern_mismatch" and path and path[-1] in ("id", "as"):
        why = " (templates read it as steps.<id>)" if path[-1] == "id" else ""
        return source.problem(
            f"{_show(value)} is not a valid name: use letters, digits and _, not starting with a digit{why}", path
        )
    if kind == "string_pattern_mismatch":
        return source.problem(f"{_show(value)} is not an import path; write module:name, e.g. mytools:Researcher", path)
    message = error["msg"]
    message = message[0].lower() + message[1:]
    return source.problem(f"{message}, got {_show(error['input'])}", path)


_OTHER_SERVER_KEYS = {
    "args": "write the program and its arguments as one list: command: [prog, arg, ...]",
    "env": "env is for servers started with command",
    "cwd": "cwd is for servers started with command",
    "headers": "headers are for servers reached at a url",
}


def _server_kind_problem(value: Any) -> str:
    if not isinstance(value, dict):
        return f"an MCP server is a mapping with command: [prog, arg, ...] or url: ..., got {_show(value)}"
    if "command" in value and "url" in value:
        return "an MCP server has command (started over stdio) or url (reached over HTTP), not both"
    return "an MCP server needs command: [prog, arg, ...] (started over stdio) or url: ... (reached over HTTP)"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- everything else --------------------------------------------------------------------------


class _Checker:
    def __init__(self, source: Source, spec: WorkflowSpec, importer: Importer) -> None:
        self.source = source
        self.spec = spec
        self.importer = importer
        self.problems: list[Problem] = []
        self.by_id: dict[str, Node] = {}
        self.order: dict[str, int] = {}

    def problem(self, message: str, path: Sequence[str | int], *, key: bool = False) -> None:
        self.problems.append(self.source.problem(message, path, key=key))

    def run(self) -> Plan:
        self._inputs()
        self._runtime(self.spec.runtime, ("runtime",))
        self._servers()
        top: list[Node] = []
        self._nodes(self.spec.steps, ("steps",), None, top)
        for node in _nodes(top):
            self._node(node)
        if self.spec.output is not None:
            self._values(self.spec.output, ("output",), _Reader(top, None, frozenset()))
        return Plan(self.spec, self.source, top, self.by_id)

    # --- the steps as a tree

    def _nodes(self, steps: Sequence[Step], path: DocPath, parent: Node | None, into: list[Node]) -> None:
        for index, step in enumerate(steps):
            node = Node(step, (*path, index), parent, into)
            into.append(node)
            if step.id in self.by_id:
                first = self.source.where((*self.by_id[step.id].path, "id"))[0]
                self.problem(
                    f"the step id {step.id!r} is used twice (first on line {first}); ids are unique in a file",
                    (*node.path, "id"),
                )
            else:
                self.by_id[step.id] = node
                self.order[step.id] = len(self.order)
            for attr, key in _BODIES.items():
                body = getattr(step, attr, None)
                if body is not None and isinstance(body, list):
                    node.bodies[key] = []
                    self._nodes(body, (*node.path, key), node, node.bodies[key])

    # --- one step

    def _node(self, node: Node) -> None:
        step, path = node.spec, node.path
        reader = _Reader.of(node)
        for index, name in enumerate(step.needs):
            self._step_ref(name, (*path, "needs", index), reader, as_need=True)
        if isinstance(step, AgentStep):
            self._runtime(step.runtime, (*path, "runtime"))
            self._values(step.prompt, (*path, "prompt"), reader)
            if isinstance(step.agent, str):
                self._agent_class(node, step.agent, (*path, "agent"))
            else:
                self._inline_agent(node, step.agent, (*path, "agent"), reader)
        elif isinstance(step, ToolStep):
            self._tool_step(node, step, path, reader)
        elif isinstance(step, WhenStep):
            self._template(step.when, (*path, "when"), reader, condition=True)
        elif isinstance(step, ForeachStep):
            self._values(step.foreach, (*path, "foreach"), reader)
        elif isinstance(step, LoopStep):
            self._template(
                step.until,
                (*path, "until"),
                _Reader(node.bodies["steps"], None, _scope(node) | _LOOP_NAMES),
                condition=True,
            )
        elif isinstance(step, ParallelStep):
            pass  # its branches are checked as steps

    def _agent_class(self, node: Node, ref: str, path: DocPath) -> None:
        found = self._load(ref, path)
        if found is None:
            return
        if not (isinstance(found, type) and issubclass(found, Agent)):
            self.problem(f"{ref} is a {type(found).__name__}, not an Agent subclass", path)
            return
        node.agent_class = found

    def _inline_agent(self, node: Node, agent: AgentSpec, path: DocPath, reader: _Reader) -> None:
        self._template(agent.instructions, (*path, "instructions"), reader)
        for index, ref in enumerate(agent.tools):
            if ref.startswith(servers.PREFIX):
                node.mcp_at = node.mcp_at if node.mcp else len(node.tools)
                self._server_tools(node, ref, (*path, "tools", index))
                continue
            tool = self._tool(ref, (*path, "tools", index))
            if tool is None:
                continue
            if any(t.name == tool.name for t in node.tools):
                self.problem(
                    f"two tools are named {tool.name!r}; an agent's tools need distinct names", (*path, "tools", index)
                )
                continue
            node.tools.append(tool)
        if agent.output is not None:
            try:
                jsonschema.validators.validator_for(agent.output).check_schema(agent.output)
            except jsonschema.SchemaError as exc:
                self.problem(f"not a valid JSON Schema: {exc.message}", (*path, "output", *exc.absolute_path))
            else:
                node.output_type = json_schema_output(agent.output)

    def _tool_step(self, node: Node, step: ToolStep, path: DocPath, reader: _Reader) -> None:
        self._values(step.arguments, (*path, "arguments"), reader)
        if step.tool.startswith(servers.PREFIX):
            self._server_tools(node, step.tool, (*path, "tool"), one_tool=True)
            return
        tool = self._tool(step.tool, (*path, "tool"))
        if tool is None:
            return
        node.tools = [tool]
        parameters = tool.spec.parameters
        properties: Mapping[str, Any] = parameters.get("properties", {})
        for name, value in step.arguments.items():
            where = (*path, "arguments", name)
            if name not in properties:
                close = difflib.get_close_matches(name, list(properties), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    f"{tool.name} has no argument {name!r}; {hint}it takes: {', '.join(properties) or 'none'}",
                    where,
                    key=True,
                )
            elif not _templated(value):
                schema = {**properties[name], "$defs": parameters.get("$defs", {})}
                error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
                if error is not None:
                    self.problem(f"not a valid {name!r} for {tool.name}: {error.message}", where)
        missing = [n for n in parameters.get("required", ()) if n not in step.arguments]
        if missing:
            self.problem(f"{tool.name} needs the argument(s) {', '.join(map(repr, missing))}", (*path, "tool"))

    def _tool(self, ref: str, path: DocPath) -> BoundTool | None:
        found: Any
        if ":" in ref:
            found = self._load(ref, path)
        else:
            try:
                found = self.importer.builtin_tool(ref)
            except ImportRefused as exc:
                self.problem(str(exc), path)
                return None
        if found is None:
            return None
        if isinstance(found, type) and issubclass(found, Agent):
            self.problem(f"{ref} is an Agent, not a tool; run it as a step of its own: agent: {ref}", path)
            return None
        try:
            return as_tool(found)
        except AgentkitError as exc:
            why = f"{exc}" if callable(found) else "pass a @tool function, a Tool subclass or a typed function"
            self.problem(f"{ref} is a {type(found).__name__}, not a tool: {why}", path)
            return None

    # --- MCP servers

    def _servers(self) -> None:
        if self.spec.mcp_servers and servers.sdk_missing():
            self.problem("MCP servers need the MCP SDK: pip install 'agentkit[mcp]'", ("mcp_servers",), key=True)
        for name, spec in self.spec.mcp_servers.items():
            for path, message in servers.declaration_problems(name, spec, self.source.directory):
                self.problem(message, ("mcp_servers", name, *path))

    def _server_tools(self, node: Node, ref: str, path: DocPath, *, one_tool: bool = False) -> None:
        try:
            use = servers.use_of(ref, self.spec.mcp_servers, one_tool=one_tool)
            node.mcp = servers.joined(node.mcp, use, ref)
        except ValueError as exc:
            self.problem(str(exc), path)

    def _load(self, ref: str, path: DocPath) -> Any:
        try:
            return self.importer.load(ref)
        except ImportRefused as exc:
            self.problem(str(exc), path)
            return None

    def _runtime(self, uri: str | None, path: DocPath) -> None:
        if uri is None:
            return
        from agentkit.runtimes import check_uri

        try:
            check_uri(uri)
        except AgentkitError as exc:
            self.problem(str(exc), path)

    # --- inputs

    def _inputs(self) -> None:
        for name, spec in self.spec.inputs.items():
            path = ("inputs", name)
            if spec.type == "enum" and spec.values is None:
                self.problem("an enum input needs its values: values: [a, b]", path)
            if spec.type != "enum" and spec.values is not None:
                self.problem(f"values are for enum inputs; this one is {spec.type}", (*path, "values"), key=True)
            if spec.type != "list" and spec.items is not None:
                self.problem(f"items is for list inputs; this one is {spec.type}", (*path, "items"), key=True)
            if not spec.required:
                from agentkit.workflow.inputs import input_problem

                problem = input_problem(name, spec, spec.default)
                if problem is not None:
                    self.problem(f"the default does not fit: {problem}", (*path, "default"))

    # --- templates

    def _values(self, value: Any, path: DocPath, reader: _Reader) -> None:
        if isinstance(value, str):
            self._template(value, path, reader)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._values(item, (*path, index), reader)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._values(item, (*path, key), reader)

    def _template(self, text: str, path: DocPath, reader: _Reader, *, condition: bool = False) -> None:
        if not (condition or has_template(text)):
            return
        try:
            use = references(text, condition=condition)
        except TemplateSyntaxError as exc:
            self.problem(f"template error: {exc.message}", path)
            return
        known = {"inputs", "steps"} | reader.names
        for name in sorted(use.names - known):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.problem(
                f"undefined template variable {name!r}; {hint}templates can read {', '.join(sorted(known))}", path
            )
        for ref in use.references:
            if ref.root == "inputs" and "inputs" not in reader.names:
                self._input_ref(ref, path)
            elif ref.root == "steps" and ref.chain and "steps" not in reader.names:
                self._step_ref(ref.chain[0], path, reader, ref=ref)

    def _input_ref(self, ref: Reference, path: DocPath) -> None:
        if not ref.chain or ref.chain[0] in self.spec.inputs:
            return
        name = str(ref.chain[0])
        close = difflib.get_close_matches(name, list(self.spec.inputs), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        self.problem(f"no input {name!r}; {hint}the inputs are: {', '.join(self.spec.inputs) or 'none'}", path)

    def _step_ref(
        self, target: str | int, path: DocPath, reader: _Reader, *, ref: Reference | None = None, as_need: bool = False
    ) -> None:
        name = str(target)
        found = self.by_id.get(name)
        why = None
        if found is None:
            close = difflib.get_close_matches(name, list(self.by_id), n=1)
            why = f"no step {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
        elif not reader.sees(found):
            line = self.source.where(found.path)[0]
            if reader.node is not None and _contains(found, reader.node):
                why = f"step {name!r} (line {line}) contains this one, so it has no output yet"
            elif self.order[name] > reader.position(self.order):
                why = f"step {name!r} comes later (line {line}); a step reads only the steps before it"
            elif (branch := _parallel_sibling(found, reader.node)) is not None:
                why = (
                    f"steps {name!r} and {(reader.node.id if reader.node else '?')!r} are branches of parallel step "
                    f"{branch.id!r}, which run at once; one cannot read the other"
                )
            else:
                outer = _outermost_hidden(found, reader)
                why = (
                    f"step {name!r} (line {line}) is inside step {outer.id!r} ({outer.kind}); "
                    f"read steps.{outer.id}.output instead"
                )
        if why is not None:
            self.problem(why, path)
            return
        assert found is not None
        reader.read(found.id)
        if ref is None or as_need or len(ref.chain) < 2:
            return
        what = ref.chain[1]
        if what not in STEP_FIELDS:
            self.problem(f"steps.{name} has no {what!r}; it has {', '.join(STEP_FIELDS)}", path)
            return
        fields = _output_fields(found)
        if what == "output" and len(ref.chain) > 2 and fields is not None and ref.chain[2] not in fields:
            self.problem(
                f"the output of step {name!r} has no field {ref.chain[2]!r}; it has: {', '.join(sorted(fields))}", path
            )


_LOOP_NAMES = frozenset({"iteration", "previous"})


def _scope(node: Node | None) -> frozenset[str]:
    """The names templates inside `node`'s bodies can read beyond inputs and steps."""
    names: set[str] = set()
    while node is not None:
        if isinstance(node.spec, ForeachStep):
            names |= {node.spec.as_, "index"}
        elif isinstance(node.spec, LoopStep):
            names |= _LOOP_NAMES
        node = node.parent
    return frozenset(names)


@dataclass
class _Reader:
    """Where a template is read from: which steps have finished by then."""

    before: list[Node]
    """The step list it is at the end of (or whose member `node` it is)."""
    node: Node | None
    """The step the template belongs to (None: after the whole list)."""
    names: frozenset[str]
    visible: dict[str, Node] = field(default_factory=dict)
    reader_node: Node | None = None

    @classmethod
    def of(cls, node: Node) -> _Reader:
        return cls(node.siblings, node, _scope(node.parent))

    def __post_init__(self) -> None:
        # Steps before the template's place in its list (the whole list if it is after it), then
        # those before each enclosing step; a parallel step's branches do not see each other.
        owner = self.node
        steps = self.before if owner is None else self.before[: self.before.index(owner)]
        enclosing = owner.parent if owner is not None else (self.before[0].parent if self.before else None)
        if owner is not None and isinstance(enclosing.spec if enclosing else None, ParallelStep):
            steps = []
        self.visible.update((n.id, n) for n in steps)
        self.reader_node = owner if owner is not None else enclosing
        while enclosing is not None:
            outer = enclosing.siblings[: enclosing.siblings.index(enclosing)]
            if enclosing.parent is not None and isinstance(enclosing.parent.spec, ParallelStep):
                outer = []
            self.visible.update((n.id, n) for n in outer)
            enclosing = enclosing.parent

    def sees(self, node: Node) -> bool:
        return self.visible.get(node.id) is node

    def read(self, step_id: str) -> None:
        node = self.reader_node
        while node is not None:
            node.reads.add(step_id)
            node = node.parent

    def position(self, order: Mapping[str, int]) -> int:
        if self.node is not None:
            return order.get(self.node.id, 0)
        last = self.before[-1] if self.before else None
        while last is not None and last.bodies:  # after a list: after everything nested in its last step
            last = [n for body in last.bodies.values() for n in body][-1]
        return order.get(last.id, 0) if last is not None else 0


def _contains(outer: Node, inner: Node) -> bool:
    node: Node | None = inner
    while node is not None:
        if node is outer:
            return True
        node = node.parent
    return False


def _parallel_sibling(found: Node, reader: Node | None) -> Node | None:
    """The parallel step whose different branches hold `found` and `reader`, if any."""
    node = found
    while node.parent is not None:
        if isinstance(node.parent.spec, ParallelStep) and reader is not None and _contains(node.parent, reader):
            return node.parent if not _contains(node, reader) else None
        node = node.parent
    return None


def _outermost_hidden(found: Node, reader: _Reader) -> Node:
    """The outermost step around `found` that the reader can see (or, failing that, the outermost)."""
    node = found
    while node.parent is not None and not reader.sees(node):
        node = node.parent
    return node if reader.sees(node) else found


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return has_template(value)
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    return False


def _output_fields(node: Node) -> set[str] | None:
    """The fields a step's output is known to have (None: not known)."""
    step = node.spec
    if isinstance(step, ParallelStep):
        return {branch.id for branch in step.parallel}
    if isinstance(step, AgentStep):
        if isinstance(step.agent, AgentSpec) and step.agent.output is not None:
            properties = step.agent.output.get("properties")
            return set(properties) if step.agent.output.get("type") == "object" and properties else None
        output_type = getattr(node.agent_class, "output_type", None)
        if isinstance(output_type, type) and issubclass(output_type, pydantic.BaseModel):
            return {f.alias or name for name, f in output_type.model_fields.items()}
    return None
