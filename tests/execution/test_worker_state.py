"""Worker processes never speculate on state they should not see.

A pool outlives a run (bench, tests): a new database at the same path must not be
read through the old connection or cache, or every transaction would conflict (the
result would still be right, the parallelism gone)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evmpipe.demo import sample_path
from evmpipe.replay import replay_file
from execution.workers import WorkerPool


def _reexecuted(outcome) -> list[int]:  # type: ignore[no-untyped-def]
    executed = sorted((e for e in outcome.events.events if e.stage == "execute"), key=lambda e: e.block)
    return [int(e.counts.get("reexecuted", 0)) for e in executed]


@pytest.mark.parametrize("strategy", ["optimistic", "declared"])
def test_a_new_database_at_the_same_path_is_read_afresh(strategy: str, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    with WorkerPool(2) as pool:
        first = replay_file(sample_path(), str(datadir), synchronous="OFF", strategy=strategy, pool=pool)
        shutil.rmtree(datadir)
        second = replay_file(sample_path(), str(datadir), synchronous="OFF", strategy=strategy, pool=pool)
    assert first.rejected is None and second.rejected is None
    assert first.committed == second.committed > 0
    assert _reexecuted(second) == _reexecuted(first)
