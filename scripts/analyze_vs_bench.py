"""Compare `evmpipe analyze`'s predictions on this machine with `evmpipe bench`.

    evmpipe analyze FILE --json a.json
    evmpipe bench FILE --skip-pyevm --strategies sequential,optimistic,declared --workers 1 --json b1.json
    evmpipe bench FILE --skip-pyevm --strategies sequential,optimistic,declared --workers 2 --json b2.json
    python scripts/analyze_vs_bench.py a.json b1.json b2.json [more triples...]

Prints one markdown row per file, strategy and worker count: the predicted speedup
over sequential (`this_machine` in the analysis: this machine's cores), the measured
one (sequential's median wall over the strategy's, from the same bench run) and the
prediction's error relative to the measurement. Pass `--json OUT` for the rows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(analysis: dict, benches: list[dict]) -> list[dict]:
    out = []
    predicted = analysis["this_machine"]["predicted"]
    name = Path(analysis["file"]).name.removesuffix(".gz").removesuffix(".json")
    for bench in benches:
        workers = str(bench["workers"])
        walls = {r["engine"]: r["wall_median"] for r in bench["results"]}
        sequential = walls.get("evmpipe sequential")
        for strategy in ("optimistic", "declared"):
            engine = f"evmpipe {strategy}"
            if sequential is None or engine not in walls or workers not in predicted[strategy]:
                continue
            measured = sequential / walls[engine]
            guess = predicted[strategy][workers]
            loaded = analysis["this_machine"].get("predicted_at_available_cores", {}).get(strategy, {}).get(workers, guess)
            out.append({"file": name, "strategy": strategy, "workers": int(workers), "predicted": guess, "predicted_loaded": loaded, "available_cores": analysis["this_machine"].get("available_cores"), "measured": measured, "error": guess / measured - 1, "error_loaded": loaded / measured - 1})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="an analysis JSON followed by its bench JSONs, repeated")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--curves", action="store_true", help="also print each analysis's bounds and predicted speedups at 16 and 64 workers")
    args = parser.parse_args()
    table: list[dict] = []
    analysis: dict | None = None
    benches: list[dict] = []
    for path in args.files:
        data = json.loads(Path(path).read_text())
        if "predicted" in data:
            if analysis is not None:
                table += rows(analysis, benches)
            analysis, benches = data, []
        else:
            benches.append(data)
    if analysis is not None:
        table += rows(analysis, benches)
    print("| file | strategy | workers | predicted (idle cores) | predicted (load seen) | measured | error (idle) | error (load seen) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['file']} | {r['strategy']} | {r['workers']} | {r['predicted']:.2f} | {r['predicted_loaded']:.2f} (cores {r['available_cores']:.2f}) | {r['measured']:.2f} | {r['error'] * 100:+.0f} % | {r['error_loaded'] * 100:+.0f} % |")
    for key in ("error", "error_loaded"):
        two = sorted(abs(r[key]) for r in table if r["workers"] == 2)
        if two:
            within = sum(1 for e in two if e <= 0.15)
            print(f"\n2 workers, {key}: {within} of {len(two)} predictions within 15 %; median |error| {two[len(two) // 2] * 100:.0f} %, largest {two[-1] * 100:.0f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    if args.curves:
        print("\n| file | txs ÷ critical path (time) | ideal, unlimited cores | optimistic 16 / 64 | declared 16 / 64 | ideal 16 / 64 |")
        print("|---|---|---|---|---|---|")
        for path in args.files:
            data = json.loads(Path(path).read_text())
            if "predicted" not in data:
                continue
            p = data["predicted"]
            name = Path(data["file"]).name.removesuffix(".gz").removesuffix(".json")
            cells = " | ".join(f"{p[s]['16']:.2f} / {p[s]['64']:.2f}" for s in ("optimistic", "declared", "ideal"))
            print(f"| {name} | {data['critical_path_bound']:.1f} | {data['amdahl_bound']:.2f} | {cells} |")


if __name__ == "__main__":
    main()
