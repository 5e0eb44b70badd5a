"""The agent loop's own logic, on ScriptedRuntime: no model involved."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit import (
    Agent,
    AssistantMessage,
    ContextLengthExceeded,
    MaxStepsExceeded,
    ModelOutputError,
    ModelRequest,
    ModelResponse,
    ModelTurn,
    RunFailed,
    RunFinished,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolDefinitionError,
    ToolResult,
    ToolsFinished,
    Usage,
    UserMessage,
    tool,
)
from agentkit.messages import with_unique_call_ids
from agentkit.observers import RunEnd
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.function import FunctionRuntime
from agentkit.runtimes.scripted import Turn
from tests.support.tools import add


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in pairs]}


@tool
def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: What to say.
    """
    raise ValueError(f"boom: {reason}")


class Calculator(Agent):
    instructions = "Add numbers."
    tools = [add, explode]
    max_steps = 5


def results_of(result: Any) -> list[ToolResult]:
    return [m for m in result.messages if isinstance(m, ToolResult)]


# --- the basic loop -------------------------------------------------------------------


def test_a_run_calls_tools_then_answers() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": 2, "b": 3})), "The sum is 5."])
    result = Calculator(runtime=runtime).run("What is 2 + 3?")

    assert result.output == "The sum is 5."
    assert [r.content for r in results_of(result)] == [5]
    assert len(result.steps) == 2
    assert result.steps[0].tool_results[0].content == 5
    assert result.usage.requests == 2
    # The model saw the instructions, the prompt, its own call and the result.
    second = runtime.requests[1]
    assert [type(m).__name__ for m in second.messages] == [
        "SystemMessage",
        "UserMessage",
        "AssistantMessage",
        "ToolResult",
    ]
    assert second.messages[0].text == "Add numbers."  # type: ignore[union-attr]
    assert {t.name for t in second.tools} == {"add", "explode"}


def test_arun_and_stream_yield_events_in_order() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": 1, "b": 1})), "two"])

    async def collect() -> list[Any]:
        return [event async for event in Calculator(runtime=runtime).stream("1+1?")]

    events = asyncio.run(collect())
    assert [type(e) for e in events] == [ToolCallReady, ModelTurn, ToolsFinished, TextDelta, ModelTurn, RunFinished]
    assert events[0].call.arguments == {"a": 1, "b": 1}
    assert events[2].results[0].content == 2
    assert events[3].text == "two"
    assert events[-1].result.output == "two"

    async def whole() -> list[Any]:
        runtime.reset()
        return [event async for event in Calculator(runtime=runtime).stream("1+1?", deltas=False)]

    assert [type(e) for e in asyncio.run(whole())] == [ModelTurn, ToolsFinished, ModelTurn, RunFinished]


def test_run_inside_an_event_loop_says_to_use_arun() -> None:
    agent = Calculator(runtime=ScriptedRuntime(["hi"]))

    async def inside() -> None:
        agent.run("x")

    with pytest.raises(RuntimeError, match="arun"):
        asyncio.run(inside())


def test_prompt_may_be_a_conversation() -> None:
    runtime = ScriptedRuntime(["ok"])
    history = [UserMessage(text="hello"), AssistantMessage(text="hi"), UserMessage(text="again")]
    Calculator(runtime=runtime).run(history)
    assert list(runtime.requests[0].messages)[1:] == history


def test_no_tools_means_tool_choice_none() -> None:
    runtime = ScriptedRuntime(["plain"])
    Agent(runtime=runtime).run("hi")
    assert runtime.requests[0].tool_choice == "none"
    assert runtime.requests[0].tools == ()


# --- concurrency ----------------------------------------------------------------------


def test_async_tools_of_one_turn_run_concurrently() -> None:
    started: list[str] = []
    both_started = asyncio.Event()

    @tool
    async def wait_for_peer(name: str) -> str:
        """Returns once the other call has started too.

        Args:
            name: Who is waiting.
        """
        started.append(name)
        if len(started) == 2:
            both_started.set()
        # Serial execution would wait here forever: the peer never starts.
        await asyncio.wait_for(both_started.wait(), timeout=5)
        return name

    runtime = ScriptedRuntime([calls(("wait_for_peer", {"name": "a"}), ("wait_for_peer", {"name": "b"})), "done"])
    result = Agent(runtime=runtime, tools=[wait_for_peer]).run("go")
    contents = [r.content for r in results_of(result)]
    assert contents == ["a", "b"], contents


def test_sync_tools_of_one_turn_run_in_threads_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)

    @tool
    def meet(n: int) -> int:
        """Waits at a barrier for the two other calls.

        Args:
            n: A number to return.
        """
        barrier.wait()  # raises BrokenBarrierError if the calls ran one after another
        return n

    runtime = ScriptedRuntime([calls(("meet", {"n": 1}), ("meet", {"n": 2}), ("meet", {"n": 3})), "done"])
    result = Agent(runtime=runtime, tools=[meet]).run("go")
    assert [(r.content, r.is_error) for r in results_of(result)] == [(1, False), (2, False), (3, False)]


def test_a_blocking_sync_tool_does_not_block_other_agents_on_the_loop() -> None:
    barrier = threading.Barrier(2, timeout=5)

    @tool
    def rendezvous(who: str) -> str:
        """Blocks until the other agent's call arrives too.

        Args:
            who: Which agent calls.
        """
        barrier.wait()  # if the first call blocked the loop, the second would never start
        return who

    async def two_agents() -> list[str]:
        first = Agent(runtime=ScriptedRuntime([calls(("rendezvous", {"who": "a"})), "a"]), tools=[rendezvous])
        second = Agent(runtime=ScriptedRuntime([calls(("rendezvous", {"who": "b"})), "b"]), tools=[rendezvous])
        results = await asyncio.gather(first.arun("x"), second.arun("y"))
        return [results_of(r)[0].content for r in results]

    assert asyncio.run(two_agents()) == ["a", "b"]


# --- errors become observations ---------------------------------------------------------


def test_a_raising_tool_becomes_an_error_result_the_model_sees() -> None:
    runtime = ScriptedRuntime([calls(("explode", {"reason": "disk full"})), "it failed"])
    result = Calculator(runtime=runtime).run("try")

    (error,) = results_of(result)
    assert error.is_error
    assert "ValueError" in error.content
    assert "boom: disk full" in error.content
    assert runtime.requests[1].messages[-1] == error


def test_invalid_arguments_become_an_error_naming_the_field() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": 1, "b": "two"})), "sorry"])
    (error,) = results_of(Calculator(runtime=runtime).run("x"))
    assert error.is_error
    assert "ToolArgumentsError" in error.content
    assert "'add'" in error.content
    assert "b:" in error.content


def test_missing_and_unknown_arguments_are_reported() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": 1, "c": 2})), "sorry"])
    (error,) = results_of(Calculator(runtime=runtime).run("x"))
    assert "b: Field required" in error.content
    assert "c: Extra inputs are not permitted" in error.content


def garbage(request: ModelRequest, index: int) -> Turn:
    """An unconstrained model that calls a tool nobody offered, then gives up."""
    return {"tool_calls": [{"name": "rm_rf", "arguments": {}}]} if index == 0 else "ok"


def test_an_unknown_tool_becomes_an_error_listing_the_offered_tools() -> None:
    (error,) = results_of(Calculator(runtime=FunctionRuntime(garbage)).run("x"))
    assert error.is_error
    assert "unknown tool 'rm_rf'" in error.content
    assert "add, explode" in error.content


def test_one_failing_call_does_not_spoil_its_siblings() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": 1, "b": 2}), ("explode", {"reason": "x"})), "done"])
    results = results_of(Calculator(runtime=runtime).run("x"))
    assert [(r.name, r.is_error) for r in results] == [("add", False), ("explode", True)]


def test_timeouts_fail_the_call_not_the_run() -> None:
    @tool(timeout=0.1)
    async def hang() -> str:
        """Never returns."""
        await asyncio.sleep(30)
        return "never"

    @tool(timeout=0.1)
    def hang_sync() -> str:
        """Returns too late."""
        time.sleep(0.5)
        return "late"

    runtime = ScriptedRuntime([calls(("hang", {}), ("hang_sync", {})), "gave up"])
    result = Agent(runtime=runtime, tools=[hang, hang_sync]).run("x")
    errors = results_of(result)
    assert all(r.is_error and "did not finish within 0.1 s" in r.content for r in errors), errors
    assert result.output == "gave up"


def test_retries_rerun_a_failing_tool() -> None:
    attempts: list[int] = []

    @tool(retries=2)
    def flaky() -> str:
        """Fails twice, then works."""
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    result = Agent(runtime=ScriptedRuntime([calls(("flaky", {})), "done"]), tools=[flaky]).run("x")
    assert len(attempts) == 3
    assert results_of(result)[0].content == "ok"


def test_retries_give_up_with_the_last_error() -> None:
    attempts: list[int] = []

    @tool(retries=1)
    def broken() -> str:
        """Always fails."""
        attempts.append(1)
        raise ConnectionError(f"attempt {len(attempts)}")

    result = Agent(runtime=ScriptedRuntime([calls(("broken", {})), "done"]), tools=[broken]).run("x")
    assert len(attempts) == 2
    assert "attempt 2" in results_of(result)[0].content


def test_an_unserialisable_result_is_an_error() -> None:
    @tool
    def opaque() -> Any:
        """Returns something with no JSON form."""
        return object()

    (error,) = results_of(Agent(runtime=ScriptedRuntime([calls(("opaque", {})), "x"]), tools=[opaque]).run("x"))
    assert error.is_error
    assert "cannot serialise a object" in error.content


# --- approval ------------------------------------------------------------------------


@tool(requires_approval=True)
def delete_file(path: str) -> str:
    """Deletes a file.

    Args:
        path: Which file.
    """
    return f"deleted {path}"


def test_a_tool_that_requires_approval_is_refused_without_an_approver() -> None:
    runtime = ScriptedRuntime([calls(("delete_file", {"path": "a.txt"})), "ok"])
    (error,) = results_of(Agent(runtime=runtime, tools=[delete_file]).run("x"))
    assert error.is_error
    assert "requires approval" in error.content
    assert "approve=" in error.content


@pytest.mark.parametrize("is_async", [False, True])
def test_the_approver_decides(is_async: bool) -> None:
    seen: list[ToolCall] = []

    def decide(call: ToolCall) -> bool:
        seen.append(call)
        return bool(call.arguments["path"] == "ok.txt")

    async def decide_async(call: ToolCall) -> bool:
        return decide(call)

    runtime = ScriptedRuntime([calls(("delete_file", {"path": "ok.txt"}), ("delete_file", {"path": "no.txt"})), "x"])
    agent = Agent(runtime=runtime, tools=[delete_file], approve=decide_async if is_async else decide)
    results = results_of(agent.run("x"))
    assert [(r.content, r.is_error) for r in results] == [
        ("deleted ok.txt", False),
        ("the call to 'delete_file' was not approved", True),
    ]
    assert [c.arguments["path"] for c in seen] == ["ok.txt", "no.txt"]


# --- budgets -------------------------------------------------------------------------


def test_max_steps_raises_with_the_partial_trajectory() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": i, "b": 1})) for i in range(5)])
    with pytest.raises(MaxStepsExceeded, match="3 model steps") as info:
        Calculator(runtime=runtime, max_steps=3).run("loop forever")
    partial = info.value.partial
    assert partial is not None
    assert len(partial.steps) == 3
    # The last step was asked for an answer (tool_choice "none"); the script called
    # anyway, as an unconstrained model can, and that call did not run.
    assert [r.tool_choice for r in runtime.requests] == ["auto", "auto", "none"]
    assert [r.content for r in results_of(partial)] == [1, 2]
    assert partial.usage.requests == 3
    assert runtime.remaining == 2


def test_a_failed_run_carries_no_unrelated_exception_context() -> None:
    # run() once started asyncio.run inside `except RuntimeError:`, so every error
    # it raised was shown "during handling of" a "no running event loop" error.
    runtime = ScriptedRuntime([calls(("add", {"a": i, "b": 1})) for i in range(3)])
    with pytest.raises(MaxStepsExceeded) as info:
        Calculator(runtime=runtime, max_steps=2).run("loop forever")
    chain: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert not any("no running event loop" in str(e) for e in chain), chain


def test_run_inside_an_event_loop_is_refused_with_what_to_await() -> None:
    agent = Calculator(runtime=ScriptedRuntime(["hi"]))

    async def inside() -> None:
        with pytest.raises(RuntimeError, match=r"Calculator.run\(\) was called inside an event loop.*await agent.arun"):
            agent.run("hi")
        with pytest.raises(RuntimeError, match=r"resume\(\) was called inside an event loop"):
            agent.resume("01J")

    asyncio.run(inside())


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        Calculator(runtime=ScriptedRuntime([]), max_steps=0)


# --- typed output --------------------------------------------------------------------


class Sum(pydantic.BaseModel):
    total: int
    explanation: str


class Summing(Agent[Sum]):
    tools = [add]
    output_type = Sum


def test_a_typed_final_answer_is_parsed_into_the_output_type() -> None:
    runtime = ScriptedRuntime([calls(("add", {"a": 2, "b": 2})), json.dumps({"total": 4, "explanation": "2+2"})])
    result = Summing(runtime=runtime).run("2+2?")
    assert result.output == Sum(total=4, explanation="2+2")
    schema = runtime.requests[0].output_schema
    assert schema is not None
    assert schema["required"] == ["total", "explanation"]
    assert "title" not in schema


def test_a_final_answer_that_misses_the_type_is_sent_back_to_the_model() -> None:
    runtime = ScriptedRuntime(['{"total": "many"}', '{"total": 4, "explanation": "fixed"}'])
    result = Summing(runtime=runtime).run("x")
    assert result.output.total == 4
    feedback = runtime.requests[1].messages[-1]
    assert isinstance(feedback, UserMessage)
    assert "not a valid Sum" in feedback.text
    assert "total" in feedback.text
    assert feedback.text.endswith("Answer again with JSON that fits the schema.")
    # The model must answer now: a runtime that can then enforces the schema.
    assert [r.tool_choice for r in runtime.requests] == ["auto", "none"]


def test_a_final_answer_that_never_fits_ends_in_max_steps() -> None:
    with pytest.raises(MaxStepsExceeded):
        Summing(runtime=ScriptedRuntime(["nope", "nope"]), max_steps=2).run("x")


def test_output_type_may_be_a_plain_type() -> None:
    result = Agent[list[int]](runtime=ScriptedRuntime(["[1, 2, 3]"]), output_type=list[int]).run("x")
    assert result.output == [1, 2, 3]


# --- agent definition ----------------------------------------------------------------


class Greeter(Agent):
    instructions = """
        Greet people.
        Be brief.
    """

    def __init__(self, greeting: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.greeting = greeting

    @tool
    def greet(self, name: str) -> str:
        """Greets someone.

        Args:
            name: Whom to greet.
        """
        return f"{self.greeting}, {name}!"


def test_tool_methods_are_bound_to_the_instance() -> None:
    runtime = ScriptedRuntime([calls(("greet", {"name": "Ada"})), "done"])
    result = Greeter("Hello", runtime=runtime).run("greet Ada")
    assert results_of(result)[0].content == "Hello, Ada!"
    assert runtime.requests[0].messages[0].text == "Greet people.\nBe brief."  # type: ignore[union-attr]
    spec = runtime.requests[0].tools[0]
    assert spec.name == "greet"
    assert list(spec.parameters["properties"]) == ["name"]


def test_constructor_arguments_override_the_class() -> None:
    runtime = ScriptedRuntime(["x"])
    agent = Calculator(runtime=runtime, instructions="Other.", tools=[add], max_steps=2, name="calc")
    agent.run("x")
    assert agent.max_steps == 2
    assert runtime.requests[0].messages[0].text == "Other."  # type: ignore[union-attr]
    assert [t.name for t in runtime.requests[0].tools] == ["add"]
    assert "calc" in repr(agent)
    assert Calculator.max_steps == 5  # the class is untouched


def test_two_tools_with_one_name_are_refused() -> None:
    @tool(name="add")
    def other_add(x: int) -> int:
        """Another add."""
        return x

    with pytest.raises(ToolDefinitionError, match="add"):
        Calculator(runtime=ScriptedRuntime([]), tools=[add, other_add])


def test_plain_typed_functions_are_accepted_as_tools() -> None:
    def shout(text: str) -> str:
        """Upper-cases text.

        Args:
            text: The text.
        """
        return text.upper()

    runtime = ScriptedRuntime([calls(("shout", {"text": "hey"})), "done"])
    result = Agent(runtime=runtime, tools=[shout]).run("x")
    assert results_of(result)[0].content == "HEY"
    assert runtime.requests[0].tools[0].description == "Upper-cases text."


def test_sync_tools_run_in_a_worker_thread_unless_inline() -> None:
    where: dict[str, int] = {}

    @tool
    def threaded() -> str:
        """Notes its thread."""
        where["threaded"] = threading.get_ident()
        return "t"

    @tool(inline=True)
    def on_loop() -> str:
        """Notes its thread."""
        where["inline"] = threading.get_ident()
        return "i"

    runtime = ScriptedRuntime([calls(("threaded", {}), ("on_loop", {})), "done"])
    Agent(runtime=runtime, tools=[threaded, on_loop]).run("x")
    loop_thread = threading.get_ident()  # asyncio.run() runs the loop in this thread
    assert where["inline"] == loop_thread
    assert where["threaded"] != loop_thread


def test_an_inline_tool_cannot_have_a_timeout() -> None:
    def quick() -> str:
        """Quick."""
        return "q"

    with pytest.raises(ToolDefinitionError, match=r"inline tool .* cannot be timed out"):
        tool(inline=True, timeout=1)(quick)


def FailingSecondTurn(error: Exception) -> FunctionRuntime:  # reads as a class
    """Answers with a call, then fails the way a runtime can (an overflowing context)."""

    def turn(request: ModelRequest, index: int) -> ModelResponse:
        if index:
            raise error
        call = ToolCall(name="add", arguments={"a": 1, "b": 2}, id="c1")
        return ModelResponse(message=AssistantMessage(tool_calls=(call,)), usage=Usage(prompt_tokens=7, requests=1))

    return FunctionRuntime(turn)


def test_an_error_raised_mid_run_carries_the_trajectory() -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        Calculator(runtime=FailingSecondTurn(ContextLengthExceeded("too long"))).run("x")
    partial = info.value.partial
    assert partial is not None
    assert len(partial.steps) == 1
    assert [r.content for r in results_of(partial)] == [3]
    assert partial.usage.prompt_tokens == 7


def test_an_unreadable_turn_is_fed_back_and_its_tokens_counted() -> None:
    def babble_once(request: ModelRequest, index: int) -> str:
        if index == 0:
            usage = Usage(prompt_tokens=10, completion_tokens=5, requests=1)
            raise ModelOutputError("expected a JSON action object", "blah blah", usage=usage)
        return "fine"

    runtime = FunctionRuntime(babble_once)
    result = Calculator(runtime=runtime).run("x")
    assert result.output == "fine"
    garbled = result.steps[0].response
    assert garbled.finish_reason == "error"
    assert garbled.raw_text == "blah blah"
    assert result.usage.completion_tokens == 5
    assert result.usage.requests == 2
    feedback = runtime.requests[1].messages[-1]
    assert isinstance(feedback, UserMessage)
    assert "could not be read" in feedback.text
    assert "blah blah" in feedback.text
    assert runtime.requests[1].tool_choice == "auto"


@pytest.mark.parametrize(
    ("tools", "again"),
    [
        ([add], "Call the tools again with arguments that fit their schemas."),
        ([], "Answer without calling a tool."),  # the turn offered no tool to call
    ],
)
def test_calls_a_runtime_found_wrong_are_listed_in_the_feedback(tools: list[Any], again: str) -> None:
    problems = ["add: arguments: 'b' is a required property", "'sub' is not a tool you may call now"]

    def wrong_once(request: ModelRequest, index: int) -> str:
        if index == 0:
            raise ModelOutputError("invalid calls", '{"tool_calls": []}', problems=problems)
        return "fine"

    runtime = FunctionRuntime(wrong_once)
    result = Agent(tools=tools, runtime=runtime).run("x")
    assert result.output == "fine"
    wrong = result.steps[0].response
    assert (wrong.finish_reason, wrong.raw_text) == ("error", '{"tool_calls": []}')
    assert wrong.metadata["problems"] == problems
    feedback = runtime.requests[1].messages[-1]
    assert isinstance(feedback, UserMessage)
    # Listed, not quoted: a model shown its unusable reply would copy it.
    assert feedback.text == f"Your last reply could not be used: {'; '.join(problems)}. {again}"


def test_a_tools_own_timeout_error_is_an_ordinary_failure() -> None:
    @tool
    def fetch() -> str:
        """A socket times out inside the tool."""
        raise TimeoutError("read timed out")

    @tool(timeout=30)
    async def fetch_async() -> str:
        """The same, in a tool that has a timeout of its own too."""
        raise TimeoutError("read timed out")

    for fn in (fetch, fetch_async):
        runtime = ScriptedRuntime([calls((fn.spec.name, {})), "x"])
        (error,) = results_of(Agent(runtime=runtime, tools=[fn]).run("x"))
        assert "ToolExecutionError" in error.content
        assert "read timed out" in error.content
        assert "did not finish within" not in error.content


def test_an_async_tool_behind_a_sync_wrapper_is_awaited() -> None:
    async def lookup(key: str) -> str:
        """Looks up a key.

        Args:
            key: The key.
        """
        await asyncio.sleep(0)
        return key.upper()

    @functools.wraps(lookup)
    def wrapper(key: str) -> Any:
        return lookup(key)  # returns a coroutine: a sync function to inspect

    wrapped = tool(wrapper)
    runtime = ScriptedRuntime([calls(("lookup", {"key": "k"})), "x"])
    (result,) = results_of(Agent(runtime=runtime, tools=[wrapped]).run("x"))
    assert (result.content, result.is_error) == ("K", False)


def test_an_approver_that_raises_becomes_an_error_result() -> None:
    def approve(call: ToolCall) -> bool:
        raise KeyError("no policy for this user")

    runtime = ScriptedRuntime([calls(("delete_file", {"path": "a"})), "done"])
    result = Agent(runtime=runtime, tools=[delete_file], approve=approve).run("x")
    (error,) = results_of(result)
    assert error.is_error
    assert "no policy for this user" in error.content
    assert result.output == "done"


def test_a_result_that_cannot_be_serialised_for_any_reason_is_an_error() -> None:
    @tool
    def circular() -> Any:
        """Returns a list that contains itself."""
        loop: list[Any] = []
        loop.append(loop)
        return loop

    (error,) = results_of(Agent(runtime=ScriptedRuntime([calls(("circular", {})), "x"]), tools=[circular]).run("x"))
    assert error.is_error
    assert "Circular reference" in error.content


def test_an_unexpected_runtime_error_keeps_the_trajectory() -> None:
    with pytest.raises(RunFailed, match="the runtime failed at step 1: OSError: connection reset") as info:
        Calculator(runtime=FailingSecondTurn(OSError("connection reset"))).run("x")
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.partial is not None
    assert len(info.value.partial.steps) == 1


# --- call ids --------------------------------------------------------------------------------

IDS = st.sampled_from(["", "a", "b", "a@1", "a@1.1", "call_0"])


@given(st.lists(st.lists(IDS, max_size=4), max_size=6))
@settings(max_examples=300, deadline=None)
def test_call_ids_come_out_unique_and_keep_the_runtimes_own(turns: list[list[str]]) -> None:
    taken: set[str] = set()
    made: list[ToolCall] = []
    for step, ids in enumerate(turns):
        before = set(taken)
        message = AssistantMessage(tool_calls=[ToolCall(name="add", id=i) for i in ids])
        unique = with_unique_call_ids(message, taken, step)
        # Made again from the same history, the ids are the same: a stored run and an unstored one agree.
        assert with_unique_call_ids(message, set(before), step) == unique
        for given_id, call in zip(ids, unique.tool_calls, strict=True):
            if call.runtime_id is None and call.id == given_id:
                assert given_id  # kept only where it did not collide
                assert given_id not in before
            else:
                assert call.id not in before
                assert call.id.startswith(f"{given_id or 'call'}@{step}")
                assert call.wire_id == (given_id or call.id)
        made.extend(unique.tool_calls)
    assert len({c.id for c in made}) == len(made)
    assert taken == {c.id for c in made}


# --- observers -----------------------------------------------------------------------


def test_an_observer_is_told_every_phase_in_order() -> None:
    from agentkit.observers import RunObserver

    class Log(RunObserver):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def started(self, run: Any, *, resumed: bool) -> None:
            self.seen.append(f"started resumed={resumed}")

        def asking(self, run: Any, index: int, request: ModelRequest) -> None:
            self.seen.append(f"asking {index} {request.tool_choice}")

        def answered(self, run: Any, index: int, response: ModelResponse, position: int | None) -> None:
            self.seen.append(f"answered {index} at {position}")

        def tool_started(self, run: Any, call: ToolCall, tool: Any) -> None:
            self.seen.append(f"tool {call.name}")

        def tool_finished(self, run: Any, result: ToolResult, started: float | None) -> None:
            self.seen.append(f"result {result.content}")

        def ended(self, run: Any, end: RunEnd) -> None:
            self.seen.append(f"ended {end.status} {end.output}")

    log = Log()
    runtime = ScriptedRuntime([calls(("add", {"a": 1, "b": 1})), "two"])
    Calculator(runtime=runtime, observers=[log]).run("1+1?")
    assert log.seen == [
        "started resumed=False",
        "asking 0 auto",
        "answered 0 at 2",
        "tool add",
        "result 2",
        "asking 1 auto",
        "answered 1 at 4",
        "ended done two",
    ]
