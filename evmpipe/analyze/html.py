"""`evmpipe analyze --html`: one self-contained page (inline CSS and SVG, no external
asset, no network): the predicted speedup curves, each block's critical path
against its total work, and the conflicts.

A few lines of inline script check, once the page has loaded, that every chart was
laid out (each drawn line and bar has a size) and say so in `<body
data-rendered="ok" data-charts="N">`: the headless-browser test reads that back.
"""
from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from evmpipe.analyze.schedule import STRATEGIES

COLORS = {"optimistic": "#d95f02", "declared": "#1b9e77", "auto": "#e7298a", "ideal": "#7570b3"}
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 6px 10px; }
svg text { font: 12px system-ui, sans-serif; fill: #333; }
.axis line, .axis path { stroke: #888; }
code { font-size: 11px; word-break: break-all; }
"""
_CHECK = """
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('svg.chart');
  var ok = charts.length > 0;
  charts.forEach(function (svg) {
    var marks = svg.querySelectorAll('polyline, rect.bar');
    if (!marks.length) { ok = false; }
    marks.forEach(function (mark) {
      var box = mark.getBBox();
      if (!(box.width > 0 || box.height > 0)) { ok = false; }
    });
  });
  document.body.setAttribute('data-rendered', ok ? 'ok' : 'broken');
  document.body.setAttribute('data-charts', String(charts.length));
});
"""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def _curves_svg(result: dict[str, Any]) -> str:
    """Speedup against workers (log scale), one line per strategy, the bounds dashed."""
    width, height, left, right, top, bottom = 680, 360, 56, 190, 20, 64
    predicted = result["predicted"]
    counts = [int(c) for c in next(iter(predicted.values()))]
    values = [v for s in STRATEGIES for v in predicted[s].values()]
    bound = result.get("critical_path_bound") or 0.0
    amdahl = result.get("amdahl_bound") or 0.0
    top_value = max(values + [amdahl, 1.0])
    if bound and bound < 4 * top_value:
        top_value = max(top_value, bound)
    top_value = math.ceil(top_value * 1.1 * 2) / 2
    plot_w, plot_h = width - left - right, height - top - bottom
    span = math.log2(max(counts)) or 1.0

    def x(count: float) -> float:
        return left + plot_w * math.log2(count) / span

    def y(value: float) -> float:
        return top + plot_h * (1 - min(value, top_value) / top_value)

    parts = [f'<svg class="chart" id="curves" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="predicted speedup against workers">']
    parts.append(f'<g class="axis"><line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/><line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/></g>')
    for count in counts:
        parts.append(f'<line x1="{x(count):.1f}" y1="{top + plot_h}" x2="{x(count):.1f}" y2="{top + plot_h + 5}" stroke="#888"/><text x="{x(count):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{count}</text>')
    steps = 5
    for k in range(steps + 1):
        value = top_value * k / steps
        parts.append(f'<line x1="{left - 4}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" stroke="#eee"/><text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}×</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 34}" text-anchor="middle">workers (= cores)</text>')
    parts.append(f'<line x1="{left}" y1="{y(1):.1f}" x2="{left + plot_w}" y2="{y(1):.1f}" stroke="#999" stroke-dasharray="2 3"/>')
    for label, value, color in (("critical path bound", bound, "#444"), ("unlimited cores", amdahl, "#999")):
        if value and value <= top_value:
            parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" stroke="{color}" stroke-dasharray="6 4"/><text x="{left + plot_w + 6}" y="{y(value) + 4:.1f}">{label} {value:.2f}×</text>')
        elif value:
            parts.append(f'<text x="{left + plot_w + 6}" y="{top + 8}">{label} {value:.1f}× (above)</text>')
    for index, strategy in enumerate(STRATEGIES):
        color = COLORS[strategy]
        points = " ".join(f"{x(c):.1f},{y(v):.1f}" for c, v in ((int(k), v) for k, v in predicted[strategy].items()))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2.5" points="{points}"><title>{strategy}</title></polyline>')
        for count, value in predicted[strategy].items():
            parts.append(f'<circle cx="{x(int(count)):.1f}" cy="{y(value):.1f}" r="3.5" fill="{color}"><title>{strategy}, {count} workers: {value:.2f}×</title></circle>')
        legend_x, legend_y = left + 110 * index, height - 8
        parts.append(f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 22}" y2="{legend_y - 4}" stroke="{color}" stroke-width="2.5"/><text x="{legend_x + 28}" y="{legend_y}">{strategy}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _blocks_svg(result: dict[str, Any]) -> str:
    """Per block: total transaction work (light) and critical path (dark), in ms."""
    blocks = result["blocks"]
    row, left, right, top = 26, 90, 150, 10
    width = 640
    height = top + row * len(blocks) + 30
    longest = max((b["total_work_seconds"] for b in blocks), default=0.0) or 1.0
    plot_w = width - left - right
    parts = [f'<svg class="chart" id="blocks" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="critical path against total work per block">']
    for index, b in enumerate(blocks):
        y0 = top + index * row
        work_w = max(1.0, plot_w * b["total_work_seconds"] / longest)
        path_w = max(1.0, plot_w * b["critical_path_seconds"] / longest)
        parts.append(f'<text x="{left - 8}" y="{y0 + 15}" text-anchor="end">block {b["number"]}</text>')
        parts.append(f'<rect class="bar" x="{left}" y="{y0 + 2}" width="{work_w:.1f}" height="18" fill="#c6dbef"><title>block {b["number"]}: {b["txs"]} transactions, {_ms(b["total_work_seconds"])} ms of work</title></rect>')
        parts.append(f'<rect class="bar" x="{left}" y="{y0 + 6}" width="{path_w:.1f}" height="10" fill="#08519c"><title>critical path {_ms(b["critical_path_seconds"])} ms ({len(b["critical_path_txs"])} transactions)</title></rect>')
        ratio = b["total_work_seconds"] / b["critical_path_seconds"] if b["critical_path_seconds"] else 0.0
        parts.append(f'<text x="{left + work_w + 6:.1f}" y="{y0 + 15}">{_ms(b["critical_path_seconds"])} / {_ms(b["total_work_seconds"])} ms ({ratio:.1f}×)</text>')
    legend_y = top + row * len(blocks) + 14
    parts.append(f'<rect x="{left}" y="{legend_y - 9}" width="14" height="10" fill="#c6dbef"/><text x="{left + 20}" y="{legend_y}">total work</text>')
    parts.append(f'<rect x="{left + 110}" y="{legend_y - 9}" width="14" height="10" fill="#08519c"/><text x="{left + 130}" y="{legend_y}">critical path</text>')
    parts.append("</svg>")
    return "".join(parts)


def _curve_table(result: dict[str, Any]) -> str:
    counts = list(next(iter(result["predicted"].values())).keys())
    head = "".join(f"<th>{escape(c)}</th>" for c in counts)
    rows = "".join(f"<tr><td>{s}</td>" + "".join(f"<td>{result['predicted'][s][c]:.2f}</td>" for c in counts) + "</tr>" for s in STRATEGIES)
    return f'<table id="curve-table"><tr><th>strategy \\ workers</th>{head}</tr>{rows}</table>'


def _conflict_table(conflicts: list[dict[str, Any]], table_id: str) -> str:
    if not conflicts:
        return f'<p id="{table_id}">No transaction depends on another.</p>'
    rows = "".join(
        f'<tr><td class="text">{escape(c["description"])}</td><td class="text">{escape(c["kind"])}</td><td>{_ms(c["serial_seconds"])}</td><td>{c["txs"]}</td><td>{c["edges"]}</td><td class="text"><code>{escape(c["contract_or_account"])}</code>{" slot " + escape(c["slot"]) if c["slot"] else ""}</td></tr>'
        for c in conflicts
    )
    return f'<table id="{table_id}"><tr><th>conflict</th><th>kind</th><th>serialises (ms)</th><th>txs</th><th>edges</th><th>key</th></tr>{rows}</table>'


def render_html(result: dict[str, Any]) -> str:
    name = escape(Path(result["file"]).name)
    bound = result.get("critical_path_bound")
    machine = result["this_machine"]
    per = result["overheads"]
    names = list(next(iter(per.values())))
    overheads = "<tr><th>parameter</th>" + "".join(f"<th>{escape(s)}</th>" for s in per) + "</tr>" + "".join(
        f"<tr><td>{escape(k)}</td>" + "".join(f"<td>{per[s][k]:.2f}</td>" if k == "worker_speed" else f"<td>{per[s][k] * 1e6:,.1f} µs</td>" for s in per) + "</tr>" for k in names
    )
    blocks_rows = "".join(
        f'<tr><td>{b["number"]}</td><td>{b["txs"]}</td><td>{_ms(b["total_work_seconds"])}</td><td>{_ms(b["critical_path_seconds"])}</td><td>{_ms(b["serial_seconds"])}</td><td>{b["dependent_txs"]}</td><td>{b["reexecuted"]["optimistic"]}</td><td>{b["reexecuted"]["declared"]}</td><td class="text">{escape(b["top_conflicts"][0]["description"]) if b["top_conflicts"] else "none"}</td></tr>'
        for b in result["blocks"]
    )
    machine_line = ", ".join(f"{s} {w}: {v:.2f}×" for s in ("optimistic", "declared") for w, v in machine["predicted"][s].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evmpipe analyze: {name}</title><style>{_CSS}</style></head>
<body data-rendered="pending">
<h1>evmpipe analyze: {name}</h1>
<p>{result["blocks_analyzed"]} blocks, {result["transactions"]:,} transactions.
Critical path bound (transactions only, any number of cores): <b>{f"{bound:.1f}×" if bound else "–"}</b>;
with each block's serial work (decoding, roots, commit) and no overhead, on unlimited cores: <b>{f"{result['amdahl_bound']:.2f}×" if result.get("amdahl_bound") else "–"}</b>.</p>
<p class="note">The curves are <b>simulations</b>: measured transaction times, the measured dependency graph and
evmpipe's measured overheads, played through a model of each scheduler on N cores. They are not measurements on N cores.</p>
<h2>Predicted speedup over sequential</h2>
{_curves_svg(result)}
{_curve_table(result)}
<p>On this machine ({machine["cores"]} cores): {machine_line}.</p>
<h2>Critical path against total work, per block</h2>
{_blocks_svg(result)}
<table id="block-table"><tr><th>block</th><th>txs</th><th>work (ms)</th><th>critical path (ms)</th><th>serial (ms)</th><th>dependent</th><th>optimistic re-exec</th><th>declared re-exec</th><th>top conflict</th></tr>{blocks_rows}</table>
<h2>Conflicts that serialise the file</h2>
<p>Each conflict's time is the longest chain of transactions its dependencies alone force.</p>
{_conflict_table(result["top_conflicts"], "conflict-table")}
<h2>Simulation parameters</h2>
<p>{escape(result["overheads_source"])}.</p>
<table id="overheads">{overheads}</table>
<script>{_CHECK}</script>
</body></html>
"""
