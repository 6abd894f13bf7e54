"""Export scikit-learn's breast cancer data set to a CSV snapshot, as a user exports their data.

    .venv/bin/python examples/breast_cancer/export.py [--out examples/breast_cancer/breast_cancer.csv]

scikit-learn ships the data (no download): 569 tumours, 30 measurements each (float), and
the diagnosis. The export renames the columns to snake_case (``mean radius`` ->
``mean_radius``), adds ``sample_id`` (the row's index: the key the hash split hashes), and
codes the target as ``malignant`` (1 malignant, 0 benign: scikit-learn codes it the other
way round, 0 malignant) so that the positive class, the one ROC AUC and F1 count, is the
one a screen must catch. Floats are written as
Python writes them (the shortest text that reads back to the same value).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = "malignant"
KEY = "sample_id"


def frame():
    """The data set as the snapshot holds it: ``sample_id``, 30 measurements, ``malignant``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    out = data.data.rename(columns=lambda name: name.replace(" ", "_"))
    out.insert(0, KEY, range(len(out)))
    # scikit-learn: 0 malignant, 1 benign (target_names order).
    assert list(data.target_names) == ["malignant", "benign"]
    out[TARGET] = (data.target == 0).astype("int64")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "breast_cancer.csv"))
    args = parser.parse_args(argv)
    table = frame()
    table.to_csv(args.out, index=False, lineterminator="\n")
    print(f"wrote {args.out}: {len(table)} rows x {table.shape[1]} columns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
