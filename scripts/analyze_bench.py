"""One bench of one BlockchainTest file at several worker counts, interleaved, for
`evmpipe analyze --bench`.

    python scripts/analyze_bench.py FILE --workers 1,2 --runs 9 --out PREFIX
    evmpipe analyze FILE --bench PREFIX.b1.json PREFIX.b2.json --json a.json

`evmpipe bench` times one worker count per run of the command; two benches of the
same file a minute apart on a shared VM differ by as much as the model's error.
Here one process holds a pool per worker count, and each cycle runs `sequential`
and `optimistic`, `declared`, `auto` on every pool, the order rotated by one each
cycle (no variant always first, or always after the same one). Each worker count's
speedup is then a ratio of medians over the same cycles, against the same
sequential runs. Writes PREFIX.bW.json per worker count, in `evmpipe bench
--json`'s format (the sequential runs in each), and with `--runs-pickle` every
run's wall time, main-process and worker CPU and stage events.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from consensus_stub.convert import blocktest_to_native
from evmpipe.bench import Measurement, _as_json, _load_single_test, machine_info
from evmpipe.replay import replay_file
from execution.workers import WorkerPool

PARALLEL = ("optimistic", "declared", "auto")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="a BlockchainTest file with one test (.json or .json.gz)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--runs", type=int, default=9, help="cycles; medians are reported (default 9)")
    parser.add_argument("--out", required=True, help="prefix of the JSON files written (PREFIX.bW.json)")
    parser.add_argument("--runs-pickle", action="store_true", help="also write PREFIX.runs.pkl: every run with its stage events")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    if not counts or min(counts) < 1 or args.runs < 1:
        print("analyze_bench: --workers takes counts of 1 or more, --runs 1 or more", file=sys.stderr)
        return 2
    test_name, test = _load_single_test(args.file)
    txs = sum(len(b.get("transactions", [])) for b in test["blocks"])
    gas = sum(int(b["blockHeader"]["gasUsed"], 16) for b in test["blocks"])
    variants = [("sequential", 0)] + [(s, w) for w in counts for s in PARALLEL]
    measured = {v: Measurement(args.file, f"evmpipe {v[0]}", [], [], txs, gas, strategy=v[0]) for v in variants}
    raw = []
    with tempfile.TemporaryDirectory(prefix="evmpipe-analyze-bench-") as tmp, ExitStack() as stack:
        pools = {w: stack.enter_context(WorkerPool(w)) for w in counts}
        native = Path(tmp) / "blocks.native"
        blocktest_to_native(args.file, native, test_name)
        for run in range(args.runs):
            shift = run % len(variants)
            for strategy, w in variants[shift:] + variants[:shift]:
                pool = pools.get(w)
                before = pool.cpu_seconds if pool else 0.0
                outcome = replay_file(str(native), str(Path(tmp) / f"db-{strategy}-{w}-{run}"), synchronous="OFF", strategy=strategy, pool=pool)
                if outcome.rejected is not None or outcome.input_error is not None:
                    print(f"analyze_bench: the {strategy} replay ({w} workers) failed", file=sys.stderr)
                    return 1
                workers = pool.cpu_seconds - before if pool else 0.0
                measured[(strategy, w)].runs.append(outcome.wall_seconds)
                measured[(strategy, w)].cpu.append(outcome.cpu_seconds)
                raw.append({"run": run, "strategy": strategy, "workers": w, "wall": outcome.wall_seconds, "cpu": outcome.cpu_seconds,
                            "main_cpu": outcome.cpu_seconds - workers, "worker_cpu": workers, "events": outcome.events.events, "time": time.time()})
            print(f"{Path(args.file).name}: cycle {run + 1}/{args.runs}", file=sys.stderr, flush=True)
    for w in counts:
        rows = [_as_json(measured[("sequential", 0)])] + [_as_json(measured[(s, w)]) for s in PARALLEL]
        Path(f"{args.out}.b{w}.json").write_text(json.dumps({"machine": machine_info(), "workers": w, "method": "scripts/analyze_bench.py: worker counts interleaved", "results": rows}, indent=2))
    if args.runs_pickle:
        with open(f"{args.out}.runs.pkl", "wb") as f:
            pickle.dump(raw, f)
    for (strategy, w), m in measured.items():
        print(f"{strategy:>10} {w} workers: median {m.wall:.3f} s, runs {' '.join(f'{x:.2f}' for x in m.runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
