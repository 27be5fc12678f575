"""The pre-run's worker pool session per trio run, and its auto default. (The worker
crashing or passing its deadline: tests/stages/test_prefetch_replay.py, which has
the replay fixture.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import trio

from execution.workers import WorkerPool

def test_a_pool_held_across_trio_runs_has_a_session_per_run() -> None:
    pool = WorkerPool(1)  # no processes: only the per-run locks are looked at
    sessions = []

    async def one() -> None:
        session = pool.run_session()
        assert pool.run_session() is session and len(session.locks) == 1
        sessions.append(session)

    trio.run(one)
    trio.run(one)
    assert sessions[0] is not sessions[1] and pool._session is None


def test_the_auto_default_wants_two_cores_and_a_large_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import prerun

    small, large = tmp_path / "small.sqlite", tmp_path / "large.sqlite"
    small.write_bytes(b"x" * 4096)
    with open(large, "wb") as out:
        out.truncate(prerun.AUTO_MIN_BYTES)  # sparse: no disk used
    monkeypatch.setattr(prerun.os, "cpu_count", lambda: 2)
    assert prerun.wanted(None, large) and not prerun.wanted(None, small) and not prerun.wanted(None, tmp_path / "absent")
    assert prerun.wanted(True, small) and not prerun.wanted(False, large)  # the flag decides when given
    monkeypatch.setattr(prerun.os, "cpu_count", lambda: 1)
    assert not prerun.wanted(None, large)
