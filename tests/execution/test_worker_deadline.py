"""A worker that hangs or dies: killed at its request deadline, replaced, and its
block run again sequentially; the node still stops on a signal.

Before request deadlines a stopped worker (SIGSTOP) held its block, and the node,
forever: the request was shielded and had no deadline."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from consensus_stub.blockfile import iter_blocks, read_header
from evmpipe.demo import sample_path
from evmpipe.replay import replay_file
from execution.workers import WorkerPool
from pipeline.datadir import DB_NAME
from state.store import StateStore
from tests.node.helpers import append, start_node, wait_until, write_chain

SAMPLE = Path(sample_path())
BLOCKS = list(iter_blocks(SAMPLE))


def _head_hash(datadir: Path) -> bytes:
    store = StateStore(datadir / DB_NAME)
    try:
        head = store.head()
        assert head is not None
        return head.hash
    finally:
        store.close()


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_failed_worker_is_replaced_and_its_block_runs_sequentially(tmp_path: Path, how: str) -> None:
    with WorkerPool(2, request_deadline=3.0) as pool:
        victim = pool._procs[0]
        os.kill(victim.pid, signal.SIGSTOP if how == "stopped" else signal.SIGKILL)
        started = time.monotonic()
        outcome = replay_file(str(SAMPLE), str(tmp_path / "db"), synchronous="OFF", strategy="optimistic", pool=pool)
        elapsed = time.monotonic() - started
        assert pool.replaced == 1 and pool._procs[0] is not victim and pool._procs[0].is_alive()
    assert outcome.rejected is None and outcome.committed == len(BLOCKS)
    assert _head_hash(tmp_path / "db") == BLOCKS[-1].hash
    fallbacks = [e.counts["fallback"] for e in outcome.events.events if e.stage == "execute" and "fallback" in e.counts]
    assert len(fallbacks) == 1
    assert ("gave no reply within 3 s" if how == "stopped" else "died") in fallbacks[0]
    assert elapsed < 60  # the deadline, a restart and four blocks; not forever


def _worker_pids(parent: int) -> list[int]:
    """The node's speculative workers: its children started by multiprocessing's spawn."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("signals", [1, 2], ids=["drain", "cancel"])
def test_sigterm_with_a_hung_worker_still_exits(tmp_path: Path, signals: int) -> None:
    """One SIGTERM drains: the hung request meets its deadline, the block runs
    sequentially, the node exits 0. Two cancel the wait at once."""
    source = tmp_path / "chain.blocks"
    write_chain(source, read_header(SAMPLE), BLOCKS[:1])
    deadline = "5" if signals == 1 else "600"
    node = start_node(tmp_path / "db", str(source), tmp_path / "node.log", "--strategy", "optimistic", "--workers", "2", "--worker-deadline", deadline)
    try:
        wait_until(lambda: node.head() == 1, what="block 1")
        workers = wait_until(lambda: _worker_pids(node.process.pid), what="the worker processes")
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        for record in BLOCKS[1:]:
            append(source, record)
        time.sleep(1.5)  # the node polls every 0.05 s: block 2 is at the stopped workers
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        if signals == 2:
            time.sleep(0.5)
            node.process.send_signal(signal.SIGTERM)
        code = node.process.wait(120)
        elapsed = time.monotonic() - started
    finally:
        node.kill()
    if signals == 1:
        assert code == 0, node.log.read_text()[-3000:]
        assert node.logged("worker_replaced"), node.log.read_text()[-3000:]
    else:
        assert elapsed < 30, f"took {elapsed:.1f} s with a 600 s deadline"
