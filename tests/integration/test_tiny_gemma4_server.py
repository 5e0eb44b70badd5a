"""Chat mode against raw mode on `agentkit serve vllm:tiny-gemma4`: a live differential check.

Raw mode writes the prompt with agentkit's dialect and reads the turn with
agentkit's parser; chat mode has the server's chat template (agentkit's
`gemma4.jinja`) write the prompt and vLLM's own `gemma4` tool parser read the
turn. Both send the same grammar. Same prompt tokens, same grammar and same
seed make the same output tokens, so the two parsers read the same text and
must find the same calls. Each request's HTTP exchange is recorded, with
`return_token_ids` added (it only adds the prompt's and the output's token ids
to vLLM's answer), so the test checks that the server got the same prompt and
wrote the same tokens, not only that the calls agree.

Requests go one at a time: a batch could round the random model's logits
differently and let a sample differ for a reason that is not the one checked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import jsonschema
import pytest

from agentkit import ModelRequest, ModelResponse, Sampling, SystemMessage, UserMessage
from agentkit.messages import AssistantMessage, ToolCall, ToolResult
from agentkit.runtimes import VLLMServer
from agentkit.runtimes.http import post_json
from agentkit.runtimes.serve import ServedModel
from agentkit.tool import as_tool

from ..conftest import FIGURES
from .native_suite import PROMPTS, TOOLS

SPECS = [as_tool(t).spec for t in TOOLS]
WEATHER = ToolCall(name="get_weather", arguments={"city": "Lima", "unit": "celsius"}, id="call-1")
PARCEL = ToolCall(
    name="send_parcel",
    arguments={"to": {"street": "1 Rue Haute", "city": "Nice", "country": "FR"}, "weight_kg": 1.5},
    id="call-2",
)


def single_turn(seed: int, choice: str) -> ModelRequest:
    return ModelRequest(
        messages=[SystemMessage(text="Use the tools."), UserMessage(text=PROMPTS[seed * 8])],
        tools=SPECS,
        tool_choice=choice,
        sampling=Sampling(max_tokens=300, temperature=1.0, seed=seed),
    )


def after_result(seed: int, prompt: int, call: ToolCall, result: str, choice: str) -> ModelRequest:
    """A turn that goes on after a call and its result, so both renderers write those too."""
    return ModelRequest(
        messages=[
            SystemMessage(text="Use the tools."),
            UserMessage(text=PROMPTS[prompt]),
            AssistantMessage(tool_calls=(call,)),
            ToolResult(call_id=call.id, name=call.name, content=result),
        ],
        tools=SPECS,
        tool_choice=choice,
        sampling=Sampling(max_tokens=300, temperature=1.0, seed=seed),
    )


REQUESTS = [
    single_turn(0, "required"),
    single_turn(1, "required"),
    single_turn(2, "required"),
    single_turn(3, "get_weather"),
    single_turn(4, "send_parcel"),
    single_turn(5, "order_groceries"),
    after_result(6, 0, WEATHER, "21 degrees celsius in Lima", "required"),
    after_result(7, 10, PARCEL, "sent 1.5 kg to Nice", "set_reminder"),
]


@dataclass
class Exchange:
    """One request and what it sent and got back in one mode."""

    payload: dict[str, Any]
    """The body agentkit sent (with `return_token_ids`)."""
    answer: Any
    """vLLM's JSON answer."""
    response: ModelResponse | BaseException
    """What the runtime made of it."""

    @property
    def prompt_ids(self) -> list[int]:
        """The prompt as the server tokenized it (completions give it in the choice, chat at the top)."""
        ids: list[int] = self.answer.get("prompt_token_ids") or self.answer["choices"][0]["prompt_token_ids"]
        return ids

    @property
    def output_ids(self) -> list[int]:
        ids: list[int] = self.answer["choices"][0]["token_ids"]
        return ids


@dataclass
class Pair:
    request: ModelRequest
    raw: Exchange
    chat: Exchange


async def exchange(runtime: VLLMServer, request: ModelRequest, sent: list[tuple[dict[str, Any], Any]]) -> Exchange:
    try:
        response: ModelResponse | BaseException = await runtime.generate(request)
    except Exception as exc:  # kept to be reported by the test, with what was sent
        response = exc
    assert len(sent) == 1, f"{runtime.mode} mode made {len(sent)} requests for one turn"
    payload, answer = sent.pop()
    return Exchange(payload, answer, response)


@pytest.fixture(scope="module")
def pairs(tiny_server: ServedModel) -> list[Pair]:
    sent: list[tuple[dict[str, Any], Any]] = []

    async def recording(url: str, payload: Mapping[str, Any], **kwargs: Any) -> tuple[Any, list[dict[str, Any]]]:
        payload = {**payload, "return_token_ids": True}
        answer, retries = await post_json(url, payload, **kwargs)
        sent.append((payload, answer))
        return answer, retries

    # repairs=0: a call vLLM's parser reads wrong fails the turn rather than asking again.
    raw, chat = VLLMServer(tiny_server.url), VLLMServer(tiny_server.url, mode="chat", repairs=0)

    async def run_all() -> list[Pair]:
        return [
            Pair(request, await exchange(raw, request, sent), await exchange(chat, request, sent))
            for request in REQUESTS
        ]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("agentkit.runtimes.vllm_server.post_json", recording)
        patch.setattr("agentkit.runtimes.openai.post_json", recording)
        return asyncio.run(run_all())


def test_both_modes_send_the_same_prompt_grammar_and_sampling(pairs: list[Pair]) -> None:
    for pair in pairs:
        raw, chat = pair.raw.payload, pair.chat.payload
        # The same constraint, seed and sampling; markers kept in the text both ways.
        assert chat["structured_outputs"] == raw["structured_outputs"]
        for key in ("seed", "temperature", "max_tokens", "skip_special_tokens"):
            assert chat[key] == raw[key], key
        assert raw["skip_special_tokens"] is False
        # What the server tokenized: the template's prompt is the dialect's, token for token.
        assert pair.chat.prompt_ids == pair.raw.prompt_ids, raw["prompt"]


def test_the_same_seed_writes_the_same_tokens(pairs: list[Pair]) -> None:
    for pair in pairs:
        assert pair.chat.output_ids == pair.raw.output_ids, (
            pair.raw.answer["choices"][0]["text"],
            pair.chat.answer["choices"][0]["message"],
        )


def json_value(value: Any) -> Any:
    """`value` as JSON tells values apart: a number by its value however it is written
    (vLLM's parser writes a whole-valued float as an integer), never equal to a boolean."""
    if isinstance(value, bool | str) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", Fraction(value))
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_value(item) for item in value]
    raise TypeError(f"not a JSON value: {value!r}")


def as_read(calls: tuple[ToolCall, ...]) -> list[tuple[str, Any]]:
    """Calls as two parsers should agree on them: names and arguments (their ids differ)."""
    return [(call.name, json_value(call.arguments)) for call in calls]


def test_vllms_parser_reads_the_calls_agentkits_parser_reads(pairs: list[Pair]) -> None:
    validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in SPECS}
    failed = [
        (p.request.tool_choice, e.response) for p in pairs for e in (p.raw, p.chat) if isinstance(e.response, Exception)
    ]
    assert failed == []
    calls = respelled = 0
    for pair in pairs:
        assert isinstance(pair.raw.response, ModelResponse)
        assert isinstance(pair.chat.response, ModelResponse)
        raw, chat = pair.raw.response.message.tool_calls, pair.chat.response.message.tool_calls
        assert raw, pair.raw.response.raw_text  # required and named choices: every turn calls
        assert as_read(chat) == as_read(raw), pair.raw.response.raw_text
        for mine, theirs in zip(raw, chat, strict=True):
            assert pair.request.tool_choice in ("required", mine.name)
            assert list(validators[mine.name].iter_errors(mine.arguments)) == [], pair.raw.response.raw_text
            assert list(validators[theirs.name].iter_errors(theirs.arguments)) == [], pair.chat.response.raw_text
            respelled += json.dumps(mine.arguments, sort_keys=True) != json.dumps(theirs.arguments, sort_keys=True)
            calls += 1
    same_tokens = sum(p.raw.prompt_ids == p.chat.prompt_ids and p.raw.output_ids == p.chat.output_ids for p in pairs)
    FIGURES["tiny-gemma4 served, raw vs chat mode"] = (
        f"{len(pairs)} requests (required and named, 2 of them after a tool result), same prompt and output "
        f"tokens in {same_tokens}, raw and chat calls identical in {len(pairs)}, {calls} calls all valid; "
        f"{respelled} call(s) with a whole-valued number vLLM's parser writes as an integer"
    )
