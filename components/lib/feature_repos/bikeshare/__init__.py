"""The Bikeshare feature repository: constants shared by its Feast objects and its users.

One entity, ``city``: the Bikeshare data is one city's (Washington, DC) hourly rentals and its
weather is observed once an hour for the whole city, so the weather's key is the city, not a
station. The entity's value for this data is :data:`CITY`; another city's data is another value
of the same entity, not another repository.

Feature views (``definitions.py``):

* ``weather`` (batch, timestamped): weathersit, temp, atemp, hum, windspeed; the event
  timestamp is the observation hour (UTC). :data:`WEATHER_TTL` is 3 hours: an observation
  older than that is not the weather at a request's time, and a point-in-time join leaves the
  features missing (null) rather than reach further back.
* ``calendar`` (on demand): hr, weekday, mnth, workingday, holiday, season derived from the
  request's time (:mod:`.calendar`), computed the same way for training rows and requests.

:data:`VERSION` is recorded in every output (materialize's artifacts, training rows' lineage);
bump it on every change to an entity, a view, a TTL or the calendar logic.
"""

from __future__ import annotations

from datetime import timedelta

VERSION = "bikeshare-features-1.0.0"
PROJECT = "bikeshare"
ENTITY = "city"  # the entity's name and its join key
CITY = "washington_dc"
TIMESTAMP = "event_timestamp"  # the offline store's and the entity table's time column
WEATHER_VIEW = "weather"
CALENDAR_VIEW = "calendar"
WEATHER_FEATURES = ("weathersit", "temp", "atemp", "hum", "windspeed")
CALENDAR_FEATURES = ("hr", "weekday", "mnth", "workingday", "holiday", "season")
WEATHER_TTL = timedelta(hours=3)
# The snapshot's time: day of year 1 = 2011-01-01, hour ``hr`` (the data's local hours, kept as
# UTC: no daylight-saving shifts, so every hour of the data maps to exactly one timestamp).
EPOCH = "2011-01-01T00:00:00+00:00"

__all__ = [
    "CALENDAR_FEATURES",
    "CALENDAR_VIEW",
    "CITY",
    "ENTITY",
    "EPOCH",
    "PROJECT",
    "TIMESTAMP",
    "VERSION",
    "WEATHER_FEATURES",
    "WEATHER_TTL",
    "WEATHER_VIEW",
]
