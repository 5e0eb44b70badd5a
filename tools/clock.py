"""`now`: the current date and time in a time zone."""

from __future__ import annotations

import datetime
import zoneinfo

from agentkit.tool import tool

__all__ = ["now"]


@tool(examples=[{"timezone": "UTC"}, {"timezone": "Europe/Paris"}])
def now(timezone: str = "UTC") -> str:
    """The current date and time, as an ISO 8601 timestamp with its UTC offset.

    Args:
        timezone: An IANA time zone name, e.g. "Europe/Paris", "America/New_York" or "UTC".
    """
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'UTC', 'Europe/Paris' or 'Asia/Tokyo'"
        ) from None
    return datetime.datetime.now(zone).isoformat(timespec="seconds")
