"""Tabulate `evmpipe analyze --bench` results of several files (markdown).

    python scripts/analyze_bench.py FILE --workers 1,2 --runs 9 --out B
    evmpipe analyze FILE --bench B.b1.json B.b2.json --json a.json
    python scripts/analyze_vs_bench.py a.json [more analyses...] [--curves]

Prints one row per file, strategy and worker count: measured and predicted speedup
over sequential (both of the whole file, every stage, blocks in flight), on idle
cores and at the load the bench saw, with the errors; then a summary of the errors
per worker count and strategy (how many within 15 %, the median |error|, the mean
signed error: a model that is systematically off shows there, not in single
files). `--curves` adds each file's bounds and predicted speedups at 16 and 64
workers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _name(data: dict) -> str:
    return Path(data["file"]).name.removesuffix(".gz").removesuffix(".json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="`evmpipe analyze --bench ... --json` outputs")
    parser.add_argument("--curves", action="store_true", help="also print the bounds and the predicted speedups at 16 and 64 workers")
    args = parser.parse_args()
    analyses = [json.loads(Path(path).read_text()) for path in args.files]
    print("| file | strategy | workers | measured | predicted, idle cores | error | bench's CPU share | predicted at that load | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for data in analyses:
        for r in data.get("bench", []):
            rows.append(r)
            print(f"| {_name(data)} | {r['strategy']} | {r['workers']} | {r['measured']:.2f} | {r['predicted']:.2f} | {r['error'] * 100:+.0f} % | {r['bench_sequential_cpu_share']:.2f} | {r['predicted_at_bench_load']:.2f} | {r['error_at_bench_load'] * 100:+.0f} % |")
    loaded = any(r["error_at_bench_load"] != r["error"] for r in rows)
    for key in ("error", "error_at_bench_load") if loaded else ("error",):
        for workers in (1, 2):
            for strategy in (None, "optimistic", "declared", "auto"):
                errors = sorted(r[key] for r in rows if r["workers"] == workers and strategy in (None, r["strategy"]))
                if not errors:
                    continue
                size = sorted(abs(e) for e in errors)
                within = sum(1 for e in size if e <= 0.15)
                print(f"\n{workers} worker{'s' if workers > 1 else ''}, {strategy or 'all strategies'}, {key}: {within} of {len(size)} within 15 %; median |error| {size[len(size) // 2] * 100:.0f} %, largest {size[-1] * 100:.0f} %, mean {sum(errors) / len(errors) * 100:+.0f} %", end="")
        print()
    if args.curves:
        print("\n| file | work ÷ critical path | ideal, unlimited cores | optimistic 16 / 64 | declared 16 / 64 | auto 16 / 64 | ideal 16 / 64 |")
        print("|---|---|---|---|---|---|---|")
        for data in analyses:
            p = data["predicted"]
            cells = " | ".join(f"{p[s]['16']:.2f} / {p[s]['64']:.2f}" for s in ("optimistic", "declared", "auto", "ideal"))
            print(f"| {_name(data)} | {data['critical_path_bound']:.1f} | {data['amdahl_bound']:.2f} | {cells} |")


if __name__ == "__main__":
    main()
