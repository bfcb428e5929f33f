"""The five fields of a cron expression, parsed by celery's ``crontab``, and the due times
it gives in one time zone.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of week (0-6,
0 = Sunday, or mon..sun); each takes ``*``, lists, ranges and ``/step``. As in celery, and
unlike Vixie cron, a day of month and a day of week given together must both match.
Times in and out are seconds since the epoch; the fields are read on the wall clock of the
zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..core.errors import UsageError

#: The fields of an expression, in order, with the name celery's ``crontab`` gives them.
FIELDS = (("minute", "minute"), ("hour", "hour"), ("day of month", "day_of_month"),
          ("month", "month_of_year"), ("day of week", "day_of_week"))


class CronError(UsageError):
    """A cron expression or a time zone that cannot be used; the message names the field."""


def zone(name: str) -> ZoneInfo:
    """The time zone named ``name`` (IANA: ``UTC``, ``Europe/Berlin``); CronError otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(f"time zone {name!r}: unknown (use an IANA name such as UTC or Europe/Berlin)") from None


@dataclass(frozen=True)
class Cron:
    """A parsed expression in a time zone: :meth:`next_after` and :meth:`latest_due`."""

    text: str
    tz: ZoneInfo
    spec: Any = field(compare=False, repr=False)        #: the celery ``crontab``

    def next_after(self, ts: float) -> float:
        """The first due time strictly after ``ts``: the first minute on the zone's wall
        clock whose month, day of month, day of week, hour and minute are all in the
        sets celery's ``crontab`` parsed. (Its own ``remaining_delta`` is not used: some
        celery 5 releases skip to the next hour for ``* * * * *``.) RuntimeError when no
        day in five years matches."""
        s = self.spec
        hours, minutes = sorted(s.hour), sorted(s.minute)
        first = datetime.fromtimestamp(ts, self.tz).date()
        for offset in range(5 * 366):
            day = first + timedelta(days=offset)
            if (day.month not in s.month_of_year or day.day not in s.day_of_month
                    or (day.weekday() + 1) % 7 not in s.day_of_week):
                continue
            for hour in hours:
                for minute in minutes:
                    due = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz).timestamp()
                    if due > ts:
                        return due
        raise RuntimeError(f"cron {self.text!r}: no due time within five years")

    def latest_due(self, after: float, now: float) -> float | None:
        """The latest due time in (``after``, ``now``], or None: however many were missed,
        one. The search widens a window back from ``now`` until a due time is in it, so a
        long outage costs a few steps, not one per missed time."""
        if self.next_after(after) > now:
            return None
        step = 60.0
        while True:
            found = self.next_after(max(after, now - step))
            if found <= now:
                break
            step *= 2
        while True:
            following = self.next_after(found)
            if following > now:
                return found
            found = following


def _field(name: str, key: str, value: str) -> Any:
    from celery.schedules import ParseException, crontab

    try:
        return crontab(**{key: value}, nowfun=_no_clock)
    except (ValueError, ParseException) as e:
        why = str(e).replace("weekday literal", "value") if key != "day_of_week" else str(e)
        raise CronError(f"cron: {name} field {value!r} is not valid ({why})") from None


def _no_clock() -> datetime:
    """Celery's ``crontab`` asks for "now" only to report it; the due times use none."""
    return datetime.fromtimestamp(0, ZoneInfo("UTC"))


def parse(text: str, tz: str = "UTC") -> Cron:
    """Parse a five-field expression; CronError naming the field that is wrong, or saying
    that the expression never fires."""
    from celery.schedules import crontab

    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron: {text!r} has {len(parts)} field{'s' if len(parts) != 1 else ''}; "
                        "give 5: minute hour day-of-month month day-of-week")
    for (name, key), value in zip(FIELDS, parts, strict=True):
        _field(name, key, value)
    try:
        spec = crontab(**{key: value for (_, key), value in zip(FIELDS, parts, strict=True)}, nowfun=_no_clock)
    except ValueError as e:                       # fields valid alone, not together (31 2 ...)
        raise CronError(f"cron: {text!r}: {e}") from None
    cron = Cron(" ".join(parts), zone(tz), spec)
    try:
        cron.next_after(datetime(2000, 1, 1, tzinfo=cron.tz).timestamp())
    except (RuntimeError, ValueError, OverflowError):
        raise CronError(f"cron: {text!r} never fires (day of month and month never meet)") from None
    return cron


def when(ts: float | None, tz: ZoneInfo) -> str:
    """``ts`` as ``YYYY-MM-DD HH:MM`` on the zone's wall clock ('' for None)."""
    if ts is None or not math.isfinite(ts):
        return ""
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


__all__ = ["FIELDS", "Cron", "CronError", "parse", "when", "zone"]
