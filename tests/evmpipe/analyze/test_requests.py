"""What each request to a worker costs in the model (`plan_block`), and the
calibration's reading of a worker's first request on a block: hand-built blocks."""
from __future__ import annotations

import pytest

from evmpipe.analyze.calibrate import first_request_extra, first_request_share
from evmpipe.analyze.graph import build_graph
from evmpipe.analyze.schedule import BlockModel, Overheads, file_time, plan_block
from pipeline.events import StageEvent
from tests.evmpipe.analyze.test_graph_schedule import independent

REQUESTS = Overheads(request_master=0.25, request_worker=0.5)


def _block(txs: int = 16) -> BlockModel:
    return BlockModel(build_graph(independent(txs)), chains=list(range(txs)))


def _work(block: BlockModel, members: list[int]) -> float:
    return sum(block.graph.seconds[i] for i in members)


def test_each_request_costs_its_worker_and_the_master_once() -> None:
    block = _block()
    plan = plan_block("optimistic", block, 1, REQUESTS)
    assert len(plan.parts) == 4  # four chunks per worker
    for _, cpu, members in plan.parts:
        assert cpu == pytest.approx(_work(block, members) + 0.5)
    # the master's share is taken with the first transaction of each chunk
    assert sum(plan.validate) == pytest.approx(4 * 0.25)
    assert [plan.validate[min(members)] for _, _, members in plan.parts] == [pytest.approx(0.25)] * 4


def test_declared_at_two_workers_sends_more_requests_and_pays_for_each() -> None:
    block = _block()
    one, two = plan_block("declared", block, 1, REQUESTS), plan_block("declared", block, 2, REQUESTS)
    # each of the 8 chunks is split by worker: 16 requests, against 4 at one worker
    assert len(one.parts) == 4 and len(two.parts) == 16
    assert sum(two.validate) == pytest.approx(16 * 0.25)
    assert sum(cpu for _, cpu, _ in two.parts) - sum(cpu for _, cpu, _ in one.parts) == pytest.approx(12 * 0.5)


def test_prefetchs_sender_recovery_costs_a_request_per_worker() -> None:
    block = BlockModel(build_graph(independent(16)), recover=1.6, chains=list(range(16)))
    plan = plan_block("declared", block, 2, Overheads(senders_per_tx=0.1, request_master=0.25, request_worker=0.5))
    assert plan.senders == pytest.approx(16 * 0.1 / 2 + 0.5)  # each worker's half, and its request
    assert plan.pre == pytest.approx(2 * 0.25)  # the master sends two and takes two replies


def test_every_worker_used_pays_its_first_request_on_a_block() -> None:
    block = _block()
    costs = Overheads(first_request_per_tx=0.1)
    for workers in (1, 2):
        plan = plan_block("declared", block, workers, costs)
        extra = [cpu - _work(block, members) for _, cpu, members in plan.parts]
        firsts = {worker: number for number, (worker, _, _) in reversed(list(enumerate(plan.parts)))}
        # 16 transactions × 0.1: on each worker's first chunk only
        assert [e for number, e in enumerate(extra) if number in firsts.values()] == [pytest.approx(1.6)] * workers
        assert sum(extra) == pytest.approx(1.6 * workers)


def _worker_event(block: int | None, start: float, end: float) -> StageEvent:
    return StageEvent("worker 0", block, 0, start, end, True, {})


def test_the_first_request_on_a_block_is_read_against_the_blocks_others() -> None:
    events = [
        # block 2: 5 s, then 2 s and 2 s, then a short remainder (left out of the median)
        _worker_event(2, 0.0, 5.0), _worker_event(2, 5.0, 7.0), _worker_event(2, 7.0, 9.0), _worker_event(2, 9.0, 9.5),
        _worker_event(3, 10.0, 11.0), _worker_event(3, 11.0, 12.0),  # two requests: nothing to read
        _worker_event(None, 12.0, 13.0),  # sender recovery: no block
    ]
    assert first_request_extra(events, {2, 3}) == {2: pytest.approx(3.0)}
    # per block the median over runs, never below zero; per transaction of those blocks
    assert first_request_share({2: [3.0, 1.0, 2.0], 4: [-1.0]}, {2: 10, 4: 10}) == pytest.approx((2.0 + 0.0) / 20)
    assert first_request_share({}, {2: 10}) == 0.0


def test_each_worker_opens_the_database_once_per_run() -> None:
    block = _block()
    costs = Overheads(worker_start=1.0)
    two = [block, block]
    # one worker: once, on its first chunk (16 transactions of 1 s at most per block)
    plain = file_time("optimistic", two, 1, 2, Overheads())
    assert file_time("optimistic", two, 1, 2, costs) == pytest.approx(plain + 1.0)
    # two workers on two cores: both open it at once, each on its own core
    plain = file_time("optimistic", two, 2, 3, Overheads())
    assert file_time("optimistic", two, 2, 3, costs) == pytest.approx(plain + 1.0)
    # sequential has no workers
    assert file_time("sequential", two, 1, 1, costs) == pytest.approx(file_time("sequential", two, 1, 1, Overheads()))


def test_the_ideal_scheduler_pays_no_worker_start() -> None:
    blocks = [_block(), _block()]
    assert file_time("ideal", blocks, 4, 4, Overheads(worker_start=5.0)) == pytest.approx(file_time("ideal", blocks, 4, 4, Overheads()))
