"""The agents `agentkit mcp serve` serves in tests/unit/mcp/test_serve.py, on scripted runtimes.

`Forecaster` answers with a Pydantic model, `Clerk` with text and has a tool
that needs approval. The module prints when it is imported, and the look-up
tool prints when it runs, as users' code does: served over stdio, neither may
reach stdout, which is the protocol's.
"""

from __future__ import annotations

import pydantic

from agentkit import Agent, tool

__all__ = ["Clerk", "Forecast", "Forecaster", "get_temperature", "send_invoice"]

print("mcp_agents: imported")


class Forecast(pydantic.BaseModel):
    """A day's forecast for one city."""

    city: str
    temperature: int = pydantic.Field(description="Degrees Celsius.")
    summary: str


@tool
def get_temperature(city: str) -> int:
    """The temperature in a city now, in degrees Celsius.

    Args:
        city: The city's name.
    """
    print(f"looking up {city}")
    return {"Oslo": -3, "Lima": 18}.get(city, 20)


class Forecaster(Agent[Forecast]):
    """Forecasts the weather in a city: its temperature and a one-line summary."""

    instructions = "Look up the city's temperature, then answer with the forecast."
    tools = [get_temperature]
    output_type = Forecast
    max_steps = 3


@tool(requires_approval=True)
def send_invoice(customer: str, amount: int) -> str:
    """Send an invoice to a customer.

    Args:
        customer: Who pays.
        amount: How much, in euros.
    """
    return f"sent {customer} an invoice for {amount} euros"


class Clerk(Agent[str]):
    # No docstring: the tool's description is the instructions.
    instructions = "You answer questions about invoices, and send one only when asked to."
    tools = [send_invoice]
    max_steps = 3
