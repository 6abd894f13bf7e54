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
FAMILIES = ("pipeline", "tfdv", "tuner")


def image(family: str, registry: str = DEFAULT_REGISTRY, version: str = __version__) -> str:
    """Returns the URI of one image family, e.g. ``loopline/pipeline:0.1.0``.

    Args:
        family: One of ``FAMILIES``.
        registry: Registry and repository prefix, e.g. ``gcr.io/my-project/loopline``.
        version: Image tag; defaults to the package version.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown image family {family!r}; known: {', '.join(FAMILIES)}")
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
    if family not in FAMILIES:
        return uri
    return f"{registry.rstrip('/')}/{family_and_tag}"


PIPELINE_IMAGE = image("pipeline")
TFDV_IMAGE = image("tfdv")
TUNER_IMAGE = image("tuner")
