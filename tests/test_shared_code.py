"""Code that several places need stays in one shared place (issue 9, item 7).

Each check names the one place and looks, as text or AST, for a second copy in the
code (tests are scanned too where they used to hold a copy).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("components", "pipelines", "examples", "bench", "tests")
# Folders still reading tables with pyarrow directly.
READER_EXCEPTIONS: set[str] = set()


def _sources(include_tests: bool = True, dirs: tuple[str, ...] = CODE_DIRS) -> dict[str, str]:
    out = {}
    for folder in dirs:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path == Path(__file__).resolve():
                continue  # this file names every pattern it looks for
            if not include_tests and ("/tests/" in rel or rel.startswith("tests/")):
                continue
            out[rel] = path.read_text()
    return out


def _where(
    pattern: str, include_tests: bool = True, dirs: tuple[str, ...] = CODE_DIRS
) -> list[str]:
    regex = re.compile(pattern)
    return [rel for rel, text in _sources(include_tests, dirs).items() if regex.search(text)]


def test_logging_is_set_up_in_one_place():
    assert _where(r"logging\.basicConfig\(") == ["components/lib/logs.py"]


def test_the_local_object_store_is_started_in_one_place():
    assert _where(r"ThreadedMotoServer|\.bind\(\(") == ["pipelines/local_s3.py"]


def test_the_secret_key_map_is_defined_once_and_used_by_the_pipeline_and_katib():
    from components.lib import storage
    from components.tune import katib, search_space
    from pipelines.training import pipeline

    assert _where(r"[\"']accesskey[\"']\s*:", include_tests=False) == ["components/lib/storage.py"]
    assert pipeline.S3_SECRET_KEYS is storage.S3_SECRET_KEYS
    body = katib.experiment(
        search_space.load("bikeshare"),
        "loopline-tune-1",
        "team-a",
        "img:1",
        {"train": "s3://b/t", "eval": "s3://b/e", "transformer": "s3://b/x"},
        credentials_secret="creds",
    )
    pod = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    env = {e["valueFrom"]["secretKeyRef"]["key"]: e["name"] for e in pod["containers"][0]["env"]}
    assert env == storage.S3_SECRET_KEYS


def test_files_are_hashed_in_one_place():
    defined = []
    for rel, text in _sources(include_tests=False).items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and "sha256" in node.name and "file" in node.name:
                defined.append(f"{rel}:{node.name}")
    assert defined == ["components/lib/artifacts.py:sha256_file"]
    assert not _where(r"sha256\([^)]*read_bytes\(\)")


def test_tables_are_read_in_one_place():
    # What the components read (benchmarks make their own inputs).
    readers = _where(
        r"pacsv\.read_csv|pyarrow\.csv\.read_csv|pq\.read_table\(",
        include_tests=False,
        dirs=("components", "pipelines"),
    )
    outside = [r for r in readers if not any(r.startswith(f"{e}/") for e in READER_EXCEPTIONS)]
    assert outside == ["components/lib/tables.py"]
    stale = [e for e in READER_EXCEPTIONS if not any(r.startswith(f"{e}/") for r in readers)]
    assert not stale, f"drop from READER_EXCEPTIONS: {stale}"


def test_pickles_are_loaded_only_by_the_verified_loader():
    """joblib.load / pickle.load outside components/lib/artifacts.py would skip the hash check."""
    loaders = _where(r"joblib\.load\(|pickle\.loads?\(", include_tests=False)
    assert loaders == ["components/lib/artifacts.py"]


def test_mlflow_models_are_loaded_only_by_the_verified_loader():
    """skops or MLflow's own loaders elsewhere would skip the manifest and the reviewed types."""
    loaders = _where(
        r"skops\.io\.loads?\(|sio\.loads?\(|mlflow\.\w+\.load_model\(|load_model\(\s*[\"']models:/",
        include_tests=False,
    )
    assert loaders == ["components/lib/artifacts.py"]


def test_model_states_change_only_in_the_registry_module():
    """The state machine is one module: nothing else writes a registry tag or alias."""
    writers = _where(
        r"set_registered_model_alias|delete_registered_model_alias|set_model_version_tag"
        r"|set_registered_model_tag|transition_model_version_stage",
        include_tests=False,
    )
    assert writers == ["components/lib/registry.py"]


def test_kfp_client_connection_and_api_errors_live_in_one_place_each():
    # The client and the package / parameter checks: components/lib/kfp_api.py; the CLI's
    # connection options and one-line API failures: components/cli/kfp_connection.py.
    assert _where(r"kfp\.Client\)|kfp\.Client\(", include_tests=False) == [
        "components/lib/kfp_api.py"
    ]
    assert _where(r"def (load_package|parse_params|connect)\(", include_tests=False) == [
        "components/lib/kfp_api.py"
    ]
    assert _where(r"exc\.status in \(401, 403\)", include_tests=False) == [
        "components/cli/kfp_connection.py"
    ]
    assert _where(r'add_argument\(\s*"--token"', include_tests=False) == [
        "components/cli/kfp_connection.py"
    ]


def test_image_uris_are_rewritten_in_one_place():
    # Retargeting and digest pinning: components/_images.py (the compile module uses it).
    assert _where(r"re\.compile\(\s*rf?\"\(\?<!", include_tests=False) == ["components/_images.py"]
