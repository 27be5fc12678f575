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
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.state_options import StateOptions
from state.layout import LAYOUTS


def add_bench_state_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("over a big state", "evmpipe bench --state D FILE.blocks: FILE is a native block file made by `evmpipe gen KIND --state D`")
    group.add_argument("--state", metavar="D", help="a datadir made by `evmpipe gen state` (copied once, never written)")
    group.add_argument("--layouts", default="flat,trie,trie-pinned", help="comma-separated layouts to run (default flat,trie,trie-pinned)")
    group.add_argument("--temps", default="cold,warm", help="cold and/or warm runs, in this order (default cold,warm)")
    group.add_argument("--cache-mb", type=int, default=None, help="--cache-mb for every run (default: the store's)")
    group.add_argument("--mmap-mb", type=int, default=None, help="--mmap-mb for every run (default: the store's)")
    group.add_argument("--no-readahead", action="store_true", help="POSIX_FADV_RANDOM on the database files for every run")
    group.add_argument("--scratch", metavar="DIR", help="where the copy goes (default: beside D)")


def cmd_bench_state(args: argparse.Namespace) -> int:
    from evmpipe.replay import replay_file
    from pipeline.errors import BadInput
    from pipeline.summary import summarize
    from state.store import StateStore

    layouts = [x for x in args.layouts.split(",") if x]
    temps = [x for x in args.temps.split(",") if x]
    if set(layouts) - set(LAYOUTS) or set(temps) - {"cold", "warm"} or not layouts or not temps:
        print(f"evmpipe bench: --layouts takes {', '.join(LAYOUTS)}; --temps takes cold, warm", file=sys.stderr)
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
        for layout in layouts:
            for temp in temps:
                options = StateOptions(cold=temp == "cold", cache_mb=args.cache_mb, mmap_mb=args.mmap_mb, layout=layout, no_readahead=args.no_readahead)
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
                _print_run(results[-1])
                _unwind_to_genesis(StateStore, copy)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    if args.json:
        from evmpipe.bench import machine_info

        Path(args.json).write_text(json.dumps({"machine": machine_info(), "state": str(source), "file": args.files[0], "seconds": round(time.perf_counter() - started, 1), "runs": results}, indent=2))
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
    }


def _print_run(r: dict[str, Any]) -> None:
    share = r["tier_share"] or {}
    lookups = r["lookups"] or {}
    print(
        f"{r['layout']:<11} {r['temp']:<4}  block {r['block_ms']:8.1f} ms  merkleize {r['merkleize_ms_per_block']:7.1f} ms/block  "
        f"overlay {share.get('overlay', 0):.1%} hot {share.get('hot', 0):.1%} neg {share.get('hot_negative', 0):.1%} sqlite {share.get('db', 0):.1%}  "
        f"lookups/account {lookups.get('lookups_per_account_read')} /slot {lookups.get('lookups_per_slot_read')}  "
        f"disk {r['disk_read_bytes_per_block'] / 2**20:.2f} MiB/block  rss {r['peak_rss_mb']:.0f} MB",
        flush=True,
    )
