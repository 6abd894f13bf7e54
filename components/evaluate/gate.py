"""The scorecard and the decision: every criterion in [0, 1], the hard thresholds, the champion.

Scorecard criteria (each normalised to [0, 1], 1 is best; NaN counts as 0):

* ``quality``: the primary metric on the holdout as a skill score against a constant
  predictor fitted to the holdout: ``rmse`` -> ``1 - (rmse / sd(y))^2`` (= R2), ``mae`` ->
  ``1 - mae / mean|y - median(y)|``, ``r2`` -> R2, ``mape`` -> ``1 - mape``; ``f1``,
  ``precision``, ``recall``, ``accuracy`` -> the value, ``roc_auc`` -> ``2 auc - 1`` (Gini),
  ``log_loss`` -> ``1 - log_loss / log_loss(base rate)``; clipped to [0, 1].
* ``slices``: for each slice gap that has a threshold, the headroom ``1 - gap / limit``
  (clipped to [0, 1]: 1 for no gap, 0 at the limit); the mean over the gaps (1 without any).
* ``robustness``: the robustness score (already a share of rows in [0, 1]).
* ``latency``: the mean of ``min(1, budget / p99)`` for the single-row and the batch p99
  (``latency_budget_ms``: 1 within budget, falling as the p99 grows past it).

``Score = sum_i w_i s_i / sum_i w_i`` (weights from the config, normalised to sum 1).

The decision is ``promote`` only when every check passes: each metric threshold, each slice
gap with a limit, the robustness minimum, both latency maxima, the minimum score (hard
thresholds reject whatever the score); and, with a champion, the paired bootstrap (the
lower end of the interval of the improvement above the minimum effect) and, for
classification with ``comparison.mcnemar = require``, McNemar's test (the challenger right
significantly more often where the two disagree). With no champion the thresholds alone
decide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from components.lib import metrics

PROMOTE, REJECT = "promote", "reject"
DECISIONS = (PROMOTE, REJECT)


@dataclass
class Check:
    name: str
    passed: bool
    text: str
    value: float | None = None
    limit: float | None = None

    def reason(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.text}"

    def as_dict(self) -> dict:
        return {**asdict(self), "reason": self.reason()}


def _clip01(value: float) -> float:
    return 0.0 if value is None or not np.isfinite(value) else float(min(1.0, max(0.0, value)))


def quality_score(task: str, metric: str, value: float, y: np.ndarray) -> tuple[float, str]:
    """The primary metric as a skill score in [0, 1] and how it was computed."""
    y = np.asarray(y, dtype=np.float64)
    if task == "regression":
        if metric == "rmse":
            sd = float(np.std(y))
            return _clip01(1 - (value / sd) ** 2 if sd > 0 else np.nan), (
                f"1 - (rmse / sd(y))^2 = 1 - ({value:.4g} / {sd:.4g})^2"
            )
        if metric == "mae":
            spread = float(np.mean(np.abs(y - np.median(y))))
            return _clip01(1 - value / spread if spread > 0 else np.nan), (
                f"1 - mae / mean|y - median(y)| = 1 - {value:.4g} / {spread:.4g}"
            )
        if metric == "r2":
            return _clip01(value), "R2"
        return _clip01(1 - value), "1 - mape"
    if metric == "roc_auc":
        return _clip01(2 * value - 1), "2 x roc_auc - 1"
    if metric == "log_loss":
        rate = float(np.mean(y > 0.5))
        base = metrics.point(task, ["log_loss"], y, np.full(len(y), rate))["log_loss"]
        return _clip01(1 - value / base if base > 0 else np.nan), (
            f"1 - log_loss / log_loss of the base rate = 1 - {value:.4g} / {base:.4g}"
        )
    return _clip01(value), metric


def scorecard(
    config: dict, primary_value: float, y, slice_gaps: list[dict], robustness: dict, latency: dict
) -> dict:
    """The weighted scorecard (see the module docstring)."""
    task, metric = config["task"], config["primary_metric"]
    quality, how = quality_score(task, metric, primary_value, y)
    limited = [g for g in slice_gaps if g["limit"] is not None]
    headroom = [
        _clip01(1 - g["value"] / g["limit"]) if g["limit"] > 0 else float(g["value"] <= 0)
        for g in limited
    ]
    budgets = config["latency_budget_ms"]
    speed = [
        min(1.0, budgets[k] / latency[k]["p99_ms"]) if latency[k]["p99_ms"] > 0 else 1.0
        for k in ("single_row", "batch")
    ]
    criteria = {
        "quality": (quality, primary_value, f"{metric} on the holdout: {how}"),
        "slices": (
            float(np.mean(headroom)) if headroom else 1.0,
            max((g["value"] for g in limited), default=0.0),
            f"mean headroom 1 - gap / limit over {len(limited)} slice gaps",
        ),
        "robustness": (
            _clip01(robustness["score"]),
            robustness["score"],
            "share of rows whose prediction stays within tolerance (worst part)",
        ),
        "latency": (
            float(np.mean(speed)),
            latency["single_row"]["p99_ms"],
            "mean of min(1, budget / p99) for one row "
            f"({budgets['single_row']:g} ms) and a batch ({budgets['batch']:g} ms)",
        ),
    }
    weights = config["weights"]
    total = sum(weights.values())
    rows = [
        {
            "criterion": name,
            "weight": weights[name] / total,
            "value": value,
            "score": s,
            "how": how,
        }
        for name, (s, value, how) in criteria.items()
    ]
    return {"criteria": rows, "score": float(sum(r["weight"] * r["score"] for r in rows))}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "undefined"
    return f"{value:.4g}"


def threshold_checks(
    config: dict,
    holdout_metrics: dict,
    slice_gaps: list[dict],
    robustness: dict,
    latency: dict,
    score: float,
) -> list[Check]:
    """Every hard threshold of the config, as checks."""
    thresholds = config["thresholds"]
    checks = []
    for name, bound in thresholds["metrics"].items():
        value = holdout_metrics.get(name)
        defined = value is not None and np.isfinite(value)
        for side, limit in sorted(bound.items()):
            ok = defined and (value >= limit if side == "min" else value <= limit)
            op = ">=" if side == "min" else "<="
            checks.append(
                Check(
                    f"metric {name}",
                    bool(ok),
                    f"holdout {name} {_fmt(value)} {op if ok else 'violates ' + op} {limit:g}",
                    value if defined else None,
                    limit,
                )
            )
    for gap in slice_gaps:
        if gap["limit"] is None:
            continue
        if gap["high"] is None:
            detail = gap["note"]
        else:
            rate = f"{gap['rate'].upper()} " if gap.get("rate") else ""
            column = gap["column"]
            detail = (
                f"{rate}{column}={gap['high']['slice']} {gap['high']['value']:.4g} vs "
                f"{column}={gap['low']['slice']} {gap['low']['value']:.4g}"
            )
        op = "<=" if gap["passed"] else ">"
        checks.append(
            Check(
                f"slice gap {gap['column']}",
                gap["passed"],
                f"{gap['measure'].replace('_', ' ')} gap {gap['value']:.4g} {op} {gap['limit']:g} ({detail})",
                gap["value"],
                gap["limit"],
            )
        )
    minimum = thresholds["min_robustness"]
    worst = [f"noise {robustness['perturbation']['score']:.3f}"] + [
        f"{c} missing {m['score']:.3f}" + (f" ({m['error']})" if m["error"] else "")
        for c, m in robustness["missing"].items()
    ]
    ok = robustness["score"] >= minimum
    checks.append(
        Check(
            "robustness",
            ok,
            f"score {robustness['score']:.3f} {'>=' if ok else '<'} {minimum:g} "
            f"(share of rows within {robustness['tolerance_text']}: {', '.join(worst)})",
            robustness["score"],
            minimum,
        )
    )
    for key, label in (("single_row", "one row"), ("batch", f"{latency['batch']['rows']} rows")):
        limit = thresholds["max_latency_p99_ms"][key]
        value = latency[key]["p99_ms"]
        ok = value <= limit
        checks.append(
            Check(
                f"latency {key.replace('_', ' ')}",
                ok,
                f"p99 {value:.3g} ms {'<=' if ok else '>'} {limit:g} ms ({label}, in-process)",
                value,
                limit,
            )
        )
    minimum = thresholds["min_score"]
    ok = score >= minimum
    checks.append(
        Check(
            "score",
            ok,
            f"weighted score {score:.3f} {'>=' if ok else '<'} {minimum:g}",
            score,
            minimum,
        )
    )
    return checks


def champion_checks(config: dict, comparison: dict | None, mcnemar: dict | None) -> list[Check]:
    """The comparison with the champion, as checks (none when there is no champion)."""
    if comparison is None:
        return []
    c = comparison
    units = (
        f"{config['comparison']['min_effect']:.3g} x the champion's {c['metric']}"
        if config["comparison"]["min_effect_relative"]
        else "absolute"
    )
    verdict = (
        "better beyond the interval"
        if c["better_beyond_interval"]
        else "not better beyond the interval"
    )
    checks = [
        Check(
            "vs champion (paired bootstrap)",
            c["better_beyond_interval"],
            f"{c['metric']} {_fmt(c['challenger'])} vs champion {_fmt(c['champion'])}; improvement "
            f"{_fmt(c['improvement'])}, {100 * c['confidence']:g}% paired bootstrap CI "
            f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] over {c['resamples']} resamples; "
            f"minimum effect {_fmt(c['min_effect'])} ({units}): {verdict}",
            c["ci_low"],
            c["min_effect"],
        )
    ]
    if mcnemar is not None:
        required = config["comparison"]["mcnemar"] == "require"
        m = mcnemar
        if m["challenger_better"]:
            verdict = "the challenger is right significantly more often"
        elif m["only_challenger_right"] > m["only_champion_right"] and m["p_value"] >= m["alpha"]:
            verdict = "the challenger is not significantly better"
        else:
            verdict = "the challenger is not better"
        checks.append(
            Check(
                "vs champion (McNemar)" + ("" if required else ", reported only"),
                m["challenger_better"] or not required,
                f"only the champion right on {m['only_champion_right']} rows, only the challenger "
                f"on {m['only_challenger_right']}; {m['method']} p = {m['p_value']:.3g} "
                f"(alpha {m['alpha']:g}): {verdict}",
                m["p_value"],
                m["alpha"],
            )
        )
    return checks


def decide(checks: list[Check]) -> str:
    return PROMOTE if all(c.passed for c in checks) else REJECT
