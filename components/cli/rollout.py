"""``loopline rollout ...``: a model's progressive rollout on its KServe InferenceService
(components/lib/rollout.py) from the command line: status, and an operator's promote or
rollback, at once.

The Kubernetes API client comes from :data:`API_FACTORY` (``args -> CustomObjectsApi``):
the pod's service account in a cluster, else the kube config (``--kubeconfig``,
``--context``); tests put a fake API there.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from components.cli.common import CliError, client_defaults, print_json, tracking_options
from components.cli.common import tracking_uri as tracking_uri_of

NAMESPACE_ENV = "LOOPLINE_NAMESPACE"
PROMETHEUS_ENV = "LOOPLINE_PROMETHEUS_URL"
ACTIVE = ("running", "paused", "promoting", "rolling_back")

EPILOG = """\
The rollout keeps its state in the InferenceService's loopline.io/rollout-* annotations
and in the registry; these commands read and change both. promote and rollback act at once
(a pipeline's rollout that is still running sees the change at its next check and stops),
and record --reason and the operator (--actor) in the registry's history and in the
annotations loopline.io/rollout-actor and loopline.io/rollout-action-version, the ones
manifests/rollout's overlays write.

Exit codes: 0 done; 1 a failure on one line (no such InferenceService, no rollout in
progress, cannot reach the Kubernetes API or the registry); 2 a usage error.
"""


def _cluster_api(args: argparse.Namespace):
    import logging

    from components.lib.inferenceservice import cluster_api

    if not getattr(args, "verbose", False):
        # urllib3 logs each retry as a warning: the failure is reported once, on one line.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    return cluster_api(args.kubeconfig, args.context)


# args -> a kubernetes.client.CustomObjectsApi (or anything with its *_namespaced_custom_object)
API_FACTORY: Callable[[argparse.Namespace], object] = _cluster_api


def kube_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help=f"the InferenceService's namespace (default: ${NAMESPACE_ENV}, else the pod's own "
        "or the kube config context's, else 'default')",
    )
    parent.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="a kube config file (default: in-cluster config in a pod, else $KUBECONFIG or "
        "~/.kube/config)",
    )
    parent.add_argument("--context", metavar="NAME", help="the kube config context to use")
    return parent


def add_commands(groups: argparse._SubParsersAction) -> None:
    parents = [tracking_options(), kube_options()]
    group = groups.add_parser(
        "rollout",
        help="a model's rollout on KServe: status, promote, rollback",
        description="A model's progressive rollout on its KServe InferenceService.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    cmd = commands.add_parser(
        "status",
        parents=parents,
        help="the rollout's strategy, step, traffic, checks and the registry states",
        description="What serves MODEL now (versions and traffic percent), its rollout "
        "(strategy, phase, step, percent, failed / inconclusive checks, the last check's gate "
        "values, the operator's last action) and, with a tracking URI, the registry state of "
        "each version; with --prometheus-url, each version's requests, error rate and p99 "
        "latency over --window seconds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("model", metavar="MODEL", help="the model (its InferenceService's name)")
    cmd.add_argument(
        "--prometheus-url",
        metavar="URL",
        help=f"the Prometheus that scrapes the model servers (default: ${PROMETHEUS_ENV}; none: "
        "no live figures)",
    )
    cmd.add_argument(
        "--window", type=float, default=300.0, metavar="SECONDS", help="for the live figures"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.set_defaults(func=status)

    for name, verb, what in (
        (
            "promote",
            "promote",
            "the candidate becomes the stable version at 100 percent now, past the gates",
        ),
        (
            "rollback",
            "roll back",
            "the candidate is removed now; the stable version takes 100 percent",
        ),
    ):
        cmd = commands.add_parser(
            name,
            parents=parents,
            help=f"{verb} the rollout in progress now ({what.split(';')[0].split(',')[0]})",
            description=f"An operator's decision: {what}. The registry moves the version "
            f"({'canary -> production; the champion alias moves' if name == 'promote' else 'canary -> rolled_back'}); "
            "the reason and the actor are recorded.",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("model", metavar="MODEL", help="the model (its InferenceService's name)")
        cmd.add_argument("--reason", required=True, metavar="TEXT", help="why (required; recorded)")
        cmd.add_argument(
            "--actor", metavar="NAME", help="who (default: $LOOPLINE_ACTOR or user@host)"
        )
        cmd.set_defaults(func=promote if name == "promote" else rollback, action=name)


# --------------------------------------------------------------------------- helpers


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return args.namespace
    if os.environ.get(NAMESPACE_ENV):
        return os.environ[NAMESPACE_ENV]
    from components.lib.inferenceservice import NAMESPACE_FILE

    if os.path.isfile(NAMESPACE_FILE):
        with open(NAMESPACE_FILE) as fh:
            return fh.read().strip()
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(args.kubeconfig)
        if args.context:
            contexts, _ = config.list_kube_config_contexts(args.kubeconfig)
            active = next((c for c in contexts if c["name"] == args.context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # noqa: BLE001 - no kube config: the API factory says so
        return "default"


def _unreachable(exc: Exception) -> CliError:
    return CliError(f"cannot reach the Kubernetes API: {' '.join(str(exc).split())[:300]}")


def _call(func, *a, **kw):
    """Runs one API-facing call; a connection failure becomes 'cannot reach the API'."""
    import urllib3

    try:
        return func(*a, **kw)
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise _unreachable(exc) from exc


def _deployment(args: argparse.Namespace):
    """(KServeDeployment in the object's own mode, its Traffic); fails when there is none."""
    from kubernetes.client.exceptions import ApiException

    from components.lib.inferenceservice import (
        GROUP,
        PLURAL,
        VERSION,
        KServeDeployment,
        check_name,
        mode_of,
    )

    check_name(args.model)
    namespace = _namespace(args)
    api = API_FACTORY(args)
    try:
        obj = _call(api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, args.model)
    except ApiException as exc:
        if exc.status == 404:
            raise CliError(
                f"no InferenceService {namespace}/{args.model} (is --namespace right? "
                "a model's first version is deployed by the pipeline's push)"
            ) from None
        raise CliError(
            f"the Kubernetes API refused to read InferenceService {namespace}/{args.model}: "
            f"HTTP {exc.status} {exc.reason or ''}".strip()
        ) from None
    dep = KServeDeployment(api, args.model, namespace, mode_of(obj))
    traffic = _call(dep.get)
    if traffic is None:
        raise CliError(f"no InferenceService {namespace}/{args.model}")
    return dep, traffic


def _registry(args: argparse.Namespace, actor: str | None = None, required: bool = True):
    try:
        uri = tracking_uri_of(args)
    except CliError:
        if required:
            raise
        return None
    client_defaults()
    from components.lib.registry import Registry

    registry = Registry(uri, actor=actor)
    registry.ping()
    return registry


def _registry_states(registry, model: str, versions: list[str]) -> dict[str, str]:
    out = {}
    champion = registry.champion(model)
    for version in versions:
        try:
            state = registry.get(model, version).state
        except Exception as exc:  # noqa: BLE001 - reported beside the others
            state = f"unknown ({' '.join(str(exc).split())[:80]})"
        if champion is not None and champion.version == version:
            state += " (champion)"
        out[version] = state
    return out


def _live(url: str, model: str, versions: list[str], window: float) -> dict[str, dict]:
    from components.lib import gates

    prometheus = gates.Prometheus(url, timeout=5)
    out = {}
    for version in versions:
        row = {}
        for name in ("requests", "error_rate", "latency_p99"):
            try:
                row[name] = prometheus.scalar(gates.query(name, model, version, window))
            except gates.QueryError as exc:
                row[name] = f"unavailable: {' '.join(str(exc).split())[:120]}"
        out[version] = row
    return out


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- commands


def status(args: argparse.Namespace) -> int:
    from components.lib import rollout

    dep, traffic = _deployment(args)
    info = _call(rollout.status, dep)
    ro = info["rollout"]
    versions = [v for v in (info["stable"], info["candidate"]) if v]
    for version in (ro.get("candidate"), ro.get("stable")):
        if version and version not in versions:
            versions.append(version)
    registry = _registry(args, required=False)
    info["registry"] = _registry_states(registry, args.model, versions) if registry else None
    url = args.prometheus_url or os.environ.get(PROMETHEUS_ENV, "")
    info["live"] = _live(url, args.model, versions, args.window) if url else None
    info.update(
        model=args.model, namespace=dep.namespace, mode=dep.mode, in_progress=_in_progress(ro)
    )
    if args.json:
        print_json(info)
        return 0

    pct = info["candidate_percent"]
    lines = [
        f"InferenceService {dep.namespace}/{args.model} ({dep.mode} mode): "
        + ("ready" if info["ready"] else f"not ready: {traffic.detail}"),
    ]
    serving = f"version {info['stable'] or '?'} (stable)"
    if info["candidate"]:
        share = "mirrored traffic only" if info["mirror"] else f"{pct}%"
        serving = (
            f"version {info['stable']} (stable) {100 - (0 if info['mirror'] else pct)}%, "
            f"version {info['candidate']} (candidate) {share}"
        )
    lines.append(f"serving:       {serving}")
    if not ro.get("candidate"):
        lines.append("rollout:       none recorded")
    else:
        step = int(ro.get("step", 0) or 0)
        lines.append(
            f"rollout:       {ro.get('strategy', '?')} of version {ro['candidate']} over stable "
            f"{ro.get('stable', '?')}: {ro.get('phase', '?')}"
            + ("" if info["in_progress"] else " (not in progress)")
        )
        lines.append(
            f"step:          {step} (index; percent {ro.get('percent', '?')}), passed checks "
            f"at this step {ro.get('passed', 0)}"
        )
        lines.append(
            f"checks:        {ro.get('checks', 0)}: failed {ro.get('failed', 0)}, "
            f"inconclusive {ro.get('inconclusive', 0)}"
        )
        verdict = ro.get("verdict")
        if isinstance(verdict, dict):
            values = ", ".join(
                f"{g}={_fmt(v)}" for g, v in sorted((verdict.get("gates") or {}).items())
            )
            lines.append(
                f"last check:    {verdict.get('verdict')} on {_fmt(verdict.get('requests'))} "
                f"requests: {values or '-'}"
            )
            if verdict.get("verdict") != "pass" and verdict.get("reason"):
                lines.append(f"               {verdict['reason']}")
        for label, name in (("started", "started"), ("updated", "updated"), ("reason", "reason")):
            if ro.get(name):
                lines.append(f"{label + ':':<15}{ro[name]}")
        if ro.get("action"):
            lines.append(
                f"pending:       {ro['action']} (loopline.io/rollout-action), taken at the "
                "rollout's next check"
            )
        if ro.get("actor"):
            lines.append(
                f"operator:      {ro['actor']}"
                + (f" (about version {ro['action_version']})" if ro.get("action_version") else "")
            )
    if info["registry"] is not None:
        states = ", ".join(f"version {v} {s}" for v, s in info["registry"].items())
        lines.append(f"registry:      {states or '-'}")
    else:
        lines.append("registry:      (no --tracking-uri / $MLFLOW_TRACKING_URI: not read)")
    if info["live"] is not None:
        for version, row in info["live"].items():
            lines.append(
                f"live {version:<9}last {args.window:g} s: requests {_fmt(row['requests'])}, "
                f"error rate {_fmt(row['error_rate'])}, p99 {_fmt(row['latency_p99'])} s"
            )
    print("\n".join(lines))
    return 0


def _in_progress(ro: dict) -> bool:
    return bool(ro.get("candidate")) and ro.get("phase") in ACTIVE


def _decide(args: argparse.Namespace) -> int:
    from components.lib import rollout
    from components.lib.registry import default_actor

    if not args.reason.strip():
        raise CliError("--reason is empty: an operator's decision needs a reason")
    dep, traffic = _deployment(args)
    ro = _call(rollout.status, dep)["rollout"]
    if not _in_progress(ro):
        last = (
            f"the last one, version {ro['candidate']}, is {ro.get('phase', '?')}"
            if ro.get("candidate")
            else "none is recorded on it"
        )
        raise CliError(
            f"no rollout in progress on InferenceService {dep.namespace}/{args.model}: {last}"
        )
    actor = args.actor or default_actor()
    registry = _registry(args, actor=actor)
    version = ro["candidate"]
    act = rollout.promote if args.action == "promote" else rollout.rollback
    out = _call(act, dep, registry, args.model, f"{args.reason} (by {actor})")
    # The operator's record, in the annotations manifests/rollout's overlays write.
    _call(
        dep.annotate,
        {rollout.key("actor"): actor, rollout.key("action_version"): version},
    )
    after = registry.get(args.model, version)
    print(
        f"{args.model} version {version}: {out.phase} by {actor} (was {ro.get('phase')} at step "
        f"{ro.get('step', '?')}, {ro.get('percent', '?')}%); registry: {after.state}"
    )
    return 0


def promote(args: argparse.Namespace) -> int:
    return _decide(args)


def rollback(args: argparse.Namespace) -> int:
    return _decide(args)
