"""The workload `benchmarks/peers.py` times, written once per framework, and the worker that times it.

Every framework runs the same agent: a fake in-process model that asks for
`add(a=i, b=i+1)` on turns 0..N-2 and answers `done: <the last sum>` on turn
N-1; one plain sync tool `add(a: int, b: int) -> int`. The framework renders
nothing and calls no network: what is timed is its loop, building the model's
request, parsing and validating each call, running the tool and feeding its
result back. Each fake model is the framework's own test facility, or its
documented extension point where it ships none:

- agentkit: `ScriptedRuntime`, its test double;
- pydantic-ai: `FunctionModel`, its test double;
- openai-agents: a `Model` subclass (`get_response`), its extension point;
- langgraph: a `BaseChatModel` subclass with `bind_tools`, under `create_react_agent`;
- smolagents: a `Model` subclass (`generate`) under a `ToolCallingAgent`, which
  ends a run with its `final_answer` tool.

Every run is checked, outside the timed span: the tool ran exactly N-1 times
with the integers asked for, each result went back into the conversation the
model saw, and the output is `done: 2N-3`. A framework that skipped work would
fail here, not win.

One worker process times one framework (the peers' run in `.venv-peers`, so
their dependencies never meet agentkit's). It reads one JSON command a line
from stdin and answers one JSON line on stdout:

    {"setup": "agentkit", "steps": 20, "runs": 50}   ->   {"seconds": 0.071}

The first line it writes is `{"ready": ..., "setups": [...], "versions": {...}}`,
after it has built and checked every setup. `python peer_workloads.py
agentkit --profile 20` instead prints where agentkit's loop spends its time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

STEPS = (5, 20, 50)
PROMPT = "Add the numbers you are asked to, then say done."
INSTRUCTIONS = "Call add as asked, then answer."

FRAMEWORKS = (
    "agentkit",
    "agentkit-noop-spans",
    "smolagents",
    "langgraph",
    "openai-agents",
    "pydantic-ai",
)
"""What a worker can time. `agentkit-noop-spans` needs a process of its own: it imports OpenTelemetry."""

DISTRIBUTIONS = {
    "agentkit": ("agentkit",),
    "smolagents": ("smolagents",),
    "langgraph": ("langgraph", "langchain-core"),
    "openai-agents": ("openai-agents",),
    "pydantic-ai": ("pydantic-ai-slim",),
}


def answer(steps: int) -> str:
    """The final answer of an N-step run: the last sum, `(N-2) + (N-1)`."""
    return f"done: {2 * steps - 3}"


@dataclass
class Ledger:
    """What the tool was called with in the current run."""

    calls: list[tuple[int, int]] = field(default_factory=list)

    def add(self, a: int, b: int) -> int:
        if type(a) is not int or type(b) is not int:  # validated and converted by the framework, not passed as text
            raise TypeError(f"add got {a!r}, {b!r}: not integers")
        self.calls.append((a, b))
        return a + b


@dataclass
class Workload:
    """One framework's agent for one N: how to run it, reset it, and check a run."""

    reset: Callable[[], None]
    check: Callable[[Any], None]
    """Raises unless the run's result (what `run` returned) is right."""
    run: Callable[[], Any] | None = None
    """A synchronous run, or None for an async framework."""
    arun: Callable[[], Awaitable[Any]] | None = None
    patch: Callable[[], AbstractContextManager[None]] = nullcontext
    """Around each batch (agentkit's stubbed tracing)."""


class Wrong(Exception):
    """A run did not do what the benchmark claims it does."""


def verify(name: str, steps: int, ledger: Ledger, output: Any, results: Sequence[Any]) -> None:
    """The checks every framework's run must pass (`results`: the tool results the model saw, in order)."""
    expected = [(i, i + 1) for i in range(steps - 1)]
    sums = [2 * i + 1 for i in range(steps - 1)]
    if ledger.calls != expected:
        raise Wrong(f"{name}, {steps} steps: the tool ran with {ledger.calls}, not {expected}")
    if [int(str(r).strip()) for r in results] != sums:
        raise Wrong(f"{name}, {steps} steps: the conversation held the results {list(results)}, not {sums}")
    if output != answer(steps):
        raise Wrong(f"{name}, {steps} steps: the output is {output!r}, not {answer(steps)!r}")


# --- agentkit --------------------------------------------------------------------------------


def agentkit_setups(steps: Sequence[int], variant: str) -> dict[str, dict[int, Workload]]:
    from agentkit import Agent, AssistantMessage, ToolCall, ToolResult, tool
    from agentkit.runtimes import ScriptedRuntime

    if variant == "noop-spans":
        force_noop_spans()

    def build(n: int, inline: bool | None, stubbed: bool = False) -> Workload:
        ledger = Ledger()

        @tool(name="add", inline=inline)  # None: the default (a thread until the tool proves fast)
        def add(a: int, b: int) -> int:
            """Add two whole numbers.

            Args:
                a: The first number.
                b: The second number.
            """
            return ledger.add(a, b)

        turns = [
            AssistantMessage(tool_calls=(ToolCall(name="add", arguments={"a": i, "b": i + 1}, id=f"call_{i}"),))
            for i in range(n - 1)
        ]
        runtime = ScriptedRuntime([*turns, AssistantMessage(text=answer(n))])
        agent: Agent[str] = Agent(runtime=runtime, instructions=INSTRUCTIONS, tools=[add], max_steps=n + 1)

        def reset() -> None:
            runtime.reset()
            ledger.calls.clear()

        def check(result: Any) -> None:
            # What the model saw: each request after the first ends with the previous call's result.
            seen = [r.messages[-1] for r in runtime.requests[1:]]
            if not all(isinstance(m, ToolResult) and not m.is_error for m in seen):
                raise Wrong(f"agentkit, {n} steps: a request did not end with a tool result: {seen}")
            verify("agentkit", n, ledger, result.output, [m.content for m in seen if isinstance(m, ToolResult)])

        patch = stubbed_tracing if stubbed else nullcontext
        return Workload(reset=reset, check=check, arun=lambda: agent.arun(PROMPT), patch=patch)

    if variant == "noop-spans":
        return {
            "agentkit-noop-spans": {n: build(n, inline=None) for n in steps},
            "agentkit-noop-spans-inline": {n: build(n, inline=True) for n in steps},
        }
    return {
        "agentkit": {n: build(n, inline=None) for n in steps},
        "agentkit-threads": {n: build(n, inline=False) for n in steps},
        "agentkit-inline": {n: build(n, inline=True) for n in steps},
        "agentkit-stubbed": {n: build(n, inline=None, stubbed=True) for n in steps},
        "agentkit-stubbed-inline": {n: build(n, inline=True, stubbed=True) for n in steps},
    }


@contextmanager
def stubbed_tracing() -> Iterator[None]:
    """Inside the block, the loop's and executor's span calls are ones that do nothing at all.

    Measures what tracing costs when none is configured: agentkit as it is
    minus this. Patched where the loop and the executor look the names up, and
    put back after, so both are timed in one process.
    """
    import agentkit.executor
    import agentkit.loop

    class Untraced:
        span = None

        @classmethod
        def start(cls, *args: Any, **kwargs: Any) -> Untraced:
            return cls()

        def current(self) -> nullcontext[None]:
            return nullcontext()

        def end(self, *args: Any, **kwargs: Any) -> None:
            pass

    class Handle:
        def record(self, *args: Any) -> None:
            pass

    block = nullcontext(Handle())
    stubs: dict[str, Any] = {
        "chat_span": lambda *a, **k: block,
        "tool_span": lambda *a, **k: block,
        "AgentSpan": Untraced,
        "Tracing": None,  # a loop whose tracing is an observer of its phases: no observer at all
    }
    modules: list[Any] = [agentkit.loop, agentkit.executor]
    try:
        import agentkit.observers
        import agentkit.tracing.observer

        modules.append(agentkit.tracing.observer)
        stubs["Tracing"] = agentkit.observers.RunObserver
    except ImportError:
        pass
    found = [(m, name, getattr(m, name)) for m in modules for name in stubs if hasattr(m, name)]
    names = [f"{m.__name__}.{name}" for m, name, _ in found]
    if "agentkit.executor.tool_span" not in names or len(names) < 2:
        raise SystemExit(f"agentkit: found only {names} to stub; update stubbed_tracing for the loop")
    for m, name, _ in found:
        setattr(m, name, stubs[name])
    try:
        yield
    finally:
        for m, name, original in found:
            setattr(m, name, original)


def force_noop_spans() -> None:
    """Make agentkit trace as if a provider were set, while none is: OpenTelemetry's no-op spans.

    What every run paid before agentkit skipped tracing without a provider.
    """
    import opentelemetry.trace  # noqa: F401  (imported, as the application that configures nothing would not)

    import agentkit.tracing.spans as spans

    spans.tracing_on = lambda: True  # type: ignore[assignment]  (patched module globals: AgentSpan.start, tool_span)
    spans.metrics_on = lambda: True  # type: ignore[assignment]


# --- pydantic-ai -----------------------------------------------------------------------------


def pydantic_ai_setups(steps: Sequence[int]) -> dict[str, dict[int, Workload]]:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def build(n: int) -> Workload:
        ledger = Ledger()
        turn = [0]

        def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            i = turn[0]
            turn[0] += 1
            if i < n - 1:
                return ModelResponse(parts=[ToolCallPart("add", {"a": i, "b": i + 1}, tool_call_id=f"call_{i}")])
            return ModelResponse(parts=[TextPart(answer(n))])

        agent = Agent(FunctionModel(model), instructions=INSTRUCTIONS)

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            """Add two whole numbers.

            Args:
                a: The first number.
                b: The second number.
            """
            return ledger.add(a, b)

        def reset() -> None:
            turn[0] = 0
            ledger.calls.clear()

        def check(result: Any) -> None:
            returned = [
                part.content
                for message in result.all_messages()
                if isinstance(message, ModelRequest)
                for part in message.parts
                if isinstance(part, ToolReturnPart)
            ]
            verify("pydantic-ai", n, ledger, result.output, returned)

        return Workload(reset=reset, check=check, arun=lambda: agent.run(PROMPT))

    return {"pydantic-ai": {n: build(n) for n in steps}}


# --- openai-agents ---------------------------------------------------------------------------


def openai_agents_setups(steps: Sequence[int]) -> dict[str, dict[int, Workload]]:
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    # No tracing configured, as for agentkit: the SDK's default would export every run to OpenAI.
    set_tracing_disabled(True)

    class ScriptedModel(Model):
        """Answers each turn from a script (the SDK ships no test model; this is its extension point)."""

        def __init__(self, n: int) -> None:
            self.n = n
            self.turn = 0

        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            i = self.turn
            self.turn += 1
            if i < self.n - 1:
                output: Any = ResponseFunctionToolCall(
                    type="function_call",
                    name="add",
                    arguments=json.dumps({"a": i, "b": i + 1}),
                    call_id=f"call_{i}",
                    id=f"fc_{i}",
                )
            else:
                output = ResponseOutputMessage(
                    id="msg_final",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=answer(self.n), annotations=[])],
                )
            return ModelResponse(output=[output], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("the benchmark does not stream")

    def build(n: int) -> Workload:
        ledger = Ledger()

        @function_tool
        def add(a: int, b: int) -> int:
            """Add two whole numbers.

            Args:
                a: The first number.
                b: The second number.
            """
            return ledger.add(a, b)

        model = ScriptedModel(n)
        agent = Agent(name="adder", instructions=INSTRUCTIONS, tools=[add], model=model)

        def reset() -> None:
            model.turn = 0
            ledger.calls.clear()

        def check(result: Any) -> None:
            returned = [
                item["output"]
                for item in result.to_input_list()
                if isinstance(item, dict) and item.get("type") == "function_call_output"
            ]
            verify("openai-agents", n, ledger, result.final_output, returned)

        return Workload(reset=reset, check=check, arun=lambda: Runner.run(agent, PROMPT, max_turns=n + 1))

    return {"openai-agents": {n: build(n) for n in steps}}


# --- langgraph -------------------------------------------------------------------------------


def langgraph_setups(steps: Sequence[int]) -> dict[str, dict[int, Workload]]:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from langgraph.prebuilt import create_react_agent

    class ScriptedChatModel(BaseChatModel):
        """Answers each turn from a script; `bind_tools` as a real chat model does it."""

        n: int
        turn: int = 0

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def _generate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Any:
            i = self.turn
            self.turn += 1
            if i < self.n - 1:
                message = AIMessage(
                    content="", tool_calls=[{"name": "add", "args": {"a": i, "b": i + 1}, "id": f"call_{i}"}]
                )
            else:
                message = AIMessage(content=answer(self.n))
            return ChatResult(generations=[ChatGeneration(message=message)])

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
            return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def build(n: int) -> Workload:
        ledger = Ledger()

        @tool
        def add(a: int, b: int) -> int:
            """Add two whole numbers.

            Args:
                a: The first number.
                b: The second number.
            """
            return ledger.add(a, b)

        model = ScriptedChatModel(n=n)
        with warnings.catch_warnings():  # create_react_agent moved to langchain.agents, which is not installed
            warnings.simplefilter("ignore")
            graph = create_react_agent(model, [add], prompt=INSTRUCTIONS)
        config = {"recursion_limit": 2 * n + 5}

        def reset() -> None:
            model.turn = 0
            ledger.calls.clear()

        def check(state: Any) -> None:
            messages = state["messages"]
            returned = [m.content for m in messages if isinstance(m, ToolMessage)]
            verify("langgraph", n, ledger, messages[-1].content, returned)

        return Workload(reset=reset, check=check, run=lambda: graph.invoke({"messages": [("user", PROMPT)]}, config))

    return {"langgraph": {n: build(n) for n in steps}}


# --- smolagents ------------------------------------------------------------------------------


def smolagents_setups(steps: Sequence[int]) -> dict[str, dict[int, Workload]]:
    import smolagents
    from smolagents.memory import ActionStep
    from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole
    from smolagents.monitoring import LogLevel, TokenUsage

    class ScriptedModel(smolagents.Model):
        """Answers each turn from a script (smolagents ships no test model; `generate` is its extension point).

        A ToolCallingAgent ends a run by calling its `final_answer` tool, so the
        last turn is that call rather than plain text.
        """

        def __init__(self, n: int) -> None:
            super().__init__(model_id="scripted")
            self.n = n
            self.turn = 0

        def generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> ChatMessage:
            i = self.turn
            self.turn += 1
            if i < self.n - 1:
                name, arguments, call_id = "add", {"a": i, "b": i + 1}, f"call_{i}"
            else:
                name, arguments, call_id = "final_answer", {"answer": answer(self.n)}, "call_final"
            function = ChatMessageToolCallFunction(name=name, arguments=arguments)
            return ChatMessage(
                role=MessageRole.ASSISTANT,
                content="",
                tool_calls=[ChatMessageToolCall(function=function, id=call_id, type="function")],
                token_usage=TokenUsage(input_tokens=0, output_tokens=0),
            )

    def build(n: int) -> Workload:
        ledger = Ledger()

        def add(a: int, b: int) -> int:
            """Add two whole numbers.

            Args:
                a: The first number.
                b: The second number.
            """
            return ledger.add(a, b)

        model = ScriptedModel(n)
        # Called, not used as `@smolagents.tool`: smolagents reads the source and
        # refuses a decorator not spelled `@tool`. OFF: no console output (INFO prints rich panels).
        agent = smolagents.ToolCallingAgent(
            tools=[smolagents.tool(add)], model=model, max_steps=n + 1, verbosity_level=LogLevel.OFF
        )

        def reset() -> None:
            model.turn = 0
            ledger.calls.clear()

        def check(output: Any) -> None:
            actions = [s for s in agent.memory.steps if isinstance(s, ActionStep)]
            errors = [s.error for s in actions if s.error is not None]
            if errors:
                raise Wrong(f"smolagents, {n} steps: errors {errors}")
            verify("smolagents", n, ledger, output, [s.observations for s in actions[:-1]])

        return Workload(reset=reset, check=check, run=lambda: agent.run(PROMPT))

    return {"smolagents": {n: build(n) for n in steps}}


# --- the worker ------------------------------------------------------------------------------


def setups(framework: str, steps: Sequence[int]) -> dict[str, dict[int, Workload]]:
    if framework.startswith("agentkit"):
        variant = framework.removeprefix("agentkit").removeprefix("-") or "default"
        return agentkit_setups(steps, variant)
    builders: dict[str, Callable[[Sequence[int]], dict[str, dict[int, Workload]]]] = {
        "smolagents": smolagents_setups,
        "langgraph": langgraph_setups,
        "openai-agents": openai_agents_setups,
        "pydantic-ai": pydantic_ai_setups,
    }
    return builders[framework](steps)


class Timer:
    """Times batches of runs of one framework's workloads, on one long-lived event loop."""

    def __init__(self, workloads: dict[str, dict[int, Workload]]) -> None:
        self.workloads = workloads
        self.loop = asyncio.new_event_loop()

    def batch(self, setup: str, steps: int, runs: int) -> float:
        """Seconds spent inside `runs` runs; resets and checks happen between them, untimed."""
        work = self.workloads[setup][steps]
        gc.collect()
        with work.patch():
            if work.run is not None:
                return self._sync(work, runs)
            return self.loop.run_until_complete(self._async(work, runs))

    @staticmethod
    def _sync(work: Workload, runs: int) -> float:
        assert work.run is not None
        total = 0
        for _ in range(runs):
            work.reset()
            start = time.perf_counter_ns()
            result = work.run()
            total += time.perf_counter_ns() - start
            work.check(result)
        return total / 1e9

    @staticmethod
    async def _async(work: Workload, runs: int) -> float:
        assert work.arun is not None
        total = 0
        for _ in range(runs):
            work.reset()
            start = time.perf_counter_ns()
            result = await work.arun()
            total += time.perf_counter_ns() - start
            work.check(result)
        return total / 1e9


def versions(framework: str) -> dict[str, str]:
    names = DISTRIBUTIONS["agentkit" if framework.startswith("agentkit") else framework]
    return {name: metadata.version(name) for name in names}


def serve(framework: str, steps: Sequence[int]) -> None:
    timer = Timer(setups(framework, steps))
    for setup in timer.workloads:
        for n in steps:
            timer.batch(setup, n, 2)  # built, warmed up and checked before anything is timed
    reply = {"ready": True, "setups": list(timer.workloads), "versions": versions(framework)}
    print(json.dumps(reply), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        seconds = timer.batch(command["setup"], command["steps"], command["runs"])
        print(json.dumps({"seconds": seconds}), flush=True)


def profile(steps: int, runs: int) -> None:
    """Print where agentkit's `arun` spends its time (the default setup: a sync tool in a worker thread)."""
    import cProfile
    import pstats

    timer = Timer(agentkit_setups([steps], "default"))
    timer.batch("agentkit", steps, 5)
    profiler = cProfile.Profile()
    profiler.enable()
    timer.batch("agentkit", steps, runs)
    profiler.disable()
    print(f"agentkit arun, {runs} runs of {steps} steps; µs per model call = tottime / {runs * steps} * 1e6")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one framework's agent loop (run by benchmarks/peers.py).")
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--profile", type=int, metavar="STEPS", help="agentkit only: profile its loop at STEPS steps")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile, runs=max(1, 5000 // args.profile))
        return 0
    serve(args.framework, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
