"""Evidently's DataDriftPreset on the drift benchmark's Parquet files (bench/drift.py runs it).

    /work/main/.venv-evidently/bin/python bench/drift_evidently.py REF.parquet CUR.parquet \
        --numeric n1,n2 --categorical c1,c2

Runs in its own venv (bench/requirements-evidently.txt: evidently 0.7 needs pandas < 3).
Prints one JSON object: the time to read the two Parquet files, the time of
``Dataset.from_pandas`` + ``Report([DataDriftPreset()]).run`` (``wall_s``), this process's
peak RSS, and per column Evidently's method, score, threshold and whether it drifted
(p-value methods drift below the threshold, distance methods at or above it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--numeric", required=True)
    parser.add_argument("--categorical", required=True)
    args = parser.parse_args(argv)
    numeric = [c for c in args.numeric.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]

    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    start = time.perf_counter()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    read_s = time.perf_counter() - start

    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    wall_s = time.perf_counter() - start

    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, value = config["method"], config["threshold"], metric["value"]
        pvalue = "p_value" in method.lower() or "p-value" in method.lower()
        drifted = value < threshold if pvalue else value >= threshold
        columns[config["column"]] = {
            "method": method,
            "score": value,
            "threshold": threshold,
            "drifted": bool(drifted),
        }
    result = {
        "tool": "evidently",
        "version": evidently.__version__,
        "read_s": read_s,
        "wall_s": wall_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "columns": columns,
        "flagged": sorted(c for c, v in columns.items() if v["drifted"]),
    }
    json.dump(result, sys.stdout)
    print()
    return result


if __name__ == "__main__":
    main()
