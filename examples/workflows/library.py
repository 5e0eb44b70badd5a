"""The research example's look-up tool: a few facts kept here, so the workflow runs offline."""

from __future__ import annotations

from agentkit import tool

FACTS = {
    "tidal power": [
        "Tidal power turns the rise and fall of the sea into electricity.",
        "The Sihwa Lake station in South Korea, opened in 2011, produces 254 MW.",
        "Tides are predictable years ahead, unlike wind and sunshine.",
    ],
    "honeybees": [
        "A honeybee colony can hold 60,000 bees in summer.",
        "Bees tell each other where food is with a waggle dance.",
        "One bee makes about a twelfth of a teaspoon of honey in its life.",
    ],
}


@tool(examples=[{"topic": "tidal power"}, {"topic": "honeybees"}])
def look_up(topic: str) -> list[str]:
    """Look up facts about a topic in the library.

    Args:
        topic: What to look up, e.g. "tidal power".
    """
    facts = FACTS.get(topic.strip().lower())
    if facts is None:
        raise ValueError(f"the library has nothing on {topic!r}; it knows: {', '.join(FACTS)}")
    return facts
