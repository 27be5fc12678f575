"""What a running node counts, and its Prometheus text exposition.

A node runs for days, so it cannot keep every stage event as `replay` does: the
events are folded into counters as they happen (`NodeEvents`), and only the newest
ones are kept, for `--trace` at exit. `/metrics` renders the counters together with
the store's cache counters and the chain's blocks in flight.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from pipeline.events import EventLog, StageEvent
from pipeline.summary import STAGE_ORDER

TRACE_EVENTS_KEPT = 50_000


@dataclass
class StageStats:
    busy: float = 0.0
    runs: int = 0
    failed: int = 0
    queue: int = 0  # input-queue depth when the last block left the stage


@dataclass
class NodeStats:
    started: float = field(default_factory=time.monotonic)
    committed: int = 0
    transactions: int = 0
    gas: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason code
    speculated: int = 0
    reexecuted: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    stages: dict[str, StageStats] = field(default_factory=lambda: {s: StageStats() for s in STAGE_ORDER})
    intake_running: bool = False
    intake_error: str | None = None
    skipped_records: int = 0
    rpc_requests: int = 0
    rpc_errors: int = 0
    http_requests: int = 0

    def stage(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats())


class NodeEvents(EventLog):
    """An `EventLog` that folds events into `NodeStats` and keeps only the newest."""

    def __init__(self, stats: NodeStats, *, log_events: bool = False, keep: int = TRACE_EVENTS_KEPT) -> None:
        super().__init__(log_events=log_events)
        self.stats = stats
        self.events: deque[StageEvent] = deque(maxlen=keep)  # type: ignore[assignment]
        self._first_start: dict[int, float] = {}

    def record(self, event: StageEvent) -> None:
        super().record(event)
        stage = self.stats.stage(event.stage)
        stage.busy += event.seconds
        stage.runs += 1
        stage.failed += not event.ok
        stage.queue = int(event.counts.get("queue_in", 0))
        self._first_start.setdefault(event.seq, event.start)
        if event.stage == "execute" and event.ok and "reexecuted" in event.counts:
            self.stats.speculated += int(event.counts.get("txs", 0))
            self.stats.reexecuted += int(event.counts["reexecuted"])
        if event.stage == "commit":
            first = self._first_start.pop(event.seq, event.start)
            if event.ok:
                self.stats.latency_sum += event.end - first
                self.stats.latency_count += 1


def _line(name: str, value: float | int, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        name = f"{name}{{{inner}}}"
    if isinstance(value, float):
        return f"{name} {value:.6f}"
    return f"{name} {value}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str] | None, float | int]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [_line(name, value, labels) for labels, value in samples]
    return lines


def render_metrics(stats: NodeStats, *, head_number: int | None, in_flight: int, caches: dict[str, Any]) -> str:
    """Prometheus text format 0.0.4; `caches` maps a name to an `LRUCache`."""
    stages = [s for s in STAGE_ORDER if s in stats.stages] + [s for s in stats.stages if s not in STAGE_ORDER]
    out: list[str] = []
    out += _family("evmpipe_head_block_number", "gauge", "Number of the committed head block.", [(None, -1 if head_number is None else head_number)])
    out += _family("evmpipe_blocks_committed_total", "counter", "Blocks committed since the node started.", [(None, stats.committed)])
    out += _family("evmpipe_blocks_rejected_total", "counter", "Invalid blocks not committed, by reason code.", [({"code": c}, n) for c, n in sorted(stats.rejected.items())])
    out += _family("evmpipe_transactions_total", "counter", "Transactions in committed blocks.", [(None, stats.transactions)])
    out += _family("evmpipe_gas_total", "counter", "Gas used by committed blocks.", [(None, stats.gas)])
    out += _family("evmpipe_blocks_in_flight", "gauge", "Blocks executed but not yet committed or rejected.", [(None, in_flight)])
    out += _family("evmpipe_stage_busy_seconds_total", "counter", "Time each stage spent working on blocks.", [({"stage": s}, stats.stages[s].busy) for s in stages])
    out += _family("evmpipe_stage_blocks_total", "counter", "Blocks each stage handled.", [({"stage": s}, stats.stages[s].runs) for s in stages])
    out += _family("evmpipe_stage_failures_total", "counter", "Blocks each stage rejected or saw rejected.", [({"stage": s}, stats.stages[s].failed) for s in stages])
    out += _family("evmpipe_stage_queue_depth", "gauge", "Blocks waiting in front of each stage when it last finished one.", [({"stage": s}, stats.stages[s].queue) for s in stages])
    out += _family("evmpipe_block_latency_seconds", "summary", "From a block's first stage start to its commit.", [])
    out += [_line("evmpipe_block_latency_seconds_sum", stats.latency_sum), _line("evmpipe_block_latency_seconds_count", stats.latency_count)]
    out += _family("evmpipe_speculated_transactions_total", "counter", "Transactions executed speculatively (optimistic strategy).", [(None, stats.speculated)])
    out += _family("evmpipe_reexecuted_transactions_total", "counter", "Speculated transactions executed again after a read conflict.", [(None, stats.reexecuted)])
    out += _family("evmpipe_cache_hits_total", "counter", "Store LRU cache hits.", [({"cache": n}, c.hits) for n, c in caches.items()])
    out += _family("evmpipe_cache_misses_total", "counter", "Store LRU cache misses.", [({"cache": n}, c.misses) for n, c in caches.items()])
    out += _family("evmpipe_cache_entries", "gauge", "Entries held by each store LRU cache.", [({"cache": n}, len(c)) for n, c in caches.items()])
    out += _family("evmpipe_intake_running", "gauge", "1 while the block source is read, 0 once intake stopped.", [(None, int(stats.intake_running))])
    out += _family("evmpipe_intake_errors_total", "counter", "Block source errors that stopped intake.", [(None, int(stats.intake_error is not None))])
    out += _family("evmpipe_records_skipped_total", "counter", "Records not handed to the pipeline (duplicates, conflicts with committed blocks).", [(None, stats.skipped_records)])
    out += _family("evmpipe_http_requests_total", "counter", "HTTP requests served.", [(None, stats.http_requests)])
    out += _family("evmpipe_rpc_requests_total", "counter", "JSON-RPC calls (each call of a batch counts).", [(None, stats.rpc_requests)])
    out += _family("evmpipe_rpc_errors_total", "counter", "JSON-RPC calls answered with an error.", [(None, stats.rpc_errors)])
    out += _family("evmpipe_uptime_seconds", "gauge", "Seconds since the node started.", [(None, time.monotonic() - stats.started)])
    return "\n".join(out) + "\n"
