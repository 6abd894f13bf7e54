"""The drift policy: per-feature ``warn`` / ``block`` levels for drift and skew, and noise bounds.

TFDV's comparators hold one threshold each; the schema keeps them at the ``warn`` level,
so TFDV measures every compared feature and flags what is above ``warn``. This module
decides what that means:

* ``value <= warn``: ok.
* above ``warn`` but within what sampling noise alone gives at these two sample sizes:
  ``noise`` (shown, not reported).
* above ``warn`` and beyond noise: ``warn``, reported in the report and the summary; the
  batch goes on.
* above ``block`` (when the feature has one) and beyond noise: ``block``: the batch stops.

The noise bound is a parametric bootstrap under "no change": both the batch (``n`` rows)
and the baseline (``m`` rows) are drawn from the baseline's own distribution, and the
measure is computed between the two draws the way TFDV computes it:

* numeric features (Jensen-Shannon divergence, log base 2, so 0 <= JS <= 1): values drawn
  uniformly within the baseline's STANDARD histogram buckets, each draw binned as TFDV
  bins it (10 equal-width buckets from its min to its max), the two histograms re-bucketed
  onto the union of their edges (TFDV's AlignHistograms), then compared. Re-bucketing
  alone makes two clean small samples differ, which a bound on aligned buckets would miss;
* categorical features (L-infinity distance of the frequencies): multinomial draws of
  the baseline's category frequencies.

The bound is the ``1 - false_alarm_rate`` quantile of those values. Rows are not always
independent draws: hourly readings of one day share its weather. ``correlated_rows``
(per policy, or per feature) says how many rows make one independent draw; the bootstrap
draws ``rows / correlated_rows`` values on each side (the effective sample size), so a few
weeks of data are not judged as if they were thousands of independent observations. A small clean batch is therefore not flagged by chance; the levels themselves are
effect sizes that do not fall with the number of rows, so a large batch is not flagged for
a negligible shift. Rows of one day are correlated (weather comes in spells), so the
bound is a floor: the levels are calibrated on real windows (see the policy file).

The policy is a versioned YAML file beside the schema (``drift_policy.yaml``)::

    policy_version: bikeshare-drift-1.1.0
    schema_version: bikeshare-1.1.0       # the schema it was calibrated with
    false_alarm_rate: 0.01
    bootstrap_replicates: 1000
    features:
      hum: {measure: jensen_shannon_divergence, drift: {warn: 0.1, block: 0.18}, skew: {...}}

``block: null`` means the feature is reported but never blocks; a feature without
``skew`` (a label, say) is not compared for skew. A schema with
no policy file beside it gets TFDV's own behaviour: every comparator's threshold blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

POLICY_FILE = "drift_policy.yaml"
MEASURES = {
    # policy name -> (schema comparator field, DriftSkewInfo measurement type, anomaly kind)
    "jensen_shannon_divergence": (
        "jensen_shannon_divergence",
        "JENSEN_SHANNON_DIVERGENCE",
        "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
    ),
    "infinity_norm": ("infinity_norm", "L_INFTY", "COMPARATOR_L_INFTY_HIGH"),
}
BY_MEASUREMENT_TYPE = {v[1]: k for k, v in MEASURES.items()}
CHECKS = ("drift", "skew")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Levels:
    warn: float
    block: float | None


@dataclass(frozen=True)
class FeaturePolicy:
    measure: str
    drift: Levels | None  # None: the feature is not compared for drift
    skew: Levels | None  # None: not compared for skew (a label, say)
    why: str = ""
    correlated_rows: int | None = None  # None: the policy's


@dataclass(frozen=True)
class Policy:
    version: str
    source: str
    false_alarm_rate: float
    replicates: int
    features: dict[str, FeaturePolicy]
    correlated_rows: int = 1

    def levels(self, feature: str, check: str) -> Levels | None:
        entry = self.features.get(feature)
        return getattr(entry, check) if entry else None

    def effective_rows(self, feature: str, rows: int) -> int:
        """Independent draws in ``rows`` rows: rows / correlated_rows, at least 1."""
        entry = self.features.get(feature)
        per_draw = (entry.correlated_rows if entry else None) or self.correlated_rows
        return max(1, round(rows / per_draw))


# --------------------------------------------------------------------------- loading


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PolicyError(f"{where}: must be a number in [0, 1], got {value!r}")
    return float(value)


def _levels(raw, where: str) -> Levels:
    if not isinstance(raw, dict) or "warn" not in raw or "block" not in raw:
        raise PolicyError(f"{where}: needs 'warn' and 'block' (block: null never blocks)")
    unknown = set(raw) - {"warn", "block"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
    warn = _number(raw["warn"], f"{where}.warn")
    block = None if raw["block"] is None else _number(raw["block"], f"{where}.block")
    if block is not None and block < warn:
        raise PolicyError(f"{where}: block {block} is below warn {warn}")
    return Levels(warn, block)


def parse(raw: dict, source: str, schema_version: str) -> Policy:
    """Checks a policy's structure and that it was made for ``schema_version``."""
    if not isinstance(raw, dict):
        raise PolicyError(f"policy {source}: not a mapping")
    for key in ("policy_version", "schema_version", "features"):
        if key not in raw:
            raise PolicyError(f"policy {source}: missing '{key}'")
    if raw["schema_version"] != schema_version:
        raise PolicyError(
            f"policy {source}: schema_version {raw['schema_version']!r} but the schema is "
            f"{schema_version!r}; review the levels for the new schema and bump both"
        )
    rate = _number(raw.get("false_alarm_rate", 0.01), f"policy {source}: false_alarm_rate")
    if not 0 < rate < 0.5:
        raise PolicyError(f"policy {source}: false_alarm_rate must be in (0, 0.5), got {rate}")
    replicates = raw.get("bootstrap_replicates", 1000)
    if not isinstance(replicates, int) or not 100 <= replicates <= 100_000:
        raise PolicyError(
            f"policy {source}: bootstrap_replicates must be an integer in [100, 100000]"
        )
    correlated = _correlated(raw.get("correlated_rows", 1), f"policy {source}: correlated_rows")
    features = {}
    for name, entry in (raw["features"] or {}).items():
        where = f"policy {source}: features.{name}"
        if not isinstance(entry, dict) or entry.get("measure") not in MEASURES:
            raise PolicyError(f"{where}.measure: one of {sorted(MEASURES)}")
        unknown = set(entry) - {"measure", "drift", "skew", "why", "correlated_rows"}
        if unknown:
            raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
        if "drift" not in entry and "skew" not in entry:
            raise PolicyError(f"{where}: needs 'drift' or 'skew' levels (or both)")
        features[name] = FeaturePolicy(
            entry["measure"],
            _levels(entry["drift"], f"{where}.drift") if "drift" in entry else None,
            _levels(entry["skew"], f"{where}.skew") if "skew" in entry else None,
            str(entry.get("why", "")),
            _correlated(entry["correlated_rows"], f"{where}.correlated_rows")
            if "correlated_rows" in entry
            else None,
        )
    return Policy(str(raw["policy_version"]), source, rate, replicates, features, correlated)


def _correlated(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"{where}: must be an integer >= 1, got {value!r}")
    return value


def load(path: str | Path, schema_version: str) -> Policy:
    import yaml

    path = Path(path)
    if not path.exists():
        raise PolicyError(f"policy {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {path}: not valid YAML: {exc}") from exc
    return parse(raw, str(path), schema_version)


def from_schema(schema, version: str) -> Policy:
    """The policy of a schema without a policy file: each comparator's threshold blocks."""
    features = {}
    for feature in schema.feature:
        per_check = {}
        measure = None
        for check in CHECKS:
            comparator = getattr(feature, f"{check}_comparator")
            for name, (field, _, _) in MEASURES.items():
                if comparator.HasField(field):
                    measure = name
                    threshold = getattr(comparator, field).threshold
                    per_check[check] = Levels(threshold, threshold)
        if measure:
            features[feature.name] = FeaturePolicy(
                measure, per_check.get("drift"), per_check.get("skew")
            )
    return Policy(f"{version}-comparators", "the schema's comparators", 0.01, 1000, features)


def check_against_schema(policy: Policy, schema) -> None:
    """The schema's comparators must sit at the policy's ``warn`` levels, feature by feature."""
    in_schema = {}
    for feature in schema.feature:
        for check in CHECKS:
            comparator = getattr(feature, f"{check}_comparator")
            for name, (field, _, _) in MEASURES.items():
                if comparator.HasField(field):
                    in_schema[(feature.name, check)] = (name, getattr(comparator, field).threshold)
    for name, entry in policy.features.items():
        for check in CHECKS:
            if getattr(entry, check) is None:
                continue
            where = f"policy {policy.source}: features.{name}.{check}"
            found = in_schema.pop((name, check), None)
            if found is None:
                raise PolicyError(f"{where}: the schema has no {check}_comparator for '{name}'")
            measure, threshold = found
            if measure != entry.measure:
                raise PolicyError(f"{where}: measure {entry.measure} but the schema's is {measure}")
            warn = getattr(entry, check).warn
            if abs(threshold - warn) > 1e-9:
                raise PolicyError(
                    f"{where}.warn is {warn} but the schema's {check}_comparator threshold is "
                    f"{threshold}; keep the comparator at the warn level"
                )
    if in_schema:
        (name, check), _ = sorted(in_schema.items())[0]
        raise PolicyError(
            f"policy {policy.source}: the schema compares '{name}' ({check}) but the policy has no "
            f"levels for it"
        )


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Buckets:
    """What a measure compares for one feature: bucket counts, and edges for numeric features."""

    counts: np.ndarray
    edges: np.ndarray | None  # numeric: k + 1 edges of the STANDARD histogram; categorical: None

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


def distribution(feature, measure: str) -> Buckets | None:
    """The buckets a measure compares, from one feature's statistics (None: nothing to compare)."""
    if measure == "jensen_shannon_divergence":
        if not feature.HasField("num_stats"):
            return None
        hist = next((h for h in feature.num_stats.histograms if h.type == h.STANDARD), None)
        if hist is None or not hist.buckets:
            return None
        edges = [hist.buckets[0].low_value] + [b.high_value for b in hist.buckets]
        counts = np.array([b.sample_count for b in hist.buckets], dtype=float)
        return Buckets(counts, np.array(edges, dtype=float))
    if not feature.HasField("string_stats"):
        return None
    buckets = list(feature.string_stats.rank_histogram.buckets)
    if buckets:
        return Buckets(np.array([b.sample_count for b in buckets], dtype=float), None)
    top = list(feature.string_stats.top_values)
    if not top:
        return None
    return Buckets(np.array([t.frequency for t in top], dtype=float), None)


def _js(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence, log base 2, of probability rows ``a`` and ``b``."""
    mid = (a + b) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(a > 0, a * np.log2(a / mid), 0.0)
        right = np.where(b > 0, b * np.log2(b / mid), 0.0)
    return 0.5 * left.sum(axis=-1) + 0.5 * right.sum(axis=-1)


def measure_value(measure: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The measure between frequency rows on the same buckets (as TFDV computes it on aligned buckets)."""
    a = a / a.sum(axis=-1, keepdims=True)
    b = b / b.sum(axis=-1, keepdims=True)
    if measure == "jensen_shannon_divergence":
        return _js(a, b)
    return np.abs(a - b).max(axis=-1)


# Simulated batches are drawn at most this large: beyond it the bound only shrinks, so
# drawing fewer rows overstates it slightly (the safe side) and keeps the bootstrap fast.
MAX_SIMULATED_ROWS = 2000
BUCKETS = 10  # TFDV's default number of STANDARD histogram buckets


def _draw_histograms(base: Buckets, rows: int, replicates: int, rng) -> tuple:
    """Draws ``replicates`` samples of ``rows`` values from the baseline histogram (uniform
    within each bucket, as TFDV assumes) and bins each as TFDV does: 10 equal-width buckets
    from the sample's min to its max. Returns (edges, counts), each (replicates, 11 | 10)."""
    p = base.counts / base.counts.sum()
    which = rng.choice(len(p), size=(replicates, rows), p=p)
    low, high = base.edges[:-1][which], base.edges[1:][which]
    values = low + (high - low) * rng.random((replicates, rows))
    lo, hi = values.min(axis=1), values.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    index = np.clip(((values - lo[:, None]) / span[:, None] * BUCKETS).astype(int), 0, BUCKETS - 1)
    flat = index + BUCKETS * np.arange(replicates)[:, None]
    counts = np.bincount(flat.ravel(), minlength=replicates * BUCKETS).reshape(replicates, BUCKETS)
    edges = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, BUCKETS + 1)[None, :]
    return edges, counts.astype(float)


def aligned_js(edges_a, counts_a, edges_b, counts_b) -> float:
    """TFDV's Jensen-Shannon divergence of two histograms with their own bucket edges: both
    are re-bucketed onto the union of the edges, assuming values spread uniformly within a
    bucket (TFDV's AlignHistograms), then compared."""
    union = np.union1d(edges_a, edges_b)

    def rebucket(edges, counts):
        cumulative = np.concatenate([[0.0], np.cumsum(counts)])
        return np.diff(np.interp(union, edges, cumulative))

    a, b = rebucket(edges_a, counts_a), rebucket(edges_b, counts_b)
    return float(min(_js(a / a.sum(), b / b.sum()), 1.0))


def noise_bound(
    base: Buckets,
    rows: int,
    baseline_rows: int,
    measure: str,
    false_alarm_rate: float,
    replicates: int,
    seed: int = 0,
) -> float | None:
    """The ``1 - false_alarm_rate`` quantile of the measure between two clean samples.

    Both samples (``rows`` and ``baseline_rows`` values) are drawn from the baseline's
    histogram and measured the way TFDV measures them: what the measure shows when nothing
    changed but the draw.
    """
    if base.rows <= 0 or rows <= 0 or baseline_rows <= 0:
        return None
    rng = np.random.default_rng(seed)
    if measure == "infinity_norm" or base.edges is None:
        p = base.counts / base.counts.sum()
        a = rng.multinomial(int(rows), p, size=replicates).astype(float)
        b = rng.multinomial(int(baseline_rows), p, size=replicates).astype(float)
        values = measure_value(measure, a, b)
    else:
        edges_a, counts_a = _draw_histograms(
            base, min(int(rows), MAX_SIMULATED_ROWS), replicates, rng
        )
        edges_b, counts_b = _draw_histograms(
            base, min(int(baseline_rows), MAX_SIMULATED_ROWS), replicates, rng
        )
        values = np.array(
            [
                aligned_js(edges_a[i], counts_a[i], edges_b[i], counts_b[i])
                for i in range(replicates)
            ]
        )
    return float(np.quantile(values, 1 - false_alarm_rate))


def verdict(value: float, levels: Levels, noise: float | None) -> str:
    """``ok``, ``noise``, ``warn`` or ``block`` (see the module docstring)."""
    if value <= levels.warn:
        return "ok"
    if noise is not None and value <= noise:
        return "noise"
    if levels.block is not None and value > levels.block:
        return "block"
    return "warn"
