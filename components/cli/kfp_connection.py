"""What every command that talks to Kubeflow Pipelines shares (``schedule``, ``upload``,
``submit``): the connection options, the client, and a failure of the API as one line.

The client comes from :data:`CLIENT_FACTORY` (``args -> kfp.Client``; tests may put another
there); :func:`talking` wraps the calls so a refused or unreachable API becomes a CliError
naming the host and the HTTP status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator

from components.cli.common import CliError
from components.lib import kfp_api

CONNECTION_HELP = f"""\
Connection: --host (default ${kfp_api.HOST_ENV}; none: kfp.Client's own, in a pod the
in-cluster ml-pipeline.kubeflow service, outside one the kube config's API-server proxy).
Credentials, first found: --token (default ${kfp_api.TOKEN_ENV}), sent as the bearer token;
the pod's projected KFP service-account token ($KF_PIPELINES_SA_TOKEN_PATH, default
/var/run/secrets/kubeflow/pipelines/token, audience pipelines.kubeflow.org); none.
--namespace (default ${kfp_api.NAMESPACE_ENV}): the Kubeflow profile namespace (multi-user
mode), where pipelines, experiments and runs are looked up and created.
"""


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with ``--host``, ``--token`` and ``--namespace``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection to the KFP API")
    group.add_argument(
        "--host",
        metavar="URL",
        help=f"the KFP API, e.g. http://ml-pipeline-ui.kubeflow (default: ${kfp_api.HOST_ENV}; "
        "none: kfp.Client's in-cluster default)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"a bearer token for the KFP API (default: ${kfp_api.TOKEN_ENV}; none: the pod's "
        "KFP service-account token, if any)",
    )
    group.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help=f"the Kubeflow profile namespace (multi-user; default: ${kfp_api.NAMESPACE_ENV}): "
        "pipelines, experiments and runs live there",
    )
    return parent


def resolve(args: argparse.Namespace) -> None:
    """Fills --host, --token and --namespace from the environment where not given."""
    args.host = args.host or os.environ.get(kfp_api.HOST_ENV) or None
    args.token = args.token or os.environ.get(kfp_api.TOKEN_ENV) or None
    args.namespace = args.namespace or os.environ.get(kfp_api.NAMESPACE_ENV) or None


def host_text(args: argparse.Namespace) -> str:
    return args.host or "kfp.Client's default (in-cluster ml-pipeline service or kube config)"


def _client(args: argparse.Namespace):
    if not getattr(args, "verbose", False):
        # urllib3 logs each retry as a warning: the failure is reported once, on one line.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    if not args.host and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if not any(os.path.isfile(p) for p in kube_config.split(os.pathsep)):
            raise CliError(
                f"no KFP API to talk to: pass --host URL or set {kfp_api.HOST_ENV} (not in a "
                "pod, and no kube config for kfp.Client's proxy)"
            )
    return kfp_api.connect(args.host, args.token, args.namespace)


# args -> a kfp.Client (tests may put another here)
CLIENT_FACTORY: Callable[[argparse.Namespace], object] = _client


def api_error(exc: Exception, host: str, namespace: str | None = None) -> CliError | None:
    """A connection failure or an HTTP refusal, as one line; None for anything else."""
    import urllib3
    from kfp_server_api import ApiException

    if isinstance(exc, ApiException):
        if not exc.status:
            return CliError(f"cannot reach the KFP API at {host}: {exc.reason}")
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = str(exc.body or "")[:200]
        detail = f": {' '.join(message.split())}" if message else ""
        if exc.status in (401, 403):
            where = f"namespace {namespace}" if namespace else "this namespace"
            hint = (
                f"pass --token or set {kfp_api.TOKEN_ENV}"
                if exc.status == 401
                else f"the identity has no access to {where} or this API"
            )
            return CliError(
                f"the KFP API at {host} refused the request: HTTP {exc.status} "
                f"{exc.reason or ''}{detail} ({hint})"
            )
        return CliError(
            f"the KFP API at {host} answered HTTP {exc.status} {exc.reason or ''}{detail}"
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError):
        reason = getattr(exc, "reason", None) or exc
        return CliError(
            f"cannot reach the KFP API at {host}: {' '.join(str(reason).split())[:300]}"
        )
    return None


@contextlib.contextmanager
def talking(args: argparse.Namespace) -> Iterator[None]:
    """Runs the block; an API refusal or an unreachable host becomes a one-line CliError."""
    try:
        yield
    except (kfp_api.KfpError, CliError):
        raise
    except Exception as exc:
        mapped = api_error(exc, host_text(args), args.namespace)
        if mapped is None:
            raise
        raise mapped from exc


def client(args: argparse.Namespace):
    """The client for ``args`` (inside :func:`talking`: the constructor already asks the API)."""
    with talking(args):
        return CLIENT_FACTORY(args)
