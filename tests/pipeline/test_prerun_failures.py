"""The pre-run's rare paths: its worker crashing, and passing its deadline. The
worker is replaced, the block goes on without the pre-run's keys, every root is
reached, and each failure is counted on the prefetch event and in the run's reads
(the summary and /metrics take them from there)."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from evmpipe.gen.genstate import build_state
from evmpipe.gen.overstate import generate_over_state
from evmpipe.gen.shape import StateShape
from evmpipe.replay import replay_file
from execution.workers import WorkerPool
from pipeline.prerun import PRERUN_DEADLINE, PreRun
from pipeline.state_options import StateOptions, state_reads_metrics

BLOCKS = 3


@pytest.fixture(scope="module")
def state_and_blocks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("prerun")
    build_state(folder / "d", StateShape(accounts=1500, seed=5), progress=False)
    generate_over_state(folder / "d", "mixed", BLOCKS, 20, 2, folder / "mixed.blocks")
    return folder / "d", folder / "mixed.blocks"


def test_a_crashed_or_late_worker_is_replaced_and_the_blocks_go_on(state_and_blocks: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datadir, blocks = state_and_blocks
    copy = tmp_path / "d"
    shutil.copytree(datadir, copy)
    real_run = PreRun.run
    seen: list[PreRun] = []

    async def failing_run(self: PreRun, chain: Any, header: Any, *args: Any) -> Any:
        seen.append(self)
        if len(seen) == 1:  # the worker dies before the request reaches it
            await trio.to_thread.run_sync(self._start_worker)
            process = self.pool._procs[0]
            os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=10)
        elif len(seen) == 2:  # the worker does not answer in time
            self.pool.request_deadline = 1e-4
        try:
            return await real_run(self, chain, header, *args)
        finally:
            self.pool.request_deadline = PRERUN_DEADLINE

    monkeypatch.setattr(PreRun, "run", failing_run)
    outcome = replay_file(str(blocks), str(copy), synchronous="OFF", state_options=StateOptions(prefetch_run=True))
    assert outcome.rejected is None and outcome.last == BLOCKS  # every block's state root was checked
    prerun = seen[0]
    assert len(seen) >= 3 and all(each is prerun for each in seen)
    assert prerun.failures == 2 and prerun.pool.replaced == 2
    prefetch = {e.block: e.counts for e in outcome.events.events if e.stage == "prefetch"}
    assert sorted(n for n, counts in prefetch.items() if counts.get("prerun_failed")) == [1, 2]
    assert prefetch[3].get("prerun_txs", 0) > 0 and "prerun_failed" not in prefetch[3]  # the new worker serves
    assert outcome.state_reads is not None and outcome.state_reads["prefetch"]["prerun_failures"] == 2
    assert "evmpipe_prefetch_prerun_failures_total 2" in state_reads_metrics_text(outcome)


def state_reads_metrics_text(outcome: Any) -> str:
    """/metrics' prefetch lines for a finished run's reads."""

    class Done:
        def total(self, *, pages: bool = True) -> dict[str, Any]:
            return dict(outcome.state_reads)

    return state_reads_metrics(Done())  # type: ignore[arg-type]


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
