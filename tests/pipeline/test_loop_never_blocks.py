"""No SQLite call on the event loop: every stage reads and writes the database on
threads, so the loop stays free to feed the workers and serve requests.

The store's connections (writer and reader) are wrapped so that any statement run on the thread that runs
`trio.run` is recorded with the Python stack that made it; a replay with each
strategy must record none. (Before `ChainState` the head, headers, trie nodes and
the commit's fork choice were read on the loop.)"""
from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus_stub.blockfile import iter_blocks, read_header
from evmpipe.demo import sample_path
from execution.strategies import make_strategy
from execution.workers import WorkerPool, pool_session
from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.datadir import open_datadir
from pipeline.node import build_stages
from pipeline.runner import run_pipeline

SAMPLE = Path(sample_path())


class LoopGuard:
    """A connection proxy recording statements run on the event loop's thread."""

    def __init__(self, inner: Any, on_loop: list[str] | None = None) -> None:
        self._inner = inner
        self.loop_thread: int | None = None
        self.on_loop: list[str] = [] if on_loop is None else on_loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in ("execute", "executemany", "executescript"):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.loop_thread:
                stack = "".join(traceback.format_stack(limit=6)[:-1])
                self.on_loop.append(f"{str(args[0])[:80]}\n{stack}")
            return attribute(*args, **kwargs)

        return guarded


def guard_store(store: Any) -> tuple[LoopGuard, LoopGuard]:
    """Wrap the store's writer and reader connections; both record into one list."""
    writer = LoopGuard(store._db)
    reader = LoopGuard(store._reader, writer.on_loop)
    store._db, store._reader = writer, reader
    return writer, reader


def unguard_store(store: Any, guards: tuple[LoopGuard, LoopGuard]) -> None:
    store._db, store._reader = guards[0]._inner, guards[1]._inner


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as workers:
        yield workers


@pytest.mark.parametrize("strategy", ["sequential", "optimistic", "declared", "auto"])
def test_no_sqlite_on_the_event_loop(tmp_path: Path, strategy: str, pool: WorkerPool) -> None:
    header = read_header(SAMPLE)
    store = open_datadir(tmp_path / "db", header.schedule, header.genesis_header_rlp, header.alloc, synchronous="OFF")
    guards = guard_store(store)
    guard = guards[0]
    committed: list[int | None] = []
    try:
        chain = ChainState.open(store, header.schedule)

        async def source():
            for seq, record in enumerate(iter_blocks(SAMPLE)):
                yield BlockInput(seq, record.rlp, {"number": record.number, "hash": record.hash})

        async def sink(block: InFlightBlock) -> None:
            assert block.error is None, block.error
            committed.append(block.number)

        async def main() -> None:
            for each in guards:
                each.loop_thread = threading.get_ident()
            workers = pool if strategy != "sequential" else None
            async with pool_session(workers):
                await run_pipeline(source, build_stages(chain, make_strategy(strategy, workers)), sink, chain=chain)

        trio.run(main)
    finally:
        unguard_store(store, guards)
        store.close()
    assert committed == [1, 2, 3, 4]
    assert guard.on_loop == [], "SQLite on the event loop:\n" + "\n".join(guard.on_loop[:3])


def test_the_guard_sees_a_call_on_the_loop(tmp_path: Path) -> None:
    """The control: a read made on the loop is recorded, one made on a thread is not."""
    header = read_header(SAMPLE)
    store = open_datadir(tmp_path / "db", header.schedule, header.genesis_header_rlp, header.alloc, synchronous="OFF")
    guards = guard_store(store)
    guard = guards[0]

    async def main() -> None:
        for each in guards:
            each.loop_thread = threading.get_ident()
        await trio.to_thread.run_sync(store.head)
        assert guard.on_loop == []
        store.head()

    try:
        trio.run(main)
    finally:
        unguard_store(store, guards)
        store.close()
    assert len(guard.on_loop) == 1 and "meta" in guard.on_loop[0]
