"""Prefetch's background trie-path walk: it runs in the nursery the prefetch stage
holds while it runs, merkleize walks only what it did not cover, a walk that fails
changes no root and is counted (events, ledger, /metrics), and a pipeline that is
cancelled cancels the walk with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import stages.prefetch as prefetch_stage
from consensus_stub.blockfile import iter_blocks, read_header
from evmpipe.demo import sample_path
from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.datadir import open_datadir
from pipeline.events import EventLog
from pipeline.node import build_stages
from pipeline.runner import run_pipeline
from pipeline.state_options import ReadTracker, state_reads_metrics
from state.warm import PathWarm

SAMPLE = Path(sample_path())


class RaisingPool:
    """A reader pool whose reads fail (a disk gone away)."""

    def __init__(self, pool: Any) -> None:
        self.size = pool.size

    async def map(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("disk gone")


class HangingPool:
    """A reader pool whose reads never end; `entered` is set at the first one."""

    def __init__(self, pool: Any) -> None:
        self.size = pool.size
        self.entered = trio.Event()

    async def map(self, *args: Any, **kwargs: Any) -> None:
        self.entered.set()
        await trio.sleep_forever()


def _run(tmp_path: Path, main: Any) -> tuple[list[int | None], list[Any], Any]:
    """Replay the sample through the five stages with `main(run)`, where `run()`
    runs the pipeline: the blocks committed, the events, the read tracker."""
    header = read_header(SAMPLE)
    store = open_datadir(tmp_path / "db", header.schedule, header.genesis_header_rlp, header.alloc, synchronous="OFF")
    committed: list[int | None] = []
    events = EventLog(log_events=False)
    try:
        chain = ChainState.open(store, header.schedule)
        tracker = ReadTracker(store, chain.overlay)
        stages = build_stages(chain)

        async def source():
            for seq, record in enumerate(iter_blocks(SAMPLE)):
                yield BlockInput(seq, record.rlp, {"number": record.number, "hash": record.hash})

        async def sink(block: InFlightBlock) -> None:
            assert block.error is None, block.error  # merkleize rejects a wrong root
            committed.append(block.number)

        async def run() -> None:
            await run_pipeline(source, stages, sink, chain=chain, events=events)

        trio.run(main, run, stages)
        prefetch_stage.reader_events(events, stages, since=0.0)
        return committed, events.events, tracker
    finally:
        store.close()


def _walks(stages: list[Any]) -> list[PathWarm]:
    return list(next(s for s in stages if isinstance(s, prefetch_stage.PrefetchStage)).walks)


def test_walks_end_with_the_pipeline_and_merkleize_skips_what_they_covered(tmp_path: Path) -> None:
    async def main(run: Any, stages: list[Any]) -> None:
        await run()
        assert all(w.state in ("done", "taken") and w.ended.is_set() for w in _walks(stages))  # none left behind

    committed, events, tracker = _run(tmp_path, main)
    assert committed == [1, 2, 3, 4]
    walks = [e for e in events if e.stage == "path walk"]
    assert walks and all(e.counts["state"] == "done" and e.counts["prefetch_path_predicted"] > 0 for e in walks)
    assert all(not any(k.startswith("prefetch_path_") for k in e.counts) for e in events if e.stage == "merkleize")  # prefetch's counts, on prefetch's track
    settled = [e.counts for e in events if e.stage == "merkleize" and e.counts.get("path_walk") == "done"]
    assert settled and all(c["warm_covered"] > 0 for c in settled)
    assert tracker.total()["prefetch"]["background_failures"] == 0


def test_a_failed_walk_changes_no_root_and_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = prefetch_stage.walk_predicted

    async def failing(pool: Any, *args: Any) -> None:
        await real(RaisingPool(pool), *args)

    monkeypatch.setattr(prefetch_stage, "walk_predicted", failing)
    seen: list[PathWarm] = []

    async def main(run: Any, stages: list[Any]) -> None:
        await run()
        seen.extend(_walks(stages))

    committed, events, tracker = _run(tmp_path, main)
    assert committed == [1, 2, 3, 4]  # every state root checked by merkleize
    failed = [w for w in seen if w.state == "failed"]
    assert failed and all("disk gone" in w.error for w in failed)
    assert all(w.state in ("failed", "taken") for w in seen)
    total = tracker.total()["prefetch"]["background_failures"]
    assert total == len(failed)
    assert any(e.counts.get("path_walk") == "failed" for e in events if e.stage == "merkleize")
    assert [e.counts["state"] for e in events if e.stage == "path walk"] == ["failed"] * len(failed)
    later = [e.counts.get("background_failures", 0) for e in events if e.stage == "prefetch"]
    assert max(later) > 0  # reported on the prefetch events that follow a failure
    assert f"evmpipe_prefetch_background_failures_total {total}" in state_reads_metrics(tracker)


def test_a_walk_is_cancelled_with_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = prefetch_stage.walk_predicted
    hanging: list[HangingPool] = []

    async def hang(pool: Any, *args: Any) -> None:
        hanging.append(HangingPool(pool))
        await real(hanging[-1], *args)

    monkeypatch.setattr(prefetch_stage, "walk_predicted", hang)
    states: list[str] = []

    async def main(run: Any, stages: list[Any]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            while not hanging:
                await trio.sleep(0.01)
            await hanging[0].entered.wait()
            nursery.cancel_scope.cancel()
        # back in this task, before trio.run ends: the walk was the pipeline's, not a
        # system task's, so it has ended already
        states.extend(w.state for w in _walks(stages))

    committed, _, tracker = _run(tmp_path, main)
    assert "failed" in states and "walking" not in states
    assert tracker.total()["prefetch"]["background_failures"] == 0  # a cancellation is no failure
