"""The analysis of one file, as one JSON-ready dict, and its terminal table.

Stable keys of the result (`FORMAT_VERSION` 1; docs/ANALYZE.md says what each
means):

- ``format_version``, ``file``, ``blocks_analyzed``, ``transactions``;
- ``predicted``: strategy (``optimistic``, ``declared``, ``auto``, ``ideal``) ->
  worker count as a string (``"1"`` ... ``"64"``) -> predicted speedup over
  sequential, on as many cores as workers (the whole file through the pipeline,
  blocks in flight as `evmpipe bench` runs them);
- ``auto_choices``: worker count -> what `auto` runs each block as (its own
  decision function, `execution.strategies.AutoPolicy`);
- ``this_machine``: ``cores`` and ``predicted``, the same mapping for 1 and 2
  workers on this machine's cores (what `evmpipe bench --workers N` measures);
  ``available_cores``, what one busy process per core got during the analysis
  (less when the machine is shared), and ``predicted_at_available_cores``, the
  prediction with the others' load that implies;
- ``critical_path_bound``: total transaction work over the sum of the blocks'
  critical paths: no scheduler on any core count runs the transactions faster;
- ``amdahl_bound``: the ideal scheduler on unlimited cores: sequential time over
  the file with each block's serial work (decoding, roots, commit) in one process
  and its critical path;
- ``sequential_seconds``: the model's sequential time of the file;
- ``overheads``: the simulation's parameters per strategy (``optimistic``,
  ``declared``), and ``overheads_source``;
- ``blocks``: per block ``number``, ``hash``, ``txs``, ``gas``,
  ``total_work_seconds``, ``critical_path_seconds``, ``critical_path_txs``,
  ``serial_seconds``, ``dependent_txs``, ``edges``, ``reexecuted``
  (``optimistic``, ``declared``), ``declared_chains``, ``longest_declared_chain``,
  ``top_conflicts``, ``transactions`` (per transaction ``index``, ``sender``,
  ``to``, ``selector``, ``gas``, ``success``, ``seconds`` (measured),
  ``depends_on``, ``on_critical_path``, ``reexecuted``, ``declared_chain``);
- ``top_conflicts``: the file's, each with ``kind``, ``contract_or_account``,
  ``slot``, ``holder``, ``description``, ``serial_seconds``, ``txs``, ``edges``;
- ``bench`` (with ``--bench``): per bench file and strategy, ``workers``,
  ``measured``, ``predicted``, ``error``, ``bench_sequential_cpu_share``,
  ``load``, ``predicted_at_bench_load``, ``error_at_bench_load``.
"""
from __future__ import annotations

import gc

import os
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evmpipe.analyze.calibrate import Calibration, available_cores, calibrate, replay_blocks, serial_work
from evmpipe.analyze.conflicts import Namer, conflicts, merge_conflicts
from evmpipe.analyze.graph import Graph, TxAccess, build_graph, critical_path
from evmpipe.analyze.record import AnalyzeError, BlockRecord, native_file, record_file
from evmpipe.analyze.schedule import STRATEGIES, WORKER_COUNTS, BlockModel, Overheads, auto_choices, file_time, load_from_available, predict, reexecuted

FORMAT_VERSION = 1
#: A bench's sequential run with less CPU over wall than this saw others' load.
LOADED_SHARE = 0.95
TOP_CONFLICTS = 10


@dataclass
class Analysis:
    records: list[BlockRecord]
    graphs: list[Graph]
    models: list[BlockModel]
    overheads: dict[str, Overheads]
    result: dict[str, Any]


def analyze_file(path: str, *, state: str | None = None, test_name: str | None = None, limit: int | None = None, overheads: dict[str, Overheads] | None = None, top: int = TOP_CONFLICTS, runs: int = 3, progress: Any = None) -> Analysis:
    """Record, replay, calibrate (unless `overheads` are given), simulate, name."""
    say = progress or (lambda message: None)
    with ExitStack() as stack:
        native = native_file(path, stack, test_name)
        say("recording: every block sequentially, each transaction timed")
        records = record_file(native, state=state, limit=limit, label=path)
        graphs = [build_graph([TxAccess(t.seconds, t.reads, t.writes) for t in r.txs], r.system_writes) for r in records]
        # the recording holds every transaction's reads and writes: out of the cyclic
        # garbage collector's way during the timed replays, which `evmpipe bench`'s
        # process runs without them
        gc.collect()
        gc.freeze()
        stack.callback(gc.unfreeze)
        say(f"replaying sequentially through the pipeline ({runs}×): serial work and stage times")
        replays = [replay_blocks(native, len(records), "sequential", state, one_at_a_time=True) for _ in range(runs)]
        serial, split = serial_work(records, graphs, replays)
        sequential_wall = min(r.wall for r in replays)
        calibration: Calibration | None = None
        if overheads is None:
            say(f"calibrating: optimistic and declared with one worker ({runs}× each)")
            calibration = calibrate(native, records, graphs, serial, state, runs)
            overheads = calibration.overheads
        say("timing the cores this machine gives now")
        cores_now = available_cores()
    models = [_model(r, g, pre, post) for r, g, (pre, post) in zip(records, graphs, split)]
    namer = Namer()
    for r in records:
        namer.observe((log for t in r.txs for log in t.logs), _addresses(r))
    result = _result(path, records, graphs, models, overheads, calibration, namer, top, sequential_wall, cores_now)
    return Analysis(records, graphs, models, overheads, result)


def _addresses(record: BlockRecord) -> set[bytes]:
    out = {record.coinbase}
    for t in record.txs:
        out.add(t.sender)
        if t.to:
            out.add(t.to)
        out.update(k[1] for k in t.reads)
        out.update(k[1] for k in t.writes)
    return out


def _model(record: BlockRecord, graph: Graph, pre: float, post: float) -> BlockModel:
    """The block as the simulation sees it: its serial work in prefetch (`pre`) and
    after execution (`post`), its system work, its sender recovery (the main process
    recovers senders for `sequential`, the workers for the parallel strategies)."""
    system = record.begin_seconds + record.finish_seconds
    return BlockModel(graph, pre + post + record.recover_seconds + system, record.recover_seconds, None, record.chains, record.sampled, system=system, pre=pre, gas=record.gas, learned=record.learned)


def _result(path: str, records: list[BlockRecord], graphs: list[Graph], models: list[BlockModel], overheads: dict[str, Overheads], calibration: Calibration | None, namer: Namer, top: int, sequential_wall: float, cores_now: float) -> dict[str, Any]:
    blocks = []
    per_block_conflicts = []
    total_work = total_path = 0.0
    for record, graph, model in zip(records, graphs, models):
        path_seconds, path_txs = critical_path(graph)
        found = conflicts(graph, [t.sender for t in record.txs], namer)
        per_block_conflicts.append(found)
        sizes = Counter(record.chains)
        again_optimistic, again_declared = reexecuted(graph), reexecuted(graph, record.chains or None)
        on_path = set(path_txs)
        transactions = [
            {
                "index": t.index,
                "sender": "0x" + t.sender.hex(),
                "to": "0x" + t.to.hex() if t.to else None,
                "selector": "0x" + t.selector.hex() if t.selector else None,
                "gas": t.gas,
                "success": t.success,
                "seconds": t.seconds,
                "depends_on": sorted(graph.preds[i]),
                "on_critical_path": i in on_path,
                "reexecuted": {"optimistic": again_optimistic[i], "declared": again_declared[i]},
                "declared_chain": record.chains[i] if record.chains else None,
            }
            for i, t in enumerate(record.txs)
        ]
        total_work += graph.total
        total_path += path_seconds
        blocks.append(
            {
                "number": record.number,
                "hash": "0x" + record.hash.hex(),
                "txs": len(record.txs),
                "gas": record.gas,
                "total_work_seconds": graph.total,
                "critical_path_seconds": path_seconds,
                "critical_path_txs": path_txs,
                "serial_seconds": model.serial,
                "dependent_txs": graph.dependent(),
                "edges": sum(1 for _ in graph.edges()),
                "reexecuted": {"optimistic": sum(again_optimistic), "declared": sum(again_declared)},
                "declared_chains": len(sizes),
                "longest_declared_chain": max(sizes.values(), default=0),
                "top_conflicts": [c.to_json() for c in found[:top]],
                "transactions": transactions,
            }
        )
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "file": str(path),
        "blocks_analyzed": len(records),
        "transactions": sum(len(r.txs) for r in records),
        "predicted": predict(models, overheads, WORKER_COUNTS),
        "this_machine": {"cores": cores, "available_cores": cores_now, "predicted": predict(models, overheads, (1, 2), cores=cores), "predicted_at_available_cores": predict(models, overheads, (1, 2), cores=cores, load=load_from_available(cores, cores_now))},
        "auto_choices": {str(w): [choice for choice, _ in auto_choices(models, w)] for w in WORKER_COUNTS},
        "critical_path_bound": total_work / total_path if total_path else None,
        "amdahl_bound": _unlimited(models),
        "sequential_seconds": file_time("sequential", models, 1, 1, overheads),
        "sequential_replay_wall_seconds": sequential_wall,  # the fastest run, one block at a time
        "overheads": {strategy: o.to_dict() for strategy, o in overheads.items()},
        "overheads_source": "calibrated on this file (optimistic and declared, one worker, blocks in flight as evmpipe bench runs them)" if calibration else "given (--overheads)",
        "calibration": calibration.detail if calibration else None,
        "blocks": blocks,
        "top_conflicts": [c.to_json() for c in merge_conflicts(per_block_conflicts, top)],
    }
    return result


def compare_with_bench(analysis: Analysis, bench_paths: list[str]) -> list[dict[str, Any]]:
    """The prediction for each `evmpipe bench --json` file of the same blocks, against
    what it measured (sequential's median wall over each strategy's). Besides the
    prediction on idle cores, one at the load the bench itself saw: its sequential
    run's CPU over wall time is the share of a core one process got, which implies
    how many busy processes of others shared the machine."""
    import json

    name = Path(analysis.result["file"]).name
    rows = []
    for path in bench_paths:
        try:
            data = json.loads(Path(path).read_text())
            results = {r["engine"]: r for r in data["results"] if Path(r["file"]).name == name}
            workers = int(data["workers"])
            cores = int(data.get("machine", {}).get("cores") or os.cpu_count() or 1)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AnalyzeError(f"evmpipe analyze: --bench {path}: not an `evmpipe bench --json` file ({error})") from error
        sequential = results.get("evmpipe sequential")
        if sequential is None:
            raise AnalyzeError(f"evmpipe analyze: --bench {path}: no `evmpipe sequential` run of {name} in it")
        if workers < 1:
            continue
        share = min(1.0, float(sequential["cpu_over_wall"])) or 1.0
        # a share just under one is the run's own waits (the disk, a thread hop), not
        # others' load: on C cores one process only loses its core to C others
        load = max(0.0, cores / share - 1.0) if share < LOADED_SHARE else 0.0
        idle = predict(analysis.models, analysis.overheads, (workers,), cores=cores)
        loaded = predict(analysis.models, analysis.overheads, (workers,), cores=cores, load=load)
        for strategy in ("optimistic", "declared", "auto"):
            run = results.get(f"evmpipe {strategy}")
            if run is None:
                continue
            measured = sequential["wall_median"] / run["wall_median"]
            guess, guess_loaded = idle[strategy][str(workers)], loaded[strategy][str(workers)]
            rows.append(
                {
                    "bench": str(path),
                    "workers": workers,
                    "cores": cores,
                    "strategy": strategy,
                    "measured": measured,
                    "predicted": guess,
                    "error": guess / measured - 1,
                    "bench_sequential_cpu_share": share,
                    "load": load,
                    "predicted_at_bench_load": guess_loaded,
                    "error_at_bench_load": guess_loaded / measured - 1,
                }
            )
    return rows


def _unlimited(models: list[BlockModel]) -> float | None:
    """The ideal scheduler on unlimited cores, through the pipeline: each block's
    serial work (in one process) and its critical path (sender recovery spread over
    the transactions)."""
    workers = max([m.graph.size for m in models] + [1])
    best = file_time("ideal", models, workers, None, {})
    return file_time("sequential", models, 1, 1, {}) / best if best else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def render_table(result: dict[str, Any], console: Any = None) -> None:
    """The terminal view: blocks, predicted speedups, top conflicts."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=160)
    blocks = Table(title=f"evmpipe analyze: {Path(result['file']).name}")
    for column in ("block", "txs", "work ms", "critical path ms", "work ÷ path", "serial ms", "dependent", "optimistic re-exec", "declared re-exec", "top conflict"):
        blocks.add_column(column, justify="left" if column == "top conflict" else "right")
    for b in result["blocks"]:
        bound = b["total_work_seconds"] / b["critical_path_seconds"] if b["critical_path_seconds"] else float("inf")
        top = b["top_conflicts"][0]["description"] if b["top_conflicts"] else "none"
        blocks.add_row(str(b["number"]), str(b["txs"]), _ms(b["total_work_seconds"]), _ms(b["critical_path_seconds"]), f"{bound:.1f}", _ms(b["serial_seconds"]), str(b["dependent_txs"]), str(b["reexecuted"]["optimistic"]), str(b["reexecuted"]["declared"]), top)
    console.print(blocks)
    curves = Table(title="predicted speedup over sequential (simulated: N workers on N cores)")
    curves.add_column("strategy")
    counts = list(next(iter(result["predicted"].values())).keys())
    for count in counts:
        curves.add_column(count, justify="right")
    for strategy in STRATEGIES:
        curves.add_row(strategy, *(f"{result['predicted'][strategy][c]:.2f}" for c in counts))
    console.print(curves)
    bound = result["critical_path_bound"]
    console.print(
        f"critical path bound (transactions only, any core count): {bound:.1f}×" if bound else "critical path bound: no transactions",
        f"  ideal on unlimited cores, with each block's serial work (Amdahl): {result['amdahl_bound']:.2f}×" if result["amdahl_bound"] else "",
    )
    machine = result["this_machine"]
    console.print(
        f"this machine ({machine['cores']} cores), predicted: "
        + ", ".join(f"{s} {w} worker{'s' if w != '1' else ''} {v:.2f}×" for s in ("optimistic", "declared") for w, v in machine["predicted"][s].items())
    )
    if result.get("bench"):
        bench = Table(title="predicted against evmpipe bench (× sequential)")
        for column in ("strategy", "workers", "measured", "predicted", "error", "bench CPU share", "predicted at that load", "error"):
            bench.add_column(column, justify="left" if column == "strategy" else "right")
        for r in result["bench"]:
            bench.add_row(r["strategy"], str(r["workers"]), f"{r['measured']:.2f}", f"{r['predicted']:.2f}", f"{r['error'] * 100:+.0f} %", f"{r['bench_sequential_cpu_share']:.2f}", f"{r['predicted_at_bench_load']:.2f}", f"{r['error_at_bench_load'] * 100:+.0f} %")
        console.print(bench)
    table = Table(title="top conflicts (the time each serialises: its longest forced chain)")
    for column in ("conflict", "kind", "serialises ms", "txs", "edges"):
        table.add_column(column, justify="left" if column in ("conflict", "kind") else "right")
    for c in result["top_conflicts"]:
        table.add_row(c["description"], c["kind"], _ms(c["serial_seconds"]), str(c["txs"]), str(c["edges"]))
    if not result["top_conflicts"]:
        table.add_row("none: no transaction depends on another", "", "", "", "")
    console.print(table)
