"""Timeouts and retries of every network client the components and the CLI make: one place.

Each kind of client has a connect timeout, a read timeout (seconds) and a retry count, read
from the environment **at call time** (so a pod's env, a test or a CLI user can change them)
with the documented defaults below. A value that is not a number (or a negative one) raises
:class:`NetworkConfigError` naming the variable.

=============  ===============================  ========  =====  =======  ===========================
kind           what                             connect   read   retries  variables
=============  ===============================  ========  =====  =======  ===========================
``s3``         MinIO / S3 (``storage``,         10        60     3        ``LOOPLINE_S3_*``
               ``window``, ``cleanup``)
``kubernetes`` the Kubernetes API (KServe,      10        30     3        ``LOOPLINE_KUBERNETES_*``
               Katib)
``kfp``        the KFP API (``kfp.Client``)     10        60     3        ``LOOPLINE_KFP_*``
``http``       plain HTTP (Prometheus queries,  5         30     0        ``LOOPLINE_HTTP_*``
               the tracking server's health)
``redis``      Feast's Redis online store       5         5      0        ``LOOPLINE_REDIS_*``
=============  ===============================  ========  =====  =======  ===========================

``*`` is ``CONNECT_TIMEOUT``, ``READ_TIMEOUT`` or ``RETRIES``. Retries are urllib3's: a
failed connection, a read that timed out (idempotent methods only) and, for S3, an answer
500 / 502 / 503 / 504, each retried with exponential backoff (0.2 s, 0.4 s, ...). So a call
to an endpoint that accepts and never answers gives up after about
``(retries + 1) * read`` seconds, and one that refuses after ``retries`` quick tries.

MLflow's client has its own variables, and its defaults are long (``MLFLOW_HTTP_REQUEST_TIMEOUT``
120 s per request, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 7 with a backoff factor of 2: about
four minutes of waiting before a dead server is reported). :func:`mlflow_env` sets Loopline's
defaults, 60 s and 3 retries, **only when the variable is unset**; the registry calls it before
it makes its client.

Clients made elsewhere keep their own, already bounded, settings: the serving image's capture
writer (``--capture_io_timeout``, no retries inside the client: it retries with its own
backoff) and its Feast feature-server lookup (``--feature_server_timeout``); boto3 inside
MLflow's and Feast's S3 code (botocore's 60 s connect / read timeouts; retries from
``AWS_MAX_ATTEMPTS``, which :func:`aws_env` defaults to 3).

Stdlib only at import: every image imports this module (urllib3 and certifi are imported by
the functions that make a client; both come with the MinIO and Kubernetes clients).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

KINDS = ("s3", "kubernetes", "kfp", "http", "redis")
DEFAULTS: dict[str, tuple[float, float, int]] = {
    # kind: (connect seconds, read seconds, retries)
    "s3": (10.0, 60.0, 3),
    "kubernetes": (10.0, 30.0, 3),
    "kfp": (10.0, 60.0, 3),
    "http": (5.0, 30.0, 0),
    "redis": (5.0, 5.0, 0),
}
# MLflow's own variables and the values Loopline gives them when they are unset.
MLFLOW_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3"}
# botocore's retry variables (boto3 in MLflow's and Feast's S3 code).
AWS_DEFAULTS = {"AWS_MAX_ATTEMPTS": "3", "AWS_RETRY_MODE": "standard"}
BACKOFF_FACTOR = 0.2
S3_RETRY_STATUSES = (500, 502, 503, 504)
_MARK = "_loopline_request_timeout"


class NetworkConfigError(ValueError):
    """A timeout or retry variable that is not a valid value; the message names it."""


@dataclass(frozen=True)
class Limits:
    """One client kind's timeouts (seconds) and retries, as the environment sets them now."""

    kind: str
    connect: float
    read: float
    retries: int

    @property
    def pair(self) -> tuple[float, float]:
        """``(connect, read)``: what requests, kubernetes and kfp take as a timeout."""
        return (self.connect, self.read)

    def describe(self) -> str:
        return f"connect {self.connect:g} s, read {self.read:g} s, {self.retries} retries"


def env_names(kind: str) -> tuple[str, str, str]:
    """The variables of ``kind``: connect timeout, read timeout, retries."""
    prefix = f"LOOPLINE_{kind.upper()}_"
    return (prefix + "CONNECT_TIMEOUT", prefix + "READ_TIMEOUT", prefix + "RETRIES")


def _number(name: str, default: float, cast: type) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or value < 0 or (cast is float and (value == 0 or value != value)):
        wanted = "a whole number >= 0" if cast is int else "a number of seconds > 0"
        raise NetworkConfigError(f"{name}={raw!r}: must be {wanted}")
    return value


def limits(kind: str) -> Limits:
    """``kind``'s timeouts and retries: its ``LOOPLINE_<KIND>_*`` variables, else the defaults.

    Raises:
        NetworkConfigError: An unknown kind, or a variable that is not a valid value.
    """
    if kind not in DEFAULTS:
        raise NetworkConfigError(f"client kind {kind!r}: one of {', '.join(KINDS)}")
    connect, read, retries = DEFAULTS[kind]
    names = env_names(kind)
    return Limits(
        kind,
        _number(names[0], connect, float),
        _number(names[1], read, float),
        int(_number(names[2], retries, int)),
    )


def s3_http_client(secure: bool = True):
    """The ``urllib3.PoolManager`` every MinIO client of the library is made with: the ``s3``
    limits, retries on connection errors, read timeouts and 5xx answers; TLS verified against
    ``$SSL_CERT_FILE`` or certifi's bundle (as the MinIO client's own default does)."""
    import certifi
    import urllib3

    lim = limits("s3")
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=lim.connect, read=lim.read),
        retries=urllib3.Retry(
            total=lim.retries,
            connect=lim.retries,
            read=lim.retries,
            status=lim.retries,
            backoff_factor=BACKOFF_FACTOR,
            status_forcelist=S3_RETRY_STATUSES,
            raise_on_status=False,  # the last 5xx answer reaches the client as an S3Error
        ),
        maxsize=10,
        cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def with_request_timeout(api_client, kind: str):
    """Gives every request of an OpenAPI-generated ``ApiClient`` (the ``kubernetes`` package's,
    or ``kfp_server_api``'s under ``kfp.Client``) ``kind``'s ``(connect, read)`` timeout unless
    the call passes its own ``_request_timeout``; returns ``api_client``.

    Those clients send no timeout by default (a request to a hung API server waits forever).
    The limits are read once, here. Idempotent."""
    if getattr(api_client, _MARK, None) is not None:
        return api_client
    lim = limits(kind)
    request = api_client.request

    def timed_request(*args, **kwargs):
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = lim.pair
        return request(*args, **kwargs)

    api_client.request = timed_request
    setattr(api_client, _MARK, lim)
    return api_client


def request_timeout(api_client) -> Limits | None:
    """The limits :func:`with_request_timeout` gave ``api_client``, or None."""
    return getattr(api_client, _MARK, None)


def kubernetes_api_client():
    """A ``kubernetes.client.ApiClient`` on the loaded configuration (call
    ``config.load_*_config`` first) with the ``kubernetes`` limits: urllib3 retries in its
    configuration, the timeout on every request."""
    from kubernetes import client

    configuration = client.Configuration.get_default_copy()
    configuration.retries = limits("kubernetes").retries
    return with_request_timeout(client.ApiClient(configuration), "kubernetes")


def mlflow_env() -> dict[str, str]:
    """Sets MLflow's HTTP timeout and retry variables to Loopline's defaults where unset;
    returns the values in force."""
    for name, value in MLFLOW_DEFAULTS.items():
        if not os.environ.get(name, "").strip():
            os.environ[name] = value
    return {name: os.environ[name] for name in MLFLOW_DEFAULTS}


def aws_env() -> dict[str, str]:
    """Sets botocore's retry variables to Loopline's defaults where unset; returns them."""
    for name, value in AWS_DEFAULTS.items():
        if not os.environ.get(name, "").strip():
            os.environ[name] = value
    return {name: os.environ[name] for name in AWS_DEFAULTS}


def redis_options(connection_string: str) -> str:
    """A Feast Redis ``connection_string`` (``host:port[,key=value...]``) with the ``redis``
    socket timeouts added where it names none (redis-py waits forever by default)."""
    lim = limits("redis")
    given = {part.split("=", 1)[0].strip() for part in connection_string.split(",") if "=" in part}
    extra = [
        f"{key}={value:g}"
        for key, value in (("socket_connect_timeout", lim.connect), ("socket_timeout", lim.read))
        if key not in given
    ]
    return ",".join([connection_string, *extra]) if extra else connection_string
