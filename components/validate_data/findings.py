"""What validation found: findings (blocking or reported), drift / skew measurements, the result.

A small module of plain data, shared by the executor and the reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BLOCK, WARN = "block", "warn"


@dataclass
class Finding:
    """One anomaly: which dataset (split), which column, what kind, why, and whether it blocks.

    Schema anomalies always block; drift and skew block above the policy's ``block``
    level and are reported (``level="warn"``) between ``warn`` and ``block``.
    """

    dataset: str
    column: str
    kind: str
    reason: str
    severity: str = "ERROR"
    level: str = BLOCK

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Measurement:
    """One drift or skew value of one feature, with the levels and the noise bound it was judged by."""

    dataset: str
    feature: str
    check: str  # "drift" or "skew"
    measure: str  # "jensen_shannon_divergence" or "infinity_norm"
    value: float
    warn: float
    block: float | None  # None: never blocks
    noise: float | None  # the sampling-noise bound at these sizes (None: not computable)
    rows: int  # rows of the dataset measured
    baseline_rows: int  # rows of the baseline (drift) or training statistics (skew)
    # "ok", "noise" (above warn but within sampling noise), "warn", "block", or
    # "block_reported" (above block on serving data: drift and skew there only report)
    verdict: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Baseline:
    """The statistics drift is measured against, and where they came from."""

    statistics: object | None  # DatasetFeatureStatisticsList with the one dataset used
    kind: str  # "reference" (the schema's) or "champion" (given by URI)
    source: str  # the schema version or the URI
    dataset: str = ""  # the dataset of the statistics file that was used
    rows: int = 0

    def describe(self) -> str:
        if self.statistics is None:
            return "none (the schema has no reference statistics): drift not checked"
        if self.kind == "reference":
            return f"the schema's reference statistics ({self.source}, {self.rows:,} rows)"
        return f"given statistics {self.source} (dataset '{self.dataset}', {self.rows:,} rows)"


@dataclass
class Result:
    schema_version: str
    statistics: object  # DatasetFeatureStatisticsList with one dataset per input
    anomalies: dict  # dataset name -> Anomalies proto
    findings: list[Finding] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    baseline: Baseline | None = None
    measurements: list[Measurement] = field(default_factory=list)
    policy_version: str = ""
    request_schema: dict | None = None  # schema.request_schema of the schema validated against
    environment: str = ""  # the TFDV environment of the first dataset ("SERVING" for serving data)
    capture_columns: list[str] = field(default_factory=list)  # dropped, not validated (serving)
    # serving: columns present that the schema excludes from the environment (a label sent
    # along with a request), dropped, not validated
    excluded_columns: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.level == BLOCK]

    @property
    def reported(self) -> list[Finding]:
        return [f for f in self.findings if f.level != BLOCK]

    @property
    def anomalies_found(self) -> bool:
        """True when anything blocks: only blocking findings stop the batch."""
        return bool(self.blocking)
