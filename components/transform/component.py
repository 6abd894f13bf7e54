"""KFP definition of transform; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def transform(
    train: Input[Dataset], transformer: Output[Artifact], feature_spec: str = "bikeshare"
):
    """Fits the feature spec's ColumnTransformer on the training split only.

    Args:
        train: The training split (Parquet), after the data gate.
        transformer: Output. A folder with ``transformer.joblib`` (the fitted ColumnTransformer)
            and ``spec.json``; metadata: ``transform_version`` (hash of spec, code and
            scikit-learn versions), features in and out, fitted rows, data sha256.
        feature_spec: A bundled spec name (``bikeshare``), a JSON path in the image, or JSON text.
    """
    from components.transform import executor

    meta = executor.run(
        train.path, feature_spec, transformer.path, train_metadata=dict(train.metadata)
    )
    transformer.metadata.update(meta)
    print(
        f"transform {meta['transform_version']}: {len(meta['features_in'])} features in, "
        f"{len(meta['features_out'])} out, fitted on {meta['fitted_rows']} rows"
    )
