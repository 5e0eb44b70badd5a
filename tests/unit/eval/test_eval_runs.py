"""The evaluation's own logic, with no model: BFCL data as tools, the arms, the counting, the files, the gate.

A `FunctionRuntime` plays the model: it answers some entries with their ground
truth, garbles or fails others, so every count has a known right value.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agentkit import Agent, AssistantMessage, ModelOutputError, ModelRequest, RuntimeUnavailable, ToolCall
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.errors import StoreError, ToolDefinitionError
from agentkit.eval import (
    ArmUnavailable,
    Entry,
    EvalDataError,
    QueryError,
    Tools,
    arm_runtime,
    evaluate,
    load,
    replay_runs,
    select_runs,
    write,
)
from agentkit.eval.bfcl import data_dir, json_schema
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.function import FunctionRuntime
from agentkit.runtimes.llama import LlamaEngine
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.runtimes.vllm.server import VLLMServer
from agentkit.store import Store
from tests.support.tools import add

from .test_bfcl_scoring import truth


@pytest.fixture(scope="module")
def data() -> Path:
    return data_dir()


@pytest.fixture(scope="module")
def entries(data: Path) -> list[Entry]:
    return load(["simple", "multiple", "irrelevance"], limit=6, data=data)


def oracle_model(entries: list[Entry]) -> FunctionRuntime:
    """Answers entry 0 of each category with its ground truth, 1 with no call, 2 garbled, 3 by raising,
    4 with a call whose arguments are not valid, 5 with the truth again."""
    by_question = {e.messages[-1]["content"]: (n % 6, e) for n, e in enumerate(entries)}

    def answer(request: ModelRequest, _: int) -> Any:
        index, entry = by_question[request.messages[-1].text]  # type: ignore[union-attr]
        tools = Tools(entry.functions)
        back = {bfcl: name for name, bfcl in tools.names.items()}
        right = [ToolCall(name=back[n], arguments=a) for call in truth(entry) for n, a in call.items()]
        if not entry.relevant:
            right = [ToolCall(name=request.tools[0].name, arguments={})]
        if index in (0, 5):
            return AssistantMessage(tool_calls=right)
        if index == 1:
            return "I cannot help with that."
        if index == 2:
            raise ModelOutputError("malformed tool call", "<|tool_call>call:f{x:")
        if index == 3:
            raise RuntimeUnavailable("the server went away")
        return AssistantMessage(tool_calls=[ToolCall(name=request.tools[0].name, arguments={"no_such_param": 1})])

    return FunctionRuntime(answer)


def test_every_outcome_is_counted_and_no_failure_is_fatal(entries: list[Entry]) -> None:
    results = asyncio.run(evaluate(oracle_model(entries), entries, arms=["free"], concurrency=3))
    assert len(results.outcomes) == len(entries) == 18
    for category in ("simple_python", "multiple"):
        s = results.summary("free", category)
        assert s.correct == 2  # the two ground-truth answers
        assert s.calls == 2 + 1 + 1  # two right calls, the garbled turn (one invalid call), the invalid one
        assert s.valid_calls == 2
        assert s.errors == {"unreadable": 1, "RuntimeUnavailable": 1}
    irrelevance = results.summary("free", "irrelevance")
    # Right: the text answer, the garbled turn (no call, as BFCL reads it); wrong: the three calls made;
    # the failed request is wrong too (no decision).
    assert irrelevance.correct == 2
    failed = next(o for o in results.outcomes if o.error_type == "RuntimeUnavailable")
    assert failed.reason == "error"
    assert "the server went away" in (failed.error or "")
    garbled = next(o for o in results.outcomes if o.error_type == "unreadable")
    assert garbled.raw == "<|tool_call>call:f{x:"


def test_the_results_files(entries: list[Entry], tmp_path: Path) -> None:
    results = asyncio.run(evaluate(oracle_model(entries), entries, arms=["free"], limit=6))
    paths = write(results, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [s["correct"] for s in data["summaries"]] == [2, 2, 2]
    assert data["outcomes"][0]["calls"] == truth(entries[0])
    page = paths["markdown"].read_text()
    assert "| simple_python | free | 6 | 50.0% (2/4) | 33.3% (2) |" in page
    assert "errors" in page
    assert "RuntimeUnavailable 1" in page
    assert "![valid calls and accuracy per category](results.png)" in page
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG"


def test_an_arm_the_runtime_cannot_decode_is_refused_before_any_entry(entries: list[Entry]) -> None:
    model = oracle_model(entries)
    with pytest.raises(ArmUnavailable, match="only decodes free; run it with --arms free"):
        asyncio.run(evaluate(model, entries, arms=["constrained", "free"]))
    assert model.requests == []
    with pytest.raises(ArmUnavailable, match="unknown arm 'greedy'"):
        arm_runtime(model, "greedy")


@pytest.mark.parametrize("make", [lambda: VLLMEngine("default"), lambda: LlamaEngine("default")])
def test_the_arms_of_an_engine_share_it(make: Any) -> None:
    runtime = make()  # neither loads its model until the first request
    original = runtime.dialect
    assert isinstance(original, Gemma4Dialect)
    assert original.grammar.parallel_calls is False  # the embedded preset's
    free = arm_runtime(runtime, "free")
    assert free.info.constrained is False
    assert free.dialect.strict is False
    assert free.dialect.grammar.parallel_calls is False
    parallel = arm_runtime(runtime, "constrained", parallel=True)
    assert parallel.info.constrained is True
    assert parallel.dialect.grammar.parallel_calls is True
    assert parallel.dialect.strict is True
    assert runtime.dialect is original  # the runtime given is left as it was
    assert original.strict is True
    assert original.grammar.parallel_calls is False
    assert free._core is runtime._core


def test_a_runtime_that_cannot_take_the_grammar_has_no_constrained_arm() -> None:
    from agentkit.runtimes.llamacpp import LlamaCppServer

    chat = LlamaCppServer("http://127.0.0.1:9/v1", mode="chat", model="m", dialect=Gemma4Dialect())
    assert chat.info.constrained is False
    with pytest.raises(ArmUnavailable, match="cannot decode constrained; run it with --arms free"):
        arm_runtime(chat, "constrained")
    assert arm_runtime(chat, "free").info.constrained is False
    unstarted = VLLMServer("http://127.0.0.1:9/v1")
    with pytest.raises(ArmUnavailable, match=r"start vllm-server:http://127.0.0.1:9/v1 first"):
        arm_runtime(unstarted, "free")


def test_a_server_variant_shares_its_connections() -> None:
    server = VLLMServer("http://127.0.0.1:9/v1")
    free = server.variant(constrained=False)
    assert free.info.constrained is False
    assert server.info.constrained is True
    assert free._pool is server._pool
    assert free._chat.owner is free  # type: ignore[attr-defined]
    assert server._chat.owner is server  # type: ignore[attr-defined]


def test_bfcl_types_become_json_schema() -> None:
    schema = json_schema(
        {
            "type": "dict",
            "properties": {
                "x": {"type": "float", "optional": True},
                "pair": {"type": "tuple", "items": {"type": "integer"}},
                "anything": {"type": "any", "description": "whatever"},
                "where": {"type": "dict", "properties": {"city": {"type": "string"}}},
                "free": {"type": "dict"},
            },
            "required": ["pair"],
        }
    )
    assert schema == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "pair": {"type": "array", "items": {"type": "integer"}},
            "anything": {"description": "whatever"},
            "where": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False},
            "free": {"type": "object"},
        },
        "required": ["pair"],
        "additionalProperties": False,
    }
    with pytest.raises(ToolDefinitionError, match="unknown BFCL type 'complex'"):
        json_schema({"type": "complex"})


def test_function_names_map_to_callable_ones_and_back() -> None:
    tools = Tools(
        [
            {"name": "math.factorial", "description": "", "parameters": {"type": "dict", "properties": {}}},
            {"name": "math_factorial", "description": "", "parameters": {"type": "dict", "properties": {}}},
            {"name": "3d.volume", "description": "", "parameters": {"type": "dict", "properties": {}}},
        ]
    )
    assert [s.name for s in tools.specs] == ["math_factorial", "math_factorial_2", "f_3d_volume"]
    calls = [ToolCall(name="math_factorial", arguments={"n": 5}), ToolCall(name="nope", arguments={})]
    assert tools.decoded(calls) == [{"math.factorial": {"n": 5}}, {"nope": {}}]


def test_every_function_of_every_single_turn_category_converts(data: Path) -> None:
    from agentkit.eval import CATEGORIES, LIVE_CATEGORIES

    everything = load(CATEGORIES + LIVE_CATEGORIES, data=data)
    assert len(everything) == 1240 + 2235
    for entry in everything:
        entry.request(entry.tools())  # raises on a schema Tool.from_schema refuses


def test_bad_data_is_refused_with_what_was_wrong(data: Path, tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="unknown BFCL category 'simpel'"):
        load(["simpel"], data=data)
    with pytest.raises(EvalDataError, match="holds no bfcl_eval/data/"):
        data_dir(tmp_path)
    not_a_wheel = tmp_path / "x.whl"
    not_a_wheel.write_text("no zip")
    with pytest.raises(EvalDataError, match="cannot unpack"):
        data_dir(not_a_wheel)
    other = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(EvalDataError, match="not a bfcl-eval wheel"):
        data_dir(other)
    with pytest.raises(EvalDataError, match="neither a bfcl-eval wheel nor a directory"):
        data_dir(tmp_path / "missing.txt")
    assert len(load(["simple"], limit=3, data=data)) == 3


# --- stored runs as a regression suite -----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = Store(tmp_path / "runs.db")
    call = AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3})])
    for name in ("Adder", "Adder", "Other"):
        Agent(name=name, tools=[add], runtime=ScriptedRuntime([call, "5"]), store=store).run("What is 2 + 3?")
    yield store
    store.close()


def test_runs_are_selected_by_id_status_and_name(store: Store) -> None:
    everything = select_runs(store, None)
    assert len(everything) == 3
    assert [r.name for r in select_runs(store, "name=Adder")] == ["Adder", "Adder"]
    assert len(select_runs(store, "status=done,name=Other")) == 1
    assert select_runs(store, "status=failed") == []
    assert [r.id for r in select_runs(store, everything[2].id)] == [everything[2].id]
    assert len(select_runs(store, None, limit=2)) == 2
    with pytest.raises(QueryError, match="unknown field 'model'"):
        select_runs(store, "model=x")
    with pytest.raises(QueryError, match="unknown status 'finished'"):
        select_runs(store, "status=finished")
    with pytest.raises(StoreError, match="no run '01NOPE'"):
        select_runs(store, "01NOPE")


def test_a_suite_counts_same_decisions_and_misses_thresholds(store: Store) -> None:
    ids = [r.id for r in select_runs(store, None)]
    same = ScriptedRuntime([AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3})]), "5"] * 3)
    suite = asyncio.run(replay_runs(store, ids, same))
    assert (suite.steps, suite.same_decisions, suite.calls, suite.valid_calls) == (6, 6, 3, 3)
    assert suite.missed(min_same=1.0, min_valid=1.0) == []
    other = ScriptedRuntime([AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": "2"})]), "5"] * 3)
    suite = asyncio.run(replay_runs(store, ids, other))
    assert (suite.same_decisions, suite.valid_calls) == (3, 0)
    assert suite.missed(min_same=0.9, min_valid=0.5) == [
        "same-decision rate 50.0% is below 90.0%",
        "valid-call rate 0.0% is below 50.0%",
    ]
    assert suite.missed(min_same=0.5) == []


def test_a_reply_the_runtime_refuses_counts_as_an_invalid_call(store: Store) -> None:
    def refuse(request: ModelRequest, _: int) -> Any:
        raise ModelOutputError("the call to 'add' does not fit its schema", "<|tool_call>call:add{a:x}")

    suite = asyncio.run(replay_runs(store, [r.id for r in select_runs(store, None)], FunctionRuntime(refuse)))
    assert (suite.steps, suite.failed_steps, suite.calls, suite.valid_calls) == (6, 6, 6, 0)
    assert suite.missed(min_valid=1.0) == ["valid-call rate 0.0% is below 100.0%"]
    failing = FunctionRuntime(lambda request, _: (_ for _ in ()).throw(RuntimeUnavailable("gone")))
    suite = asyncio.run(replay_runs(store, [r.id for r in select_runs(store, None)], failing))
    assert suite.valid_call_rate is None
    assert suite.missed(min_valid=1.0) == ["no call was made to check: 6 step(s) failed"]
