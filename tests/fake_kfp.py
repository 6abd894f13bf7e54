"""A fake Kubeflow Pipelines API server: the KFP **v2beta1** REST API (what ``kfp.Client``
2.17 and its ``kfp_server_api`` call), in memory, over real HTTP on 127.0.0.1 (stdlib
``http.server`` in a thread), so the real client's requests, bodies and errors are tested.

Endpoints (paths, methods and JSON field names from the installed
``kfp_server_api/api/*.py`` and ``models/*.py``; semantics from the upstream API server):

| endpoint | does |
|---|---|
| ``GET /apis/v2beta1/healthz`` | ``{"multi_user": false, "pipeline_store": "database"}`` |
| ``POST /apis/v2beta1/pipelines/upload`` (multipart ``uploadfile``; query ``name``, ``display_name``, ``description``, ``namespace``) | a pipeline and its first version (named like the pipeline, as upstream); 409 ALREADY_EXISTS for a taken name in the namespace |
| ``POST /apis/v2beta1/pipelines/upload_version`` (multipart; query ``name``, ``display_name``, ``pipelineid``, ``description``) | a version; 404 unknown pipeline, 409 a taken version name |
| ``POST /apis/v2beta1/pipelines`` (``V2beta1Pipeline``) | a pipeline without versions (``CreatePipeline``); 409 as above |
| ``GET /apis/v2beta1/pipelines`` (``namespace``, ``filter``, ``page_token``, ``page_size``, ``sort_by``) | list |
| ``GET /apis/v2beta1/pipelines/{id}``, ``DELETE`` (404 unknown; 400 FAILED_PRECONDITION with versions left unless ``cascade``) | |
| ``GET /apis/v2beta1/pipelines/{id}/versions`` (filter, paging), ``GET .../versions/{vid}`` | |
| ``POST /apis/v2beta1/experiments``, ``GET /apis/v2beta1/experiments`` (filter, namespace, paging), ``GET .../{id}`` | 409 for a taken name in the namespace |
| ``POST /apis/v2beta1/recurringruns`` | checks: experiment and pipeline version exist (404), exactly one trigger, cron parsed (6 fields), interval > 0, max_concurrency 1-10 (400 INVALID_ARGUMENT); ``mode`` ENABLE / DISABLE -> ``status`` ENABLED / DISABLED |
| ``GET /apis/v2beta1/recurringruns`` (``experiment_id``, ``namespace``, ``filter``, paging; answers ``recurringRuns``, the one camelCase key of the API) | |
| ``GET`` / ``DELETE /apis/v2beta1/recurringruns/{id}``, ``POST .../{id}:enable``, ``POST .../{id}:disable`` | 404 unknown |
| ``POST /apis/v2beta1/runs`` (``V2beta1Run``) | checks: experiment exists (404), exactly one of ``pipeline_spec`` and ``pipeline_version_reference`` (400), the version exists (404); ``state`` PENDING, ``state_history`` |
| ``GET /apis/v2beta1/runs/{id}`` | each GET moves the run one step along :attr:`run_states` (default PENDING, RUNNING, SUCCEEDED; the last one stays) and answers it; a FAILED run carries :attr:`run_failure`: the run's ``error`` and a failed task in ``run_details.task_details`` |
| ``GET /apis/v2beta1/runs`` (``experiment_id``, ``namespace``, paging) | list |

Ids are UUIDs, times RFC 3339 (``created_at``), int64 fields echoed as strings (as
grpc-gateway does), errors as ``google.rpc.Status`` JSON (``code``, ``message``, ``details``;
plus KFP's ``error``). ``filter`` is the JSON ``Filter`` proto (``predicates`` with
``operation`` EQUALS / NOT_EQUALS / IN / IS_SUBSTRING by name or number, ``key``,
``string_value`` / ``stringValue`` / ``int_value`` / ...). ``page_token`` is opaque (an offset).

For tests: ``requests`` records each request (method, path, query, JSON body or the
multipart's fields and file, the Authorization header); ``auth_status = 401`` (or 403)
answers every request so; ``token = "t"`` answers 401 to requests without ``Bearer t``;
``fail[(method, path_regex)] = status`` fails matching requests; ``refuse()`` closes the
socket (connections are refused).

Multi-user mode (``multi_user = True``, as Kubeflow's profiles run KFP): healthz says so;
listing or creating experiments and runs needs a namespace (400 INVALID_ARGUMENT, as the
upstream resource manager answers); ``access = {"token": {"ns", ...}}`` authenticates and
authorizes by bearer token as KFP's TokenReview and SubjectAccessReview do: an unknown or
missing token is 401 UNAUTHENTICATED, a namespace the token's identity has no access to
403 PERMISSION_DENIED (the namespace of a request: its ``namespace`` query or body field,
else the experiment, pipeline or run it names; shared pipelines, namespace "", are open to
every authenticated identity).

Not covered: artifacts, the v1beta1 API, pipeline spec validation beyond "a YAML mapping
with a root", run parameters against the spec (the driver checks those on a cluster).
"""

from __future__ import annotations

import base64
import copy
import email.parser
import email.policy
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

API = "/apis/v2beta1"
# google.rpc.Code
CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13}
OPERATIONS = {1: "EQUALS", 2: "NOT_EQUALS", 8: "IN", 9: "IS_SUBSTRING"}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cron_ok(expr: str) -> bool:
    """robfig/cron's 6-field parse, roughly: field count, characters and ranges."""
    if expr.startswith("@"):
        return expr in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                        "@hourly") or bool(re.match(r"^@every \d", expr))  # fmt: skip
    fields = expr.split()
    if len(fields) != 6:
        return False
    limits = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
    for text, (lo, hi) in zip(fields, limits, strict=True):
        for part in text.split(","):
            base = part.split("/")[0]
            if base in ("*", "?"):
                continue
            for number in base.split("-"):
                if number.isdigit():
                    if not lo <= int(number) <= hi:
                        return False
                elif not re.fullmatch(r"[A-Za-z]{3}", number):
                    return False
    return True


class FakeKFP:
    """The fake API server; ``with FakeKFP() as kfp: kfp.url``."""

    def __init__(self):
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        # The states a new run goes through, one per GET; the last one stays.
        self.run_states: list[str] = ["PENDING", "RUNNING", "SUCCEEDED"]
        # What a FAILED run says: {"task": display name, "message": text}.
        self.run_failure: dict[str, str] = {
            "task": "train",
            "message": "task train failed: exit code 1",
        }
        self.access: dict[str, set[str]] | None = None
        self.requests: list[dict] = []
        self.auth_status: int | None = None
        self.token: str | None = None
        self.fail: dict[tuple[str, str], int] = {}
        self.multi_user = False
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                fake._serve(self)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeKFP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def refuse(self) -> None:
        """Stop listening: from now on connections to :attr:`url` are refused."""
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ helpers for tests
    def calls(self, method: str | None = None, path: str | None = None) -> list[dict]:
        """Recorded requests, optionally by method and path (a regex matched in full)."""
        return [
            r
            for r in self.requests
            if (method is None or r["method"] == method)
            and (path is None or re.fullmatch(path, r["path"]))
        ]

    # ------------------------------------------------------------------ HTTP
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        record = {
            "method": h.command,
            "path": url.path,
            "query": query,
            "authorization": h.headers.get("Authorization"),
            "body": None,
        }
        ctype = h.headers.get("Content-Type", "")
        try:
            if ctype.startswith("multipart/form-data"):
                record["body"] = self._multipart(ctype, raw)
            elif raw:
                try:
                    record["body"] = json.loads(raw)
                except ValueError:
                    raise ApiError(400, "the request body is not JSON") from None
            with self._lock:
                self.requests.append(record)
                status, body = self._route(h.command, url.path, query, record)
        except ApiError as exc:
            status = exc.status
            body = {
                "error": exc.message,
                "code": CODES.get(exc.status, 2),
                "message": exc.message,
                "details": [],
            }
        payload = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    @staticmethod
    def _multipart(ctype: str, raw: bytes) -> dict:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw
        )
        out: dict = {"fields": {}, "files": {}}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                out["files"][name] = {
                    "filename": filename,
                    "content": data.decode("utf-8", "replace"),
                }
            else:
                out["fields"][name] = data.decode()
        return out

    def _route(self, method: str, path: str, query: dict, record: dict) -> tuple[int, dict]:
        if self.auth_status:
            raise ApiError(
                self.auth_status, "Unauthorized" if self.auth_status == 401 else "Forbidden"
            )
        if self.token is not None and record["authorization"] != f"Bearer {self.token}":
            raise ApiError(401, "Unauthenticated: no valid bearer token")
        if self.access is not None and path != API + "/healthz":  # healthz: no authn upstream
            self._authorize(method, path, query, record)
        for (m, pattern), status in self.fail.items():
            if m == method and re.fullmatch(pattern, path):
                raise ApiError(status, f"injected failure for {method} {path}")
        # A copy: the log keeps what was sent, whatever the handlers store or change.
        body = copy.deepcopy(record["body"])
        if not path.startswith(API + "/"):
            raise ApiError(404, f"Not Found: {path}")
        rest = path[len(API) :]
        routes = [
            ("GET", r"/healthz", self._healthz),
            ("POST", r"/pipelines/upload", self._upload),
            ("POST", r"/pipelines/upload_version", self._upload_version),
            ("POST", r"/pipelines", self._create_pipeline),
            ("GET", r"/pipelines", self._list_pipelines),
            ("GET", r"/pipelines/(?P<pid>[^/]+)", self._get_pipeline),
            ("DELETE", r"/pipelines/(?P<pid>[^/]+)", self._delete_pipeline),
            ("GET", r"/pipelines/(?P<pid>[^/]+)/versions", self._list_versions),
            ("GET", r"/pipelines/(?P<pid>[^/]+)/versions/(?P<vid>[^/]+)", self._get_version),
            ("POST", r"/experiments", self._create_experiment),
            ("GET", r"/experiments", self._list_experiments),
            ("GET", r"/experiments/(?P<eid>[^/:]+)", self._get_experiment),
            ("POST", r"/recurringruns", self._create_run),
            ("GET", r"/recurringruns", self._list_runs),
            ("GET", r"/recurringruns/(?P<rid>[^/:]+)", self._get_run),
            ("DELETE", r"/recurringruns/(?P<rid>[^/:]+)", self._delete_run),
            ("POST", r"/recurringruns/(?P<rid>[^/:]+):enable", self._enable_run),
            ("POST", r"/recurringruns/(?P<rid>[^/:]+):disable", self._disable_run),
            ("POST", r"/runs", self._create_one_run),
            ("GET", r"/runs", self._list_one_runs),
            ("GET", r"/runs/(?P<run_id>[^/:]+)", self._get_one_run),
        ]
        for m, pattern, handler in routes:
            match = re.fullmatch(pattern, rest)
            if match and m == method:
                return 200, handler(query=query, body=body, **match.groupdict())
        raise ApiError(404, f"Not Found: {method} {path}")

    # ------------------------------------------------------------------ list helpers
    @staticmethod
    def _matches(item: dict, flt: str | None) -> bool:
        if not flt:
            return True
        try:
            predicates = json.loads(flt).get("predicates") or []
        except (ValueError, AttributeError):
            raise ApiError(400, f"Invalid input error: bad filter {flt!r}") from None
        for p in predicates:
            op = p.get("operation", "EQUALS")
            op = OPERATIONS.get(op, op) if isinstance(op, int) else op
            key = p.get("key")
            want = None
            for name in ("string_value", "stringValue", "int_value", "intValue", "long_value",
                         "longValue", "bool_value", "boolValue", "timestamp_value"):  # fmt: skip
                if name in p:
                    want = p[name]
                    break
            have = item.get(key)
            if op == "EQUALS":
                ok = str(have) == str(want)
            elif op == "NOT_EQUALS":
                ok = str(have) != str(want)
            elif op == "IS_SUBSTRING":
                ok = str(want) in str(have or "")
            elif op == "IN":
                values = (p.get("string_values") or p.get("stringValues") or {}).get("values", [])
                ok = str(have) in values
            else:
                raise ApiError(400, f"Invalid input error: unsupported filter operation {op}")
            if not ok:
                return False
        return True

    def _page(self, items: list[dict], query: dict, key: str) -> dict:
        items = [i for i in items if self._matches(i, query.get("filter"))]
        items.sort(key=lambda i: i["created_at"])
        size = int(query.get("page_size") or 0) or 20
        token = query.get("page_token") or ""
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            raise ApiError(400, "Invalid input error: bad page_token") from None
        page = items[start : start + size]
        nxt = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        out: dict = {"total_size": len(items)}
        if page:
            out[key] = page
        if start + size < len(items):
            out["next_page_token"] = nxt
        return out

    @staticmethod
    def _ns_ok(item: dict, query: dict) -> bool:
        ns = query.get("namespace")
        return not ns or item.get("namespace", "") in (ns, "")

    # ------------------------------------------------------------------ healthz
    def _healthz(self, **_):
        return {"multi_user": self.multi_user, "pipeline_store": "database"}

    # ------------------------------------------------------------------ pipelines
    def _new_pipeline(self, name: str, display: str, description: str, namespace: str) -> dict:
        if not (display or name):
            raise ApiError(400, "Invalid input error: pipeline name is empty")
        for p in self.pipelines.values():
            if p["display_name"] == (display or name) and p.get("namespace", "") == namespace:
                raise ApiError(
                    409,
                    f"Already exist error: Failed to create a new pipeline. The name "
                    f"{display or name} already exist. Please specify a new name",
                )
        pipeline = {
            "pipeline_id": str(uuid.uuid4()),
            "name": name or display,
            "display_name": display or name,
            "description": description,
            "created_at": _now(),
            "namespace": namespace,
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        return pipeline

    def _new_version(self, pipeline: dict, name: str, display: str, description: str,
                     spec_text: str) -> dict:  # fmt: skip
        try:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = [d for d in yaml.load_all(spec_text, Loader=loader) if d is not None]
        except yaml.YAMLError as exc:
            raise ApiError(
                400, f"Invalid input error: the pipeline spec is not YAML: {exc}"
            ) from None
        if not docs or not isinstance(docs[0], dict) or "root" not in docs[0]:
            raise ApiError(400, "Invalid input error: not a pipeline spec (no root)")
        name = name or display or pipeline["name"]
        for v in self.versions.values():
            if v["pipeline_id"] == pipeline["pipeline_id"] and v["name"] == name:
                raise ApiError(
                    409,
                    f"Already exist error: Failed to create a new pipeline version. The name "
                    f"{name} already exist. Please specify a new name",
                )
        version = {
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_version_id": str(uuid.uuid4()),
            "name": name,
            "display_name": display or name,
            "description": description,
            "created_at": _now(),
            "pipeline_spec": docs[0],
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    @staticmethod
    def _upload_file(body) -> str:
        files = (body or {}).get("files") or {}
        if "uploadfile" not in files:
            raise ApiError(400, "Invalid input error: no uploadfile in the multipart body")
        return files["uploadfile"]["content"]

    def _upload(self, query, body, **_):
        spec = self._upload_file(body)
        pipeline = self._new_pipeline(
            query.get("name", ""), query.get("display_name", ""), query.get("description", ""),
            query.get("namespace", ""),
        )  # fmt: skip
        try:
            self._new_version(pipeline, pipeline["name"], pipeline["display_name"],
                              pipeline["description"], spec)  # fmt: skip
        except ApiError:
            del self.pipelines[pipeline["pipeline_id"]]
            raise
        return pipeline

    def _upload_version(self, query, body, **_):
        spec = self._upload_file(body)
        pipeline = self.pipelines.get(query.get("pipelineid", ""))
        if pipeline is None:
            raise ApiError(404, f"Not found: pipeline {query.get('pipelineid')!r}")
        version = self._new_version(
            pipeline, query.get("name", ""), query.get("display_name", ""),
            query.get("description", ""), spec,
        )  # fmt: skip
        return version

    def _create_pipeline(self, body, **_):
        body = body or {}
        return self._new_pipeline(body.get("name", ""), body.get("display_name", ""),
                                  body.get("description", ""), body.get("namespace", ""))  # fmt: skip

    def _pipeline(self, pid: str) -> dict:
        if pid not in self.pipelines:
            raise ApiError(404, f"Not found: pipeline {pid}")
        return self.pipelines[pid]

    def _list_pipelines(self, query, **_):
        items = [p for p in self.pipelines.values() if self._ns_ok(p, query)]
        return self._page(items, query, "pipelines")

    def _get_pipeline(self, pid, **_):
        return self._pipeline(pid)

    def _delete_pipeline(self, pid, query, **_):
        self._pipeline(pid)
        mine = [v for v in self.versions.values() if v["pipeline_id"] == pid]
        if mine and query.get("cascade") != "true":
            raise ApiError(400, f"Failed precondition: pipeline {pid} has versions")
        for v in mine:
            del self.versions[v["pipeline_version_id"]]
        del self.pipelines[pid]
        return {}

    def _list_versions(self, pid, query, **_):
        self._pipeline(pid)
        items = [v for v in self.versions.values() if v["pipeline_id"] == pid]
        return self._page(items, query, "pipeline_versions")

    def _get_version(self, pid, vid, **_):
        version = self.versions.get(vid)
        if version is None or version["pipeline_id"] != pid:
            raise ApiError(404, f"Not found: pipeline version {vid}")
        return version

    # ------------------------------------------------------------------ experiments
    def _create_experiment(self, body, **_):
        body = body or {}
        name = body.get("display_name") or ""
        if not name:
            raise ApiError(400, "Invalid input error: experiment name is empty")
        namespace = body.get("namespace") or ""
        if self.multi_user and not namespace:
            raise ApiError(
                400, "Invalid input error: in multi-user mode an experiment needs a namespace"
            )
        for e in self.experiments.values():
            if e["display_name"] == name and e["namespace"] == namespace:
                raise ApiError(409, f"Already exist error: experiment {name} already exists")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "description": body.get("description") or "",
            "created_at": _now(),
            "namespace": namespace,
            "storage_state": "AVAILABLE",
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _list_experiments(self, query, **_):
        if self.multi_user and not query.get("namespace"):
            raise ApiError(
                400,
                "Invalid input error: in multi-user mode, listing experiments needs a namespace",
            )
        items = [e for e in self.experiments.values() if self._ns_ok(e, query)]
        return self._page(items, query, "experiments")

    def _get_experiment(self, eid, **_):
        if eid not in self.experiments:
            raise ApiError(404, f"Not found: experiment {eid}")
        return self.experiments[eid]

    # ------------------------------------------------------------------ runs, both kinds
    def _named_run_experiment(self, body: dict, what: str) -> dict:
        """The experiment a run or recurring run is created in; 400 without a display name,
        404 for an unknown experiment."""
        if not body.get("display_name"):
            raise ApiError(400, f"Invalid input error: the {what} needs a display_name")
        experiment = self.experiments.get(body.get("experiment_id") or "")
        if experiment is None:
            raise ApiError(404, f"Not found: experiment {body.get('experiment_id')!r}")
        return experiment

    def _check_version_reference(self, ref: dict) -> None:
        """404 unless the pipeline version exists (and belongs to the pipeline, if named)."""
        version = self.versions.get(ref.get("pipeline_version_id") or "")
        if version is None or (
            ref.get("pipeline_id") and version["pipeline_id"] != ref["pipeline_id"]
        ):
            raise ApiError(404, f"Not found: pipeline version {ref.get('pipeline_version_id')!r}")

    # ------------------------------------------------------------------ recurring runs
    def _create_run(self, body, **_):
        body = body or {}
        experiment = self._named_run_experiment(body, "recurring run")
        ref = body.get("pipeline_version_reference") or {}
        if ref:
            self._check_version_reference(ref)
        elif not body.get("pipeline_spec"):
            raise ApiError(
                400, "Invalid input error: neither a pipeline version nor a pipeline spec"
            )
        trigger = body.get("trigger") or {}
        cron, periodic = trigger.get("cron_schedule"), trigger.get("periodic_schedule")
        if bool(cron) == bool(periodic):
            raise ApiError(
                400, "Invalid input error: exactly one of cron_schedule and periodic_schedule"
            )
        if cron and not _cron_ok(cron.get("cron", "")):
            raise ApiError(400, f"Invalid input error: invalid cron {cron.get('cron')!r}")
        if periodic:
            try:
                interval = int(periodic.get("interval_second") or 0)
            except ValueError:
                interval = 0
            if interval <= 0:
                raise ApiError(400, "Invalid input error: interval_second must be positive")
            periodic["interval_second"] = str(interval)
        try:
            concurrency = int(body.get("max_concurrency") or 0)
        except ValueError:
            concurrency = 0
        if not 1 <= concurrency <= 10:
            raise ApiError(
                400,
                f"Invalid input error: max concurrency out of range, support 1-10, got {concurrency}",
            )
        mode = body.get("mode") or "ENABLE"
        if mode not in ("ENABLE", "DISABLE"):
            raise ApiError(400, f"Invalid input error: mode {mode!r}")
        now = _now()
        run = {
            **{k: v for k, v in body.items() if v is not None},
            "recurring_run_id": str(uuid.uuid4()),
            "max_concurrency": str(concurrency),
            "mode": mode,
            "status": "ENABLED" if mode == "ENABLE" else "DISABLED",
            "namespace": experiment["namespace"],
            "created_at": now,
            "updated_at": now,
        }
        self.recurring_runs[run["recurring_run_id"]] = run
        return run

    def _run(self, rid: str) -> dict:
        if rid not in self.recurring_runs:
            raise ApiError(404, f"Not found: recurring run {rid}")
        return self.recurring_runs[rid]

    def _list_runs(self, query, **_):
        items = [
            r
            for r in self.recurring_runs.values()
            if self._ns_ok(r, query)
            and (not query.get("experiment_id") or r["experiment_id"] == query["experiment_id"])
        ]
        # The one camelCase key of the v2beta1 API (kfp_server_api's attribute_map).
        return self._page(items, query, "recurringRuns")

    def _get_run(self, rid, **_):
        return self._run(rid)

    def _delete_run(self, rid, **_):
        self._run(rid)
        del self.recurring_runs[rid]
        return {}

    def _set_mode(self, rid: str, enabled: bool) -> dict:
        run = self._run(rid)
        run.update(
            mode="ENABLE" if enabled else "DISABLE",
            status="ENABLED" if enabled else "DISABLED",
            updated_at=_now(),
        )
        return {}

    def _enable_run(self, rid, **_):
        return self._set_mode(rid, True)

    def _disable_run(self, rid, **_):
        return self._set_mode(rid, False)

    # ------------------------------------------------------------------ runs
    def _create_one_run(self, body, **_):
        body = body or {}
        experiment = self._named_run_experiment(body, "run")
        ref = body.get("pipeline_version_reference") or {}
        if bool(ref) == bool(body.get("pipeline_spec")):
            raise ApiError(
                400,
                "Invalid input error: exactly one of pipeline_spec and pipeline_version_reference",
            )
        if ref:
            self._check_version_reference(ref)
        now = _now()
        run = {
            **{k: v for k, v in body.items() if v is not None},
            "run_id": str(uuid.uuid4()),
            "storage_state": "AVAILABLE",
            "created_at": now,
            "scheduled_at": now,
            "state": "PENDING",
            "state_history": [{"update_time": now, "state": "PENDING"}],
            "_namespace": experiment["namespace"],
            "_script": list(self.run_states),
        }
        self.runs[run["run_id"]] = run
        return self._public(run)

    @staticmethod
    def _public(run: dict) -> dict:
        return {k: v for k, v in run.items() if not k.startswith("_")}

    def _get_one_run(self, run_id, **_):
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, f"Not found: run {run_id}")
        script = run["_script"]
        state = script.pop(0) if len(script) > 1 else script[0]
        if state != run["state"]:
            now = _now()
            run["state"] = state
            run["state_history"].append({"update_time": now, "state": state})
            if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
                run["finished_at"] = now
            if state == "FAILED":
                failure = self.run_failure
                run["error"] = {"code": 2, "message": failure["message"], "details": []}
                run["run_details"] = {
                    "task_details": [
                        {"run_id": run_id, "task_id": str(uuid.uuid4()),
                         "display_name": run["display_name"], "state": "FAILED"},
                        {"run_id": run_id, "task_id": str(uuid.uuid4()), "display_name": "ingest",
                         "state": "SUCCEEDED"},
                        {"run_id": run_id, "task_id": str(uuid.uuid4()),
                         "display_name": failure["task"], "state": "FAILED",
                         "error": {"code": 2, "message": failure["message"], "details": []}},
                    ]
                }  # fmt: skip
        return self._public(run)

    def _list_one_runs(self, query, **_):
        if self.multi_user and not query.get("namespace") and not query.get("experiment_id"):
            raise ApiError(
                400, "Invalid input error: in multi-user mode, listing runs needs a namespace"
            )
        items = [
            self._public(r)
            for r in self.runs.values()
            if (not query.get("namespace") or r["_namespace"] == query["namespace"])
            and (not query.get("experiment_id") or r["experiment_id"] == query["experiment_id"])
        ]
        return self._page(items, query, "runs")

    # ------------------------------------------------------------------ authorization
    def _namespace_of(self, path: str, query: dict, body) -> str | None:
        """The namespace a request acts in (None: no namespace, e.g. healthz)."""
        if query.get("namespace"):
            return query["namespace"]
        if isinstance(body, dict) and body.get("namespace"):
            return body["namespace"]
        if isinstance(body, dict) and body.get("experiment_id"):
            experiment = self.experiments.get(body["experiment_id"])
            return experiment["namespace"] if experiment else None
        rest = path[len(API) :]
        for pattern, table, key in (
            (r"/experiments/([^/:]+)", self.experiments, "namespace"),
            (r"/runs/([^/:]+)", self.runs, "_namespace"),
            (r"/pipelines/([^/]+)(/.*)?", self.pipelines, "namespace"),
        ):
            match = re.fullmatch(pattern, rest)
            if match and match.group(1) in table:
                return table[match.group(1)].get(key, "")
        if query.get("pipelineid") in self.pipelines:
            return self.pipelines[query["pipelineid"]].get("namespace", "")
        if query.get("experiment_id") in self.experiments:
            return self.experiments[query["experiment_id"]]["namespace"]
        return None

    def _authorize(self, method: str, path: str, query: dict, record: dict) -> None:
        header = record["authorization"] or ""
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        if token is None or token not in self.access:
            raise ApiError(401, "Unauthenticated: the bearer token is missing or not valid")
        namespace = self._namespace_of(path, query, record["body"])
        if namespace and namespace not in self.access[token]:
            raise ApiError(
                403,
                f"PermissionDenied: the identity of this token has no access to namespace "
                f"{namespace} ({method} {path})",
            )

    # ------------------------------------------------------------------ views for tests
    def enabled_runs(self, display_name: str | None = None) -> list[dict]:
        return [
            r
            for r in self.recurring_runs.values()
            if r["status"] == "ENABLED"
            and (display_name is None or r["display_name"] == display_name)
        ]
