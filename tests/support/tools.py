"""Tools and tool specs the unit tests share, each defined once.

`add` is the loop's everyday tool; `WEATHER` a spec with no function behind it.
`capital`, `temperature` and `warmer` make plans (a call using another's result).
`get_weather`, `ship` and `plant` cover what a declaration renders (enums,
optional, nested, array, boolean and recursive parameters): the `gemma4`
dialect's golden declarations and the chat template's comparisons use them.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pydantic

from agentkit import tool
from agentkit.tool import ToolSpec

__all__ = [
    "WEATHER",
    "Address",
    "Color",
    "Node",
    "add",
    "capital",
    "get_weather",
    "plant",
    "ship",
    "temperature",
    "warmer",
]


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


# --- tools whose declarations the Gemma 4 tests render ------------------------------------------


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather for a city.

    Args:
        city: The city's name.
        unit: The temperature unit.
    """
    return f"18 degrees in {city}"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    """A postal address."""

    street: str
    zip: str | None = None


@tool
def ship(
    address: Address,
    color: Color,
    stops: list[Address],
    note: str | None = None,
    weight: Annotated[float, pydantic.Field(ge=0)] = 1.0,
    counts: dict[str, int] | None = None,
    express: bool = False,
) -> str:
    """Ship a parcel.

    Args:
        address: Where to.
        color: Box colour.
        stops: Extra stops.
        note: A note for the driver.
        weight: Kilograms.
        counts: Items per kind.
        express: Next-day delivery.
    """
    return "shipped"


class Node(pydantic.BaseModel):
    name: str
    children: list[Node] = []


@tool
def plant(tree: Node, mode: Literal["fast"] = "fast") -> None:
    """Plant a tree."""


@tool
def capital(country: str) -> dict[str, str]:
    """The capital of a country."""
    return {"city": {"France": "Paris", "Norway": "Oslo"}[country]}


@tool
def temperature(city: str) -> float:
    """The temperature in a city, in °C."""
    return {"Paris": 18.0, "Oslo": -3.0}[city]


@tool
def warmer(a: float, b: float) -> str:
    """Which of two temperatures is warmer."""
    return "a" if a > b else "b"
