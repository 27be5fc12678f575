"""Hand-built dependency graphs with known critical paths and known schedules."""
from __future__ import annotations

import pytest

from evmpipe.analyze.graph import TxAccess, build_graph, critical_path
from evmpipe.analyze.schedule import BlockModel, Overheads, block_time, list_schedule, predict, reexecuted

POOL = b"\x0a" * 20
HOT = b"\x0b" * 20
COINBASE = b"\xcc" * 20
NONE = Overheads()


def sender(n: int) -> bytes:
    return bytes([0x10 + n]) * 20


def transfer(n: int, to: bytes, seconds: float = 1.0, nonce: int = 0) -> TxAccess:
    """A plain transfer as recorded with deferred credits: the sender's nonce and
    balance read and written, the recipient and the fee recipient credited."""
    me = sender(n)
    return TxAccess(
        seconds,
        reads={("nonce", me): nonce, ("balance", me): 10**18},
        writes={("nonce", me): nonce + 1, ("balance", me): 10**18 - 1000, ("exists", me): True, ("credit", to): 500, ("credit", COINBASE): 7},
    )


def swap(n: int, reserves: int, seconds: float = 1.0) -> TxAccess:
    """A swap: reads the pool's reserves slot and writes it."""
    access = transfer(n, POOL, seconds)
    access.reads[("slot", POOL, 8)] = reserves
    access.writes[("slot", POOL, 8)] = reserves + 1
    return access


def chain_of(count: int) -> list[TxAccess]:
    return [swap(n, reserves=n) for n in range(count)]


def independent(count: int) -> list[TxAccess]:
    return [transfer(n, bytes([0x80 + n]) * 20) for n in range(count)]


def star(count: int) -> list[TxAccess]:
    """`count` deposits to one hot wallet, then one transaction sent by it."""
    txs = [transfer(n, HOT) for n in range(count)]
    txs.append(TxAccess(1.0, reads={("nonce", HOT): 0, ("balance", HOT): 4000}, writes={("nonce", HOT): 1, ("balance", HOT): 3000, ("credit", COINBASE): 7}))
    return txs


def mix() -> list[TxAccess]:
    """Three swaps on one pool interleaved with five independent transfers."""
    swaps = chain_of(3)
    others = [transfer(10 + n, bytes([0x90 + n]) * 20) for n in range(5)]
    return [swaps[0], others[0], others[1], swaps[1], others[2], others[3], swaps[2], others[4]]


def test_chain_critical_path_is_the_whole_block() -> None:
    graph = build_graph(chain_of(4))
    assert [sorted(p) for p in graph.preds] == [[], [0], [1], [2]]
    assert graph.preds[1][0] == {("slot", POOL, 8)}
    assert critical_path(graph) == (4.0, [0, 1, 2, 3])
    for workers in (1, 2, 64):
        assert list_schedule(graph, workers) == 4.0


def test_independent_transfers_have_no_edges_despite_the_fee_recipient() -> None:
    graph = build_graph(independent(8))
    assert all(not p for p in graph.preds)
    assert critical_path(graph)[0] == 1.0
    assert [list_schedule(graph, w) for w in (1, 2, 4, 8, 16)] == [8.0, 4.0, 2.0, 1.0, 1.0]


def test_star_deposits_commute_and_the_hot_wallet_waits_for_all() -> None:
    graph = build_graph(star(8))
    assert all(not p for p in graph.preds[:8])
    assert sorted(graph.preds[8]) == list(range(8))
    assert graph.preds[8][0] == {("balance", HOT)}
    assert critical_path(graph) == (2.0, [0, 8])
    assert [list_schedule(graph, w) for w in (1, 2, 4, 8)] == [9.0, 5.0, 3.0, 2.0]


def test_mix_schedules_the_chain_first() -> None:
    graph = build_graph(mix())
    assert {i for i, p in enumerate(graph.preds) if p} == {3, 6}
    assert critical_path(graph) == (3.0, [0, 3, 6])
    assert list_schedule(graph, 1) == 8.0
    assert list_schedule(graph, 2) == 4.0  # chain on one worker, transfers on the other
    assert list_schedule(graph, 8) == 3.0


def test_a_write_that_changes_nothing_is_no_dependency() -> None:
    first = transfer(0, HOT)
    first.writes[("exists", POOL)] = True  # touched a contract that existed
    first.reads[("code", POOL)] = b"\x01" * 32
    second = transfer(1, HOT)
    second.reads[("exists", POOL)] = True
    assert build_graph([first, second]).preds[1] == {}


def test_system_writes_make_no_edge_but_count_as_seen_changed() -> None:
    reader = transfer(0, HOT)
    reader.reads[("slot", POOL, 1)] = 5
    graph = build_graph([reader], system_writes={("slot", POOL, 1): 5})
    assert graph.preds == [{}]
    assert graph.system == [{("slot", POOL, 1)}]
    assert reexecuted(graph) == [True]


def test_optimistic_chain_reexecutes_all_but_the_first() -> None:
    graph = build_graph(chain_of(4))
    assert reexecuted(graph) == [False, True, True, True]
    # four transactions: one worker, four chunks of one; each comes back after 1 s;
    # the master then runs the three dependent ones again, one after another
    block = BlockModel(graph)
    assert block_time("optimistic", block, 4, 8, NONE) == pytest.approx(5.0)


def test_optimistic_independent_block_splits_evenly() -> None:
    block = BlockModel(build_graph(independent(16)))
    # two workers, eight chunks of two, alternating: the last back at 8 s
    assert block_time("optimistic", block, 2, 3, NONE) == pytest.approx(8.0)
    # the master is a third process: on two cores all three share them while it works
    assert block_time("optimistic", block, 2, 2, NONE) == pytest.approx(8.0)
    costly = Overheads(validate_per_tx=0.5)
    # two chunks come back every 2 s and take the master 2 s to validate: it keeps
    # up, and the last two chunks' validation comes after the last result
    assert block_time("optimistic", block, 2, 3, costly) == pytest.approx(10.0)


def test_processor_sharing_slows_everyone_when_cores_are_short() -> None:
    block = BlockModel(build_graph(independent(16)))
    # one core for two workers and the master: the 16 s of work take 16 s
    assert block_time("optimistic", block, 2, 1, NONE) == pytest.approx(16.0)


def test_declared_chain_on_one_worker_runs_nothing_twice() -> None:
    graph = build_graph(chain_of(4))
    block = BlockModel(graph, chains=[0, 0, 0, 0])
    assert reexecuted(graph, block.chains) == [False] * 4
    assert block_time("declared", block, 4, 8, NONE) == pytest.approx(4.0)
    # a wrong prediction: every transaction its own chain, all three run again
    wrong = BlockModel(graph, chains=[0, 1, 2, 3])
    assert reexecuted(graph, wrong.chains) == [False, True, True, True]


def test_declared_mix_places_the_chain_whole() -> None:
    graph = build_graph(mix())
    chains = [0, 1, 2, 0, 4, 5, 0, 7]
    block = BlockModel(graph, chains=chains)
    assert reexecuted(graph, chains) == [False] * 8
    # longest chain first to the least loaded worker: worker 0 gets the chain (3 s)
    # and one transfer, worker 1 four transfers; 4 s each
    assert block_time("declared", block, 2, 3, NONE) == pytest.approx(4.0)
    assert block_time("ideal", block, 2, None, NONE) == pytest.approx(4.0)


def test_serial_work_bounds_the_prediction() -> None:
    block = BlockModel(build_graph(independent(8)), serial=8.0)
    curves = predict([block], NONE, (1, 8))
    assert curves["ideal"]["1"] == pytest.approx(1.0)
    assert curves["ideal"]["8"] == pytest.approx(16.0 / 9.0)  # Amdahl: 8 s serial + 1 s


def test_others_load_slows_parallel_runs_more_than_the_sequential_one() -> None:
    from evmpipe.analyze.schedule import load_from_available

    block = BlockModel(build_graph(independent(16)), serial=2.0)
    quiet = predict([block], NONE, (2,), cores=2)["optimistic"]["2"]
    # two busy processes of others on two cores: alone, ours gets two thirds of a
    # core (sequential: 18 s become 27 s); three of ours get half a core each
    loaded = predict([block], NONE, (2,), cores=2, load=2.0)["optimistic"]["2"]
    assert loaded < quiet
    assert block_time("sequential", block, 2, 2, NONE, load=2.0) == pytest.approx(27.0)
    assert load_from_available(2, 2.0) == 0.0
    assert load_from_available(2, 1.0) == pytest.approx(2.0)  # 2 of ours + 2 others: 1 core


def test_conflicts_are_named_and_ranked_by_the_time_they_serialise() -> None:
    from evmpipe.analyze.conflicts import SYNC_TOPIC, Namer, conflicts

    # two deposits to the hot wallet, then two transactions it sends; and a pool
    # chain of three swaps (1 s each)
    txs = star(2)
    second = TxAccess(1.0, reads={("nonce", HOT): 1, ("balance", HOT): 3000}, writes={("nonce", HOT): 2, ("balance", HOT): 2000})
    txs.append(second)
    txs += [swap(20 + k, reserves=k) for k in range(3)]
    graph = build_graph(txs)
    namer = Namer()
    namer.observe([(POOL, SYNC_TOPIC)], [])
    senders = [sender(0), sender(1), HOT, HOT, sender(20), sender(21), sender(22)]
    found = conflicts(graph, senders, namer)
    # both force 3 s; the hot wallet's involves more transactions
    assert [(c.kind, c.serial_seconds, c.txs) for c in found] == [("nonce-chain", 3.0, 4), ("pool-reserves", 3.0, 3)]
    names = {c.kind: c.description for c in found}
    assert names["pool-reserves"].startswith("reserves of pool 0x0a0a")
    assert "nonce chain of sender 0x0b0b" in names["nonce-chain"] and "credits" in names["nonce-chain"]


def test_ideal_under_load_is_no_better_than_on_idle_cores() -> None:
    block = BlockModel(build_graph(independent(16)), serial=2.0)
    for workers in (1, 2, 4):
        idle = predict([block], NONE, (workers,), cores=workers)["ideal"][str(workers)]
        loaded = predict([block], NONE, (workers,), cores=workers, load=3.0)["ideal"][str(workers)]
        assert loaded <= idle + 1e-9


def test_a_storage_wipe_changes_every_slot_of_the_account() -> None:
    wiper = TxAccess(1.0, reads={("exists", POOL): True}, writes={("wipe", POOL): True, ("exists", POOL): False})
    reader = TxAccess(1.0, reads={("slot", POOL, 12345): 0})
    other = TxAccess(1.0, reads={("slot", HOT, 1): 0})
    graph = build_graph([wiper, reader, other])
    assert graph.preds == [{}, {0: {("slot", POOL, 12345)}}, {}]
