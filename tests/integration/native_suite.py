"""Five tools with nested, enum and optional arguments, and 50 prompts that
each ask for one of them (10 per tool, in the order of `TOOLS`).

Shared by the native dialect's engine test and `benchmarks/gemma4_grammar.py`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import pydantic

from agentkit import tool

__all__ = ["EXPECTED", "PROMPTS", "TOOLS"]


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
EXPECTED = [t.spec.name for t in TOOLS for _ in range(10)]
"""The tool each prompt asks for."""
