"""Writes feature_store.yaml, the feature server's Feast configuration on a cluster.

It is the Bikeshare repository's one template (components/lib/feature_repos/bikeshare/
feature_store.template.yaml) rendered by components/lib/featurestore.py for the ``cluster``
target, with the locations below; kustomization.yaml puts it in the ConfigMap
``loopline-feature-store``. tests/test_manifests_features.py fails when the committed file
differs from what this script writes now.

    python manifests/features/render_feature_store.py          # rewrite feature_store.yaml
    python manifests/features/render_feature_store.py --check  # exit 1 if it is stale

Feast expands ``${VAR}`` in feature_store.yaml from the environment when it loads the file
(``os.path.expandvars``), so the file holds no namespace and no password: the feature server
(feature-server.yaml) sets ``POD_NAMESPACE`` from the downward API and ``REDIS_PASSWORD`` from
the Secret ``loopline-redis``. A pipeline's ``materialize`` task must render the same
locations (its ``storage`` and ``redis`` arguments) and have the same two variables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUTPUT = HERE / "feature_store.yaml"

# The namespace's own prefix of Kubeflow's `mlpipeline` bucket: what a profile's object-store
# keys (the Secret `mlpipeline-minio-artifact`) may write, on MinIO and on SeaweedFS alike.
STORAGE = "s3://mlpipeline/private/${POD_NAMESPACE}/feast/bikeshare"
# The Service in redis.yaml; the password from the Secret `loopline-redis`.
REDIS = "loopline-redis:6379,password=${REDIS_PASSWORD}"
# Kubeflow's object store (as manifests/mlflow uses it).
S3_ENDPOINT = "http://minio-service.kubeflow:9000"
REPO = "bikeshare"


def render() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from components.lib import featurestore

    where = featurestore.location(STORAGE, "cluster", REDIS, S3_ENDPOINT)
    return featurestore.render_config(where, REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
