"""KServe's traffic layer on one machine, with real parts: :class:`LocalDeployment`.

The :class:`components.lib.deployment.Deployment` a progressive rollout (canary, blue-green,
shadow) drives, made of what runs on a cluster's behalf here:

* **serving containers**, one per :class:`ModelRef` (the serving image with the
  ServingRuntime's arguments, :func:`pipelines.local_serving.start`): the stable version's,
  and the candidate's from :meth:`start_candidate` until :meth:`promote` or
  :meth:`rollback`. A local ``storage_uri`` is copied into the work folder and mounted at
  ``/mnt/models`` (KServe's storage initializer does the same from S3); an ``s3://`` one is
  fetched by the server with ``environment``'s credentials.
* **Debian's nginx** as the route (the Knative route / Istio VirtualService): one port for
  clients (:attr:`url`) split between the stable and candidate upstreams by the weights,
  every request mirrored to the candidate when ``mirror`` is on (the client gets the stable
  answer; the mirror's is discarded), the candidate alone on a second port
  (:meth:`candidate_url`, blue-green's tagged route) and the stable version alone on a third
  (:meth:`stable_url`). A change of weights rewrites ``nginx.conf`` and reloads it
  gracefully (``nginx -s reload``; old workers finish their requests), waiting until the old
  workers are gone before a container behind them is stopped. The client's ``x-request-id``
  is passed through, or nginx's ``$request_id`` set when it sent none, the same on the
  mirrored copy (so a shadow's predictions join the champion's on request id).

  The split is a weighted upstream (nginx's smooth weighted round robin, one worker):
  exactly ``percent`` of every 100 consecutive requests go to the candidate. ``split_clients``
  on ``$request_id`` hashes a random id instead, a binomial draw (1.3 points standard
  deviation at 1,000 requests for 20%), which is what Istio's weighted clusters do on a
  cluster; the exact split keeps tests' tolerances honest and small. Retries to the other
  upstream are off (``proxy_next_upstream off``): a failing candidate fails its requests,
  as it would behind Knative, instead of being hidden.
* **Debian's prometheus** as a process scraping every serving container's ``/metrics``
  (file-based service discovery, rewritten on every change; ``/-/reload``), so the gates' PromQL
  (``sum by (version) (rate(loopline_requests_total{model="bikeshare"}[30s]))``) answers per
  version at :attr:`prometheus_url`. Targets carry ``rollout_role`` (stable / candidate).
* **the state file** (``state.json`` in the work folder) plays the InferenceService's part:
  the stable and candidate versions, the candidate's percent, mirror, the
  ``loopline.io/rollout-*`` annotations, and what runs for them (container ids, ports, pids).
  A new :class:`LocalDeployment` on the same folder (a resumed rollout) reads it and
  reattaches to the running containers, nginx and prometheus, or restarts what is missing.

Logs go to ``logs/`` in the work folder: ``nginx-access.log`` (one line per request and per
mirrored copy: port, status, request id, upstream), ``nginx-error.log``, ``prometheus.log``
and ``serving-<version>-<role>.log`` (a container's log, written when it stops or fails).
Captured predictions (every served and mirrored request) go to ``capture/``.

``close()`` (or leaving the ``with`` block) stops everything; the state file stays.

How it maps to KServe (``components/lib/inferenceservice.py`` drives the cluster's side):

=====================================  ====================================================
here                                   on a cluster
=====================================  ====================================================
``state.json``                         the InferenceService (spec: predictor and canary
                                       revisions, ``canaryTrafficPercent``; the
                                       ``loopline.io/rollout-*`` annotations; status)
a serving container per version        a revision's predictor pod (same image and arguments)
copy into ``models/``, mounted         the storage initializer downloading ``storageUri``
nginx's client port, weighted split    the Knative route / Istio VirtualService weights
nginx ``mirror``                       Istio's ``mirror`` (shadow traffic)
candidate / stable ports               the ``latest`` / ``prev`` tagged routes
``nginx -s reload``                    the route's reconfiguration (Envoy drains too)
prometheus with file_sd targets        Prometheus scraping the pods (the ServingRuntime's
                                       ``prometheus.kserve.io`` annotations)
=====================================  ====================================================

Differences worth knowing: the split here is exact per 100 requests where Istio's is a
random draw per request; client connections are not kept alive (nginx's graceful reload
closes idle keep-alive connections, and a request sent on one in that instant is reset:
seen once in 1,650 requests across three reloads before ``keepalive_timeout 0``); a new
container's series reach Prometheus only after its scrape manager applies the new targets
(up to 5 s), so every step waits until Prometheus scrapes each serving container.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from components import _images
from components.lib.deployment import ANNOTATION_PREFIX, DeploymentError, ModelRef, Traffic
from pipelines import local_serving
from pipelines.local_s3 import free_port

NGINX = "/usr/sbin/nginx"
PROMETHEUS = "/usr/bin/prometheus"
STATE_FILE = "state.json"
LABEL = "loopline.io/local-rollout"  # container label: the work folder
ROLE_LABEL = "loopline.io/local-rollout-role"
ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int | None, marker: str) -> bool:
    """Whether process ``pid`` runs and its command line contains ``marker``."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return marker in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[1] == str(pid) and fields[0] != "Z":
                out.add(int(entry.name))
    return out


def shadow_agreement(
    capture_dir: str | Path,
    stable: str,
    candidate: str,
    since: float = 0.0,
    tolerance: float = 1.0,
    min_pairs: int = 20,
) -> float | None:
    """A shadow's agreement with the stable version: the share of mirrored requests whose
    candidate prediction is within ``tolerance`` of the stable one, the two versions' captured
    rows (``capture_dir``, files written since ``since``, epoch seconds) joined on request id
    (nginx gives the mirrored copy the same id). None under ``min_pairs`` joined requests (the
    gate is then inconclusive). The value of a ``shadow_agreement`` gate's probe."""
    import pandas as pd

    frames = []
    for path in Path(capture_dir).rglob("*.parquet"):
        with contextlib.suppress(OSError, ValueError):  # a file being written: the next check
            if path.stat().st_mtime >= since:
                frames.append(
                    pd.read_parquet(path, columns=["request_id", "model_version", "prediction"])
                )
    if not frames:
        return None
    rows = pd.concat(frames)
    by_version = {
        v: rows[rows["model_version"] == v].drop_duplicates("request_id")
        for v in (stable, candidate)
    }
    joined = by_version[stable].merge(
        by_version[candidate], on="request_id", suffixes=("_stable", "_candidate")
    )
    if len(joined) < min_pairs:
        return None
    gap = (joined["prediction_stable"] - joined["prediction_candidate"]).abs()
    return float((gap <= tolerance).mean())


def _ref(data: dict | None) -> ModelRef | None:
    if not data:
        return None
    return ModelRef(**{k: data[k] for k in ("name", "version", "storage_uri", "manifest_sha256")})


class LocalDeployment:
    """The :class:`~components.lib.deployment.Deployment` protocol on this machine (see the
    module's docstring). ``with LocalDeployment(folder) as d: d.deploy(ref) ...``

    Args:
        workdir: The work folder: state file, nginx prefix, prometheus data, logs, capture.
        environment: The serving containers' environment (S3 endpoint and credentials for
            ``s3://`` storage URIs).
        extra_args: Version -> more server arguments for that version's container, e.g. the
            test-only ``--fault_error_rate 0.5`` that makes a challenger bad.
        scrape_interval: Prometheus' scrape (and rule evaluation) interval.
        capture: Capture every prediction to ``workdir/capture`` (a folder the containers
            write to; flushed every second).
        code_dir: Mount this checkout's ``components/`` over the image's (tests run the code
            under test in the image's environment without rebuilding it); None: the image's.
        image: The serving image.
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        environment: Mapping[str, str] | None = None,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        scrape_interval: str = "1s",
        capture: bool = True,
        code_dir: str | Path | None = None,
        image: str = _images.SERVING_IMAGE,
        ready_timeout: float = 120.0,
        progress: Callable[[str], None] = lambda line: None,
    ):
        self.workdir = Path(workdir).resolve()
        self.environment = dict(environment or {})
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.scrape_interval = scrape_interval
        self.capture = capture
        self.code_dir = Path(code_dir).resolve() if code_dir else None
        self.image = image
        self.ready_timeout = ready_timeout
        self.progress = progress
        self.logs = self.workdir / "logs"
        self.capture_dir = self.workdir / "capture"
        for folder in (
            self.workdir,
            self.logs,
            self.workdir / "nginx" / "tmp",
            self.workdir / "prometheus",
        ):
            folder.mkdir(parents=True, exist_ok=True)
        if capture:
            self.capture_dir.mkdir(exist_ok=True)
            self.capture_dir.chmod(0o777)  # the containers' user (uid 1000) writes here
        self.state = self._load()
        ports = self.state.setdefault("ports", {})
        for key in ("route", "candidate", "stable", "prometheus"):
            if not ports.get(key):
                ports[key] = free_port()
        self._save()
        self._reattach()

    # ------------------------------------------------------------------ the protocol

    @property
    def url(self) -> str:
        """The route clients use (the InferenceService's URL)."""
        return f"http://127.0.0.1:{self.state['ports']['route']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['prometheus']}"

    def get(self) -> Traffic | None:
        stable = _ref(self.state.get("stable"))
        if stable is None:
            return None
        detail = self._not_ready()
        return Traffic(
            stable=stable,
            candidate=_ref(self.state.get("candidate")),
            candidate_percent=int(self.state.get("candidate_percent", 0)),
            mirror=bool(self.state.get("mirror", False)),
            ready=not detail,
            annotations=dict(self.state.get("annotations", {})),
            detail=detail,
        )

    def deploy(self, stable: ModelRef) -> None:
        current = _ref(self.state.get("stable"))
        if current == stable and self._running(self.state["stable"]):
            if self.state.get("candidate"):
                self.rollback()
            return
        entry = self._start_server(stable, "stable")
        old = self.state.get("stable")
        self.state.update(stable=entry, candidate=None, candidate_percent=0, mirror=False)
        if old:
            self.state.setdefault("retired", []).append(old)
        self._apply()

    def start_candidate(self, candidate: ModelRef, percent: int, mirror: bool = False) -> None:
        self._check_percent(percent)
        if not self.state.get("stable"):
            raise DeploymentError(
                "start_candidate: nothing is deployed (deploy a stable version first)"
            )
        current = self.state.get("candidate")
        if _ref(current) != candidate or not self._running(current):
            entry = self._start_server(candidate, "candidate")
            if current:
                self.state.setdefault("retired", []).append(current)
            self.state["candidate"] = entry
        self.state.update(candidate_percent=percent, mirror=bool(mirror))
        self._apply()

    def set_percent(self, percent: int) -> None:
        self._check_percent(percent)
        if not self.state.get("candidate"):
            raise DeploymentError("set_percent: no candidate is running")
        if self.state.get("candidate_percent") == percent:
            return
        self.state["candidate_percent"] = percent
        self._apply()

    def promote(self) -> None:
        candidate = self.state.get("candidate")
        if not candidate:
            self._reap()  # a promote interrupted after the switch: finish it
            return
        # First the route: every request to the candidate, no mirror; then the candidate
        # becomes the stable version and the old one stops.
        self.state.update(candidate_percent=100, mirror=False)
        self._apply()
        old = self.state["stable"]
        candidate["role"] = "stable"
        self.state.update(stable=candidate, candidate=None, candidate_percent=0)
        self.state.setdefault("retired", []).append(old)
        self._apply()

    def rollback(self) -> None:
        candidate = self.state.get("candidate")
        if not candidate:
            self._reap()
            return
        self.state.update(candidate=None, candidate_percent=0, mirror=False)
        self.state.setdefault("retired", []).append(candidate)
        self._apply()

    def annotate(self, values: Mapping[str, str]) -> None:
        annotations = self.state.setdefault("annotations", {})
        for key, value in values.items():
            if not key.startswith(ANNOTATION_PREFIX):
                raise DeploymentError(
                    f"annotation {key!r} does not start with {ANNOTATION_PREFIX!r}"
                )
            if value == "":
                annotations.pop(key, None)
            else:
                annotations[key] = str(value)
        self._save()

    def wait_ready(self, timeout: float) -> Traffic:
        deadline = time.monotonic() + timeout
        while True:
            traffic = self.get()
            if traffic is None:
                raise DeploymentError(f"{self.workdir}: nothing is deployed")
            if traffic.ready:
                return traffic
            if time.monotonic() > deadline:
                raise DeploymentError(f"not ready in {timeout:.0f} s: {traffic.detail}")
            time.sleep(0.3)

    def candidate_url(self) -> str | None:
        if not self.state.get("candidate"):
            return None
        return f"http://127.0.0.1:{self.state['ports']['candidate']}"

    def stable_url(self) -> str | None:
        if not self.state.get("stable"):
            return None
        return f"http://127.0.0.1:{self.state['ports']['stable']}"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stops the containers, nginx and prometheus (the state file stays)."""
        for key in ("candidate", "stable"):
            entry = self.state.get(key)
            if entry:
                self._stop_container(entry)
        self._reap()
        self._remove_labelled()
        self._stop_nginx()
        self._stop_prometheus()

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    @property
    def state_path(self) -> Path:
        return self.workdir / STATE_FILE

    def _load(self) -> dict:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {
            "stable": None,
            "candidate": None,
            "candidate_percent": 0,
            "mirror": False,
            "annotations": {},
        }

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        tmp.replace(self.state_path)

    def _apply(self) -> None:
        """State -> file, nginx (reloaded, old workers drained), prometheus targets, then the
        retired containers stop."""
        self._save()
        self._write_nginx_conf()
        self._ensure_nginx(reload=True)
        self._write_targets()
        self._reap()

    @staticmethod
    def _check_percent(percent: int) -> None:
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise DeploymentError(f"percent must be an integer in 0..100, not {percent!r}")

    # ------------------------------------------------------------------ containers

    def _docker(self):
        import docker

        return docker.from_env()

    def _container(self, entry: dict | None):
        import docker

        if not entry:
            return None
        try:
            return self._docker().containers.get(entry["container"])
        except docker.errors.NotFound:
            return None

    def _running(self, entry: dict | None) -> bool:
        container = self._container(entry)
        if container is None:
            return False
        return container.status == "running"

    def _model_dir(self, ref: ModelRef) -> tuple[str, dict]:
        """The server's ``--model_dir`` and the volumes for it: ``s3://`` as is; a local folder
        copied into the work folder (readable by the containers' user) and mounted at
        /mnt/models, as KServe's storage initializer puts a version there."""
        uri = ref.storage_uri
        if uri.startswith("s3://"):
            return uri, {}
        source = Path(uri.removeprefix("file://"))
        if not source.is_dir():
            raise DeploymentError(f"{ref.name} version {ref.version}: {uri} is not a folder")
        dest = self.workdir / "models" / f"{ref.name}-{ref.version}-{ref.manifest_sha256[:12]}"
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            for path in [tmp, *tmp.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            tmp.replace(dest)
            (self.workdir / "models").chmod(0o755)
        return "/mnt/models", {str(dest): ("/mnt/models", "ro")}

    def _start_server(self, ref: ModelRef, role: str) -> dict:
        model_dir, volumes = self._model_dir(ref)
        args = [
            f"--model_dir={model_dir}",
            f"--model_version={ref.version}",
            f"--manifest_sha256={ref.manifest_sha256}",
        ]
        if self.capture:
            volumes[str(self.capture_dir)] = ("/mnt/capture", "rw")
            args += ["--capture_uri=/mnt/capture", "--capture_flush_seconds=1"]
        else:
            args += ["--capture_uri="]
        args += self.extra_args.get(ref.version, [])
        if self.code_dir:
            volumes[str(self.code_dir / "components")] = ("/opt/loopline/components", "ro")
        folder = hashlib.sha256(str(self.workdir).encode()).hexdigest()[:8]
        name = f"loopline-rollout-{ref.name}-v{ref.version}-{folder}"
        self.progress(f"starting {ref.name} version {ref.version} ({role}) as {name}")
        try:
            server = local_serving.start(
                ref.name,
                args,
                self.environment,
                image=self.image,
                timeout=self.ready_timeout,
                progress=self.progress,
                name=name,
                labels={LABEL: str(self.workdir), ROLE_LABEL: role},
                volumes=volumes,
            )
        except RuntimeError as exc:
            raise DeploymentError(f"{ref.name} version {ref.version} ({role}): {exc}") from exc
        port = int(server.url.rsplit(":", 1)[1])
        return {
            **asdict(ref),
            "container": server.container.id,
            "port": port,
            "role": role,
            "args": args,
        }

    def _stop_container(self, entry: dict) -> None:
        container = self._container(entry)
        if container is None:
            return
        log = (
            self.logs
            / f"serving-{entry['version']}-{entry.get('role', 'x')}-{entry['container'][:8]}.log"
        )
        with contextlib.suppress(Exception):  # the log is a courtesy; stopping matters
            log.write_bytes(container.logs())
        container.remove(force=True)

    def _reap(self) -> None:
        retired = self.state.get("retired", [])
        live = {
            e["container"] for e in (self.state.get("stable"), self.state.get("candidate")) if e
        }
        for entry in retired:
            if entry["container"] not in live:
                self._stop_container(entry)
        if retired:
            self.state["retired"] = []
            self._save()

    def _remove_labelled(self) -> None:
        for container in self._docker().containers.list(
            all=True, filters={"label": f"{LABEL}={self.workdir}"}
        ):
            container.remove(force=True)

    def _not_ready(self) -> str:
        """Why not ready ("" when everything that should serve does)."""
        import requests

        problems = []
        if not _alive(self._nginx_pid(), "nginx"):
            problems.append("nginx is not running")
        for key in ("stable", "candidate"):
            entry = self.state.get(key)
            if not entry:
                continue
            container = self._container(entry)
            if container is None or container.status != "running":
                problems.append(f"the {key} container ({entry['version']}) is not running")
                continue
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{entry['port']}/v2/models/{entry['name']}/ready", timeout=2
                )
            except requests.RequestException as exc:
                problems.append(f"the {key} server ({entry['version']}) does not answer: {exc}")
                continue
            if answer.status_code != 200:
                problems.append(
                    f"the {key} model ({entry['version']}) is not ready ({answer.status_code})"
                )
        return "; ".join(problems)

    def _reattach(self) -> None:
        """A resumed rollout: containers, nginx and prometheus that run are kept; what is
        missing is started again (a container on a new port)."""
        self._reap()
        changed = False
        for key in ("stable", "candidate"):
            entry = self.state.get(key)
            if entry and not self._running(entry):
                self.progress(
                    f"the {key} container ({entry['version']}) is gone: starting it again"
                )
                stale = self._container(entry)
                if stale is not None:
                    stale.remove(force=True)
                self.state[key] = self._start_server(_ref(entry), key)
                changed = True
        self._save()
        self._write_nginx_conf()
        self._ensure_nginx(reload=changed)
        self._ensure_prometheus()
        self._write_targets()

    # ------------------------------------------------------------------ nginx

    @property
    def _nginx_dir(self) -> Path:
        return self.workdir / "nginx"

    def _nginx_cmd(self, *extra: str) -> list[str]:
        return [
            NGINX, "-p", str(self._nginx_dir), "-c", str(self._nginx_dir / "nginx.conf"),
            "-e", str(self.logs / "nginx-error.log"), *extra,
        ]  # fmt: skip

    def _nginx_pid(self) -> int | None:
        try:
            return int((self._nginx_dir / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _write_nginx_conf(self) -> None:
        ports = self.state["ports"]
        stable, candidate = self.state.get("stable"), self.state.get("candidate")
        percent = int(self.state.get("candidate_percent", 0)) if candidate else 0
        mirror = bool(self.state.get("mirror")) and candidate is not None
        tmp = self._nginx_dir / "tmp"
        user = ""
        if os.geteuid() == 0:  # workers as root only when the master is root (tests in a box)
            user = "user root root;"
        upstreams, split = [], []
        if stable:
            upstreams.append(f"upstream stable {{ server 127.0.0.1:{stable['port']}; }}")
            if percent < 100:
                split.append(f"server 127.0.0.1:{stable['port']} weight={100 - percent};")
        if candidate:
            upstreams.append(f"upstream candidate {{ server 127.0.0.1:{candidate['port']}; }}")
            if percent > 0:
                split.append(f"server 127.0.0.1:{candidate['port']} weight={percent};")
        if split:
            upstreams.append("upstream split { " + " ".join(split) + " }")
        nothing = 'return 503 "nothing serves here\\n";'
        route = "proxy_pass http://split;" if split else nothing
        if mirror:
            route = f"mirror /_mirror; mirror_request_body on; {route}"
        conf = f"""# Written by pipelines/local_rollout.py from {STATE_FILE}; do not edit.
# stable {stable and stable["version"]}, candidate {candidate and candidate["version"]} at {percent}%, mirror {mirror}
{user}
worker_processes 1;
pid {self._nginx_dir / "nginx.pid"};
error_log {self.logs / "nginx-error.log"} notice;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp / "client_body"};
    proxy_temp_path {tmp / "proxy"};
    fastcgi_temp_path {tmp / "fastcgi"};
    uwsgi_temp_path {tmp / "uwsgi"};
    scgi_temp_path {tmp / "scgi"};
    # The client's x-request-id, or nginx's own when it sent none: the same on the mirror.
    map $http_x_request_id $rid {{ "" $request_id; default $http_x_request_id; }}
    log_format rollout '$time_iso8601 port=$server_port "$request" status=$status '
                       'rid=$rid upstream=$upstream_addr upstream_status=$upstream_status '
                       'time=$request_time';
    access_log {self.logs / "nginx-access.log"} rollout;
    log_subrequest on;
    client_max_body_size 0;  # the model server enforces its own limit (413 naming it)
    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header x-request-id $rid;
    proxy_next_upstream off;
    proxy_read_timeout 120s;
    {chr(10).join("    " + u for u in upstreams).strip()}
    # No idle client connections: a graceful reload closes them, and a request sent on one
    # in that instant is reset (seen once in 1,650 requests across 3 reloads).
    keepalive_timeout 0;
    server {{
        listen 127.0.0.1:{ports["route"]};
        location / {{ {route} }}
        location = /_mirror {{ internal; proxy_pass http://candidate$request_uri; }}
    }}
    server {{
        listen 127.0.0.1:{ports["candidate"]};
        location / {{ {"proxy_pass http://candidate;" if candidate else nothing} }}
    }}
    server {{
        listen 127.0.0.1:{ports["stable"]};
        location / {{ {"proxy_pass http://stable;" if stable else nothing} }}
    }}
}}
"""
        (self._nginx_dir / "nginx.conf.new").write_text(conf)
        check = subprocess.run(
            [NGINX, "-t", "-p", str(self._nginx_dir), "-c", str(self._nginx_dir / "nginx.conf.new"),
             "-e", str(self.logs / "nginx-error.log")],
            capture_output=True, text=True,
        )  # fmt: skip
        if check.returncode != 0:
            raise DeploymentError(f"nginx refused the generated configuration: {check.stderr}")
        (self._nginx_dir / "nginx.conf.new").replace(self._nginx_dir / "nginx.conf")

    def _ensure_nginx(self, reload: bool) -> None:
        pid = self._nginx_pid()
        if not _alive(pid, "nginx"):
            (self._nginx_dir / "nginx.pid").unlink(missing_ok=True)
            started = subprocess.run(self._nginx_cmd(), capture_output=True, text=True)
            if started.returncode != 0:
                raise DeploymentError(f"nginx did not start: {started.stderr}")
            deadline = time.monotonic() + 10
            while not _alive(self._nginx_pid(), "nginx"):
                if time.monotonic() > deadline:
                    raise DeploymentError(
                        f"nginx did not start: {(self.logs / 'nginx-error.log').read_text()[-2000:]}"
                    )
                time.sleep(0.05)
            return
        if reload:
            self._reload_nginx(pid)

    def _reload_nginx(self, pid: int) -> None:
        """``nginx -s reload`` and wait until the old workers have finished their requests and
        exited (so a container only they still send to can stop without failing a request)."""
        old = _children(pid)
        subprocess.run(self._nginx_cmd("-s", "reload"), check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while True:
            now = _children(pid)
            if not (now & old) and now:
                return
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"nginx's old workers {sorted(now & old)} did not exit in 30 s"
                )
            time.sleep(0.02)

    def _stop_nginx(self) -> None:
        pid = self._nginx_pid()
        if _alive(pid, "nginx"):
            subprocess.run(self._nginx_cmd("-s", "quit"), capture_output=True)
            deadline = time.monotonic() + 10
            while _alive(pid, "nginx") and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid, "nginx"):
                os.kill(pid, signal.SIGTERM)

    # ------------------------------------------------------------------ prometheus

    @property
    def _prom_dir(self) -> Path:
        return self.workdir / "prometheus"

    def _write_targets(self) -> None:
        """Rewrites the scrape targets and waits until Prometheus scrapes every one (its scrape
        manager applies discovered changes every 5 s): a gate that queries right after a step
        sees the new container's series."""
        targets = []
        for key in ("stable", "candidate"):
            entry = self.state.get(key)
            if entry:
                targets.append(
                    {"targets": [f"127.0.0.1:{entry['port']}"], "labels": {"rollout_role": key}}
                )
        path = self._prom_dir / "targets.json"
        text = json.dumps(targets, indent=2)
        if path.exists() and path.read_text() == text:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        self._prometheus_reload()
        self._wait_scraped({(t["targets"][0], t["labels"]["rollout_role"]) for t in targets})

    def _wait_scraped(self, wanted: set[tuple[str, str]], timeout: float = 30.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while True:
            try:
                active = requests.get(f"{self.prometheus_url}/api/v1/targets", timeout=5).json()
                scraped = {
                    (t["labels"]["instance"], t["labels"].get("rollout_role", ""))
                    for t in active["data"]["activeTargets"]
                    if t["health"] == "up"
                }
            except (requests.RequestException, ValueError, KeyError):
                scraped = set()
            if wanted <= scraped:
                return
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"prometheus does not scrape {sorted(wanted - scraped)} after {timeout:.0f} s"
                )
            time.sleep(0.2)

    def _prometheus_reload(self) -> None:
        import requests

        # File-based discovery picks the change up on its own as well.
        with contextlib.suppress(requests.RequestException):
            requests.post(f"{self.prometheus_url}/-/reload", timeout=10)

    def _ensure_prometheus(self) -> None:
        import requests

        pid = self.state.get("prometheus_pid")
        if _alive(pid, "prometheus"):
            return
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "loopline-serving",
                    "file_sd_configs": [
                        {"files": [str(self._prom_dir / "targets.json")], "refresh_interval": "5s"}
                    ],
                }
            ],
        }
        (self._prom_dir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        if not (self._prom_dir / "targets.json").exists():
            (self._prom_dir / "targets.json").write_text("[]")
        log = open(self.logs / "prometheus.log", "ab")  # noqa: SIM115 - the child keeps it
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self._prom_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self._prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.state['ports']['prometheus']}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(self._prom_dir),
        )  # fmt: skip
        log.close()
        self.state["prometheus_pid"] = process.pid
        self._save()
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise DeploymentError(
                    f"prometheus exited: {(self.logs / 'prometheus.log').read_text()[-2000:]}"
                )
            try:
                if requests.get(f"{self.prometheus_url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DeploymentError("prometheus was not ready in 30 s")
            time.sleep(0.1)

    def _stop_prometheus(self) -> None:
        pid = self.state.get("prometheus_pid")
        if _alive(pid, "prometheus"):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid, "prometheus") and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid, "prometheus"):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, TypeError):  # our child: collect it
            os.waitpid(pid, os.WNOHANG)
