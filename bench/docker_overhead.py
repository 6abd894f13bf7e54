"""Per-task overhead of kfp.local runners, measured on a no-op component in the pipeline image.

    .venv/bin/python bench/docker_overhead.py [--tasks 10] [--repeats 3]

Runs a pipeline of N chained no-op tasks with DockerRunner (a container per task, as in
`make demo`) and with SubprocessRunner (the current interpreter), and the ingest
component alone on the Bikeshare data with each. Prints a table; writes
bench/results/docker_overhead.json.
"""

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from kfp import dsl

from components._images import PIPELINE_IMAGE
from components.ingest.component import ingest
from pipelines import local as local_run

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "docker_overhead.json"


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def noop(x: int) -> int:
    return x + 1


def chain(n: int):
    @dsl.pipeline(name="overhead-chain")
    def p():
        task = noop(x=0)
        for _ in range(n - 1):
            task = noop(x=task.output)

    return p


@dsl.pipeline(name="overhead-ingest")
def ingest_only(source_uri: str):
    ingest(source_uri=source_uri, time_column="day")


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "root" / "bikeshare.csv"
        for runner, init in (
            ("DockerRunner", local_run.init_docker),
            ("SubprocessRunner", local_run.init_subprocess),
        ):
            init(Path(tmp) / "root")
            shutil.copy(ROOT / "examples" / "bikeshare" / "bikeshare.csv", snapshot)
            chain_s = timed(chain(args.tasks), args.repeats)
            ingest_s = timed(lambda: ingest_only(source_uri=str(snapshot)), args.repeats)
            rows.append(
                {
                    "runner": runner,
                    "tasks_in_chain": args.tasks,
                    "per_noop_task_s": statistics.median(chain_s) / args.tasks,
                    "ingest_task_s": statistics.median(ingest_s),
                    "repeats": args.repeats,
                }
            )
    docker, sub = rows
    overhead = docker["per_noop_task_s"] - sub["per_noop_task_s"]
    print(f"\n{'runner':<18}{'s per no-op task':>18}{'ingest task (s)':>18}")
    for r in rows:
        print(f"{r['runner']:<18}{r['per_noop_task_s']:>18.3f}{r['ingest_task_s']:>18.3f}")
    print(f"DockerRunner overhead per task (vs SubprocessRunner): {overhead:.3f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "docker_overhead_per_task_s": overhead}, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
