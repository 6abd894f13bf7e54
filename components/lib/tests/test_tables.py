"""The shared CSV / Parquet reader (ingest's rules; what validate_data needs to replace its own)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.lib import tables

pytestmark = pytest.mark.unit


class DatasetError(ValueError):
    """Stands for a caller's own error class (validate_data's ValidationInputError)."""


@pytest.fixture
def parquet_without_extension(tmp_path):
    path = tmp_path / "data"  # a KFP artifact path has no extension
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), path)
    return path


def test_reads_csv_and_parquet_by_name_or_by_content(tmp_path, parquet_without_extension):
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    assert tables.read_table(str(csv)).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    table = tables.read_table(str(parquet_without_extension))
    assert table.to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    assert tables.sniff_format(str(parquet_without_extension)) == "parquet"
    assert tables.sniff_format(str(csv)) == "csv"
    # A CSV without an extension is read as CSV (no Parquet magic).
    bare = tmp_path / "bare"
    bare.write_text("a\n1\n")
    assert tables.read_table(str(bare)).num_rows == 1


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("s3://b/k/data.parquet", "parquet"),
        ("/x/data.PQ", "parquet"),
        ("file:///x/data.csv.gz", "csv"),
        ("data.csv", "csv"),
        ("s3://b/k/data", None),
        ("data.json", None),
    ],
)
def test_format_from_name(name, fmt):
    assert tables.format_from_name(name) == fmt


BROKEN = {
    "empty": (b"", "is empty \\(0 bytes\\)"),
    "header only": (b"a,b\n", "has a header \\(2 columns\\) but no data rows"),
    "short row": (b"a,b\n1,2\n3\n", "has unparsable rows: .*Expected 2 columns"),
    "not utf-8": (
        b"a,city\n1,Paris\n2,Z\xfcrich\n",
        "column 'city' has bytes that are not UTF-8 on line 3",
    ),
    "repeated columns": (b"a,a\n1,2\n", "repeats column names: a"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_files_are_named_with_the_callers_words_and_error(case, tmp_path):
    content, message = BROKEN[case]
    path = tmp_path / "batch.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=rf"^dataset 's3://b/batch.csv'.*{message}"):
        tables.read_table(str(path), what="dataset", name="s3://b/batch.csv", error=DatasetError)


def test_default_error_and_a_missing_file(tmp_path):
    with pytest.raises(tables.TableError, match=r"table '.*nope.csv' not found"):
        tables.read_table(str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.parquet"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(tables.TableError, match="is not a readable Parquet file"):
        tables.read_table(str(bad))
    with pytest.raises(tables.TableError, match="file_format 'xlsx' is not supported"):
        tables.read_table(str(bad), "xlsx")


def test_lenient_options_for_validation(tmp_path):
    header_only = tmp_path / "h.csv"
    header_only.write_bytes(b"a,city\n")
    assert tables.read_table(str(header_only), require_rows=False).num_rows == 0
    latin1 = tmp_path / "l.csv"
    latin1.write_bytes(b"a,city\n1,Z\xfcrich\n")
    assert pa.types.is_binary(tables.read_table(str(latin1), require_utf8=False)["city"].type)


def test_large_types_can_be_cast_down_for_tfdv(tmp_path):
    path = tmp_path / "large.parquet"
    pq.write_table(
        pa.table(
            {
                "s": pa.array(["x", None], pa.large_string()),
                "b": pa.array([b"1", b"2"], pa.large_binary()),
                "n": [1, 2],
            }
        ),
        path,
    )
    assert pa.types.is_large_string(tables.read_table(str(path))["s"].type)
    small = tables.read_table(str(path), large_types=False)
    assert small.schema.types == [pa.string(), pa.binary(), pa.int64()]
    assert small["s"].to_pylist() == ["x", None]
