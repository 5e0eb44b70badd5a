"""The native Gemma 4 dialect on the real engine: every call valid by construction.

The embedded model was not trained on Gemma 4's syntax; under the grammar, with
worked examples and `tool_choice="required"`, every reply must be a call that
names an offered tool with arguments that satisfy its JSON Schema.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Literal

import jsonschema
import pydantic

from agentkit import ModelRequest, ModelResponse, Sampling, SystemMessage, UserMessage, tool
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.tool import as_tool

from ..conftest import FIGURES


class Unit(StrEnum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


@tool(examples=[{"city": "Lima", "unit": "celsius"}])
def get_weather(city: str, unit: Unit = Unit.celsius) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name.
        unit: The temperature unit.
    """
    return f"21 degrees {unit.value} in {city}"


class Address(pydantic.BaseModel):
    street: str
    city: str
    country: Literal["FR", "DE", "JP", "US", "GB"]


@tool(examples=[{"to": {"street": "1 Rue Haute", "city": "Nice", "country": "FR"}, "weight_kg": 1.5}])
def send_parcel(to: Address, weight_kg: float, express: bool = False) -> str:
    """Send a parcel to an address.

    Args:
        to: Where to send it.
        weight_kg: The parcel's weight in kilograms.
        express: Next-day delivery.
    """
    return f"sent {weight_kg} kg to {to.city}"


@tool(examples=[{"origin": "Rome", "destination": "Oslo", "seat": "aisle", "passengers": 1}])
def book_flight(origin: str, destination: str, seat: Literal["window", "aisle", "middle"], passengers: int) -> str:
    """Book a flight.

    Args:
        origin: Departure city.
        destination: Arrival city.
        seat: Seat preference.
        passengers: How many people travel.
    """
    return f"booked {passengers} from {origin} to {destination}"


class Item(pydantic.BaseModel):
    name: str
    quantity: int


@tool(examples=[{"items": [{"name": "eggs", "quantity": 6}], "deliver_by": "evening"}])
def order_groceries(items: list[Item], deliver_by: Literal["morning", "afternoon", "evening"] | None = None) -> str:
    """Order groceries for delivery.

    Args:
        items: What to buy.
        deliver_by: Preferred delivery slot.
    """
    return f"ordered {len(items)} items"


@tool(examples=[{"text": "water the plants", "minutes": 30}])
def set_reminder(text: str, minutes: int, tags: list[str] | None = None) -> str:
    """Set a reminder.

    Args:
        text: What to be reminded of.
        minutes: In how many minutes.
        tags: Labels for the reminder.
    """
    return f"reminder in {minutes} min"


TOOLS = [get_weather, send_parcel, book_flight, order_groceries, set_reminder]
CITIES = ["Paris", "Tokyo", "Berlin", "London", "Austin", "Lyon", "Osaka", "Munich", "Leeds", "Denver"]
PROMPTS = (
    [f"What is the weather in {c}?" for c in CITIES]
    + [f"Send a 2 kg parcel to 5 Main Street, {c}." for c in CITIES]
    + [
        f"Book a window seat from {a} to {b} for 2 people."
        for a, b in zip(CITIES, CITIES[1:] + CITIES[:1], strict=True)
    ]
    + [f"Order {n} apples and {n + 1} pears for the morning." for n in range(1, 11)]
    + [f"Remind me to call the {c} office in {m} minutes." for c, m in zip(CITIES, range(5, 55, 5), strict=True)]
)


def test_every_native_call_is_valid(engine: VLLMEngine) -> None:
    # As for the JSON dialect on this tiny model: capped strings, or it may write on inside one.
    native = engine.variant(dialect=Gemma4Dialect(examples=len(TOOLS), max_string=60))
    specs = [as_tool(t).spec for t in TOOLS]
    validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in specs}
    requests = [
        ModelRequest(
            messages=[SystemMessage(text="Use the tools."), UserMessage(text=prompt)],
            tools=specs,
            tool_choice="required",
            sampling=Sampling(max_tokens=160),
        )
        for prompt in PROMPTS
    ]

    async def ask_all() -> list[ModelResponse]:
        return list(await asyncio.gather(*(native.generate(r) for r in requests)))

    responses = asyncio.run(ask_all())
    calls = [call for response in responses for call in response.message.tool_calls]
    problems = [
        f"{call.name}({call.arguments}): {error.message}"
        for call in calls
        for error in validators[call.name].iter_errors(call.arguments)
    ]
    matched = sum(
        bool(r.message.tool_calls) and r.message.tool_calls[0].name == expected
        for r, expected in zip(responses, [t.spec.name for t in TOOLS for _ in range(10)], strict=True)
    )
    FIGURES["gemma4 dialect, required calls"] = (
        f"{len(calls) - len(problems)}/{len(calls)} valid over {len(PROMPTS)} prompts, 5 tools; "
        f"{matched}/{len(PROMPTS)} chose the tool the prompt asks for"
    )
    assert len(PROMPTS) == 50
    assert all(r.message.tool_calls for r in responses), [r.raw_text for r in responses if not r.message.tool_calls]
    assert problems == []
    assert all(r.raw_text.startswith("<|tool_call>call:") for r in responses)
