"""Validation speed: 1M rows x 15 columns through validate_data's own code path vs TFDV's Beam CSV path.

    make setup && TF_CPP_MIN_LOG_LEVEL=3 .venv-tfdv/bin/python bench/validate_speed.py [--repeat 116]

Builds the Bikeshare data repeated 116 times (1,002,820 rows x 15 columns), cut in time
order into train / eval / holdout (70 / 15 / 15) as CSV and as Parquet, then times, in one
process:
  * validate_data end to end as the component runs it on the three splits (read with
    pyarrow, TFDV in-memory statistics of each split, schema validation of each, drift of
    train against the reference judged by the policy with its bootstrap noise bounds, HTML /
    Markdown / JSON outputs), for the CSV and the Parquet files;
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


SPLITS = {"train": (0.0, 0.70), "eval": (0.70, 0.85), "holdout": (0.85, 1.0)}


def build(directory: Path, repeat: int) -> tuple[Path, dict, dict, int]:
    """The whole table as one CSV (for TFDV's Beam path) and the splits as CSV and Parquet."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(BIKESHARE)
    big = pa.concat_tables([table] * repeat)
    whole = directory / "big.csv"
    pacsv.write_csv(big, whole)
    csv_splits, parquet_splits = {}, {}
    for name, (lo, hi) in SPLITS.items():
        start, stop = int(lo * big.num_rows), int(hi * big.num_rows)
        part = big.slice(start, stop - start)
        csv_splits[name] = directory / f"{name}.csv"
        parquet_splits[name] = directory / f"{name}.parquet"
        pacsv.write_csv(part, csv_splits[name])
        pq.write_table(part, parquet_splits[name])
    return whole, csv_splits, parquet_splits, big.num_rows


def component_path(paths: dict, out: Path) -> dict:
    started = time.perf_counter()
    result = executor.validate({k: str(v) for k, v in paths.items()}, "bikeshare")
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
        "read_s": sum(t[f"read_{n}"] for n in SPLITS),
        "statistics_s": sum(t[f"statistics_{n}"] for n in SPLITS),
        # schema checks of every split, drift with its noise bounds (train)
        "validate_s": sum(t[f"validate_{n}"] for n in SPLITS),
        "outputs_s": t["write_outputs"],
        "rows": sum(int(d.num_examples) for d in result.statistics.datasets),
        "blocking": len(result.blocking),
        "reported": len(result.reported),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=116)
    args = parser.parse_args()
    import tensorflow_data_validation as tfdv  # imported before timing: 4 s on its own

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path, csv_splits, parquet_splits, rows = build(tmp, args.repeat)
        results = {
            "csv": component_path(csv_splits, tmp / "out-csv"),
            "parquet": component_path(parquet_splits, tmp / "out-parquet"),
        }
        started = time.perf_counter()
        beam_stats = tfdv.generate_statistics_from_csv(str(csv_path))
        beam_s = time.perf_counter() - started
        assert beam_stats.datasets[0].num_examples == rows
    results["beam_generate_statistics_from_csv"] = {"total_s": beam_s, "rows": rows}
    speedup = {k: beam_s / results[k]["total_s"] for k in ("csv", "parquet")}

    print(
        f"\n{rows:,} rows x 15 columns ({args.repeat} x Bikeshare) in three splits, "
        f"{platform.processor() or platform.machine()}"
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
