"""What a person reads after a monitoring run: the Markdown summary and a self-contained HTML
report (inline SVG plots, no script, nothing loaded from anywhere), from detect_drift's result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from components.lib.reporting import esc, md_code, num

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222;max-width:72em}
h1{font-size:1.35em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.3em 0 .4em} h3{font-size:.95em;margin:.6em 0 .2em}
table{border-collapse:collapse;font-size:.85em;margin:.3em 0} td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
.yes{color:#b3261e;font-weight:600} .no{color:#17692c} .muted{color:#777} .bad{background:#fde8e8}
.row{display:flex;flex-wrap:wrap;gap:1.2em} .verdict{font-size:1.15em;margin:.4em 0}
"""
REFERENCE, CURRENT = "#4a78c2", "#e08a2c"
MAX_PLOTS = 25


def _verdict(result: Mapping) -> str:
    return "RETRAIN" if result["should_retrain"] else "NO RETRAIN"


def _feature_rows(result: Mapping) -> list[Mapping]:
    rows = list(result["drift"]["features"])
    if result["drift"].get("prediction"):
        rows.append({**result["drift"]["prediction"], "name": "prediction"})
    return rows


def _effects(f: Mapping) -> str:
    parts = [f"PSI {num(f.get('psi'), 3)}", f"JS {num(f.get('js'), 3)}"]
    if f.get("kind") == "numeric":
        parts += [f"KS {num(f.get('ks'), 3)}", f"W {num(f.get('wasserstein'), 3)}"]
    else:
        parts.append(f"chi2 {num(f.get('chi2'), 4)}")
    return ", ".join(parts)


def markdown(result: Mapping) -> str:
    """The short summary: decision and reason, signals, drifted features, performance."""
    d = result["drift"]
    sig = result["signals"]
    lines = [
        f"# Monitoring {md_code(result['model_name'], False)} version "
        f"{md_code(result['model_version'], False)}: **{_verdict(result)}**",
        "",
        f"Window {md_code(result['window_id'], False)}: {num(result['rows'])} rows of this version"
        + (
            f" ({', '.join(f'{v}: {n}' for v, n in result['other_versions'].items())} of others, not judged)"
            if result["other_versions"]
            else ""
        )
        + ".",
        "",
        f"**Decision:** {result['reason']}",
        "",
        "| signal | value | evidence |",
        "|---|---|---|",
        f"| window decides | {sig['decided']} | {md_code(sig['undecided_reason'] or 'enough rows')} |",
        f"| drift | {sig['drift']} | {md_code('; '.join(sig['drift_reasons']) or 'none')} |",
        f"| decay | {sig['decay']} | {md_code('; '.join(sig['decay_reasons']) or 'none')} |",
        "",
        f"Drifted features: {num(len([f for f in d['features'] if f['drifted']]))} of "
        f"{num(len(d['features']))}, importance-weighted share {num(d['drifted_share'], 3)}"
        f"; prediction drift: {d['prediction_drift']}.",
        "",
        "| feature | kind | drifted | importance | effects | p (BH) | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in sorted(
        _feature_rows(result), key=lambda f: (not f["drifted"], -f.get("importance", 0))
    ):
        lines.append(
            f"| {md_code(f['name'])} | {f['kind']} | {'**yes**' if f['drifted'] else 'no'} | "
            f"{num(f.get('importance'), 3)} | {_effects(f)} | {num(f.get('p_adjusted'), 3)} | "
            f"{md_code(f.get('reason', ''))} |"
        )
    lines += ["", "## Performance", "", *performance_lines(result)]
    return "\n".join(lines) + "\n"


def performance_lines(result: Mapping) -> list[str]:
    metric = result["metric"]
    lines = [
        f"| {metric} | value | 95% interval | rows | degraded |",
        "|---|---|---|---|---|",
        f"| baseline (reference rows) | {num(result['baseline'])} | | | |",
    ]
    est = result.get("estimated")
    if est:
        lines.append(
            f"| estimated ({est.get('method', '')}, no labels needed) | {num(est['estimate'])} | "
            f"{num(est['ci_low'])} .. {num(est['ci_high'])} | {num(est['n'])} | {est['degraded']} |"
        )
    real = result.get("realized")
    if real:
        lines.append(
            f"| realized (labels joined on request id) | {num(real['value'])} | "
            f"{num(real['ci_low'])} .. {num(real['ci_high'])} | {num(real['n'])} | {real['degraded']} |"
        )
    else:
        lines.append(f"| realized | n/a | | {num(result['labeled'])} labeled | |")
    det = result.get("detector")
    if det:
        lines += [
            "",
            f"Streaming detector ({det['method']}) over the error series: "
            + (
                f"change detected at labeled row {det['first_change_index']} of {det['n']}."
                if det["detected"]
                else f"no change in {det['n']} labeled rows."
            ),
        ]
    return lines


def _bars(f: Mapping, width: int = 330, height: int = 170) -> str:
    """Reference vs current shares per bin / category, as grouped bars."""
    ref = list(f.get("reference_hist") or [])
    cur = list(f.get("current_hist") or [])
    labels = [str(x) for x in (f.get("labels") or [])]
    # The missing-value bin, when neither side has a missing value, is only noise in the plot.
    empty_missing = (
        labels and labels[-1] == "missing" and not (ref and ref[-1]) and not (cur and cur[-1])
    )
    if empty_missing and len(ref) == len(cur) == len(labels):
        ref, cur, labels = ref[:-1], cur[:-1], labels[:-1]
    n = max(len(ref), len(cur))
    if not n:
        return ""
    top = max([*ref, *cur, 1e-9])
    left, plot_w, plot_h = 30, width - 38, height - 48
    step = plot_w / n
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(f["name"])}">',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<text x="2" y="18" font-size="9" fill="#777">{top:.0%}</text>',
    ]
    for i in range(n):
        for j, (values, color) in enumerate(((ref, REFERENCE), (cur, CURRENT))):
            v = values[i] if i < len(values) else 0.0
            h = plot_h * v / top
            x = left + i * step + j * step * 0.42 + step * 0.08
            label = labels[i] if i < len(labels) else str(i)
            parts.append(
                f'<rect x="{x:.1f}" y="{10 + plot_h - h:.1f}" width="{step * 0.4:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{esc(label)}: '
                f"{'reference' if j == 0 else 'current'} {v:.1%}</title></rect>"
            )
    for i in (0, n // 2, n - 1):
        if i < len(labels):
            parts.append(
                f'<text x="{left + i * step:.1f}" y="{height - 6}" font-size="8" fill="#555">'
                f"{esc(labels[i][:14])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    return (
        f'<span style="color:{REFERENCE}">&#9632;</span> reference (training) &nbsp; '
        f'<span style="color:{CURRENT}">&#9632;</span> current window'
    )


def html(result: Mapping) -> str:
    """The report: decision, signals, every feature's statistics, a plot per drifted feature."""
    d = result["drift"]
    sig = result["signals"]
    rows = _feature_rows(result)
    drifted = [f for f in rows if f["drifted"]]
    table = [
        "<table><tr><th>feature</th><th>kind</th><th>drifted</th><th>importance</th>"
        "<th>PSI</th><th>JS distance</th><th>KS / chi2</th><th>Wasserstein (norm.)</th>"
        "<th>p (BH)</th><th>reason</th></tr>"
    ]
    for f in sorted(rows, key=lambda f: (not f["drifted"], -f.get("importance", 0))):
        test = f.get("ks") if f.get("kind") == "numeric" else f.get("chi2")
        table.append(
            f'<tr class="{"bad" if f["drifted"] else ""}"><td>{esc(f["name"])}</td><td>{esc(f["kind"])}</td>'
            f'<td class="{"yes" if f["drifted"] else "no"}">{"yes" if f["drifted"] else "no"}</td>'
            f'<td class="num">{num(f.get("importance"), 3)}</td><td class="num">{num(f.get("psi"), 3)}</td>'
            f'<td class="num">{num(f.get("js"), 3)}</td><td class="num">{num(test, 4)}</td>'
            f'<td class="num">{num(f.get("wasserstein"), 3)}</td>'
            f'<td class="num">{num(f.get("p_adjusted"), 3)}</td><td>{esc(f.get("reason", ""))}</td></tr>'
        )
    table.append("</table>")
    plots = "".join(f"<div><h3>{esc(f['name'])}</h3>{_bars(f)}</div>" for f in drifted[:MAX_PLOTS])
    perf = "".join(
        f"<p>{esc(line)}</p>" for line in performance_lines(result) if not line.startswith("|")
    )
    perf_table = _perf_table(result)
    body = [
        f"<h1>Monitoring {esc(result['model_name'])} version {esc(result['model_version'])}</h1>",
        f'<div class="verdict {"yes" if result["should_retrain"] else "no"}">{_verdict(result)}</div>',
        f"<p>{esc(result['reason'])}</p>",
        f"<p class=muted>Window {esc(result['window_id'])}: {num(result['rows'])} rows of this version; "
        f"checked {esc(result['checked_at'])}.</p>",
        "<h2>Signals</h2><table><tr><th>signal</th><th>value</th><th>evidence</th></tr>",
        f"<tr><td>window decides</td><td>{sig['decided']}</td><td>{esc(sig['undecided_reason'] or 'enough rows')}</td></tr>",
        f"<tr><td>drift</td><td>{sig['drift']}</td><td>{esc('; '.join(sig['drift_reasons']) or 'none')}</td></tr>",
        f"<tr><td>decay</td><td>{sig['decay']}</td><td>{esc('; '.join(sig['decay_reasons']) or 'none')}</td></tr></table>",
        "<h2>Performance</h2>",
        perf_table,
        perf,
        f"<h2>Drift: {len([f for f in d['features'] if f['drifted']])} of {len(d['features'])} features"
        f" (weighted share {num(d['drifted_share'], 3)})</h2>",
        "".join(table),
    ]
    if drifted:
        body += [
            f"<h2>Drifted: reference vs current</h2><p>{_legend()}</p><div class=row>{plots}</div>"
        ]
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Loopline monitoring</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def _perf_table(result: Mapping) -> str:
    rows: Sequence[str] = [
        line for line in performance_lines(result) if line.startswith("|") and "---" not in line
    ]
    out = ["<table>"]
    for i, line in enumerate(rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{esc(c)}</{tag}>" for c in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)
