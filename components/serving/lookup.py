"""Features from the online store: a request that carries only the entity and the time gets
the model's inputs from the Feast feature server.

The serving image does not import Feast (its pins, prometheus_client < 0.25 among them, do not
fit the serving lock): the online store is reached through the **Feast feature server**
(``feast serve`` from the features image), ``POST <url>/get-online-features`` with

    {"entities": {"city": [...], "event_timestamp": ["2011-12-31T23:30:00Z", ...]},
     "features": ["weather:temp", ..., "calendar:hr", ...]}

``event_timestamp`` is request data for the on-demand view ``calendar``: the feature server
runs the registered view's transformation (the code the training rows were joined with), so
both views come in one round trip. Feast 0.67 answers

    {"metadata": {"feature_names": ["city", "atemp", ...]},
     "results": [{"values": [...], "statuses": ["PRESENT" | "NOT_FOUND" | ...],
                  "event_timestamps": ["2011-12-31T23:00:00Z", ...]}, ...]}

one result per feature name (in the metadata's order, not the request's), one value per row.

``calendar="local"`` (``--feature_calendar local``) asks the feature server for the batch
view only and computes the calendar features in this process with
:func:`components.lib.feature_repos.bikeshare.calendar.calendar_row` (the same rules as the
view's pandas code, equal on every hour of 2011 and 2012): the feature server's on-demand
transformation (a pandas frame per request) is most of its time per call.

The online store holds each entity's **latest** observation, and Feast 0.67's online read
checks no TTL against the request's time, so the lookup does: a batch view's value is used
only if its observation time ``ts`` satisfies ``ts <= t <= ts + ttl`` for the request time
``t``; otherwise (and for a null or a status other than PRESENT: an unknown entity, nothing
materialized) the features are missing and the request is refused with a 422 that names
them, the entity and the time (:class:`FeaturesMissing`), never predicted on. The feature
server unreachable, too slow (``timeout``) or answering an error is a 503
(:class:`FeatureServerUnavailable`); the model server keeps serving full requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from components.lib.feature_repos import bikeshare
from components.lib.feature_repos.bikeshare.calendar import calendar_row

from . import metrics
from .validation import RequestError

log = logging.getLogger("loopline.serving")

REPOS = {"bikeshare": bikeshare}


class FeaturesMissing(RequestError):
    """The store has no usable value for some features of a row (422)."""

    def __init__(self, message: str):
        super().__init__(message, status=422, kind="features_missing")


class FeatureServerUnavailable(RequestError):
    """The feature server cannot be reached, timed out or answered an error (503)."""

    def __init__(self, message: str):
        super().__init__(message, status=503, kind="feature_server_unavailable")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class FeatureLookup:
    """The lookup of one model's inputs (``inputs``) in a feature repository's views."""

    url: str
    inputs: tuple[str, ...]
    timeout_s: float = 1.0
    default_entity: str = ""
    repo: str = "bikeshare"
    calendar: str = "server"  # server: the on-demand view through feast serve; local: here
    labels: dict = field(default_factory=dict)  # model, version (metrics)
    _client: object = field(default=None, repr=False)

    def __post_init__(self):
        spec = REPOS[self.repo]
        self.url = self.url.rstrip("/")
        self.entity = spec.ENTITY
        self.time_field = spec.TIMESTAMP
        views = {name: spec.WEATHER_VIEW for name in spec.WEATHER_FEATURES}
        views.update({name: spec.CALENDAR_VIEW for name in spec.CALENDAR_FEATURES})
        self.view_of = {c: views[c] for c in self.inputs if c in views}
        self.unavailable = [c for c in self.inputs if c not in views]
        if self.calendar not in ("server", "local"):
            raise ValueError(f"feature calendar {self.calendar!r}: server or local")
        self.local = (
            [c for c, v in self.view_of.items() if v == spec.CALENDAR_VIEW]
            if self.calendar == "local"
            else []
        )
        self.refs = [
            f"{self.view_of[c]}:{c}"
            for c in self.inputs
            if c in self.view_of and c not in self.local
        ]
        # Batch views and their TTL (seconds); on-demand views have none.
        self.ttl = {spec.WEATHER_VIEW: spec.WEATHER_TTL.total_seconds()}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    def describe(self) -> str:
        return (
            f"{self.url}/get-online-features, features {', '.join(self.refs)}, "
            f"timeout {self.timeout_s:g} s"
            + (f", {', '.join(self.local)} computed here" if self.local else "")
            + (f", default {self.entity} {self.default_entity!r}" if self.default_entity else "")
        )

    def _http(self):
        # aiohttp (in the serving lock, KServe's own dependency): httpx's AsyncClient cost about
        # 2 ms of CPU per call here and queued at 8 connections (bench/online_features.py).
        if self._client is None:
            import aiohttp

            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=64),
            )
        return self._client

    async def fetch(self, entities: list[str] | None, times: list[float]) -> dict[str, list]:
        """The model inputs for each row (entity, epoch seconds), or a 4xx / 503."""
        if self.unavailable:
            raise RequestError(
                f"the feature store has no feature {', '.join(map(repr, self.unavailable))} "
                "this model takes: send every model input",
                kind="missing_column",
            )
        n = len(times)
        if not entities:
            if not self.default_entity:
                raise RequestError(
                    f"column {self.entity!r} (the feature store's entity) is required to fetch "
                    "the features; send it with the time, or every model input",
                    kind="missing_column",
                )
            entities = [self.default_entity] * n
        keys = {self.entity: entities}
        if len(self.local) < sum(1 for v in self.view_of.values() if v not in self.ttl):
            keys[self.time_field] = [_iso(t) for t in times]  # request data of on-demand views
        body = orjson.dumps({"entities": keys, "features": self.refs})
        began = time.perf_counter()
        outcome = "error"
        try:
            answer = await self._post(body)
            values = self._parse(answer, entities, times)
            outcome = "ok"
            return values
        except FeaturesMissing:
            outcome = "missing"
            raise
        except FeatureServerUnavailable as exc:
            outcome = exc.outcome
            raise
        finally:
            model, version = self.labels.get("model", ""), self.labels.get("version", "")
            metrics.LOOKUPS.labels(model, version, outcome).inc()
            metrics.LOOKUP_LATENCY.labels(model, version).observe(time.perf_counter() - began)

    async def _post(self, body: bytes) -> dict:
        import aiohttp

        where = f"the feature server {self.url}"
        try:
            async with self._http().post(
                f"{self.url}/get-online-features",
                data=body,
                headers={"content-type": "application/json"},
            ) as response:
                status, content = response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts (asyncio.TimeoutError) included
            raise _unavailable(
                f"{where} did not answer within {self.timeout_s:g} s ({type(exc).__name__}); "
                "no prediction",
                "timeout",
            ) from None
        except aiohttp.ClientError as exc:
            raise _unavailable(
                f"{where} cannot be reached ({type(exc).__name__}: {exc}); no prediction",
                "unreachable",
            ) from None
        if status != 200:
            text = content[:300].decode("utf-8", "replace")
            raise _unavailable(f"{where} answered {status}: {text}", "error")
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _unavailable(f"{where} answered no JSON ({exc})", "error") from None

    def _parse(self, answer: dict, entities: list[str], times: list[float]) -> dict[str, list]:
        try:
            names = answer["metadata"]["feature_names"]
            results = dict(zip(names, answer["results"], strict=True))
        except (KeyError, TypeError, ValueError) as exc:
            raise _unavailable(
                f"the feature server's answer is not Feast's get-online-features response ({exc!r})",
                "error",
            ) from None
        out: dict[str, list] = {}
        for row, (entity, t) in enumerate(zip(entities, times, strict=True)):
            problems: dict[str, list[str]] = {}
            if self.local:
                computed = calendar_row(t)
                for name in self.local:
                    out.setdefault(name, []).append(computed[name])
            for name, view in self.view_of.items():
                if name in self.local:
                    continue
                result = results.get(name)
                if result is None:
                    raise _unavailable(
                        f"the feature server's answer has no feature {name!r}", "error"
                    )
                value = result["values"][row]
                status = result["statuses"][row]
                reason = None
                if status != "PRESENT" or value is None:
                    reason = (
                        "not found (an unknown entity, or nothing materialized)"
                        if status == "NOT_FOUND"
                        else f"status {status}"
                        if status != "PRESENT"
                        else "null in the store"
                    )
                elif view in self.ttl:
                    observed = _epoch(result["event_timestamps"][row])
                    if observed > t:
                        reason = (
                            f"the online store's latest observation is from {_iso(observed)}, "
                            "after the request time (the online store holds the latest values "
                            "only)"
                        )
                    elif t - observed > self.ttl[view]:
                        reason = (
                            f"the latest observation, {_iso(observed)}, is older than the TTL "
                            f"of view {view!r} ({timedelta(seconds=self.ttl[view])})"
                        )
                if reason is not None:
                    problems.setdefault(reason, []).append(name)
                out.setdefault(name, []).append(value)
            if problems:
                detail = "; ".join(f"{', '.join(v)}: {k}" for k, v in problems.items())
                raise FeaturesMissing(
                    f"features missing in the feature store for {self.entity}={entity!r} at "
                    f"{_iso(t)}"
                    + (f" (row {row})" if len(times) > 1 else "")
                    + f": {detail}; no prediction"
                )
        return out


def _unavailable(message: str, outcome: str) -> FeatureServerUnavailable:
    exc = FeatureServerUnavailable(message)
    exc.outcome = outcome
    return exc
