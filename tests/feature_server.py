"""A materialized Bikeshare feature store and a Feast feature server (``feast serve``) as
processes from ``.venv-features``, for tests and benchmarks that run in the main env.

* :func:`materialize`: ``components.materialize.executor`` on a CSV (the embedded target:
  Parquet offline store, SQLite online store, registry file, ``feature_store.yaml``).
* :class:`FeatureServer`: ``feast serve`` on that folder, on a free port.
* :func:`reference`: the offline store's point-in-time values (``historical_features``) and
  the online store's (``online_features``) at some times, computed by Feast in the features
  env (``python -m tests.feature_server reference``), as JSON.

Imports nothing beyond the standard library at module level: it runs in both envs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEATURES_BIN = ROOT / ".venv-features" / "bin"


def _need_env() -> None:
    if not (FEATURES_BIN / "feast").exists():
        raise RuntimeError(f"{FEATURES_BIN}/feast is missing: run `make setup` (the Feast env)")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def materialize(csv: Path, folder: Path) -> Path:
    """The CSV's weather materialized into an embedded store in ``folder / 'store'``."""
    _need_env()
    store = folder / "store"
    cmd = [
        str(FEATURES_BIN / "python"), "-m", "components.materialize.executor",
        "--dataset", str(csv), "--feature-store-out", str(store),
        "--offline-store-out", str(folder / "offline"), "--summary-out", str(folder / "summary.md"),
        "--feature-view-versions-out", str(folder / "versions.json"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=str(ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"materialize failed: {done.stderr[-3000:]}")
    return store


class FeatureServer:
    """``feast serve`` on a materialized store folder (its ``feature_store.yaml``)."""

    def __init__(self, store: Path, log_path: Path, port: int | None = None):
        from pipelines.local_s3 import free_port

        _need_env()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - open while the process runs
        # --max-requests 0: gunicorn would otherwise restart its worker every 1,000 requests.
        self.process = subprocess.Popen(
            [str(FEATURES_BIN / "feast"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-access-log", "--max-requests", "0"],
            stdout=self._log, stderr=subprocess.STDOUT, env=_env(), cwd=str(store),
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 90.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"feast serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"feast serve did not answer in {timeout} s")

    def stop(self) -> None:
        import contextlib
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def reference(store: Path, times: list[str], city: str = "washington_dc") -> dict:
    """{"offline": [row, ...], "online": [row, ...]}: each time's features from Feast."""
    _need_env()
    cmd = [str(FEATURES_BIN / "python"), "-m", "tests.feature_server", "reference", str(store),
           city, *times]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=str(ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"reference failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reference_main(store: str, city: str, times: list[str]) -> None:
    import logging

    import pandas as pd
    from feast import FeatureStore

    from components.lib import featurestore as fs

    logging.disable(logging.WARNING)
    feast_store = FeatureStore(repo_path=store)
    stamps = pd.to_datetime(times, utc=True)
    entity_df = pd.DataFrame({"city": city, "event_timestamp": stamps})
    offline = fs.historical_features(feast_store, entity_df)
    online = fs.online_features(feast_store, stamps, city=city)

    def rows(frame):
        out = frame.drop(columns=["event_timestamp"], errors="ignore")
        # to_dict boxes native Python values (full float precision, unlike to_json's 10 digits)
        return [
            {k: (None if v is None or v != v else v) for k, v in row.items()}
            for row in out.to_dict(orient="records")
        ]

    print(json.dumps({"offline": rows(offline), "online": rows(online)}, default=str))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "reference":
        _reference_main(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit("usage: python -m tests.feature_server reference STORE CITY TIME [TIME ...]")
