"""A rollout's gates: PromQL instant queries against Prometheus' HTTP API, judged honestly.

Each check asks Prometheus (``GET /api/v1/query``, an instant query at the server's "now")
about the series the model server exports (``components/serving/metrics.py``; labels
``model`` and ``version``) over a trailing window. The queries, exactly as sent, with
``{model}``, ``{version}``, ``{stable}`` and ``{window}`` (e.g. ``30s``) filled in; a
dashboard and the alert rules use the same text (:data:`QUERIES`)::

    requests        sum(increase(loopline_requests_total{model="M",version="V"}[W]))

    error_rate      (max(
                        label_replace(sum(increase(loopline_request_errors_total{model="M",
                            version="V",kind=~"internal|not_ready"}[W])), "src", "kind", "", "")
                      or
                        label_replace(sum(increase(loopline_requests_total{model="M",
                            version="V",code=~"5.."}[W])), "src", "code", "", "")
                    ) or vector(0))
                    / sum(increase(loopline_requests_total{model="M",version="V"}[W]))

    latency_p99     histogram_quantile(0.99, sum by (le) (
                        rate(loopline_request_duration_seconds_bucket{model="M",version="V"}[W])))

    predictions     sum by (le) (increase(loopline_prediction_bucket{model="M",version="V"}[W]))

* **error_rate**: server errors over requests of the candidate version. The server records
  every failed request twice, as an HTTP code and as an error kind (``internal`` is a 500,
  ``not_ready`` a 503), so the numerator is the larger of the two counts (never their sum);
  a server that records only one of them still counts. No errors at all is 0 (``or
  vector(0)``); no requests is an empty or NaN result: inconclusive.
* **latency_p99**: seconds, from the request-duration histogram's buckets.
* **prediction_divergence**: the candidate's prediction histogram against the stable
  version's over the same window (``predictions`` for each; every version of a model has
  the same buckets). When the stable version made fewer than ``min_count`` predictions in
  the window (the candidate has 100%: a canary's last step, blue-green's bake), its
  predictions since the rollout started are the reference instead (the same query with a
  longer window; the result's reason says so). The cumulative bucket counts become per-bucket counts ``p`` and ``q``,
  normalized, and the value is the **Jensen-Shannon distance with base-2 logarithms**:
  ``sqrt(JSD)``, ``JSD = (KL(p||m) + KL(q||m)) / 2``, ``m = (p + q) / 2``: 0 for equal
  distributions, 1 for disjoint ones (scipy's ``jensenshannon(p, q, base=2)``). Each
  version needs at least ``min_count`` predictions in the window, else inconclusive.
* **shadow_agreement** (and any ``callable`` gate): the value comes from a function the
  caller passes (shadow agreement is computed from the captured request pairs, elsewhere);
  ``None`` or NaN from it is inconclusive.

Verdicts (:class:`GateResult`): ``pass``, ``fail`` or ``inconclusive``, never a pass by
default. Inconclusive, with the reason, when: the candidate answered fewer than
``min_requests`` requests in the window (``requests`` above: an idle service is not
judged, unlike Flagger, which fails it), Prometheus does not answer or answers an error,
the result is empty, NaN or infinite, or the divergence lacks ``min_count`` predictions on
either side. A check (:func:`evaluate`) fails when any gate fails, is inconclusive when
none fails and any is inconclusive (so a check whose every query errored never passes,
unlike the Argo Rollouts bug), and passes only when every gate passed.

Only the standard library at the top (``requests`` is imported inside functions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
BELOW, ABOVE = "below", "above"  # pass when value <= threshold / value >= threshold

# The PromQL, in one place (see the module docstring). Placeholders: {model}, {version},
# {window} (a Prometheus duration such as "30s").
_SEL = 'model="{model}",version="{version}"'
QUERIES: dict[str, str] = {
    "requests": "sum(increase(loopline_requests_total{{" + _SEL + "}}[{window}]))",
    "error_rate": (
        "(max("
        "label_replace(sum(increase(loopline_request_errors_total{{"
        + _SEL
        + ',kind=~"internal|not_ready"}}[{window}])), "src", "kind", "", "")'
        " or "
        "label_replace(sum(increase(loopline_requests_total{{"
        + _SEL
        + ',code=~"5.."}}[{window}])), "src", "code", "", "")'
        ") or vector(0))"
        " / sum(increase(loopline_requests_total{{" + _SEL + "}}[{window}]))"
    ),
    "latency_p99": (
        "histogram_quantile(0.99, sum by (le) ("
        "rate(loopline_request_duration_seconds_bucket{{" + _SEL + "}}[{window}])))"
    ),
    "predictions": "sum by (le) (increase(loopline_prediction_bucket{{" + _SEL + "}}[{window}]))",
}

GATE_TYPES = ("error_rate", "latency_p99", "prediction_divergence", "shadow_agreement", "callable")
DEFAULT_DIRECTION = {
    "error_rate": BELOW,
    "latency_p99": BELOW,
    "prediction_divergence": BELOW,
    "shadow_agreement": ABOVE,
    "callable": BELOW,
}


def query(name: str, model: str, version: str, window_seconds: float) -> str:
    """The PromQL of :data:`QUERIES` ``name`` for one model version over the window."""
    return QUERIES[name].format(
        model=_escape(model), version=_escape(str(version)), window=duration(window_seconds)
    )


def duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds (``30s``), at least 1."""
    return f"{max(1, int(round(seconds)))}s"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class QueryError(RuntimeError):
    """Prometheus did not answer, or answered an error (the message says which)."""


class Prometheus:
    """Instant queries against Prometheus' HTTP API (``GET {url}/api/v1/query``).

    ``timeout``: seconds, or ``(connect, read)``; default the ``http`` limits of
    :mod:`components.lib.network` (``LOOPLINE_HTTP_*``: connect 5 s, read 30 s)."""

    def __init__(self, url: str, timeout: float | tuple[float, float] | None = None):
        from components.lib import network

        self.url = url.rstrip("/")
        self.timeout = network.limits("http").pair if timeout is None else timeout

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """The instant vector (or scalar, as one unlabeled sample): ``[(labels, value)]``.

        Raises:
            QueryError: unreachable, an HTTP error, or ``status`` not ``success``.
        """
        import requests

        try:
            response = requests.get(
                f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise QueryError(f"Prometheus at {self.url} did not answer: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise QueryError(
                f"Prometheus at {self.url} answered HTTP {response.status_code}, not JSON"
            ) from None
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(
                f"Prometheus at {self.url} answered HTTP {response.status_code}: "
                f"{body.get('errorType', '')} {body.get('error', '')}".strip()
            )
        data = body.get("data") or {}
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [({}, float(result[1]))]
        if kind != "vector":
            raise QueryError(f"Prometheus answered a {kind} for an instant query: {promql}")
        return [(dict(s.get("metric") or {}), float(s["value"][1])) for s in result]

    def scalar(self, promql: str) -> float | None:
        """The one sample's value; None when the result is empty."""
        samples = self.query(promql)
        if not samples:
            return None
        if len(samples) > 1:
            raise QueryError(f"{len(samples)} series where one was expected: {promql}")
        return samples[0][1]


@dataclass(frozen=True)
class Gate:
    """One gate of a policy.

    Args:
        type: One of :data:`GATE_TYPES`.
        threshold: The limit the value is judged against.
        direction: ``below`` (pass when value <= threshold) or ``above`` (value >= threshold);
            default by type (:data:`DEFAULT_DIRECTION`).
        name: How results and annotations name it (default: the type).
        min_count: prediction_divergence only: predictions needed in the window, each side.
    """

    type: str
    threshold: float
    direction: str = ""
    name: str = ""
    min_count: int = 100

    def __post_init__(self):
        if self.type not in GATE_TYPES:
            raise ValueError(f"gate type {self.type!r} is not one of {', '.join(GATE_TYPES)}")
        if not self.direction:
            object.__setattr__(self, "direction", DEFAULT_DIRECTION[self.type])
        if self.direction not in (BELOW, ABOVE):
            raise ValueError(f"gate direction {self.direction!r} is not {BELOW!r} or {ABOVE!r}")
        if not self.name:
            object.__setattr__(self, "name", self.type)


@dataclass
class GateResult:
    """What one gate found: the PromQL sent, the value, the threshold, the verdict and why."""

    gate: str
    type: str
    verdict: str
    value: float | None
    threshold: float
    direction: str
    reason: str
    promql: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        if out["value"] is not None and not math.isfinite(out["value"]):
            out["value"] = str(out["value"])
        return out

    def summary(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        op = "<=" if self.direction == BELOW else ">="
        return f"{self.gate}={value} (pass if {op} {self.threshold:g}): {self.verdict}"


@dataclass
class Check:
    """One check: every gate's result, the candidate's request count, the overall verdict."""

    verdict: str
    requests: float | None
    results: list[GateResult]
    reason: str

    def failing(self) -> list[GateResult]:
        return [r for r in self.results if r.verdict == FAIL]

    def summary(self) -> str:
        return "; ".join(r.summary() for r in self.results) or self.reason

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "requests": self.requests,
            "reason": self.reason,
            "gates": [r.as_dict() for r in self.results],
        }


def judge(value: float | None, gate: Gate, promql: list[str], why: str = "") -> GateResult:
    """The verdict of one value against the gate: None, NaN or infinity is inconclusive."""

    def result(verdict: str, reason: str) -> GateResult:
        return GateResult(
            gate.name, gate.type, verdict, value, gate.threshold, gate.direction, reason, promql
        )

    if value is None:
        return result(INCONCLUSIVE, why or "the query returned no series")
    if math.isnan(value) or math.isinf(value):
        return result(INCONCLUSIVE, f"the query returned {value} ({why or 'no data to divide'})")
    ok = value <= gate.threshold if gate.direction == BELOW else value >= gate.threshold
    op = "<=" if gate.direction == BELOW else ">="
    return result(
        PASS if ok else FAIL,
        f"{gate.name} {value:.6g} {'is' if ok else 'is not'} {op} {gate.threshold:g}",
    )


def jensen_shannon_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """sqrt of the Jensen-Shannon divergence with base-2 logarithms (0..1) of two count
    vectors over the same bins (normalized here)."""
    sp, sq = sum(p), sum(q)
    if sp <= 0 or sq <= 0 or len(p) != len(q):
        raise ValueError("two non-empty count vectors of the same length are needed")
    divergence = 0.0
    for a, b in zip(p, q, strict=True):
        a, b = a / sp, b / sq
        m = (a + b) / 2
        if a > 0:
            divergence += 0.5 * a * math.log2(a / m)
        if b > 0:
            divergence += 0.5 * b * math.log2(b / m)
    return math.sqrt(max(0.0, min(1.0, divergence)))


def _bucket_counts(samples: list[tuple[dict[str, str], float]]) -> dict[float, float]:
    """Per-bucket counts from cumulative ``le`` samples (keyed by upper bound)."""
    cumulative = sorted((float(labels["le"]), value) for labels, value in samples)
    out, previous = {}, 0.0
    for le, value in cumulative:
        out[le] = max(0.0, value - previous)
        previous = max(previous, value)
    return out


def _divergence(
    prometheus: Prometheus,
    gate: Gate,
    model: str,
    candidate: str,
    stable: str | None,
    window: float,
    reference_window: float,
) -> GateResult:
    promql = [query("predictions", model, candidate, window)]
    if stable is None:
        return judge(None, gate, promql, "no stable version to compare with")
    promql.append(query("predictions", model, stable, window))
    note = ""
    try:
        cand = _bucket_counts(prometheus.query(promql[0]))
        base = _bucket_counts(prometheus.query(promql[1]))
        if sum(base.values()) < gate.min_count and reference_window > window:
            # The stable version serves (almost) nothing now (the candidate has 100%):
            # its predictions over the rollout so far are the reference.
            promql.append(query("predictions", model, stable, reference_window))
            base = _bucket_counts(prometheus.query(promql[2]))
            note = f" (stable over the last {duration(reference_window)}: it serves too few now)"
    except (QueryError, KeyError, ValueError) as exc:
        return judge(None, gate, promql, f"query error: {exc}")
    if not cand or not base:
        side = "candidate" if not cand else "stable"
        return judge(None, gate, promql, f"no prediction histogram for the {side} version")
    if set(cand) != set(base):
        return judge(None, gate, promql, "the two versions' prediction buckets differ")
    nc, nb = sum(cand.values()), sum(base.values())
    if nc < gate.min_count or nb < gate.min_count:
        return judge(
            None,
            gate,
            promql,
            f"too few predictions in the window (candidate {nc:.0f}, stable {nb:.0f}; "
            f"min_count {gate.min_count}){note}",
        )
    bounds = sorted(cand)
    value = jensen_shannon_distance([cand[b] for b in bounds], [base[b] for b in bounds])
    result = judge(value, gate, promql)
    result.reason += note
    return result


def evaluate(
    prometheus: Prometheus | str,
    gates: Sequence[Gate],
    *,
    model: str,
    candidate: str,
    stable: str | None,
    window_seconds: float,
    min_requests: float,
    probes: Mapping[str, Callable[[], float | None]] | None = None,
    reference_window_seconds: float | None = None,
) -> Check:
    """One check of every gate for the candidate version (see the module docstring).

    Args:
        probes: For ``shadow_agreement`` and ``callable`` gates: the function giving the
            value, by gate name (or by type).
        reference_window_seconds: prediction_divergence: when the stable version made fewer
            than ``min_count`` predictions in the window (the candidate serves 100%), its
            predictions over this longer window (the rollout so far) are the reference.
    """
    if isinstance(prometheus, str):
        prometheus = Prometheus(prometheus)
    probes = probes or {}
    count_q = query("requests", model, candidate, window_seconds)
    try:
        requests_seen = prometheus.scalar(count_q)
        count_error = None
    except QueryError as exc:
        requests_seen, count_error = None, f"query error: {exc}"
    if count_error or requests_seen is None or not math.isfinite(requests_seen):
        why = count_error or f"no requests series for version {candidate}"
        results = [judge(None, g, [count_q], why) for g in gates]
        return Check(INCONCLUSIVE, requests_seen, results, why)
    if requests_seen < min_requests:
        why = (
            f"version {candidate} answered {requests_seen:.0f} requests in the last "
            f"{duration(window_seconds)}, under min_requests {min_requests:g}"
        )
        results = [judge(None, g, [count_q], why) for g in gates]
        return Check(INCONCLUSIVE, requests_seen, results, why)

    results = []
    for gate in gates:
        if gate.type in ("error_rate", "latency_p99"):
            promql = query(gate.type, model, candidate, window_seconds)
            try:
                results.append(judge(prometheus.scalar(promql), gate, [promql]))
            except QueryError as exc:
                results.append(judge(None, gate, [promql], f"query error: {exc}"))
        elif gate.type == "prediction_divergence":
            results.append(
                _divergence(
                    prometheus,
                    gate,
                    model,
                    candidate,
                    stable,
                    window_seconds,
                    reference_window_seconds or window_seconds,
                )
            )
        else:
            probe = probes.get(gate.name) or probes.get(gate.type)
            if probe is None:
                results.append(judge(None, gate, [], f"no probe supplies {gate.name}"))
                continue
            try:
                results.append(judge(probe(), gate, []))
            except Exception as exc:  # noqa: BLE001 - a probe's failure is no pass
                results.append(judge(None, gate, [], f"probe error: {type(exc).__name__}: {exc}"))
    verdicts = {r.verdict for r in results}
    if FAIL in verdicts:
        verdict = FAIL
        reason = "failing: " + ", ".join(r.summary() for r in results if r.verdict == FAIL)
    elif INCONCLUSIVE in verdicts:
        verdict = INCONCLUSIVE
        reason = "inconclusive: " + ", ".join(
            f"{r.gate}: {r.reason}" for r in results if r.verdict == INCONCLUSIVE
        )
    else:
        verdict, reason = PASS, "every gate passed"
    return Check(verdict, requests_seen, results, reason)
