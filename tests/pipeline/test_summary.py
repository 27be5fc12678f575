"""The end-of-run numbers, from stage events."""
from __future__ import annotations

from pipeline.events import StageEvent
from pipeline.summary import summarize, summary_rows


def _execute(seq: int, start: float, end: float, **counts: object) -> StageEvent:
    return StageEvent("execute", seq + 1, seq, start, end, True, dict(counts))


def test_execute_cpu_over_wall_counts_parallel_blocks_only() -> None:
    events = [
        _execute(0, 0.0, 1.0, txs=100, gas=10, reexecuted=5, worker_cpu=1.2, master_cpu=0.6),
        _execute(1, 1.0, 2.0, txs=100, gas=10, reexecuted=0, worker_cpu=0.8, master_cpu=0.4),
        _execute(2, 2.0, 3.0, txs=10, gas=1, master_cpu=1.0),  # sequential: not counted
    ]
    summary = summarize(events, wall_seconds=3.0)
    assert summary.speculated == 200 and summary.reexecuted == 5
    assert summary.parallel_wall == 2.0
    assert abs(summary.parallel_cpu - 3.0) < 1e-9
    rows = dict(summary_rows(summary))
    assert rows["execute stage CPU / wall"] == "1.50"
    assert rows["re-executed (conflicts)"] == "5 of 200 (2.5 %)"
