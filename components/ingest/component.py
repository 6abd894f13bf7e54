"""KFP definition of the ingest component; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def ingest(
    source_uri: str,
    train: Output[Dataset],
    eval_data: Output[Dataset],
    holdout: Output[Dataset],
    report: Output[Markdown],
    split_method: str = "time",
    time_column: str = "",
    key_column: str = "",
    train_fraction: float = 0.7,
    eval_fraction: float = 0.15,
    holdout_fraction: float = 0.15,
    window_start: str = "",
    window_end: str = "",
    file_format: str = "auto",
    s3_endpoint: str = "",
    s3_secure: bool = False,
):
    """Reads a CSV or Parquet snapshot and writes train / eval / holdout Parquet datasets.

    Every parameter is checked before the snapshot is read; a bad one (or a contradictory
    combination) fails the task with a message that names it. The snapshot's URI does not
    say what the data is, so a pipeline should run this task with caching off
    (``set_caching_options(False)``), as the training pipeline does.

    Args:
        source_uri: Local path, ``file://`` URI or ``s3://bucket/key`` of the snapshot.
        train: Output. The training split.
        eval_data: Output. The evaluation split.
        holdout: Output. The long-term holdout split (the newest rows for a time split).
        report: Output. Markdown summary: rows and sha256 per split.
        split_method: ``time`` (ordered by ``time_column``) or ``hash`` (sha256 of ``key_column``).
        time_column: Column that orders rows in time; also the column of the window.
        key_column: Column whose value decides the split for ``split_method="hash"``; must be
            empty for a time split.
        train_fraction: Share of rows for train.
        eval_fraction: Share of rows for eval.
        holdout_fraction: Share of rows for holdout; the three must sum to 1.
        window_start: Keep rows with ``time_column >= window_start`` (number or timestamp); empty: open.
        window_end: Keep rows with ``time_column < window_end``; empty: open.
        file_format: ``auto`` (by file extension), ``csv`` or ``parquet``.
        s3_endpoint: ``host:port`` of the S3 / MinIO endpoint for ``s3://`` sources.
        s3_secure: Reach ``s3_endpoint`` over TLS (off by default, as the training pipeline:
            Kubeflow's in-cluster MinIO speaks plain HTTP).
    """
    from components.ingest import executor
    from components.lib import logs

    logs.setup()
    results = executor.run(
        source_uri=source_uri,
        outputs={"train": train.path, "eval": eval_data.path, "holdout": holdout.path},
        split_rule=executor.split_rule_for(
            split_method, time_column, key_column, train_fraction, eval_fraction, holdout_fraction
        ),
        window=executor.Window(column=time_column, start=window_start, end=window_end),
        file_format=file_format,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    )
    for artifact, name in ((train, "train"), (eval_data, "eval"), (holdout, "holdout")):
        artifact.metadata.update(results[name].metadata)
    with open(report.path, "w") as fh:
        fh.write(executor.markdown_report(results))
