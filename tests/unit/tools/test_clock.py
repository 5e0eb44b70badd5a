"""`now`: the current time in a time zone, called as the model calls it."""

from __future__ import annotations

import datetime

import pytest

from agentkit.tools import now
from tests.unit.tools.support import ok, refused


def _parse(timestamp: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(timestamp)
    assert moment.tzinfo is not None, f"{timestamp} has no UTC offset"
    return moment


def test_the_default_is_utc_and_the_time_is_now() -> None:
    timestamp = ok(now)
    assert timestamp.endswith("+00:00")
    moment = _parse(timestamp)
    assert abs((datetime.datetime.now(datetime.UTC) - moment).total_seconds()) < 5


@pytest.mark.parametrize(
    ("zone", "offsets"),
    [
        ("Asia/Kolkata", {"+05:30"}),
        ("Asia/Kathmandu", {"+05:45"}),
        ("America/New_York", {"-05:00", "-04:00"}),
        ("Europe/Paris", {"+01:00", "+02:00"}),
        ("UTC", {"+00:00"}),
    ],
)
def test_a_zone_gives_its_offset_at_the_same_instant(zone: str, offsets: set[str]) -> None:
    timestamp = ok(now, timezone=zone)
    assert timestamp[-6:] in offsets
    assert abs((_parse(timestamp) - _parse(ok(now))).total_seconds()) < 5


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "utc+5", "../../../etc/passwd", "/etc/localtime", "UTC\x00"])
def test_an_unknown_zone_is_an_error_that_says_what_to_use(zone: str) -> None:
    text = refused(now, timezone=zone)
    assert f"unknown time zone {zone!r}; use an IANA name such as 'UTC'" in text


def test_arguments_of_the_wrong_type_are_refused_before_it_runs() -> None:
    assert "ToolArgumentsError" in refused(now, timezone=5)
