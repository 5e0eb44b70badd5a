"""The Berkeley Function Calling Leaderboard's data, as agentkit tools and requests.

    entries = load(["simple_python", "irrelevance"], limit=20)
    entry = entries[0]
    tools = entry.tools()                # ToolSpecs, JSON Schema 2020-12, names the model can write
    entry.request()                      # the one-turn ModelRequest the eval puts to a runtime
    tools.decoded(message.tool_calls)    # the calls in BFCL's form, under BFCL's own names
    score(entry, decoded)                # BFCL's AST rules: Verdict(correct=..., reason=...)

The data is the `bfcl-eval` package's (version `BFCL_VERSION`): its wheel is
downloaded once with pip (no dependencies: they are heavy, and only its JSON
files are read) and unpacked into `$AGENTKIT_CACHE/bfcl/`. `data=` takes a
wheel or an unpacked copy instead, for machines without an index.

BFCL describes parameters in its own dialect of JSON Schema (`dict`, `float`,
`tuple`, `any`, an `optional` flag): `json_schema` writes standard 2020-12.
Its function names may hold dots (`math.factorial`), which a Gemma 4 call
cannot; `Tools` maps each to a name that can (`math_factorial`) and back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import AgentkitError, ToolDefinitionError
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, UserMessage
from agentkit.runtime import ModelRequest, Sampling
from agentkit.tool import Tool, ToolSpec

__all__ = [
    "BFCL_VERSION",
    "CATEGORIES",
    "LIVE_CATEGORIES",
    "Entry",
    "EvalDataError",
    "Tools",
    "data_dir",
    "json_schema",
    "load",
]

BFCL_VERSION = "2026.3.23"
"""The `bfcl-eval` release the data is read from (BFCL v4)."""

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
"""BFCL's non-live single-turn categories: the default set."""
LIVE_CATEGORIES = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance")
"""Its live (user-contributed) single-turn categories."""
_ALIASES = {"simple": "simple_python"}


class EvalDataError(AgentkitError):
    """The benchmark's data cannot be had or read (no index reachable, a broken wheel, an unknown category)."""


# --- the data -----------------------------------------------------------------------------


def _cache() -> Path:
    from agentkit.runtimes.vllm.prepared import cache_dir

    return cache_dir() / "bfcl"


def data_dir(data: str | Path | None = None) -> Path:
    """The directory holding `bfcl_eval/data/` (fetched into the cache on first use).

    `data`: a `bfcl_eval-*.whl` file, or a directory holding `bfcl_eval/` (an
    unpacked wheel, or a checkout of BFCL's package directory).

    Raises:
        EvalDataError: the wheel could not be downloaded or unpacked, or `data` holds no BFCL data.
    """
    if data is not None:
        given = Path(data).expanduser()
        if given.is_dir():
            if not (given / "bfcl_eval" / "data").is_dir():
                raise EvalDataError(f"{given} holds no bfcl_eval/data/ (give an unpacked bfcl-eval wheel)")
            return given
        if given.suffix == ".whl" and given.is_file():
            return _unpacked(given, _cache() / given.stem)
        raise EvalDataError(f"{given} is neither a bfcl-eval wheel nor a directory holding bfcl_eval/")
    target = _cache() / f"bfcl_eval-{BFCL_VERSION}"
    if (target / "bfcl_eval" / "data").is_dir():
        return target
    downloads = _cache() / "wheels"
    wheel = next(downloads.glob(f"bfcl_eval-{BFCL_VERSION}-*.whl"), None)
    if wheel is None:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
        command += ["--dest", str(downloads), f"bfcl-eval=={BFCL_VERSION}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheel = next(downloads.glob(f"bfcl_eval-{BFCL_VERSION}-*.whl"), None)
        if done.returncode != 0 or wheel is None:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["pip found no wheel"]
            raise EvalDataError(
                f"could not download bfcl-eval=={BFCL_VERSION} with pip ({detail[0]}); "
                "download its wheel elsewhere and give it with --data"
            )
    return _unpacked(wheel, target)


def _unpacked(wheel: Path, target: Path) -> Path:
    if (target / "bfcl_eval" / "data").is_dir():
        return target
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial, [n for n in archive.namelist() if n.startswith("bfcl_eval/")])
    except (zipfile.BadZipFile, OSError) as exc:
        raise EvalDataError(f"cannot unpack {wheel}: {exc}") from None
    if not (partial / "bfcl_eval" / "data").is_dir():
        raise EvalDataError(f"{wheel} holds no bfcl_eval/data/: not a bfcl-eval wheel")
    partial.replace(target)  # whole or not at all: an interrupted unpack is never read
    return target


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One BFCL question: its conversation, the functions offered, and the acceptable calls."""

    id: str
    category: str
    messages: tuple[Mapping[str, str], ...]
    """The question's messages (`role`, `content`), in BFCL's form."""
    functions: tuple[Mapping[str, Any], ...]
    """The functions offered, as BFCL describes them."""
    answers: tuple[Mapping[str, Mapping[str, list[Any]]], ...]
    """BFCL's ground truth: one `{function: {parameter: [acceptable values]}}` per expected
    call (`""` among the values: the parameter may be left out); none for irrelevance."""

    @property
    def relevant(self) -> bool:
        """Whether a call is expected (irrelevance entries expect none)."""
        return "irrelevance" not in self.category

    def tools(self) -> Tools:
        """The functions as tools the model can call.

        Raises:
            ToolDefinitionError: a function's schema is no valid JSON Schema once converted.
        """
        return Tools(self.functions)

    def request(self, tools: Tools, *, max_tokens: int = 256) -> ModelRequest:
        """The one turn put to the model: the question, the tools, `tool_choice="auto"`, greedy."""
        return ModelRequest(
            messages=[_message(m) for m in self.messages],
            tools=tools.specs,
            tool_choice="auto",
            sampling=Sampling(temperature=0.0, max_tokens=max_tokens),
        )


def _message(message: Mapping[str, str]) -> Message:
    role, content = message.get("role"), str(message.get("content", ""))
    if role == "system":
        return SystemMessage(text=content)
    if role == "user":
        return UserMessage(text=content)
    if role == "assistant":  # live entries may hold an earlier answer of the conversation
        return AssistantMessage(text=content)
    raise EvalDataError(f"a BFCL question holds a {role!r} message; single-turn ones hold system, user and assistant")


def load(categories: Iterable[str], *, limit: int | None = None, data: str | Path | None = None) -> list[Entry]:
    """The entries of `categories`, in BFCL's order; with `limit`, the first `limit` of each.

    Raises:
        EvalDataError: an unknown category, or data that cannot be had or read.
    """
    root = data_dir(data) / "bfcl_eval" / "data"
    entries: list[Entry] = []
    for given in categories:
        category = _ALIASES.get(given, given)
        if category not in CATEGORIES + LIVE_CATEGORIES:
            known = ", ".join(CATEGORIES + LIVE_CATEGORIES)
            raise EvalDataError(f"unknown BFCL category {given!r}; the single-turn ones are {known}")
        questions = _lines(root / f"BFCL_v4_{category}.json")
        answers = (
            {} if "irrelevance" in category else _by_id(_lines(root / "possible_answer" / f"BFCL_v4_{category}.json"))
        )
        for question in questions[:limit]:
            turns = question["question"]
            if len(turns) != 1:
                raise EvalDataError(f"{question['id']} has {len(turns)} turns; single-turn entries have one")
            entries.append(
                Entry(
                    id=question["id"],
                    category=category,
                    messages=tuple(turns[0]),
                    functions=tuple(question["function"]),
                    answers=tuple(answers[question["id"]]["ground_truth"]) if answers else (),
                )
            )
    return entries


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise EvalDataError(f"cannot read {path}: {exc}") from None


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows}


# --- functions as tools ----------------------------------------------------------------------

_TYPES: dict[str, str | None] = {
    "dict": "object",
    "object": "object",
    "float": "number",
    "number": "number",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
    "any": None,  # no `type`: any JSON value
}


def json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """BFCL's description of a value as JSON Schema 2020-12.

    Its types become JSON Schema's (`dict` → `object`, `float` → `number`,
    `tuple` → `array`, `any` → no type), its `optional` flag is dropped (what
    is required is in `required`), and an object that lists its properties
    allows no others: BFCL's checker refuses a parameter it does not know.

    Raises:
        ToolDefinitionError: a type BFCL does not have.
    """
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            if value not in _TYPES:
                raise ToolDefinitionError(f"unknown BFCL type {value!r}")
            if _TYPES[value] is not None:
                schema["type"] = _TYPES[value]
        elif key == "properties" and isinstance(value, Mapping):
            schema["properties"] = {name: json_schema(spec) for name, spec in value.items()}
        elif key == "items" and isinstance(value, Mapping):
            schema["items"] = json_schema(value)
        elif key != "optional":
            schema[key] = value
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
    return schema


class Tools:
    """An entry's functions as `ToolSpec`s, with the names the model writes mapped to BFCL's.

    Raises:
        ToolDefinitionError: a function's converted schema is no valid JSON
            Schema 2020-12 (as `Tool.from_schema` checks it).
    """

    def __init__(self, functions: Sequence[Mapping[str, Any]]) -> None:
        specs: list[ToolSpec] = []
        self.names: dict[str, str] = {}
        """Tool name → BFCL's function name."""
        for function in functions:
            original = str(function["name"])
            name = _tool_name(original, taken=self.names)
            self.names[name] = original
            parameters = json_schema(function.get("parameters") or {"type": "dict", "properties": {}})
            tool = Tool.from_schema(name, str(function.get("description", "")), parameters, _never_run)
            specs.append(tool.spec)
        self.specs = tuple(specs)
        self.schemas = {spec.name: spec.parameters for spec in self.specs}

    def decoded(self, calls: Sequence[ToolCall]) -> list[dict[str, dict[str, Any]]]:
        """The calls as BFCL's checker reads a model's output: `[{function: {parameter: value}}]`,
        under BFCL's names (a call to a tool that was not offered keeps its own)."""
        return [{self.names.get(call.name, call.name): dict(call.arguments)} for call in calls]


def _never_run(**_: Any) -> None:  # the eval asks for one turn; no call is run
    raise AssertionError("a BFCL function is never run")


def _tool_name(name: str, *, taken: Mapping[str, str]) -> str:
    """`name` with every character a call cannot hold as `_`, unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "function"
    if base[0].isdigit():
        base = "f_" + base
    base = base[:60]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


if __name__ == "__main__":  # `make bfcl-data`: fetch the data ahead of the tests, once
    print(data_dir())
