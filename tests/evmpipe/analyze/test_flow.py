"""The pipeline model (`evmpipe.analyze.flow`), `auto`'s simulated choices and the
calibration's readings of stage events: hand-built plans with known times."""
from __future__ import annotations

import pytest

from evmpipe.analyze.calibrate import _dispatch_gaps, worker_spans
from evmpipe.analyze.flow import BlockPlan, run
from evmpipe.analyze.graph import build_graph
from evmpipe.analyze.schedule import BlockModel, Overheads, auto_choices, auto_decisions, file_time, plan_block, predict
from execution.strategies import AUTO_MIN_TXS
from pipeline.events import StageEvent
from tests.evmpipe.analyze.test_graph_schedule import chain_of, independent

NONE = Overheads()


def chunk_plan(chunk: float, post: float, txs: int = 4) -> BlockPlan:
    """One chunk of `chunk` seconds on worker 0, then `post` seconds of the main process."""
    return BlockPlan(parts=[(0, chunk, list(range(txs)))], validate=[0.0] * txs, post=post)


def test_sequential_blocks_add_up_in_one_process() -> None:
    # the main process is one interpreter: its stages never run at once, on any core count
    plans = [BlockPlan(pre=1.0, head=2.0, post=1.0)] * 3
    assert run(plans, 1, 1) == pytest.approx(12.0)
    assert run(plans, 1, 8) == pytest.approx(12.0)


def test_the_next_block_runs_on_a_worker_while_the_main_process_commits() -> None:
    plans = [chunk_plan(4.0, post=2.0)] * 2
    # two cores: block 0's post (2 s) overlaps block 1's chunk (4 s): 4 + 4 + 2
    assert run(plans, 1, 2) == pytest.approx(10.0)
    # one core: the overlap buys nothing, 12 s of work take 12 s
    assert run(plans, 1, 1) == pytest.approx(12.0)


def test_prefetch_runs_ahead_but_only_so_far() -> None:
    plans = [BlockPlan(pre=1.0, parts=[(0, 3.0, [0])], validate=[0.0])] * 4
    # prefetch of blocks 1-3 overlaps the chunks: 1 + 4 × 3
    assert run(plans, 1, 2) == pytest.approx(13.0)
    # no lookahead past the block in execution: prefetch of block k+1 waits for k's execute
    assert run(plans, 1, 2, lookahead=1) == pytest.approx(16.0)


def test_setup_delays_the_chunks_and_head_runs_beside_them() -> None:
    assert run([BlockPlan(setup=1.0, parts=[(0, 2.0, [0])], validate=[0.0])], 1, 2) == pytest.approx(3.0)
    assert run([BlockPlan(head=1.0, parts=[(0, 2.0, [0])], validate=[0.0])], 1, 2) == pytest.approx(2.0)


def test_a_worker_waits_for_its_reply_to_be_taken_before_the_next_chunk() -> None:
    plan = BlockPlan(parts=[(0, 1.0, [0, 1]), (0, 1.0, [2, 3])], validate=[0.0] * 4, message=0.25, reply_per_tx=0.5)
    # per chunk: message 0.25, work 1, reply 2 × 0.5
    assert run([plan], 1, 2) == pytest.approx(4.5)


def test_execution_waits_for_the_senders_the_workers_recover() -> None:
    plan = BlockPlan(senders=1.0, parts=[(0, 1.0, [0]), (1, 1.0, [1])], validate=[0.0, 0.0], message=0.5)
    # each worker: message, 1 s of recovery; then message, 1 s of the chunk
    assert run([plan], 2, 2) == pytest.approx(3.0)


def test_a_worker_serves_senders_asked_meanwhile_before_the_blocks_next_chunk() -> None:
    # one request at a time per worker, in the order asked (the pool's fair lock):
    # block 1's sender recovery, asked by prefetch at 0.5 s while block 0's first
    # chunk runs, goes before block 0's second chunk
    plans = [BlockPlan(parts=[(0, 1.0, [0]), (0, 1.0, [1])], validate=[0.0, 0.0]), BlockPlan(pre=0.5, senders=0.5, parts=[(0, 1.0, [0])], validate=[0.0])]
    trace: list[tuple[str, int, float, float]] = []
    assert run(plans, 1, 2, trace=trace) == pytest.approx(3.5)
    assert [end for stage, block, _, end in trace if (stage, block) == ("pre", 1)] == [pytest.approx(1.5)]
    assert [end for stage, block, _, end in trace if (stage, block) == ("exec", 0)] == [pytest.approx(2.5)]


def test_validation_follows_the_chunks_in_block_order() -> None:
    # chunk 0 (tx 0) on worker 0 takes 3 s, chunk 1 (tx 1) on worker 1 1 s; the
    # master validates tx 0 (1 s) once it is back, then tx 1
    plan = BlockPlan(parts=[(0, 3.0, [0]), (1, 1.0, [1])], validate=[1.0, 1.0])
    assert run([plan], 2, 3) == pytest.approx(5.0)


def test_the_file_model_of_sequential_is_the_sum_of_the_blocks() -> None:
    blocks = [BlockModel(build_graph(independent(8)), serial=3.0, recover=0.5, system=0.5, pre=1.0) for _ in range(3)]
    assert blocks[0].post == pytest.approx(1.0)
    assert file_time("sequential", blocks, 1, 1, NONE) == pytest.approx(3 * (3.0 + 8.0))


def test_optimistic_overlaps_one_blocks_serial_work_with_the_next_blocks_workers() -> None:
    blocks = [BlockModel(build_graph(independent(16)), serial=4.0, pre=0.0) for _ in range(2)]
    # 2 workers, 16 × 1 s each: 8 s per block; post 4 s of block 0 beside block 1's chunks
    plan = plan_block("optimistic", blocks[0], 2, NONE)
    assert sum(cpu for _, cpu, _ in plan.parts) == pytest.approx(16.0) and plan.post == pytest.approx(4.0)
    assert file_time("optimistic", blocks, 2, 3, NONE) == pytest.approx(8.0 + 8.0 + 4.0)
    # against 2 × 20 s sequentially
    assert predict(blocks, NONE, (2,), cores=3)["optimistic"]["2"] == pytest.approx(40.0 / 20.0)


def test_declared_recovers_senders_on_the_workers_before_execution() -> None:
    block = BlockModel(build_graph(chain_of(4)), serial=2.0, recover=2.0, chains=[0, 0, 0, 0])
    plan = plan_block("declared", block, 2, Overheads(senders_per_tx=0.5))
    assert plan.pre == 0.0 and plan.senders == pytest.approx(2.0)  # 4 × 0.5 s, on one worker (4 transactions)
    assert plan_block("sequential", block, 2, NONE).pre == pytest.approx(2.0)  # the main process recovers them


def test_ideal_at_one_worker_on_one_core_is_sequential() -> None:
    blocks = [BlockModel(build_graph(independent(8)), serial=2.0, pre=1.0) for _ in range(2)]
    assert predict(blocks, NONE, (1,))["ideal"]["1"] == pytest.approx(1.0)


def _block(txs: int, gas_per_tx: int, chains: list[int] | None = None, dependent: bool = False) -> BlockModel:
    graph = build_graph(chain_of(txs) if dependent else independent(txs))
    return BlockModel(graph, gas=gas_per_tx * txs, chains=chains or list(range(txs)))


def test_auto_choices_are_its_own_rules() -> None:
    small = _block(AUTO_MIN_TXS - 1, 50_000)
    assert auto_choices([small], 2) == [("sequential:small", True)]
    transfers = _block(30, 21_000)
    assert auto_choices([transfers], 2)[0][0] == "sequential:light"
    assert auto_choices([transfers], 4)[0][0] == "declared"
    # predicted independent and nothing re-executed: the next block optimistically,
    # without its senders recovered ahead
    calls = _block(30, 50_000)
    assert auto_choices([calls, calls], 2) == [("declared", True), ("optimistic", False)]
    # a pool: one predicted chain of the whole block runs sequentially
    pool = _block(30, 100_000, chains=[0] * 30, dependent=True)
    assert auto_choices([pool], 2) == [("sequential:serial", True)]


def test_prefetch_decides_a_blocks_plan_before_the_blocks_ahead_of_it_have_run() -> None:
    seen = []
    plan = BlockPlan(pre=0.1, head=1.0, post=0.1)

    def at_prefetch(block: int, executed: int) -> BlockPlan:
        seen.append((block, executed))
        return plan

    run([plan] * 6, 1, 1, at_prefetch=at_prefetch)
    # lookahead 4: blocks 0-3 are prefetched before block 0 has run, block 4 after it
    assert seen == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1), (5, 2)]


def test_auto_optimistic_blocks_prefetched_before_the_first_block_ran_have_senders_ahead() -> None:
    calls = _block(30, 50_000)
    blocks = [calls, calls, calls]
    choices, independent = auto_decisions(blocks, 2)
    assert choices == ["declared", "optimistic", "optimistic"]
    assert independent == [False, True, True, True]
    ov = Overheads(worker_per_tx=0.01, senders_per_tx=0.02, message=0.001)
    ahead = [plan_block(c, b, 2, ov, True) for c, b in zip(choices, blocks)]
    assert ahead[1].senders > 0 and plan_block("optimistic", calls, 2, ov, False).senders == 0
    # all three blocks reach prefetch before the first has run: all three recover
    # their senders on the workers ahead, as the pipeline does
    assert file_time("auto", blocks, 2, 2, ov) == pytest.approx(run(ahead, 2, 2))


def test_auto_goes_back_to_declared_after_an_optimistic_block_conflicts() -> None:
    calls = _block(30, 50_000)
    conflicting = _block(30, 50_000, dependent=True)  # every call after the first re-executed
    choices = [choice for choice, _ in auto_choices([calls, conflicting, calls], 2)]
    assert choices == ["declared", "optimistic", "declared"]


def test_auto_runs_the_block_after_a_mostly_re_executed_one_sequentially() -> None:
    # declared chains predicted wrong (each its own), nothing learned: most run twice
    wrong = _block(30, 50_000, chains=list(range(30)), dependent=True)
    wrong.chains = [0] + list(range(1, 30))
    choices = [choice for choice, _ in auto_choices([wrong, wrong, wrong], 2)]
    assert choices == ["declared", "sequential:conflicts", "declared"]


def _event(stage: str, block: int | None, start: float, end: float, **counts: float) -> StageEvent:
    return StageEvent(stage, block, 0, start, end, True, dict(counts))


def test_calibration_reads_the_workers_requests_and_the_gap_before_the_first() -> None:
    events = [
        _event("execute", 1, 10.0, 20.0, worker_cpu=4.0),
        _event("worker 0", None, 1.0, 2.0),
        _event("worker 0", 1, 11.0, 13.0),
        _event("worker 0", 1, 14.0, 16.0),
        _event("worker 1", 1, 12.0, 19.0),
    ]
    assert _dispatch_gaps(events) == [pytest.approx(1.0)]
    busy, waited, requests = worker_spans(events, {1})
    assert (busy, waited, requests) == (pytest.approx(11.0), pytest.approx(1.0), 3)
    assert worker_spans(events, {None}) == (pytest.approx(1.0), 0.0, 1)  # type: ignore[arg-type]
