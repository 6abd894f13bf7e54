"""Ingest logic, called directly (no kfp)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.ingest.executor import IngestError, SplitRule, Window, run, split_rule_for

pytestmark = pytest.mark.unit

TIME_RULE = SplitRule("time", "day", 0.7, 0.15, 0.15)


def outputs_in(tmp_path: Path) -> dict[str, str]:
    return {name: str(tmp_path / "out" / name) for name in ("train", "eval", "holdout")}


def read(path: str) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def test_time_split_orders_and_partitions_every_row(bikeshare_csv, tmp_path):
    results = run(str(bikeshare_csv), outputs_in(tmp_path), TIME_RULE)
    parts = {name: read(res.path) for name, res in results.items()}
    source = pd.read_csv(bikeshare_csv)

    assert sum(len(p) for p in parts.values()) == len(source) == 8645
    # Oldest rows train, newest holdout; one day never straddles two splits.
    assert parts["train"]["day"].max() < parts["eval"]["day"].min()
    assert parts["eval"]["day"].max() < parts["holdout"]["day"].min()
    for name, frac in (("train", 0.7), ("eval", 0.15), ("holdout", 0.15)):
        assert abs(len(parts[name]) / len(source) - frac) < 0.01, name
    # Nothing is lost or changed: the splits put back together are the source.
    rebuilt = pd.concat(parts.values(), ignore_index=True)
    pd.testing.assert_frame_equal(rebuilt, source, check_dtype=False)


def test_metadata_records_version_source_and_rule(bikeshare_csv, tmp_path):
    window = Window("day", "10", "300")
    results = run(str(bikeshare_csv), outputs_in(tmp_path), TIME_RULE, window=window)
    meta = results["train"].metadata
    assert meta["rows"] == len(read(results["train"].path))
    assert meta["columns"][:3] == ["season", "mnth", "day"] and meta["num_columns"] == 15
    assert len(meta["sha256"]) == 64
    assert meta["source_uri"] == str(bikeshare_csv)
    assert (
        meta["source_sha256"] == "ac6950ae6f11efcc69c29d6bb13e8881c001e27d36434660d59444a1414f712c"
    )
    assert meta["window"] == {"column": "day", "start": "10", "end": "300"}
    assert meta["split_rule"] == {
        "method": "time",
        "column": "day",
        "fractions": {"train": 0.7, "eval": 0.15, "holdout": 0.15},
    }


def test_same_snapshot_gives_same_hashes_and_other_data_does_not(bikeshare_csv, tmp_path):
    first = run(str(bikeshare_csv), outputs_in(tmp_path / "a"), TIME_RULE)
    second = run(str(bikeshare_csv), outputs_in(tmp_path / "b"), TIME_RULE)
    assert {n: r.sha256 for n, r in first.items()} == {n: r.sha256 for n, r in second.items()}

    changed = tmp_path / "changed.csv"
    lines = bikeshare_csv.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",16\n", ",17\n")  # one label of the first (train) row
    changed.write_text("".join(lines))
    third = run(str(changed), outputs_in(tmp_path / "c"), TIME_RULE)
    assert third["train"].sha256 != first["train"].sha256
    assert third["eval"].sha256 == first["eval"].sha256


def test_window_keeps_half_open_numeric_range(bikeshare_csv, tmp_path):
    results = run(
        str(bikeshare_csv), outputs_in(tmp_path), TIME_RULE, window=Window("day", "32", "60")
    )
    days = pd.concat(read(r.path) for r in results.values())["day"]
    assert days.min() == 32 and days.max() == 59
    assert results["train"].metadata["source_rows"] == 8645


def test_window_on_timestamp_column(tmp_path):
    src = tmp_path / "events.csv"
    times = pd.date_range("2026-01-01", periods=100, freq="h")
    pd.DataFrame({"ts": times.strftime("%Y-%m-%dT%H:%M:%S"), "x": range(100)}).to_csv(
        src, index=False
    )
    rule = SplitRule("time", "ts", 0.5, 0.5, 0.0)
    results = run(
        str(src), outputs_in(tmp_path), rule, window=Window("ts", "2026-01-02", "2026-01-03")
    )
    kept = pd.concat(read(r.path) for r in results.values())
    assert sorted(kept["x"]) == list(range(24, 48))
    assert results["holdout"].rows == 0


def test_hash_split_is_stable_per_key(bikeshare_csv, tmp_path):
    rule = SplitRule("hash", "day", 0.6, 0.2, 0.2)
    full = run(str(bikeshare_csv), outputs_in(tmp_path / "full"), rule)
    days = {name: set(read(r.path)["day"]) for name, r in full.items()}
    assert not (days["train"] & days["eval"]) and not (days["train"] & days["holdout"])
    assert not (days["eval"] & days["holdout"])
    assert abs(len(days["train"]) / 365 - 0.6) < 0.1

    # A key keeps its split when the snapshot holds other rows too.
    half = tmp_path / "half.csv"
    pd.read_csv(bikeshare_csv).query("day % 2 == 0").to_csv(half, index=False)
    sub = run(str(half), outputs_in(tmp_path / "half"), rule)
    for name, r in sub.items():
        assert set(read(r.path)["day"]) <= days[name]


def test_parquet_and_file_uri_read_the_same_rows(bikeshare_csv, tmp_path):
    parquet = tmp_path / "bikeshare.parquet"
    pd.read_csv(bikeshare_csv).to_parquet(parquet, index=False)
    from_csv = run(f"file://{bikeshare_csv}", outputs_in(tmp_path / "csv"), TIME_RULE)
    from_parquet = run(str(parquet), outputs_in(tmp_path / "pq"), TIME_RULE)
    for name in from_csv:
        pd.testing.assert_frame_equal(read(from_csv[name].path), read(from_parquet[name].path))


def test_s3_source_through_minio_client(bikeshare_csv, s3_server, s3_client, tmp_path):
    s3_client.make_bucket("snapshots")
    data = bikeshare_csv.read_bytes()
    s3_client.put_object("snapshots", "bikeshare/2011.csv", io.BytesIO(data), len(data))
    remote = run(
        "s3://snapshots/bikeshare/2011.csv",
        outputs_in(tmp_path / "s3"),
        TIME_RULE,
        s3_endpoint=s3_server,
        s3_secure=False,
    )
    local = run(str(bikeshare_csv), outputs_in(tmp_path / "local"), TIME_RULE)
    assert {n: r.sha256 for n, r in remote.items()} == {n: r.sha256 for n, r in local.items()}

    with pytest.raises(IngestError, match=r"s3://snapshots/nope.csv.*not found.*NoSuchKey"):
        run(
            "s3://snapshots/nope.csv",
            outputs_in(tmp_path / "x"),
            TIME_RULE,
            s3_endpoint=s3_server,
            s3_secure=False,
        )


def test_s3_without_credentials_names_the_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(IngestError, match="no S3 credentials.*AWS_ACCESS_KEY_ID"):
        run("s3://b/k.csv", outputs_in(tmp_path), TIME_RULE, s3_endpoint="127.0.0.1:1")


HEADER = "day,hr,temp,bikers\n"
ROWS = "".join(f"{d},{h},0.5,{d * h}\n" for d in range(1, 11) for h in range(3))


def _write(tmp_path: Path, name: str, content: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


BAD_INPUTS = {
    # case: (file name, content or None for no file, rule, window, expected message)
    "missing file": ("absent.csv", None, TIME_RULE, None, r"not found \(no file at"),
    "empty file": ("empty.csv", "", TIME_RULE, None, r"is empty \(0 bytes\)"),
    "header only": (
        "header.csv",
        HEADER,
        TIME_RULE,
        None,
        r"header \(4 columns\) but no data rows",
    ),
    "extra field in a row": (
        "extra.csv",
        HEADER + ROWS + "11,1,0.5,3,99\n",
        TIME_RULE,
        None,
        r"unparsable rows.*Expected 4 columns, got 5",
    ),
    "truncated last row": (
        "trunc.csv",
        HEADER + ROWS + "11,1,0.",
        TIME_RULE,
        None,
        r"unparsable rows.*Expected 4 columns, got 3",
    ),
    "not a parquet file": (
        "fake.parquet",
        "day,hr\n1,2\n",
        TIME_RULE,
        None,
        r"not a readable Parquet file",
    ),
    "unknown extension": (
        "data.txt",
        HEADER + ROWS,
        TIME_RULE,
        None,
        r"cannot tell the format.*file_format",
    ),
    "missing time column": (
        "a.csv",
        HEADER + ROWS,
        SplitRule("time", "ts", 0.7, 0.15, 0.15),
        None,
        r"time_column 'ts' is not a column.*day, hr, temp, bikers",
    ),
    "missing key column": (
        "a.csv",
        HEADER + ROWS,
        SplitRule("hash", "user", 0.7, 0.15, 0.15),
        None,
        r"key_column 'user' is not a column",
    ),
    "null time values": (
        "nulls.csv",
        HEADER + ROWS + ",1,0.5,3\n",
        TIME_RULE,
        None,
        r"time_column 'day' has 1 null values",
    ),
    "window selects no rows": (
        "a.csv",
        HEADER + ROWS,
        TIME_RULE,
        Window("day", "400", "500"),
        r"window day in \[400, 500\) selects no rows.*spans 1 .. 10",
    ),
    "window bound neither number nor timestamp": (
        "a.csv",
        HEADER + ROWS,
        TIME_RULE,
        Window("day", "soon", ""),
        r"window_start 'soon' is neither a number nor a timestamp",
    ),
    "timestamp bound on a numeric time column": (
        "a.csv",
        HEADER + ROWS,
        TIME_RULE,
        Window("day", "", "2011-06-01"),
        r"window_end '2011-06-01' is not a number, but the time column is numeric",
    ),
    "fractions do not sum to 1": (
        "a.csv",
        HEADER + ROWS,
        SplitRule("time", "day", 0.7, 0.2, 0.2),
        None,
        r"must sum to 1, got 0.7 \+ 0.2 \+ 0.2 = 1.1",
    ),
    "negative fraction": (
        "a.csv",
        HEADER + ROWS,
        SplitRule("time", "day", 1.2, 0.1, -0.3),
        None,
        r"train_fraction must be a number in \[0, 1\]",
    ),
    "unknown split method": (
        "a.csv",
        HEADER + ROWS,
        SplitRule("random", "day", 0.7, 0.15, 0.15),
        None,
        r"split_method 'random' is not supported",
    ),
    "time split without column": (
        "a.csv",
        HEADER + ROWS,
        SplitRule("time", "", 0.7, 0.15, 0.15),
        None,
        r"needs time_column, which is empty",
    ),
    "too few rows for eval": (
        "one.csv",
        HEADER + "1,1,0.5,3\n",
        TIME_RULE,
        None,
        r"the eval split is empty",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_named_and_nothing_is_written(case, tmp_path):
    name, content, rule, window, message = BAD_INPUTS[case]
    src = str(tmp_path / name) if content is None else _write(tmp_path, name, content)
    outputs = outputs_in(tmp_path)
    with pytest.raises(IngestError, match=message):
        run(src, outputs, rule, window=window)
    assert not any(os.path.exists(p) for p in outputs.values())


# Parameters that are wrong whatever the data: each is named before the snapshot is read,
# so the source here does not even exist.
BAD_PARAMETERS = {
    # case: (rule, window, file_format, expected message)
    "unknown split method": (
        SplitRule("random", "day", 0.7, 0.15, 0.15),
        Window(),
        "auto",
        r"split_method 'random' is not supported; use one of time, hash",
    ),
    "fractions do not sum to 1": (
        SplitRule("time", "day", 0.8, 0.15, 0.15),
        Window(),
        "auto",
        r"train_fraction \+ eval_fraction \+ holdout_fraction must sum to 1",
    ),
    "empty eval fraction": (
        SplitRule("time", "day", 0.85, 0.0, 0.15),
        Window(),
        "auto",
        r"train_fraction and eval_fraction must be > 0",
    ),
    "hash split without key column": (
        SplitRule("hash", "", 0.7, 0.15, 0.15),
        Window(),
        "auto",
        r"split_method 'hash' needs key_column, which is empty",
    ),
    "window without time column": (
        SplitRule("hash", "hr", 0.7, 0.15, 0.15),
        Window("", "1", "5"),
        "auto",
        r"window_start / window_end are set but time_column is empty",
    ),
    "window bound unparsable": (
        TIME_RULE,
        Window("day", "", "next week"),
        "auto",
        r"window_end 'next week' is neither a number nor a timestamp",
    ),
    "window start not before end": (
        TIME_RULE,
        Window("day", "200", "100"),
        "auto",
        r"window_start '200' is not before window_end '100'",
    ),
    "window bounds of two kinds": (
        TIME_RULE,
        Window("day", "1", "2011-06-01"),
        "auto",
        r"window_start '1' and window_end '2011-06-01' must both be numbers or both timestamps",
    ),
    "unknown file format": (
        TIME_RULE,
        Window(),
        "xlsx",
        r"file_format 'xlsx' is not supported; use one of auto, csv, parquet",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PARAMETERS), ids=list(BAD_PARAMETERS))
def test_bad_parameter_is_named_before_the_snapshot_is_read(case, tmp_path):
    rule, window, file_format, message = BAD_PARAMETERS[case]
    absent = str(tmp_path / "absent.csv")  # reading it would fail with "not found"
    with pytest.raises(IngestError, match=message):
        run(absent, outputs_in(tmp_path), rule, window=window, file_format=file_format)


def test_split_rule_for_picks_the_column_and_refuses_an_ignored_key_column():
    assert split_rule_for("time", "day", "", 0.7, 0.15, 0.15) == TIME_RULE
    # A hash split hashes key_column; time_column stays the window's column.
    assert split_rule_for("hash", "day", "hr", 0.6, 0.2, 0.2).column == "hr"
    with pytest.raises(IngestError, match=r"key_column 'hr' is set but split_method is 'time'"):
        split_rule_for("time", "day", "hr", 0.7, 0.15, 0.15)
    with pytest.raises(IngestError, match=r"must sum to 1"):
        split_rule_for("hash", "day", "hr", 0.7, 0.2, 0.2)


def test_number_bound_on_a_timestamp_column_is_named(tmp_path):
    src = tmp_path / "events.csv"
    times = pd.date_range("2026-01-01", periods=10, freq="h")
    pd.DataFrame({"ts": times.strftime("%Y-%m-%dT%H:%M:%S"), "x": range(10)}).to_csv(
        src, index=False
    )
    with pytest.raises(IngestError, match=r"window_start '3' is a number, but the time column"):
        run(
            str(src),
            outputs_in(tmp_path),
            SplitRule("time", "ts", 0.5, 0.5, 0.0),
            window=Window("ts", "3", ""),
        )


def test_directory_is_named(tmp_path):
    src = tmp_path / "dir.csv"
    src.mkdir()
    with pytest.raises(IngestError, match="is a directory; name one file"):
        run(str(src), outputs_in(tmp_path), TIME_RULE)


NOBODY = 65534  # the conventional unprivileged uid / gid (Debian's nobody / nogroup)


def _ingest_as_unprivileged(source: str, out_dir: str) -> str:
    """Runs ingest on ``source`` as a user without privileges; returns "ok" or the error.

    root reads any file whatever its mode, so as root the run happens in a forked child
    that drops to uid/gid ``NOBODY`` first (an exec'd interpreter could not be used: the
    venv's Python may sit under /root, which nobody cannot enter). Anything unexpected
    in the child, including a failure to drop privileges, comes back as an error.
    """
    if os.geteuid() != 0:
        try:
            run(source, outputs_in(Path(out_dir)), TIME_RULE)
        except IngestError as exc:
            return f"IngestError: {exc}"
        return "ok"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, never return into pytest
        status = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                os.setuid(0)
            except PermissionError:
                pass  # as it should: the child cannot become root again
            else:
                raise RuntimeError("privileges were not dropped: setuid(0) succeeded")
            try:
                run(source, outputs_in(Path(out_dir)), TIME_RULE)
                result = "ok"
            except IngestError as exc:
                result = f"IngestError: {exc}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails
            result, status = f"child failed: {type(exc).__name__}: {exc}", 1
        os.write(write_end, result.encode())
        os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_unreadable_file_is_named(tmp_path):
    # A folder an unprivileged user can enter (pytest's tmp_path is private to its owner).
    folder = Path(tempfile.mkdtemp(prefix="loopline-perm-"))
    try:
        folder.chmod(0o755)
        (folder / "out").mkdir(mode=0o777)
        (folder / "out").chmod(0o777)
        readable = folder / "readable.csv"
        readable.write_text(HEADER + ROWS)
        readable.chmod(0o644)
        locked = folder / "locked.csv"
        locked.write_text(HEADER + ROWS)
        locked.chmod(0)

        # The control: the same user reads a readable file in the same folder, so the
        # failure below is the file's mode, not a folder the user cannot enter.
        assert _ingest_as_unprivileged(str(readable), str(folder / "out")) == "ok"
        outcome = _ingest_as_unprivileged(str(locked), str(folder / "out" / "locked"))
        assert outcome == (
            f"IngestError: source_uri {str(locked)!r} is not readable (permission denied)"
        )
    finally:
        shutil.rmtree(folder)


def test_non_utf8_bytes_in_text_column_are_reported(tmp_path):
    src = _write(tmp_path, "latin1.csv", b"city,day\nM\xfcnchen,1\nBonn,2\nKiel,3\nUlm,4\n")
    with pytest.raises(IngestError, match=r"column 'city' has bytes that are not UTF-8 on line 2"):
        run(src, outputs_in(tmp_path), SplitRule("time", "day", 0.5, 0.5, 0.0))
