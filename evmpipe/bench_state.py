"""`evmpipe bench --state D FILE`: the same blocks over a big state, per layout, warm and cold.

The datadir D (made by `evmpipe gen state`) is copied once into a scratch directory
beside it, and D itself is never written. Each run replays FILE into the copy, then
unwinds the copy back to genesis from the change sets (`StateStore.unwind_block`), so
every run starts from the same state without copying again. A cold run evicts the
copy's files from the OS page cache first (`--cold` on replay); a warm run follows a
run of the same blocks, so the page cache holds what those blocks read.

Reported per run: block time, merkleize time per block, read tiers and their hit
rates, lookups per account and per slot read (the layout's cost), SQLite page misses,
bytes read from the disk per block, and the process's peak RSS so far.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.state_options import PREFETCH_RUN, StateOptions
from state.layout import LAYOUTS
from state.readers import DEFAULT_THREADS

PREFETCH_MODES = ("on", "off", "notrie", "run", "norun")


def add_bench_state_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("over a big state", "evmpipe bench --state D FILE.blocks: FILE is a native block file made by `evmpipe gen KIND --state D`")
    group.add_argument("--state", metavar="D", help="a datadir made by `evmpipe gen state` (copied once, never written)")
    group.add_argument("--layouts", default="flat,trie,trie-pinned", help="comma-separated layouts to run (default flat,trie,trie-pinned)")
    group.add_argument("--temps", default="cold,warm", help="cold and/or warm runs, in this order (default cold,warm)")
    group.add_argument("--cache-mb", type=int, default=None, help="--cache-mb for every run (default: the store's)")
    group.add_argument("--mmap-mb", type=int, default=None, help="--mmap-mb for every run (default: the store's)")
    group.add_argument("--no-readahead", action="store_true", help="POSIX_FADV_RANDOM on the database files for every run")
    group.add_argument("--scratch", metavar="DIR", help="where the copy goes (default: beside D)")
    group.add_argument("--prefetch", default="on", help="prefetch modes to run, comma-separated: on (replay's defaults), off (--no-prefetch), notrie (--no-trie-prefetch), run (--prefetch-run), norun (--no-prefetch-run); default on")
    group.add_argument("--prefetch-threads", type=int, default=None, help="--prefetch-threads for every run (default: replay's)")


def cmd_bench_state(args: argparse.Namespace) -> int:
    from evmpipe.replay import replay_file
    from pipeline.errors import BadInput
    from pipeline.summary import summarize
    from state.store import StateStore

    layouts = [x for x in args.layouts.split(",") if x]
    temps = [x for x in args.temps.split(",") if x]
    modes = [x for x in args.prefetch.split(",") if x]
    if set(layouts) - set(LAYOUTS) or set(temps) - {"cold", "warm"} or set(modes) - set(PREFETCH_MODES) or not layouts or not temps or not modes:
        print(f"evmpipe bench: --layouts takes {', '.join(LAYOUTS)}; --temps takes cold, warm; --prefetch takes {', '.join(PREFETCH_MODES)}", file=sys.stderr)
        return 2
    if args.prefetch_threads is not None and args.prefetch_threads < 1:
        print("evmpipe bench: --prefetch-threads must be at least 1", file=sys.stderr)
        return 2
    if len(args.files) != 1:
        print("evmpipe bench --state: give one block file", file=sys.stderr)
        return 2
    source = Path(args.state)
    if not (source / "state.sqlite").exists():
        print(f"evmpipe bench: {source}: no state.sqlite (make it with `evmpipe gen state`)", file=sys.stderr)
        return 2
    scratch = Path(args.scratch) if args.scratch else source.parent
    copy = scratch / f"{source.name}.bench-{int(time.time())}"
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    print(f"bench: copying {source} to {copy}", file=sys.stderr)
    shutil.copytree(source, copy)
    try:
        runs = [(layout, mode, temp) for layout in layouts for mode in modes for temp in temps]
        for layout, mode, temp in runs:
            options = StateOptions(
                cold=temp == "cold", cache_mb=args.cache_mb, mmap_mb=args.mmap_mb, layout=layout, no_readahead=args.no_readahead,
                prefetch=mode != "off", prefetch_threads=args.prefetch_threads or DEFAULT_THREADS, trie_prefetch=mode not in ("off", "notrie"),
                prefetch_run={"run": True, "norun": False}.get(mode, PREFETCH_RUN),
            )
            try:
                outcome = replay_file(args.files[0], str(copy), synchronous="OFF", state_options=options)
            except BadInput as error:
                print(f"evmpipe bench: {error}", file=sys.stderr)
                return 2
            if outcome.rejected is not None or outcome.input_error is not None:
                problem = outcome.rejected.error.describe() if outcome.rejected and outcome.rejected.error else str(outcome.input_error)
                print(f"evmpipe bench: {args.files[0]}: {problem}", file=sys.stderr)
                return 1
            summary = summarize(outcome.events.events, outcome.wall_seconds)
            results.append(_run_record(layout, temp, options, summary, outcome))
            results[-1]["prefetch_mode"] = mode
            _print_run(results[-1])
            _unwind_to_genesis(StateStore, copy)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    hidden = io_hidden(results)
    for row in hidden:
        extra = "".join(f"  I/O hidden with {mode} {row[f'io_hidden_{mode}']}" for mode in ("run", "norun") if f"io_hidden_{mode}" in row)
        print(f"{row['layout']:<11} I/O hidden by prefetch {row['io_hidden']}  merkleize with/without trie-path prefetch {row['merkleize_ratio']}{extra}", flush=True)
    if args.json:
        from evmpipe.bench import machine_info

        Path(args.json).write_text(json.dumps({"machine": machine_info(), "state": str(source), "file": args.files[0], "seconds": round(time.perf_counter() - started, 1), "runs": results, "prefetch": hidden}, indent=2))
    return 0


def _unwind_to_genesis(store_class: Any, datadir: Path) -> None:
    store = store_class(datadir / "state.sqlite", synchronous="OFF")
    try:
        head = store.head()
        while head is not None and head.number > 0:
            head = store.unwind_block()
        if head is not None and store.get_meta("best") is not None:
            store.set_meta("best", head.hash)  # fork choice would redo the unwound blocks on open
    finally:
        store.close()


def _run_record(layout: str, temp: str, options: StateOptions, summary: Any, outcome: Any) -> dict[str, Any]:
    reads = outcome.state_reads or {}
    blocks = max(1, summary.blocks)
    per_block_disk = [b.get("disk_read_bytes", 0) for b in outcome.state_reads_per_block]
    pages = reads.get("sqlite_pages") or {}
    looked = pages.get("page_hits", 0) + pages.get("page_misses", 0)
    return {
        "layout": layout,
        "temp": temp,
        "options": options.as_dict(),
        "blocks": summary.blocks,
        "transactions": summary.txs,
        "wall_seconds": round(summary.wall_seconds, 3),
        "block_ms": round(1000 * summary.wall_seconds / blocks, 1),
        "merkleize_ms_per_block": round(1000 * summary.stage_busy.get("merkleize", 0.0) / blocks, 1),
        "stage_busy_seconds": summary.stage_busy,
        "tier_share": reads.get("share"),
        "reads": reads.get("reads"),
        "lookups": reads.get("layout"),
        "sqlite_page_miss_rate": round(pages.get("page_misses", 0) / looked, 4) if looked else None,
        "disk_read_bytes_per_block": round(sum(per_block_disk) / blocks),
        "disk_read_bytes": reads.get("disk_read_bytes"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **_medians(outcome),
    }


def _medians(outcome: Any) -> dict[str, Any]:
    """Per block, medians: block time (between consecutive commits; the first from
    the run's first event), merkleize time, and prefetch's counters (reads served
    from memory, keys read ahead, hit, wasted, read on demand, stall on those
    reads, and how far ahead of execution prefetch finished)."""
    events = outcome.events.events
    if not events:
        return {}
    start = min(e.start for e in events)
    commits = sorted(e.end for e in events if e.stage == "commit")
    block_ms = [1000 * (b - a) for a, b in zip([start, *commits], commits)]
    merkleize = [1000 * (e.end - e.start) for e in events if e.stage == "merkleize"]
    prefetch_end = {e.block: e.end for e in events if e.stage == "prefetch"}
    lead_ms = [1000 * (e.start - prefetch_end[e.block]) for e in events if e.stage == "execute" and e.block in prefetch_end]
    per_block = [b.get("prefetch") for b in outcome.state_reads_per_block if b.get("prefetch")]
    out: dict[str, Any] = {
        "block_ms_median": _median(block_ms),
        "merkleize_ms_median": _median(merkleize),
        "prefetch_lead_ms_median": _median(lead_ms),
        "block_ms_each": [round(x, 1) for x in block_ms],
    }
    if per_block:
        out["hit_rate_median"] = _median([p["hit_rate"] for p in per_block if p["hit_rate"] is not None])
        out["read_stall_ms_median"] = _median([1000 * p["stall_s"] for p in per_block])
        for outcome_name in ("prefetched", "hit", "wasted", "missed"):
            out[f"{outcome_name}_median"] = _median([sum(p[k][outcome_name] for k in ("account", "slot", "code", "node")) for p in per_block])
    total = (outcome.state_reads or {}).get("prefetch")
    if total:
        out["hit_rate_run"] = total["hit_rate"]
        out["read_stall_s_run"] = total["stall_s"]
    return out


def io_hidden(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layout, from median block times: the share of I/O prefetch hides,
    (cold without − cold with) / (cold without − warm) (warm: without prefetch when
    that was run), and cold merkleize time with trie-path prefetch over without."""
    out = []
    for layout in dict.fromkeys(r["layout"] for r in results):
        runs = {(r.get("prefetch_mode"), r["temp"]): r for r in results if r["layout"] == layout}
        cold_off, cold_on = runs.get(("off", "cold")), runs.get(("on", "cold"))
        warm = runs.get(("off", "warm")) or runs.get(("on", "warm"))
        row: dict[str, Any] = {"layout": layout, "io_hidden": None, "merkleize_ratio": None}
        if cold_off and cold_on and warm and cold_off["block_ms_median"] is not None:
            wall = cold_off["block_ms_median"] - warm["block_ms_median"]
            row["io_hidden"] = round((cold_off["block_ms_median"] - cold_on["block_ms_median"]) / wall, 3) if wall > 0 else None
            row.update(cold_off_ms=cold_off["block_ms_median"], cold_on_ms=cold_on["block_ms_median"], warm_ms=warm["block_ms_median"])
        for mode in ("run", "norun"):  # the pre-run on or off (the other is "on")
            cold_mode = runs.get((mode, "cold"))
            if cold_off and cold_mode and warm and "io_hidden" in row and cold_off["block_ms_median"] - warm["block_ms_median"] > 0:
                row[f"io_hidden_{mode}"] = round((cold_off["block_ms_median"] - cold_mode["block_ms_median"]) / (cold_off["block_ms_median"] - warm["block_ms_median"]), 3)
                row[f"cold_{mode}_ms"] = cold_mode["block_ms_median"]
        no_trie = runs.get(("notrie", "cold"))
        if cold_on and no_trie and no_trie["merkleize_ms_median"]:
            row["merkleize_ratio"] = round(cold_on["merkleize_ms_median"] / no_trie["merkleize_ms_median"], 3)
        out.append(row)
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _print_run(r: dict[str, Any]) -> None:
    share = r["tier_share"] or {}
    lookups = r["lookups"] or {}
    print(
        f"{r['layout']:<11} {r['temp']:<4} prefetch {r.get('prefetch_mode', 'on'):<6} block {r['block_ms']:8.1f} ms (median {r.get('block_ms_median')})  merkleize {r['merkleize_ms_per_block']:7.1f} ms/block (median {r.get('merkleize_ms_median')})  "
        f"served from memory {r.get('hit_rate_run')} stall {1000 * (r.get('read_stall_s_run') or 0) / max(1, r['blocks']):.0f} ms/block  "
        f"overlay {share.get('overlay', 0):.1%} hot {share.get('hot', 0):.1%} neg {share.get('hot_negative', 0):.1%} sqlite {share.get('db', 0):.1%}  "
        f"lookups/account {lookups.get('lookups_per_account_read')} /slot {lookups.get('lookups_per_slot_read')}  "
        f"disk {r['disk_read_bytes_per_block'] / 2**20:.2f} MiB/block  rss {r['peak_rss_mb']:.0f} MB",
        flush=True,
    )
