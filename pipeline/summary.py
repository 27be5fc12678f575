"""What a run did, from its stage events: the numbers of the end-of-run table."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.events import StageEvent

STAGE_ORDER = ("prefetch", "execute", "validate", "merkleize", "commit")


@dataclass
class RunSummary:
    blocks: int = 0
    txs: int = 0
    gas: int = 0
    rejected: int = 0
    wall_seconds: float = 0.0
    stage_busy: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    reexecuted: int = 0
    speculated: int = 0  # transactions executed speculatively (optimistic blocks)
    worker_cpu: float = 0.0
    parallel_cpu: float = 0.0  # master and worker CPU during the execute stage of parallel blocks
    parallel_wall: float = 0.0  # wall time of those execute stages
    conflict_keys: dict[str, int] = field(default_factory=dict)

    @property
    def mgas_per_s(self) -> float:
        return self.gas / 1e6 / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def tx_per_s(self) -> float:
        return self.txs / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def overlap(self) -> float:
        """Sum of stage busy time over wall time: above 1 means stages ran at once."""
        return sum(self.stage_busy.values()) / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(events: list[StageEvent], wall_seconds: float) -> RunSummary:
    """Totals and per-stage busy time; a block's latency runs from its first stage's
    start to its commit's end."""
    summary = RunSummary(wall_seconds=wall_seconds)
    first_start: dict[int, float] = {}
    for event in events:
        if event.stage not in STAGE_ORDER:
            continue  # worker tracks: in the trace, not in the stage table
        summary.stage_busy[event.stage] = summary.stage_busy.get(event.stage, 0.0) + event.seconds
        first_start.setdefault(event.seq, event.start)
        if event.stage == "execute" and event.ok:
            summary.txs += int(event.counts.get("txs", 0))
            summary.gas += int(event.counts.get("gas", 0))
            if "reexecuted" in event.counts:
                summary.speculated += int(event.counts.get("txs", 0))
                summary.reexecuted += int(event.counts["reexecuted"])
                summary.worker_cpu += float(event.counts.get("worker_cpu", 0.0))
                summary.parallel_cpu += float(event.counts.get("worker_cpu", 0.0)) + float(event.counts.get("master_cpu", 0.0))
                summary.parallel_wall += event.seconds
                for part in str(event.counts.get("top_conflicts", "")).split(";"):
                    if part:
                        label, _, n = part.rpartition("x")
                        summary.conflict_keys[label] = summary.conflict_keys.get(label, 0) + int(n)
        if event.stage == "commit":
            if event.ok and "keys" in event.counts:
                summary.blocks += 1
                summary.latencies.append(event.end - first_start[event.seq])
    summary.rejected = len({e.seq for e in events if not e.ok})
    return summary


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    rows = [
        ("blocks", f"{summary.blocks:,}"),
        ("transactions", f"{summary.txs:,}"),
        ("gas", f"{summary.gas:,}"),
        ("wall time", f"{summary.wall_seconds:.2f} s"),
        ("Mgas/s", f"{summary.mgas_per_s:.2f}"),
        ("tx/s", f"{summary.tx_per_s:.1f}"),
        ("block latency p50 / p99", f"{summary.percentile(0.5) * 1000:.1f} / {summary.percentile(0.99) * 1000:.1f} ms"),
        ("stage overlap (busy / wall)", f"{summary.overlap:.2f}"),
    ]
    if summary.speculated:
        rows.append(("re-executed (conflicts)", f"{summary.reexecuted:,} of {summary.speculated:,} ({100 * summary.reexecuted / summary.speculated:.1f} %)"))
        rows.append(("worker CPU", f"{summary.worker_cpu:.2f} s"))
        if summary.parallel_wall:
            rows.append(("execute stage CPU / wall", f"{summary.parallel_cpu / summary.parallel_wall:.2f}"))
        top = sorted(summary.conflict_keys.items(), key=lambda kv: -kv[1])[:3]
        if top:
            rows.append(("most conflicted keys", ", ".join(f"{label} ×{n}" for label, n in top)))
    if summary.rejected:
        rows.insert(1, ("rejected blocks", str(summary.rejected)))
    return rows


def stage_rows(summary: RunSummary) -> list[tuple[str, str, str]]:
    total = sum(summary.stage_busy.values()) or 1.0
    stages = [s for s in STAGE_ORDER if s in summary.stage_busy] + [s for s in summary.stage_busy if s not in STAGE_ORDER]
    return [
        (stage, f"{summary.stage_busy[stage]:.3f} s", f"{100 * summary.stage_busy[stage] / total:.1f} %")
        for stage in stages
    ]


def render_summary(summary: RunSummary, *, title: str = "evmpipe run", console: object | None = None) -> None:
    """Print the summary: a rich table on a terminal, aligned text otherwise."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    console.print(table)  # type: ignore[attr-defined]
    stages = Table(title="per-stage busy time")
    stages.add_column("stage")
    stages.add_column("busy", justify="right")
    stages.add_column("share", justify="right")
    for row in stage_rows(summary):
        stages.add_row(*row)
    console.print(stages)  # type: ignore[attr-defined]
