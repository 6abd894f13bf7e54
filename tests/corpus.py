"""The bad-input corpus and the clean controls, all derived from the Bikeshare data.

Bad batches: each case says which stage stops the batch (``ingest`` for files that cannot
be parsed, ``validate`` for data that parses but breaks the schema) and the column and
anomaly kind (TFDV's AnomalyInfo.Type name) or error text expected. Row-level defects
(``newest_rows=True``) can also be placed only in the newest 10% of the rows, where a
time split puts them in the holdout: ``build(case, dir, newest=True)``.

Clean controls (``CONTROLS``): well-formed batches from different parts of the year, one
with its columns reordered, CSV and Parquet; each must pass the gate with 0 blocking
findings, with its seasonal drift reported (``reported`` names the columns that must be).

Standard library only (Parquet copies need pyarrow, imported when asked for), so that the
main env and the TFDV env both use it. Write the files out for a look:

    python -m tests.corpus OUT_DIR
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIKESHARE = Path(__file__).resolve().parent.parent / "examples" / "bikeshare" / "bikeshare.csv"
# Rows 100..139 are early January: with a time split they land in the train split.
DEFECT_ROWS = range(100, 140)
NEWEST_SHARE = 0.10  # newest-rows variants: defects only in the last 10% of the rows


@dataclass(frozen=True)
class Case:
    name: str
    stage: str  # "ingest" or "validate"
    column: str  # the column that must be named ("" when the file has none)
    expect: str  # validate: the TFDV anomaly type; ingest: text of the error
    make: Callable[..., bytes]  # make(header, rows, target=None); target: rows to break
    newest_rows: bool = False  # a row-level defect that can sit in the newest rows only


def _rows() -> tuple[list[str], list[list[str]]]:
    with BIKESHARE.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [row for row in reader]


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _set(column: str, value: Callable[[str, int], str], rows_to_change=DEFECT_ROWS):
    """Sets ``column`` on ``rows_to_change`` (None: every row), or on ``target`` when given."""

    def make(header, rows, target=None):
        i = header.index(column)
        chosen = target if target is not None else rows_to_change
        for r in chosen if chosen is not None else range(len(rows)):
            rows[r][i] = value(rows[r][i], r)
        return _csv(header, rows)

    return make


def _drop(column: str):
    def make(header, rows, target=None):
        i = header.index(column)
        return _csv(header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows])

    return make


def _add(column: str, value: str):
    def make(header, rows, target=None):
        return _csv(header + [column], [r + [value] for r in rows])

    return make


def _truncated(header, rows, target=None):
    data = _csv(header, rows)
    return data[: len(data) - 20]  # the last row loses its last fields


def _non_utf8(header, rows, target=None):
    data = _csv(header, rows).decode()
    lines = data.split("\n")
    lines[120] = lines[120].replace("clear", "cl\udce9ar").replace("cloudy/misty", "cl\udce9udy")
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def _shift(delta: float):
    return lambda v, _r: f"{min(1.0, float(v) + delta):.4f}"


CASES = [
    Case("missing_column", "validate", "hum", "SCHEMA_MISSING_COLUMN", _drop("hum")),
    Case(
        "extra_column", "validate", "station_id", "SCHEMA_NEW_COLUMN", _add("station_id", "31000")
    ),
    Case(
        "wrong_type",
        "validate",
        "hr",
        "UNEXPECTED_DATA_TYPE",
        _set("hr", lambda v, r: f"{int(v) + 0.5}", None),
        newest_rows=True,
    ),
    Case(
        "text_in_numeric",
        "validate",
        "temp",
        "UNEXPECTED_DATA_TYPE",
        _set("temp", lambda v, r: "warm"),
        newest_rows=True,
    ),
    Case(
        "null_rate_spike",
        "validate",
        "hum",
        "FEATURE_TYPE_LOW_FRACTION_PRESENT",
        _set("hum", lambda v, r: "" if r % 3 == 0 else v, None),
        newest_rows=True,
    ),
    Case(
        "out_of_range",
        "validate",
        "temp",
        "FLOAT_TYPE_BIG_FLOAT",
        _set("temp", lambda v, r: "1.7"),
        newest_rows=True,
    ),
    Case(
        "negative_count",
        "validate",
        "bikers",
        "INT_TYPE_SMALL_INT",
        _set("bikers", lambda v, r: "-5"),
        newest_rows=True,
    ),
    Case(
        "unseen_category",
        "validate",
        "weathersit",
        "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        _set("weathersit", lambda v, r: "hail"),
        newest_rows=True,
    ),
    Case(
        "infinities",
        "validate",
        "windspeed",
        "FLOAT_TYPE_HAS_INF",
        _set("windspeed", lambda v, r: "inf"),
        newest_rows=True,
    ),
    Case(
        "all_null_column",
        "validate",
        "atemp",
        "FEATURE_TYPE_NOT_PRESENT",
        _set("atemp", lambda v, r: "", None),
    ),
    Case(
        "shifted_distribution",
        "validate",
        "hum",
        "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
        _set("hum", _shift(0.25), None),
    ),
    Case("empty_file", "ingest", "", "is empty (0 bytes)", lambda h, r, target=None: b""),
    Case(
        "header_only",
        "ingest",
        "",
        "header (15 columns) but no data rows",
        lambda h, r, target=None: _csv(h, []),
    ),
    Case("truncated_last_row", "ingest", "", "unparsable rows", _truncated),
    Case(
        "non_utf8",
        "ingest",
        "weathersit",
        "column 'weathersit' has bytes that are not UTF-8",
        _non_utf8,
    ),
]
BY_NAME = {case.name: case for case in CASES}
NEWEST_CASES = [case for case in CASES if case.newest_rows]


def build(case: Case, directory: Path, newest: bool = False) -> Path:
    """Writes the broken batch of ``case`` to ``directory``; ``newest``: defects in the last 10% only."""
    header, rows = _rows()
    if newest and not case.newest_rows:
        raise ValueError(f"case {case.name} is not a row-level defect")
    target = range(int(len(rows) * (1 - NEWEST_SHARE)), len(rows)) if newest else None
    path = Path(directory) / f"{case.name}{'-newest' if newest else ''}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.make(header, rows, target))
    return path


def build_shift(column: str, delta: float, directory: Path) -> Path:
    """The whole Bikeshare year with ``column`` moved by ``delta`` (capped at 1.0)."""
    header, rows = _rows()
    path = Path(directory) / f"{column}_plus_{delta:g}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_set(column, _shift(delta), None)(header, rows))
    return path


# A humidity shift between the policy's warn and block levels (JS 0.14 on the train split):
# reported, and the batch trains. The corpus case (+0.25, JS 0.21) blocks.
REPORTED_SHIFT = ("hum", 0.2)


# --------------------------------------------------------------------------- clean controls


@dataclass(frozen=True)
class Control:
    """A clean batch: rows whose ``day`` (day of 2011) is in [first, last], maybe reordered."""

    name: str
    first: int
    last: int
    reported: frozenset[str]  # columns whose seasonal drift must be reported (not blocked)
    file_format: str = "csv"
    reorder: bool = False  # columns in reverse order


CONTROLS = [
    Control("winter", 1, 79, frozenset({"temp", "atemp", "bikers"})),
    Control("spring", 80, 171, frozenset({"temp", "atemp"})),
    Control("summer", 172, 265, frozenset({"temp", "atemp", "weathersit"}), "parquet"),
    Control("fall", 266, 355, frozenset({"temp", "atemp"})),
    Control("three_weeks_july", 190, 210, frozenset({"temp", "atemp", "weathersit"})),
    Control("january_to_june", 1, 181, frozenset({"temp", "atemp"})),
    Control("january_to_june_reordered", 1, 181, frozenset({"temp", "atemp"}), reorder=True),
    Control("january_to_june_parquet", 1, 181, frozenset({"temp", "atemp"}), "parquet"),
]
CONTROLS_BY_NAME = {control.name: control for control in CONTROLS}


def build_control(control: Control, directory: Path) -> Path:
    """Writes the clean batch of ``control`` (CSV, or Parquet through pyarrow) to ``directory``."""
    header, rows = _rows()
    day = header.index("day")
    kept = [r for r in rows if control.first <= int(r[day]) <= control.last]
    if control.reorder:
        header, kept = header[::-1], [r[::-1] for r in kept]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / f"{control.name}.csv"
    csv_path.write_bytes(_csv(header, kept))
    if control.file_format == "csv":
        return csv_path
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    parquet_path = directory / f"{control.name}.parquet"
    pq.write_table(pacsv.read_csv(csv_path), parquet_path)
    csv_path.unlink()
    return parquet_path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for case in CASES:
        print(build(case, out), case.stage, case.column, case.expect)
        if case.newest_rows:
            print(build(case, out, newest=True), case.stage, "holdout", case.column, case.expect)
    for control in CONTROLS:
        print(build_control(control, out), "clean; reported:", ", ".join(sorted(control.reported)))
