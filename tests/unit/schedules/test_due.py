"""Due times of cron expressions and what a look at a schedule decides, on given clocks
(no test waits for a minute to pass)."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cmqueue.core.errors import UsageError
from cmqueue.schedules.cron import CronError, parse
from cmqueue.schedules.model import Schedule, check_catchup, check_name, decide


def ts(*fields: int, tz: str = "UTC") -> float:
    """Seconds since the epoch of a wall-clock time in ``tz``."""
    return datetime(*fields, tzinfo=ZoneInfo(tz)).timestamp()


def test_next_after_is_strictly_after_and_on_the_minute():
    every = parse("* * * * *")
    assert every.next_after(ts(2024, 1, 1, 12, 0)) == ts(2024, 1, 1, 12, 1)
    assert every.next_after(ts(2024, 1, 1, 12, 0, 30)) == ts(2024, 1, 1, 12, 1)
    assert every.next_after(ts(2024, 1, 1, 23, 59, 59)) == ts(2024, 1, 2, 0, 0)


def test_fields_steps_lists_ranges_and_weekday_names():
    quarter = parse("*/15 * * * *")
    assert quarter.next_after(ts(2024, 1, 1, 12, 1)) == ts(2024, 1, 1, 12, 15)
    assert quarter.next_after(ts(2024, 1, 1, 12, 45)) == ts(2024, 1, 1, 13, 0)
    nightly = parse("0 3 * * *")
    assert nightly.next_after(ts(2024, 1, 1, 3, 0)) == ts(2024, 1, 2, 3, 0)
    assert nightly.next_after(ts(2024, 1, 1, 2, 59)) == ts(2024, 1, 1, 3, 0)
    workdays = parse("30 8 * * mon-fri")                   # 2024-01-05 is a Friday
    assert workdays.next_after(ts(2024, 1, 5, 9, 0)) == ts(2024, 1, 8, 8, 30)
    sundays = parse("0 0 * * 0")
    assert sundays.next_after(ts(2024, 1, 1)) == ts(2024, 1, 7)
    first = parse("0 6 1 * *")
    assert first.next_after(ts(2024, 1, 31, 12)) == ts(2024, 2, 1, 6, 0)
    leap = parse("0 0 29 2 *")
    assert leap.next_after(ts(2024, 3, 1)) == ts(2028, 2, 29)


def test_the_fields_are_read_in_the_zone_given():
    berlin = parse("0 3 * * *", "Europe/Berlin")
    assert berlin.next_after(ts(2024, 1, 1, 0, 0)) == ts(2024, 1, 1, 3, 0, tz="Europe/Berlin")
    assert berlin.next_after(ts(2024, 1, 1, 0, 0)) == ts(2024, 1, 1, 2, 0)          # UTC+1 in winter
    assert berlin.next_after(ts(2024, 7, 1, 0, 0)) == ts(2024, 7, 1, 1, 0)          # UTC+2 in summer


def test_the_latest_due_time_however_many_were_missed():
    every = parse("* * * * *")
    now = ts(2024, 3, 1, 12, 0, 30)
    assert every.latest_due(ts(2024, 3, 1, 11, 0), now) == ts(2024, 3, 1, 12, 0)
    assert every.latest_due(ts(2023, 3, 1), now) == ts(2024, 3, 1, 12, 0)           # a year down: one
    assert every.latest_due(ts(2024, 3, 1, 12, 0), now) is None                     # already dealt with
    yearly = parse("0 0 1 1 *")
    assert yearly.latest_due(ts(2020, 6, 1), now) == ts(2024, 1, 1)
    assert yearly.latest_due(ts(2024, 1, 1), now) is None


@pytest.mark.parametrize(("text", "field"), [
    ("61 * * * *", "minute"), ("* 24 * * *", "hour"), ("* x * * *", "hour"), ("* * 0 * *", "day of month"),
    ("* * * 13 *", "month"), ("* * * * funday", "day of week"), ("1,,2 * * * *", "minute"),
])
def test_a_bad_field_is_named(text, field):
    with pytest.raises(CronError, match=f"cron: {field} field") as e:
        parse(text)
    assert e.value.exit_code == 2


@pytest.mark.parametrize("text", ["* * * *", "* * * * * *", ""])
def test_five_fields_are_asked_for(text):
    with pytest.raises(CronError, match="give 5"):
        parse(text)


def test_fields_that_never_meet_and_an_unknown_zone_are_refused():
    with pytest.raises(CronError, match="never"):
        parse("0 0 31 2 *")
    with pytest.raises(CronError, match="time zone 'Mars/Base'"):
        parse("* * * * *", "Mars/Base")


def _schedule(checked: float, **kw) -> Schedule:
    return Schedule("s", "0 * * * *", "command", command="true", checked=checked, **kw)


def test_decide_fires_the_latest_missed_due_time_once():
    hourly = parse("0 * * * *")
    s = _schedule(ts(2024, 1, 1, 0, 30))
    d = decide(s, hourly, ts(2024, 1, 1, 5, 10), late=60)
    assert d.fire == ts(2024, 1, 1, 5, 0) and d.skip is None
    assert d.next == ts(2024, 1, 1, 6, 0)
    s.checked = d.fire                                   # what the claim does
    again = decide(s, hourly, ts(2024, 1, 1, 5, 11), late=60)
    assert again.fire is None and again.next == ts(2024, 1, 1, 6, 0)


def test_decide_on_time_fires_even_with_catchup_skip():
    hourly = parse("0 * * * *")
    on_time = decide(_schedule(ts(2024, 1, 1, 4, 30), catchup="skip"), hourly, ts(2024, 1, 1, 5, 0, 5), late=60)
    assert on_time.fire == ts(2024, 1, 1, 5, 0)
    missed = decide(_schedule(ts(2024, 1, 1, 0, 30), catchup="skip"), hourly, ts(2024, 1, 1, 5, 10), late=60)
    assert missed.fire is None and missed.skip == ts(2024, 1, 1, 5, 0)


def test_decide_nothing_before_the_first_due_time_and_nothing_when_paused():
    hourly = parse("0 * * * *")
    early = decide(_schedule(ts(2024, 1, 1, 0, 30)), hourly, ts(2024, 1, 1, 0, 59), late=60)
    assert early.fire is None and early.skip is None and early.next == ts(2024, 1, 1, 1, 0)
    paused = decide(_schedule(ts(2024, 1, 1, 0, 30), paused=True), hourly, ts(2024, 1, 2), late=60)
    assert paused.fire is None and paused.skip is None and math.isinf(paused.next)


def test_names_and_catchup_are_checked():
    assert check_name("nightly-backup.v2") == "nightly-backup.v2"
    for bad in ("", "a b", "-x", "x" * 65, "a/b"):
        with pytest.raises(UsageError):
            check_name(bad)
    assert check_catchup("skip") == "skip"
    with pytest.raises(UsageError, match="once, skip"):
        check_catchup("always")


def test_a_schedule_round_trips_through_its_dict_and_ignores_unknown_keys():
    s = _schedule(12.0, env={"A": "1"}, on="node1")
    assert Schedule.from_dict({**s.to_dict(), "future_field": 1}) == s
    assert s.what == "--on=node1 true"
