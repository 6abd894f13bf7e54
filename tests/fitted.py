"""Upstream artifacts as the pipeline makes them, for the tests of the steps that load them.

:func:`write_inputs` writes train / eval Parquet splits of the Bikeshare data and a
transformer folder saved by the transform step, and returns the metadata transform
records (what the verified loader checks).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.transform import executor as transform_exec


def write_inputs(folder: Path, csv: Path, train_rows: int = 3000, eval_rows: int = 600) -> dict:
    """``folder/train``, ``folder/eval`` (Parquet) and ``folder/transformer``; returns its metadata."""
    data = pd.read_csv(csv)
    train = data.iloc[:train_rows]
    train.to_parquet(folder / "train", index=False)
    data.iloc[train_rows : train_rows + eval_rows].to_parquet(folder / "eval", index=False)
    spec = transform_exec.load_spec("bikeshare")
    return transform_exec.save(transform_exec.fit(spec, train), spec, str(folder / "transformer"))
