"""The scalar calendar (the serving image's ``--feature_calendar local``) equals the
calendar on-demand view's pandas code on every hour of 2011 and 2012."""

from __future__ import annotations

import pandas as pd
import pytest

from components.lib.feature_repos.bikeshare import calendar

pytestmark = pytest.mark.unit


def test_calendar_row_equals_calendar_features_on_every_hour_of_2011_and_2012():
    times = pd.Series(
        pd.date_range("2011-01-01", "2013-01-01", freq="h", tz="UTC", inclusive="left")
    )
    frame = calendar.calendar_features(times)
    rows = pd.DataFrame([calendar.calendar_row(t.timestamp()) for t in times])
    assert len(rows) == 2 * 8760 + 24
    pd.testing.assert_frame_equal(
        rows[list(frame.columns)], frame.reset_index(drop=True), check_dtype=False
    )
    # Off the hour (a request at 23:59:59 is still hour 23 of that day).
    assert calendar.calendar_row(pd.Timestamp("2011-12-31T23:59:59Z").timestamp())["hr"] == 23
