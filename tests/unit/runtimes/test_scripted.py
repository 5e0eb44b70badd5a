"""ScriptedRuntime: plays its script, and refuses requests the script does not fit."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from agentkit import AssistantMessage, ModelRequest, ScriptError, SystemMessage, ToolCall, UserMessage, tool
from agentkit.runtimes import ScriptedRuntime


@tool
def lookup(key: str) -> str:
    """Looks a key up.

    Args:
        key: The key.
    """
    return key


def request(tool_choice: str = "auto", tools: bool = True) -> ModelRequest:
    return ModelRequest(
        messages=[UserMessage(text="hi")], tools=[lookup.spec] if tools else [], tool_choice=tool_choice
    )


def play(runtime: ScriptedRuntime, req: ModelRequest) -> AssistantMessage:
    return asyncio.run(runtime.generate(req)).message


def test_turns_in_every_form() -> None:
    runtime = ScriptedRuntime(
        [
            "plain text",
            {
                "text": "thinking aloud",
                "thinking": "hmm",
                "tool_calls": [{"name": "lookup", "arguments": {"key": "a"}}],
            },
            AssistantMessage(tool_calls=[ToolCall(name="lookup", arguments={"key": "b"}, id="mine")]),
        ]
    )
    assert play(runtime, request()) == AssistantMessage(text="plain text")
    second = play(runtime, request())
    assert second.thinking == "hmm"
    assert second.tool_calls == (ToolCall(name="lookup", arguments={"key": "a"}, id="call_1_0"),)
    assert play(runtime, request()).tool_calls[0].id == "mine"
    assert runtime.remaining == 0
    assert len(runtime.requests) == 3


def test_an_exhausted_script_says_so() -> None:
    runtime = ScriptedRuntime(["only"])
    play(runtime, request())
    with pytest.raises(ScriptError, match="all were played"):
        play(runtime, request())


def test_reset_plays_again() -> None:
    runtime = ScriptedRuntime(["one"])
    play(runtime, request())
    runtime.reset()
    assert play(runtime, request()).text == "one"
    assert len(runtime.requests) == 1


def test_a_call_to_a_tool_not_offered_is_refused() -> None:
    runtime = ScriptedRuntime([{"tool_calls": [{"name": "lookup", "arguments": {}}]}])
    with pytest.raises(ScriptError, match=r"calls 'lookup', but the request offers no tools"):
        play(runtime, request(tool_choice="none", tools=False))


def test_a_call_when_tool_choice_is_none_plays_a_model_that_ignored_it() -> None:
    # The loop asks a budget's last turn with tool_choice "none"; a script that
    # calls anyway plays an unconstrained model, which the loop must cope with.
    runtime = ScriptedRuntime([{"tool_calls": [{"name": "lookup", "arguments": {}}]}])
    assert [c.name for c in play(runtime, request(tool_choice="none")).tool_calls] == ["lookup"]


def test_text_where_a_call_is_required_is_refused() -> None:
    with pytest.raises(ScriptError, match="requires a call"):
        play(ScriptedRuntime(["words"]), request(tool_choice="required"))


@pytest.mark.parametrize(
    ("turn", "message"),
    [
        ({"txt": "typo"}, "unknown keys"),
        ({"tool_calls": [{"arguments": {}}]}, "needs a name"),
        ({"tool_calls": [{"name": "lookup", "arguments": [1]}]}, "must be an object"),
        (42, "expected an AssistantMessage"),
        # Found by tests/unit/fuzz/test_fuzz_scripted.py: a TypeError, or a message whose text was a number.
        ({"tool_calls": 5}, "tool_calls must be a list of calls"),
        ({"tool_calls": {"name": "lookup"}}, "tool_calls must be a list of calls"),
        ({"text": 5}, "text and thinking must be strings"),
        ({"text": "hi", "thinking": ["hmm"]}, "text and thinking must be strings"),
        ({"tool_calls": [{"name": "lookup", "id": 7}]}, "the id of tool call 0 must be a string"),
    ],
)
def test_malformed_turns_are_refused_up_front(turn: object, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        ScriptedRuntime([turn])  # type: ignore[list-item]


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "turns.json"
    path.write_text(json.dumps([{"tool_calls": [{"name": "lookup", "arguments": {"key": "k"}}]}, "done"]))
    runtime = ScriptedRuntime.from_file(path)
    assert runtime.info.model == "turns"
    assert play(runtime, request()).tool_calls[0].arguments == {"key": "k"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read script"),
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "must hold a JSON list"),
        # Found by tests/unit/fuzz/test_fuzz_scripted.py: Python's JSON reader raised RecursionError.
        ("[" * 5000, "nests its JSON too deeply"),
    ],
)
def test_from_file_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "turns.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ScriptError, match=message):
        ScriptedRuntime.from_file(path)


def asking(prompt: str) -> ModelRequest:
    return ModelRequest(messages=[SystemMessage(text="Oslo is not the key here"), UserMessage(text=prompt)])


def test_a_keyed_script_answers_each_conversation_from_its_own_turns() -> None:
    runtime = ScriptedRuntime({"Oslo": ["cold", "colder"], "Lima": ["mild"]})
    assert play(runtime, asking("Weather in Lima?")).text == "mild"
    assert play(runtime, asking("Weather in Oslo?")).text == "cold"
    assert play(runtime, asking("And Oslo now?")).text == "colder"
    assert runtime.remaining == 0
    with pytest.raises(ScriptError, match="the script for 'Lima' has 1 turns and all were played"):
        play(runtime, asking("Lima again?"))


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("Weather in Rome?", "holds none of the keys"), ("Oslo or Lima?", "holds 2 keys ('Oslo', 'Lima')")],
)
def test_a_keyed_script_needs_exactly_one_key_in_the_prompt(prompt: str, message: str) -> None:
    runtime = ScriptedRuntime({"Oslo": ["cold"], "Lima": ["mild"]})
    with pytest.raises(ScriptError, match=re.escape(message)):
        play(runtime, asking(prompt))
    assert runtime.remaining == 2


def test_a_keyed_script_from_file(tmp_path: Path) -> None:
    path = tmp_path / "keyed.json"
    path.write_text(json.dumps({"Oslo": ["cold"]}), encoding="utf-8")
    assert play(ScriptedRuntime.from_file(path), asking("Oslo?")).text == "cold"
    path.write_text(json.dumps({"Oslo": "cold"}), encoding="utf-8")
    with pytest.raises(ScriptError, match="a JSON list of turns, or an object of such lists"):
        ScriptedRuntime.from_file(path)


def test_a_script_has_the_lifecycle_of_any_runtime() -> None:
    runtime = ScriptedRuntime(["hi"])

    async def run() -> str:
        async with runtime as started:  # holds nothing: start and close do nothing
            assert started is runtime
            return (await runtime.generate(asking("Hello?"))).message.text

    assert asyncio.run(run()) == "hi"
    asyncio.run(runtime.aclose())  # closing again is fine
