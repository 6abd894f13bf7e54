"""The registry (components/lib/registry.py) against a real MLflow tracking server process.

One server per test session (``mlflow_server`` in tests/fixtures.py: sqlite store, artifacts
proxied to the loopback S3 endpoint); each test works on its own model name. Two OS
processes race for production through the same server.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml

from components.lib import artifacts, modeling
from components.lib import registry as reg
from components.lib.registry import IllegalTransition, NotFound, Registry, RegistryError
from components.lib.tests import racer
from tests.fitted import registrable_model
from tests.tamper import plant_trap

pytestmark = pytest.mark.mlflow

# The moves allowed without force, written out here (not read from the module under test).
LEGAL = {
    ("candidate", "staging"),
    ("candidate", "rejected"),
    ("staging", "canary"),
    ("staging", "production"),  # only while the model never had a production version
    ("canary", "production"),
    ("canary", "rolled_back"),
    ("production", "archived"),
    ("archived", "production"),  # only with rollback=True
}
STATES = ("candidate", "staging", "canary", "production", "archived", "rejected", "rolled_back")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


@pytest.fixture(scope="module")
def registry(tracking_uri) -> Registry:
    return Registry(tracking_uri, actor="pytest")


def _register(registry: Registry, trained, name: str, run: str = "run-0001") -> str:
    model_dir, lineage, example = trained
    return registry.register(
        name, model_dir, {**lineage, "pipeline_run_id": run}, f"s3://stats/{name}/{run}", example
    ).version


def _walk(registry: Registry, name: str, version: str, *states: str) -> None:
    for state in states:
        registry.transition(name, version, state, f"test: to {state}")


def _raw(registry: Registry, name: str) -> dict:
    """Everything MLflow holds about a model: its tags and aliases, every version's tags,
    whether its lock exists."""
    client = registry.client
    model = client.get_registered_model(name)
    versions = client.search_model_versions(f"name = '{name}'")
    lock = client.search_registered_models(f"name = '{name}{reg.LOCK_SUFFIX}'")
    return {
        "tags": dict(model.tags),
        "aliases": dict(model.aliases),
        "versions": {v.version: dict(v.tags) for v in versions},
        "locked": len(lock),
    }


# --------------------------------------------------------------------------- lineage and format


def test_register_records_lineage_statistics_and_an_mlflow_model_read_back_equal(
    registry, trained, tmp_path
):
    model_dir, lineage, example = trained
    began = time.monotonic()
    version = registry.register("lineage", model_dir, lineage, "s3://stats/lineage/1", example)
    took = time.monotonic() - began
    print(f"register: {took:.2f} s")

    got = registry.get("lineage", version.version)
    assert got.lineage == lineage  # nested metrics, floats, ints and strings, exactly
    assert got.state == "candidate" and got.statistics_uri == "s3://stats/lineage/1"
    assert got.model_uri == f"models:/lineage/{got.version}"
    assert len(got.manifest_sha256) == 64 and got.aliases == ()
    for key in reg.REQUIRED_LINEAGE:
        assert key in got.lineage
    # One readable tag per lineage key, for the MLflow UI and search.
    tags = registry.client.get_model_version("lineage", got.version).tags
    assert tags["lineage.data_sha256"] == lineage["data_sha256"]
    assert json.loads(tags["lineage.metrics"]) == lineage["metrics"]
    assert tags[reg.STATE_TAG] == "candidate"
    # The registration is the first entry of the history.
    [first] = registry.history("lineage", got.version)
    assert (first.from_state, first.to_state, first.actor) == (None, "candidate", "pytest")
    assert "run-0001" in first.reason
    # Params and metrics on the run, for the MLflow UI.
    run = registry.client.get_run(got.run_id)
    assert run.data.metrics["holdout_rmse"] == 70.5
    assert run.data.params["max_iter"] == "20"

    # The MLflow model: sklearn flavor in skops with exactly the reviewed trusted types,
    # a signature of the model's input columns, an input example, a manifest of every file.
    path = registry.download("lineage", got.version, str(tmp_path / "dl"))
    mlmodel = yaml.safe_load(Path(path, "MLmodel").read_text())
    flavor = mlmodel["flavors"]["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert flavor["skops_trusted_types"] == list(artifacts.SKOPS_TRUSTED_TYPES)
    pipeline = joblib.load(Path(model_dir, modeling.MODEL_FILE))
    inputs = [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]
    assert inputs == list(pipeline.feature_names_in_)
    assert mlmodel["saved_input_example_info"]["artifact_path"] == "input_example.json"
    files = artifacts.manifest(path)
    assert {"MLmodel", "model.skops", "input_example.json"} <= set(files)
    assert "code/components/lib/features.py" in files
    assert artifacts.sha256_bytes(artifacts.manifest_bytes(files)) == got.manifest_sha256

    # Loaded verified, it predicts exactly as the model train saved.
    loaded = artifacts.load_mlflow_model(path, got.manifest_sha256)
    np.testing.assert_array_equal(loaded.predict(example), pipeline.predict(example))


def test_mlflow_pyfunc_serves_the_champion_alias(registry, trained, tracking_uri, tmp_path):
    """What an MLflow runtime (MLServer, KServe's mlflow format) does: load
    models:/NAME@champion with mlflow.pyfunc, in a fresh process."""
    import subprocess
    import sys

    version = _register(registry, trained, "pyfunc")
    _walk(registry, "pyfunc", version, "staging", "production")
    _, _, example = trained
    example.to_parquet(tmp_path / "rows.parquet")
    script = (
        "import json, mlflow.pyfunc, pandas as pd;"
        "m = mlflow.pyfunc.load_model('models:/pyfunc@champion');"
        f"print(json.dumps(m.predict(pd.read_parquet({str(tmp_path / 'rows.parquet')!r})).tolist()))"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    served = json.loads(out.strip().splitlines()[-1])
    expected = joblib.load(Path(trained[0], modeling.MODEL_FILE)).predict(example)
    np.testing.assert_allclose(served, expected)


def test_register_refuses_a_tampered_model_before_unpickling_and_registers_nothing(
    registry, trained, tmp_path, request
):
    model_dir, lineage, example = trained
    _register(registry, trained, "tampered-joblib")
    before = _raw(registry, "tampered-joblib")
    request.getfixturevalue("no_unpickling")  # joblib.load fails from here on
    bad = tmp_path / "model"
    bad.mkdir()
    marker = plant_trap(bad / modeling.MODEL_FILE, tmp_path / "unpickled")
    with pytest.raises(artifacts.IntegrityError, match="does not match the sha256"):
        registry.register("tampered-joblib", str(bad), lineage, "s3://s", example)
    assert not marker.exists()
    assert _raw(registry, "tampered-joblib") == before


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda lin: lin.pop("holdout_sha256"), "lineage lacks holdout_sha256"),
        (lambda lin: lin.update(metrics=float("nan")), "not plain JSON"),
    ],
    ids=["missing-key", "nan"],
)
def test_register_refuses_incomplete_lineage(registry, trained, change, message):
    model_dir, lineage, example = trained
    lineage = dict(lineage)
    change(lineage)
    with pytest.raises(RegistryError, match=message):
        registry.register("incomplete", model_dir, lineage, "s3://s", example)
    with pytest.raises(RegistryError, match="no statistics_uri"):
        registry.register("incomplete", model_dir, trained[1], "", example)
    with pytest.raises(RegistryError, match="names with '.lock'"):
        registry.register("x.lock", model_dir, trained[1], "s3://s", example)


def test_a_model_file_tampered_in_the_artifact_store_is_refused_before_deserializing(
    registry, trained, s3_client, tmp_path, monkeypatch
):
    import io

    import skops.io

    version = registry.get("lineage-store", _register(registry, trained, "lineage-store"))
    key = "artifacts/" + version.source.removeprefix("mlflow-artifacts:/") + "/model.skops"
    original = s3_client.get_object("mlflow", key).read()
    # Someone with write access to the bucket swaps the model for another skops file.
    swapped = skops.io.dumps({"not": "the model"})
    s3_client.put_object("mlflow", key, io.BytesIO(swapped), len(swapped))

    def refuse(*args, **kwargs):
        raise AssertionError("skops deserialized a file that was not verified")

    monkeypatch.setattr(skops.io, "loads", refuse)
    monkeypatch.setattr(skops.io, "load", refuse)
    with pytest.raises(artifacts.IntegrityError, match=r"file model\.skops does not match"):
        registry.download(version.name, version.version, str(tmp_path / "a"))
    with pytest.raises(artifacts.IntegrityError, match=r"file model\.skops does not match"):
        registry.load_model(version.name, version.version, str(tmp_path / "b"))
    s3_client.put_object("mlflow", key, io.BytesIO(original), len(original))
    monkeypatch.undo()
    assert registry.load_model(version.name, version.version, str(tmp_path / "c")) is not None


def test_extra_files_travel_with_the_version_under_its_manifest(
    registry, trained, s3_client, tmp_path
):
    import io

    model_dir, lineage, example = trained
    schema_bytes = json.dumps({"format": "loopline-request-schema-1", "columns": {}}).encode()
    rows = example.to_parquet(index=False)
    extra = {reg.REQUEST_SCHEMA_FILE: schema_bytes, reg.CHECK_DATA_FILE: rows}
    version = registry.register("extra", model_dir, lineage, "s3://stats/extra", example, extra)

    path = registry.download("extra", version.version, str(tmp_path / "dl"))
    assert Path(path, reg.REQUEST_SCHEMA_FILE).read_bytes() == schema_bytes
    assert Path(path, reg.CHECK_DATA_FILE).read_bytes() == rows
    listed = artifacts.verify_mlflow_model(path, version.manifest_sha256)
    assert listed[reg.REQUEST_SCHEMA_FILE] == artifacts.sha256_bytes(schema_bytes)
    assert listed[reg.CHECK_DATA_FILE] == artifacts.sha256_bytes(rows)
    assert artifacts.load_mlflow_model(path, version.manifest_sha256) is not None

    # Changed on disk after the download: refused, naming the file.
    Path(path, reg.REQUEST_SCHEMA_FILE).write_bytes(schema_bytes.replace(b"}}", b'"x":1}}'))
    with pytest.raises(
        artifacts.IntegrityError, match=rf"file {reg.REQUEST_SCHEMA_FILE} does not match"
    ):
        artifacts.verify_mlflow_model(path, version.manifest_sha256)

    # Swapped in the artifact store: the download refuses it, naming the file.
    key = f"artifacts/{version.source.removeprefix('mlflow-artifacts:/')}/{reg.CHECK_DATA_FILE}"
    swapped = example.head(1).to_parquet(index=False)
    s3_client.put_object("mlflow", key, io.BytesIO(swapped), len(swapped))
    with pytest.raises(
        artifacts.IntegrityError, match=rf"file {reg.CHECK_DATA_FILE} does not match"
    ):
        registry.download("extra", version.version, str(tmp_path / "again"))


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"schema.json": b"{}"}, "extra file 'schema.json' is not a plain file name"),
        ({"loopline_a/b.json": b"{}"}, "extra file 'loopline_a/b.json' is not a plain"),
        ({"../loopline_x": b""}, r"extra file '\.\./loopline_x' is not a plain"),
        ({"MLmodel": b""}, "extra file 'MLmodel' is not a plain"),
        ({artifacts.MANIFEST_FILE: b"{}"}, "is the manifest's name"),
        ({reg.REQUEST_SCHEMA_FILE: {"columns": {}}}, "is dict, not bytes"),
    ],
    ids=["no-prefix", "subfolder", "parent", "mlflow-file", "manifest", "not-bytes"],
)
def test_bad_extra_files_are_refused_naming_the_file_and_register_nothing(
    registry, trained, extra, message
):
    model_dir, lineage, example = trained
    with pytest.raises(RegistryError, match=message):
        registry.register("extra-refused", model_dir, lineage, "s3://s", example, extra)
    assert not [v for v in registry.versions() if v.name == "extra-refused"]


# --------------------------------------------------------------------------- the state machine


@pytest.fixture(scope="module")
def every_state(registry, trained) -> dict[str, str]:
    """Model ``states``: one version in each of the seven states -> {state: version}."""
    name = "states"
    v = {i: _register(registry, trained, name, f"run-{i}") for i in range(1, 8)}
    _walk(registry, name, v[1], "staging", "production")
    _walk(registry, name, v[2], "staging", "canary", "production")  # v1 -> archived
    _walk(registry, name, v[3], "rejected")
    _walk(registry, name, v[4], "staging", "canary", "rolled_back")
    _walk(registry, name, v[5], "staging", "canary")
    _walk(registry, name, v[6], "staging")
    by_state = {registry.get(name, n).state: n for n in v.values()}
    assert sorted(by_state) == sorted(STATES)
    return by_state


def test_every_illegal_transition_is_refused_naming_both_states_and_changes_nothing(
    registry, every_state
):
    name = "states"
    before = _raw(registry, name)
    history_before = registry.history(name)
    refused = 0
    for from_state, version in every_state.items():
        for to_state in STATES:
            if (from_state, to_state) in LEGAL - {
                ("staging", "production"),  # this model has had a champion
                ("archived", "production"),  # not a rollback
            }:
                continue
            with pytest.raises(IllegalTransition) as caught:
                registry.transition(name, version, to_state, "must be refused")
            assert f"{from_state} -> {to_state}" in str(caught.value)
            assert (caught.value.from_state, caught.value.to_state) == (from_state, to_state)
            refused += 1
    # A rollback flag anywhere but archived -> production, and an unknown state.
    for from_state, to_state in [("canary", "production"), ("production", "archived")]:
        with pytest.raises(IllegalTransition, match="not a rollback"):
            registry.transition(name, every_state[from_state], to_state, "x", rollback=True)
        refused += 1
    with pytest.raises(IllegalTransition, match="unknown state 'retired'"):
        registry.transition(name, every_state["canary"], "retired", "x")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.transition(name, every_state["canary"], "production", "  ")
    with pytest.raises(NotFound, match="version 99 does not exist"):
        registry.transition(name, "99", "staging", "x")
    assert refused == 7 * 7 - 6 + 2
    assert _raw(registry, name) == before  # states, lineage, alias, history, no lock left
    assert registry.history(name) == history_before
    assert {s: registry.get(name, v).state for s, v in every_state.items()} == {
        s: s for s in every_state
    }
    assert registry.champion(name).version == every_state["production"]


def test_staging_to_production_only_for_the_first_production_version(registry, trained):
    name = "first-deploy"
    v1, v2 = _register(registry, trained, name), _register(registry, trained, name)
    _walk(registry, name, v1, "staging", "production")
    _walk(registry, name, v1, "archived")  # no champion now, but the model has had one
    assert registry.champion(name) is None
    _walk(registry, name, v2, "staging")
    with pytest.raises(IllegalTransition, match="first production version"):
        registry.transition(name, v2, "production", "no canary")


def test_lifecycle_rollback_force_and_production_at(registry, trained):
    name = "lifecycle"
    times = {"start": datetime.now(UTC)}
    v1 = _register(registry, trained, name)
    _walk(registry, name, v1, "staging", "production")
    times["v1"] = datetime.now(UTC)
    v2 = _register(registry, trained, name)
    _walk(registry, name, v2, "staging", "canary", "production")
    times["v2"] = datetime.now(UTC)
    assert registry.get(name, v1).state == "archived"
    assert registry.champion(name).version == v2
    assert registry.client.get_model_version_by_alias(name, "champion").version == v2

    # archived -> production only as a rollback; it archives the current champion.
    with pytest.raises(IllegalTransition, match="only as a rollback"):
        registry.transition(name, v1, "production", "v2 is bad")
    back = registry.transition(name, v1, "production", "v2 is bad", rollback=True)
    times["rollback"] = datetime.now(UTC)
    assert back.state == "production" and back.aliases == ("champion",)
    assert registry.get(name, v2).state == "archived"

    # An operator's override: recorded as forced, with actor and reason.
    v3 = _register(registry, trained, name)
    forced = registry.transition(
        name, v3, "production", "hotfix, approved in INC-42", actor="alice", force=True
    )
    times["forced"] = datetime.now(UTC)
    assert forced.state == "production" and registry.get(name, v1).state == "archived"
    last = registry.history(name)[-2:]
    assert [(t.version, t.from_state, t.to_state) for t in last] == [
        (v1, "production", "archived"),
        (v3, "candidate", "production"),
    ]
    assert all(t.force and t.actor == "alice" for t in last)
    assert last[0].seq == last[1].seq and "INC-42" in last[1].reason
    rolled = registry.history(name, v1)
    assert [t.rollback for t in rolled if t.to_state == "production"] == [False, True]

    # Which version served production at time T.
    assert registry.production_at(name, times["start"]) is None
    assert registry.production_at(name, times["v1"]) == v1
    assert registry.production_at(name, times["v2"]) == v2
    assert registry.production_at(name, times["rollback"]) == v1
    assert registry.production_at(name, times["forced"]) == v3
    assert registry.production_at(name, times["start"] - timedelta(days=1)) is None
    naive = times["v2"].astimezone(UTC).replace(tzinfo=None)  # naive = UTC
    assert registry.production_at(name, naive) == v2
    # At the exact recorded time of each promotion, that version is in production.
    for move in registry.history(name):
        if move.to_state == "production":
            assert registry.production_at(name, move.time) == move.version

    # Leaving production removes the alias; exactly one production version throughout.
    registry.transition(name, v3, "archived", "retired")
    assert registry.champion(name) is None
    assert "champion" not in registry.client.get_registered_model(name).aliases
    assert [v.state for v in registry.versions(name)] == ["archived"] * 3


def test_unknown_model_and_version_are_named(registry):
    with pytest.raises(NotFound, match="model 'nope' does not exist"):
        registry.get("nope", 1)
    with pytest.raises(NotFound, match="model 'nope' does not exist"):
        registry.history("nope")
    with pytest.raises(NotFound, match="version 42 does not exist"):
        registry.get("lineage", 42)


def test_views_left_behind_by_a_crash_are_repaired_by_the_next_change(registry, trained):
    """A process that died after recording a change but before moving the alias and the
    state tag: readers already see the recorded state; the next change repairs the views."""
    name = "crash"
    v1, v2 = _register(registry, trained, name), _register(registry, trained, name)
    _walk(registry, name, v1, "staging", "production")
    # The views as a crash would leave them: alias gone, v1's state tag stale.
    registry.client.delete_registered_model_alias(name, "champion")
    registry.client.set_model_version_tag(name, v1, reg.STATE_TAG, "staging")
    assert registry.get(name, v1).state == "production"  # by the history
    registry.transition(name, v2, "rejected", "worse")
    raw = _raw(registry, name)
    assert raw["aliases"] == {"champion": v1}
    assert raw["versions"][v1][reg.STATE_TAG] == "production"


# --------------------------------------------------------------------------- the lock


def _run_race(uri, name, versions, to_state, hold=0.5, use_lock=True) -> dict[str, str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(versions)), ctx.Queue()
    procs = [
        ctx.Process(
            target=racer.race, args=(uri, name, v, to_state, barrier, results, hold, use_lock)
        )
        for v in versions
    ]
    for p in procs:
        p.start()
    out = dict(results.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return out


def _production(registry: Registry, name: str) -> list[str]:
    return [v.version for v in registry.versions(name) if v.state == "production"]


def test_two_processes_racing_for_the_first_production_leave_exactly_one(
    registry, trained, tracking_uri
):
    name = "race-first"
    v1, v2 = _register(registry, trained, name), _register(registry, trained, name)
    for v in (v1, v2):
        _walk(registry, name, v, "staging")
    out = _run_race(tracking_uri, name, [v1, v2], "production")
    assert sorted(r.split(":")[0] for r in out.values()) == ["illegal", "ok"], out
    [winner] = [v for v, r in out.items() if r == "ok"]
    assert _production(registry, name) == [winner]
    assert registry.client.get_registered_model(name).aliases == {"champion": winner}
    assert "first production version" in next(r for r in out.values() if r != "ok")
    assert [t.version for t in registry.history(name) if t.to_state == "production"] == [winner]


def test_two_processes_promoting_two_canaries_leave_exactly_one_production(
    registry, trained, tracking_uri
):
    name = "race-canary"
    v1, v2, v3 = (_register(registry, trained, name) for _ in range(3))
    _walk(registry, name, v1, "staging", "production")
    for v in (v2, v3):
        _walk(registry, name, v, "staging", "canary")
    out = _run_race(tracking_uri, name, [v2, v3], "production")
    assert out == {v2: "ok", v3: "ok"}  # serialized by the lock: the later one wins
    promotions = [t for t in registry.history(name) if t.to_state == "production"]
    last = promotions[-1].version
    assert _production(registry, name) == [last]
    assert registry.client.get_registered_model(name).aliases == {"champion": last}
    # Each promotion archived the champion it replaced, in the same recorded step.
    archived = [t for t in registry.history(name) if t.to_state == "archived"]
    assert [(t.seq, t.version) for t in archived] == [
        (promotions[1].seq, v1),
        (promotions[2].seq, promotions[1].version),
    ]


def test_without_the_lock_the_same_race_breaks_the_invariant(registry, trained, tracking_uri):
    """The control: through MLflow's API alone (no lock) both racers read "no champion yet" and
    both pass the state machine's check; then either both "succeed" (two versions tagged
    production, one record overwritten: both wrote the same sequence number) or the store's
    unique constraint fails one of them mid-write. Either way: why the lock exists."""
    name = "race-nolock"
    v1, v2 = _register(registry, trained, name), _register(registry, trained, name)
    for v in (v1, v2):
        _walk(registry, name, v, "staging")
    out = _run_race(tracking_uri, name, [v1, v2], "production", hold=1.0, use_lock=False)
    assert not [r for r in out.values() if r.startswith("illegal")], out  # neither was refused
    raw = _raw(registry, name)
    tagged = sorted(v for v, tags in raw["versions"].items() if tags[reg.STATE_TAG] == "production")
    recorded = [t for t in registry.history(name) if t.to_state == "production"]
    if out == {v1: "ok", v2: "ok"}:
        assert tagged == sorted([v1, v2]) and len(recorded) == 1, (tagged, recorded)
    else:
        assert [r for r in out.values() if r.startswith("error")], out


def test_a_stale_lock_is_broken_and_a_live_one_waited_for(registry, trained, tracking_uri):
    name = "stale"
    v1 = _register(registry, trained, name)
    lock = f"{name}{reg.LOCK_SUFFIX}"
    # A holder that died: its lock stays.
    registry.client.create_registered_model(
        lock, tags={reg.KIND_TAG: "lock", reg.LOCK_TOKEN_TAG: "dead", reg.LOCK_OWNER_TAG: "ghost"}
    )
    impatient = Registry(tracking_uri, actor="impatient", lock_timeout=1.0, lock_stale_after=60)
    before = _raw(registry, name)
    with pytest.raises(reg.LockTimeout, match="held by ghost"):
        impatient.transition(name, v1, "staging", "waits")
    assert _raw(registry, name) == before
    breaker = Registry(tracking_uri, actor="breaker", lock_timeout=30, lock_stale_after=1.0)
    began = time.monotonic()
    assert breaker.transition(name, v1, "staging", "after the stale lock").state == "staging"
    assert time.monotonic() - began >= 1.0  # it waited out lock_stale_after, not lock_timeout
    assert (
        registry.client.get_registered_model(f"{lock}.stale.dead").tags[reg.LOCK_OWNER_TAG]
        == "ghost"
    )
    assert not registry.client.search_registered_models(f"name = '{lock}'")
    assert not [v for v in registry.versions() if v.name.startswith(lock)]
