"""The Bikeshare repository's Feast objects: entity ``city``, views ``weather`` and ``calendar``.

Imports Feast: only the features image (and ``.venv-features``) imports this module, through
``components/lib/featurestore.py``. The offline source's location is the run's (a path or an
``s3://`` URI), so the objects are built by :func:`build`, not defined at module level.
"""

from __future__ import annotations

import pandas as pd
from feast import Entity, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String, UnixTimestamp

from components.lib.feature_repos import bikeshare as repo

TAGS = {"repository_version": repo.VERSION}


def build(offline_uri: str, s3_endpoint: str | None = None) -> list:
    """Every object of the repository, its weather source reading ``offline_uri``.

    Args:
        offline_uri: The weather observations' Parquet (a path or ``s3://bucket/key``).
        s3_endpoint: The S3 / MinIO endpoint URL for an ``s3://`` source (``http://host:port``).
    """
    city = Entity(
        name=repo.ENTITY,
        join_keys=[repo.ENTITY],
        value_type=ValueType.STRING,
        description="The city the weather is observed in (Bikeshare: one city, washington_dc)",
        tags=TAGS,
    )
    source = FileSource(
        name="weather_observations",
        path=offline_uri,
        timestamp_field=repo.TIMESTAMP,
        s3_endpoint_override=s3_endpoint or None,
        description="Hourly weather observations (the Parquet materialize writes)",
        tags=TAGS,
    )
    weather = FeatureView(
        name=repo.WEATHER_VIEW,
        entities=[city],
        ttl=repo.WEATHER_TTL,
        schema=[
            Field(name="weathersit", dtype=String),
            Field(name="temp", dtype=Float64),
            Field(name="atemp", dtype=Float64),
            Field(name="hum", dtype=Float64),
            Field(name="windspeed", dtype=Float64),
        ],
        source=source,
        online=True,
        description="The city's weather at the observation hour; older than the TTL is no value",
        tags=TAGS,
    )
    request = RequestSource(
        name="request_time",
        schema=[Field(name=repo.TIMESTAMP, dtype=UnixTimestamp)],
        description="The time a training example or a request is about",
    )

    @on_demand_feature_view(
        sources=[request],
        schema=[
            Field(name="hr", dtype=Int64),
            Field(name="weekday", dtype=Int64),
            Field(name="mnth", dtype=String),
            Field(name="workingday", dtype=Int64),
            Field(name="holiday", dtype=Int64),
            Field(name="season", dtype=Int64),
        ],
        mode="pandas",
        description="Bikeshare's calendar columns from the request time (DC holidays)",
        tags=TAGS,
    )
    def calendar(inputs: pd.DataFrame) -> pd.DataFrame:
        # Feast stores the function's source and runs it apart from this module: import here.
        from components.lib.feature_repos.bikeshare.calendar import calendar_features

        return calendar_features(inputs["event_timestamp"])

    return [city, source, weather, request, calendar]
