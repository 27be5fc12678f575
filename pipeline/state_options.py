"""How a run treats the state: cold or warm, memory for caches, and the read tiers it reports.

`--cold` evicts the datadir's database files from the OS page cache before the run
(`state.tiers.evict`), `--cache-mb` bounds the store's hot tier and SQLite's page
cache together, `--mmap-mb` sets SQLite's memory map (0: off). `ReadTracker` turns
the store's counters (`state.tiers`) into per-block and whole-run figures: reads per
kind (account, slot, code, trie node) and tier, SQLite page hits and misses, and the
bytes this process read from the disk. Per block means between two consecutive
commits: with blocks in flight, the next block's prefetch falls in its predecessor's
window. Reads done in worker processes (parallel strategies) are not counted.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from state.layout import LAYOUTS
from state.readers import DEFAULT_THREADS
from state.tiers import KINDS, ReadCounts, advise_random, delta, evict, snapshot, watch_overlay

DEFAULT_CACHE_MB = None  # keep the store's own sizes (100k entries per cache, 64 MiB SQLite cache)
DEFAULT_MMAP_MB = None  # keep the store's 256 MiB map
#: `--prefetch-run`'s default: off. At 10M accounts on 2 cores it lifts the reads
#: served from memory from 51-89 % to 99 %, but its worker takes a core and keeps
#: prefetch on the critical path: the 12-block runs took longer with it than with the
#: cheap predictions alone in 5 of 6 paired runs and as long in the sixth
#: (docs/BENCHMARKS.md, "Prefetch"). None would be auto (`pipeline.prerun.wanted`).
PREFETCH_RUN: bool | None = False


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold", action="store_true", help="evict the datadir's database files from the OS page cache first (posix_fadvise DONTNEED): every first read comes off the disk")
    parser.add_argument("--cache-mb", type=int, default=DEFAULT_CACHE_MB, help="MiB for the in-process hot cache and SQLite's page cache together (default: 100k entries per cache + 64 MiB)")
    parser.add_argument("--mmap-mb", type=int, default=DEFAULT_MMAP_MB, help="SQLite memory map in MiB, 0 = off (default 256)")
    parser.add_argument("--no-readahead", action="store_true", help="advise the kernel that database reads are random (POSIX_FADV_RANDOM on SQLite's descriptors): a cold lookup reads its page, not 128 KiB; pair with --mmap-mb 0")
    parser.add_argument("--layout", choices=LAYOUTS, default="flat", help="how a read that misses the hot cache is served: flat (one lookup), trie (walk from the root, as py-evm), trie-pinned (top trie levels held in memory); same results")
    parser.add_argument("--no-prefetch", action="store_true", help="read nothing ahead: every state read waits on SQLite when execution or merkleization needs it (for comparison)")
    parser.add_argument("--prefetch-threads", type=int, default=DEFAULT_THREADS, help=f"reader threads, each with its own SQLite connection, that read the predicted keys and trie paths ahead (default {DEFAULT_THREADS})")
    parser.add_argument("--no-trie-prefetch", action="store_true", help="prefetch accounts, slots and code but not the trie nodes merkleization reads (for comparison)")
    parser.add_argument("--prefetch-run", action=argparse.BooleanOptionalAction, default=PREFETCH_RUN, help="pre-run the transactions no cheap prediction covers (creations, calls of functions not learned yet) on a worker process against the committed state, and prefetch the keys they touch (default off: at 10M accounts on 2 cores it served 99 %% of reads from memory but its worker took a core and the runs took longer; see docs/BENCHMARKS.md)")


@dataclass(frozen=True)
class StateOptions:
    cold: bool = False
    cache_mb: int | None = None
    mmap_mb: int | None = None
    layout: str = "flat"
    no_readahead: bool = False
    prefetch: bool = True
    prefetch_threads: int = DEFAULT_THREADS
    trie_prefetch: bool = True
    prefetch_run: bool | None = PREFETCH_RUN  # None: auto (`pipeline.prerun.wanted`)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StateOptions:
        for name in ("cache_mb", "mmap_mb"):
            value = getattr(args, name, None)
            if value is not None and value < (1 if name == "cache_mb" else 0):
                raise SystemExit(f"--{name.replace('_', '-')} must be {'at least 1' if name == 'cache_mb' else 'non-negative'}")
        threads = getattr(args, "prefetch_threads", DEFAULT_THREADS)
        if threads < 1:
            raise SystemExit("--prefetch-threads must be at least 1")
        return cls(
            getattr(args, "cold", False), getattr(args, "cache_mb", None), getattr(args, "mmap_mb", None), getattr(args, "layout", "flat"), getattr(args, "no_readahead", False),
            not getattr(args, "no_prefetch", False), threads, not getattr(args, "no_trie_prefetch", False), getattr(args, "prefetch_run", PREFETCH_RUN),
        )

    def prefetch_options(self) -> Any:
        """What the prefetch stage takes (`stages.prefetch.PrefetchOptions`)."""
        from stages.prefetch import PrefetchOptions

        return PrefetchOptions(self.prefetch, self.prefetch_threads, self.trie_prefetch, self.prefetch_run)

    def prepare(self, datadir: str | Path) -> int:
        """Before the datadir is opened: evict it when cold (returns the bytes its files hold)."""
        if self.cold and Path(datadir).is_dir():
            return evict(datadir)
        return 0

    def configure(self, store: Any) -> None:
        if self.cache_mb is not None or self.mmap_mb is not None:
            store.set_memory(self.cache_mb, self.mmap_mb)
        if self.layout != "flat":
            store.set_layout(self.layout)
        if self.no_readahead:
            advise_random(Path(store.path).parent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cold": self.cold, "cache_mb": self.cache_mb, "mmap_mb": self.mmap_mb, "layout": self.layout, "no_readahead": self.no_readahead,
            "prefetch": self.prefetch, "prefetch_threads": self.prefetch_threads, "trie_prefetch": self.trie_prefetch, "prefetch_run": self.prefetch_run,
        }


class ReadTracker:
    """Read tiers of a run: `block()` after each commit, `total()` at the end."""

    def __init__(self, store: Any, overlay: Any | None) -> None:
        self.store = store
        self.overlay_counts = ReadCounts()
        if overlay is not None:
            watch_overlay(overlay, self.overlay_counts)
        self.start = self.last = snapshot(store, self.overlay_counts)
        self.prefetch_start = self.prefetch_last = store.prefetch.snapshot()

    def block(self, number: int | None = None) -> dict[str, Any]:
        """The reads since the last call; `number`: the block just committed (what
        was prefetched for it and never read counts as wasted now)."""
        if number is not None:
            self.store.prefetch.expire(number)
        now = snapshot(self.store, self.overlay_counts)
        out = delta(now, self.last)
        self.last = now
        ledger = self.store.prefetch.snapshot()
        out["prefetch"] = prefetch_delta(ledger, self.prefetch_last, out["reads"])
        self.prefetch_last = ledger
        return out

    def total(self, *, pages: bool = True) -> dict[str, Any]:
        """The whole run so far (`pages=False`: without SQLite's page counters, which
        wait for the store's lock: for /metrics on the event loop)."""
        out = delta(snapshot(self.store, self.overlay_counts, pages=pages), self.start)
        out["layout"] = self.store.layout.as_dict()
        out["prefetch"] = prefetch_delta(self.store.prefetch.snapshot(), self.prefetch_start, out["reads"])
        return out


def prefetch_delta(after: dict[str, Any], before: dict[str, Any], reads: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Prefetch's ledger between two points (`state.ledger`), beside the reads:
    per kind, keys prefetched (put into the hot cache), hit (read from there),
    wasted (never read before their block committed), missed (read on demand from
    SQLite) and the seconds those misses stalled their thread; `hit_rate`: the
    share of account, slot and code reads served from memory (overlay or hot);
    `background_failures`: background reads ahead that failed (trie-path walks,
    commit-page probes; their hints lost); `prerun_failures`: pre-runs whose worker
    died or passed its deadline (replaced; the block went on without their keys)."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        out[kind] = {
            "prefetched": after["inserted"][kind] - before["inserted"][kind],
            "hit": after["hits"][kind] - before["hits"][kind],
            "wasted": after["wasted"][kind] - before["wasted"][kind],
            "missed": reads[kind]["db"],
            "stall_s": round(after["stall_s"][kind] - before["stall_s"][kind], 6),
        }
    out["stale"] = after["stale"] - before["stale"]
    out["background_failures"] = after["background_failures"] - before["background_failures"]
    out["prerun_failures"] = after["prerun_failures"] - before["prerun_failures"]
    served = sum(reads[k][t] for k in ("account", "slot", "code") for t in ("overlay", "hot", "hot_negative"))
    total = served + sum(reads[k]["db"] for k in ("account", "slot", "code"))
    out["hit_rate"] = round(served / total, 4) if total else None
    out["stall_s"] = round(sum(out[k]["stall_s"] for k in KINDS), 6)
    return out


def print_state_reads(reads: dict[str, Any] | None, options: StateOptions | None = None, stream: Any = None) -> None:
    """One line per kind: reads and the share each tier served; then pages and disk bytes."""
    if not reads:
        return
    stream = stream or sys.stderr
    mode = ""
    if options is not None:
        mode = f" ({options.layout}, {'cold' if options.cold else 'warm'}, cache {options.cache_mb or 'default'} MiB, mmap {options.mmap_mb if options.mmap_mb is not None else 'default'} MiB)"
    print(f"state reads{mode}:", file=stream)
    for kind in KINDS:
        c = reads["reads"][kind]
        total = c["overlay"] + c["hot"] + c["hot_negative"] + c["db"]
        if not total:
            continue
        print(
            f"  {kind:<8} {total:>9,}  overlay {c['overlay'] / total:6.1%}  hot {c['hot'] / total:6.1%}  "
            f"negative {c['hot_negative'] / total:6.1%}  sqlite {c['db'] / total:6.1%} ({c['db_absent']:,} absent)",
            file=stream,
        )
    pages = reads.get("sqlite_pages")
    if pages:
        looked = pages["page_hits"] + pages["page_misses"]
        print(f"  sqlite pages: {looked:,} looked up, {pages['page_misses'] / looked if looked else 0:.1%} missed SQLite's page cache", file=stream)
    layout = reads.get("layout")
    if layout and (layout["account_reads"] or layout["slot_reads"]):
        print(f"  lookups per read that missed the hot cache: account {layout['lookups_per_account_read']}, slot {layout['lookups_per_slot_read']} ({layout['layout']})", file=stream)
    print(f"  read from disk: {reads['disk_read_bytes'] / 2**20:,.1f} MiB", file=stream)
    prefetch = reads.get("prefetch")
    if prefetch:
        moved = {k: prefetch[k] for k in KINDS}
        print(
            "  prefetch: " + ", ".join(f"{k} {v['prefetched']:,} read ahead / {v['hit']:,} hit / {v['wasted']:,} wasted / {v['missed']:,} on demand" for k, v in moved.items() if v["prefetched"] or v["missed"]),
            file=stream,
        )
        rate = prefetch["hit_rate"]
        print(f"  served from memory: {rate:.1%} of account, slot and code reads; on-demand reads stalled {prefetch['stall_s']:.3f} s" if rate is not None else "  served from memory: no reads", file=stream)
        if prefetch.get("background_failures"):
            print(f"  background reads ahead that failed (trie-path walks, commit-page probes): {prefetch['background_failures']:,}; no block failed for them", file=stream)
        if prefetch.get("prerun_failures"):
            print(f"  pre-runs whose worker failed (replaced; those blocks went on without the pre-run's keys): {prefetch['prerun_failures']:,}", file=stream)


def state_reads_metrics(tracker: ReadTracker | None) -> str:
    """The run's read tiers in Prometheus text format (appended to `/metrics`)."""
    if tracker is None:
        return ""
    reads = tracker.total(pages=False)
    lines = [
        "# HELP evmpipe_state_reads_total State reads by kind and by the tier that served them (db_absent: SQLite lookups that found nothing).",
        "# TYPE evmpipe_state_reads_total counter",
    ]
    for kind in KINDS:
        for tier, value in reads["reads"][kind].items():
            lines.append(f'evmpipe_state_reads_total{{kind="{kind}",tier="{tier}"}} {value}')
    pages = reads.get("sqlite_pages")
    if pages:
        lines += ["# HELP evmpipe_sqlite_pages_total SQLite page-cache lookups of the node's connection, hit or missed.", "# TYPE evmpipe_sqlite_pages_total counter"]
        lines += [f'evmpipe_sqlite_pages_total{{result="hit"}} {pages["page_hits"]}', f'evmpipe_sqlite_pages_total{{result="miss"}} {pages["page_misses"]}']
    prefetch = reads.get("prefetch")
    if prefetch:
        lines += ["# HELP evmpipe_prefetch_keys_total Keys prefetch read ahead into the hot cache, and what became of them (hit: read from there; wasted: never read before their block committed; missed: read on demand).", "# TYPE evmpipe_prefetch_keys_total counter"]
        for kind in KINDS:
            for outcome in ("prefetched", "hit", "wasted", "missed"):
                lines.append(f'evmpipe_prefetch_keys_total{{kind="{kind}",outcome="{outcome}"}} {prefetch[kind][outcome]}')
        lines += ["# HELP evmpipe_read_stall_seconds_total Seconds threads waited on state reads from SQLite on demand.", "# TYPE evmpipe_read_stall_seconds_total counter"]
        lines += [f'evmpipe_read_stall_seconds_total{{kind="{kind}"}} {prefetch[kind]["stall_s"]}' for kind in KINDS]
        lines += ["# HELP evmpipe_prefetch_background_failures_total Background reads ahead that failed: prefetch's trie-path walks, merkleize's commit-page probes (hints lost; no block failed for them).", "# TYPE evmpipe_prefetch_background_failures_total counter"]
        lines.append(f"evmpipe_prefetch_background_failures_total {prefetch['background_failures']}")
        lines += ["# HELP evmpipe_prefetch_prerun_failures_total Pre-runs (--prefetch-run) whose worker died or passed its deadline (replaced; the block went on without the pre-run's keys).", "# TYPE evmpipe_prefetch_prerun_failures_total counter"]
        lines.append(f"evmpipe_prefetch_prerun_failures_total {prefetch['prerun_failures']}")
    lines += ["# HELP evmpipe_disk_read_bytes_total Bytes this process read from the disk (/proc/self/io read_bytes).", "# TYPE evmpipe_disk_read_bytes_total counter"]
    lines.append(f"evmpipe_disk_read_bytes_total {reads['disk_read_bytes']}")
    return "\n".join(lines) + "\n"


def attach_reads(events: list[Any], number: int, reads: dict[str, Any]) -> None:
    """Put a block's read tiers on its commit stage event (scalars: the trace shows them)."""
    for event in reversed(events[-64:]):
        if event.stage == "commit" and event.block == number:
            served = {tier: sum(reads["reads"][kind][tier] for kind in KINDS) for tier in ("overlay", "hot", "hot_negative", "db", "db_absent")}
            event.counts.update({f"reads_{tier}": value for tier, value in served.items()})
            event.counts["disk_read_bytes"] = reads["disk_read_bytes"]
            prefetch = reads.get("prefetch")
            if prefetch:
                for outcome in ("prefetched", "hit", "wasted", "missed"):
                    event.counts[f"prefetch_{outcome}"] = sum(prefetch[kind][outcome] for kind in KINDS)
                event.counts["read_stall_ms"] = round(prefetch["stall_s"] * 1000, 3)
            return
