"""The model registry: MLflow's, through its tracking server's API only, with Loopline's state machine.

Every version of a model is logged in MLflow's model format (the sklearn flavor, skops
serialization trusting exactly :data:`components.lib.artifacts.SKOPS_TRUSTED_TYPES`, a
signature and an input example, so MLflow-aware servers can load it, and the ``loopline_*``
files the caller adds: :data:`REQUEST_SCHEMA_FILE`, :data:`CHECK_DATA_FILE`) with its
lineage as version tags, and a manifest of every file's sha256 (``manifest_sha256``) that
:func:`components.lib.artifacts.load_mlflow_model` checks before anything is deserialized.

This module is the only place that changes a version's state. States and the legal moves
(:data:`TRANSITIONS`)::

    candidate -> staging | rejected
    staging   -> canary | production (only a model's first production version)
    canary    -> production | rolled_back
    production -> archived
    archived  -> production (only as a rollback: rollback=True)
    rejected, rolled_back: final

A version entering production pushes the current one (if any) to ``archived`` in the same
step, so a model name has at most one production version, and the ``champion`` alias always
points at it (``models:/NAME@champion``). An operator may force any other move
(``force=True`` with a reason); it is recorded as forced. An illegal move raises
:class:`IllegalTransition`, naming both states, and changes nothing.

How it is kept true through nothing but the tracking server's API (MLflow has no
compare-and-set on aliases and no alias history):

* **Lock.** Every change to a model runs under its lock: a registered model named
  ``<name>.lock``. Creating a registered model is atomic (its name is unique in the store),
  so exactly one process holds it; it is deleted when done. A waiter that sees the same
  holder for longer than ``lock_stale_after`` seconds (by its own monotonic clock, so clock
  skew does not matter) breaks the lock by renaming it to ``<name>.lock.stale.<token>``: a
  rename to a name that already exists fails, so two waiters cannot both break it and a
  fresh lock is never broken in place of the stale one. The holder checks that it still
  holds the lock before it records anything. (The limit: a holder stalled for longer than
  ``lock_stale_after`` inside its few API calls may find its lock broken; it then refuses
  to record, but a write already sent is not undone.)
* **History.** Each change is one registered-model tag ``loopline.history.<seq>`` (JSON:
  time, actor, reason, forced, rollback, and the moves: version, from, to), written once
  under the lock and never rewritten: an append-only log, with times made non-decreasing.
  It is the source of truth: a version's state is the last state the log gives it
  (``candidate`` when it has none). The version tag ``loopline.state`` and the ``champion``
  alias are views of it, written right after the log entry; a process that died in between
  leaves them behind, and the next change under the lock repairs them. The log answers
  "which version served production at time T" (:meth:`Registry.production_at`).
* **Monitoring log.** Each monitored window of served traffic is one registered-model tag
  ``loopline.monitor.<seq>`` (JSON: a :class:`components.lib.retrain.WindowRecord`: window
  id and bounds, signals, rows, and the retrain decision with its reason), appended under the
  same lock and never rewritten, with times made non-decreasing
  (:meth:`Registry.monitor_window`, :meth:`Registry.monitoring_log`). The policy is
  :func:`components.lib.retrain.decide`; this module only stores. Under the lock a run reads
  the log, returns the record already there for its window id (a re-run is idempotent), else
  decides on the log as it is and appends: two concurrent runs are serialized, so the second
  decides on a log that holds the first's trigger (at most one retrain per decision).

mlflow is imported inside the functions that need it: this module imports in every image
that has the pipeline lock (mlflow-skinny, skops).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import math
import os
import random
import re
import shutil
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from components.lib import artifacts, retrain

log = logging.getLogger("loopline.registry")

STATES = ("candidate", "staging", "canary", "production", "archived", "rejected", "rolled_back")
FINAL_STATES = ("rejected", "rolled_back")
INITIAL_STATE = "candidate"
PRODUCTION = "production"
ARCHIVED = "archived"
# The legal moves (without force). staging -> production only for a model that has never had
# a production version; archived -> production only with rollback=True.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "candidate": ("staging", "rejected"),
    "staging": ("canary", "production"),
    "canary": ("production", "rolled_back"),
    "production": ("archived",),
    "archived": ("production",),
    "rejected": (),
    "rolled_back": (),
}
CHAMPION_ALIAS = "champion"

# Lineage every version must carry (register refuses a version without them).
REQUIRED_LINEAGE = (
    "sha256",  # of model.joblib as train saved it (verified before it is loaded)
    "sklearn_version",
    "data_sha256",  # the train split
    "eval_data_sha256",
    "holdout_sha256",
    "schema_version",
    "transform_version",
    "code_version",
    "code_revision",
    "pipeline_run_id",
    "params",
    "metrics",
)

# Tags (MLflow allows 250-character keys and 100,000-character registry tag values).
KIND_TAG = "loopline.kind"  # on registered models: "model" or "lock"
STATE_TAG = "loopline.state"
LINEAGE_TAG = "loopline.lineage"  # canonical JSON: the lineage exactly as registered
LINEAGE_PREFIX = "lineage."  # one readable tag per lineage key, for the MLflow UI and search
STATISTICS_TAG = "loopline.statistics_uri"
MANIFEST_TAG = "loopline.manifest_sha256"
# Where push put the version's content-addressed copy for serving (s3://.../<manifest sha256>/).
SERVING_URI_TAG = "loopline.serving_uri"
REGISTERED_BY_TAG = "loopline.registered_by"
HISTORY_PREFIX = "loopline.history."
MONITOR_PREFIX = "loopline.monitor."  # the monitoring log (retrain decisions per window)
LOCK_SUFFIX = ".lock"
LOCK_TOKEN_TAG = "loopline.lock.token"
LOCK_OWNER_TAG = "loopline.lock.owner"
LOCK_SINCE_TAG = "loopline.lock.since"
MODEL_ARTIFACT_PATH = "model"
# Files that travel with a version inside its MLflow model directory (``register``'s
# ``extra_files``), covered by its manifest: the request schema the serving image checks
# requests against (validate_data's ``schema.json``), and the holdout rows it checks its fast
# predict path against scikit-learn on, at load.
EXTRA_FILE_PREFIX = "loopline_"
REQUEST_SCHEMA_FILE = "loopline_request_schema.json"
CHECK_DATA_FILE = "loopline_check_rows.parquet"
# The monitoring reference train computed (detect_drift reads it, never the training data):
# the drift profile of the training split and the eval split's rows with target and prediction.
DRIFT_PROFILE_FILE = "loopline_drift_profile.json"
REFERENCE_ROWS_FILE = "loopline_reference_rows.parquet"
EXPERIMENT_PREFIX = "loopline-models/"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why in one line."""


class NotFound(RegistryError):
    """No such model or version."""


class IllegalTransition(RegistryError):
    """A state change the state machine does not allow (nothing was changed)."""

    def __init__(self, message: str, from_state: str | None = None, to_state: str | None = None):
        super().__init__(message)
        self.from_state = from_state
        self.to_state = to_state


class LockTimeout(RegistryError):
    """The model's lock stayed held by another process for longer than ``lock_timeout``."""


class LockLost(RegistryError):
    """This process's lock was broken (as stale) before it recorded anything."""


class Unavailable(RegistryError):
    """The tracking server does not answer."""


@dataclass(frozen=True)
class Version:
    """One registered version, as the registry sees it now."""

    name: str
    version: str
    state: str
    lineage: dict
    statistics_uri: str
    model_uri: str  # models:/NAME/VERSION
    manifest_sha256: str
    created: datetime  # UTC, the server's clock
    source: str = ""  # where MLflow keeps its files (mlflow-artifacts:/...)
    run_id: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    serving_uri: str = ""  # push's copy for the storage initializer, "" before a push


@dataclass(frozen=True)
class Transition:
    """One recorded state change. Changes recorded together (a promotion and the old
    champion's archiving) share their ``seq`` and ``time``; ``from_state`` is ``None`` for
    the registration itself."""

    seq: int
    name: str
    version: str
    from_state: str | None
    to_state: str
    time: datetime  # UTC
    actor: str
    reason: str
    force: bool = False
    rollback: bool = False


def default_actor() -> str:
    """``LOOPLINE_ACTOR`` if set, else ``user@host``."""
    if os.environ.get("LOOPLINE_ACTOR"):
        return os.environ["LOOPLINE_ACTOR"]
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (a container's arbitrary uid)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def check_name(name: str) -> str:
    """A model name this registry accepts (letters, digits, ``_ . -``; not a lock's name)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(
            f"model name {name!r} is not 1-200 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)"
        )
    if name.endswith(LOCK_SUFFIX) or f"{LOCK_SUFFIX}." in name:
        raise RegistryError(
            f"model name {name!r}: names with '{LOCK_SUFFIX}' are the registry's locks"
        )
    return name


def check_transition(
    name: str,
    version: str,
    from_state: str,
    to_state: str,
    *,
    had_production: bool,
    force: bool = False,
    rollback: bool = False,
) -> None:
    """Raises :class:`IllegalTransition` unless ``from_state -> to_state`` is allowed.

    Args:
        had_production: Whether any version of the model has ever been in production
            (staging -> production is allowed only when not).
        force: An operator's override: any move to another known state.
        rollback: Required for archived -> production, refused for anything else.
    """
    where = f"model {name!r} version {version}"
    if to_state not in STATES:
        raise IllegalTransition(
            f"{where}: unknown state {to_state!r} (states: {', '.join(STATES)})",
            from_state,
            to_state,
        )
    if to_state == from_state:
        raise IllegalTransition(
            f"{where}: {from_state} -> {to_state}: it is already {from_state}", from_state, to_state
        )
    if rollback and (from_state, to_state) != (ARCHIVED, PRODUCTION):
        raise IllegalTransition(
            f"{where}: {from_state} -> {to_state} is not a rollback "
            "(rollback applies only to archived -> production)",
            from_state,
            to_state,
        )
    if force:
        return
    allowed = TRANSITIONS[from_state]
    if to_state not in allowed:
        tail = (
            f"{from_state} is final"
            if not allowed
            else f"from {from_state} only: {', '.join(allowed)}"
        )
        raise IllegalTransition(
            f"{where}: {from_state} -> {to_state} is not allowed ({tail}; an operator may "
            "force it with a reason)",
            from_state,
            to_state,
        )
    if (from_state, to_state) == ("staging", PRODUCTION) and had_production:
        raise IllegalTransition(
            f"{where}: staging -> production is allowed only for a model's first production "
            "version, and this model has had one: go through canary (or force it)",
            from_state,
            to_state,
        )
    if (from_state, to_state) == (ARCHIVED, PRODUCTION) and not rollback:
        raise IllegalTransition(
            f"{where}: archived -> production is allowed only as a rollback (rollback=True)",
            from_state,
            to_state,
        )


# --------------------------------------------------------------------------- the history log


def _history(name: str, tags: Mapping[str, str]) -> list[dict]:
    """The model's history records, in sequence order."""
    records = []
    for key, value in tags.items():
        if key.startswith(HISTORY_PREFIX):
            records.append(json.loads(value))
    return sorted(records, key=lambda r: r["seq"])


def _transitions(name: str, records: list[dict]) -> list[Transition]:
    out = []
    for record in records:
        when = datetime.fromisoformat(record["time"])
        for move in record["moves"]:
            out.append(
                Transition(
                    seq=record["seq"],
                    name=name,
                    version=str(move["version"]),
                    from_state=move["from"],
                    to_state=move["to"],
                    time=when,
                    actor=record["actor"],
                    reason=move.get("reason") or record["reason"],
                    force=bool(record.get("force")),
                    rollback=bool(record.get("rollback")),
                )
            )
    return out


def _states(records: list[dict]) -> dict[str, str]:
    """Each version's state by the log (a version the log does not name is a candidate)."""
    states: dict[str, str] = {}
    for record in records:
        for move in record["moves"]:
            states[str(move["version"])] = move["to"]
    return states


def _had_production(records: list[dict]) -> bool:
    return any(m["to"] == PRODUCTION for r in records for m in r["moves"])


def _monitor_log(tags: Mapping[str, str]) -> list[retrain.WindowRecord]:
    """The model's monitoring log, in sequence order."""
    records = [json.loads(v) for k, v in tags.items() if k.startswith(MONITOR_PREFIX)]
    return [retrain.WindowRecord.from_dict(r) for r in sorted(records, key=lambda r: r["seq"])]


def _rejected_retrains(transitions: list[Transition], since: datetime | None) -> list[datetime]:
    """When versions registered at or after ``since`` (the last trigger in the monitoring
    log) moved to ``rejected`` or ``rolled_back``: the rejected retrains. None (no trigger
    yet): none, since a version registered before any trigger is no retrain."""
    if since is None:
        return []
    registered = {t.version: t.time for t in transitions if t.from_state is None}
    return [
        t.time
        for t in transitions
        if t.to_state in FINAL_STATES and t.version in registered and registered[t.version] >= since
    ]


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _flat(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# --------------------------------------------------------------------------- the registry


class Registry:
    """The model registry on an MLflow tracking server (or any MLflow tracking URI).

    Args:
        tracking_uri: ``http(s)://host:port`` of the tracking server (a ``sqlite:///`` URI
            also works, for one machine).
        actor: Who makes the changes, recorded with each (default :func:`default_actor`).
        lock_timeout: Seconds to wait for a model's lock before :class:`LockTimeout`.
        lock_stale_after: Seconds one holder may keep the lock before a waiter breaks it.
    """

    def __init__(
        self,
        tracking_uri: str,
        actor: str | None = None,
        *,
        lock_timeout: float = 120.0,
        lock_stale_after: float = 60.0,
    ):
        from mlflow import MlflowClient

        from components.lib import network

        # MLflow's defaults wait about four minutes for a dead server (120 s per request, 7
        # retries with backoff); Loopline's, where the variables are unset: 60 s, 3 retries.
        network.mlflow_env()
        if not tracking_uri:
            raise RegistryError("no tracking URI (pass one, or set MLFLOW_TRACKING_URI)")
        self.tracking_uri = tracking_uri
        self.actor = actor or default_actor()
        self.lock_timeout = lock_timeout
        self.lock_stale_after = lock_stale_after
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # ----------------------------------------------------------------- reachability

    def ping(self, timeout: float | tuple[float, float] | None = None) -> None:
        """Raises :class:`Unavailable` unless the tracking server's ``/health`` answers
        (within ``timeout``: seconds or ``(connect, read)``; default the ``http`` limits of
        :mod:`components.lib.network`)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        import requests

        from components.lib import network

        if timeout is None:
            timeout = network.limits("http").pair

        url = f"{self.tracking_uri.rstrip('/')}/health"
        try:
            response = requests.get(url, timeout=timeout)
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, requests.Timeout):
                reason = f"no answer to /health within the timeout {timeout} s: {reason}"
            elif isinstance(exc, requests.ConnectionError):
                reason = "connection refused or host unreachable"
            raise Unavailable(
                f"cannot reach the MLflow tracking server at {self.tracking_uri} ({reason})"
            ) from exc
        if response.status_code != 200:
            raise Unavailable(
                f"the MLflow tracking server at {self.tracking_uri} answered /health with "
                f"HTTP {response.status_code}"
            )

    # ----------------------------------------------------------------- reading

    def _mlflow_error(self, exc: Exception, what: str) -> Exception:
        code = getattr(exc, "error_code", "")
        if code == "RESOURCE_DOES_NOT_EXIST":
            return NotFound(f"{what} does not exist in the registry at {self.tracking_uri}")
        return exc

    def _model(self, name: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            raise self._mlflow_error(exc, f"model {name!r}") from exc

    def _model_versions(self, name: str) -> dict[str, object]:
        found: dict[str, object] = {}
        token = None
        while True:
            page = self.client.search_model_versions(
                f"name = '{name}'", max_results=1000, page_token=token
            )
            for mv in page:
                found[str(mv.version)] = mv
            token = page.token
            if not token:
                break
        return dict(sorted(found.items(), key=lambda kv: int(kv[0])))

    def _version(self, mv, state: str, aliases: Mapping[str, str]) -> Version:
        tags = mv.tags or {}
        version = str(mv.version)
        return Version(
            name=mv.name,
            version=version,
            state=state,
            lineage=json.loads(tags.get(LINEAGE_TAG, "{}")),
            statistics_uri=tags.get(STATISTICS_TAG, ""),
            model_uri=f"models:/{mv.name}/{version}",
            manifest_sha256=tags.get(MANIFEST_TAG, ""),
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
            source=mv.source or "",
            run_id=mv.run_id or "",
            aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == version)),
            serving_uri=tags.get(SERVING_URI_TAG, ""),
        )

    def get(self, name: str, version: str | int) -> Version:
        """One version: its state (by the history), lineage, statistics URI, manifest sha256.

        Raises:
            NotFound: No such model or version.
        """
        from mlflow.exceptions import MlflowException

        model = self._model(name)
        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise self._mlflow_error(exc, f"model {name!r} version {version}") from exc
        states = _states(_history(name, model.tags))
        return self._version(mv, states.get(str(mv.version), INITIAL_STATE), model.aliases or {})

    def versions(self, name: str | None = None) -> list[Version]:
        """Every version of ``name``, or of every model this registry manages, by name and number."""
        if name is not None:
            models = [self._model(name)]
        else:
            models, token = [], None
            while True:
                page = self.client.search_registered_models(
                    f"tags.`{KIND_TAG}` = 'model'", max_results=1000, page_token=token
                )
                models.extend(page)
                token = page.token
                if not token:
                    break
        out = []
        for model in sorted(models, key=lambda m: m.name):
            states = _states(_history(model.name, model.tags))
            for number, mv in self._model_versions(model.name).items():
                out.append(
                    self._version(mv, states.get(number, INITIAL_STATE), model.aliases or {})
                )
        return out

    def champion(self, name: str) -> Version | None:
        """The production version (by the history; the ``champion`` alias points at it), or None."""
        model = self._model(name)
        states = _states(_history(name, model.tags))
        production = [v for v, s in states.items() if s == PRODUCTION]
        if not production:
            return None
        if len(production) > 1:
            raise RegistryError(
                f"model {name!r} has {len(production)} production versions "
                f"({', '.join(production)}): a lock was broken while held; an operator must "
                "force all but one to archived"
            )
        alias = (model.aliases or {}).get(CHAMPION_ALIAS)
        if str(alias) != production[0]:
            log.warning(
                "model %r: the champion alias is on %s but production is version %s "
                "(the next change repairs it)",
                name,
                alias,
                production[0],
            )
        return self.get(name, production[0])

    def history(self, name: str, version: str | int | None = None) -> list[Transition]:
        """Every recorded change of the model (or of one version), oldest first.

        Raises:
            NotFound: No such model, or no such version.
        """
        model = self._model(name)
        moves = _transitions(name, _history(name, model.tags))
        if version is None:
            return moves
        self.get(name, version)  # NotFound for a version that does not exist
        return [t for t in moves if t.version == str(version)]

    def production_at(self, name: str, when: datetime) -> str | None:
        """The version that was in production at ``when`` (a naive time is taken as UTC), or None."""
        when = _as_utc(when)
        serving = None
        for move in self.history(name):
            if move.time > when:
                break
            if move.to_state == PRODUCTION:
                serving = move.version
            elif move.from_state == PRODUCTION and move.version == serving:
                serving = None
        return serving

    def download(self, name: str, version: str | int, dest: str, verify: bool = True) -> str:
        """Downloads a version's MLflow model directory into ``dest``; returns its path.

        With ``verify`` (the default), every file is checked against the recorded manifest
        (nothing is deserialized) and a mismatch raises ``artifacts.IntegrityError``.
        """
        found = self.get(name, version)
        os.makedirs(dest, exist_ok=True)
        with _quiet_artifacts():
            path = self.client.download_artifacts(found.run_id, MODEL_ARTIFACT_PATH, dest)
        if verify:
            artifacts.verify_mlflow_model(path, found.manifest_sha256)
        return path

    def set_serving_uri(self, name: str, version: str | int, uri: str) -> Version:
        """Records where ``push`` copied the version for serving (version tag
        :data:`SERVING_URI_TAG`). Not a state change: the state machine and the history are
        untouched, so no lock is taken; the tag is only ever rewritten with the same
        content-addressed URI.

        Raises:
            NotFound: No such model or version.
            RegistryError: ``uri`` is not an ``s3://`` URI.
        """
        if not uri.startswith("s3://"):
            raise RegistryError(
                f"model {name!r} version {version}: serving URI {uri!r} is not s3://"
            )
        found = self.get(name, version)
        if found.serving_uri != uri:
            self.client.set_model_version_tag(name, found.version, SERVING_URI_TAG, uri)
            log.info("model %s version %s: serving URI %s", name, found.version, uri)
        return self.get(name, version)

    def load_model(self, name: str, version: str | int, dest: str, *, policy: str = "refuse"):
        """Downloads a version and loads its scikit-learn model, verified
        (:func:`components.lib.artifacts.load_mlflow_model`)."""
        found = self.get(name, version)
        path = self.download(name, version, dest, verify=False)
        return artifacts.load_mlflow_model(path, found.manifest_sha256, policy=policy)

    # ----------------------------------------------------------------- registering

    def register(
        self,
        name: str,
        model_dir: str,
        lineage: Mapping,
        statistics_uri: str,
        input_example,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> Version:
        """Registers the model in ``model_dir`` as a new ``candidate`` version.

        Args:
            name: The model name.
            model_dir: The train step's model folder: ``model.joblib`` (a scikit-learn
                Pipeline), verified against ``lineage["sha256"]`` and
                ``lineage["sklearn_version"]`` before it is unpickled.
            lineage: Every key of :data:`REQUIRED_LINEAGE`, JSON-serializable; stored as is
                (read back equal) and as one readable ``lineage.<key>`` tag per key.
            statistics_uri: The validation statistics of the data it was trained on (the
                data gate's drift baseline while this version is the champion).
            input_example: A few raw input rows (pandas DataFrame of the feature columns):
                the MLflow signature is inferred from it (its columns cut to the model's
                input columns) and the model's predictions on it.
            extra_files: File name -> bytes, written into the MLflow model directory before
                its manifest, so the manifest covers them (:data:`REQUEST_SCHEMA_FILE`,
                :data:`CHECK_DATA_FILE`). Names must be plain file names starting with
                ``loopline_``.

        Raises:
            RegistryError: Missing lineage or statistics URI, a bad name, example or extra
                file name (named).
            artifacts.IntegrityError / VersionMismatchError: ``model.joblib`` does not match.
        """
        import pandas as pd

        began = time.monotonic()
        check_name(name)
        lineage = dict(lineage)
        missing = [k for k in REQUIRED_LINEAGE if k not in lineage]
        if missing:
            raise RegistryError(f"model {name!r}: lineage lacks {', '.join(missing)}")
        try:
            lineage_json = json.dumps(lineage, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"model {name!r}: lineage is not plain JSON ({exc})") from exc
        if not statistics_uri:
            raise RegistryError(f"model {name!r}: no statistics_uri (the drift baseline)")
        if not isinstance(input_example, pd.DataFrame) or input_example.empty:
            raise RegistryError(f"model {name!r}: input_example must be a non-empty DataFrame")
        extra = check_extra_files(name, extra_files)
        from components.lib.modeling import MODEL_FILE

        model = artifacts.load_pickle(
            os.path.join(model_dir, MODEL_FILE),
            str(lineage["sha256"]),
            "model",
            sklearn_version=str(lineage["sklearn_version"]),
        )
        columns = [str(c) for c in getattr(model, "feature_names_in_", input_example.columns)]
        absent = [c for c in columns if c not in input_example.columns]
        if absent:
            raise RegistryError(
                f"model {name!r}: input_example lacks the model's input columns {', '.join(absent)}"
            )
        input_example = input_example[columns]
        with tempfile.TemporaryDirectory(prefix="loopline-register-") as tmp:
            local = os.path.join(tmp, MODEL_ARTIFACT_PATH)
            _save_mlflow_model(model, local, input_example, tmp)
            for file_name, data in extra.items():
                target = os.path.join(local, file_name)
                if os.path.lexists(target):
                    raise RegistryError(
                        f"model {name!r}: extra file {file_name!r} would replace a file of the "
                        "MLflow model"
                    )
                Path(target).write_bytes(data)
            manifest_sha256 = artifacts.write_manifest(local)
            run_id = self._log_run(name, local, lineage)
        self._ensure_model(name)
        tags = {
            STATE_TAG: INITIAL_STATE,
            LINEAGE_TAG: lineage_json,
            STATISTICS_TAG: statistics_uri,
            MANIFEST_TAG: manifest_sha256,
            REGISTERED_BY_TAG: self.actor,
            **{f"{LINEAGE_PREFIX}{k}": _flat(v) for k, v in lineage.items()},
        }
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"
        with self._lock(name) as token:
            model_entity, _ = self._snapshot(name)
            mv = self.client.create_model_version(name, source, run_id, tags=tags)
            number = str(mv.version)
            reason = f"registered from pipeline run {lineage['pipeline_run_id']}"
            self._commit(
                name,
                model_entity.tags,
                token,
                [(number, None, INITIAL_STATE, reason)],
                self.actor,
                reason,
            )
        log.info(
            "registered %s version %s (candidate), manifest %s%s, in %.1f s",
            name,
            number,
            manifest_sha256[:12],
            f" (with {', '.join(sorted(extra))})" if extra else "",
            time.monotonic() - began,
        )
        return self.get(name, number)

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                name,
                tags={KIND_TAG: "model"},
                description="Managed by Loopline (components/lib/registry.py): change states "
                "only through it (`loopline registry transition`); the champion alias is production.",
            )
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
            model = self._model(name)
            if (model.tags or {}).get(KIND_TAG) != "model":
                raise RegistryError(
                    f"model {name!r} exists in MLflow but was not created by Loopline's registry"
                ) from exc

    def _log_run(self, name: str, local: str, lineage: Mapping) -> str:
        """One MLflow run per registration: the model files, params and metrics (for the UI)."""
        from mlflow.entities import Metric, Param

        experiment = f"{EXPERIMENT_PREFIX}{name}"
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self._create_experiment(experiment)
        run = self.client.create_run(
            experiment_id,
            run_name=f"register-{lineage.get('pipeline_run_id', '')}"[:250],
            tags={
                "loopline.model": name,
                "loopline.pipeline_run_id": str(lineage["pipeline_run_id"]),
            },
        )
        run_id = run.info.run_id
        try:
            params = lineage.get("params") or {}
            if isinstance(params, str):
                params = json.loads(params or "{}")
            params = params if isinstance(params, dict) else {}
            metrics = lineage.get("metrics")
            metrics = metrics if isinstance(metrics, dict) else {}
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[
                    Metric(str(k), float(v), now, 0)
                    for k, v in metrics.items()
                    if isinstance(v, int | float) and math.isfinite(v)
                ],
                params=[Param(str(k), _flat(v)[:6000]) for k, v in params.items()],
            )
            with _quiet_artifacts():
                self.client.log_artifacts(run_id, local, MODEL_ARTIFACT_PATH)
        except Exception:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id)
        return run_id

    def _create_experiment(self, experiment: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(experiment)
        except MlflowException as exc:  # another process created it meanwhile
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                raise
            log.debug("experiment %s created concurrently (%s)", experiment, exc)
            return found.experiment_id

    # ----------------------------------------------------------------- changing states

    def transition(
        self,
        name: str,
        version: str | int,
        to_state: str,
        reason: str,
        actor: str | None = None,
        force: bool = False,
        rollback: bool = False,
    ) -> Version:
        """Moves a version to ``to_state`` (see the module docstring), recorded in the history.

        Entering production archives the current production version in the same recorded
        step and moves the ``champion`` alias; leaving production removes the alias.

        Args:
            reason: Why (required; recorded).
            actor: Who (default: the registry's actor).
            force: An operator's override of the state machine (recorded as forced).
            rollback: Marks archived -> production as a rollback (required for it).

        Raises:
            IllegalTransition: The move is not allowed; nothing was changed.
            NotFound: No such model or version.
            LockTimeout / LockLost: The model's lock could not be had or kept.
        """
        check_name(name)
        version = str(version)
        if not (reason or "").strip():
            raise RegistryError(f"model {name!r} version {version}: a transition needs a reason")
        actor = actor or self.actor
        with self._lock(name) as token:
            model, versions = self._snapshot(name)
            if version not in versions:
                raise NotFound(
                    f"model {name!r} version {version} does not exist in the registry at "
                    f"{self.tracking_uri}"
                )
            records = _history(name, model.tags)
            states = _states(records)
            current = states.get(version, INITIAL_STATE)
            check_transition(
                name,
                version,
                current,
                to_state,
                had_production=_had_production(records),
                force=force,
                rollback=rollback,
            )
            moves: list[tuple[str, str | None, str, str]] = []
            if to_state == PRODUCTION:
                for other, state in states.items():
                    if state == PRODUCTION and other != version:
                        moves.append(
                            (
                                other,
                                PRODUCTION,
                                ARCHIVED,
                                f"{reason} (replaced by version {version})",
                            )
                        )
            moves.append((version, current, to_state, reason))
            self._before_commit()
            self._commit(name, model.tags, token, moves, actor, reason, force, rollback)
            log.info(
                "model %s version %s: %s -> %s%s by %s: %s",
                name,
                version,
                current,
                to_state,
                " (forced)" if force else " (rollback)" if rollback else "",
                actor,
                reason,
            )
        return self.get(name, version)

    # ----------------------------------------------------------------- the monitoring log

    def monitoring_log(self, name: str) -> list[retrain.WindowRecord]:
        """Every monitored window of the model, in record order.

        Raises:
            NotFound: No such model.
        """
        return _monitor_log(self._model(name).tags or {})

    def monitor_window(
        self,
        name: str,
        policy: retrain.RetrainPolicy,
        *,
        window_id: str,
        start: str,
        end: str,
        drift: bool,
        decay: bool,
        rows: int,
        decided: bool = True,
        run_id: str = "",
        model_version: str = "",
        now: datetime | None = None,
    ) -> retrain.WindowRecord:
        """Decides whether the window ``window_id`` starts a retrain and records it, once.

        Under the model's lock: returns the record already in the monitoring log for
        ``window_id`` (a re-run of the same window; nothing is appended, the signals given
        now are ignored and a difference is logged), else calls
        :func:`components.lib.retrain.decide` with the log, the times at which versions
        registered at or after the last trigger were rejected or rolled back (from the
        history), and ``now``, and appends the record (``loopline.monitor.<seq>``).

        Args:
            policy: The :class:`components.lib.retrain.RetrainPolicy`.
            decided: False when the window had too few rows to judge.
            now: The decision time (default: this machine's clock, UTC); made no earlier
                than the log's last record, so record order is time order.

        Raises:
            NotFound: No such model.
            RegistryError: An empty window id.
            LockTimeout / LockLost: The model's lock could not be had or kept.
        """
        check_name(name)
        window_id = str(window_id or "").strip()
        if not window_id:
            raise RegistryError(f"model {name!r}: a monitored window needs a window id")
        found = self._recorded(_monitor_log(self._model(name).tags or {}), window_id)
        if found is not None:  # fast path, no lock: records are never rewritten
            return self._replayed(name, found, drift, decay, decided)
        with self._lock(name) as token:
            tags = self._model(name).tags or {}
            log_records = _monitor_log(tags)
            found = self._recorded(log_records, window_id)
            if found is not None:
                return self._replayed(name, found, drift, decay, decided)
            when = _as_utc(now) if now is not None else datetime.now(UTC)
            if log_records:
                when = max(when, log_records[-1].at_time + timedelta(microseconds=1))
            triggers = [r.at_time for r in log_records if r.retrain]
            rejected = _rejected_retrains(
                _transitions(name, _history(name, tags)), triggers[-1] if triggers else None
            )
            decision = retrain.decide(
                policy,
                log_records,
                window_id=window_id,
                drift=drift,
                decay=decay,
                decided=decided,
                now=when,
                rejected_at=rejected,
            )
            seq = log_records[-1].seq + 1 if log_records else 1
            record = retrain.WindowRecord(
                window_id=window_id,
                start=str(start),
                end=str(end),
                at=when.isoformat(),
                drift=bool(drift),
                decay=bool(decay),
                rows=int(rows),
                decided=bool(decided),
                retrain=decision.retrain,
                trigger=decision.trigger,
                reason=decision.reason,
                run_id=str(run_id),
                model_version=str(model_version),
                blocked_by=decision.blocked_by,
                consecutive=decision.consecutive,
                seq=seq,
            )
            self._before_commit()
            self._check_lock(name, token)
            self.client.set_registered_model_tag(
                name, f"{MONITOR_PREFIX}{seq:08d}", json.dumps(record.to_dict(), sort_keys=True)
            )
        log.info(
            "model %s window %s: %s (%s)",
            name,
            window_id,
            "RETRAIN" if record.retrain else "no retrain",
            record.reason,
        )
        return record

    @staticmethod
    def _recorded(
        records: list[retrain.WindowRecord], window_id: str
    ) -> retrain.WindowRecord | None:
        return next((r for r in records if r.window_id == window_id), None)

    @staticmethod
    def _replayed(name: str, found, drift: bool, decay: bool, decided: bool):
        given = {"drift": bool(drift), "decay": bool(decay), "decided": bool(decided)}
        differ = [k for k, v in given.items() if getattr(found, k) != v]
        if differ:
            log.warning(
                "model %s window %s was already recorded (seq %d) with other %s; returning the "
                "recorded decision",
                name,
                found.window_id,
                found.seq,
                ", ".join(differ),
            )
        else:
            log.info(
                "model %s window %s was already recorded (seq %d): %s",
                name,
                found.window_id,
                found.seq,
                found.reason,
            )
        return found

    def _before_commit(self) -> None:
        """A hook between the checks and the write (tests widen the race window here)."""

    def _snapshot(self, name: str):
        """The model and its versions, with the views (state tags, alias) repaired to match
        the history. Called under the model's lock."""
        model = self._model(name)
        versions = self._model_versions(name)
        states = _states(_history(name, model.tags))
        for number, mv in versions.items():
            want = states.get(number, INITIAL_STATE)
            if (mv.tags or {}).get(STATE_TAG) != want:
                log.warning(
                    "model %s version %s: repairing its state tag to %s", name, number, want
                )
                self.client.set_model_version_tag(name, number, STATE_TAG, want)
        production = sorted(v for v, s in states.items() if s == PRODUCTION)
        alias = (model.aliases or {}).get(CHAMPION_ALIAS)
        if len(production) == 1 and str(alias) != production[0]:
            log.warning("model %s: repairing the champion alias to version %s", name, production[0])
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, production[0])
        elif not production and alias is not None:
            log.warning("model %s: removing a champion alias with no production version", name)
            self.client.delete_registered_model_alias(name, CHAMPION_ALIAS)
        elif len(production) > 1:
            log.error("model %s has several production versions: %s", name, production)
        return model, versions

    def _commit(
        self,
        name: str,
        tags: Mapping[str, str],
        token: str,
        moves: list[tuple[str, str | None, str, str]],
        actor: str,
        reason: str,
        force: bool = False,
        rollback: bool = False,
    ) -> None:
        """Appends one history record (the commit point), then updates the views."""
        records = _history(name, tags)
        seq = records[-1]["seq"] + 1 if records else 1
        now = datetime.now(UTC)
        if records:
            last = datetime.fromisoformat(records[-1]["time"])
            now = max(now, last + timedelta(microseconds=1))
        record = {
            "seq": seq,
            "time": now.isoformat(),
            "actor": actor,
            "reason": reason,
            "force": bool(force),
            "rollback": bool(rollback),
            "lock": token,
            "moves": [{"version": v, "from": f, "to": t, "reason": r} for v, f, t, r in moves],
        }
        self._check_lock(name, token)
        self.client.set_registered_model_tag(
            name, f"{HISTORY_PREFIX}{seq:08d}", json.dumps(record, sort_keys=True)
        )
        for number, _, to_state, _ in moves:
            self.client.set_model_version_tag(name, number, STATE_TAG, to_state)
        entering = [v for v, _, t, _ in moves if t == PRODUCTION]
        leaving = [v for v, f, t, _ in moves if f == PRODUCTION and t != PRODUCTION]
        if entering:
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, entering[-1])
        elif leaving:
            self.client.delete_registered_model_alias(name, CHAMPION_ALIAS)

    # ----------------------------------------------------------------- the lock

    def _lock_holder(self, lock_name: str) -> dict | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(lock_name).tags or {})
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _check_lock(self, name: str, token: str) -> None:
        holder = self._lock_holder(f"{name}{LOCK_SUFFIX}") or {}
        if holder.get(LOCK_TOKEN_TAG) != token:
            raise LockLost(
                f"model {name!r}: this process's lock was broken as stale before it recorded "
                "the change; nothing was recorded (retry)"
            )

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[str]:
        from mlflow.exceptions import MlflowException

        lock_name = f"{name}{LOCK_SUFFIX}"
        token = uuid.uuid4().hex
        owner = f"{self.actor} pid {os.getpid()}"
        began = time.monotonic()
        seen: tuple[str, float] | None = None
        delay, next_note = 0.02, began + 5
        while True:
            try:
                self.client.create_registered_model(
                    lock_name,
                    tags={
                        KIND_TAG: "lock",
                        LOCK_TOKEN_TAG: token,
                        LOCK_OWNER_TAG: owner,
                        LOCK_SINCE_TAG: datetime.now(UTC).isoformat(),
                    },
                    description=f"The lock of model {name} (components/lib/registry.py), held "
                    "while a change is recorded; deleted when done.",
                )
                break
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            holder = self._lock_holder(lock_name)
            if holder is None:
                continue  # released meanwhile
            if holder.get(LOCK_TOKEN_TAG) == token:
                break  # our create went through and a retried request saw it
            now = time.monotonic()
            held_by = holder.get(LOCK_TOKEN_TAG, "")
            if seen is None or seen[0] != held_by:
                seen = (held_by, now)
            elif now - seen[1] > self.lock_stale_after:
                self._break_lock(lock_name, held_by, holder)
                seen = None
                continue
            if now - began > self.lock_timeout:
                raise LockTimeout(
                    f"model {name!r}: the lock {lock_name} is held by "
                    f"{holder.get(LOCK_OWNER_TAG, '?')} since {holder.get(LOCK_SINCE_TAG, '?')}; "
                    f"waited {now - began:.0f} s (nothing was changed)"
                )
            if now >= next_note:
                log.info(
                    "model %s: waiting for its lock, held by %s (%.0f s)",
                    name,
                    holder.get(LOCK_OWNER_TAG, "?"),
                    now - began,
                )
                next_note = now + 5
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
        try:
            yield token
        finally:
            self._release(lock_name, token)

    def _break_lock(self, lock_name: str, held_by: str, holder: Mapping[str, str]) -> None:
        from mlflow.exceptions import MlflowException

        tombstone = f"{lock_name}.stale.{held_by or 'unknown'}"
        try:
            self.client.rename_registered_model(lock_name, tombstone)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in (
                "RESOURCE_ALREADY_EXISTS",
                "RESOURCE_DOES_NOT_EXIST",
            ):
                return  # another waiter broke it first, or it was released
            raise
        log.warning(
            "broke the stale lock %s held by %s since %s (kept as %s)",
            lock_name,
            holder.get(LOCK_OWNER_TAG, "?"),
            holder.get(LOCK_SINCE_TAG, "?"),
            tombstone,
        )

    def _release(self, lock_name: str, token: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            holder = self._lock_holder(lock_name)
            if holder is None or holder.get(LOCK_TOKEN_TAG) != token:
                log.warning("the lock %s was broken while held; leaving the current one", lock_name)
                return
            self.client.delete_registered_model(lock_name)
        except MlflowException as exc:
            log.warning("could not release the lock %s: %s", lock_name, exc)


# --------------------------------------------------------------------------- the model format


@contextlib.contextmanager
def _quiet_artifacts() -> Iterator[None]:
    """No per-file progress bars from MLflow's artifact transfers (unless asked for)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


# The modules a saved model's classes live in, bundled with the model (MLflow ``code_paths``)
# so that an MLflow-aware server can import them: components.lib.features and what it imports.
_BUNDLED_MODULES = (
    "components/__init__.py",
    "components/_version.py",
    "components/lib/__init__.py",
    "components/lib/features.py",
    "components/lib/artifacts.py",
    "components/lib/storage.py",
)


def _bundle_code(tmp: str) -> str:
    root = Path(__file__).resolve().parents[2]
    target = Path(tmp, "code")
    for rel in _BUNDLED_MODULES:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest)
    return str(target / "components")


def check_extra_files(name: str, extra_files: Mapping[str, bytes] | None) -> dict[str, bytes]:
    """The extra files of a registration, checked: plain file names starting with
    ``loopline_`` (not the manifest's), bytes as values."""
    out: dict[str, bytes] = {}
    for file_name, data in (extra_files or {}).items():
        plain = (
            isinstance(file_name, str)
            and file_name.startswith(EXTRA_FILE_PREFIX)
            and file_name == os.path.basename(file_name)
            and "/" not in file_name
            and "\\" not in file_name
            and "\0" not in file_name
        )
        if not plain:
            raise RegistryError(
                f"model {name!r}: extra file {file_name!r} is not a plain file name starting "
                f"with {EXTRA_FILE_PREFIX!r}"
            )
        if file_name == artifacts.MANIFEST_FILE:
            raise RegistryError(
                f"model {name!r}: extra file {file_name!r} is the manifest's name; the registry "
                "writes it"
            )
        if not isinstance(data, bytes | bytearray | memoryview):
            raise RegistryError(
                f"model {name!r}: extra file {file_name!r} is {type(data).__name__}, not bytes"
            )
        out[file_name] = bytes(data)
    return out


def _pins() -> list[str]:
    from importlib.metadata import version

    return [
        f"{dist}=={version(dist)}"
        for dist in ("mlflow-skinny", "scikit-learn", "skops", "numpy", "pandas", "scipy")
    ]


def _save_mlflow_model(model, path: str, input_example, tmp: str) -> None:
    """``model`` in MLflow's format at ``path``: sklearn flavor, skops, signature, example."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # Integer columns cannot hold missing values: the schema (validate_data) refuses them.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        # mlflow 3.17's input-example check compares columns with a range (pandas 3 warns).
        warnings.filterwarnings("ignore", message="Operation with range is deprecated")
        signature = infer_signature(input_example, model.predict(input_example))
        try:
            mlflow.sklearn.save_model(
                model,
                path,
                serialization_format="skops",
                skops_trusted_types=list(artifacts.SKOPS_TRUSTED_TYPES),
                signature=signature,
                input_example=input_example,
                pip_requirements=_pins(),
                code_paths=[_bundle_code(tmp)],
            )
        except Exception as exc:
            if "untrusted types" in str(exc):
                raise RegistryError(
                    "the model holds types outside components.lib.artifacts.SKOPS_TRUSTED_TYPES; "
                    f"review them before adding them: {exc}"
                ) from exc
            raise
