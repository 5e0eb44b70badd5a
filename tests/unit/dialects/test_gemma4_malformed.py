"""Malformed Gemma 4 calls as real servers have shown them, read by the tolerant parser.

Each known form (from public vLLM, Ollama and llama.cpp reports) is either
repaired, when its meaning is not in doubt, or reported: a `ModelOutputError`
that keeps the raw text and says what was wrong, which the loop stores as a
garbled step. None is dropped silently, and none is accepted in strict mode
(the grammar-constrained path). docs/gemma4.md lists the same table.

A chat server whose own parser fails leaves the call in the reply's
`content`: that path runs against a real local HTTP server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentkit import Agent
from agentkit.dialects.gemma4 import Gemma4Dialect, StreamParser, parse_turn
from agentkit.errors import ModelOutputError
from agentkit.messages import UserMessage
from agentkit.runtime import ModelRequest, ModelResponse
from agentkit.runtimes import OpenAICompatible
from agentkit.runtimes._http import RetryPolicy
from agentkit.runtimes.function import FunctionRuntime
from agentkit.store import Store
from tests.support.scripted_server import ScriptedServer
from tests.support.tools import add, get_weather

Q = '<|"|>'


@dataclass(frozen=True)
class Form:
    """One malformed form: the text, and the calls it is repaired to, or the reason it is reported."""

    name: str
    text: str
    calls: list[tuple[str, dict[str, Any]]] | None = None
    """None: reported, not repaired."""
    reason: str = ""
    """What the report says (for a reported form)."""


PARIS = [("get_weather", {"city": "Paris"})]
FORMS = [
    Form("opener without call", f"<|tool_call>:get_weather{{city:{Q}Paris{Q}}}<tool_call|>", PARIS),
    Form("opener with the name alone", f"<|tool_call>get_weather{{city:{Q}Paris{Q}}}<tool_call|>", PARIS),
    Form("no arguments, closed at once", "<|tool_call>call:get_weather<tool_call|>", [("get_weather", {})]),
    Form(
        "no '{' after the name, prose instead",
        "<|tool_call>call:get_weather Paris please<tool_call|>",
        reason="expected '{' after the tool name 'get_weather'",
    ),
    Form("arguments in parentheses", f"<|tool_call>call:get_weather(city:{Q}Paris{Q})<tool_call|>", PARIS),
    Form(
        "keyword arguments in parentheses",
        '<|tool_call>call:get_weather(city="Paris", days=3, hourly=True)<tool_call|>',
        [("get_weather", {"city": "Paris", "days": 3, "hourly": True})],
    ),
    Form(
        "positional arguments in parentheses",
        '<|tool_call>call:get_weather("Paris")<tool_call|>',
        reason="expected ':' or '=' after the key 'Paris'",
    ),
    Form(
        "JSON strings for Gemma's",
        '<|tool_call>call:get_weather{city:"Paris, France",note:"say \\"hi\\""}<tool_call|>',
        [("get_weather", {"city": "Paris, France", "note": 'say "hi"'})],
    ),
    Form('closing <|"| cut short before }', f'<|tool_call>call:get_weather{{city:{Q}Paris<|"|}}<tool_call|>', PARIS),
    Form(
        'closing <|" cut short before ,',
        f'<|tool_call>call:get_weather{{city:{Q}Paris<|",days:3}}<tool_call|>',
        [("get_weather", {"city": "Paris", "days": 3})],
    ),
    Form(
        "cut short in the first call of two",
        f'<|tool_call>call:get_weather{{city:{Q}Oslo<|"|}}<tool_call|>'
        f"<|tool_call>call:get_weather{{city:{Q}Rome{Q}}}<tool_call|>",
        [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})],
    ),
    Form(
        "closing delimiter missing",
        f"<|tool_call>call:get_weather{{city:{Q}Paris}}<tool_call|>",
        reason=f"a string is not closed by {Q} before the call ends",
    ),
    Form(
        "single-quoted strings",
        "<|tool_call>call:get_weather{city:'Paris'}<tool_call|>",
        reason="single-quoted strings are not read",
    ),
    Form(
        "the same call repeated in one turn",
        f"<|tool_call>call:get_weather{{city:{Q}Paris{Q}}}<tool_call|>" * 200,
        PARIS * 200,  # read as written: the loop runs it once (tests/unit/test_duplicate_calls.py)
    ),
    Form("an opener and nothing else", "<|tool_call>", reason="the text ended inside a tool call"),
]
VALID_STRICT = {"the same call repeated in one turn"}


@pytest.mark.parametrize("form", FORMS, ids=lambda form: form.name)
def test_each_malformed_form_is_repaired_or_reported(form: Form) -> None:
    if form.calls is not None:
        message = parse_turn(form.text, strict=False)
        assert [(c.name, c.arguments) for c in message.tool_calls] == form.calls
        return
    with pytest.raises(ModelOutputError) as caught:
        parse_turn(form.text, strict=False)
    assert form.reason in caught.value.reason
    assert caught.value.raw_text == form.text  # kept whole, for the garbled step


@pytest.mark.parametrize("form", [f for f in FORMS if f.name not in VALID_STRICT], ids=lambda form: form.name)
def test_strict_parsing_repairs_none_of_them(form: Form) -> None:
    with pytest.raises(ModelOutputError):
        parse_turn(form.text)


@pytest.mark.parametrize("form", FORMS[:-2], ids=lambda form: form.name)
def test_each_form_streamed_a_character_at_a_time_reads_as_the_whole(form: Form) -> None:
    parser = StreamParser(strict=False)

    def read() -> list[Any]:
        return [event for char in form.text for event in parser.feed(char)] + parser.close()

    if form.calls is None:
        with pytest.raises(ModelOutputError) as caught:
            read()
        assert form.reason in caught.value.reason
        return
    assert [(e.call.name, e.call.arguments) for e in read() if e.call is not None] == form.calls


def test_a_repair_never_changes_what_a_strictly_valid_turn_means() -> None:
    # The string holds what a cut-short delimiter looks like; the plain reading wins.
    text = f'<|tool_call>call:note{{text:{Q}a<|"|}},b{Q}}}<tool_call|>'
    assert parse_turn(text).tool_calls[0].arguments == {"text": 'a<|"|},b'}
    assert parse_turn(text, strict=False).tool_calls[0].arguments == {"text": 'a<|"|},b'}


# --- a reported form in a run: a garbled step that keeps the raw text -----------------------

GARBLED = "<|tool_call>call:get_weather Paris please<tool_call|>"


def test_a_reported_form_is_stored_as_a_garbled_step_with_its_raw_text(tmp_path: Path) -> None:
    dialect = Gemma4Dialect(strict=False)
    replies = [GARBLED, "It is sunny in Paris.<turn|>"]

    def model(request: ModelRequest, index: int) -> ModelResponse:
        message = dialect.parse(replies[index], request)  # what an unconstrained runtime does with the text
        return ModelResponse(message=message, raw_text=replies[index])

    store = Store(tmp_path / "runs.db")
    result = Agent(tools=[get_weather], runtime=FunctionRuntime(model), store=store).run("Weather in Paris?")
    assert result.output == "It is sunny in Paris."
    stored = store.load(result.run_id)
    garbled = stored.steps[0]
    assert (garbled.response.finish_reason, garbled.response.raw_text) == ("error", GARBLED)
    assert garbled.response.message.tool_calls == ()
    feedback = [m for m in stored.messages if isinstance(m, UserMessage)][-1]
    assert "expected '{' after the tool name 'get_weather'" in feedback.text


# --- chat mode: a call the server left in the content ---------------------------------------


def chat_reply(content: str | None, calls: list[dict[str, Any]] | None = None) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    usage = {"prompt_tokens": 10, "completion_tokens": 3}
    return (200, {}, {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage})


@pytest.fixture
def server() -> Any:
    with ScriptedServer() as scripted:
        yield scripted


def chat_runtime(server: ScriptedServer) -> OpenAICompatible:
    return OpenAICompatible(server.base + "/v1", model="m", server="vllm", retry=RetryPolicy(attempts=1))


def ask(runtime: OpenAICompatible) -> ModelResponse:
    request = ModelRequest(messages=(UserMessage(text="2+3?"),), tools=(add.spec,))
    return asyncio.run(runtime.generate(request))


@pytest.mark.parametrize(
    "content",
    [
        "Let me add.<|tool_call>:add{a:2,b:3}<tool_call|>",  # the server's parser missed the bare opener
        "Let me add.<|tool_call>call:add(a=2, b=3)<tool_call|>",
        "Let me add.\ncall:add{a:2,b:3}",  # the markers stripped by the server
    ],
)
def test_a_call_left_in_the_content_is_read_from_it(server: ScriptedServer, content: str) -> None:
    server.replies = [chat_reply(content)]
    response = ask(chat_runtime(server))
    assert [(c.name, c.arguments) for c in response.message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert response.message.text == "Let me add."
    assert response.metadata["calls_from_content"] == 1
    assert json.loads(response.raw_text)["content"] == content  # the reply as the server sent it


@pytest.mark.parametrize(
    "content",
    [
        "The sum is 5.",
        "I would call:add{a:2,b:3} but I know it is 5.",
        "call:sub{a:2}",
        "call: add",
        "To add, write\ncall:add{a:2,b:3}\nand the tool answers.",  # a line about the syntax, text after it
    ],
)
def test_content_without_a_call_to_an_offered_tool_stays_text(server: ScriptedServer, content: str) -> None:
    server.replies = [chat_reply(content)]
    response = ask(chat_runtime(server))
    assert (response.message.text, response.message.tool_calls) == (content, ())


def test_a_call_in_the_content_is_checked_against_its_schema(server: ScriptedServer) -> None:
    server.replies = [chat_reply("<|tool_call>:add{a:2}<tool_call|>")]
    with pytest.raises(ModelOutputError, match="'b' is a required property") as caught:
        ask(chat_runtime(server))
    assert json.loads(caught.value.raw_text)["content"] == "<|tool_call>:add{a:2}<tool_call|>"


def test_an_unreadable_call_in_the_content_is_a_garbled_step_that_keeps_the_reply(
    server: ScriptedServer, tmp_path: Path
) -> None:
    content = "<|tool_call>call:add(2, 3)<tool_call|>"
    server.replies = [chat_reply(content), chat_reply(None, [_call("add", {"a": 2, "b": 3})]), chat_reply("5")]
    store = Store(tmp_path / "runs.db")
    result = Agent(tools=[add], runtime=chat_runtime(server), store=store).run("2+3?")
    assert result.output == "5"
    garbled = store.load(result.run_id).steps[0]
    assert garbled.response.finish_reason == "error"
    assert json.loads(garbled.response.raw_text)["content"] == content
    assert "holds a Gemma 4 tool call that cannot be read" in garbled.response.metadata["problems"][0]
    feedback = server.seen[1][2]["messages"][-1]
    assert feedback["role"] == "user"
    assert "expected a key at '2, 3)" in feedback["content"]


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def test_a_streamed_reply_with_its_call_in_the_content_reads_the_same(server: ScriptedServer) -> None:
    from tests.support.scripted_server import Events

    content = "Adding.<|tool_call>:add{a:2,b:3}<tool_call|>"
    pieces = [content[a:b] for a, b in itertools.pairwise([0, 5, 17, 30, len(content)])]
    chunks = [{"choices": [{"delta": {"content": piece}}]} for piece in pieces]
    chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}})
    server.replies = [(200, {}, Events(chunks))]
    runtime = chat_runtime(server)
    request = ModelRequest(messages=(UserMessage(text="2+3?"),), tools=(add.spec,))

    async def stream() -> list[Any]:
        return [item async for item in runtime.stream(request)]

    response = asyncio.run(stream())[-1]
    assert [(c.name, c.arguments) for c in response.message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert response.message.text == "Adding."
