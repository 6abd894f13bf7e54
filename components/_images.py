"""Container image URIs for every component family.

Images are tagged with the package version, so a compiled YAML always names the
images built from the same source. The registry is chosen when compiling (see
``loopline compile --image-registry`` / ``pipelines/compile.py --registry``), never read
from the environment here: the components are defined against ``DEFAULT_REGISTRY`` and the
compiler rewrites the prefix with :func:`retarget`, or pins every image by digest with
:func:`pin` (release YAML: ``loopline compile --digests FILE``, :func:`parse_digests`).
"""

from __future__ import annotations

import re

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


# A Loopline image URI as the components name it, anywhere in a compiled YAML: container
# images and parameter defaults (tune_katib's trial_image) alike. Group 1: the family.
IMAGE_URI = re.compile(
    rf"(?<![\w./-]){re.escape(DEFAULT_REGISTRY)}/({'|'.join(FAMILIES + SERVICES)}):[\w.+-]+"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_PINNED = re.compile(r"(?P<registry>[^@\s]+)/(?P<family>[a-z0-9._-]+)@(?P<digest>[^@\s]+)")


def families_in(text: str) -> set[str]:
    """The Loopline image families a compiled YAML names (by their default URIs)."""
    return {m.group(1) for m in IMAGE_URI.finditer(text)}


def retarget_all(text: str, registry: str) -> str:
    """Every Loopline image URI in ``text`` moved to ``registry`` (:func:`retarget`)."""
    return IMAGE_URI.sub(lambda m: retarget(m.group(0), registry), text)


def parse_digests(mapping: object, registry: str = DEFAULT_REGISTRY) -> dict[str, str]:
    """A digests file's content -> ``{family: "REG/family@sha256:<hex>"}``.

    ``mapping`` maps an image family (``FAMILIES`` or ``SERVICES``) to ``"sha256:<64 hex>"``
    (the image is then ``registry/family@sha256:...``) or to a full reference
    ``"REG/family@sha256:<64 hex>"``. An unknown family, a malformed digest, a reference to
    another family, or one under another registry than ``registry`` (when that is not the
    default) is a ValueError naming it.
    """
    if not isinstance(mapping, dict):
        raise ValueError(
            'the digests file must hold a JSON object {"<family>": "sha256:<64 hex>", ...}; '
            f"got {type(mapping).__name__}"
        )
    known = FAMILIES + SERVICES
    registry = registry.rstrip("/")
    out: dict[str, str] = {}
    for family, value in mapping.items():
        if family not in known:
            raise ValueError(f"digests: unknown image family {family!r}; known: {', '.join(known)}")
        if not isinstance(value, str):
            raise ValueError(
                f"digests: {family}: expected a string, sha256:<64 hex> or "
                f"REG/{family}@sha256:<64 hex>; got {value!r}"
            )
        if _DIGEST.fullmatch(value):
            out[family] = f"{registry}/{family}@{value}"
            continue
        ref = _PINNED.fullmatch(value)
        if ref is None or not _DIGEST.fullmatch(ref["digest"]):
            raise ValueError(
                f"digests: {family}: {value!r} is not sha256:<64 lowercase hex> nor "
                f"REG/{family}@sha256:<64 lowercase hex>"
            )
        if ref["family"] != family:
            raise ValueError(
                f"digests: {family}: {value!r} is a reference to image {ref['family']!r}, "
                f"not {family!r}"
            )
        if registry != DEFAULT_REGISTRY and ref["registry"] != registry:
            raise ValueError(
                f"digests: {family}: {value!r} is under registry {ref['registry']!r}, not the "
                f"--image-registry {registry!r}"
            )
        out[family] = value
    return out


def pin(text: str, pinned: dict[str, str], where: str = "the YAML") -> str:
    """Every Loopline image URI in ``text`` replaced by its family's pinned reference
    (``parse_digests``); a family named in ``text`` but absent from ``pinned`` is a
    ValueError naming it."""
    missing = sorted(families_in(text) - set(pinned))
    if missing:
        raise ValueError(
            f"digests: no digest for image famil{'y' if len(missing) == 1 else 'ies'} "
            f"{', '.join(missing)} (named by {where})"
        )
    return IMAGE_URI.sub(lambda m: pinned[m.group(1)], text)


PIPELINE_IMAGE = image("pipeline")
TFDV_IMAGE = image("tfdv")
TUNER_IMAGE = image("tuner")
FEATURES_IMAGE = image("features")
MLFLOW_IMAGE = image("mlflow")
SERVING_IMAGE = image("serving")
