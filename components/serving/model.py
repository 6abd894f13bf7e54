"""The Loopline model: a ``kserve.Model`` that serves one registry version.

``load()`` fetches the version, verifies it against the registry's record before anything is
deserialized (a mismatch leaves the model not ready: ``/v2/models/NAME/ready`` answers 503
and the reason is logged), builds the request schema, and chooses the predict path by
measurement (``components.lib.fastpath``: the compiled path only if it agrees with
scikit-learn on the version's check rows). ``predict()`` validates the request
(:mod:`components.serving.validation`; a bad request is a 4xx naming the field and the server
keeps serving), predicts, hands the rows to the capture (never blocking), and answers V1 or V2
with the request id.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import kserve
import numpy as np
import orjson
from kserve.errors import InferenceError
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from components.lib import artifacts, fastpath, storage

from . import app, loading, lookup, metrics, validation
from .validation import RequestError

log = logging.getLogger("loopline.serving")


@dataclass(frozen=True)
class Faults:
    """Fault injection, for tests and demos only (``--fault_*``; off by default, and no manifest
    sets them): a rollout test makes a challenger bad with them."""

    error_rate: float = 0.0  # this share of inference requests: 500, kind internal
    latency_ms: float = 0.0  # added to every inference request (app.Guard, without blocking)
    prediction_shift: float = 0.0  # added to every regression prediction

    def __post_init__(self):
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"--fault_error_rate {self.error_rate} is not in [0, 1]")
        if self.latency_ms < 0:
            raise ValueError(f"--fault_latency_ms {self.latency_ms} is negative")

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.prediction_shift)


@dataclass
class Options:
    """The server's settings (``python -m components.serving --help`` documents each)."""

    model_dir: str
    manifest_sha256: str = ""
    registry_uri: str = ""
    model_version: str = ""
    fast_path: str = "auto"  # auto | off
    max_batch_rows: int = validation.DEFAULT_MAX_ROWS
    max_body_bytes: int = 1 << 20
    s3_endpoint: str = ""
    s3_secure: bool = False
    prediction_buckets: tuple[float, ...] = ()
    capture_uri: str = ""
    capture_batch_rows: int = 1000
    capture_flush_seconds: float = 5.0
    capture_drop: tuple[str, ...] = ()
    capture_hash: tuple[str, ...] = ()
    capture_hash_salt: str = field(default="", repr=False)
    # The Feast feature server (``feast serve``) for requests that carry only the entity and
    # the time; empty: off (every model input is required, as before).
    feature_server_url: str = ""
    feature_server_timeout: float = 1.0
    feature_entity_default: str = ""
    feature_calendar: str = "server"  # server | local (the on-demand view computed here)
    faults: Faults = field(default_factory=Faults)


class LooplineModel(kserve.Model):
    def __init__(self, name: str, options: Options):
        super().__init__(name, return_response_headers=True)
        self.options = options
        self.version = options.model_version
        self.loaded: loading.LoadedModel | None = None
        self.predictor = None
        self.path_report: dict = {}
        self.failure = ""
        self._capture = None
        self._capture_pid = None
        self._fault_random = random.Random()
        self.lookup: lookup.FeatureLookup | None = None
        app.install(options.max_body_bytes)
        if options.faults.active:
            log.warning("FAULT INJECTION ON (tests and demos only): %s", options.faults)

    # KServe pickles the model into each worker process (workers > 1): the capture (a thread)
    # is made again in the process that serves.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_capture"] = None
        state["_capture_pid"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        app.install(self.options.max_body_bytes)
        self._labels()

    def _labels(self) -> None:
        app.LABELS.update(model=self.name, version=self.version)
        app.MODELS[self.name] = self
        app.FAULT_LATENCY_S = self.options.faults.latency_ms / 1000.0

    # ------------------------------------------------------------------ load

    def load(self) -> bool:
        began = time.monotonic()
        opts = self.options
        try:
            manifest = opts.manifest_sha256
            if opts.registry_uri:
                if not opts.model_version:
                    raise artifacts.IntegrityError("--registry_uri needs --model_version")
                recorded, _source = loading.record_from_registry(
                    opts.registry_uri, self.name, opts.model_version
                )
                if manifest and manifest != recorded:
                    raise artifacts.IntegrityError(
                        f"--manifest_sha256 {manifest} is not the registry's record {recorded} "
                        f"for {self.name} version {opts.model_version}"
                    )
                manifest = recorded
            if not manifest:
                raise artifacts.IntegrityError(
                    "no record to verify the model against: give --manifest_sha256 or "
                    "--registry_uri with --model_version"
                )
            self.version = opts.model_version or f"sha-{manifest[:12]}"
            self._labels()
            dest = tempfile.mkdtemp(prefix="loopline-model-")
            directory = loading.fetch(opts.model_dir, dest, opts.s3_endpoint, opts.s3_secure)
            self.loaded = loading.load(
                directory,
                manifest,
                max_rows=opts.max_batch_rows,
                prediction_buckets=opts.prediction_buckets,
            )
        except (
            artifacts.ArtifactError,
            storage.StorageError,
            validation.SchemaError,
            OSError,
        ) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            self.ready = False
            metrics.MODEL_READY.labels(self.name, self.version or "").set(0)
            log.error("model %s NOT loaded, staying not ready: %s", self.name, self.failure)
            return False
        except Exception as exc:  # a registry that cannot be reached, a broken file
            self.failure = f"{type(exc).__name__}: {exc}"
            self.ready = False
            log.error("model %s NOT loaded, staying not ready: %s", self.name, self.failure)
            return False
        self._choose_path()
        if opts.feature_server_url:
            self.lookup = lookup.FeatureLookup(
                url=opts.feature_server_url,
                inputs=self.loaded.inputs,
                timeout_s=opts.feature_server_timeout,
                default_entity=opts.feature_entity_default,
                calendar=opts.feature_calendar,
                labels={"model": self.name, "version": self.version},
            )
            self.loaded.schema = dataclasses.replace(
                self.loaded.schema, lookup_entity=self.lookup.entity
            )
            for outcome in ("ok", "missing", "timeout", "unreachable", "error"):
                metrics.LOOKUPS.labels(self.name, self.version, outcome)
            metrics.LOOKUP_LATENCY.labels(self.name, self.version)
            log.info("feature lookup on: %s", self.lookup.describe())
            if self.lookup.unavailable:
                log.warning(
                    "the feature store has no %s: lookup requests will be refused",
                    ", ".join(self.lookup.unavailable),
                )
        if self.loaded.task == "regression":
            metrics.prediction_histogram(self.loaded.prediction_buckets)
        metrics.MODEL_INFO.labels(
            self.name, self.version, self.path_report["path"], self.loaded.manifest_sha256
        ).set(1)
        metrics.MODEL_READY.labels(self.name, self.version).set(1)
        # The series a rollout's gates read exist from the start, at 0: a version that has
        # served nothing yet answers "0 requests", not "no data" (rate() needs two samples).
        for protocol in ("v1", "v2"):
            metrics.REQUESTS.labels(self.name, self.version, protocol, "200")
            metrics.REQUESTS.labels(self.name, self.version, protocol, "500")
            metrics.LATENCY.labels(self.name, self.version, protocol)
        metrics.ERRORS.labels(self.name, self.version, "internal")
        metrics.ROWS.labels(self.name, self.version)
        if self.loaded.task == "regression":
            metrics.prediction_histogram(self.loaded.prediction_buckets).labels(
                self.name, self.version
            )
        # Everything loaded so far lives as long as the process: keep it out of the garbage
        # collector's scans (a full collection over the model's objects is a latency spike).
        gc.collect()
        gc.freeze()
        self.ready = True
        log.info(
            "model %s version %s ready in %.2f s: verified manifest %s, %d input columns, "
            "predict path %s (%s)",
            self.name,
            self.version,
            time.monotonic() - began,
            self.loaded.manifest_sha256[:12],
            len(self.loaded.inputs),
            self.path_report["path"],
            self.path_report.get("reason", ""),
        )
        return True

    def _choose_path(self) -> None:
        loaded = self.loaded
        if self.options.fast_path == "off":
            self.predictor = fastpath.SklearnPath(loaded.pipeline)
            self.path_report = {"path": "sklearn", "reason": "--fast_path off"}
        elif loaded.check_rows is None:
            self.predictor = fastpath.SklearnPath(loaded.pipeline)
            self.path_report = {
                "path": "sklearn",
                "reason": "this version has no check rows to compare a fast path on",
            }
        else:
            self.predictor, self.path_report = fastpath.choose(
                loaded.pipeline, loaded.check_rows[list(loaded.inputs)], loaded.task
            )

    # ------------------------------------------------------------------ metadata

    def get_input_types(self) -> list[dict]:
        if self.loaded is None:
            return []
        kinds = {"float": "FP64", "int": "INT64", "string": "BYTES"}
        return [
            {"name": c, "datatype": kinds[self.loaded.schema.columns[c].type], "shape": [-1]}
            for c in self.loaded.inputs
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": "predict", "datatype": self._output_datatype(), "shape": [-1]}]

    def _output_datatype(self) -> str:
        if self.loaded is None or self.loaded.task == "regression":
            return "FP64"
        classes = getattr(self.loaded.pipeline, "classes_", np.array([]))
        return "INT64" if classes.dtype.kind in "iub" else "BYTES"

    # ------------------------------------------------------------------ predict

    def capture(self):
        """This process's capture (made on first use; None when capture is off)."""
        opts = self.options
        if not opts.capture_uri:
            return None
        if self._capture is None or self._capture_pid != os.getpid():
            from .capture import Capture

            self._capture = Capture(
                uri=opts.capture_uri,
                model_name=self.name,
                model_version=self.version,
                endpoint=opts.s3_endpoint,
                secure=opts.s3_secure,
                batch_rows=opts.capture_batch_rows,
                flush_seconds=opts.capture_flush_seconds,
                drop_columns=opts.capture_drop,
                hash_columns=opts.capture_hash,
                hash_salt=opts.capture_hash_salt,
            )
            self._capture.start()
            self._capture_pid = os.getpid()
        return self._capture

    async def predict(self, payload, headers=None, response_headers=None):
        """KServe's path (V1; V2 with the binary tensor extension or from gRPC)."""
        received = time.time()
        headers = headers or {}
        if isinstance(payload, bytes | str):  # a V1 body sent without a JSON content type
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                payload = _lenient_json(payload, exc)
        if isinstance(payload, InferRequest):
            rows = self.loaded.schema.from_v2(payload.inputs, payload.parameters)
            request_id = payload.id or headers.get("x-request-id") or uuid.uuid4().hex
        elif isinstance(payload, dict):
            rows = self.loaded.schema.from_v1(payload)
            request_id = (
                headers.get("x-request-id") or str(payload.get("id") or "") or uuid.uuid4().hex
            )
        else:
            raise RequestError(
                "request body must be a V2 inference request or a V1 {'instances': [...]} object",
                kind="body",
            )
        if rows.lookup:
            await self.complete(rows, received, headers.get("x-event-time"))
        predicted, ids = self.serve(rows, request_id, received, headers.get("x-event-time"))
        if response_headers is not None:
            response_headers["x-request-id"] = request_id
        values = predicted.tolist()
        if isinstance(payload, InferRequest):
            datatype = self._output_datatype()
            if datatype == "BYTES":
                values = [str(v) for v in values]
            out = InferOutput(name="predict", shape=[rows.n], datatype=datatype, data=values)
            params = {"request_ids": ",".join(ids)} if rows.n > 1 else None
            return InferResponse(
                response_id=request_id,
                model_name=self.name,
                model_version=self.version,
                infer_outputs=[out],
                parameters=params,
            )
        answer = {"predictions": values, "request_id": request_id, "model_version": self.version}
        if rows.n > 1:
            answer["request_ids"] = ids
        return answer

    async def infer_v2_json(self, body: bytes, headers: dict[str, str]) -> tuple[dict, str]:
        """The V2 JSON fast lane (:class:`components.serving.app.Guard` calls it for
        ``POST /v2/models/NAME/infer`` with a JSON body): the same validation, predict and
        capture as :meth:`predict`, without FastAPI's and KServe's per-request objects.
        Returns the response body (the Open Inference Protocol's) and the request id."""
        received = time.time()
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            request = _lenient_json(body, exc)
        if not isinstance(request, dict):
            raise RequestError("request body: a V2 inference request is a JSON object", kind="body")
        inputs = request.get("inputs")
        if not isinstance(inputs, list):
            raise RequestError("request body: field inputs: must be a list of inputs", kind="body")
        for i, item in enumerate(inputs):
            if not isinstance(item, dict):
                raise RequestError(
                    f"request body: field inputs.{i}: must be an object", kind="body"
                )
            for key in ("name", "shape", "datatype", "data"):
                if key not in item:
                    raise RequestError(
                        f"request body: field inputs.{i}.{key}: required", kind="body"
                    )
        parameters = request.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RequestError("request body: field parameters: must be an object", kind="body")
        rows = self.loaded.schema.from_v2(inputs, parameters)
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise RequestError("request body: field id: must be a string", kind="body")
        request_id = request_id or headers.get("x-request-id") or uuid.uuid4().hex
        if rows.lookup:
            await self.complete(rows, received, headers.get("x-event-time"))
        predicted, ids = self.serve(rows, request_id, received, headers.get("x-event-time"))
        datatype = self._output_datatype()
        values = predicted.tolist()
        if datatype == "BYTES":
            values = [str(v) for v in values]
        return {
            "model_name": self.name,
            "model_version": self.version,
            "id": request_id,
            "parameters": {"request_ids": ",".join(ids)} if rows.n > 1 else None,
            "outputs": [
                {
                    "name": "predict",
                    "shape": [rows.n],
                    "datatype": datatype,
                    "parameters": None,
                    "data": values,
                }
            ],
        }, request_id

    async def complete(
        self, rows: validation.Rows, received: float, event_header: str | None
    ) -> None:
        """A request that carried only the entity and the time: its model inputs from the
        feature server, checked like a client's; the entity and the time join the captured
        row. The time: per row ``event_time``, else ``parameters.event_time`` / V1
        ``event_time`` / the ``x-event-time`` header, else the time the request arrived."""
        if self.lookup is None:  # the schema marks lookups only when it is on
            raise RequestError("feature lookup is off", kind="missing_column")
        if rows.event_times is None and event_header:
            rows.event_times = [
                validation.parse_event_time("header x-event-time", event_header)
            ] * rows.n
        times = [received if t is None else t for t in (rows.event_times or [None] * rows.n)]
        rows.event_times = times
        entities = rows.entities
        if not entities and self.lookup.default_entity:
            entities = [self.lookup.default_entity] * rows.n
            rows.extras[self.lookup.entity] = np.array(entities, dtype=object)
        values = await self.lookup.fetch(entities, times)
        where = f"{self.lookup.entity}={entities[0]!r} at {lookup._iso(times[0])}"
        self.loaded.schema.complete(rows, values, where + (" (row 0..)" if rows.n > 1 else ""))

    def serve(
        self, rows: validation.Rows, request_id: str, received: float, event_header: str | None
    ) -> tuple[np.ndarray, list[str]]:
        """Predicts validated rows, records metrics and hands them to the capture."""
        if rows.event_times is None and event_header:
            rows.event_times = [
                validation.parse_event_time("header x-event-time", event_header)
            ] * rows.n
        faults = self.options.faults
        if faults.error_rate and self._fault_random.random() < faults.error_rate:
            raise InferenceError(
                f"fault injected (--fault_error_rate {faults.error_rate}); request id {request_id}"
            )
        try:
            predicted = np.asarray(self.predictor.predict(rows.columns))
        except Exception as exc:
            log.exception("predict failed on a validated request %s", request_id)
            raise InferenceError(
                f"the model failed on this request ({type(exc).__name__}); request id {request_id}"
            ) from exc
        if faults.prediction_shift and self.loaded.task == "regression":
            predicted = predicted + faults.prediction_shift
        ids = rows.request_ids or (
            [request_id] if rows.n == 1 else [f"{request_id}-{i}" for i in range(rows.n)]
        )
        self._observe(predicted)
        capture = self.capture()
        if capture is not None:
            capture.record(
                {**rows.columns, **rows.extras}, predicted, ids, received, rows.event_times
            )
        return predicted, ids

    def _observe(self, predicted: np.ndarray) -> None:
        metrics.ROWS.labels(self.name, self.version).inc(len(predicted))
        if self.loaded.task == "regression":
            hist = metrics.prediction_histogram(self.loaded.prediction_buckets).labels(
                self.name, self.version
            )
            for value in predicted.tolist():
                hist.observe(value)
        else:
            for value in predicted.tolist():
                metrics.CLASSES.labels(self.name, self.version, str(value)).inc()

    def stop(self):
        if self._capture is not None:
            self._capture.close()


def _lenient_json(body, error) -> object:
    """A body orjson refused: parsed again by the standard library, which takes the NaN and
    Infinity that JavaScript and Python clients send, so that validation names the column;
    anything else is not JSON."""
    import json

    try:
        return json.loads(body)
    except ValueError:
        raise RequestError(f"request body is not valid JSON ({error})", kind="body") from None


class ReadyDataPlane(DataPlane):
    """Server readiness (``/v2/health/ready``) = every registered model ready; KServe's own
    answers ready regardless of the models."""

    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        return bool(models) and all(m.ready for m in models)
