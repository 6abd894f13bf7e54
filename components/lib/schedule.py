"""A compiled pipeline on a schedule: a Kubeflow Pipelines (KFP v2) recurring run, created or
replaced through ``kfp.Client`` (the KFP v2beta1 REST API).

Two halves:

* checks that need no server, done before anything is sent: :func:`load_package` (a
  compiled pipeline YAML: its name and root input parameters), :func:`parse_params`
  (``key=value`` against those inputs: names, types, required ones), :func:`check_cron`
  (KFP's 6-field cron, seconds first, or a ``@`` descriptor), :func:`rfc3339`;
* :func:`schedule` (with :func:`connect` for the client): upload the package as a new
  pipeline version, ensure the experiment, create the recurring run or replace the one of
  the same display name in that experiment.

Replacing a recurring run. The v2beta1 API has no update for recurring runs (create, get,
list, enable, disable, delete only), so an existing one is replaced, in this order:

1. create the new recurring run DISABLED. If this fails, nothing has changed: the old
   schedule keeps running;
2. disable the old one(s) (if this fails, the new disabled one is deleted again);
3. enable the new one. If this fails, the old one(s) are enabled again and the new one is
   deleted: the old schedule keeps running;
4. delete the old one(s). If this fails, the new schedule runs and the old one is left
   disabled (never running); the error names its id.

So two enabled schedules never exist at once, and a failed create never leaves none. The
price is a gap of one API call (between 2 and 3) with no enabled schedule: a trigger that
falls exactly then is missed (with catch-up on, the scheduler runs it late). With
``enabled=False`` step 3 is skipped and the new one stays disabled.

A pipeline that does not exist yet is created empty (``CreatePipeline``, ``POST
/apis/v2beta1/pipelines``) and the package uploaded into it as the requested version
(``upload_pipeline_version``): ``upload_pipeline`` would create a first version named after
the pipeline, not the version name asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HOST_ENV = "KFP_HOST"
TOKEN_ENV = "KFP_TOKEN"
DEFAULT_EXPERIMENT = "Default"
# KFP's API server accepts a max concurrency of 1 to 10.
MAX_CONCURRENCY = 10

# KFP parameter types (pipeline spec ``parameterType``) -> how a command-line value is read.
TYPE_NAMES = {
    "STRING": "string",
    "NUMBER_INTEGER": "integer",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "boolean (true / false)",
    "LIST": "JSON list",
    "STRUCT": "JSON object",
}

# robfig/cron (what KFP's ScheduledWorkflow controller parses with): 6 fields, seconds first.
CRON_FIELDS = (
    ("second", 0, 59, ""),
    ("minute", 0, 59, ""),
    ("hour", 0, 23, ""),
    ("day of month", 1, 31, ""),
    ("month", 1, 12, "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC"),
    ("day of week", 0, 6, "SUN MON TUE WED THU FRI SAT"),
)
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


class ScheduleError(Exception):
    """A check that failed, or a KFP API call that did not do what was asked (one line)."""


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
        raise ScheduleError(f"no such pipeline package: {path}")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster
        docs = [d for d in yaml.load_all(raw.decode("utf-8"), Loader=loader) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or not isinstance(spec.get("root"), dict):
        raise ScheduleError(
            f"{path} is not a compiled KFP pipeline (no pipeline spec with a 'root'; compile "
            "the pipeline with kfp.compiler.Compiler)"
        )
    info = spec.get("pipelineInfo") or {}
    if not info.get("name"):
        raise ScheduleError(f"{path} is not a compiled KFP pipeline (no pipelineInfo.name)")
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


def _value(name: str, ptype: str, text: str) -> Any:
    def bad(why: str) -> ScheduleError:
        return ScheduleError(
            f"--param {name}: the pipeline's {name} is {ptype} ({TYPE_NAMES.get(ptype, ptype)}); "
            f"{text!r} {why}"
        )

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
    raise ScheduleError(f"--param {name}: unsupported parameter type {ptype} in the package")


def parse_params(package: Package, pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings -> typed runtime parameters, checked against the package's
    root inputs: unknown names, bad values and missing required inputs are refused."""
    valid = ", ".join(sorted(package.parameters)) or "(none)"
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ScheduleError(f"--param {pair!r}: expected key=value")
        if name not in package.parameters:
            raise ScheduleError(
                f"--param {name}: pipeline {package.name} has no input {name!r}; its inputs: {valid}"
            )
        if name in out:
            raise ScheduleError(f"--param {name}: given twice")
        out[name] = _value(name, package.parameters[name]["type"], text)
    missing = sorted(n for n, p in package.parameters.items() if not p["optional"] and n not in out)
    if missing:
        raise ScheduleError(
            f"pipeline {package.name} needs --param for its required input(s) without a "
            f"default: {', '.join(missing)}"
        )
    return out


def default_version(package: Package, now: datetime | None = None) -> str:
    """``<loopline version>-<UTC time>-<first 8 of the package's sha256>``."""
    from components import __version__

    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{__version__}-{stamp}-{package.sha256[:8]}"


# --------------------------------------------------------------------------- the trigger


def _cron_value(token: str, lo: int, hi: int, names: str, what: str, expr: str) -> int:
    upper = token.upper()
    if names and upper in names.split():
        return names.split().index(upper) + lo
    if not token.isdigit():
        raise ScheduleError(f"cron {expr!r}: {what} field: {token!r} is not a number")
    value = int(token)
    if not lo <= value <= hi:
        raise ScheduleError(f"cron {expr!r}: {what} {value} is outside {lo}-{hi}")
    return value


def check_cron(expr: str) -> str:
    """A KFP cron expression: 6 fields (second minute hour day-of-month month day-of-week),
    each ``*``, ``?`` (the two day fields), numbers, names, ranges ``a-b``, lists and steps
    ``/n``; or a descriptor (``@daily``, ``@every 1h30m``). Returns it stripped."""
    expr = " ".join(expr.split())
    if not expr:
        raise ScheduleError("cron: empty expression")
    if expr.startswith("@"):
        if expr in CRON_DESCRIPTORS:
            return expr
        if expr.startswith("@every "):
            if _GO_DURATION.match(expr[len("@every ") :]):
                return expr
            raise ScheduleError(f"cron {expr!r}: '@every' needs a Go duration such as 1h30m")
        raise ScheduleError(
            f"cron {expr!r}: unknown descriptor; one of {', '.join(CRON_DESCRIPTORS)} or @every DURATION"
        )
    fields = expr.split(" ")
    if len(fields) != 6:
        hint = f" (did you mean '0 {expr}'?)" if len(fields) == 5 else ""
        raise ScheduleError(
            f"cron {expr!r}: KFP cron has 6 fields, seconds first (second minute hour "
            f"day-of-month month day-of-week); got {len(fields)}{hint}"
        )
    for i, (text, (what, lo, hi, names)) in enumerate(zip(fields, CRON_FIELDS, strict=True)):
        for part in text.split(","):
            base, slash, step = part.partition("/")
            if slash and (not step.isdigit() or int(step) == 0):
                raise ScheduleError(f"cron {expr!r}: {what} field: bad step in {part!r}")
            if base in ("*", "?"):
                if base == "?" and i not in (3, 5):
                    raise ScheduleError(
                        f"cron {expr!r}: '?' is allowed only in day of month or day of week"
                    )
                continue
            start, dash, end = base.partition("-")
            a = _cron_value(start, lo, hi, names, what, expr)
            if dash:
                b = _cron_value(end, lo, hi, names, what, expr)
                if b < a:
                    raise ScheduleError(f"cron {expr!r}: {what} range {base!r} runs backwards")
    return expr


def rfc3339(text: str, what: str) -> str:
    """An ISO 8601 time -> RFC 3339 in UTC (``...Z``); a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleError(
            f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Trigger:
    """A cron trigger or a fixed interval, with an optional start and end (RFC 3339)."""

    cron: str | None = None
    interval_seconds: int | None = None
    start_time: str | None = None
    end_time: str | None = None

    def __post_init__(self):
        if (self.cron is None) == (self.interval_seconds is None):
            raise ScheduleError("a trigger needs exactly one of a cron expression or an interval")
        if self.cron is not None:
            object.__setattr__(self, "cron", check_cron(self.cron))
        elif self.interval_seconds <= 0:
            raise ScheduleError(
                f"interval {self.interval_seconds}: must be a positive number of seconds"
            )
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            raise ScheduleError(
                f"end time {self.end_time} is not after start time {self.start_time}"
            )

    def describe(self) -> str:
        what = f"cron '{self.cron}'" if self.cron else f"every {self.interval_seconds} s"
        if self.start_time:
            what += f" from {self.start_time}"
        if self.end_time:
            what += f" until {self.end_time}"
        return what

    def body(self) -> dict:
        """The v2beta1 ``trigger`` object."""
        times = {
            k: v for k, v in (("start_time", self.start_time), ("end_time", self.end_time)) if v
        }
        if self.cron:
            return {"cron_schedule": {**times, "cron": self.cron}}
        return {"periodic_schedule": {**times, "interval_second": self.interval_seconds}}


@dataclass(frozen=True)
class Plan:
    """Everything :func:`schedule` does, checked already."""

    package: Package
    pipeline: str
    version: str
    experiment: str
    job: str
    trigger: Trigger
    params: dict[str, Any] = field(default_factory=dict)
    max_concurrency: int = 1
    no_catchup: bool = True
    enabled: bool = True
    namespace: str | None = None
    description: str = ""

    def __post_init__(self):
        for what, value in (("pipeline", self.pipeline), ("version", self.version),
                            ("experiment", self.experiment), ("job", self.job)):  # fmt: skip
            if not value or not value.strip():
                raise ScheduleError(f"the {what} name is empty")
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise ScheduleError(
                f"max concurrency {self.max_concurrency}: KFP accepts 1 to {MAX_CONCURRENCY}"
            )

    def recurring_run_body(self, pipeline_id: str = "<new>", version_id: str = "<new>") -> dict:
        """The ``POST /apis/v2beta1/recurringruns`` body (for a dry run's print-out)."""
        return {
            "display_name": self.job,
            "description": self.description or None,
            "experiment_id": "<experiment>",
            "mode": "ENABLE" if self.enabled else "DISABLE",
            "pipeline_version_reference": {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": version_id,
            },
            "runtime_config": {"parameters": self.params},
            "trigger": self.trigger.body(),
            "max_concurrency": self.max_concurrency,
            "no_catchup": self.no_catchup,
        }


# --------------------------------------------------------------------------- the API


def connect(host: str | None, token: str | None = None, namespace: str | None = None):
    """A ``kfp.Client``: ``token`` as the bearer token; else, with a host, the pod's projected
    KFP service-account token when there is one; else kfp.Client's own (in a cluster: the
    in-cluster service and the service account's token; outside: the kube config's proxy).

    kfp.Client's constructor asks ``/apis/v2beta1/healthz`` (when it has no namespace) and
    retries five times, 5 s apart; here it asks once, so a refusal fails at once.

    kfp.Client sends no timeout: every request of this one has the ``kfp`` limits of
    :mod:`components.lib.network` (``LOOPLINE_KFP_*``; defaults connect 10 s, read 60 s,
    3 urllib3 retries), so a hung API fails instead of waiting forever."""
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

    kwargs: dict[str, Any] = {"host": host or None}
    if namespace:
        kwargs["namespace"] = namespace
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


@dataclass
class Result:
    pipeline_id: str
    pipeline_created: bool
    version_id: str
    experiment_id: str
    experiment_created: bool
    recurring_run_id: str
    replaced: list[str]


def _quiet(func: Callable, *a, **kw):
    """kfp.Client prints a UI link after some calls; the progress lines are ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        return func(*a, **kw)


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]})


def _pages(list_call: Callable, items: str, **kw) -> list:
    out, token = [], ""
    while True:
        page = list_call(page_token=token, page_size=100, **kw)
        out.extend(getattr(page, items) or [])
        token = page.next_page_token or ""
        if not token:
            return out


def _find_pipeline(client, name: str, namespace: str | None):
    found = [
        p
        for p in _pages(
            client.list_pipelines,
            "pipelines",
            filter=_equals("display_name", name),
            namespace=namespace,
        )
        if p.display_name == name
    ]
    if len(found) > 1:
        raise ScheduleError(f"{len(found)} pipelines are named {name!r}; the name must be unique")
    return found[0] if found else None


def _ensure_pipeline(client, plan: Plan) -> tuple[str, bool]:
    found = _find_pipeline(client, plan.pipeline, plan.namespace)
    if found is not None:
        return found.pipeline_id, False
    from kfp_server_api import ApiException, V2beta1Pipeline

    body = V2beta1Pipeline(
        display_name=plan.pipeline,
        name=plan.pipeline,
        description=plan.package.description[:1000] or None,
        namespace=plan.namespace or None,
    )
    try:
        created = client.pipelines.pipeline_service_create_pipeline(pipeline=body)
    except ApiException as exc:
        if _status(exc) != 409:
            raise
        # Created by someone else since the lookup: use that one.
        found = _find_pipeline(client, plan.pipeline, plan.namespace)
        if found is None:
            raise
        return found.pipeline_id, False
    return created.pipeline_id, True


def _upload_version(client, plan: Plan, pipeline_id: str):
    from kfp_server_api import ApiException

    try:
        return _quiet(
            client.upload_pipeline_version,
            plan.package.path,
            pipeline_version_name=plan.version,
            pipeline_id=pipeline_id,
            description=f"{plan.package.name}, sha256 {plan.package.sha256}",
        )
    except ApiException as exc:
        if _status(exc) == 409:
            raise ScheduleError(
                f"pipeline {plan.pipeline} already has a version named {plan.version!r}: "
                "pass another --version (or none for a fresh one)"
            ) from None
        raise


def _ensure_experiment(client, plan: Plan) -> tuple[str, bool]:
    try:
        found = _quiet(
            client.get_experiment, experiment_name=plan.experiment, namespace=plan.namespace
        )
        return found.experiment_id, False
    except ValueError as exc:
        if not str(exc).startswith("No experiment is found with name"):
            raise
    from kfp_server_api import V2beta1Experiment

    created = client.experiments.experiment_service_create_experiment(
        experiment=V2beta1Experiment(display_name=plan.experiment, namespace=plan.namespace)
    )
    return created.experiment_id, True


def _existing(client, experiment_id: str, job: str, namespace: str | None) -> list:
    runs = _pages(
        client.list_recurring_runs,
        "recurring_runs",
        experiment_id=experiment_id,
        filter=_equals("display_name", job),
    )
    return [r for r in runs if r.display_name == job]


def _is_enabled(run) -> bool:
    return (run.status or "") == "ENABLED" or (not run.status and run.mode == "ENABLE")


def schedule(client, plan: Plan, say: Callable[[str], None] = print) -> Result:
    """Uploads the version, ensures the experiment, creates or replaces the recurring run
    (the order is in the module's docstring). ``say`` gets one progress line per step."""
    pipeline_id, pipeline_created = _ensure_pipeline(client, plan)
    version = _upload_version(client, plan, pipeline_id)
    say(
        f"uploaded pipeline {plan.pipeline} ({'created, ' if pipeline_created else ''}id "
        f"{pipeline_id}) version {plan.version} (id {version.pipeline_version_id})"
    )
    experiment_id, experiment_created = _ensure_experiment(client, plan)
    say(
        f"experiment {plan.experiment} ({'created, ' if experiment_created else ''}id {experiment_id})"
    )
    old = _existing(client, experiment_id, plan.job, plan.namespace)

    def create(enabled: bool):
        trigger = plan.trigger
        return client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=plan.job,
            description=plan.description or None,
            start_time=trigger.start_time,
            end_time=trigger.end_time,
            interval_second=trigger.interval_seconds,
            cron_expression=trigger.cron,
            max_concurrency=plan.max_concurrency,
            no_catchup=plan.no_catchup,
            params=plan.params,
            pipeline_id=pipeline_id,
            version_id=version.pipeline_version_id,
            enabled=enabled,
        )

    state = "enabled" if plan.enabled else "disabled"
    if not old:
        new = create(plan.enabled)
        say(
            f"created recurring run {plan.job} (id {new.recurring_run_id}): "
            f"{plan.trigger.describe()}, {state}"
        )
        return Result(pipeline_id, pipeline_created, version.pipeline_version_id, experiment_id,
                      experiment_created, new.recurring_run_id, [])  # fmt: skip

    old_ids = [r.recurring_run_id for r in old]
    was_enabled = [r.recurring_run_id for r in old if _is_enabled(r)]
    try:
        new = create(False)
    except Exception as exc:
        raise ScheduleError(
            f"creating the new recurring run failed; the old one(s) {', '.join(old_ids)} are "
            f"untouched: {_brief(exc)}"
        ) from exc
    new_id = new.recurring_run_id
    say(
        f"created recurring run {plan.job} (id {new_id}): {plan.trigger.describe()}, disabled "
        f"until the old one is off"
    )
    disabled: list[str] = []
    try:
        for run_id in was_enabled:
            client.disable_recurring_run(run_id)
            disabled.append(run_id)
            say(f"disabled old recurring run id {run_id}")
        if plan.enabled:
            client.enable_recurring_run(new_id)
            say(f"enabled recurring run id {new_id}")
    except Exception as exc:
        _undo(client, disabled, new_id)
        raise ScheduleError(
            f"replacing recurring run {plan.job} failed, undone (the old one(s) "
            f"{', '.join(old_ids)} as before, the new one {new_id} deleted): {_brief(exc)}"
        ) from exc
    for run_id in old_ids:
        try:
            client.delete_recurring_run(run_id)
        except Exception as exc:
            raise ScheduleError(
                f"recurring run {new_id} is {state}, but deleting the old one {run_id} failed "
                f"(it is disabled; delete it by hand): {_brief(exc)}"
            ) from exc
        say(f"deleted old recurring run id {run_id}")
    return Result(pipeline_id, pipeline_created, version.pipeline_version_id, experiment_id,
                  experiment_created, new_id, old_ids)  # fmt: skip


def _undo(client, disabled: list[str], new_id: str) -> None:
    """Best effort: the old schedules back on, the new one gone."""
    for run_id in disabled:
        with contextlib.suppress(Exception):
            client.enable_recurring_run(run_id)
    with contextlib.suppress(Exception):
        client.delete_recurring_run(new_id)


def _brief(exc: Exception) -> str:
    status = _status(exc)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    return " ".join(str(exc).split())[:200] or type(exc).__name__
