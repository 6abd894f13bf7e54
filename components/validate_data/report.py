"""Reports people read: a self-contained HTML page (the KFP UI renders it) and a Markdown summary.

The HTML has no script and loads nothing from the network: TFDV's own Facets view
(``get_statistics_html``) loads its code from a CDN through HTML imports, which current
browsers no longer support and air-gapped clusters cannot reach. Plots are inline SVG.
"""

from __future__ import annotations

import html as html_lib

from components.validate_data.findings import Finding, Measurement, Result

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.35em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
.bad{background:#fde8e8} .ok{color:#17692c;font-weight:600} .fail{color:#b3261e;font-weight:600}
.muted{color:#777} svg{display:block} .warn{background:#fff4d6} .warntext{color:#8a5a00;font-weight:600}
.box{border:1px solid #e0b84c;background:#fffaf0;padding:.5em .8em;margin:.8em 0}
"""
_ROW_CLASS = {"block": "bad", "warn": "warn", "block_reported": "bad"}
_VERDICT = {
    "ok": "ok",
    "noise": "within sampling noise",
    "warn": "reported",
    "block": "blocks",
    "block_reported": "above block: reported only (serving data)",
}
REPORTED_VERDICTS = ("warn", "block_reported")
_COLORS = ("#4a78c2", "#e08a2c", "#3c9a5f", "#a34fb0")


def _esc(value) -> str:
    return html_lib.escape(str(value))


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.4g}"
    return f"{value:.3e}"


def _common(feature):
    if feature.HasField("num_stats"):
        return feature.num_stats.common_stats
    if feature.HasField("string_stats"):
        return feature.string_stats.common_stats
    return None


def _name(feature) -> str:
    return feature.path.step[0] if feature.path.step else feature.name


def _bars_svg(
    heights: list[float], color: str, labels: list[str] | None = None, width: int = 160
) -> str:
    if not heights or max(heights) <= 0:
        return '<span class="muted">no values</span>'
    top = max(heights)
    bar_w = width / len(heights)
    rects = []
    for i, h in enumerate(heights):
        bh = 40 * h / top
        title = f"<title>{_esc(labels[i])}: {h:g}</title>" if labels else ""
        rects.append(
            f'<rect x="{i * bar_w:.1f}" y="{40 - bh:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{bh:.1f}" fill="{color}">{title}</rect>'
        )
    return f'<svg width="{width}" height="42" role="img">{"".join(rects)}</svg>'


def _numeric_cell(feature, color: str) -> str:
    num = feature.num_stats
    hist = next((h for h in num.histograms if h.type == h.STANDARD), None)
    buckets = list(hist.buckets) if hist else []
    labels = [f"[{_fmt(b.low_value)}, {_fmt(b.high_value)})" for b in buckets]
    svg = _bars_svg([b.sample_count for b in buckets], color, labels)
    stats = (
        f"mean {_fmt(num.mean)} &middot; sd {_fmt(num.std_dev)}<br>"
        f"min {_fmt(num.min)} &middot; max {_fmt(num.max)} &middot; zeros {num.num_zeros}"
    )
    return f"{svg}<div>{stats}</div>"


def _string_cell(feature, color: str) -> str:
    top = list(feature.string_stats.top_values)[:8]
    svg = _bars_svg([t.frequency for t in top], color, [t.value for t in top])
    values = ", ".join(f"{_esc(t.value)} ({t.frequency:g})" for t in top[:4])
    return f"{svg}<div>{feature.string_stats.unique} unique: {values}</div>"


def _feature_table(result: Result) -> str:
    datasets = list(result.statistics.datasets)
    if result.baseline is not None and result.baseline.statistics is not None:
        baseline = type(datasets[0])()
        baseline.CopyFrom(result.baseline.statistics.datasets[0])
        baseline.name = "drift baseline"
        datasets.append(baseline)
    by_dataset = [{_name(f): f for f in d.features} for d in datasets]
    names = sorted({n for d in by_dataset for n in d})
    flagged = {(f.dataset, f.column) for f in result.blocking}
    head = "".join(
        f'<th style="color:{_COLORS[i % 4]}">{_esc(d.name)} ({d.num_examples:,} rows)</th>'
        for i, d in enumerate(datasets)
    )
    rows = []
    for name in names:
        cells = []
        for i, d in enumerate(datasets):
            feature = by_dataset[i].get(name)
            cls = ' class="bad"' if (d.name, name) in flagged else ""
            if feature is None:
                cells.append(f'<td{cls}><span class="fail">absent</span></td>')
                continue
            common = _common(feature)
            missing = ""
            if common is not None and d.num_examples:
                missing_pct = 100 * common.num_missing / d.num_examples
                missing = f'<div class="{"fail" if missing_pct else "muted"}">missing {missing_pct:.2f}%</div>'
            color = _COLORS[i % 4]
            body = (
                _numeric_cell(feature, color)
                if feature.HasField("num_stats")
                else (_string_cell(feature, color) if feature.HasField("string_stats") else "")
            )
            cells.append(f"<td{cls}>{body}{missing}</td>")
        ftype = next((f.type for d in by_dataset if (f := d.get(name)) is not None), None)
        type_name = {0: "INT", 1: "FLOAT", 2: "STRING", 3: "BYTES", 4: "STRUCT"}.get(ftype, "?")
        rows.append(
            f'<tr><th>{_esc(name)}<div class="muted">{type_name}</div></th>{"".join(cells)}</tr>'
        )
    return f"<table><tr><th>feature</th>{head}</tr>{''.join(rows)}</table>"


def _level_svg(m: Measurement, width: int = 140) -> str:
    """A bar of the value on a 0..1 scale with the warn (amber), block (red) and noise (grey) marks."""
    scale = width / 1.0

    def mark(x: float | None, color: str, dash: str = "") -> str:
        if x is None:
            return ""
        pos = min(max(x, 0.0), 1.0) * scale
        return (
            f'<line x1="{pos:.1f}" x2="{pos:.1f}" y1="0" y2="14" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )

    fill = {"block": "#b3261e", "block_reported": "#b3261e", "warn": "#e0a020"}.get(
        m.verdict, "#4a78c2"
    )
    dashed = ' stroke-dasharray="2,2"'
    bar = min(max(m.value, 0.0), 1.0) * scale
    return (
        f'<svg width="{width}" height="14" role="img"><title>value {m.value:.3f}</title>'
        f'<rect x="0" y="3" width="{width}" height="8" fill="#eee"/>'
        f'<rect x="0" y="3" width="{bar:.1f}" height="8" fill="{fill}"/>'
        f"{mark(m.noise, '#777', dashed)}{mark(m.warn, '#e0a020')}"
        f"{mark(m.block, '#b3261e')}</svg>"
    )


def _level(value: float | None, digits: int = 3) -> str:
    return "never" if value is None else f"{value:.{digits}g}"


def _finding_rows(findings: list[Finding], cls: str) -> str:
    return "".join(
        f"<tr class='{cls}'><td>{_esc(f.dataset)}</td><td><b>{_esc(f.column)}</b></td>"
        f"<td>{_esc(f.kind)}</td><td>{_esc(f.reason)}</td></tr>"
        for f in findings
    )


def html(result: Result) -> str:
    """The HTML report: verdict, blocking findings, reported drift, every measure, statistics."""
    blocking, reported = result.blocking, result.reported
    if blocking:
        verdict = (
            f'<span class="fail">{len(blocking)} blocking findings: this data must not reach '
            "training</span>"
        )
    else:
        verdict = '<span class="ok">passes the gate</span>'
    if reported:
        verdict += (
            f' &middot; <span class="warntext">{len(reported)} drift findings reported</span>'
        )
    datasets = ", ".join(
        f"{_esc(d.name)}: {d.num_examples:,} rows" for d in result.statistics.datasets
    )
    baseline = result.baseline.describe() if result.baseline else "none"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Data validation</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>Data validation (TFDV)</h1>",
        f"<div>Schema <b>{_esc(result.schema_version)}</b> &middot; drift policy "
        f"<b>{_esc(result.policy_version)}</b> &middot; {datasets}</div>",
        f"<div>Drift baseline: <b>{_esc(baseline)}</b></div>",
        f"<div>Verdict: {verdict}</div>",
    ]
    if result.environment:
        parts.append(f"<div>{_esc(_environment_line(result))}</div>")
    if blocking:
        parts.append(
            "<h2>Blocking: the batch is stopped</h2><table><tr><th>split</th><th>column</th>"
            f"<th>kind</th><th>reason</th></tr>{_finding_rows(blocking, 'bad')}</table>"
        )
    if reported:
        parts.append(
            "<div class='box'><h2 style='margin-top:0'>Reported drift (does not block)</h2>"
            "<table><tr><th>split</th><th>column</th><th>kind</th><th>reason</th></tr>"
            f"{_finding_rows(reported, 'warn')}</table></div>"
        )
    if result.measurements:
        rows = "".join(
            f"<tr class='{_ROW_CLASS.get(m.verdict, '')}'>"
            f"<td>{_esc(m.dataset)}</td><td><b>{_esc(m.feature)}</b></td><td>{m.check}</td>"
            f"<td>{_esc(m.measure)}</td><td class='num'>{m.value:.4f}</td>"
            f"<td class='num'>{m.warn:g}</td><td class='num'>{_level(m.block)}</td>"
            f"<td class='num'>{_level(m.noise)}</td><td class='num'>{m.rows:,} / {m.baseline_rows:,}</td>"
            f"<td>{_VERDICT[m.verdict]}</td><td>{_level_svg(m)}</td></tr>"
            for m in result.measurements
        )
        parts.append(
            "<h2>Drift and skew, by policy</h2><div class='muted'>Reported above warn, blocking "
            "above block, in both cases only beyond the sampling-noise bound (what two clean "
            "draws of these sizes give at the policy's false-alarm rate). Bar: value on 0..1; "
            "amber mark warn, red mark block, dashed mark noise bound.</div>"
            "<table><tr><th>split</th><th>feature</th><th>check</th><th>measure</th><th>value</th>"
            "<th>warn</th><th>block</th><th>noise bound</th><th>rows / baseline rows</th>"
            f"<th>verdict</th><th></th></tr>{rows}</table>"
        )
    parts.append("<h2>Statistics</h2>" + _feature_table(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def _environment_line(result: Result) -> str:
    """The environment line of serving data: what was validated how, what was not."""
    line = f"Environment `{result.environment}`"
    if result.environment == "SERVING":
        line += (
            " (served traffic): schema anomalies block; drift and skew are reported only, "
            "whatever the policy's block level"
        )
    if result.capture_columns:
        line += "; capture columns, not validated: " + ", ".join(
            f"`{c}`" for c in result.capture_columns
        )
    if result.excluded_columns:
        line += f"; columns the schema excludes from `{result.environment}`, not validated: "
        line += ", ".join(f"`{c}`" for c in result.excluded_columns)
    return line + "."


def markdown(result: Result) -> str:
    """A short Markdown summary for the KFP UI."""
    blocking, reported = result.blocking, result.reported
    lines = [
        "# Data validation",
        "",
        f"Schema `{result.schema_version}`, drift policy `{result.policy_version}`; "
        + ", ".join(f"{d.name}: {d.num_examples} rows" for d in result.statistics.datasets),
        "",
        f"Drift baseline: {result.baseline.describe() if result.baseline else 'none'}.",
        "",
    ]
    if result.environment:
        lines += [_environment_line(result), ""]
    if not blocking:
        lines.append("**Passes the gate: no blocking findings.**")
    else:
        lines += [
            f"**{len(blocking)} blocking findings: the data is stopped before training.**",
            "",
            "| split | column | kind | reason |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {f.dataset} | `{f.column}` | {f.kind} | {f.reason.replace('|', '/')} |"
            for f in blocking
        ]
    if reported:
        lines += [
            "",
            f"**{len(reported)} drift findings reported (they do not block):**",
            "",
            "| split | column | check | value | warn | block | noise bound |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {m.dataset} | `{m.feature}` | {m.check} {m.measure} | {m.value:.4f} | "
            f"{m.warn:g} | {_level(m.block)} | {_level(m.noise)} |"
            for m in result.measurements
            if m.verdict in REPORTED_VERDICTS
        ]
    if result.measurements:
        lines += [
            "",
            "| split | feature | check | measure | value | warn | block | noise bound | verdict |",
            "|---|---|---|---|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {m.dataset} | `{m.feature}` | {m.check} | {m.measure} | {m.value:.4f} | "
            f"{m.warn:g} | {_level(m.block)} | {_level(m.noise)} | {_VERDICT[m.verdict]} |"
            for m in result.measurements
        ]
    return "\n".join(lines) + "\n"
