"""Registry versions as the serving image loads them, made without a registry server.

:func:`make_version` writes the MLflow model directory the registry stores for a version
(the sklearn flavor with skops, the request schema, the check rows, the manifest) for a real
Bikeshare model, and returns it with its manifest sha256 (the registry's record).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from components.lib import artifacts, registry
from tests import fitted

ROOT = Path(__file__).resolve().parent.parent
REQUEST_SCHEMA = ROOT / "components" / "serving" / "tests" / "request_schema_bikeshare.json"
SCHEMA_FILE = "loopline_request_schema.json"
CHECK_FILE = "loopline_check_rows.parquet"


def make_version(
    folder: Path, csv: Path, *, schema: bool = True, check: bool = True
) -> tuple[str, str, pd.DataFrame]:
    """(MLflow model directory, manifest sha256, the raw rows after the training rows)."""
    from components.lib.modeling import MODEL_FILE

    model_dir, lineage, _ = fitted.registrable_model(folder / "train", csv)
    model = artifacts.load_pickle(
        str(Path(model_dir) / MODEL_FILE),
        lineage["sha256"],
        "model",
        sklearn_version=lineage["sklearn_version"],
    )
    data = pd.read_csv(csv)
    rows = data.iloc[3600:5600].reset_index(drop=True)
    inputs = list(model.feature_names_in_)
    path = folder / "version"
    with tempfile.TemporaryDirectory() as tmp:
        registry._save_mlflow_model(model, str(path), rows[inputs].head(5), tmp)
    if schema:
        doc = REQUEST_SCHEMA.read_text()
        import json

        parsed = json.loads(doc)
        parsed["target"] = lineage.get("target", "bikers")
        (path / SCHEMA_FILE).write_text(json.dumps(parsed))
    if check:
        rows[inputs].to_parquet(path / CHECK_FILE, index=False)
    manifest = artifacts.write_manifest(path)
    return str(path), manifest, rows


SERVING_PYTHON = ROOT / ".venv-serving" / "bin" / "python"


class Server:
    """A model server process (``python -m components.serving``) from the serving env."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None):
        import os
        import subprocess

        from pipelines.local_s3 import free_port

        if not SERVING_PYTHON.exists():
            raise RuntimeError(
                f"{SERVING_PYTHON} is missing: run `make setup` (the model server's env)"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self._log = open(log_path, "w")  # noqa: SIM115 - open while the process runs
        self.process = subprocess.Popen(
            [str(SERVING_PYTHON), "-m", "components.serving", "--http_port", str(self.port),
             "--enable_grpc", "false", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=str(ROOT),
        )  # fmt: skip

    def wait_live(self, timeout: float = 60.0) -> None:
        """Until the server answers at all (``/v2/health/live``); raises with the log on failure."""
        import time

        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the model server exited: {self.log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the model server did not answer in {timeout} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except Exception:  # noqa: BLE001
            self.process.kill()
        self._log.close()
