"""`evmpipe analyze FILE`: how parallel a block is, why, and what N cores would give.

The blocks are replayed sequentially with every transaction timed and its read and
write sets kept (`record`); the dependencies between transactions form a graph
(`graph`) whose critical path bounds any parallel schedule; the conflicts are named
(`conflicts`); evmpipe's strategies are simulated at 1 to 64 workers, the whole file
through a model of the pipeline (`schedule`, `flow`), with costs measured on the
same file (`calibrate`); the result is a terminal
table, JSON and a self-contained HTML page (`report`, `html`). docs/ANALYZE.md
describes the model and the JSON keys.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evmpipe.analyze.record import AnalyzeError
from evmpipe.analyze.schedule import Overheads


def add_analyze_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="how parallel a block file is: dependency graph, critical path, named conflicts, simulated speedup at 1-64 workers",
        description="Replay FILE sequentially with every transaction timed; build each block's dependency graph (reads after writes; fee and value credits commute), its critical path, the conflicts that serialise it, and simulated runs of the whole file through evmpipe's pipeline with the optimistic, declared and auto strategies (auto by its own decision rules) and an ideal scheduler at 1, 2, 4, ... 64 workers, with costs measured on this file at one worker. The predictions are simulations, not measurements.",
    )
    parser.add_argument("file", help="a native block file, or a BlockchainTest JSON file (.json or .json.gz) holding one test (see --test)")
    parser.add_argument("--state", metavar="DIR", help="a datadir to run on: the file's blocks up to its head are skipped; nothing is written to it (default: the file's genesis in a temporary datadir)")
    parser.add_argument("--test", metavar="NAME", help="the test to use when the JSON file holds several")
    parser.add_argument("--limit", type=int, help="analyze at most this many blocks")
    parser.add_argument("--json", metavar="OUT", help="write the analysis as JSON (keys in docs/ANALYZE.md)")
    parser.add_argument("--html", metavar="OUT", help="write a self-contained HTML page: curves, critical path per block, conflicts")
    parser.add_argument("--overheads", metavar="FILE", help="take the simulation's overheads from FILE (an earlier --json output, or its 'overheads' object) instead of calibrating on this file")
    parser.add_argument("--runs", type=int, default=3, help="replays for the stage times and the calibration: the fastest stage times, the median CPU figures (default 3)")
    parser.add_argument("--bench", nargs="+", metavar="JSON", help="`evmpipe bench --json` files of the same blocks: compare the prediction for their worker count with what they measured")
    parser.add_argument("--top", type=int, default=10, help="conflicts listed per block and for the file (default 10)")
    parser.set_defaults(func=cmd_analyze)


def load_overheads(path: str) -> dict[str, Overheads]:
    """Overheads per strategy from an earlier `--json` output, or an object of them
    (per strategy, or one set for both)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise AnalyzeError(f"evmpipe analyze: --overheads {path}: {error}") from error
    values = data.get("overheads", data) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise AnalyzeError(f"evmpipe analyze: --overheads {path}: not a JSON object with the overheads")
    per_strategy = values if values and all(isinstance(v, dict) for v in values.values()) else {"optimistic": values, "declared": values}
    out = {}
    known = set(Overheads.__dataclass_fields__)
    for strategy, fields in per_strategy.items():
        if strategy not in ("optimistic", "declared"):
            raise AnalyzeError(f"evmpipe analyze: --overheads {path}: unknown strategy {strategy!r} (optimistic, declared)")
        unknown = set(fields) - known
        if unknown:
            raise AnalyzeError(f"evmpipe analyze: --overheads {path}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        try:
            out[strategy] = Overheads(**{k: float(v) for k, v in fields.items()})
        except (TypeError, ValueError) as error:
            raise AnalyzeError(f"evmpipe analyze: --overheads {path}: {error}") from error
    return out


def cmd_analyze(args: argparse.Namespace) -> int:
    from evmpipe.analyze.report import analyze_file, compare_with_bench, render_table

    for name in ("limit", "runs", "top"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"evmpipe analyze: --{name} must be at least 1", file=sys.stderr)
            return 2
    try:
        overheads = load_overheads(args.overheads) if args.overheads else None
        analysis = analyze_file(args.file, state=args.state, test_name=args.test, limit=args.limit, overheads=overheads, top=args.top, runs=args.runs, progress=lambda message: print(f"evmpipe analyze: {message}", file=sys.stderr, flush=True))
        if args.bench:
            analysis.result["bench"] = compare_with_bench(analysis, args.bench)
    except AnalyzeError as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    render_table(analysis.result)
    if args.json:
        Path(args.json).write_text(json.dumps(analysis.result, indent=2) + "\n")
        print(f"evmpipe analyze: JSON written to {args.json}", file=sys.stderr)
    if args.html:
        from evmpipe.analyze.html import render_html

        Path(args.html).write_text(render_html(analysis.result))
        print(f"evmpipe analyze: HTML written to {args.html}", file=sys.stderr)
    return 0
