"""Talking to Kubeflow Pipelines (KFP v2, the v2beta1 REST API through ``kfp.Client``): what
``loopline upload``, ``submit`` and ``schedule`` share.

* checks that need no server, done before anything is sent: :func:`load_package` (a
  compiled pipeline YAML: its name and root input parameters), :func:`parse_params`
  (``key=value`` and JSON values against those inputs: names, types, required ones);
* :func:`connect`, the client (a bearer token, the pod's KFP service-account token, or
  kfp.Client's in-cluster default), with the user's Kubeflow profile namespace;
* lookups and idempotent creates: :func:`find_pipeline`, :func:`ensure_pipeline`,
  :func:`upload_version`, :func:`find_version`, :func:`ensure_experiment`;
* runs: :func:`create_run`, :func:`follow` (state changes until a final state) and
  :func:`failure_of` (what a failed run's API object says went wrong).

Namespaces. ``kfp.Client(namespace=...)`` means two things upstream: the user's profile
namespace (multi-user) and, with no host in a pod, the namespace of the KFP service in the
in-cluster address ``ml-pipeline.<namespace>.svc.cluster.local:8888``. A profile namespace
passed there would aim the in-cluster client at a service that is not there, so
:func:`connect` keeps kfp's default for the address and sets the profile namespace as the
client's user namespace (what ``Client.set_user_namespace`` does, without writing
``~/.config/kfp/context.json``); every call here also passes it explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HOST_ENV = "KFP_HOST"
TOKEN_ENV = "KFP_TOKEN"
NAMESPACE_ENV = "KFP_NAMESPACE"
DEFAULT_EXPERIMENT = "Default"

# KFP parameter types (pipeline spec ``parameterType``) -> how a value is read.
TYPE_NAMES = {
    "STRING": "string",
    "NUMBER_INTEGER": "integer",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "boolean (true / false)",
    "LIST": "JSON list",
    "STRUCT": "JSON object",
}

# V2beta1RuntimeState: a run in one of these is done.
FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
FAILED_STATES = ("FAILED", "CANCELED")


class KfpError(Exception):
    """A check that failed, or a KFP API call that did not do what was asked (one line)."""


class RunTimeout(KfpError):
    """A followed run was not done within the time given."""


# --------------------------------------------------------------------------- the package


@dataclass(frozen=True)
class Package:
    """A compiled KFP pipeline YAML: its name, root input parameters and content hash."""

    path: str
    name: str
    description: str
    # name -> {"type": "STRING" | ..., "optional": bool, "default": value or None}
    parameters: dict[str, dict[str, Any]]
    sha256: str


def load_package(path: str) -> Package:
    """Reads a compiled pipeline YAML (pipeline spec, then an optional platform spec)."""
    import yaml

    if not os.path.isfile(path):
        raise KfpError(f"no such pipeline package: {path}")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster
        docs = [d for d in yaml.load_all(raw.decode("utf-8"), Loader=loader) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KfpError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or not isinstance(spec.get("root"), dict):
        raise KfpError(
            f"{path} is not a compiled KFP pipeline (no pipeline spec with a 'root'; compile "
            "the pipeline with kfp.compiler.Compiler)"
        )
    info = spec.get("pipelineInfo") or {}
    if not info.get("name"):
        raise KfpError(f"{path} is not a compiled KFP pipeline (no pipelineInfo.name)")
    params = {}
    for name, p in ((spec["root"].get("inputDefinitions") or {}).get("parameters") or {}).items():
        params[name] = {
            "type": p.get("parameterType", "STRING"),
            "optional": bool(p.get("isOptional")) or "defaultValue" in p,
            "default": p.get("defaultValue"),
        }
    return Package(
        path=path,
        name=info["name"],
        description=str(info.get("description") or ""),
        parameters=params,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _bad(where: str, name: str, ptype: str, value: Any, why: str) -> KfpError:
    return KfpError(
        f"{where} {name}: the pipeline's {name} is {ptype} ({TYPE_NAMES.get(ptype, ptype)}); "
        f"{value!r} {why}"
    )


def _value(name: str, ptype: str, text: str) -> Any:
    """A command-line ``--param`` value (text) as the parameter's type."""

    def bad(why: str) -> KfpError:
        return _bad("--param", name, ptype, text, why)

    if ptype == "STRING":
        return text
    if ptype == "NUMBER_INTEGER":
        try:
            return int(text.strip())
        except ValueError:
            raise bad("is not an integer") from None
    if ptype == "NUMBER_DOUBLE":
        try:
            value = float(text.strip())
        except ValueError:
            raise bad("is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("is not a finite number")
        return value
    if ptype == "BOOLEAN":
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise bad("is not true or false")
    if ptype in ("LIST", "STRUCT"):
        try:
            value = json.loads(text)
        except ValueError:
            raise bad("is not JSON") from None
        want = list if ptype == "LIST" else dict
        if not isinstance(value, want):
            raise bad(f"is not a {TYPE_NAMES[ptype]}")
        return value
    raise KfpError(f"--param {name}: unsupported parameter type {ptype} in the package")


def _json_value(where: str, name: str, ptype: str, value: Any) -> Any:
    """A JSON value (from a params file) checked against the parameter's type, strictly: a
    string is not a number, a number not a boolean."""

    def bad(why: str) -> KfpError:
        return _bad(where, name, ptype, value, why)

    if ptype == "STRING":
        if not isinstance(value, str):
            raise bad("is not a JSON string")
        return value
    if ptype == "NUMBER_INTEGER":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise bad("is not an integer")
        return int(value)
    if ptype == "NUMBER_DOUBLE":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("is not a number")
        return float(value)
    if ptype == "BOOLEAN":
        if not isinstance(value, bool):
            raise bad("is not true or false")
        return value
    if ptype in ("LIST", "STRUCT"):
        if not isinstance(value, list if ptype == "LIST" else dict):
            raise bad(f"is not a {TYPE_NAMES[ptype]}")
        return value
    raise KfpError(f"{where} {name}: unsupported parameter type {ptype} in the package")


def _unknown(where: str, name: str, package: Package) -> KfpError:
    valid = ", ".join(sorted(package.parameters)) or "(none)"
    return KfpError(
        f"{where} {name}: pipeline {package.name} has no input {name!r}; its inputs: {valid}"
    )


def parse_params(
    package: Package,
    pairs: Sequence[str],
    values: Mapping[str, Any] | None = None,
    values_from: str = "",
) -> dict[str, Any]:
    """Typed runtime parameters, checked against the package's root inputs: unknown names,
    bad values and missing required inputs are refused.

    ``values`` are JSON values (from ``values_from``, a params file), checked strictly;
    ``pairs`` are ``key=value`` strings (``--param``), read as the input's type, and win
    over ``values``."""
    out: dict[str, Any] = {}
    where = f"{values_from}: parameter" if values_from else "parameter"
    for name, value in (values or {}).items():
        if name not in package.parameters:
            raise _unknown(where, name, package)
        out[name] = _json_value(where, name, package.parameters[name]["type"], value)
    seen: set[str] = set()
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise KfpError(f"--param {pair!r}: expected key=value")
        if name not in package.parameters:
            raise _unknown("--param", name, package)
        if name in seen:
            raise KfpError(f"--param {name}: given twice")
        seen.add(name)
        out[name] = _value(name, package.parameters[name]["type"], text)
    missing = sorted(n for n, p in package.parameters.items() if not p["optional"] and n not in out)
    if missing:
        raise KfpError(
            f"pipeline {package.name} needs --param for its required input(s) without a "
            f"default: {', '.join(missing)}"
        )
    return out


def read_params_file(path: str) -> dict[str, Any]:
    """A JSON object ``{"name": value, ...}`` from ``path`` (``--params-file``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except OSError as exc:
        raise KfpError(f"--params-file {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise KfpError(f"--params-file {path}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise KfpError(
            f'--params-file {path}: expected a JSON object {{"name": value, ...}}; got '
            f"{type(value).__name__}"
        )
    return value


def default_version(package: Package, now: datetime | None = None) -> str:
    """``<loopline version>-<UTC time>-<first 8 of the package's sha256>``."""
    from components import __version__

    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{__version__}-{stamp}-{package.sha256[:8]}"


# --------------------------------------------------------------------------- the client


def connect(host: str | None, token: str | None = None, namespace: str | None = None):
    """A ``kfp.Client``.

    Credentials, first found: ``token`` as the bearer token; with a ``host``, the pod's
    projected KFP service-account token (``$KF_PIPELINES_SA_TOKEN_PATH``, default
    ``/var/run/secrets/kubeflow/pipelines/token``) when there is one; else kfp.Client's own
    (no host, in a pod: the in-cluster ``ml-pipeline.kubeflow`` service with that same
    token; outside a pod: the kube config's API-server proxy).

    ``namespace`` is the user's Kubeflow profile namespace (multi-user; see the module's
    docstring). kfp.Client's constructor asks ``/apis/v2beta1/healthz`` when it has no
    namespace, retrying five times 5 s apart; here it asks once, so a refusal fails at once.

    kfp.Client sends no timeout: every request of this one has the ``kfp`` limits of
    :mod:`components.lib.network` (``LOOPLINE_KFP_*``; defaults connect 10 s, read 60 s,
    3 urllib3 retries), so a hung API fails instead of waiting forever.
    """
    import warnings

    import kfp
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH

    from components.lib import network

    class _Client(kfp.Client):
        def _load_config(self, *args, **kwargs):
            config = super()._load_config(*args, **kwargs)
            config.retries = network.limits("kfp").retries
            return config

        def get_kfp_healthz(self, sleep_duration: int = 5):
            # Called from the constructor, once the API client exists.
            network.with_request_timeout(self._healthz_api.api_client, "kfp")
            return self._healthz_api.healthz_service_get_healthz()

        def _load_context_setting_or_default(self) -> None:
            super()._load_context_setting_or_default()
            if namespace:
                self._context_setting["namespace"] = namespace

    kwargs: dict[str, Any] = {"host": host or None}
    if token:
        kwargs["existing_token"] = token
    elif host:
        sa_token = os.environ.get(KF_PIPELINES_SA_TOKEN_ENV) or KF_PIPELINES_SA_TOKEN_PATH
        if os.path.isfile(sa_token):
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(sa_token)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        client = _Client(**kwargs)
    network.with_request_timeout(client._healthz_api.api_client, "kfp")
    return client


def quiet(func: Callable, *a, **kw):
    """kfp.Client prints a UI link after some calls; the progress lines are ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        return func(*a, **kw)


def status_of(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def equals_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]})


def pages(list_call: Callable, items: str, **kw) -> list:
    out, token = [], ""
    while True:
        page = list_call(page_token=token, page_size=100, **kw)
        out.extend(getattr(page, items) or [])
        token = page.next_page_token or ""
        if not token:
            return out


# --------------------------------------------------------------------------- pipelines


def find_pipeline(client, name: str, namespace: str | None):
    """The pipeline of that display name (in ``namespace``), or None."""
    found = [
        p
        for p in pages(
            client.list_pipelines,
            "pipelines",
            filter=equals_filter("display_name", name),
            namespace=namespace,
        )
        if p.display_name == name
    ]
    if len(found) > 1:
        raise KfpError(f"{len(found)} pipelines are named {name!r}; the name must be unique")
    return found[0] if found else None


def ensure_pipeline(
    client, name: str, namespace: str | None, description: str = ""
) -> tuple[str, bool]:
    """The id of pipeline ``name``, created empty (``POST /apis/v2beta1/pipelines``) when
    absent: ``upload_pipeline`` would create a first version named after the pipeline, not
    the version name asked for. Returns (id, created)."""
    found = find_pipeline(client, name, namespace)
    if found is not None:
        return found.pipeline_id, False
    from kfp_server_api import ApiException, V2beta1Pipeline

    body = V2beta1Pipeline(
        display_name=name,
        name=name,
        description=description[:1000] or None,
        namespace=namespace or None,
    )
    try:
        created = client.pipelines.pipeline_service_create_pipeline(pipeline=body)
    except ApiException as exc:
        if status_of(exc) != 409:
            raise
        # Created by someone else since the lookup: use that one.
        found = find_pipeline(client, name, namespace)
        if found is None:
            raise
        return found.pipeline_id, False
    return created.pipeline_id, True


def upload_version(
    client, package: Package, pipeline: str, pipeline_id: str, version: str, description: str = ""
):
    """Uploads ``package`` as version ``version`` of pipeline ``pipeline_id``; a taken
    version name is a KfpError naming it."""
    from kfp_server_api import ApiException

    try:
        return quiet(
            client.upload_pipeline_version,
            package.path,
            pipeline_version_name=version,
            pipeline_id=pipeline_id,
            description=description or f"{package.name}, sha256 {package.sha256}",
        )
    except ApiException as exc:
        if status_of(exc) == 409:
            raise KfpError(
                f"pipeline {pipeline} already has a version named {version!r}: pass another "
                "version name (or none for a fresh one)"
            ) from None
        raise


def find_version(client, pipeline: str, version: str | None, namespace: str | None):
    """(pipeline id, version id, version display name) of pipeline ``pipeline``'s version ``version`` (by name or
    display name), or of its latest version when ``version`` is None; an unknown pipeline or
    version is a KfpError naming it (and the versions there are)."""
    found = find_pipeline(client, pipeline, namespace)
    if found is None:
        where = f" in namespace {namespace}" if namespace else ""
        raise KfpError(f"no pipeline named {pipeline!r}{where} (upload it first: loopline upload)")
    versions = pages(
        client.list_pipeline_versions, "pipeline_versions", pipeline_id=found.pipeline_id
    )
    if version is None:
        if not versions:
            raise KfpError(f"pipeline {pipeline!r} has no versions")
        latest = max(versions, key=lambda v: str(v.created_at or ""))
        return found.pipeline_id, latest.pipeline_version_id, latest.display_name
    for v in versions:
        if version in (v.display_name, getattr(v, "name", None), v.pipeline_version_id):
            return found.pipeline_id, v.pipeline_version_id, v.display_name
    known = ", ".join(sorted(str(v.display_name) for v in versions)) or "(none)"
    raise KfpError(f"pipeline {pipeline!r} has no version {version!r}; its versions: {known}")


def version_spec(client, pipeline_id: str, version_id: str) -> dict:
    """The pipeline spec of an uploaded version (to check parameters against it)."""
    version = client.get_pipeline_version(pipeline_id, version_id)
    spec = version.pipeline_spec or {}
    # The API answers the spec document, or {"pipeline_spec": ..., "platform_spec": ...}.
    return spec.get("pipeline_spec", spec) if isinstance(spec, dict) else {}


def package_of_spec(spec: dict, where: str) -> Package:
    """A Package from a spec the API returned (no file)."""
    params = {}
    for name, p in (((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters")
                    or {}).items():  # fmt: skip
        params[name] = {
            "type": p.get("parameterType", "STRING"),
            "optional": bool(p.get("isOptional")) or "defaultValue" in p,
            "default": p.get("defaultValue"),
        }
    name = (spec.get("pipelineInfo") or {}).get("name") or where
    return Package(path=where, name=name, description="", parameters=params, sha256="")


# --------------------------------------------------------------------------- experiments


def ensure_experiment(client, name: str, namespace: str | None) -> tuple[str, bool]:
    """The id of experiment ``name`` (in ``namespace``), created when absent."""
    try:
        found = quiet(client.get_experiment, experiment_name=name, namespace=namespace)
        return found.experiment_id, False
    except ValueError as exc:
        if not str(exc).startswith("No experiment is found with name"):
            raise
    from kfp_server_api import V2beta1Experiment

    created = client.experiments.experiment_service_create_experiment(
        experiment=V2beta1Experiment(display_name=name, namespace=namespace)
    )
    return created.experiment_id, True


# --------------------------------------------------------------------------- runs


def create_run(
    client,
    experiment_id: str,
    name: str,
    params: dict[str, Any],
    package_path: str | None = None,
    pipeline_id: str | None = None,
    version_id: str | None = None,
):
    """A run of a package (its spec sent inline) or of an uploaded pipeline version."""
    return quiet(
        client.run_pipeline,
        experiment_id=experiment_id,
        job_name=name,
        pipeline_package_path=package_path,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
    )


def failure_of(run) -> str:
    """What a failed run's API object says: the first failed task and its error, and the
    run's own error when it says something else."""
    parts = []
    details = getattr(run, "run_details", None)
    task_message = None
    for task in getattr(details, "task_details", None) or []:
        # The run's root DAG is a task too, named like the run: skip it.
        if str(task.state or "") in FAILED_STATES and task.display_name not in (
            None,
            "",
            run.display_name,
        ):
            task_message = getattr(task.error, "message", None) if task.error else None
            what = f"failed task {task.display_name}"
            if task_message:
                what += f": {' '.join(task_message.split())}"
            parts.append(what)
            break
    error = getattr(run, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    if message and message != task_message:
        parts.append(" ".join(message.split()))
    return "; ".join(parts)


def follow(
    client,
    run_id: str,
    timeout: float | None = None,
    poll: float = 5.0,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
):
    """Polls the run until a final state, calling ``say`` on every state change; returns
    the run object. Raises RunTimeout (naming the run and its last state) after
    ``timeout`` seconds."""
    start = clock()
    last = None
    while True:
        run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        if state != last:
            say(f"run {run_id}: {state}")
            last = state
        if state in FINAL_STATES:
            return run
        if timeout is not None and clock() - start >= timeout:
            raise RunTimeout(
                f"run {run_id} is still {state} after {timeout:g} s (--timeout); it keeps "
                "running on the cluster"
            )
        sleep(poll)
