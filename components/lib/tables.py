"""Reading a CSV or Parquet file into an Arrow table, strictly, with errors that name the file.

Only pyarrow at the top (no pandas, kfp or scikit-learn): the TFDV image (pyarrow 10)
and the pipeline image both import it. Ingest reads snapshots with it; validate_data
reads its datasets with it.

Strict by default: an empty file, a CSV row with too few or too many fields, a CSV
without a header, a header without rows, repeated column names and (in a CSV) bytes that
are not UTF-8 are errors naming the line and column. The errors are :class:`TableError`
unless the caller passes its own exception class.

Beware of one pyarrow default: the CSV reader takes ``NA``, ``N/A``, ``n/a``, ``null``,
``nan`` and the empty string as missing values.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("auto", "csv", "parquet")
PARQUET_MAGIC = b"PAR1"
# Arrow infers CSV column types from the first block: a large block sees more rows.
CSV_BLOCK_SIZE = 1 << 24


class TableError(ValueError):
    """A file that cannot be read as a table; the message names the file and the cause."""


def format_from_name(name: str) -> str | None:
    """``parquet`` or ``csv`` by the file name's ending (of a path or URI); None when it tells neither."""
    path = urlparse(name).path.lower() if "://" in name else name.lower()
    if path.endswith((".parquet", ".pq")):
        return "parquet"
    if path.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def sniff_format(path: str) -> str:
    """``parquet`` when the file starts with Parquet's magic bytes, else ``csv``."""
    with open(path, "rb") as fh:
        return "parquet" if fh.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC else "csv"


def read_table(
    path: str,
    file_format: str = "auto",
    *,
    what: str = "table",
    name: str | None = None,
    require_rows: bool = True,
    require_utf8: bool = True,
    large_types: bool = True,
    error: type[Exception] = TableError,
) -> pa.Table:
    """Reads the CSV or Parquet file at ``path``.

    Args:
        path: A local file.
        file_format: ``csv``, ``parquet``, or ``auto``: by the ending of ``name`` (or
            ``path``), else by the file's first bytes (Parquet's magic ``PAR1``, else CSV).
        what: How messages name the file's role (``source_uri``, ``dataset``).
        name: How messages name the file (the URI it came from); default ``path``.
        require_rows: A table without rows is an error.
        require_utf8: A CSV column with bytes that are not UTF-8 is an error (Arrow would
            read it as binary), naming the column and the line.
        large_types: Keep Arrow's 64-bit-offset ``large_string`` / ``large_binary`` columns;
            False casts them to ``string`` / ``binary`` (TFDV knows only those).
        error: The exception class raised, with the message as its only argument.

    Raises:
        ``error``: The file is missing, empty or cannot be parsed, or breaks a rule above.
    """
    label = f"{what} {(name or path)!r}"
    if file_format not in FORMATS:
        raise error(
            f"file_format {file_format!r} is not supported; use one of {', '.join(FORMATS)}"
        )
    if not os.path.isfile(path):
        raise error(f"{label} not found" + (f" (no file at {path})" if name else ""))
    if os.path.getsize(path) == 0:
        raise error(f"{label} is empty (0 bytes)")
    fmt = file_format
    if fmt == "auto":
        fmt = format_from_name(name or path) or sniff_format(path)
    if fmt == "parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise error(f"{label} is not a readable Parquet file: {exc}") from exc
    else:
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_SIZE),
                parse_options=pacsv.ParseOptions(newlines_in_values=False),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise error(f"{label} has unparsable rows: {exc}") from exc
        if table.num_columns == 0:
            raise error(f"{label} has no header row")
        if require_utf8:
            _require_utf8(table, label, error)
    if require_rows and table.num_rows == 0:
        raise error(f"{label} has a header ({table.num_columns} columns) but no data rows")
    names = table.column_names
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise error(f"{label} repeats column names: {', '.join(repeated)}")
    if not large_types:
        table = _small_offsets(table)
    return table


def _require_utf8(table: pa.Table, label: str, error: type[Exception]) -> None:
    """Arrow reads a CSV column with bytes that are not UTF-8 as binary: name it and the line."""
    for column_name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_binary(column.type):
            continue
        for line, value in enumerate(column.to_pylist(), start=2):
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(
                    f"{label}: column {column_name!r} has bytes that are not UTF-8 on line {line} "
                    f"({value[max(0, exc.start - 8) : exc.end + 8]!r}); re-encode the file as UTF-8"
                ) from exc


def _small_offsets(table: pa.Table) -> pa.Table:
    fields = []
    for f in table.schema:
        if pa.types.is_large_string(f.type):
            f = pa.field(f.name, pa.string(), f.nullable, f.metadata)
        elif pa.types.is_large_binary(f.type):
            f = pa.field(f.name, pa.binary(), f.nullable, f.metadata)
        fields.append(f)
    return table.cast(pa.schema(fields, table.schema.metadata))
