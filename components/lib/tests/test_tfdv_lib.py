"""The shared modules validate_data needs import and work in the TFDV env (pyarrow 10, no kfp, no scikit-learn).

Run with the TFDV virtualenv (the Makefile's test target does): .venv-tfdv/bin/python -m pytest FILE
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.tfdv

TFDV_SAFE = ("tables", "artifacts", "storage", "logs", "specs", "capture_layout")


ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", TFDV_SAFE)
def test_imports_without_kfp_or_scikit_learn(name):
    # In a fresh interpreter: other tests of this run may have imported anything.
    code = (
        f"import sys, components.lib.{name}; "
        "print(sorted({'kfp', 'sklearn', 'minio', 'joblib'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]", found.stdout


def test_reads_what_validate_data_reads(tmp_path, bikeshare_csv):
    from components.lib import tables

    csv = tables.read_table(str(bikeshare_csv), what="dataset", large_types=False)
    assert csv.num_rows == 8645
    path = tmp_path / "train"  # an artifact path: no extension, Parquet by content
    pq.write_table(csv, path)
    table = tables.read_table(str(path), what="dataset", large_types=False)
    assert table.equals(csv)
    assert not any(pa.types.is_large_string(t) for t in table.schema.types)


def test_hashes_and_verifies_side_files(tmp_path):
    from components.lib import artifacts

    path = tmp_path / "spec.json"
    path.write_text("{}")
    sha = artifacts.sha256_file(path)
    assert artifacts.read_verified(str(path), sha, "spec") == b"{}"
    with pytest.raises(artifacts.IntegrityError):
        artifacts.read_verified(str(path), "0" * 64, "spec")
