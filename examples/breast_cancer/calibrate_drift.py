"""Calibrate the breast cancer drift policy: clean samples must pass, real shifts must not.

    TF_CPP_MIN_LOG_LEVEL=3 .venv-tfdv/bin/python examples/breast_cancer/calibrate_drift.py

Runs validate_data's own validation (the schema, policy and reference statistics in
``schema/``) on clean 70% samples of the data (the size of a hash split's train) and on
shifted copies, and prints, per case, the verdict and the largest drift measured.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from components.validate_data.executor import validate  # noqa: E402

SCHEMA = str(HERE / "schema")
CLEAN_SAMPLES = 20


def judge(frame: pd.DataFrame, folder: str, name: str) -> tuple[str, str]:
    path = f"{folder}/{name}.csv"
    frame.to_csv(path, index=False)
    result = validate({"train": path}, SCHEMA)
    drift = [m for m in result.measurements if m.check == "drift"]
    top = max(drift, key=lambda m: m.value)
    verdict = "BLOCK" if result.blocking else ("warn" if result.findings else "pass")
    blocking = sorted({f"{f.column} ({f.kind})" for f in result.blocking})
    where = f"; blocks: {', '.join(blocking)}" if blocking else ""
    return verdict, f"largest drift {top.feature} JS {top.value:.3f} (noise {top.noise:.3f}){where}"


def main() -> int:
    data = pd.read_csv(HERE / "breast_cancer.csv")
    shifted = {
        "mean_radius x 1.25": data.assign(mean_radius=data.mean_radius * 1.25),
        "worst_area x 100 (unit error)": data.assign(worst_area=data.worst_area * 100),
        "only malignant rows": data[data.malignant == 1],
    }
    with tempfile.TemporaryDirectory() as folder:
        verdicts = []
        for seed in range(CLEAN_SAMPLES):
            verdict, detail = judge(data.sample(frac=0.7, random_state=seed), folder, "clean")
            verdicts.append(verdict)
            print(f"clean 70% sample, seed {seed:2d}: {verdict:5s} {detail}")
        print(f"clean samples: {verdicts.count('pass')} of {CLEAN_SAMPLES} pass")
        for name, frame in shifted.items():
            verdict, detail = judge(frame, folder, "shifted")
            print(f"{name}: {verdict} {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
