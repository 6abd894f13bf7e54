"""``python -m components.serving``: KServe's ModelServer with the Loopline model.

In the style of KServe's sklearnserver: KServe's own arguments (``--http_port``,
``--workers``, ``--model_name``, ...) plus ours. A model that fails verification is
registered anyway and stays not ready (``/v2/models/NAME/ready`` answers 503, the log says
why), so the pod never serves it and the reason is visible; nothing else is served.
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("loopline.serving")


def _list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(p) for p in _list(text))


def build_parser(parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        parents=[parent], description="Serve one Loopline registry version (V1 and V2 REST)"
    )
    parser.add_argument(
        "--model_dir",
        required=True,
        help="the version's MLflow model directory: a path or s3://bucket/prefix",
    )
    parser.add_argument(
        "--manifest_sha256",
        default="",
        help="the registry's record of the version (its manifest sha256)",
    )
    parser.add_argument(
        "--registry_uri",
        default="",
        help="MLflow tracking URI: read the record from the registry instead",
    )
    parser.add_argument(
        "--model_version",
        default="",
        help="the registry version served (a label on metrics and captured rows)",
    )
    parser.add_argument(
        "--fast_path",
        choices=("auto", "off"),
        default="auto",
        help="auto: the compiled path when it agrees with scikit-learn on the check rows",
    )
    parser.add_argument(
        "--max_batch_rows", type=int, default=1000, help="rows per request at most (413 above)"
    )
    parser.add_argument(
        "--max_body_bytes", type=int, default=1 << 20, help="request body bytes at most (413 above)"
    )
    parser.add_argument(
        "--s3_endpoint",
        default=os.environ.get("S3_ENDPOINT", os.environ.get("AWS_ENDPOINT_URL", "")),
        help="host:port of the S3 API (default: $S3_ENDPOINT or $AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--s3_secure", action="store_true", help="reach the S3 API over TLS")
    parser.add_argument(
        "--prediction_buckets",
        type=_floats,
        default=(),
        help="bucket edges of the prediction histogram (default: 25 bins over the target's schema range)",
    )
    parser.add_argument(
        "--capture_uri",
        default="",
        help="where captured rows go: s3://bucket/prefix or a folder; empty: no capture",
    )
    parser.add_argument("--capture_batch_rows", type=int, default=1000)
    parser.add_argument("--capture_flush_seconds", type=float, default=5.0)
    parser.add_argument(
        "--capture_drop",
        type=_list,
        default=(),
        help="columns left out of the capture (comma-separated)",
    )
    parser.add_argument(
        "--capture_hash",
        type=_list,
        default=(),
        help="columns captured as salted sha256 (salt: $LOOPLINE_CAPTURE_SALT)",
    )
    parser.add_argument(
        "--feature_server_url",
        default="",
        help="the Feast feature server (feast serve), http://host:port: a request with only the "
        "entity (city) and the time gets the model's inputs from the online store; empty: off",
    )
    parser.add_argument(
        "--feature_server_timeout",
        type=float,
        default=1.0,
        help="seconds for one feature server call (503 after)",
    )
    parser.add_argument(
        "--feature_entity_default",
        default="",
        help="the entity value when a lookup request names none (e.g. washington_dc); empty: "
        "the request must name it",
    )
    parser.add_argument(
        "--feature_calendar",
        choices=("server", "local"),
        default="server",
        help="server: the on-demand calendar view computed by the feature server; local: only "
        "the weather from the feature server, the calendar computed here (same rules, faster)",
    )
    # Fault injection: for tests and demos only (a rollout test makes a challenger bad with
    # them); off by default, and no manifest sets them.
    faults = parser.add_argument_group("fault injection (tests and demos only)")
    faults.add_argument(
        "--fault_error_rate",
        type=float,
        default=0.0,
        help="TESTS ONLY: this share (0..1) of inference requests is answered 500 (kind internal)",
    )
    faults.add_argument(
        "--fault_latency_ms",
        type=float,
        default=0.0,
        help="TESTS ONLY: milliseconds added to every inference request (not blocking others)",
    )
    faults.add_argument(
        "--fault_prediction_shift",
        type=float,
        default=0.0,
        help="TESTS ONLY: added to every regression prediction",
    )
    return parser


def main() -> None:
    # One thread per worker for scikit-learn's and numpy's native code (set before they load):
    # a one-row predict on OpenMP's thread pool was 10x slower here (bench/serving.py), and
    # the server scales by workers and replicas, not threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import kserve
    from kserve import model_server

    from components.lib import logs

    from .model import Faults, LooplineModel, Options, ReadyDataPlane

    # KServe configures its own loggers; ours get one handler, not the root's.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(logs.FORMAT))
    ours = logging.getLogger("loopline")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.INFO)
    ours.propagate = False

    args, _ = build_parser(model_server.parser).parse_known_args()
    options = Options(
        model_dir=args.model_dir,
        manifest_sha256=args.manifest_sha256,
        registry_uri=args.registry_uri,
        model_version=args.model_version,
        fast_path=args.fast_path,
        max_batch_rows=args.max_batch_rows,
        max_body_bytes=args.max_body_bytes,
        s3_endpoint=args.s3_endpoint,
        s3_secure=args.s3_secure,
        prediction_buckets=args.prediction_buckets,
        capture_uri=args.capture_uri,
        capture_batch_rows=args.capture_batch_rows,
        capture_flush_seconds=args.capture_flush_seconds,
        capture_drop=args.capture_drop,
        capture_hash=args.capture_hash,
        capture_hash_salt=os.environ.get("LOOPLINE_CAPTURE_SALT", ""),
        feature_server_url=args.feature_server_url,
        feature_server_timeout=args.feature_server_timeout,
        feature_entity_default=args.feature_entity_default,
        feature_calendar=args.feature_calendar,
        faults=Faults(
            error_rate=args.fault_error_rate,
            latency_ms=args.fault_latency_ms,
            prediction_shift=args.fault_prediction_shift,
        ),
    )
    model = LooplineModel(args.model_name, options)
    model.load()
    server = kserve.ModelServer()
    server.dataplane = ReadyDataPlane(model_registry=server.registered_models)
    # Registered even when not ready: the ready endpoints answer 503 instead of the process
    # exiting (KServe's start() refuses to run with no ready model).
    server.register_model(model)
    server.start([])


if __name__ == "__main__":
    main()
