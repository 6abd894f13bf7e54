"""Bikeshare's calendar features from a timestamp, coded as the Bikeshare data codes them.

Only pandas and the standard library: the features image computes them in the ``calendar``
on-demand feature view, and any other image (the serving image, later) can compute the same
values without Feast.

* ``hr`` 0..23 and ``weekday`` 0 (Sunday) .. 6 (Saturday), of the timestamp in UTC (the data's
  hours are kept as UTC, see ``EPOCH``).
* ``mnth``: the data's month names, ``Jan`` ... ``Dec`` (:data:`MONTHS`; ``March``, ``June``,
  ``Sept`` as the data spells them).
* ``season`` 1 winter, 2 spring, 3 summer, 4 fall, changing on March 21, June 21, September 23
  and December 21 (:data:`SEASON_STARTS`): the days on which the 2011 data changes season
  (day of year 80, 172, 266, 355), i.e. the equinoxes and solstices as the data's authors dated
  them, not meteorological seasons.
* ``holiday``: 1 on a public holiday in Washington, DC (:func:`holidays`): the US federal
  holidays (5 U.S.C. 6103) on their observed days (a Saturday holiday is observed on the Friday
  before, a Sunday one on the Monday after: the US Office of Personnel Management's rule), plus
  DC Emancipation Day (April 16, a District of Columbia public holiday since 2005, observed by
  the same rule: Friday April 15 in 2011). The data's holiday column comes from DC's holiday
  schedule (the UCI data set's description names dchr.dc.gov); with the federal holidays
  alone, 2011-04-15 differs (the test ``test_features_store.py`` shows it). Inauguration Day
  (a DC holiday every four years, next in 2013) and Juneteenth (federal since 2021) are in the
  rules for the years they apply to.
* ``workingday``: 1 unless the day is a Saturday, a Sunday or a holiday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import pandas as pd

MONTHS = ("Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec")
# (month, day) on which each season starts; the season before March 21 is winter.
SEASON_STARTS = (((3, 21), 2), ((6, 21), 3), ((9, 23), 4), ((12, 21), 1))


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based; -1 the last) weekday (Monday 0) of a month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def federal_holidays(year: int) -> set[date]:
    """The US federal holidays of ``year`` on their observed days (OPM's rule)."""
    days = {
        _observed(date(year, 1, 1)),
        _nth_weekday(year, 1, 0, 3),  # Birthday of Martin Luther King, Jr.
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _observed(date(year, 11, 11)),  # Veterans Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving Day
        _observed(date(year, 12, 25)),
    }
    if year >= 2021:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    # New Year's Day of the next year observed on December 31 belongs to that year's list in
    # OPM's tables, but it is a day off in this one.
    nxt = date(year + 1, 1, 1)
    if nxt.weekday() == 5:
        days.add(date(year, 12, 31))
    return {d for d in days if d.year == year}


def holidays(year: int) -> set[date]:
    """Washington, DC's public holidays of ``year``: the federal ones, Emancipation Day, and
    Inauguration Day (January 20 after a presidential election, Monday 21 when a Sunday)."""
    days = federal_holidays(year)
    if year >= 2005:
        days.add(_observed(date(year, 4, 16)))  # DC Emancipation Day
    if year % 4 == 1:
        inauguration = date(year, 1, 20)
        days.add(inauguration + timedelta(days=1) if inauguration.weekday() == 6 else inauguration)
    return days


def _season(month: pd.Series, day: pd.Series) -> pd.Series:
    key = month * 100 + day
    season = pd.Series(1, index=month.index, dtype="int64")
    for (m, d), code in SEASON_STARTS:
        season = season.mask(key >= m * 100 + d, code)
    return season


def calendar_features(times: pd.Series, holiday_rule=holidays) -> pd.DataFrame:
    """The calendar features of each timestamp, one row each, in Bikeshare's coding.

    Args:
        times: Timestamps; naive ones are taken as UTC, aware ones converted to UTC.
        holiday_rule: ``year -> set of dates``; :func:`holidays` (DC) by default.
    """
    t = pd.to_datetime(times)
    t = t.dt.tz_localize("UTC") if t.dt.tz is None else t.dt.tz_convert("UTC")
    days = t.dt.date
    off = set()
    for year in sorted(set(t.dt.year.dropna().astype(int))):
        off |= holiday_rule(year)
    holiday = days.isin(off).astype("int64")
    weekday = ((t.dt.dayofweek + 1) % 7).astype("int64")  # pandas: Monday 0; Bikeshare: Sunday 0
    weekend = weekday.isin((0, 6))
    return pd.DataFrame(
        {
            "hr": t.dt.hour.astype("int64"),
            "weekday": weekday,
            "mnth": t.dt.month.map(lambda m: MONTHS[m - 1]).astype(object),
            "workingday": (~weekend & (holiday == 0)).astype("int64"),
            "holiday": holiday,
            "season": _season(t.dt.month, t.dt.day),
        },
        index=times.index,
    )


@lru_cache(maxsize=16)
def _holidays_cached(year: int) -> frozenset[date]:
    return frozenset(holidays(year))


def calendar_row(epoch_seconds: float) -> dict:
    """One time's calendar features, without pandas: what :func:`calendar_features` gives for
    that time (the same rules, :func:`holidays` and :data:`SEASON_STARTS`), for a request
    path where a one-row DataFrame costs milliseconds (the serving image's lookup with
    ``--feature_calendar local``). Equal to :func:`calendar_features` on every hour of 2011
    and 2012 (``components/lib/tests/test_calendar_row.py``)."""
    t = datetime.fromtimestamp(epoch_seconds, UTC)
    day = t.date()
    holiday = int(day in _holidays_cached(t.year))
    weekday = (t.weekday() + 1) % 7  # Python: Monday 0; Bikeshare: Sunday 0
    season = 1
    for (m, d), code in SEASON_STARTS:
        if t.month * 100 + t.day >= m * 100 + d:
            season = code
    return {
        "hr": t.hour,
        "weekday": weekday,
        "mnth": MONTHS[t.month - 1],
        "workingday": int(weekday not in (0, 6) and not holiday),
        "holiday": holiday,
        "season": season,
    }
