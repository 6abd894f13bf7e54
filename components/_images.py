"""Container image URIs for every component family.

Images are tagged with the package version, so a compiled YAML always names the
images built from the same source. The registry is chosen when compiling (see
``pipelines/compile.py --registry``), never read from the environment here: the
components are defined against ``DEFAULT_REGISTRY`` and the compiler rewrites
the prefix with :func:`retarget`.
"""

from __future__ import annotations

from components._version import __version__

DEFAULT_REGISTRY = "loopline"
# The images pipeline tasks run in (the compiled YAMLs name them). features: Feast 0.67
# (pandas < 3), no kfp; its components (materialize) are container components.
FAMILIES = ("pipeline", "tfdv", "tuner", "features")
# Images of services beside the pipelines, built and pushed the same way: the MLflow tracking
# server (the model registry's server; manifests/ deploy it on a cluster) and the model server
# (components/serving; the ServingRuntime in manifests/serving names it).
SERVICES = ("mlflow", "serving")


def image(family: str, registry: str = DEFAULT_REGISTRY, version: str = __version__) -> str:
    """Returns the URI of one image family, e.g. ``loopline/pipeline:0.1.0``.

    Args:
        family: One of ``FAMILIES`` or ``SERVICES``.
        registry: Registry and repository prefix, e.g. ``gcr.io/my-project/loopline``.
        version: Image tag; defaults to the package version.
    """
    if family not in FAMILIES + SERVICES:
        known = ", ".join(FAMILIES + SERVICES)
        raise ValueError(f"unknown image family {family!r}; known: {known}")
    registry = registry.rstrip("/")
    if not registry:
        raise ValueError("registry must not be empty")
    return f"{registry}/{family}:{version}"


def retarget(uri: str, registry: str) -> str:
    """Moves a Loopline image URI from ``DEFAULT_REGISTRY`` to ``registry``.

    URIs of other images (not built by Loopline) are returned unchanged.
    """
    prefix = f"{DEFAULT_REGISTRY}/"
    if not uri.startswith(prefix):
        return uri
    family_and_tag = uri[len(prefix) :]
    family = family_and_tag.split(":", 1)[0]
    if family not in FAMILIES + SERVICES:
        return uri
    return f"{registry.rstrip('/')}/{family_and_tag}"


PIPELINE_IMAGE = image("pipeline")
TFDV_IMAGE = image("tfdv")
TUNER_IMAGE = image("tuner")
FEATURES_IMAGE = image("features")
MLFLOW_IMAGE = image("mlflow")
SERVING_IMAGE = image("serving")
