"""``loopline labels put|show`` in-process (``main(argv)``) against the session's real S3
endpoint (moto's server), and once as the console script (python -m components.cli)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from components.cli.tests.invoke import failed_with, run
from components.lib import window

pytestmark = pytest.mark.unit

BUCKET = "labels-cli"


@pytest.fixture(scope="module")
def store(s3_store):
    s3_store.client().make_bucket(BUCKET)
    return ["--capture-uri", f"s3://{BUCKET}/capture", "--s3-endpoint", s3_store.endpoint]


def test_put_writes_the_layout_and_show_counts(store, s3_store, tmp_path, capsys):
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "request_id,label,labeled_at\n"
        "0001,12,2026-07-02T10:00:00Z\n"
        "r2,30.5,2026-07-02T11:00:00Z\n"
        "r3,7,2026-07-03T09:00:00Z\n"
    )
    code, out, err = run(capsys, "labels", "put", "bikes", str(csv), *store, "--insecure")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"wrote s3://{BUCKET}/capture/labels/model=bikes/date=2026-07-03/")
    assert lines[1] == "3 labels (float) for 3 request ids of model bikes"

    # A Parquet correction of r2, a day later: the latest labeled_at wins.
    pd.DataFrame(
        {
            "request_id": ["r2"],
            "label": [31.0],
            "labeled_at": pd.to_datetime(["2026-07-04T00:00Z"]),
        }
    ).to_parquet(tmp_path / "fix.parquet")
    code, out, _ = run(
        capsys, "labels", "put", "bikes", str(tmp_path / "fix.parquet"), *store, "--insecure"
    )
    assert code == 0 and "1 labels (float) for 1 request ids" in out

    code, out, _ = run(capsys, "labels", "show", "bikes", *store, "--insecure", "--json")
    shown = json.loads(out)
    assert shown["request_ids"] == 3 and shown["label_type"] == "float"
    assert shown["per_day"] == {"2026-07-02": 1, "2026-07-03": 1, "2026-07-04": 1}
    assert shown["where"] == f"s3://{BUCKET}/capture/labels/model=bikes/"
    labels = window.read_labels(s3_store.client(), BUCKET, "capture/labels", "bikes")
    assert dict(zip(labels["request_id"], labels["label"], strict=True)) == {
        "0001": 12.0,
        "r2": 31.0,
        "r3": 7.0,
    }
    code, out, _ = run(
        capsys, "labels", "show", "bikes", *store, "--insecure", "--since", "2026-07-03T00:00Z"
    )
    assert code == 0 and "2 request ids" in out.splitlines()[0]


@pytest.mark.parametrize(
    "text, needles",
    [
        ("id,label\nx,1\n", ["no column 'request_id'", "labels.csv"]),
        ("request_id,value\nx,1\n", ["no column 'label'"]),
        ("request_id,label\nx,1\n,2\n", ["column 'request_id' has 1 null"]),
        ("request_id,label\nx,\ny,2\n", ["column 'label' has 1 null"]),
    ],
    ids=["no-request-id", "no-label", "null-id", "null-label"],
)
def test_put_refuses_naming_the_column_and_the_file(store, tmp_path, capsys, text, needles):
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    failed_with(run(capsys, "labels", "put", "bikes", str(csv), *store, "--insecure"), *needles)


def test_put_names_a_missing_file_and_a_bad_uri(store, tmp_path, capsys):
    failed_with(
        run(capsys, "labels", "put", "bikes", str(tmp_path / "none.csv"), *store, "--insecure"),
        "labels file",
        "none.csv",
        "not found",
    )
    (tmp_path / "l.csv").write_text("request_id,label\nx,1\n")
    bad = ["--capture-uri", "/local/folder", "--s3-endpoint", "127.0.0.1:1"]
    failed_with(
        run(capsys, "labels", "put", "bikes", str(tmp_path / "l.csv"), *bad),
        "--capture-uri '/local/folder'",
    )


def test_the_console_script_says_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "l.csv").write_text("request_id,label\nx,1\n")
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "components.cli", "labels", "put", "bikes", str(tmp_path / "l.csv")]
        + ["--capture-uri", "s3://b/p"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "loopline: error: no S3 endpoint: pass --s3-endpoint or set LOOPLINE_S3_ENDPOINT"
    )
