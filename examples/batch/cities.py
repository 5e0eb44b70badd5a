"""The batch example's agent: a weather report per city, as a typed answer.

    cd examples/batch
    agentkit batch cities:CityWeather --input questions.jsonl --output reports.jsonl
    agentkit batch cities:CityWeather --input questions.jsonl --output reports.jsonl --resume   # after a kill
    agentkit batch cities:CityWeather --input questions.jsonl --output reports.jsonl --ray --overwrite

It runs on the default runtime (`vllm:default`, the embedded model on the
CPU); `--runtime` picks another, `--runtime` twice shares the items between
two servers. Each row of reports.jsonl has the item's id, its status, the
`Report` as JSON, the run's id, tokens, seconds and the error if it failed.
The embedded model is a 270M base model: the reports are valid by
construction, not necessarily right; judge quality on a real Gemma 4.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agentkit import Agent, tool

# A stand-in for a weather service, so the example runs offline.
WEATHER = {
    "paris": (18.0, "cloudy"),
    "tokyo": (24.0, "sunny"),
    "oslo": (-3.0, "snowing"),
    "madrid": (29.0, "sunny"),
    "new york": (12.0, "raining"),
    "lima": (19.0, "cloudy"),
}


@tool(examples=[{"city": "Paris"}, {"city": "Madrid"}])
def get_weather(city: str) -> str:
    """Get the current weather in a city, in degrees Celsius.

    Args:
        city: The city's name, e.g. "Paris".
    """
    try:
        celsius, sky = WEATHER[city.strip().lower()]
    except KeyError:
        raise ValueError(f"no weather station in {city!r}; known: {', '.join(sorted(WEATHER))}") from None
    return f"{celsius:g} degrees and {sky} in {city}"


class Report(BaseModel):
    """One city's weather."""

    city: str
    celsius: float
    sky: Literal["sunny", "cloudy", "raining", "snowing", "unknown"]


class CityWeather(Agent[Report]):
    instructions = "You report the weather. Call get_weather for the city, then give the report."
    tools = [get_weather]
    output_type = Report
    max_steps = 3
