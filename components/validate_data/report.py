"""Reports people read: a self-contained HTML page (the KFP UI renders it) and a Markdown summary.

The HTML has no script and loads nothing from the network: TFDV's own Facets view
(``get_statistics_html``) loads its code from a CDN through HTML imports, which current
browsers no longer support and air-gapped clusters cannot reach. Plots are inline SVG.
"""

from __future__ import annotations

import html as html_lib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from components.validate_data.executor import Result

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.35em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
.bad{background:#fde8e8} .ok{color:#17692c;font-weight:600} .fail{color:#b3261e;font-weight:600}
.muted{color:#777} svg{display:block}
"""
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
    if result.baseline is not None:
        baseline = type(datasets[0])()
        baseline.CopyFrom(result.baseline.datasets[0])
        baseline.name = "drift baseline"
        datasets.append(baseline)
    by_dataset = [{_name(f): f for f in d.features} for d in datasets]
    names = sorted({n for d in by_dataset for n in d})
    flagged = {(f.dataset, f.column) for f in result.findings}
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


def _drift_rows(result: Result) -> list[tuple[str, str, str, float, float]]:
    rows = []
    for dataset, anomalies in result.anomalies.items():
        for info in anomalies.drift_skew_info:
            feature = "/".join(info.path.step)
            for kind, measures in (
                ("drift", info.drift_measurements),
                ("skew", info.skew_measurements),
            ):
                for m in measures:
                    rows.append(
                        (dataset, feature, f"{kind}: {m.Type.Name(m.type)}", m.value, m.threshold)
                    )
    return rows


def html(result: Result) -> str:
    """The HTML report: verdict, anomalies, drift / skew measures, statistics side by side."""
    verdict = (
        f'<span class="fail">{len(result.findings)} anomalies: this data must not reach training</span>'
        if result.anomalies_found
        else '<span class="ok">no anomalies</span>'
    )
    datasets = ", ".join(
        f"{_esc(d.name)}: {d.num_examples:,} rows" for d in result.statistics.datasets
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Data validation</title><style>{_CSS}</style></head><body>",
        "<h1>Data validation (TFDV)</h1>",
        f"<div>Schema <b>{_esc(result.schema_version)}</b> &middot; {datasets} &middot; {verdict}</div>",
    ]
    if result.findings:
        rows = "".join(
            f"<tr class='bad'><td>{_esc(f.dataset)}</td><td><b>{_esc(f.column)}</b></td><td>{_esc(f.kind)}</td><td>{_esc(f.reason)}</td></tr>"
            for f in result.findings
        )
        parts.append(
            f"<h2>Anomalies</h2><table><tr><th>dataset</th><th>column</th><th>kind</th><th>reason</th></tr>{rows}</table>"
        )
    drift = _drift_rows(result)
    if drift:
        rows = "".join(
            f"<tr{' class=bad' if v > t else ''}><td>{_esc(d)}</td><td>{_esc(f)}</td><td>{_esc(k)}</td>"
            f"<td class='num'>{v:.4f}</td><td class='num'>{t:g}</td></tr>"
            for d, f, k, v, t in drift
        )
        parts.append(
            "<h2>Drift and skew</h2><table><tr><th>dataset</th><th>feature</th><th>measure</th>"
            f"<th>value</th><th>threshold</th></tr>{rows}</table>"
        )
    parts.append("<h2>Statistics</h2>" + _feature_table(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown(result: Result) -> str:
    """A short Markdown summary for the KFP UI."""
    lines = [
        "# Data validation",
        "",
        f"Schema `{result.schema_version}`; "
        + ", ".join(f"{d.name}: {d.num_examples} rows" for d in result.statistics.datasets),
        "",
    ]
    if not result.findings:
        lines.append("**No anomalies.**")
    else:
        lines += [
            f"**{len(result.findings)} anomalies: the data is stopped before training.**",
            "",
            "| dataset | column | kind | reason |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {f.dataset} | `{f.column}` | {f.kind} | {f.reason.replace('|', '/')} |"
            for f in result.findings
        ]
    drift = _drift_rows(result)
    if drift:
        lines += [
            "",
            "| dataset | feature | measure | value | threshold |",
            "|---|---|---|---:|---:|",
        ]
        lines += [f"| {d} | `{f}` | {k} | {v:.4f} | {t:g} |" for d, f, k, v, t in drift]
    return "\n".join(lines) + "\n"
