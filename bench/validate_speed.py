"""Validation speed: 1M rows x 15 columns through validate_data's own code path vs TFDV's Beam CSV path.

    make setup && TF_CPP_MIN_LOG_LEVEL=3 .venv-tfdv/bin/python bench/validate_speed.py [--repeat 116]

Builds the Bikeshare data repeated 116 times (1,002,820 rows x 15 columns) as CSV and
as Parquet, then times, in one process:
  * validate_data end to end as the component runs it (read with pyarrow, TFDV in-memory
    statistics, validation against the bikeshare schema with drift, HTML / Markdown / JSON
    outputs), for the CSV and the Parquet file;
  * tfdv.generate_statistics_from_csv on the same CSV (Beam DirectRunner: what TFX's
    StatisticsGen does), statistics only.
Prints a table; writes bench/results/validate_speed.json.
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.validate_data import executor  # noqa: E402

BIKESHARE = ROOT / "examples" / "bikeshare" / "bikeshare.csv"
OUT = ROOT / "bench" / "results" / "validate_speed.json"


def build(directory: Path, repeat: int) -> tuple[Path, Path, int]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(BIKESHARE)
    big = pa.concat_tables([table] * repeat)
    csv_path, parquet_path = directory / "big.csv", directory / "big.parquet"
    pacsv.write_csv(big, csv_path)
    pq.write_table(big, parquet_path)
    return csv_path, parquet_path, big.num_rows


def component_path(path: Path, out: Path) -> dict:
    started = time.perf_counter()
    result = executor.validate({"train": str(path)}, "bikeshare")
    executor.write_outputs(
        result,
        statistics_out=str(out / "statistics"),
        anomalies_out=str(out / "anomalies"),
        report_out=str(out / "report.html"),
        summary_out=str(out / "summary.md"),
        anomalies_found_out=str(out / "anomalies_found"),
    )
    total = time.perf_counter() - started
    t = result.timings
    return {
        "total_s": total,
        "read_s": t["read_train"],
        "statistics_s": t["statistics_train"],
        "validate_s": t["validate_train"],
        "outputs_s": t["write_outputs"],
        "rows": int(result.statistics.datasets[0].num_examples),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=116)
    args = parser.parse_args()
    import tensorflow_data_validation as tfdv  # imported before timing: 4 s on its own

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path, parquet_path, rows = build(tmp, args.repeat)
        results = {
            "csv": component_path(csv_path, tmp / "out-csv"),
            "parquet": component_path(parquet_path, tmp / "out-parquet"),
        }
        started = time.perf_counter()
        beam_stats = tfdv.generate_statistics_from_csv(str(csv_path))
        beam_s = time.perf_counter() - started
        assert beam_stats.datasets[0].num_examples == rows
    results["beam_generate_statistics_from_csv"] = {"total_s": beam_s, "rows": rows}
    speedup = {k: beam_s / results[k]["total_s"] for k in ("csv", "parquet")}

    print(
        f"\n{rows:,} rows x 15 columns ({args.repeat} x Bikeshare), {platform.processor() or platform.machine()}"
    )
    print(
        f"{'path':<40}{'total s':>9}{'read':>8}{'stats':>8}{'valid.':>8}{'outputs':>9}{'vs Beam':>9}"
    )
    for key in ("csv", "parquet"):
        r = results[key]
        print(
            f"{'validate_data, ' + key:<40}{r['total_s']:>9.2f}{r['read_s']:>8.2f}{r['statistics_s']:>8.2f}"
            f"{r['validate_s']:>8.3f}{r['outputs_s']:>9.3f}{speedup[key]:>8.1f}x"
        )
    print(f"{'tfdv.generate_statistics_from_csv (Beam)':<40}{beam_s:>9.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"rows": rows, "results": results, "speedup_vs_beam": speedup}, indent=2)
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
