"""The server's Prometheus metrics (served at ``/metrics`` beside KServe's own).

Every series carries the model name and version, so a canary's series sit beside the
champion's. Request counts, errors by kind and latency are recorded per HTTP request by
:mod:`components.serving.app`; rows and the prediction distribution by the model.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

REQUESTS = Counter(
    "loopline_requests_total",
    "Inference requests answered, by protocol and HTTP status code",
    ["model", "version", "protocol", "code"],
)
ERRORS = Counter(
    "loopline_request_errors_total",
    "Inference requests answered with an error, by kind (schema, type, range, too_large, "
    "body, not_ready, internal, ...)",
    ["model", "version", "kind"],
)
LATENCY = Histogram(
    "loopline_request_duration_seconds",
    "Time from the request's first byte to the response's last, seconds",
    ["model", "version", "protocol"],
    buckets=LATENCY_BUCKETS,
)
ROWS = Counter("loopline_prediction_rows_total", "Rows predicted", ["model", "version"])
CLASSES = Counter(
    "loopline_predicted_class_total", "Rows predicted per class", ["model", "version", "class"]
)
MODEL_INFO = Gauge(
    "loopline_model_info",
    "1 for the version this server serves; labels say which predict path serves it",
    ["model", "version", "path", "manifest_sha256"],
)
MODEL_READY = Gauge(
    "loopline_model_ready", "1 when the model is loaded and verified", ["model", "version"]
)

LOOKUPS = Counter(
    "loopline_feature_lookups_total",
    "Feature store lookups (requests that carried only the entity and the time), by outcome: "
    "ok, missing (422), timeout, unreachable, error (503)",
    ["model", "version", "outcome"],
)
LOOKUP_LATENCY = Histogram(
    "loopline_feature_lookup_duration_seconds",
    "Time of one feature server call (POST /get-online-features) and its checks, seconds",
    ["model", "version"],
    buckets=LATENCY_BUCKETS,
)

_prediction: Histogram | None = None


def prediction_histogram(buckets: tuple[float, ...]) -> Histogram:
    """The prediction distribution (regression), created once per process with the model's
    buckets (the same for every version of a model: see loading._buckets)."""
    global _prediction
    if _prediction is None:
        _prediction = Histogram(
            "loopline_prediction",
            "Predicted values (regression)",
            ["model", "version"],
            buckets=buckets,
        )
    return _prediction
