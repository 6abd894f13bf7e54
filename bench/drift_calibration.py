"""Drift policy calibration: what clean windows of the year and broken sensors score.

    make setup && TF_CPP_MIN_LOG_LEVEL=3 .venv-tfdv/bin/python bench/drift_calibration.py

Cuts clean batches out of the Bikeshare year (each season; every 3-week window, stepping
a week; January to June; July to December), runs the real ingest step on each (time
split on ``day``, 70 / 15 / 15) and validate_data on its splits, against the schema's
whole-year reference, and records each compared feature's drift value on the train split
and the verdict the bundled policy gives it. Then the same for the whole year with
humidity shifted by +0.05 .. +0.30 (a broken sensor). Last, the noise bound's false
alarms: random clean samples of 40 and 200 rows (iid rows, 40 seeds each) validated as a
train split. Prints, per feature, the largest clean value and how many clean windows each
verdict got, which shifts block and the false-alarm share; writes
bench/results/drift_calibration.json. The policy's levels
(components/validate_data/schemas/bikeshare/drift_policy.yaml) come from these figures.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.ingest import executor as ingest  # noqa: E402
from components.validate_data import executor  # noqa: E402
from tests import corpus  # noqa: E402

OUT = ROOT / "bench" / "results" / "drift_calibration.json"
SEASONS = {"winter": (1, 79), "spring": (80, 171), "summer": (172, 265), "fall": (266, 355)}


def windows() -> dict[str, tuple[int, int]]:
    out = dict(SEASONS)
    out.update({"january-june": (1, 181), "july-december": (182, 365)})
    for start in range(1, 345, 7):
        out[f"days {start}-{start + 20}"] = (start, start + 20)
    return out


def judge(source: Path, tmp: Path) -> dict[str, dict]:
    paths = {name: str(tmp / name) for name in ("train", "eval", "holdout")}
    ingest.run(str(source), paths, ingest.SplitRule("time", "day", 0.7, 0.15, 0.15))
    result = executor.validate(paths, "bikeshare")
    blocking_schema = [f for f in result.blocking if not f.kind.startswith("COMPARATOR_")]
    assert not blocking_schema, blocking_schema
    return {
        m.feature: {
            "value": round(m.value, 4),
            "noise": round(m.noise or 0, 4),
            "verdict": m.verdict,
        }
        for m in result.measurements
    }


def false_alarms(folder: Path, sizes=(40, 200), seeds=40) -> dict:
    """Verdicts of random clean samples: every value above warn is a false alarm."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    year = pd.read_csv(corpus.BIKESHARE)
    verdicts: Counter = Counter()
    for size in sizes:
        for seed in range(seeds):
            path = folder / f"s{size}-{seed}.csv"
            year.sample(n=size, random_state=seed).to_csv(path, index=False)
            result = executor.validate({"train": str(path)}, "bikeshare")
            verdicts.update(m.verdict for m in result.measurements)
    return {"sizes": list(sizes), "seeds": seeds, "verdicts": dict(verdicts)}


def main() -> None:
    logging.disable(logging.WARNING)
    clean, shifted = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, (name, (first, last)) in enumerate(windows().items()):
            control = corpus.Control(name.replace(" ", "_"), first, last, frozenset())
            batch = corpus.build_control(control, tmp / f"w{i}")
            clean[name] = judge(batch, tmp / f"w{i}")
            print(f"\r{i + 1} / {len(windows())} clean windows", end="", flush=True)
        print()
        for delta in (0.05, 0.10, 0.15, 0.20, 0.25, 0.30):
            batch = corpus.build_shift("hum", delta, tmp / f"hum{delta}")
            shifted[f"hum +{delta:.2f}"] = judge(batch, tmp / f"hum{delta}")["hum"]

        alarms = false_alarms(tmp / "samples")

    features = sorted({f for per in clean.values() for f in per})
    summary = {}
    print(f"\n{len(clean)} clean windows of 2011 (train split vs the whole-year reference)")
    print(f"{'feature':<12}{'max value':>10}  {'where':<16}{'verdicts':<40}")
    for feature in features:
        values = {w: per[feature]["value"] for w, per in clean.items()}
        worst = max(values, key=values.get)
        verdicts = Counter(per[feature]["verdict"] for per in clean.values())
        summary[feature] = {"max": values[worst], "where": worst, "verdicts": dict(verdicts)}
        text = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
        print(f"{feature:<12}{values[worst]:>10.3f}  {worst:<16}{text:<40}")
    print("\nhumidity sensor off by delta (whole year, train split)")
    for name, m in shifted.items():
        print(f"  {name}: JS {m['value']:.3f} -> {m['verdict']}")
    blocked = defaultdict(list)
    for w, per in clean.items():
        for feature, m in per.items():
            if m["verdict"] == "block":
                blocked[feature].append(w)
    print(f"clean windows blocked: {dict(blocked) or 'none'}")
    checks = sum(alarms["verdicts"].values())
    reported = alarms["verdicts"].get("warn", 0) + alarms["verdicts"].get("block", 0)
    print(
        f"random clean samples of {alarms['sizes']} rows: {reported} of {checks} feature checks "
        f"reported ({100 * reported / checks:.1f}%), verdicts {alarms['verdicts']}"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "summary": summary,
                "clean": clean,
                "hum_shift": shifted,
                "blocked": blocked,
                "false_alarms": alarms,
            },
            indent=2,
        )
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
