"""A verified replay, as the strategy tests run it."""
from __future__ import annotations

from pathlib import Path

from evmpipe.replay import replay_file
from execution.workers import WorkerPool
from pipeline.events import StageEvent


def replay_verified(native: Path, datadir: Path, strategy: str, pool: WorkerPool, blocks: int) -> list[StageEvent]:
    """Replay `native` with `strategy` and `--verify`; require every block committed
    and verified; return the execute stage's events, in block order."""
    outcome = replay_file(str(native), str(datadir), synchronous="OFF", strategy=strategy, verify=True, pool=pool if strategy != "sequential" else None)
    assert outcome.input_error is None
    assert outcome.rejected is None, outcome.rejected.error.describe() if outcome.rejected and outcome.rejected.error else ""
    assert outcome.committed == blocks
    executed = sorted((e for e in outcome.events.events if e.stage == "execute"), key=lambda e: e.block or 0)
    assert all(e.counts.get("verified") == 1 for e in executed)
    return executed
