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


def registrable_model(folder: Path, csv: Path) -> tuple[str, dict, pd.DataFrame]:
    """A model folder as train writes it (gradient boosting, so HistGradientBoosting's tree
    predictor is in it), the lineage the registry wants, and raw input rows.

    Returns:
        (model folder, lineage, a DataFrame of 5 raw eval rows with every column).
    """
    from components.train import executor as train_exec

    folder.mkdir(parents=True, exist_ok=True)
    transform_meta = write_inputs(folder, csv)
    lineage_in = {
        "data_sha256": "a" * 64,
        "eval_data_sha256": "b" * 64,
        "schema_version": "bikeshare-1.1.0",
        "transform_version": transform_meta["transform_version"],
        "code_revision": "0123abc",
    }
    meta, metrics = train_exec.run(
        str(folder / "train"),
        str(folder / "eval"),
        str(folder / "transformer"),
        transform_meta,
        str(folder / "model"),
        "gradient_boosting",
        {"max_iter": 20, "learning_rate": 0.2},
        lineage_in,
    )
    lineage = {
        **meta,
        "holdout_sha256": "c" * 64,
        "pipeline_run_id": "run-0001",
        "metrics": {"holdout_rmse": 70.5, **metrics},
    }
    example = pd.read_parquet(folder / "eval").head(5)
    return str(folder / "model"), lineage, example


def register_in(registry, trained, name: str, *states: str) -> str:
    """Registers ``trained`` (what :func:`registrable_model` returns) as a new version of
    ``name`` and moves it through ``states``; returns the version."""
    model_dir, lineage, example = trained
    version = registry.register(name, model_dir, lineage, f"s3://stats/{name}", example).version
    for state in states:
        registry.transition(name, version, state, reason=f"test: to {state}")
    return version
