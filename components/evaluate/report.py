"""What a person reads: the Markdown scorecard and a self-contained HTML report.

The HTML has no script and loads nothing (no link, no image, no font from anywhere): the
plots are inline SVG, so the report renders in the KFP UI of an air-gapped cluster. Every
value that comes from data or a config (slice values, column names, reasons) is escaped;
in the Markdown such values sit in code spans that none of their characters can end.
"""

from __future__ import annotations

import math

from components.lib import reporting

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222;max-width:70em}
h1{font-size:1.35em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.3em 0 .4em} h3{font-size:.95em;margin:.8em 0 .3em}
table{border-collapse:collapse;font-size:.85em;margin:.3em 0} td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#17692c;font-weight:600} .fail{color:#b3261e;font-weight:600} .bad{background:#fde8e8}
.muted{color:#777} svg{display:block;margin:.3em 0} .verdict{font-size:1.2em;margin:.4em 0}
.row{display:flex;flex-wrap:wrap;gap:1.5em}
"""
CHALLENGER, CHAMPION, GREY = "#4a78c2", "#e08a2c", "#999"


_esc, _num, _md = reporting.esc, reporting.num, reporting.md_code


# --------------------------------------------------------------------------- Markdown


def markdown(ev: dict) -> str:
    """The scorecard: decision, every reason, the criteria, metrics, slices, importance."""
    champion = ev["champion"]
    lines = [
        f"# Evaluation: **{ev['decision'].upper()}**",
        "",
        f"{_md(ev['summary'], False)}",
        "",
        f"- task: {ev['task']}, target {_md(ev['target'], False)}, primary metric "
        f"{ev['primary_metric']} ({ev['goal']}), config {_md(ev['config']['name'] or 'inline', False)}",
        f"- model sha256 `{ev['model'].get('sha256', '')[:16]}`, holdout {ev['holdout']['rows']:,} rows"
        + (f" (sha256 `{ev['holdout']['sha256'][:16]}`)" if ev["holdout"]["sha256"] else ""),
        "- champion: "
        + (
            f"version {_md(champion.get('version') or '?', False)}, sha256 `{champion.get('sha256', '')[:16]}`"
            if champion["found"]
            else "none (the thresholds alone decide)"
        ),
        "",
        "## Checks",
        "",
        "| | check | detail |",
        "|---|---|---|",
    ]
    for check in ev["checks"]:
        mark = "PASS" if check["passed"] else "**FAIL**"
        lines.append(f"| {mark} | {check['name']} | {_md(check['text'])} |")
    card = ev["scorecard"]
    lines += [
        "",
        f"## Scorecard: {card['score']:.3f}",
        "",
        "| criterion | weight | value | score in [0, 1] | how |",
        "|---|---:|---:|---:|---|",
    ]
    for row in card["criteria"]:
        lines.append(
            f"| {row['criterion']} | {row['weight']:.2f} | {_num(row['value'])} | "
            f"{row['score']:.3f} | {_md(row['how'])} |"
        )
    lines += ["", "Score = sum of weight x score (weights normalised to sum 1).", ""]
    names = list(ev["metrics"]["holdout"])
    head = "| metric | holdout | eval |" + (" champion (holdout) |" if champion["found"] else "")
    lines += ["## Metrics", "", head, "|---|---:|---:|" + ("---:|" if champion["found"] else "")]
    for name in names:
        row = f"| {name} | {_num(ev['metrics']['holdout'][name])} | {_num(ev['metrics']['eval'].get(name))} |"
        if champion["found"]:
            row += f" {_num(champion['metrics'].get(name))} |"
        lines.append(row)
    if champion["found"] and champion.get("comparison"):
        c = champion["comparison"]
        lines += [
            "",
            f"Paired bootstrap ({c['resamples']} resamples): improvement in {c['metric']} "
            f"{_num(c['improvement'])}, {100 * c['confidence']:g}% CI [{_num(c['ci_low'])}, "
            f"{_num(c['ci_high'])}], minimum effect {_num(c['min_effect'])}.",
        ]
        if champion.get("mcnemar"):
            m = champion["mcnemar"]
            lines.append(
                f"McNemar: only the champion right {m['only_champion_right']}, only the "
                f"challenger right {m['only_challenger_right']}, {m['method']} p = {m['p_value']:.3g}."
            )
    lines += [
        "",
        "## Slice gaps",
        "",
        "| column | gap | value | limit | highest | lowest |",
        "|---|---|---:|---:|---|---|",
    ]
    for gap in ev["slices"]["gaps"]:
        high = f"{_md(gap['high']['slice'])} {_num(gap['high']['value'])}" if gap["high"] else "-"
        low = f"{_md(gap['low']['slice'])} {_num(gap['low']['value'])}" if gap["low"] else "-"
        limit = "reported" if gap["limit"] is None else f"{gap['limit']:g}"
        lines.append(
            f"| {_md(gap['column'])} | {gap['measure'].replace('_', ' ')} | {_num(gap['value'])} | {limit} | {high} | {low} |"
        )
    robust = ev["robustness"]
    lines += [
        "",
        f"## Robustness: {robust['score']:.3f}",
        "",
        f"Share of {robust['rows']:,} rows whose prediction moves by at most {_md(robust['tolerance_text'], False)}: "
        f"numeric noise ({robust['noise']:g} sd) {robust['perturbation']['score']:.3f}"
        + "".join(
            f"; {_md(c, False)} missing {m['score']:.3f}" for c, m in robust["missing"].items()
        )
        + ".",
        "",
        "## Latency (in-process)",
        "",
        "| | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| one row | {_num(ev['latency']['single_row']['p50_ms'], 3)} | {_num(ev['latency']['single_row']['p99_ms'], 3)} |",
        f"| {ev['latency']['batch']['rows']:,} rows | {_num(ev['latency']['batch']['p50_ms'], 3)} | {_num(ev['latency']['batch']['p99_ms'], 3)} |",
        "",
        f"## Feature importance (permutation, {ev['feature_importance']['metric']})",
        "",
        "| feature | importance | sd | share |",
        "|---|---:|---:|---:|",
    ]
    for f in ev["feature_importance"]["features"]:
        lines.append(
            f"| {_md(f['feature'])} | {_num(f['importance'])} | {_num(f['std'])} | {f['share']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- SVG


def _hbars(
    rows: list[tuple[str, list[tuple[float | None, str]]]],
    *,
    width: int = 260,
    limit: float | None = None,
    errors: list[float] | None = None,
    label_w: int = 150,
    scale_max: float | None = None,
) -> str:
    """Horizontal bars: one group per label, one bar per (value, color) in the group;
    the scale runs to the largest value (or ``scale_max``, for shares and rates)."""
    values = [v for _, bars in rows for v, _ in bars if v is not None and math.isfinite(v)]
    top = max([*values, limit or 0.0, scale_max or 0.0, 1e-12])
    low = min([0.0, *values])
    span = top - low
    bar_h = 11
    height = sum(len(bars) * bar_h + 6 for _, bars in rows) + 4
    parts = []
    y = 2
    zero = label_w + (0 - low) / span * width
    for index, (label, bars) in enumerate(rows):
        parts.append(
            f'<text x="{label_w - 4}" y="{y + bar_h * len(bars) / 2 + 4:.1f}" font-size="11" '
            f'text-anchor="end">{_esc(label)[:40]}</text>'
        )
        for value, color in bars:
            if value is None or not math.isfinite(value):
                parts.append(
                    f'<text x="{zero + 3:.1f}" y="{y + 9}" font-size="10" fill="{GREY}">n/a</text>'
                )
            else:
                start = label_w + (min(value, 0) - low) / span * width
                length = abs(value) / span * width
                parts.append(
                    f'<rect x="{start:.1f}" y="{y}" width="{max(length, 0.5):.1f}" height="{bar_h - 2}" '
                    f'fill="{color}"><title>{_esc(label)}: {value:.4g}</title></rect>'
                    f'<text x="{label_w + width + 4}" y="{y + 9}" font-size="10">{value:.3g}</text>'
                )
                if errors is not None:
                    err = errors[index] / span * width
                    end = start + length if value >= 0 else start
                    parts.append(
                        f'<line x1="{end - err:.1f}" x2="{end + err:.1f}" y1="{y + 4}" y2="{y + 4}" '
                        'stroke="#333" stroke-width="1"/>'
                    )
            y += bar_h
        y += 6
    if limit is not None:
        pos = label_w + (limit - low) / span * width
        parts.append(
            f'<line x1="{pos:.1f}" x2="{pos:.1f}" y1="0" y2="{height}" stroke="#b3261e" '
            f'stroke-dasharray="3,2"><title>limit {limit:g}</title></line>'
        )
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="{height}" stroke="#bbb"/>')
    return (
        f'<svg width="{label_w + width + 50}" height="{height}" role="img">{"".join(parts)}</svg>'
    )


class _Axes:
    """A plot area mapping data coordinates to SVG pixels, with a frame and tick labels."""

    def __init__(self, x_range, y_range, width=320, height=240, x_label="", y_label=""):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1
        self.w, self.h, self.pad = width, height, 40
        self.parts = [
            f'<rect x="{self.pad}" y="8" width="{width}" height="{height}" fill="none" stroke="#ccc"/>'
        ]
        for frac in (0, 0.5, 1):
            xv = self.x0 + frac * (self.x1 - self.x0)
            yv = self.y0 + frac * (self.y1 - self.y0)
            self.parts.append(
                f'<text x="{self.px(xv):.1f}" y="{height + 22}" font-size="10" text-anchor="middle">{xv:.3g}</text>'
                f'<text x="{self.pad - 4}" y="{self.py(yv) + 3:.1f}" font-size="10" text-anchor="end">{yv:.3g}</text>'
            )
        self.parts.append(
            f'<text x="{self.pad + width / 2}" y="{height + 36}" font-size="11" text-anchor="middle">{_esc(x_label)}</text>'
            f'<text x="10" y="{8 + height / 2}" font-size="11" transform="rotate(-90 10 {8 + height / 2})" '
            f'text-anchor="middle">{_esc(y_label)}</text>'
        )

    def px(self, x: float) -> float:
        return self.pad + (x - self.x0) / (self.x1 - self.x0) * self.w

    def py(self, y: float) -> float:
        return 8 + self.h - (y - self.y0) / (self.y1 - self.y0) * self.h

    def points(self, xs, ys, color: str, r: float = 1.6, opacity: float = 0.45) -> None:
        self.parts.append(
            "".join(
                f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="{r}" fill="{color}" fill-opacity="{opacity}"/>'
                for x, y in zip(xs, ys, strict=True)
            )
        )

    def line(self, xs, ys, color: str, width: float = 1.5, dash: str = "", title: str = "") -> None:
        path = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        tip = f"<title>{_esc(title)}</title>" if title else ""
        self.parts.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{width}"{dash_attr}>{tip}</polyline>'
        )

    def vline(self, x: float, color: str, title: str, dash: str = "") -> None:
        if not (self.x0 <= x <= self.x1):
            return
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<line x1="{self.px(x):.1f}" x2="{self.px(x):.1f}" y1="8" y2="{8 + self.h}" stroke="{color}" '
            f'stroke-width="1.5"{dash_attr}><title>{_esc(title)}</title></line>'
        )

    def svg(self) -> str:
        return (
            f'<svg width="{self.w + self.pad + 30}" height="{self.h + 44}" role="img">'
            f"{''.join(self.parts)}</svg>"
        )


def _legend(items: list[tuple[str, str]]) -> str:
    return " ".join(
        f'<span style="color:{color}">&#9632;</span> {_esc(label)}' for label, color in items
    )


def _residual_plots(plots: dict) -> str:
    res = plots.get("residuals")
    if not res:
        return ""
    y, pred = res["y"], res["prediction"]
    top = max(max(y), max(pred))
    bottom = min(min(y), min(pred), 0)
    scatter = _Axes((bottom, top), (bottom, top), x_label="actual", y_label="predicted")
    scatter.line([bottom, top], [bottom, top], GREY, 1, "4,3", "perfect")
    if res.get("champion_prediction"):
        scatter.points(y, res["champion_prediction"], CHAMPION, 1.3, 0.3)
    scatter.points(y, pred, CHALLENGER)
    residual = [p - a for a, p in zip(y, pred, strict=True)]
    spread = max(abs(min(residual)), abs(max(residual)), 1e-9)
    resid = _Axes(
        (min(pred), max(pred)), (-spread, spread), x_label="predicted", y_label="residual"
    )
    resid.line([min(pred), max(pred)], [0, 0], GREY, 1, "4,3")
    resid.points(pred, residual, CHALLENGER)
    return (
        "<h2>Residuals</h2><div>"
        + _legend(
            [("challenger", CHALLENGER)]
            + ([("champion", CHAMPION)] if res.get("champion_prediction") else [])
        )
        + f'</div><div class="row">{scatter.svg()}{resid.svg()}</div>'
    )


def _calibration_plots(plots: dict) -> str:
    cal = plots.get("calibration")
    if not cal:
        return ""
    axes = _Axes((0, 1), (0, 1), x_label="mean predicted probability", y_label="observed rate")
    axes.line([0, 1], [0, 1], GREY, 1, "4,3", "perfectly calibrated")
    legend = []
    for name, color in (("champion", CHAMPION), ("challenger", CHALLENGER)):
        table = cal.get(name)
        if not table:
            continue
        legend.append((name, color))
        axes.line(
            [b["mean_predicted"] for b in table],
            [b["observed"] for b in table],
            color,
            2,
            title=name,
        )
        axes.points(
            [b["mean_predicted"] for b in table], [b["observed"] for b in table], color, 3, 0.9
        )
    roc_axes = _Axes((0, 1), (0, 1), x_label="false positive rate", y_label="true positive rate")
    roc_axes.line([0, 1], [0, 1], GREY, 1, "4,3", "chance")
    for name, color in (("champion", CHAMPION), ("challenger", CHALLENGER)):
        curve = (plots.get("roc") or {}).get(name)
        if curve:
            roc_axes.line(curve["fpr"], curve["tpr"], color, 2, title=f"{name} ROC")
    return (
        f"<h2>Calibration and ROC</h2><div>{_legend(legend)}</div>"
        f'<div class="row">{axes.svg()}{roc_axes.svg()}</div>'
    )


def _bootstrap_plot(ev: dict) -> str:
    boot = ev["plots"].get("bootstrap")
    c = ev["champion"].get("comparison")
    if not boot or not c:
        return ""
    edges, counts = boot["edges"], boot["counts"]
    lo = min(edges[0], 0.0, c["min_effect"])
    hi = max(edges[-1], 0.0, c["min_effect"])
    axes = _Axes(
        (lo, hi),
        (0, max(counts) or 1),
        width=420,
        height=140,
        x_label=f"improvement in {c['metric']} (> 0: challenger better)",
        y_label="resamples",
    )
    for count, left, right in zip(counts, edges[:-1], edges[1:], strict=True):
        x = axes.px(left)
        w = max(axes.px(right) - x - 0.5, 0.5)
        y = axes.py(count)
        axes.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{axes.py(0) - y:.1f}" fill="{CHALLENGER}" fill-opacity="0.6"/>'
        )
    axes.vline(0.0, "#333", "no difference")
    axes.vline(c["min_effect"], "#b3261e", f"minimum effect {c['min_effect']:.4g}", "4,3")
    for key in ("ci_low", "ci_high"):
        if c[key] is not None:
            axes.vline(c[key], "#17692c", f"{key} {c[key]:.4g}", "2,2")
    return (
        "<h3>Paired bootstrap of the improvement</h3>"
        '<div class="muted">green: the confidence interval; red dashed: the minimum effect; black: 0</div>'
        + axes.svg()
    )


def _slice_section(ev: dict) -> str:
    task = ev["task"]
    champion = ev["champion"]
    champ_slices = (champion.get("slices") or {}).get("columns", {}) if champion["found"] else {}
    parts = ["<h2>Slices</h2>"]
    for column, entries in ev["slices"]["columns"].items():
        parts.append(f"<h3>{_esc(column)}</h3>")
        shown = (
            ["relative_error", "wape"] if task == "regression" else ["positive_rate", "tpr", "fpr"]
        )
        svgs = []
        for name in shown:
            rows = []
            for label, entry in entries.items():
                bars = [(entry["metrics"].get(name), CHALLENGER)]
                if champ_slices:
                    other = champ_slices.get(column, {}).get(label)
                    bars.append(((other or {}).get("metrics", {}).get(name), CHAMPION))
                tag = "" if entry["included"] else " (small)"
                rows.append((f"{label}{tag}", bars))
            title = {
                "relative_error": "relative error (MAE / mean |y| of the holdout)",
                "wape": "WAPE (sum |error| / sum |y| of the slice)",
                "positive_rate": "predicted-positive rate",
                "tpr": "true positive rate",
                "fpr": "false positive rate",
            }[name]
            bounded = 1.0 if task == "classification" else None
            svgs.append(
                f"<div><div class='muted'>{title}</div>{_hbars(rows, scale_max=bounded)}</div>"
            )
        parts.append(f'<div class="row">{"".join(svgs)}</div>')
        names = [m for m in entries[next(iter(entries))]["metrics"]] if entries else []
        head = "".join(f"<th>{_esc(n)}</th>" for n in names)
        body = "".join(
            f"<tr{'' if e['included'] else ' class=muted'}><th>{_esc(label)}</th>"
            f"<td class=num>{e['rows']:,}</td>"
            + "".join(f"<td class=num>{_num(e['metrics'][n])}</td>" for n in names)
            + "</tr>"
            for label, e in entries.items()
        )
        parts.append(f"<table><tr><th>slice</th><th>rows</th>{head}</tr>{body}</table>")
        for gap in ev["slices"]["gaps"]:
            if gap["column"] != column:
                continue
            cls = "pass" if gap["passed"] else "fail"
            limit = "reported only" if gap["limit"] is None else f"limit {gap['limit']:g}"
            parts.append(
                f'<div><span class="{cls}">{_esc(gap["measure"].replace("_", " "))} gap '
                f"{_num(gap['value'])}</span> ({limit}) {_esc(gap.get('note', ''))}</div>"
            )
    return "".join(parts)


def html(ev: dict) -> str:
    """The HTML report (self-contained: no script, nothing loaded)."""
    champion = ev["champion"]
    decision_cls = "pass" if ev["decision"] == "promote" else "fail"
    checks = "".join(
        f"<tr class='{'' if c['passed'] else 'bad'}'><td class='{'pass' if c['passed'] else 'fail'}'>"
        f"{'PASS' if c['passed'] else 'FAIL'}</td><td>{_esc(c['name'])}</td><td>{_esc(c['text'])}</td></tr>"
        for c in ev["checks"]
    )
    card = ev["scorecard"]
    card_rows = "".join(
        f"<tr><td>{_esc(r['criterion'])}</td><td class=num>{r['weight']:.2f}</td><td class=num>{_num(r['value'])}</td>"
        f"<td>{_hbars([('', [(r['score'], CHALLENGER)])], width=120, label_w=4, scale_max=1.0)}</td>"
        f"<td>{_esc(r['how'])}</td></tr>"
        for r in card["criteria"]
    )
    names = list(ev["metrics"]["holdout"])
    metric_rows = "".join(
        f"<tr><th>{_esc(n)}</th><td class=num>{_num(ev['metrics']['holdout'][n])}</td>"
        f"<td class=num>{_num(ev['metrics']['eval'].get(n))}</td>"
        + (f"<td class=num>{_num(champion['metrics'].get(n))}</td>" if champion["found"] else "")
        + "</tr>"
        for n in names
    )
    champion_line = (
        f"champion version <b>{_esc(champion.get('version') or '?')}</b> "
        f"(sha256 {_esc(champion.get('sha256', '')[:16])})"
        if champion["found"]
        else "no champion: the thresholds alone decide"
    )
    comparison = ""
    if champion["found"]:
        ranked = [
            n
            for n in names
            if n in champion["metrics"]
            and n not in ("wape", "positive_rate", "tpr", "fpr", "mape_excluded_rows")
        ]
        rows = [
            (n, [(ev["metrics"]["holdout"][n], CHALLENGER), (champion["metrics"][n], CHAMPION)])
            for n in ranked
            if n in ("r2", "f1", "precision", "recall", "accuracy", "roc_auc")
        ]
        bars = _hbars(rows, scale_max=1.0) if rows else ""
        errors = [
            (n, [(ev["metrics"]["holdout"][n], CHALLENGER), (champion["metrics"][n], CHAMPION)])
            for n in ranked
            if n in ("rmse", "mae", "log_loss")
        ]
        comparison = (
            "<h2>Champion vs challenger (same holdout rows)</h2><div>"
            + _legend([("challenger", CHALLENGER), ("champion", CHAMPION)])
            + f'</div><div class="row"><div>{bars}</div><div>{_hbars(errors) if errors else ""}</div></div>'
            + _bootstrap_plot(ev)
        )
    importance = ev["feature_importance"]
    imp_rows = [(f["feature"], [(f["importance"], CHALLENGER)]) for f in importance["features"]]
    imp_svg = _hbars(imp_rows, errors=[f["std"] for f in importance["features"]])
    robust = ev["robustness"]
    robust_rows = (
        f"<tr><td>numeric noise ({robust['noise']:g} sd on {_esc(', '.join(robust['perturbation']['columns']))})</td><td class=num>{robust['perturbation']['score']:.3f}</td><td>mean movement {_num(robust['perturbation']['mean_movement'])}</td></tr>"
        + "".join(
            f"<tr><td>{_esc(c)} missing</td><td class=num>{m['score']:.3f}</td><td>{_esc(m['error']) or 'mean movement ' + _num(m.get('mean_movement'))}</td></tr>"
            for c, m in robust["missing"].items()
        )
    )
    lat = ev["latency"]
    champ_lat = champion.get("latency") if champion["found"] else None
    lat_rows = "".join(
        f"<tr><td>{label}</td><td class=num>{_num(lat[k]['p50_ms'], 3)}</td><td class=num>{_num(lat[k]['p99_ms'], 3)}</td>"
        + (
            f"<td class=num>{_num(champ_lat[k]['p50_ms'], 3)}</td><td class=num>{_num(champ_lat[k]['p99_ms'], 3)}</td>"
            if champ_lat
            else ""
        )
        + "</tr>"
        for k, label in (("single_row", "one row"), ("batch", f"{lat['batch']['rows']:,} rows"))
    )
    lat_head = "<th>p50 ms</th><th>p99 ms</th>" + (
        "<th>champion p50</th><th>champion p99</th>" if champ_lat else ""
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Model evaluation</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>Model evaluation</h1>",
        f"<div class='verdict'>Decision: <span class='{decision_cls}'>{_esc(ev['decision'].upper())}</span> &middot; "
        f"{_esc(ev['summary'])}</div>",
        f"<div>{_esc(ev['task'])}, target <b>{_esc(ev['target'])}</b>, primary metric "
        f"<b>{_esc(ev['primary_metric'])}</b> ({_esc(ev['goal'])}); config {_esc(ev['config']['name'] or 'inline')}; "
        f"model sha256 {_esc(ev['model'].get('sha256', '')[:16])}; holdout {ev['holdout']['rows']:,} rows; {champion_line}</div>",
        f"<h2>Checks</h2><table><tr><th></th><th>check</th><th>detail</th></tr>{checks}</table>",
        f"<h2>Scorecard: {card['score']:.3f}</h2><table><tr><th>criterion</th><th>weight</th><th>value</th>"
        f"<th>score in [0, 1]</th><th>how</th></tr>{card_rows}</table>"
        "<div class='muted'>Score = sum of weight x score (weights normalised to sum 1); "
        "hard thresholds reject whatever the score.</div>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>holdout</th><th>eval</th>"
        + ("<th>champion (holdout)</th>" if champion["found"] else "")
        + f"</tr>{metric_rows}</table>",
        comparison,
        _slice_section(ev),
        _residual_plots(ev["plots"])
        if ev["task"] == "regression"
        else _calibration_plots(ev["plots"]),
        f"<h2>Robustness: {robust['score']:.3f}</h2>"
        f"<div class='muted'>share of {robust['rows']:,} rows whose prediction moves by at most {_esc(robust['tolerance_text'])}</div>"
        f"<table><tr><th>perturbation</th><th>score</th><th>detail</th></tr>{robust_rows}</table>",
        f"<h2>Latency (in-process predict)</h2><table><tr><th></th>{lat_head}</tr>{lat_rows}</table>",
        f"<h2>Feature importance (permutation on the holdout, {_esc(importance['metric'])})</h2>"
        f"<div class='muted'>how much {_esc(importance['metric'])} worsens when the column is shuffled "
        f"({importance['repeats']} shuffles, {importance['rows']:,} rows; the line is one sd)</div>{imp_svg}",
        "</body></html>",
    ]
    return "".join(parts)
