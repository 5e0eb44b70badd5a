"""The forecast example's tools: a stand-in weather service, so the workflow runs offline."""

from __future__ import annotations

from typing import Literal

from agentkit import tool

WEATHER = {"oslo": (-3.0, "snowing"), "lima": (19.0, "cloudy"), "tokyo": (24.0, "sunny"), "cairo": (31.0, "sunny")}


def _reading(city: str) -> tuple[float, str]:
    try:
        return WEATHER[city.strip().lower()]
    except KeyError:
        raise ValueError(f"no weather for {city!r}; known cities: {', '.join(c.title() for c in WEATHER)}") from None


@tool(examples=[{"city": "Lima", "unit": "celsius"}, {"city": "Cairo", "unit": "fahrenheit"}])
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. "Lima".
        unit: The temperature unit.
    """
    celsius, sky = _reading(city)
    degrees = celsius if unit == "celsius" else celsius * 9 / 5 + 32
    return f"{degrees:.0f} degrees {unit}, {sky}, in {city.strip().title()}"


@tool
def warmest(cities: list[str]) -> str:
    """The warmest of some cities right now.

    Args:
        cities: City names.
    """
    return max(cities, key=lambda city: _reading(city)[0]).strip().title()
