"""The point-in-time join at scale: Feast's DuckDB offline store vs a hand-written as-of join.

    .venv-features/bin/python bench/point_in_time.py [--sizes 10000,100000,1000000]
        [--methods feast_duckdb,loopline,merge_asof] [--seed 0]

(Feast's DuckDB store needs ``feast[duckdb]`` = ibis-framework[duckdb] in the features venv.)

Data. The Bikeshare snapshot's 8,645 hourly weather observations (2011) are repeated over
``ceil(n / 8645)`` synthetic cities (``city_000``, ``city_001`` ...; city ``k``'s temperatures
shifted by ``k / 1000`` so a row joined to the wrong city differs). Per city, 3% of the hours
(random, seeded) and one random 8-hour block lose their observation, so some examples have
no observation within the 3 h TTL and must get nulls. The examples are every observation hour
of every city (before the removal) plus a random 0-59 minutes, ``n`` of them drawn without
replacement (seeded), in random order: 10k = 2 cities, 100k = 12, 1M = 116.

Methods, each in its own process (peak RSS is that process's, data generation and imports
included; ``rss_before_join`` is the RSS just before the join):

  * ``feast_duckdb``: ``FeatureStore.get_historical_features`` of the ``weather`` view with
    ``offline_store: type: duckdb`` (Feast 0.67's ibis/DuckDB store) on the Parquet offline store.
  * ``loopline``: ``featurestore.historical_features`` (the wrapper the feature_join component
    calls: the weather view through the DuckDB store, left-joined back to every example, and
    the calendar on-demand view's transformation), all 11 features.
  * ``merge_asof``: the flat join by hand: pandas ``merge_asof(by="city", on="event_timestamp",
    direction="backward", tolerance=TTL)`` on the same Parquet (the peer).

Check: the weather columns of ``feast_duckdb`` and ``loopline`` equal ``merge_asof``'s row for
row (keyed by the example's id; values equal, nulls at the same places).

Feast's ``file`` (dask) store is not run: it joins every example with every observation of its
entity before the TTL filter (README: 800 examples 7.8 s, a year of one city stopped at 43 s and
6.6 GB); at 10k examples over 2 cities that is 86M pairs.

Writes bench/results/point_in_time.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIKESHARE = ROOT / "examples" / "bikeshare" / "bikeshare.csv"
OUT = ROOT / "bench" / "results" / "point_in_time.json"
METHODS = ("feast_duckdb", "loopline", "merge_asof")
HOURS_PER_CITY = 8645
WEATHER = ["weathersit", "temp", "atemp", "hum", "windspeed"]


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def make_data(n: int, seed: int, folder: str) -> tuple[str, str]:
    """Writes observations.parquet and examples.parquet (see the module's docstring)."""
    import numpy as np
    import pandas as pd

    from components.lib import featurestore as fs
    from components.lib import tables

    base = fs.weather_observations(tables.read_table(str(BIKESHARE)).to_pandas())
    rng = np.random.default_rng(seed)
    cities = math.ceil(n / len(base))
    obs, examples = [], []
    for k in range(cities):
        city = f"city_{k:03d}"
        frame = base.assign(city=city, temp=base["temp"] + k / 1000)
        hours = len(frame)
        keep = rng.random(hours) >= 0.03
        gap = int(rng.integers(0, hours - 8))
        keep[gap : gap + 8] = False
        obs.append(frame[keep])
        examples.append(
            pd.DataFrame(
                {
                    "city": city,
                    "event_timestamp": frame["event_timestamp"]
                    + pd.to_timedelta(rng.integers(0, 60, hours), unit="m"),
                }
            )
        )
    observations = pd.concat(obs, ignore_index=True)
    entity = pd.concat(examples, ignore_index=True)
    entity = entity.iloc[rng.choice(len(entity), size=n, replace=False)].reset_index(drop=True)
    entity["example_id"] = np.arange(n)
    entity["bikers"] = rng.integers(0, 1000, n)
    paths = (os.path.join(folder, "observations.parquet"), os.path.join(folder, "examples.parquet"))
    observations.to_parquet(paths[0], index=False)
    entity.to_parquet(paths[1], index=False)
    return paths


def run_one(method: str, obs_path: str, ent_path: str, out_path: str) -> dict:
    """One method in this process; writes its joined rows to ``out_path``."""
    import pandas as pd

    from components.lib import featurestore as fs
    from components.lib.feature_repos import bikeshare as repo

    t0 = time.perf_counter()
    observations = pd.read_parquet(obs_path)
    entity = pd.read_parquet(ent_path)
    if method == "merge_asof":
        rss = _rss_gb()
        t0 = time.perf_counter()
        left = entity.sort_values("event_timestamp", kind="stable")
        right = observations.sort_values("event_timestamp", kind="stable")
        joined = pd.merge_asof(
            left,
            right,
            on="event_timestamp",
            by="city",
            direction="backward",
            tolerance=pd.Timedelta(repo.WEATHER_TTL),
        ).sort_values("example_id")
        seconds = time.perf_counter() - t0
    else:
        where = fs.location(os.path.join(os.path.dirname(out_path), "store"), "embedded")
        os.makedirs(os.path.dirname(where.offline_uri), exist_ok=True)
        observations.to_parquet(where.offline_uri, index=False)
        store = fs.open_store(where, os.path.join(os.path.dirname(out_path), "repo"))
        fs.apply(store, where)
        rss = _rss_gb()
        t0 = time.perf_counter()
        if method == "feast_duckdb":
            refs = [f"{repo.WEATHER_VIEW}:{f}" for f in WEATHER]
            joined = store.get_historical_features(entity_df=entity, features=refs).to_df()
        else:
            joined = fs.historical_features(store, entity)
        seconds = time.perf_counter() - t0
    joined[["example_id", *WEATHER]].to_parquet(out_path, index=False)
    return {
        "method": method,
        "seconds": round(seconds, 3),
        "rows_out": len(joined),
        "peak_rss_gb": round(_rss_gb(), 3),
        "rss_before_join_gb": round(rss, 3),
    }


def compare(peer_path: str, other_path: str) -> dict:
    """Row-for-row equality of the weather columns, keyed by example id (nulls included)."""
    import pandas as pd

    peer = pd.read_parquet(peer_path).set_index("example_id").sort_index()
    other = pd.read_parquet(other_path).set_index("example_id").sort_index()
    out = {"rows_peer": len(peer), "rows_other": len(other)}
    if not peer.index.equals(other.index):
        out.update(identical=False, why="different example ids (dropped or duplicated rows)")
        return out
    mismatched = {}
    for col in WEATHER:
        a, b = peer[col], other[col]
        nulls_differ = int((a.isna() != b.isna()).sum())
        both = a.notna() & b.notna()
        if col == "weathersit":
            values_differ = int((a[both].astype(str) != b[both].astype(str)).sum())
        else:
            values_differ = int((a[both].astype(float) != b[both].astype(float)).sum())
        if nulls_differ or values_differ:
            mismatched[col] = {"nulls_differ": nulls_differ, "values_differ": values_differ}
    out.update(
        identical=not mismatched,
        mismatched=mismatched,
        null_rows=int(peer[WEATHER].isna().all(axis=1).sum()),
    )
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Point-in-time join: Feast's DuckDB offline store vs a hand-written as-of join",
        "",
        f"{result['machine']}; feast {result['versions'].get('feast')}, duckdb "
        f"{result['versions'].get('duckdb')}, ibis {result['versions'].get('ibis')}, pandas "
        f"{result['versions'].get('pandas')}. Data: the Bikeshare year's weather over synthetic "
        "cities (3% of hours and one 8-hour block per city without observation), examples at "
        "random minutes of every hour; TTL 3 h. Each method in its own process; RSS includes "
        "the data and the imports. `bench/point_in_time.py` (module docstring).",
        "",
        "| examples | cities | method | join (s) | peak RSS (GB) | RSS before join (GB) "
        "| rows out | equals merge_asof |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for size in result["sizes"]:
        for run in size["runs"]:
            if "error" in run:
                lines.append(
                    f"| {size['examples']:,} | {size['cities']} | `{run['method']}` | "
                    f"failed: {run['error']} | | | | |"
                )
                continue
            check = size["checks"].get(run["method"])
            verdict = "peer" if run["method"] == "merge_asof" else ""
            if check is not None:
                verdict = "identical" if check["identical"] else f"NO: {check}"
            lines.append(
                f"| {size['examples']:,} | {size['cities']} | `{run['method']}` | "
                f"{run['seconds']:.2f} | {run['peak_rss_gb']:.2f} | "
                f"{run['rss_before_join_gb']:.2f} | {run['rows_out']:,} | {verdict} |"
            )
    lines += [
        "",
        "Examples whose weather is null (no observation within the TTL): "
        + ", ".join(f"{s['examples']:,}: {s['null_rows']:,}" for s in result["sizes"])
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", nargs=4, metavar=("METHOD", "OBS", "ENT", "OUT"))
    args = parser.parse_args(argv)
    os.environ.setdefault("FEAST_USAGE", "False")
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return 0
    import duckdb
    import feast
    import ibis
    import pandas as pd

    methods = [m for m in args.methods.split(",") if m]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}",
        "versions": {
            "feast": feast.__version__,
            "duckdb": duckdb.__version__,
            "ibis": ibis.__version__,
            "pandas": pd.__version__,
        },
        "sizes": [],
    }
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            obs_path, ent_path = make_data(n, args.seed, tmp)
            size = {"examples": n, "cities": math.ceil(n / HOURS_PER_CITY), "runs": []}
            outs = {}
            for method in methods:
                out = os.path.join(tmp, method, "joined.parquet")
                os.makedirs(os.path.dirname(out))
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", method, obs_path, ent_path, out],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode:
                    sys.stderr.write(proc.stderr[-3000:])
                    run = {"method": method, "error": proc.stderr.strip().splitlines()[-1]}
                else:
                    run = json.loads(proc.stdout.strip().splitlines()[-1])
                    outs[method] = out
                print(n, run, flush=True)
                size["runs"].append(run)
            size["checks"] = {
                m: compare(outs["merge_asof"], outs[m])
                for m in outs
                if m != "merge_asof" and "merge_asof" in outs
            }
            nulls = pd.read_parquet(outs["merge_asof"]) if "merge_asof" in outs else None
            size["null_rows"] = (
                int(nulls[WEATHER].isna().all(axis=1).sum()) if nulls is not None else -1
            )
            print(n, size["checks"], flush=True)
            result["sizes"].append(size)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    OUT.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
