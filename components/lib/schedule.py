"""A compiled pipeline on a schedule: a Kubeflow Pipelines (KFP v2) recurring run, created or
replaced through ``kfp.Client`` (the KFP v2beta1 REST API).

Two halves:

* checks that need no server, done before anything is sent: the package and its parameters
  (:func:`components.lib.kfp_api.load_package`, ``parse_params``), :func:`check_cron`
  (KFP's 6-field cron, seconds first, or a ``@`` descriptor), :func:`rfc3339`;
* :func:`schedule` (with :func:`components.lib.kfp_api.connect` for the client): upload the
  package as a new pipeline version, ensure the experiment, create the recurring run or
  replace the one of the same display name in that experiment.

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

A pipeline that does not exist yet is created empty and the package uploaded into it as the
requested version (:func:`components.lib.kfp_api.ensure_pipeline`, ``upload_version``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from components.lib import kfp_api
from components.lib.kfp_api import KfpError, Package

# KFP's API server accepts a max concurrency of 1 to 10.
MAX_CONCURRENCY = 10

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


class ScheduleError(KfpError):
    """A check that failed, or a KFP API call that did not do what was asked (one line)."""


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


@dataclass
class Result:
    pipeline_id: str
    pipeline_created: bool
    version_id: str
    experiment_id: str
    experiment_created: bool
    recurring_run_id: str
    replaced: list[str]


def _existing(client, experiment_id: str, job: str, namespace: str | None) -> list:
    runs = kfp_api.pages(
        client.list_recurring_runs,
        "recurring_runs",
        experiment_id=experiment_id,
        filter=kfp_api.equals_filter("display_name", job),
    )
    return [r for r in runs if r.display_name == job]


def _is_enabled(run) -> bool:
    return (run.status or "") == "ENABLED" or (not run.status and run.mode == "ENABLE")


def schedule(client, plan: Plan, say: Callable[[str], None] = print) -> Result:
    """Uploads the version, ensures the experiment, creates or replaces the recurring run
    (the order is in the module's docstring). ``say`` gets one progress line per step."""
    pipeline_id, pipeline_created = kfp_api.ensure_pipeline(
        client, plan.pipeline, plan.namespace, plan.package.description
    )
    version = kfp_api.upload_version(client, plan.package, plan.pipeline, pipeline_id, plan.version)
    say(
        f"uploaded pipeline {plan.pipeline} ({'created, ' if pipeline_created else ''}id "
        f"{pipeline_id}) version {plan.version} (id {version.pipeline_version_id})"
    )
    experiment_id, experiment_created = kfp_api.ensure_experiment(
        client, plan.experiment, plan.namespace
    )
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
    status = kfp_api.status_of(exc)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    return " ".join(str(exc).split())[:200] or type(exc).__name__
