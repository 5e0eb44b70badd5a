"""Plans: one model turn of tool calls whose arguments may use earlier calls' results.

In plan mode (`Agent(planning=True)`) the model writes every call a task
needs in one turn, and an argument may be a *reference* instead of a value:
`$2` is the result of the turn's second call, `$2.city` its field `city`,
`$2.items.0` the first item of its field `items`. Calls run as soon as the
results they use are there (concurrently, up to a limit); the model then sees
every result and answers, or plans again.

A reference is held in a call's arguments as a one-key object,
`{"$ref": "$2.city"}` (what the store keeps and the JSON dialect writes);
Gemma 4's dialect writes it bare, `city:$2.city`. Under a grammar a reference
can only point to an earlier call, and only as a whole argument (a top-level
parameter's value); the executor checks both again for unconstrained runtimes.

The value a reference stands for is checked against the parameter's schema
when it is substituted: a mismatch, a missing field or a failed call becomes an
error result for the call, and so for every call that uses its result.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agentkit.messages import ToolCall, ToolResult

__all__ = [
    "MAX_PLAN_CALLS",
    "REFERENCE",
    "PlanError",
    "Reference",
    "dependencies",
    "plan_instructions",
    "reference",
    "reference_of",
    "references",
    "run_plan",
    "substitute",
]

MAX_PLAN_CALLS = 12
"""Most calls a plan turn may hold under a grammar (each later call's references are
written out per position, so the grammar grows with this bound)."""

FIELD = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE = re.compile(rf"\$([1-9][0-9]*)((?:\.(?:{FIELD}|0|[1-9][0-9]*))*)")
"""A reference's text: `$N`, then `.field` or `.index` steps (a field name is a
bare identifier; fields with other characters cannot be referenced)."""
MAX_PATH = 4
"""Most steps into a result a reference takes under a grammar (`$1.a.b.c.d`)."""
REF_KEY = "$ref"


@dataclass(frozen=True)
class Reference:
    """`$number.path…`: the result of the plan's call `number` (from 1), or a part of it."""

    number: int
    path: tuple[str | int, ...] = ()

    @property
    def text(self) -> str:
        return f"${self.number}" + "".join(f".{step}" for step in self.path)

    def value(self) -> dict[str, str]:
        """The reference as an argument value."""
        return {REF_KEY: self.text}


def reference_of(text: str) -> Reference | None:
    """The reference `text` writes (`$2.city`), or None."""
    found = REFERENCE.fullmatch(text)
    if found is None:
        return None
    steps = [s for s in found.group(2).split(".") if s]
    return Reference(int(found.group(1)), tuple(int(s) if s.isdigit() else s for s in steps))


def reference(value: Any) -> Reference | None:
    """The reference an argument value is (`{"$ref": "$2.city"}`), or None."""
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(text := value.get(REF_KEY), str):
        return reference_of(text)
    return None


def references(arguments: Any) -> list[Reference]:
    """Every reference in `arguments`, however deep, in order."""
    found: list[Reference] = []

    def walk(value: Any) -> None:
        ref = reference(value)
        if ref is not None:
            found.append(ref)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(arguments)
    return found


def dependencies(calls: Sequence[ToolCall]) -> dict[str, tuple[str, ...]]:
    """Each call's id to the ids of the earlier calls its references use (a
    reference to itself, a later call or no call is left out: it is an error)."""
    out: dict[str, tuple[str, ...]] = {}
    for position, call in enumerate(calls, start=1):
        numbers = sorted({r.number for r in references(call.arguments) if r.number < position})
        out[call.id] = tuple(calls[n - 1].id for n in numbers)
    return out


class PlanError(Exception):
    """A call of a plan cannot run: a reference is wrong, or what it stands for is."""


def _pick(result: ToolResult, ref: Reference) -> Any:
    value = result.content
    walked = f"${ref.number}"
    for step in ref.path:
        if isinstance(value, Mapping) and isinstance(step, str | int) and str(step) in value:
            value = value[str(step)]
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            raise PlanError(
                f"{ref.text}: the result of {walked} ({result.name}) has no {step!r} (it is {_kind(value)})"
            )
        walked += f".{step}"
    return value


def _kind(value: Any) -> str:
    """What a JSON value is, as the model is told."""
    if isinstance(value, Mapping):
        return f"an object with {sorted(value)}"
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    return kinds.get(type(value), "null" if value is None else f"a {type(value).__name__}")


def substitute(
    call: ToolCall,
    position: int,
    plan: Sequence[ToolCall],
    results: Mapping[str, ToolResult],
    parameters: Mapping[str, Any] | None = None,
) -> ToolCall:
    """`call` (the plan's call `position`, from 1) with each reference replaced by what it stands for.

    `results`: the results of the plan's calls, by call id. With the tool's
    `parameters` (its JSON Schema), a value put in a top-level parameter is
    checked against that parameter's schema.

    Raises:
        PlanError: a reference points to itself or a later call, to a call that
            failed, to a part its result does not have, or gives a value the
            parameter's schema refuses.
    """

    def resolve(value: Any, key: str | None) -> Any:
        ref = reference(value)
        if ref is not None:
            if ref.number >= position or ref.number > len(plan):
                where = "itself" if ref.number == position else "a later call" if ref.number <= len(plan) else "no call"
                raise PlanError(f"{ref.text} points to {where}: a call can use only the results of earlier calls")
            source = plan[ref.number - 1]
            result = results.get(source.id)
            if result is None:
                raise PlanError(f"{ref.text}: call ${ref.number} ({source.name}) has no result")
            if result.is_error:
                raise PlanError(f"not run: it uses {ref.text}, and call ${ref.number} ({source.name}) failed")
            picked = _pick(result, ref)
            if key is not None and parameters is not None:
                _check(picked, key, ref, parameters)
            return picked
        if isinstance(value, Mapping):
            return {k: resolve(v, None) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, None) for v in value]
        return value

    arguments = {key: resolve(value, key) for key, value in call.arguments.items()}
    return replace(call, arguments=arguments)


def _check(value: Any, key: str, ref: Reference, parameters: Mapping[str, Any]) -> None:
    schema = (parameters.get("properties") or {}).get(key)
    if not isinstance(schema, Mapping):
        return
    import jsonschema  # only plans with references need it

    whole = {**schema, "$defs": parameters["$defs"]} if "$defs" in parameters else dict(schema)
    try:
        jsonschema.Draft202012Validator.check_schema(whole)
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(whole).iter_errors(value))
    except Exception as exc:  # a schema it cannot apply (invalid, an unresolvable $ref): the tool's validation checks
        if type(exc).__module__.split(".")[0] in ("jsonschema", "referencing"):
            return
        raise
    if error is not None:
        # jsonschema's message holds the refused value whole: shortened too, as a result can be long.
        refusal = error.message.replace(repr(error.instance), _shown(error.instance))
        raise PlanError(f"argument {key!r} = {ref.text} is {_shown(value)}, which its schema refuses: {refusal}")


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


async def run_plan(
    calls: Sequence[ToolCall],
    plan: Sequence[ToolCall],
    *,
    run: Callable[[ToolCall, tuple[str, ...]], Awaitable[ToolResult | None]],
    refuse: Callable[[ToolCall, str], ToolResult],
    done: Mapping[str, ToolResult] | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    concurrency: int = 8,
) -> list[ToolResult]:
    """Run `calls` (some or all of `plan`'s) in dependency order; their results, in `calls`' order.

    Each call starts once the calls it references have results (from `done`,
    or run here), at most `concurrency` at once. `run(call, depends_on)` runs
    one call, its references substituted (None: the call waits, for approval,
    and so do the calls that use its result); `refuse(call, why)` makes the error
    result of a call that cannot run (a wrong reference, a failed
    dependency). A call whose dependency is neither done nor among `calls`
    (it waits for approval) is left out: it has no result yet.
    """
    import asyncio

    position = {c.id: n for n, c in enumerate(plan, start=1)}
    results: dict[str, ToolResult] = dict(done or {})
    finished = {c.id: asyncio.Event() for c in calls}
    needs = dependencies(plan)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(call: ToolCall) -> None:
        try:
            for dep in needs.get(call.id, ()):
                if dep not in results and dep in finished:
                    await finished[dep].wait()
                if dep not in results:
                    return  # waits for a call that waits: it runs when the plan resumes
            try:
                ready = substitute(call, position[call.id], plan, results, (parameters or {}).get(call.name))
            except PlanError as exc:
                results[call.id] = refuse(call, str(exc))
                return
            async with gate:
                result = await run(ready, needs.get(call.id, ()))
            if result is not None:  # None: it waits (for approval)
                results[call.id] = result
        finally:
            finished[call.id].set()

    await asyncio.gather(*(one(call) for call in calls))
    return [results[c.id] for c in calls if c.id in results]


def plan_instructions(write: Callable[[str], str] = str) -> str:
    """What the model is told about plans, each reference written as `write` makes it
    (Gemma 4 writes `$2.city` bare; the JSON forms write `{"$ref": "$2.city"}`)."""
    return (
        "Plan: write every tool call the task needs in this one turn, in order. "
        "Where an argument needs the result of an earlier call in the same turn, write a reference "
        f"instead of a value: `{write('$1')}` is the result of the first call, `{write('$2.city')}` is the field "
        "`city` of the second call's result. Calls run as soon as the results they use are ready. "
        "You then see every result and give the final answer, or plan again."
    )
