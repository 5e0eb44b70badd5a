"""`OpenAICompatible`'s own logic: URIs, the chat form, client-side validation, and what a run does with it.

The server here is a real HTTP server whose answers the tests script; the
runtime against real vLLM is in tests/integration/test_server_runtimes.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agentkit import (
    Agent,
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolResult,
    UserMessage,
)
from agentkit.dialect import get_dialect
from agentkit.errors import MaxStepsExceeded, ModelOutputError, OutputTruncated, RuntimeUnavailable, ServerError
from agentkit.runtime import TextDelta, ThinkingDelta, ToolCallReady
from agentkit.runtimes import OpenAICompatible, VLLMServer, resolve
from agentkit.runtimes._http import RetryPolicy
from agentkit.runtimes.openai import chat_messages, parse_server_uri
from agentkit.store import Store
from agentkit.tool import ToolSpec
from tests.support.scripted_server import Events, ScriptedServer
from tests.support.tools import add

ADD = ToolSpec(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)


ANSWER = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}


def reply(content: str | None = None, calls: list[tuple[str, Any]] = (), usage: int = 10, spent: int = 3) -> Any:  # type: ignore[assignment]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(calls)
        ]
    body = {
        "choices": [{"message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": usage, "completion_tokens": spent, "prompt_tokens_details": {"cached_tokens": 4}},
    }
    return (200, {}, body)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


def runtime(scripted: ScriptedServer, **kwargs: Any) -> OpenAICompatible:
    kwargs.setdefault("model", "m")
    kwargs.setdefault("retry", RetryPolicy(attempts=1))
    return OpenAICompatible(scripted.base + "/v1", **kwargs)


def ask(runtime: Any, **request: Any) -> ModelResponse:
    request.setdefault("messages", (UserMessage(text="2+3?"),))
    request.setdefault("tools", (ADD,))
    return asyncio.run(runtime.generate(ModelRequest(**request)))


# --- URIs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "url", "model", "kind"),
    [
        ("ollama:gemma4:e4b", "http://localhost:11434/v1", "gemma4:e4b", "ollama"),
        ("lmstudio:google/gemma-4-e4b", "http://localhost:1234/v1", "google/gemma-4-e4b", "lmstudio"),
        ("openai:https://api.example.com/v1?model=gemma-4-31b", "https://api.example.com/v1", "gemma-4-31b", "openai"),
    ],
)
def test_server_uris(uri: str, url: str, model: str | None, kind: str) -> None:
    built = resolve(uri)
    assert isinstance(built, OpenAICompatible)
    assert (built.base_url, built.model, built.kind.name, built.info.uri) == (url, model, kind, uri)


def test_ollama_host_moves_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    assert parse_server_uri("ollama", "gemma4")[0] == "http://10.0.0.5:11434/v1"


def test_vllm_server_uris() -> None:
    raw = resolve("vllm-server:http://gpu:8000/v1")
    chat = resolve("vllm-server:http://gpu:8000/v1?mode=chat&model=google/gemma-4-31B-it")
    assert isinstance(raw, VLLMServer)
    assert isinstance(chat, VLLMServer)
    assert (raw.mode, raw.model, raw.info.constrained) == ("raw", None, True)
    assert (chat.mode, chat.model, chat.info.constrained) == ("chat", "google/gemma-4-31B-it", True)
    with pytest.raises(RuntimeUnavailable, match="modes are raw and chat"):
        resolve("vllm-server:http://gpu:8000/v1?mode=fast")


def test_a_url_is_required_where_there_is_no_default() -> None:
    with pytest.raises(RuntimeUnavailable, match="needs a server URL"):
        resolve("openai:gpt")


# --- the chat form --------------------------------------------------------------------------


def test_the_conversation_in_chat_form() -> None:
    call = ToolCall(name="add", arguments={"a": 2, "b": 3}, id="c1")
    messages = chat_messages(
        [
            SystemMessage(text="Be brief."),
            UserMessage(text="2+3?"),
            AssistantMessage(tool_calls=(call,)),
            ToolResult(call_id="c1", name="add", content={"sum": 5}),
            ToolResult(call_id="c2", name="add", content="overflow", is_error=True),
        ],
        ANSWER,
    )
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("Be brief.\n\nGive your final answer as JSON")
    assert messages[2] == {  # no null content: Ollama refuses one
        "role": "assistant",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}],
    }
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "name": "add", "content": '{"sum": 5}'}
    assert messages[4]["content"] == "error: overflow"


@pytest.mark.parametrize(
    ("server_kind", "choice", "sent"),
    [
        ("openai", "add", {"type": "function", "function": {"name": "add"}}),
        ("lmstudio", "add", "required"),
        ("vllm", "required", None),
        ("ollama", "auto", None),
        ("llamacpp", "required", "required"),
    ],
)
def test_tool_choice_is_sent_as_the_server_honours_it(server_kind: str, choice: str, sent: Any) -> None:
    built = OpenAICompatible("http://x/v1", model="m", server=server_kind)
    body = built.payload(
        ModelRequest(messages=(UserMessage(text="hi"),), tools=(ADD,), tool_choice=choice), [], final=False
    )
    assert body.get("tool_choice") == sent
    assert body["tools"][0]["function"]["name"] == "add"


# --- answers, validation and repair ----------------------------------------------------------


def test_a_valid_call_is_returned_with_its_id_and_usage(server: ScriptedServer) -> None:
    server.replies = [reply(calls=[("add", '{"a": 2, "b": 3}')])]
    response = ask(runtime(server))
    assert response.message.tool_calls == (ToolCall(name="add", arguments={"a": 2, "b": 3}, id="call_0"),)
    assert response.finish_reason == "tool_calls"
    assert (response.usage.prompt_tokens, response.usage.cached_tokens, response.usage.requests) == (10, 4, 1)
    sent = server.seen[0][2]
    assert sent["tools"][0]["function"]["parameters"] == dict(ADD.parameters)
    assert sent["messages"] == [{"role": "user", "content": "2+3?"}]


def test_a_server_that_numbers_calls_per_answer_runs_to_the_end_and_sees_its_own_ids(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """`call_0` in every answer (llama.cpp-style numbering): the run's ids are
    made unique, and the server is sent back the ids it gave."""

    answers = [reply(calls=[("add", '{"a": 1, "b": 2}')]), reply(calls=[("add", '{"a": 3, "b": 4}')]), reply("3, 7")]
    server.replies = list(answers)
    stored = Agent(tools=[add], runtime=runtime(server), store=Store(tmp_path / "runs.db")).run("Add twice.")
    server.replies = list(answers)
    unstored = Agent(tools=[add], runtime=runtime(server)).run("Add twice.")
    assert stored.output == "3, 7"
    assert stored.messages == unstored.messages
    assert [(c.id, c.runtime_id) for c in stored.tool_calls] == [("call_0", None), ("call_0@1", "call_0")]
    last = server.seen[2][2]["messages"]  # the stored run's third request
    assert [c["id"] for m in last if m["role"] == "assistant" for c in m["tool_calls"]] == ["call_0", "call_0"]
    assert [(m["tool_call_id"], m["content"]) for m in last if m["role"] == "tool"] == [
        ("call_0", "3"),
        ("call_0", "7"),
    ]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (("add", '{"a": 2}'), "add: arguments: 'b' is a required property"),
        (("add", '{"a": "two", "b": 3}'), "add: a: 'two' is not of type 'integer'"),
        (("add", "{not json"), "the arguments of add are not a JSON object"),
        (("sub", "{}"), "'sub' is not a tool you may call now (allowed: add)"),
    ],
)
def test_an_invalid_call_is_kept_as_a_step_and_the_run_asks_again(
    server: ScriptedServer, bad: tuple[str, str], problem: str
) -> None:
    server.replies = [
        reply(calls=[bad]),
        reply(calls=[("add", {"a": 2, "b": 3})], usage=20),  # an object is accepted as well
        reply("5", usage=30),
    ]
    result = Agent(tools=[add], runtime=runtime(server)).run("2+3?")
    assert result.output == "5"
    invalid, called, answered = result.steps
    assert invalid.response.finish_reason == "error"
    assert not invalid.response.message.tool_calls
    assert invalid.tool_results == ()
    assert invalid.response.metadata["problems"][0].startswith(problem)
    # The trajectory keeps the reply the run could not use, as the server sent it.
    assert json.loads(invalid.response.raw_text)["tool_calls"][0]["function"]["name"] == bad[0]
    assert [r.content for r in called.tool_results] == [5]
    assert answered.response.message.text == "5"
    # Every turn's tokens count, the invalid one's too.
    assert (result.usage.prompt_tokens, result.usage.requests) == (60, 3)
    again = server.seen[1][2]["messages"]
    # The unusable turn is not replayed (the model would copy it): one user turn says what was wrong.
    assert again[:-1] == server.seen[0][2]["messages"]
    assert again[-1]["role"] == "user"
    assert again[-1]["content"].startswith("Your last reply could not be used: " + problem)
    assert again[-1]["content"].endswith("Call the tools again with arguments that fit their schemas.")
    assert "tools" in server.seen[1][2]


def test_every_problem_of_a_turn_is_listed_in_the_feedback(server: ScriptedServer) -> None:
    server.replies = [reply(calls=[("add", '{"a": 1}'), ("sub", "{}")]), reply("fine")]
    result = Agent(tools=[add], runtime=runtime(server)).run("2+3?")
    problems = ["add: arguments: 'b' is a required property", "'sub' is not a tool you may call now (allowed: add)"]
    assert result.steps[0].response.metadata["problems"] == problems
    feedback = server.seen[1][2]["messages"][-1]["content"]
    assert feedback.startswith("Your last reply could not be used: " + "; ".join(problems) + ". ")


def test_an_invalid_call_is_a_model_output_error_at_once(server: ScriptedServer) -> None:
    server.replies = [reply(calls=[("add", '{"a": 1}')]), reply(calls=[("add", '{"a": 1, "b": 1}')])]
    with pytest.raises(ModelOutputError, match=r"do not fit the request: add: .*'b' is a required property") as info:
        ask(runtime(server))
    assert info.value.problems == ("add: arguments: 'b' is a required property",)
    assert info.value.usage is not None
    assert (info.value.usage.prompt_tokens, info.value.usage.requests) == (10, 1)
    assert len(server.seen) == 1


def test_calls_that_stay_invalid_end_in_the_runs_budget(server: ScriptedServer) -> None:
    server.replies = [reply(calls=[("add", '{"a": 1}')]), reply(calls=[("add", '{"a": 1}')])]
    with pytest.raises(MaxStepsExceeded) as info:
        Agent(tools=[add], runtime=runtime(server), max_steps=2).run("2+3?")
    partial = info.value.partial
    assert partial is not None
    assert [s.response.finish_reason for s in partial.steps] == ["error", "error"]
    assert partial.usage.requests == 2
    # The last turn the budget affords must answer: no tools are sent, and the feedback says so.
    assert "tools" not in server.seen[1][2]
    assert partial.steps[1].response.metadata["problems"] == ["'add' is not a tool you may call now (allowed: none)"]
    assert partial.messages[-1].text.endswith("Answer without calling a tool.")


def test_an_invalid_call_cut_off_at_max_tokens_is_truncation(server: ScriptedServer) -> None:
    # vLLM reports a call cut off by max_tokens as a finished call ("tool_calls"); the count tells.
    server.replies = [reply(calls=[("add", '{"a": 1}')], spent=512)]
    with pytest.raises(OutputTruncated, match="max_tokens=512"):
        ask(runtime(server))
    assert len(server.seen) == 1


def test_repairs_is_deprecated_and_ignored(server: ScriptedServer) -> None:
    with pytest.warns(DeprecationWarning, match="repairs= is ignored"):
        built = runtime(server, repairs=1)
    with pytest.warns(DeprecationWarning, match="repairs= is ignored"):
        VLLMServer(server.base + "/v1", mode="chat", repairs=0)
    server.replies = [reply(calls=[("add", '{"a": 1}')]), reply(calls=[("add", '{"a": 1, "b": 1}')])]
    with pytest.raises(ModelOutputError):
        ask(built)
    assert len(server.seen) == 1


def test_a_named_tool_choice_is_checked_on_the_client(server: ScriptedServer) -> None:
    other = ToolSpec(name="noop", description="Nothing.", parameters={"type": "object", "properties": {}})
    server.replies = [reply("I'd rather not.")]
    with pytest.raises(ModelOutputError) as info:
        ask(runtime(server, server="ollama"), tools=(ADD, other), tool_choice="add")
    assert "tool_choice" not in server.seen[0][2]  # Ollama ignores it: not sent
    assert info.value.problems == ("you must call add",)


class Total(pydantic.BaseModel):
    sum: int


def test_a_typed_answer_that_misses_the_schema_is_asked_for_again_under_response_format(
    server: ScriptedServer,
) -> None:
    server.replies = [reply("The sum is 5."), reply('{"sum": 5}', usage=20)]
    result = Agent[Total](tools=[add], output_type=Total, runtime=runtime(server)).run("2+3?")
    assert result.output == Total(sum=5)
    missed, answered = result.steps
    assert missed.response.message.text == "The sum is 5."  # kept in the trajectory
    assert answered.response.message.text == '{"sum": 5}'
    assert (result.usage.prompt_tokens, result.usage.requests) == (30, 2)
    first, second = server.seen[0][2], server.seen[1][2]
    assert "tools" in first
    assert "response_format" not in first
    # The loop asks for an answer (tool_choice "none"): the server gets no tools and the schema to enforce.
    assert "tools" not in second
    assert second["response_format"]["json_schema"]["name"] == "final_answer"
    assert second["response_format"]["json_schema"]["schema"]["required"] == ["sum"]
    said, feedback = second["messages"][-2:]
    assert said == {"role": "assistant", "content": "The sum is 5."}
    assert feedback["role"] == "user"
    assert feedback["content"].endswith("Answer again with JSON that fits the schema.")


def test_a_typed_answer_that_fits_needs_no_second_request(server: ScriptedServer) -> None:
    server.replies = [reply('{"sum": 5}')]
    assert ask(runtime(server), output_schema=ANSWER).message.text == '{"sum": 5}'
    assert len(server.seen) == 1


def test_the_model_is_the_servers_only_one(server: ScriptedServer) -> None:
    server.replies = [(200, {}, {"data": [{"id": "gemma", "max_model_len": 4096}]}), reply("hi")]
    built = runtime(server, model=None)
    ask(built)
    assert built.model == "gemma"
    assert built.info.context_length == 4096
    assert server.seen[1][2]["model"] == "gemma"


def test_astart_learns_the_model_ahead_of_the_first_turn(server: ScriptedServer) -> None:
    server.replies = [(200, {}, {"data": [{"id": "gemma", "max_model_len": 4096}]}), reply("hi")]
    built = runtime(server, model=None)

    async def run() -> ModelResponse:
        async with built:
            assert built.model == "gemma"
            assert [path for _, path, _ in server.seen] == ["/v1/models"]
            return await built.generate(ModelRequest(messages=(UserMessage(text="hi"),)))

    assert asyncio.run(run()).message.text == "hi"
    assert [path for _, path, _ in server.seen] == ["/v1/models", "/v1/chat/completions"]


def test_every_request_goes_through_the_runtimes_pool(server: ScriptedServer) -> None:
    # The server keeps connections open (HTTP/1.1): one connection serves a whole run.
    connections: list[Any] = []
    handle = server.server.process_request
    server.server.RequestHandlerClass.protocol_version = "HTTP/1.1"  # type: ignore[attr-defined]

    def counted(request: Any, address: Any) -> None:
        connections.append(address)
        handle(request, address)

    server.server.process_request = counted  # type: ignore[method-assign]
    server.replies = [
        (200, {}, {"data": [{"id": "m"}]}),
        reply(calls=[("add", '{"a": 2, "b": 3}')]),
        reply("5"),
        reply(calls=[("add", '{"a": 1, "b": 1}')]),
        reply("2"),
    ]

    built = runtime(server, model=None)
    agent = Agent(tools=[add], runtime=built)
    # Two sync runs: each on an event loop of its own, each loop's connection closed with it.
    assert agent.run("2+3?").output == "5"
    assert agent.run("1+1?").output == "2"
    assert len(server.seen) == 5
    assert len(connections) == 2


def test_leaving_async_with_closes_the_connections(server: ScriptedServer) -> None:
    server.replies = [reply("hi")]
    built = runtime(server)

    async def run() -> Any:
        async with built:
            await built.generate(ModelRequest(messages=(UserMessage(text="hi"),)))
            client = built.pool.client()
        assert client.is_closed
        return client

    asyncio.run(run())


def test_several_models_need_a_name(server: ScriptedServer) -> None:
    server.replies = [(200, {}, {"data": [{"id": "a"}, {"id": "b"}]})]
    with pytest.raises(RuntimeUnavailable, match=r"serves 2 models \(a, b\); name one"):
        ask(runtime(server, model=None))


def test_api_keys_go_only_where_they_belong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.delenv("AGENTKIT_API_KEY", raising=False)
    assert OpenAICompatible("https://api.openai.com/v1", model="m").headers == {"Authorization": "Bearer sk-openai"}
    assert OpenAICompatible("http://gpu-box:8000/v1", model="m").headers == {}  # not leaked to any host
    monkeypatch.setenv("AGENTKIT_API_KEY", "ak")
    assert OpenAICompatible("http://gpu-box:8000/v1", model="m").headers == {"Authorization": "Bearer ak"}
    assert VLLMServer("http://gpu-box:8000/v1").headers == {"Authorization": "Bearer ak"}
    assert OpenAICompatible("http://x/v1", model="m", api_key="k").headers == {"Authorization": "Bearer k"}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("llamacpp:localhost:8080", "needs a server URL"),
        ("vllm-server:gpu-box", "needs a server URL"),
        ("openai:http://x/v1?modle=m", "unknown option modle"),
        ("openai:http://x/v1?mode=chat", "unknown option mode"),
        ("ollama:gemma4?x=1", "give the model's name alone"),
        ("openai:ftp://x/v1", "needs a server URL"),
    ],
)
def test_bad_server_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(RuntimeUnavailable, match=re.escape(message)):
        resolve(uri)


@pytest.mark.parametrize(
    "body",
    [{"choices": []}, {"error": {"message": "oops"}}, [1, 2], {"choices": [None]}],
)
def test_an_answer_without_a_completion_is_a_server_error(server: ScriptedServer, body: Any) -> None:
    server.replies = [(200, {}, body)]
    with pytest.raises(ServerError, match="answered without a completion"):
        ask(runtime(server))


def test_ollama_host_without_a_port_gets_ollamas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "myhost")
    assert parse_server_uri("ollama", "gemma4")[0] == "http://myhost:11434/v1"


def test_a_named_model_the_server_does_not_serve_is_refused(server: ScriptedServer) -> None:
    server.replies = [(200, {}, {"data": [{"id": "gemma", "max_model_len": 4096}]})]
    built = VLLMServer(server.base + "/v1", model="other", retry=RetryPolicy(attempts=1))
    with pytest.raises(RuntimeUnavailable, match=r"does not serve 'other'; it serves: gemma"):
        asyncio.run(built.connect())


# --- streaming ---------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def call_part(index: int, arguments: str, name: str | None = None, id: str | None = None) -> dict[str, Any]:
    function = {"arguments": arguments} | ({"name": name} if name else {})
    return {"tool_calls": [{"index": index, "function": function} | ({"id": id, "type": "function"} if id else {})]}


USAGE = {
    "choices": [],
    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}},
}


def streamed(runtime: Any, **request: Any) -> list[tuple[float, Any]]:
    """Each item `runtime.stream` yields, with the time it came."""
    request.setdefault("messages", (UserMessage(text="2+3?"),))
    request.setdefault("tools", (ADD,))

    async def read() -> list[tuple[float, Any]]:
        return [(time.monotonic(), item) async for item in runtime.stream(ModelRequest(**request))]

    return asyncio.run(read())


def test_a_streamed_answer_is_the_answer_generate_reads(server: ScriptedServer) -> None:
    pieces = ["The sum", " of 2 and 3", " is 5."]
    server.replies = [
        (
            200,
            {},
            Events(
                [chunk({"role": "assistant", "reasoning_content": "2+3"}), chunk({"reasoning_content": "=5"})]
                + [chunk({"content": p}) for p in pieces]
                + [chunk(finish="stop"), USAGE]
            ),
        ),
        reply("The sum of 2 and 3 is 5."),
    ]
    items = [item for _, item in streamed(runtime(server))]
    whole = ask(runtime(server))
    *deltas, response = items
    assert deltas == [ThinkingDelta(text="2+3"), ThinkingDelta(text="=5"), *(TextDelta(text=p) for p in pieces)]
    assert isinstance(response, ModelResponse)
    assert response.message == AssistantMessage(text="The sum of 2 and 3 is 5.", thinking="2+3=5")
    assert (response.message.text, response.usage, response.finish_reason) == (
        whole.message.text,
        whole.usage,
        whole.finish_reason,
    )
    sent = server.seen[0][2]
    assert (sent["stream"], sent["stream_options"]) == (True, {"include_usage": True})
    assert "stream" not in server.seen[1][2]


def test_streamed_calls_are_put_together_and_ready_when_the_next_begins(server: ScriptedServer) -> None:
    server.replies = [
        (
            200,
            {},
            Events(
                [
                    chunk(call_part(0, '{"a": 2', name="add", id="call_x")),
                    chunk(call_part(0, ', "b": 3}')),
                    chunk(call_part(1, '{"a": ', name="add")),  # no id: one is given, the same in the response
                    chunk(call_part(1, "4, ")),
                    chunk(call_part(1, '"b": 5}')),
                    chunk(finish="tool_calls"),
                    USAGE,
                ],
                pause=0.2,
            ),
        ),
    ]
    items = streamed(runtime(server))
    (first_at, first), (_, second), (response_at, response) = items
    assert first == ToolCallReady(call=ToolCall(name="add", arguments={"a": 2, "b": 3}, id="call_x"))
    assert isinstance(second, ToolCallReady)
    assert isinstance(response, ModelResponse)
    assert response.message.tool_calls == (first.call, second.call)
    assert response.finish_reason == "tool_calls"
    assert response_at - first_at >= 0.5  # the first call came when the second began, not at the end


def test_an_invalid_streamed_call_is_not_ready_and_the_turn_fails_after_its_deltas(server: ScriptedServer) -> None:
    server.replies = [
        (
            200,
            {},
            Events(
                [
                    chunk({"content": "Adding."}),
                    chunk(call_part(0, '{"a": 2}', name="add", id="bad")),
                    chunk(finish="tool_calls"),
                    USAGE,
                ]
            ),
        ),
        reply(calls=[("add", '{"a": 2, "b": 3}')]),
    ]
    items: list[Any] = []

    async def read() -> None:
        request = ModelRequest(messages=(UserMessage(text="2+3?"),), tools=(ADD,))
        async for item in runtime(server).stream(request):
            items.append(item)

    with pytest.raises(ModelOutputError) as info:
        asyncio.run(read())
    assert items == [TextDelta(text="Adding.")]  # the invalid call was never ready
    assert info.value.problems == ("add: arguments: 'b' is a required property",)
    assert info.value.usage is not None
    assert info.value.usage.requests == 1
    assert len(server.seen) == 1


def test_a_stream_is_retried_only_before_it_opens(server: ScriptedServer) -> None:
    server.replies = [(503, {}, {"error": {"message": "busy"}}), (200, {}, Events([chunk({"content": "5"}), USAGE]))]
    *_, (_, response) = streamed(runtime(server, retry=RetryPolicy(attempts=3, backoff=0.01)))
    assert response.metadata["retries"][0]["status"] == 503
    server.replies = [
        (200, {}, Events([chunk({"content": "The sum"}), chunk({"content": " is"}), USAGE], cut_after=2)),
        reply("The sum is 5."),
    ]
    seen: list[Any] = []

    async def read() -> None:
        stream = runtime(server, retry=RetryPolicy(attempts=3, backoff=0.01)).stream(
            ModelRequest(messages=(UserMessage(text="2+3?"),), tools=(ADD,))
        )
        async for item in stream:
            seen.append(item)

    with pytest.raises(ServerError, match="broke after 2 events"):
        asyncio.run(read())
    assert seen == [TextDelta(text="The sum"), TextDelta(text=" is")]
    assert len(server.seen) == 3  # a 503 and the stream; then the broken stream, not asked for again


def test_vllm_server_raw_mode_streams_text_the_dialect_reads(server: ScriptedServer) -> None:
    text = "Let me look.<|tool_call>call:add{a:2,b:3}<tool_call|>"
    cuts = [0, 5, 14, 20, 30, len(text)]  # inside the text and across the markers
    pieces = [text[a:b] for a, b in itertools.pairwise(cuts)]
    events = [{"choices": [{"index": 0, "text": p, "finish_reason": None}]} for p in pieces]
    events[-1]["choices"][0]["finish_reason"] = "stop"
    usage = {"prompt_tokens": 50, "completion_tokens": 12}
    server.replies = [
        (200, {}, Events([*events, {"choices": [], "usage": usage}])),
        (200, {}, {"choices": [{"text": text, "finish_reason": "stop"}], "usage": usage}),
    ]
    built = VLLMServer(
        server.base + "/v1", model="m", dialect=get_dialect("gemma4"), constrained=False, retry=RetryPolicy(attempts=1)
    )
    *deltas, response = [item for _, item in streamed(built)]
    whole = ask(built)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == response.message.text == "Let me look."
    assert [d.call for d in deltas if isinstance(d, ToolCallReady)] == list(response.message.tool_calls)
    assert (response.raw_text, response.usage, response.finish_reason) == (
        whole.raw_text,
        whole.usage,
        whole.finish_reason,
    )
    assert [(c.name, c.arguments) for c in response.message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert server.seen[0][2]["stream"] is True
    assert server.seen[0][1] == "/v1/completions"


def test_a_server_that_answers_whole_despite_stream_gives_the_turn_in_one_go(server: ScriptedServer) -> None:
    server.replies = [reply("Adding.", calls=[("add", '{"a": 2, "b": 3}')])]
    *deltas, (_, response) = streamed(runtime(server))
    assert [item for _, item in deltas] == [
        TextDelta(text="Adding."),
        ToolCallReady(call=response.message.tool_calls[0]),
    ]
    assert response.message.tool_calls[0] == ToolCall(name="add", arguments={"a": 2, "b": 3}, id="call_0")
    assert (response.usage.prompt_tokens, response.usage.cached_tokens) == (10, 4)


def test_doctor_probes_a_server_and_closes_what_it_opened(server: ScriptedServer) -> None:
    from agentkit.runtimes.doctor import probe

    server.replies = [
        (200, {}, {"data": [{"id": "gemma"}]}),
        reply(calls=[("add", '{"a": 2, "b": 3}')]),
        reply('{"city": "Oslo", "cold": true}'),
    ]
    report = asyncio.run(probe(f"openai:{server.base}/v1"))
    assert [(check.name, check.ok) for check in report.checks] == [
        ("reachable", True),
        ("tool calls", True),
        ("json schema", True),
    ]
    assert report.models == ["gemma"]


def test_a_plan_request_tells_the_model_to_write_references_as_json_objects() -> None:
    messages = [SystemMessage(text="Be brief."), UserMessage(text="Hi")]
    planned = chat_messages(messages, None, plan=True)
    assert planned[0]["content"].startswith("Be brief.\n\nPlan: ")
    assert '`{"$ref": "$2.city"}` is the field `city`' in planned[0]["content"]
    assert chat_messages(messages, None) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
