"""The bad-input corpus: broken batches derived from the Bikeshare data, each with what must catch it.

Each case says which stage stops the batch (``ingest`` for files that cannot be parsed,
``validate`` for data that parses but breaks the schema) and the column and anomaly
kind (TFDV's AnomalyInfo.Type name) or error text expected. Standard library only, so
that the main env and the TFDV env both use it. Write the files out for a look:

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


@dataclass(frozen=True)
class Case:
    name: str
    stage: str  # "ingest" or "validate"
    column: str  # the column that must be named ("" when the file has none)
    expect: str  # validate: the TFDV anomaly type; ingest: text of the error
    make: Callable[[list[str], list[list[str]]], bytes]


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
    def make(header, rows):
        i = header.index(column)
        for r in rows_to_change if rows_to_change is not None else range(len(rows)):
            rows[r][i] = value(rows[r][i], r)
        return _csv(header, rows)

    return make


def _drop(column: str):
    def make(header, rows):
        i = header.index(column)
        return _csv(header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows])

    return make


def _add(column: str, value: str):
    def make(header, rows):
        return _csv(header + [column], [r + [value] for r in rows])

    return make


def _truncated(header, rows):
    data = _csv(header, rows)
    return data[: len(data) - 20]  # the last row loses its last fields


def _non_utf8(header, rows):
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
    ),
    Case(
        "text_in_numeric",
        "validate",
        "temp",
        "UNEXPECTED_DATA_TYPE",
        _set("temp", lambda v, r: "warm"),
    ),
    Case(
        "null_rate_spike",
        "validate",
        "hum",
        "FEATURE_TYPE_LOW_FRACTION_PRESENT",
        _set("hum", lambda v, r: "" if r % 3 == 0 else v, None),
    ),
    Case(
        "out_of_range", "validate", "temp", "FLOAT_TYPE_BIG_FLOAT", _set("temp", lambda v, r: "1.7")
    ),
    Case(
        "negative_count",
        "validate",
        "bikers",
        "INT_TYPE_SMALL_INT",
        _set("bikers", lambda v, r: "-5"),
    ),
    Case(
        "unseen_category",
        "validate",
        "weathersit",
        "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        _set("weathersit", lambda v, r: "hail"),
    ),
    Case(
        "infinities",
        "validate",
        "windspeed",
        "FLOAT_TYPE_HAS_INF",
        _set("windspeed", lambda v, r: "inf"),
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
    Case("empty_file", "ingest", "", "is empty (0 bytes)", lambda h, r: b""),
    Case(
        "header_only",
        "ingest",
        "",
        "header (15 columns) but no data rows",
        lambda h, r: _csv(h, []),
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


def build(case: Case, directory: Path) -> Path:
    """Writes the broken batch of ``case`` to ``directory/<name>.csv``."""
    header, rows = _rows()
    path = Path(directory) / f"{case.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.make(header, rows))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for case in CASES:
        print(build(case, out), case.stage, case.column, case.expect)
