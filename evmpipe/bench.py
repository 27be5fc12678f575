"""`evmpipe bench FILE...`: the same blocks through py-evm and through evmpipe.

For each BlockchainTest file (gzip or plain), in this one process and the same run:
py-evm's own `Chain.import_block` over every block, then evmpipe (each strategy)
replaying the same blocks from a native file into a fresh database. Each engine runs
`--runs` times, alternating, and the table gives medians: tx/s, Mgas/s, the ratio to
py-evm, and CPU time over wall time (above 1.0 only when work ran in parallel).
Setup (building genesis, converting the file) is not timed, for either engine.

`--loops lean,pyevm` runs every strategy with each interpreter loop (evmpipe's lean
loop and py-evm's own, `execution/forks.py`), in the same run, alternating, with a
worker pool per loop; the "× pyevm loop" columns are the lean loop's speed-up, in
wall time and in CPU seconds (process and workers).

With the sequential strategy a second table gives the cost per transaction, CPU
microseconds (medians): "execute" is the CPU time of the thread that ran the block's
transactions (`execution.strategies.execute_sequentially`: the EVM work, with block
rewards and the state diff; not prefetch, sender recovery, merkleize or commit),
per loop, and the lean loop's ratio; "import_block" is py-evm's whole import (sender
recovery, validation, state root and all) per transaction; "pipeline" is the whole
sequential run's process CPU per transaction, per loop.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import rlp

from consensus_stub.convert import blocktest_to_native
from consensus_stub.fixture import hex_bytes
from evmpipe.replay import cpu_time, replay_file
from pipeline import jsonlimits
from pipeline.summary import summarize
from contextlib import ExitStack

from execution.forks import INTERPRETERS, interpreter, set_interpreter
from execution.strategies import STRATEGIES
from execution.workers import WorkerPool



@dataclass
class Measurement:
    file: str
    engine: str
    runs: list[float]
    cpu: list[float]
    txs: int
    gas: int
    execute_cpu: list[float] = field(default_factory=list)  # CPU/wall of the execute stage (parallel blocks)
    loop: str | None = None  # the interpreter loop (evmpipe engines)
    strategy: str | None = None
    # per run: CPU seconds of the threads that ran blocks' transactions in order
    # (None in a run where some block ran otherwise), and the execute stage's busy time
    tx_cpu: list[float | None] = field(default_factory=list)
    execute_busy: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.runs)

    @property
    def cpu_over_wall(self) -> float:
        return statistics.median(c / w for c, w in zip(self.cpu, self.runs))

    @property
    def execute_cpu_over_wall(self) -> float | None:
        return statistics.median(self.execute_cpu) if self.execute_cpu else None

    @property
    def execute_us_per_tx(self) -> float | None:
        """Median CPU µs per transaction of executing them (every block in order)."""
        if not self.tx_cpu or any(c is None for c in self.tx_cpu) or not self.txs:
            return None
        return statistics.median(self.tx_cpu) / self.txs * 1e6  # type: ignore[type-var]

    @property
    def cpu_us_per_tx(self) -> float:
        """Median CPU µs per transaction of the whole run (py-evm: import_block)."""
        return statistics.median(self.cpu) / self.txs * 1e6 if self.txs else 0.0

    @property
    def tx_per_s(self) -> float:
        return self.txs / self.wall

    @property
    def mgas_per_s(self) -> float:
        return self.gas / 1e6 / self.wall


def add_bench_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="py-evm's import_block against evmpipe on the same blocks")
    parser.add_argument("files", nargs="+", help="BlockchainTest JSON files (.json or .json.gz), e.g. ../shared/workloads/*.json.gz; with --state, one native block file")
    parser.add_argument("--runs", type=int, default=3, help="runs per engine; medians are reported (default 3)")
    parser.add_argument("--json", metavar="FILE", help="write raw numbers and machine info as JSON")
    parser.add_argument("--skip-pyevm", action="store_true", help="measure evmpipe only")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated evmpipe strategies (default {','.join(STRATEGIES)})")
    parser.add_argument("--workers", type=int, help="worker processes for optimistic/auto (default: the number of cores)")
    parser.add_argument("--one-at-a-time", action="store_true", help="also run sequential with one block in flight (no pipelining across blocks)")
    parser.add_argument("--loops", help=f"comma-separated interpreter loops to run each strategy with, e.g. lean,pyevm (default: --interpreter's; one of {', '.join(INTERPRETERS)}); "
                        "with sequential, a second table gives CPU µs per transaction: the thread that executed them, per loop, beside import_block and the whole pipeline")
    from evmpipe.bench_state import add_bench_state_arguments

    add_bench_state_arguments(parser)
    parser.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "state", None):
        from evmpipe.bench_state import cmd_bench_state

        return cmd_bench_state(args)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        print(f"evmpipe bench: unknown strategies {sorted(unknown)}", file=sys.stderr)
        return 2
    loops = [name for name in (args.loops or interpreter()).split(",") if name]
    if not loops or set(loops) - set(INTERPRETERS):
        print(f"evmpipe bench: --loops takes {', '.join(INTERPRETERS)}, not {args.loops!r}", file=sys.stderr)
        return 2
    needs_pool = any(s != "sequential" for s in strategies)
    chosen = interpreter()
    with ExitStack() as stack:
        pools: dict[str, WorkerPool | None] = {}
        for loop in loops:  # workers read the loop from the environment they start with
            set_interpreter(loop)
            pools[loop] = stack.enter_context(WorkerPool(args.workers)) if needs_pool else None
        try:
            results = _bench_files(args, strategies, pools)
        finally:
            set_interpreter(chosen)
    _print_table(results)
    per_tx = per_tx_rows(results)
    if per_tx:
        _print_per_tx(per_tx, loops)
    if args.json:
        workers = next(iter(pools.values())).size if needs_pool else 0  # type: ignore[union-attr]
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "workers": workers, "loops": loops, "results": [_as_json(m) for m in results], "per_tx": per_tx}, indent=2))
    return 0


def _bench_files(args: argparse.Namespace, strategies: list[str], pools: dict[str, WorkerPool | None]) -> list[Measurement]:
    results: list[Measurement] = []
    for path in args.files:
        test_name, test = _load_single_test(path)
        txs = sum(len(b.get("transactions", [])) for b in test["blocks"])
        gas = sum(int(b["blockHeader"]["gasUsed"], 16) for b in test["blocks"])
        with tempfile.TemporaryDirectory(prefix="evmpipe-bench-") as tmp:
            native = Path(tmp) / "blocks.native"
            blocktest_to_native(path, native, test_name)
            engines: dict[str, Measurement] = {}
            for run in range(args.runs):
                if not args.skip_pyevm:
                    wall, cpu = _time_pyevm(test)
                    engines.setdefault("py-evm", Measurement(path, "py-evm", [], [], txs, gas))
                    engines["py-evm"].runs.append(wall)
                    engines["py-evm"].cpu.append(cpu)
                variants = [(s, None) for s in strategies] + ([("sequential", 1)] if args.one_at_a_time else [])
                for loop, pool in pools.items():
                    set_interpreter(loop)
                    for strategy, in_flight in variants:
                        _time_variant(engines, path, native, Path(tmp), run, strategy, in_flight, loop, pool, txs, gas, labelled=len(pools) > 1)
                print(f"{Path(path).name}: run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
        results.extend(engines.values())
    return results


def _time_variant(engines: dict[str, Measurement], path: str, native: Path, tmp: Path, run: int, strategy: str, in_flight: int | None,
                  loop: str, pool: WorkerPool | None, txs: int, gas: int, labelled: bool) -> None:
    """One evmpipe run of one strategy with one loop, added to its measurement."""
    variant = strategy + (" 1-in-flight" if in_flight else "")
    wall, cpu, execute_cpu, tx_cpu, execute_busy = _time_evmpipe(native, tmp / f"db-{strategy}-{in_flight}-{loop}-{run}", strategy, pool, in_flight)
    name = f"evmpipe {variant}" + (f" ({loop} loop)" if labelled else "")
    measurement = engines.setdefault(name, Measurement(path, name, [], [], txs, gas, loop=loop, strategy=variant))
    measurement.runs.append(wall)
    measurement.cpu.append(cpu)
    measurement.tx_cpu.append(tx_cpu)
    measurement.execute_busy.append(execute_busy)
    if execute_cpu is not None:
        measurement.execute_cpu.append(execute_cpu)


def _load_single_test(path: str) -> tuple[str, dict[str, Any]]:
    try:
        data = jsonlimits.load_file(path)
    except (ValueError, OSError, EOFError) as exc:
        raise SystemExit(f"evmpipe bench: {path}: not readable JSON: {exc}") from None
    tests = {k: v for k, v in data.items() if not k.startswith("_")}
    if len(tests) != 1:
        raise SystemExit(f"evmpipe bench: {path} holds {len(tests)} tests; bench takes files with one")
    return next(iter(tests.items()))


def _time_pyevm(test: dict[str, Any]) -> tuple[float, float]:
    """Median-ready timing of py-evm importing every block (chain setup not timed)."""
    from evmpipe.blocktest.pyevm_engine import new_chain

    chain = new_chain(test)
    blocks = []
    for entry in test["blocks"]:
        raw = hex_bytes(entry["rlp"])
        number = int(entry["blockHeader"]["number"], 16)
        block_class = chain.get_vm_class_for_block_number(number).get_block_class()
        blocks.append(rlp.decode(raw, sedes=block_class))
    cpu0, wall0 = cpu_time(), time.perf_counter()
    for block in blocks:
        chain.import_block(block, perform_validation=True)
    return time.perf_counter() - wall0, cpu_time() - cpu0


def _time_evmpipe(native: Path, datadir: Path, strategy: str, pool: WorkerPool | None,
                  max_in_flight: int | None = None) -> tuple[float, float, float | None, float | None, float]:
    """Wall, CPU (with the workers'), the execute stage's CPU over wall time on blocks
    that ran in parallel (None when none did), the CPU of executing the transactions
    when every block ran them in order (None otherwise), the execute stage's busy time."""
    outcome = replay_file(str(native), str(datadir), synchronous="OFF", strategy=strategy, pool=pool, max_in_flight=max_in_flight)
    if outcome.rejected is not None or outcome.input_error is not None:
        raise SystemExit(f"evmpipe bench: replay failed: {outcome.rejected.error if outcome.rejected else outcome.input_error}")
    summary = summarize(outcome.events.events, outcome.wall_seconds)
    execute_cpu = summary.parallel_cpu / summary.parallel_wall if summary.parallel_wall else None
    executed = [e for e in outcome.events.events if e.stage == "execute" and e.ok]
    tx_cpu = sum(float(e.counts["tx_cpu"]) for e in executed) if all("tx_cpu" in e.counts for e in executed) else None
    return outcome.wall_seconds, outcome.cpu_seconds, execute_cpu, tx_cpu, summary.stage_busy.get("execute", 0.0)


def _print_table(results: list[Measurement]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evmpipe bench (medians)")
    loops = {m.loop for m in results if m.loop}
    columns = ["file", "engine", "txs", "wall s", "tx/s", "Mgas/s", "× py-evm", "× sequential", "CPU/wall", "execute CPU/wall"]
    if len(loops) > 1:
        columns[8:8] = ["× pyevm loop", "CPU × pyevm loop"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("file", "engine") else "right", no_wrap=column == "engine")
    baseline = {m.file: m for m in results if m.engine == "py-evm"}
    sequential = {(m.file, m.loop): m for m in results if m.strategy == "sequential"}
    stock_loop = {(m.file, m.strategy): m for m in results if m.loop == "pyevm"}
    for m in results:
        base, seq = baseline.get(m.file), sequential.get((m.file, m.loop))
        ratio = f"{base.wall / m.wall:.2f}" if base else "–"
        to_sequential = f"{seq.wall / m.wall:.2f}" if seq and m.engine.startswith("evmpipe") else "–"
        execute = f"{m.execute_cpu_over_wall:.2f}" if m.execute_cpu_over_wall is not None else "–"
        row = [Path(m.file).name, m.engine, f"{m.txs:,}", f"{m.wall:.3f}", f"{m.tx_per_s:,.0f}", f"{m.mgas_per_s:.2f}", ratio, to_sequential, f"{m.cpu_over_wall:.2f}", execute]
        if len(loops) > 1:  # CPU seconds too: on a shared machine the wall clock counts other processes
            stock = stock_loop.get((m.file, m.strategy))
            mine = stock is not None and m.loop != "pyevm"
            row[8:8] = [f"{stock.wall / m.wall:.2f}" if mine else "–", f"{statistics.median(stock.cpu) / statistics.median(m.cpu):.2f}" if mine else "–"]
        table.add_row(*row)
    Console(width=160).print(table)  # wide enough for file names when not on a terminal


def per_tx_rows(results: list[Measurement]) -> list[dict[str, Any]]:
    """Per file, CPU µs per transaction: executing them (sequential, per loop), py-evm's
    import_block, the whole sequential pipeline (per loop), and the ratios."""
    rows: list[dict[str, Any]] = []
    for file in dict.fromkeys(m.file for m in results):
        sequential = {m.loop: m for m in results if m.file == file and m.strategy == "sequential"}
        pyevm = next((m for m in results if m.file == file and m.engine == "py-evm"), None)
        if not sequential:
            continue
        row: dict[str, Any] = {"file": file, "txs": next(iter(sequential.values())).txs}
        for loop, m in sequential.items():
            row[f"execute_us_per_tx_{loop}"] = m.execute_us_per_tx
            row[f"pipeline_us_per_tx_{loop}"] = m.cpu_us_per_tx
        row["import_block_us_per_tx"] = pyevm.cpu_us_per_tx if pyevm else None
        lean, stock = sequential.get("lean"), sequential.get("pyevm")
        if lean and stock and lean.execute_us_per_tx and stock.execute_us_per_tx:
            row["execute_lean_x_pyevm_loop"] = stock.execute_us_per_tx / lean.execute_us_per_tx
        if lean and stock:
            row["pipeline_lean_x_pyevm_loop"] = stock.cpu_us_per_tx / lean.cpu_us_per_tx
        for loop, m in sequential.items():
            if pyevm and m.execute_us_per_tx:
                row[f"import_block_over_execute_{loop}"] = pyevm.cpu_us_per_tx / m.execute_us_per_tx
            if pyevm:
                row[f"import_block_over_pipeline_{loop}"] = pyevm.cpu_us_per_tx / m.cpu_us_per_tx
        rows.append(row)
    return rows


def _print_per_tx(rows: list[dict[str, Any]], loops: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: float | None, ratio: bool = False) -> str:
        return "–" if value is None else (f"{value:.2f}" if ratio else f"{value:,.0f}")

    table = Table(title="per transaction, CPU µs (medians)",
                  caption="execute: the CPU of the thread that ran the transactions in order (sequential; no prefetch, sender recovery, merkleize or commit); "
                          "import_block: py-evm's whole import; pipeline: the whole sequential run's process CPU")
    columns = ["file", "txs"] + [f"execute µs ({loop} loop)" for loop in loops]
    if {"lean", "pyevm"} <= set(loops):
        columns.append("execute × pyevm loop")
    columns += ["import_block µs"] + [f"import_block ÷ execute ({loop})" for loop in loops]
    columns += [f"pipeline µs ({loop} loop)" for loop in loops]
    if {"lean", "pyevm"} <= set(loops):
        columns.append("pipeline × pyevm loop")
    for column in columns:
        table.add_column(column, justify="left" if column == "file" else "right")
    for row in rows:
        cells = [Path(row["file"]).name, f"{row['txs']:,}"] + [fmt(row.get(f"execute_us_per_tx_{loop}")) for loop in loops]
        if {"lean", "pyevm"} <= set(loops):
            cells.append(fmt(row.get("execute_lean_x_pyevm_loop"), ratio=True))
        cells += [fmt(row["import_block_us_per_tx"])] + [fmt(row.get(f"import_block_over_execute_{loop}"), ratio=True) for loop in loops]
        cells += [fmt(row.get(f"pipeline_us_per_tx_{loop}")) for loop in loops]
        if {"lean", "pyevm"} <= set(loops):
            cells.append(fmt(row.get("pipeline_lean_x_pyevm_loop"), ratio=True))
        table.add_row(*cells)
    Console(width=200).print(table)


def _as_json(m: Measurement) -> dict[str, Any]:
    record = asdict(m)
    record.update(wall_median=m.wall, tx_per_s=m.tx_per_s, mgas_per_s=m.mgas_per_s, cpu_over_wall=m.cpu_over_wall, execute_cpu_over_wall=m.execute_cpu_over_wall,
                  execute_us_per_tx=m.execute_us_per_tx, cpu_us_per_tx=m.cpu_us_per_tx)
    return record


def machine_info() -> dict[str, Any]:
    packages = {}
    for name in ("py-evm", "evmpipe", "trio", "coincurve", "eth-hash", "safe-pysha3"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "packages": packages,
        "eth_hash_backend": os.environ.get("ETH_HASH_BACKEND"),
    }
