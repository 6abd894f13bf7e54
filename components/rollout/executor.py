"""rollout and settle: the progressive delivery of a registered version on KServe, as tasks.

``run`` (the rollout task):

1. Loads the policy: a bundled name (``policies/<name>.yaml``), a file path, or JSON / YAML
   text (``components.lib.rollout.RolloutPolicy.load``).
2. Reads the candidate from the registry: its serving copy (push's ``loopline.serving_uri``
   tag, ``Version.serving_uri``) and manifest sha256 make the ``ModelRef`` the
   InferenceService loads.
3. Builds a ``KServeDeployment`` over the cluster's API (the pod's service account;
   ``api`` in tests) and runs the engine (``components.lib.rollout.Rollout``) to its end:
   ``promoted``, ``rolled_back`` or ``paused``. A candidate that already is the stable
   version (a model's first version, which push deployed at 100%) needs no rollout:
   ``deployed``, with nothing changed.
4. Returns what happened, every check of this run with its gate values, and the registry
   and the InferenceService as they are after it; :func:`markdown` and :func:`html` render it.

``settle_run`` (the exit handler's task): ``components.lib.rollout.settle`` on the model's
InferenceService, so that a run that failed midway leaves the InferenceService and the
registry consistent; ``serving_target: none`` skips it (no cluster).
"""

from __future__ import annotations

import html as html_lib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from components.lib import inferenceservice, registry
from components.lib import rollout as engine
from components.lib.deployment import ModelRef
from components.lib.inferenceservice import MODES, SERVICE_ACCOUNT, check_name

log = logging.getLogger("loopline.rollout")

POLICIES_DIR = Path(__file__).resolve().parent / "policies"
DEFAULT_POLICY = "canary"
SERVING_TARGETS = ("kserve", "none")
OUTCOMES = (engine.PROMOTED, engine.ROLLED_BACK, engine.PAUSED, engine.DEPLOYED)
DEFAULT_ACTOR = "loopline-rollout"


class RolloutInputError(ValueError):
    """Bad input to the rollout task, or a version that cannot be rolled out; the message
    names it."""


def bundled_policies() -> list[str]:
    return sorted(p.stem for p in POLICIES_DIR.glob("*.yaml"))


def load_policy(ref: str) -> engine.RolloutPolicy:
    """The policy ``ref`` names: a bundled name, a file path, or JSON / YAML text."""
    text = (ref or DEFAULT_POLICY).strip()
    looks_like_text = "\n" in text or text[:1] in ("{", "[") or ":" in text
    if not looks_like_text and not Path(text).is_file():
        bundled = POLICIES_DIR / f"{text}.yaml"
        if not bundled.is_file():
            raise RolloutInputError(
                f"policy {text!r}: no such file and no bundled policy of that name "
                f"(bundled: {', '.join(bundled_policies())})"
            )
        text = str(bundled)
    return engine.RolloutPolicy.load(text)


def _actor(pipeline_run_id: str) -> str:
    return f"{DEFAULT_ACTOR} (pipeline run {pipeline_run_id})" if pipeline_run_id else DEFAULT_ACTOR


def run(
    model_name: str,
    model_version: str,
    tracking_uri: str,
    prometheus_url: str,
    namespace: str = "",
    deployment_mode: str = "knative",
    policy: str = DEFAULT_POLICY,
    service_account: str = SERVICE_ACCOUNT,
    pipeline_run_id: str = "",
    *,
    api=None,
    validate: Callable[[dict], None] | None = None,
    poll: float = 2.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Rolls ``model_version`` out (see the module docstring); returns the result dict that
    :func:`markdown` and :func:`html` render (``outcome`` is one of :data:`OUTCOMES`)."""
    check_name(model_name)
    if deployment_mode not in MODES:
        raise RolloutInputError(f"deployment_mode {deployment_mode!r}: one of {', '.join(MODES)}")
    if not model_version:
        raise RolloutInputError("no model_version: the rollout needs the version to roll out")
    if not tracking_uri:
        raise RolloutInputError("no mlflow_tracking_uri: the rollout reads the version there")
    if not prometheus_url:
        raise RolloutInputError("no prometheus_url: the gates read the model servers' metrics")
    pol = load_policy(policy)

    reg = registry.Registry(tracking_uri, actor=_actor(pipeline_run_id))
    reg.ping()
    version = reg.get(model_name, model_version)
    if not version.serving_uri:
        raise RolloutInputError(
            f"model {model_name} version {version.version} has no serving copy (tag "
            f"{registry.SERVING_URI_TAG}): push it before the rollout"
        )
    if not version.manifest_sha256:
        raise RolloutInputError(f"model {model_name} version {version.version} has no manifest")
    candidate = ModelRef(model_name, version.version, version.serving_uri, version.manifest_sha256)
    namespace = inferenceservice.pod_namespace(namespace)
    dep = inferenceservice.cluster_deployment(
        model_name, namespace, deployment_mode, service_account, api, validate=validate, poll=poll
    )
    before = dep.get()
    stable_before = before.stable.version if before and before.stable else ""
    started = clock()

    mine = before is not None and before.annotations.get(engine.key("candidate")) == version.version
    if before is not None and stable_before == version.version and not mine:
        out = engine.Outcome(
            engine.DEPLOYED,
            version.version,
            0,
            f"version {version.version} already is the stable version (push's first deploy): "
            "nothing to roll out",
        )
    else:
        out = engine.Rollout(
            dep, reg, prometheus_url, pol, model_name, candidate, clock=clock, sleep=sleep
        ).run()

    after = dep.get()
    status = engine.status(dep)
    champion = reg.champion(model_name)
    result = {
        "model_name": model_name,
        "version": version.version,
        "outcome": out.phase,
        "reason": out.reason,
        "step": out.step,
        "checks": out.checks,
        "strategy": pol.strategy,
        "plan": [percent for _, percent in pol.plan()],
        "gates": [
            {"name": g.name, "type": g.type, "threshold": g.threshold, "direction": g.direction}
            for g in pol.all_gates()
        ],
        "policy": policy or DEFAULT_POLICY,
        "interval_seconds": pol.interval_seconds,
        "window_seconds": pol.window_seconds,
        "min_requests": pol.min_requests,
        "max_failed_checks": pol.max_failed_checks,
        "on_inconclusive": f"{pol.max_inconclusive} then {pol.on_inconclusive}",
        "namespace": namespace,
        "inference_service": model_name,
        "deployment_mode": deployment_mode,
        "prometheus_url": prometheus_url,
        "stable_before": stable_before,
        "stable_after": after.stable.version if after and after.stable else "",
        "candidate_after": after.candidate.version if after and after.candidate else "",
        "candidate_percent": after.candidate_percent if after else 0,
        "annotations": status.get("rollout", {}),
        "registry_state": reg.get(model_name, version.version).state,
        "champion": champion.version if champion else "",
        "seconds": round(clock() - started, 1),
    }
    if out.phase not in OUTCOMES:
        # Someone else ended it (an operator's `loopline rollout`): report what they left.
        result["outcome"] = out.phase or "stopped"
    log.info(
        "model %s version %s: %s (%s)", model_name, version.version, result["outcome"], out.reason
    )
    return result


def settle_run(
    model_name: str,
    tracking_uri: str,
    namespace: str = "",
    deployment_mode: str = "knative",
    service_account: str = SERVICE_ACCOUNT,
    serving_target: str = "kserve",
    pipeline_run_id: str = "",
    *,
    api=None,
) -> dict:
    """The exit handler: ``outcome`` is ``skipped`` (serving_target none), ``none`` (no
    InferenceService, or no rollout recorded on it), or the phase
    ``components.lib.rollout.settle`` left."""
    if serving_target not in SERVING_TARGETS:
        raise RolloutInputError(
            f"serving_target {serving_target!r}: one of {', '.join(SERVING_TARGETS)}"
        )
    result = {"model_name": model_name, "serving_target": serving_target, "version": ""}
    if serving_target == "none":
        return {**result, "outcome": "skipped", "reason": "serving_target is none: no deployment"}
    check_name(model_name)
    if not tracking_uri:
        raise RolloutInputError("no mlflow_tracking_uri: settling makes the registry agree")
    namespace = inferenceservice.pod_namespace(namespace)
    dep = inferenceservice.cluster_deployment(
        model_name, namespace, deployment_mode, service_account, api
    )
    if dep.get() is None:
        return {
            **result,
            "outcome": "none",
            "reason": f"no InferenceService {namespace}/{model_name}",
        }
    reg = registry.Registry(tracking_uri, actor=_actor(pipeline_run_id))
    reg.ping()
    out = engine.settle(dep, reg, model_name)
    if out is None:
        return {
            **result,
            "outcome": "none",
            "reason": "no rollout recorded on the InferenceService",
        }
    log.info("model %s version %s settled: %s (%s)", model_name, out.version, out.phase, out.reason)
    return {**result, "outcome": out.phase, "version": out.version, "reason": out.reason}


# --------------------------------------------------------------------------- the report


def _value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


MARK = {"pass": "pass", "fail": "**FAIL**", "inconclusive": "_inconclusive_"}


def timeline(result: dict) -> tuple[list[str], list[list[str]]]:
    """The checks as a table: header and rows (one per check, each gate's value)."""
    gates = result["gates"]
    header = ["#", "time (UTC)", "step", "candidate %", "requests"]
    for g in gates:
        op = "<=" if g["direction"] == "below" else ">="
        header.append(f"{g['name']} ({op} {g['threshold']:g})")
    header += ["verdict", "why"]
    rows = []
    for i, check in enumerate(result["checks"], 1):
        by_gate = {r["gate"]: r for r in check.get("gates", [])}
        row = [
            str(check.get("check", i)),
            str(check.get("time", "")).replace("+00:00", ""),
            str(check.get("step", "")),
            str(check.get("percent", "")),
            _value(check.get("requests")),
        ]
        for g in gates:
            r = by_gate.get(g["name"])
            row.append("n/a" if r is None else f"{_value(r['value'])} ({r['verdict']})")
        row.append(check["verdict"])
        row.append("" if check["verdict"] == "pass" else check.get("reason", ""))
        rows.append(row)
    return header, rows


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(result: dict) -> str:
    lines = [
        f"# rollout: {result['model_name']} version {result['version']}: {result['outcome']}",
        "",
        f"{_cell(result['reason'])}",
        "",
        "| | |",
        "|---|---|",
        f"| outcome | **{result['outcome']}** |",
        f"| strategy | {result['strategy']}, steps {', '.join(f'{p}%' for p in result['plan'])} "
        f"(policy `{_cell(result['policy'][:60])}`) |",
        f"| checks | every {result['interval_seconds']:g} s over a {result['window_seconds']:g} s "
        f"window; at least {result['min_requests']} requests; {result['max_failed_checks']} "
        f"failed checks roll back; inconclusive: {result['on_inconclusive']} |",
        f"| InferenceService | `{result['namespace']}/{result['inference_service']}` "
        f"({result['deployment_mode']} mode) |",
        f"| serving before | version {result['stable_before'] or 'none'} |",
        f"| serving after | version {result['stable_after'] or 'none'}"
        + (
            f", candidate {result['candidate_after']} at {result['candidate_percent']}%"
            if result["candidate_after"]
            else ""
        )
        + " |",
        f"| registry | version {result['version']} is {result['registry_state']}; champion "
        f"{result['champion'] or 'none'} |",
        f"| Prometheus | {result['prometheus_url']} |",
        "",
        "## Checks",
        "",
    ]
    header, rows = timeline(result)
    if rows:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in rows:
            cells = [_cell(c) for c in row]
            cells[-2] = MARK.get(cells[-2], cells[-2])
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("No checks in this run.")
    ann = result.get("annotations") or {}
    if ann:
        lines += ["", "## State on the InferenceService", "", "| annotation | value |", "|---|---|"]
        for name in sorted(ann):
            value = ann[name]
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            lines.append(f"| `{engine.key(name)}` | {_cell(value)} |")
    lines.append("")
    return "\n".join(lines)


def html(result: dict) -> str:
    """A one-page summary (the outcome and the timeline) for the KFP UI's visualization."""
    esc = html_lib.escape
    color = {
        engine.PROMOTED: "#1b7f3b",
        engine.DEPLOYED: "#1b7f3b",
        engine.ROLLED_BACK: "#b3261e",
        engine.PAUSED: "#a86400",
    }.get(result["outcome"], "#444")
    header, rows = timeline(result)
    verdict_color = {"pass": "#1b7f3b", "fail": "#b3261e", "inconclusive": "#a86400"}
    body = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>rollout</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left}"
        "</style></head><body>",
        f"<h2>{esc(result['model_name'])} version {esc(result['version'])}: "
        f"<span style='color:{color}'>{esc(result['outcome'])}</span></h2>",
        f"<p>{esc(result['reason'])}</p>",
        f"<p>{esc(result['strategy'])} {esc(', '.join(f'{p}%' for p in result['plan']))}; "
        f"serving before: {esc(result['stable_before'] or 'none')}, after: "
        f"{esc(result['stable_after'] or 'none')}; registry: version {esc(result['version'])} "
        f"is {esc(result['registry_state'])}, champion {esc(result['champion'] or 'none')}.</p>",
    ]
    if rows:
        body.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = [f"<td>{esc(c)}</td>" for c in row]
            cells[-2] = (
                f"<td style='color:{verdict_color.get(row[-2], '#444')}'><b>{esc(row[-2])}</b></td>"
            )
            body.append("<tr>" + "".join(cells) + "</tr>")
        body.append("</table>")
    else:
        body.append("<p>No checks in this run.</p>")
    body.append("</body></html>")
    return "\n".join(body)
