"""Drift statistics: a compact reference profile at training time, a fast comparison later.

Pure numpy / scipy / pandas (no kfp, no mlflow): the train step builds the profile and a
lightweight component in the pipeline image compares a window of serving data with it.

    profile = build_profile(train, numeric=[...], categorical=[...], prediction=model(train),
                            importance=permutation_importance)
    save_profile(profile, "drift_profile.json")
    report = compare(load_profile("drift_profile.json"), window, prediction=served_predictions)
    report.dataset_drift, report.drifted(), report.to_dict()

**The reference profile** (``PROFILE_FORMAT``; a JSON object; ~26 KB per continuous numeric
feature, a few hundred bytes per categorical or discrete one). Per numeric feature:

* ``edges``: bin edges at the reference quantiles ``k / bins`` (k = 1 .. bins - 1) with
  numpy's ``inverted_cdf`` method (every edge is a reference value), deduplicated, so a
  discrete or zero-inflated feature gets fewer bins and each atom keeps its own bin. Bins
  are right-closed: ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``; the outer ones are open,
  so values outside the reference range land in them;
* ``counts``: exact reference counts per bin over ALL reference rows, plus ``missing``;
* ``count``, ``mean``, ``std`` (population, ddof 0) of the present values;
* ``sample``: a uniform random sample (seeded, without replacement) of up to ``sample_size``
  present reference values, sorted, stored **standardized** as float32:
  ``z = float32((x - center) / scale)`` with ``center`` the mean and ``scale`` the std (1
  when the std is 0), zlib-compressed (sorted float32 -> order-preserving uint32 keys ->
  deltas -> byte planes) and base64-encoded. Standardizing first keeps float32's
  relative precision on the feature's spread (a timestamp-like feature would otherwise
  lose it); the current values go through the same transformation before they are
  compared, so ties stay ties.

Per categorical feature: exact counts per category (categories are compared as strings:
``str(value)``, with integral floats written as integers, so ``3.0`` and ``3`` are the same
category) plus ``missing``. The prediction (optional) is profiled the same way, as
``prediction_kind`` says. ``importance`` is normalized to sum 1 over the features (equal
weights when absent; features it does not name get 0).

**Missing values**: NaN, None, NA and +-inf count as missing. The missing share is its own
bin (numeric) or category (categorical) in every histogram, so PSI, Jensen-Shannon and the
chi-square test see it; for a numeric feature, whose KS test sees only present values, a
chi-square test of the missing share (2 x 2, scipy's ``chi2_contingency`` with its Yates
correction) joins the window's p-values whenever either side has missing values.

**Statistics** (each equals scipy's on the data the profile holds: tested to 1e-9):

* **PSI** over the bins (numeric) or the union of reference and current categories, plus the
  missing bin, natural logarithm: shares ``p`` (reference) and ``q`` (current) get
  ``EPSILON`` = 1e-4 added to every bin and are renormalized (``(p + 1e-4) / (1 + K * 1e-4)``
  for K bins), then ``PSI = sum((q - p) * ln(q / p))``;
* **Jensen-Shannon distance** on the same bins without epsilon: base 2, the DISTANCE
  (square root of the divergence), in [0, 1] (scipy's ``jensenshannon(p, q, base=2)``);
* **KS** (numeric): scipy's ``ks_2samp`` with ``method="asymp"`` (the exact method costs
  O(n * m) for unequal sizes), two-sided, on the reference sample against a uniform random
  sample of up to the same ``sample_size`` current rows, seeded; the rows are drawn once
  per window and shared by all columns, and a column's missing values are dropped from them;
* **normalized Wasserstein** (numeric): scipy's ``wasserstein_distance`` between the two
  standardized samples, which is the distance in the feature's units divided by the
  reference std (by 1 when that std is 0);
* **chi-square** (categorical): scipy's ``chi2_contingency`` (Yates correction only when it
  has 1 degree of freedom, as scipy does) on the 2 x k table of reference and current counts
  over the categories of either side and the missing category; columns empty on both sides
  are dropped; a single remaining column is chi2 0, p 1.

**Decision** (:class:`DriftConfig`, defaults below). All p-values of one window (each
feature's KS or chi-square test, the numeric missing-share tests, the prediction's test) are
adjusted together with Benjamini-Hochberg (q = ``fdr``). A feature (or the prediction) is
**drifted** iff its smallest adjusted p-value is below ``fdr`` AND an effect size exceeds its
threshold: numeric ``psi > psi_threshold`` or ``wasserstein > wasserstein_threshold`` or
``ks > ks_threshold``; categorical ``psi > psi_threshold`` or ``js > js_threshold``. So a
huge sample with a tiny shift (significant, but small) is not flagged, and neither is a
large effect measured on too little data to be significant. The **dataset drifts** iff the
importance-weighted share of drifted features is >= ``dataset_share``; the **prediction
drifts** iff the prediction is drifted by the same rule. Fewer than ``min_rows`` current
rows (or predictions): the statistics are reported but nothing is decided
(``enough_rows`` False, the reason says so).

**False alarms**: with no drift at all every null hypothesis of the window is true; then
Benjamini-Hochberg's false discovery rate equals its family-wise error rate, so the chance
that any test of the window rejects is at most q (independent or positively dependent
tests; asymptotic p-values: the KS one is conservative on discrete data, the chi-square one
can be a little liberal on sparse categories). The effect thresholds can only remove alarms:
at the defaults they are themselves rarely exceeded without drift once a window has >= 1,000
rows (the null PSI is about (K - 1) / n_eff). The default ``fdr`` = 0.0005 keeps the
per-window false-alarm rate <= 0.0005 <= 1 - 0.99 ** (1 / 20) = 0.000502, so 20 replays of
same-distribution data are all alarm-free with probability >= 0.99.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

PROFILE_FORMAT = "loopline-drift-profile-1"
EPSILON = 1e-4
"""Added to every bin's share before PSI (then renormalized), so empty bins stay finite."""
KINDS = ("numeric", "categorical")
PREDICTION = "prediction"
MISSING_LABEL = "missing"


class DriftError(ValueError):
    """Bad input to the drift library; the message names the field or feature."""


# --------------------------------------------------------------------------- config


@dataclass
class DriftConfig:
    """The decision's knobs. Defaults:

    * ``fdr`` = 0.0005: Benjamini-Hochberg q across all p-value tests of one window; it bounds
      the per-window false-alarm rate (module docstring): 20 clean windows alarm-free with
      probability >= 0.99;
    * ``psi_threshold`` = 0.1 (the usual "moderate shift" level), ``ks_threshold`` = 0.1 (KS
      statistic), ``js_threshold`` = 0.1 (Jensen-Shannon distance, base 2),
      ``wasserstein_threshold`` = 0.1 (in reference standard deviations): effect sizes, one
      of which must be exceeded besides significance;
    * ``dataset_share`` = 0.5: the importance-weighted share of drifted features at which the
      dataset is drifted (Evidently's default share, unweighted there);
    * ``min_rows`` = 500: fewer current rows and nothing is decided (about 25 per bin).
    """

    fdr: float = 0.0005
    psi_threshold: float = 0.1
    ks_threshold: float = 0.1
    js_threshold: float = 0.1
    wasserstein_threshold: float = 0.1
    dataset_share: float = 0.5
    min_rows: int = 500

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "min_rows":
                if isinstance(value, bool) or not isinstance(value, int | np.integer):
                    raise DriftError(f"config field 'min_rows' must be an integer, got {value!r}")
                if value < 1:
                    raise DriftError(f"config field 'min_rows' must be >= 1, got {value}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise DriftError(f"config field {f.name!r} must be a number, got {value!r}")
            value = float(value)
            setattr(self, f.name, value)
            if not math.isfinite(value) or value < 0:
                raise DriftError(f"config field {f.name!r} must be finite and >= 0, got {value}")
        if not 0 < self.fdr < 1:
            raise DriftError(f"config field 'fdr' must be in (0, 1), got {self.fdr}")
        if not 0 < self.dataset_share <= 1:
            raise DriftError(
                f"config field 'dataset_share' must be in (0, 1], got {self.dataset_share}"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> DriftConfig:
        """A config from a dict (a policy file); unknown keys are refused by name."""
        mapping = dict(mapping or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise DriftError(
                f"unknown drift config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**mapping)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- report


@dataclass
class FeatureDrift:
    """One feature's (or the prediction's) statistics and verdict.

    ``n_reference`` / ``n_current`` count rows (missing included); ``missing_reference`` /
    ``missing_current`` are the missing shares. Statistics that do not apply to the kind (or
    could not be computed: no rows) are None. ``labels``, ``reference_hist`` and
    ``current_hist`` (shares, summing to 1, the last bin being ``missing``) are the plot data.
    """

    name: str
    kind: str
    n_reference: int
    n_current: int
    psi: float | None = None
    js: float | None = None
    wasserstein: float | None = None
    ks: float | None = None
    ks_pvalue: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    missing_pvalue: float | None = None
    p_adjusted: float | None = None
    drifted: bool = False
    reason: str = ""
    importance: float = 0.0
    missing_reference: float = 0.0
    missing_current: float | None = None
    reference_hist: list[float] = field(default_factory=list)
    current_hist: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@dataclass
class DriftReport:
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drifted_share: float
    dataset_drift: bool
    prediction_drift: bool
    enough_rows: bool
    reason: str
    config: dict
    n_current: int = 0
    n_reference: int = 0

    def drifted(self) -> list[str]:
        """Names of the drifted features (not the prediction), in profile order."""
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict:
        """A JSON-serializable dict (non-finite floats become None)."""
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- sample codec


def _encode_sample(z: np.ndarray) -> str:
    """Sorted float32 -> order-preserving uint32 keys -> deltas -> byte planes -> zlib -> b64."""
    z = np.sort(np.asarray(z, dtype=np.float32))
    bits = z.view(np.uint32)
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)
    deltas = np.diff(keys, prepend=np.uint32(0)).astype(np.uint32)
    planes = deltas.view(np.uint8).reshape(-1, 4).T.copy()
    return base64.b64encode(zlib.compress(planes.tobytes(), 9)).decode("ascii")


def _decode_sample(data: str, n: int) -> np.ndarray:
    """The inverse of :func:`_encode_sample`: n sorted float32 values."""
    raw = zlib.decompress(base64.b64decode(data.encode("ascii"), validate=True))
    if len(raw) != 4 * n:
        raise ValueError(f"{len(raw)} bytes for {n} float32 values")
    deltas = np.frombuffer(raw, dtype=np.uint8).reshape(4, n).T.copy().view(np.uint32).ravel()
    keys = np.cumsum(deltas, dtype=np.uint32)
    bits = np.where(keys >> 31, keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32)


# --------------------------------------------------------------------------- helpers


def _numeric_values(series: pd.Series | np.ndarray, name: str) -> np.ndarray:
    """float64 values (NaN for missing) without a copy when the column already is float64."""
    if isinstance(series, np.ndarray):
        values = series
    else:
        dtype = series.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
            values = series.to_numpy()
        else:
            try:
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise DriftError(f"feature {name!r}: numeric values expected ({exc})") from exc
    if values.dtype != np.float64:
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DriftError(f"feature {name!r}: numeric values expected ({exc})") from exc
    return values


def _category_key(value: Any) -> str:
    if (
        isinstance(value, float | np.floating)
        and math.isfinite(value)
        and float(value).is_integer()
    ):
        return str(int(value))
    return str(value)


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """(counts per category as strings, missing count)."""
    counts: dict[str, int] = {}
    vc = series.value_counts(dropna=True, sort=False)
    for key, count in zip(vc.index.tolist(), vc.to_numpy().tolist(), strict=True):
        if count <= 0:
            continue
        if isinstance(key, float | np.floating) and not math.isfinite(key):
            continue  # +-inf: missing (NaN is already dropped)
        k = _category_key(key)
        counts[k] = counts.get(k, 0) + int(count)
    missing = len(series) - sum(counts.values())
    return counts, missing


def _bin_counts(edges: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts per right-closed bin of the present values, and the missing count."""
    nbins = len(edges) + 1
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=nbins)
    finite = np.isfinite(values)
    missing = len(values) - int(np.count_nonzero(finite))
    if missing:
        # NaN and +inf sort past every edge, -inf before: take them back out.
        nonfinite = values[~finite]
        counts -= np.bincount(np.searchsorted(edges, nonfinite, side="left"), minlength=nbins)
    return counts.astype(np.int64), missing


def _sample_rows(n: int, size: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a uniform sample without replacement, or None for all rows."""
    if n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def psi(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """PSI with natural log; shares get EPSILON per bin, then are renormalized."""
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    k = len(p)
    p = (p / p.sum() + EPSILON) / (1 + k * EPSILON)
    q = (q / q.sum() + EPSILON) / (1 + k * EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Jensen-Shannon distance (sqrt of the divergence), base 2, in [0, 1]."""
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    return float(math.sqrt(min(1.0, max(0.0, 0.5 * kl_p.sum() + 0.5 * kl_q.sum()))))


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (scipy's ``false_discovery_control``, 'bh')."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _chi2(table: np.ndarray) -> tuple[float, float]:
    """scipy's chi2_contingency on a 2 x k table, columns empty on both rows dropped."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


# --------------------------------------------------------------------------- profile


def _profile_numeric(name: str, values: np.ndarray, bins: int, sample_size: int, seed: int):
    finite = np.isfinite(values)
    present = values[finite] if not finite.all() else values
    missing = len(values) - len(present)
    if len(present):
        q = np.arange(1, bins) / bins
        edges = np.unique(np.quantile(present, q, method="inverted_cdf"))
        mean, std = float(present.mean()), float(present.std())
    else:
        edges, mean, std = np.empty(0), None, None
    counts, _ = _bin_counts(edges, present)
    center = mean if mean is not None else 0.0
    scale = std if std and std > 0 and math.isfinite(std) else 1.0
    rows = _sample_rows(len(present), sample_size, seed)
    chosen = present if rows is None else present[rows]
    z = ((chosen - center) / scale).astype(np.float32)
    return {
        "name": name,
        "kind": "numeric",
        "count": len(present),
        "missing": int(missing),
        "mean": mean,
        "std": std,
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "sample": {
            "n": len(z),
            "center": center,
            "scale": scale,
            "encoding": "float32 z=(x-center)/scale, sorted, uint32 order keys, deltas, byte planes, zlib, base64",
            "data": _encode_sample(z),
        },
    }


def _profile_categorical(name: str, series: pd.Series):
    counts, missing = _category_counts(series)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "name": name,
        "kind": "categorical",
        "count": int(sum(counts.values())),
        "missing": int(missing),
        "categories": [k for k, _ in ordered],
        "counts": [int(c) for _, c in ordered],
    }


def build_profile(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: Any = None,
    prediction_kind: str = "numeric",
    importance: Mapping[str, float] | None = None,
    bins: int = 20,
    sample_size: int = 10_000,
    seed: int = 0,
) -> dict:
    """The reference profile of ``frame`` (training data) as a JSON-serializable dict."""
    numeric, categorical = list(numeric), list(categorical)
    names = numeric + categorical
    if not names:
        raise DriftError("numeric / categorical: no features to profile")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DriftError(
            f"feature(s) listed twice (numeric and categorical?): {', '.join(duplicates)}"
        )
    if PREDICTION in names:
        raise DriftError(f"feature name {PREDICTION!r} is reserved for the prediction")
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise DriftError(f"reference frame lacks column(s): {', '.join(absent)}")
    if len(frame) == 0:
        raise DriftError("frame: the reference has no rows")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise DriftError(f"bins must be an integer >= 2, got {bins!r}")
    if (
        isinstance(sample_size, bool)
        or not isinstance(sample_size, int | np.integer)
        or sample_size < 1
    ):
        raise DriftError(f"sample_size must be an integer >= 1, got {sample_size!r}")
    if prediction_kind not in KINDS:
        raise DriftError(f"prediction_kind must be one of {KINDS}, got {prediction_kind!r}")

    features = [
        _profile_numeric(n, _numeric_values(frame[n], n), bins, sample_size, seed + i)
        for i, n in enumerate(numeric)
    ]
    features += [_profile_categorical(n, frame[n]) for n in categorical]
    features.sort(key=lambda f: names.index(f["name"]))

    pred = None
    if prediction is not None:
        if prediction_kind == "numeric":
            values = _numeric_values(np.asarray(prediction), PREDICTION)
            pred = _profile_numeric(PREDICTION, values, bins, sample_size, seed + len(names))
        else:
            pred = _profile_categorical(PREDICTION, pd.Series(np.asarray(prediction)))

    return {
        "format": PROFILE_FORMAT,
        "n_rows": len(frame),
        "bins": int(bins),
        "sample_size": int(sample_size),
        "seed": int(seed),
        "epsilon": EPSILON,
        "features": features,
        "importance": _normalize_importance(importance, names),
        "prediction": pred,
    }


def _normalize_importance(importance: Mapping[str, float] | None, names: list[str]) -> dict:
    if importance is None:
        return {n: 1.0 / len(names) for n in names}
    unknown = sorted(set(importance) - set(names))
    if unknown:
        raise DriftError(f"importance names unknown feature(s): {', '.join(unknown)}")
    weights = {}
    for n in names:
        w = importance.get(n, 0.0)
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise DriftError(f"importance of {n!r} must be a number, got {w!r}") from None
        if not math.isfinite(w) or w < 0:
            raise DriftError(f"importance of {n!r} must be finite and >= 0, got {w}")
        weights[n] = w
    total = sum(weights.values())
    if total <= 0:
        raise DriftError("importance: every weight is 0")
    return {n: w / total for n, w in weights.items()}


def save_profile(profile: dict, path) -> None:
    """Write the profile as JSON (validated first)."""
    _validate_profile(profile)
    Path(path).write_text(json.dumps(profile, separators=(",", ":"), allow_nan=False))


def load_profile(path) -> dict:
    """Read and validate a profile; DriftError naming the field that is wrong."""
    try:
        profile = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DriftError(f"profile {path}: not JSON ({exc})") from exc
    _validate_profile(profile)
    return profile


def _need(obj: Any, key: str, types, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DriftError(f"profile field {where}{key!r} is missing")
    value = obj[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise DriftError(
            f"profile field {where}{key!r} has the wrong type ({type(value).__name__})"
        )
    return value


def _tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _validate_feature(f: Any, where: str) -> None:
    if not isinstance(f, dict):
        raise DriftError(f"profile field {where} must be an object")
    _need(f, "name", str, where)
    kind = _need(f, "kind", str, where)
    if kind not in KINDS:
        raise DriftError(f"profile field {where}'kind' must be one of {KINDS}, got {kind!r}")
    count = _need(f, "count", int, where)
    missing = _need(f, "missing", int, where)
    counts = _need(f, "counts", list, where)
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        raise DriftError(f"profile field {where}'counts' must be counts (integers >= 0)")
    if sum(counts) != count or missing < 0:
        raise DriftError(f"profile field {where}'counts' does not sum to 'count' {count}")
    if kind == "categorical":
        categories = _need(f, "categories", list, where)
        if len(categories) != len(counts) or not all(isinstance(c, str) for c in categories):
            raise DriftError(f"profile field {where}'categories' must be strings, one per count")
        return
    edges = _need(f, "edges", list, where)
    if len(counts) != len(edges) + 1:
        raise DriftError(f"profile field {where}'counts' must have len('edges') + 1 entries")
    if any(not isinstance(e, int | float) for e in edges) or list(edges) != sorted(set(edges)):
        raise DriftError(f"profile field {where}'edges' must be increasing numbers")
    for key in ("mean", "std"):
        if key not in f or not (f[key] is None or isinstance(f[key], int | float)):
            raise DriftError(f"profile field {where}{key!r} is missing or not a number")
    sample = _need(f, "sample", dict, where)
    n = _need(sample, "n", int, f"{where}'sample'.")
    _need(sample, "center", (int, float), f"{where}'sample'.")
    _need(sample, "scale", (int, float), f"{where}'sample'.")
    data = _need(sample, "data", str, f"{where}'sample'.")
    try:
        _decode_sample(data, n)
    except Exception as exc:  # binascii / zlib / shape errors
        raise DriftError(f"profile field {where}'sample'.'data' does not decode ({exc})") from exc


def _validate_profile(profile: Any) -> None:
    if not isinstance(profile, dict):
        raise DriftError("profile must be a JSON object")
    fmt = profile.get("format")
    if fmt != PROFILE_FORMAT:
        raise DriftError(f"profile field 'format' must be {PROFILE_FORMAT!r}, got {fmt!r}")
    for key in ("n_rows", "bins", "sample_size", "seed"):
        _need(profile, key, int, "")
    features = _need(profile, "features", list, "")
    if not features:
        raise DriftError("profile field 'features' is empty")
    for i, f in enumerate(features):
        _validate_feature(f, f"'features'[{i}].")
    names = [f["name"] for f in features]
    importance = _need(profile, "importance", dict, "")
    if set(importance) != set(names):
        raise DriftError("profile field 'importance' must name exactly the features")
    if "prediction" not in profile:
        raise DriftError("profile field 'prediction' is missing (null when there is none)")
    if profile["prediction"] is not None:
        _validate_feature(profile["prediction"], "'prediction'.")


def profile_sample(profile: dict, name: str) -> np.ndarray:
    """The reference sample the profile holds for a numeric feature (or ``"prediction"``),
    in the feature's units: float64 ``z * scale + center``, sorted."""
    entry = _entry(profile, name)
    s = entry["sample"]
    return _decode_sample(s["data"], s["n"]).astype(np.float64) * s["scale"] + s["center"]


def _entry(profile: dict, name: str) -> dict:
    if name == PREDICTION and profile.get("prediction") is not None:
        return profile["prediction"]
    for f in profile["features"]:
        if f["name"] == name:
            return f
    raise DriftError(f"the profile has no feature {name!r}")


# --------------------------------------------------------------------------- compare


@dataclass
class _Tables:
    """What a comparison computes from the data, before the decision."""

    reference: np.ndarray  # counts per bin, missing last
    current: np.ndarray
    labels: list[str]
    ref_z: np.ndarray | None = None  # standardized samples (numeric)
    cur_z: np.ndarray | None = None


def _numeric_tables(entry: dict, values: np.ndarray, rows: np.ndarray | None) -> _Tables:
    edges = np.asarray(entry["edges"], dtype=np.float64)
    counts, missing = _bin_counts(edges, values)
    sample = entry["sample"]
    ref_z = _decode_sample(sample["data"], sample["n"]).astype(np.float64)
    chosen = values if rows is None else values[rows]
    chosen = chosen[np.isfinite(chosen)]
    cur_z = ((chosen - sample["center"]) / sample["scale"]).astype(np.float32).astype(np.float64)
    return _Tables(
        reference=np.array([*entry["counts"], entry["missing"]], dtype=np.int64),
        current=np.append(counts, missing),
        labels=_bin_labels(edges),
        ref_z=ref_z,
        cur_z=cur_z,
    )


def _bin_labels(edges: np.ndarray) -> list[str]:
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    labels = [f"({lo}, {hi}]" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    labels[-1] = labels[-1][:-1] + ")"
    return [*labels, MISSING_LABEL]


def _categorical_tables(entry: dict, series: pd.Series) -> _Tables:
    counts, missing = _category_counts(series)
    categories = list(entry["categories"])
    known = set(categories)
    unseen = sorted((k for k in counts if k not in known), key=lambda k: (-counts[k], k))
    labels = categories + unseen
    return _Tables(
        reference=np.array([*entry["counts"], *([0] * len(unseen)), entry["missing"]], np.int64),
        current=np.array([*(counts.get(k, 0) for k in labels), missing], dtype=np.int64),
        labels=[*labels, MISSING_LABEL],
    )


def tables(profile: dict, current: pd.DataFrame, name: str, seed: int = 0) -> _Tables:
    """The counts (and, numeric, the standardized samples) that :func:`compare` computes
    for one feature (``"prediction"`` is not handled here): for tests and plots."""
    entry = _entry(profile, name)
    if entry["kind"] == "categorical":
        return _categorical_tables(entry, current[name])
    rows = _sample_rows(len(current), profile["sample_size"], seed)
    return _numeric_tables(entry, _numeric_values(current[name], name), rows)


def _statistics(entry: dict, t: _Tables, n_current: int, importance: float) -> FeatureDrift:
    ref_total, cur_total = int(t.reference.sum()), int(t.current.sum())
    fd = FeatureDrift(
        name=entry["name"],
        kind=entry["kind"],
        n_reference=ref_total,
        n_current=n_current,
        importance=importance,
        labels=t.labels,
        reference_hist=(t.reference / max(ref_total, 1)).tolist(),
        current_hist=(t.current / max(cur_total, 1)).tolist(),
        missing_reference=entry["missing"] / max(ref_total, 1),
        missing_current=(t.current[-1] / cur_total) if cur_total else None,
    )
    if cur_total == 0 or ref_total == 0:
        return fd
    fd.psi = psi(t.reference, t.current)
    fd.js = js_distance(t.reference, t.current)
    if entry["kind"] == "categorical":
        fd.chi2, fd.chi2_pvalue = _chi2(np.vstack([t.reference, t.current]))
        return fd
    if len(t.ref_z) and len(t.cur_z):
        ks = stats.ks_2samp(t.ref_z, t.cur_z, method="asymp")
        fd.ks, fd.ks_pvalue = float(ks.statistic), float(ks.pvalue)
        fd.wasserstein = float(stats.wasserstein_distance(t.ref_z, t.cur_z))
    if t.reference[-1] or t.current[-1]:
        present = np.array([ref_total - t.reference[-1], cur_total - t.current[-1]])
        table = np.array([[t.reference[-1], t.current[-1]], present]).T
        _, fd.missing_pvalue = _chi2(table)
    return fd


def _effects(fd: FeatureDrift, config: DriftConfig) -> tuple[list[str], list[str]]:
    """(effect sizes over their thresholds, those within), as text."""
    checks = [("psi", fd.psi, config.psi_threshold)]
    if fd.kind == "numeric":
        checks += [
            ("wasserstein", fd.wasserstein, config.wasserstein_threshold),
            ("ks", fd.ks, config.ks_threshold),
        ]
    else:
        checks.append(("js", fd.js, config.js_threshold))
    over, within = [], []
    for label, value, threshold in checks:
        if value is None:
            continue
        (over if value > threshold else within).append(
            f"{label} {value:.4g} {'>' if value > threshold else '<='} {threshold:g}"
        )
    return over, within


def _decide(fd: FeatureDrift, config: DriftConfig, decide: bool) -> None:
    if fd.p_adjusted is None:
        fd.reason = "no test: no present values to compare"
        return
    significant = fd.p_adjusted < config.fdr
    over, within = _effects(fd, config)
    test = "KS" if fd.kind == "numeric" else "chi-square"
    if (
        fd.kind == "numeric"
        and fd.missing_pvalue is not None
        and (fd.ks_pvalue is None or fd.missing_pvalue < fd.ks_pvalue)
    ):
        test = "missing-share chi-square"
    p_text = (
        f"{test} p_adjusted {fd.p_adjusted:.3g} {'<' if significant else '>='} fdr {config.fdr:g}"
    )
    if significant and over:
        fd.drifted = decide
        fd.reason = f"drifted: {p_text} and {', '.join(over)}"
    elif significant:
        fd.reason = (
            f"not drifted: {p_text} but every effect within its threshold ({', '.join(within)})"
        )
    else:
        fd.reason = f"not drifted: {p_text}" + (f" (though {', '.join(over)})" if over else "")
    if not decide:
        fd.reason = f"no decision (too few rows); {fd.reason.split(': ', 1)[1]}"


def compare(
    profile: dict,
    current: pd.DataFrame,
    prediction: Any = None,
    config: DriftConfig | None = None,
    seed: int = 0,
) -> DriftReport:
    """Compare a window of current data (and predictions) with the reference profile."""
    config = config or DriftConfig()
    if not isinstance(config, DriftConfig):
        config = DriftConfig.from_mapping(config)
    _validate_profile(profile)
    names = [f["name"] for f in profile["features"]]
    absent = [n for n in names if n not in current.columns]
    if absent:
        raise DriftError(f"current data lacks column(s) the profile has: {', '.join(absent)}")
    if prediction is not None and profile["prediction"] is None:
        raise DriftError("prediction: the profile has no reference prediction to compare with")

    n = len(current)
    rows = _sample_rows(n, profile["sample_size"], seed)
    results: list[FeatureDrift] = []
    for entry in profile["features"]:
        name = entry["name"]
        if entry["kind"] == "numeric":
            t = _numeric_tables(entry, _numeric_values(current[name], name), rows)
        else:
            t = _categorical_tables(entry, current[name])
        results.append(_statistics(entry, t, n, profile["importance"][name]))

    pred_fd = None
    n_pred = None
    if prediction is not None:
        entry = profile["prediction"]
        if entry["kind"] == "numeric":
            values = _numeric_values(np.asarray(prediction), PREDICTION)
            n_pred = len(values)
            rows_p = _sample_rows(n_pred, profile["sample_size"], seed + 1)
            t = _numeric_tables(entry, values, rows_p)
        else:
            series = pd.Series(np.asarray(prediction))
            n_pred = len(series)
            t = _categorical_tables(entry, series)
        pred_fd = _statistics(entry, t, n_pred, 0.0)

    # Benjamini-Hochberg across every p-value of the window.
    everything = [*results, *([pred_fd] if pred_fd else [])]
    owners, pvalues = [], []
    for i, fd in enumerate(everything):
        for p in (fd.ks_pvalue, fd.chi2_pvalue, fd.missing_pvalue):
            if p is not None:
                owners.append(i)
                pvalues.append(p)
    for i, adj in zip(owners, benjamini_hochberg(pvalues), strict=True):
        fd = everything[i]
        fd.p_adjusted = float(adj) if fd.p_adjusted is None else min(fd.p_adjusted, float(adj))

    too_few = []
    if n < config.min_rows:
        too_few.append(f"{n} current rows")
    if n_pred is not None and n_pred < config.min_rows:
        too_few.append(f"{n_pred} predictions")
    enough = not too_few
    for fd in everything:
        _decide(fd, config, enough)

    share = float(sum(fd.importance for fd in results if fd.drifted))
    dataset_drift = enough and share >= config.dataset_share
    prediction_drift = bool(pred_fd and pred_fd.drifted)
    drifted = [fd.name for fd in results if fd.drifted]
    if not enough:
        reason = (
            f"no decision: {' and '.join(too_few)}, fewer than min_rows {config.min_rows}; "
            "statistics reported, nothing flagged"
        )
    else:
        listed = f" ({', '.join(drifted)})" if drifted else ""
        reason = (
            f"dataset drift: importance-weighted share of drifted features {share:.3g} >= {config.dataset_share:g}{listed}"
            if dataset_drift
            else f"no dataset drift: importance-weighted share of drifted features {share:.3g} < {config.dataset_share:g}{listed}"
        )
        if pred_fd is not None:
            reason += "; prediction drifted" if prediction_drift else "; prediction not drifted"
        elif profile["prediction"] is not None:
            reason += "; prediction not compared (none given)"
    return DriftReport(
        features=results,
        prediction=pred_fd,
        drifted_share=share,
        dataset_drift=bool(dataset_drift),
        prediction_drift=prediction_drift,
        enough_rows=enough,
        reason=reason,
        config=config.to_dict(),
        n_current=n,
        n_reference=int(profile["n_rows"]),
    )
