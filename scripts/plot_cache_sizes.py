"""Block time against cache size, from `evmpipe bench --state ... --cache-mb N --json` files.

Usage: python scripts/plot_cache_sizes.py OUT.svg RUN.json [RUN.json ...]

Each JSON is one bench run at one --cache-mb (its runs' options say which); one line
per prefetch mode (off, on, run, ...) and temperature, median block time per cache
size, on a log2 x axis. Writes a plain SVG (no plotting library needed) and prints
the table it drew.
"""
from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 70, 170, 40, 50
COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
LABELS = {"off": "no prefetch", "on": "prefetch", "notrie": "prefetch, no trie paths", "run": "prefetch + pre-run", "norun": "prefetch, no pre-run"}


def load(paths: list[str]) -> dict[str, dict[int, float]]:
    """{line label: {cache MiB: median block ms}}."""
    lines: dict[str, dict[int, float]] = defaultdict(dict)
    for path in paths:
        data = json.loads(Path(path).read_text())
        for run in data["runs"]:
            mb = run["options"]["cache_mb"]
            if mb is None or run.get("block_ms_median") is None:
                continue
            label = f"{run['temp']}, {LABELS.get(run.get('prefetch_mode', 'on'), run.get('prefetch_mode'))}"
            lines[label][mb] = run["block_ms_median"]
    return dict(lines)


def svg(lines: dict[str, dict[int, float]], title: str) -> str:
    sizes = sorted({mb for points in lines.values() for mb in points})
    top = max(ms for points in lines.values() for ms in points.values()) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lo, hi = math.log2(sizes[0]), math.log2(sizes[-1])

    def x(mb: int) -> float:
        return LEFT + (plot_w * (math.log2(mb) - lo) / (hi - lo) if hi > lo else plot_w / 2)

    def y(ms: float) -> float:
        return TOP + plot_h * (1 - ms / top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="black"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>',
           f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">--cache-mb (MiB, log scale)</text>',
           f'<text x="15" y="{TOP + plot_h / 2}" text-anchor="middle" transform="rotate(-90 15 {TOP + plot_h / 2})">median block time (ms)</text>']
    for mb in sizes:
        out.append(f'<line x1="{x(mb):.1f}" y1="{TOP + plot_h}" x2="{x(mb):.1f}" y2="{TOP + plot_h + 5}" stroke="black"/>')
        out.append(f'<text x="{x(mb):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{mb}</text>')
    step = 10 ** math.floor(math.log10(top / 2)) if top > 0 else 1
    tick = 0.0
    while tick <= top:
        out.append(f'<line x1="{LEFT - 5}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        tick += step
    for number, (label, points) in enumerate(sorted(lines.items())):
        colour = COLOURS[number % len(COLOURS)]
        xy = " ".join(f"{x(mb):.1f},{y(ms):.1f}" for mb, ms in sorted(points.items()))
        out.append(f'<polyline points="{xy}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{x(mb):.1f}" cy="{y(ms):.1f}" r="3" fill="{colour}"/>' for mb, ms in points.items()]
        ly = TOP + 10 + 18 * number
        out.append(f'<line x1="{WIDTH - RIGHT + 10}" y1="{ly}" x2="{WIDTH - RIGHT + 30}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 35}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    lines = load(argv[1:])
    if not lines:
        print("plot_cache_sizes: no runs with --cache-mb in those files", file=sys.stderr)
        return 1
    first = json.loads(Path(argv[1]).read_text())
    title = f"{Path(first['file']).name} over {Path(first['state']).name}: block time against cache size"
    Path(argv[0]).write_text(svg(lines, title))
    for label, points in sorted(lines.items()):
        print(f"{label:<28}" + "  ".join(f"{mb} MiB {ms:,.0f} ms" for mb, ms in sorted(points.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
