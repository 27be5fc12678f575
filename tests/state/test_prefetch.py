"""Prefetch's parts: the reader pool, the store's `fill_cache` against a racing
commit, the level-by-level trie walk, the ledger, and the predicted read sets."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from eth_hash.auto import keccak

from pipeline.read_sets import CodePredictor, HotKeys, ReadSet, add_templates, authority, predict_reads
from state.account import BLANK_ROOT, Account
from state.cache import MISSING
from state.diff import StateDiff
from state.layout import LayoutStats, walk
from state.merkle import merkleize, sealed
from state.paths import PathWalk
from state.readers import ReaderPool, batches, fetch_accounts, fetch_code, fetch_nodes, fetch_slots
from state.store import StateStore
from state.trie import update_root
from state.warm import WarmCounts, warm_paths, warm_state
from tests.state.test_store import addr, make_commit

A, B, C = addr(1), addr(2), addr(3)


ROOTS: dict[str, bytes] = {}


def _store(tmp_path: Path) -> StateStore:
    """A, B (with code) and two slots of A, with their tries (root in ROOTS)."""
    store = StateStore(tmp_path / "state.sqlite", synchronous="OFF")
    diff = StateDiff()
    diff.accounts[A] = Account(balance=100)
    diff.accounts[B] = Account(balance=7, code_hash=keccak(b"\x60\x00"))
    diff.code[keccak(b"\x60\x00")] = b"\x60\x00"
    diff.set_storage(A, 1, 11)
    diff.set_storage(A, 2, 22)

    def no_node(node_hash: bytes) -> bytes:
        raise KeyError(node_hash)

    result = merkleize(diff, BLANK_ROOT, lambda address: None, no_node)
    ROOTS[store.path] = result.root
    store.commit_block(make_commit(0, sealed(diff, result.accounts), nodes=result.nodes))
    store.clear_cache()
    store.nodes.clear()
    return store


def _commit(store: StateStore, number: int, **accounts: Account) -> None:
    diff = StateDiff()
    for name, account in accounts.items():
        diff.accounts[{"A": A, "B": B, "C": C}[name]] = account
    store.commit_block(make_commit(number, diff))


# -- the race: a value read before a commit must not be cached after it -----------


def test_a_prefetched_value_older_than_a_commit_is_not_cached(tmp_path: Path) -> None:
    """Exactly prefetch's race: the pool reads A (balance 100) before block 1 commits
    A = 200; the commit caches 200; then the prefetched 100 arrives. It must not
    replace 200 — while B, which the commit left alone, is cached as read."""
    store = _store(tmp_path)
    pool = ReaderPool(store.path, 2)
    epoch = store.cache_epoch()
    read = pool.call(fetch_accounts, [A, B])  # on its own connection, before the commit
    assert read[A].balance == 100  # type: ignore[union-attr]
    _commit(store, 1, A=Account(balance=200))
    dropped = store.fill_cache(epoch, 2, accounts=read)
    assert dropped == 1
    assert store.get_account(A).balance == 200  # type: ignore[union-attr]
    assert store.accounts.peek(B) == read[B]
    assert store.prefetch.stale == 1
    pool.close()
    store.close()


def test_a_prefetch_that_lands_before_the_commits_cache_update_is_overwritten(tmp_path: Path) -> None:
    """The other order: the old value reaches the cache first, the commit's cache
    update then writes the new one over it."""
    store = _store(tmp_path)
    pool = ReaderPool(store.path, 1)
    epoch = store.cache_epoch()
    read = pool.call(fetch_accounts, [A])
    assert store.fill_cache(epoch, 1, accounts=read) == 0
    _commit(store, 1, A=Account(balance=300))
    assert store.get_account(A).balance == 300  # type: ignore[union-attr]
    pool.close()
    store.close()


def test_a_fill_racing_commits_on_threads_never_leaves_a_stale_value(tmp_path: Path) -> None:
    """Many rounds of read / commit / fill interleaved by real threads: after every
    commit the cache holds the committed value or nothing."""
    store = _store(tmp_path)
    pool = ReaderPool(store.path, 2)
    for number in range(1, 30):
        epoch = store.cache_epoch()
        barrier = threading.Barrier(2)
        results: dict[str, object] = {}

        def reader() -> None:
            barrier.wait()
            results["read"] = pool.call(fetch_accounts, [A])

        thread = threading.Thread(target=reader)
        thread.start()
        barrier.wait()
        _commit(store, number, A=Account(balance=1000 + number))
        thread.join()
        store.fill_cache(epoch, number, accounts=results["read"])  # type: ignore[arg-type]
        cached = store.accounts.peek(A)
        assert cached is MISSING or cached == Account(balance=1000 + number)
        assert store.get_account(A) == Account(balance=1000 + number)
    pool.close()
    store.close()


def test_fill_after_unwind_or_many_commits_caches_no_account_or_slot(tmp_path: Path) -> None:
    store = _store(tmp_path)
    epoch = store.cache_epoch()
    store.clear_cache()  # what unwind, redo and reorg do
    assert store.fill_cache(epoch, 1, accounts={B: Account(balance=7)}, slots={(A, 1): 11}) == 2
    assert store.accounts.peek(B) is MISSING and store.slots.peek((A, 1)) is MISSING
    node = b"\xc2\x80\x80"
    store.fill_cache(epoch, 1, nodes={keccak(node): node})  # content-addressed: never stale
    assert store.nodes.peek(keccak(node)) == node
    store.close()


# -- the pool ---------------------------------------------------------------------


def test_pool_reads_every_table_and_overlaps_threads(tmp_path: Path) -> None:
    store = _store(tmp_path)
    pool = ReaderPool(store.path, 3)
    found = pool.call(fetch_accounts, [A, C])
    assert found[A].balance == 100 and found[C] is None  # type: ignore[union-attr]
    assert pool.call(fetch_slots, [(A, 1), (A, 2), (A, 3)]) == {(A, 1): 11, (A, 2): 22, (A, 3): 0}
    assert pool.call(fetch_code, [keccak(b"\x60\x00")]) == {keccak(b"\x60\x00"): b"\x60\x00"}
    root = ROOTS[store.path]
    assert root in pool.call(fetch_nodes, [root, b"\x00" * 32])
    got: list[object] = []

    async def main() -> None:
        await pool.map(fetch_accounts, [[A], [B], [C], [A, B]], got.append)

    trio.run(main)
    assert len(got) == 4 and pool.stats.batches >= 8
    assert len(pool._all) <= 3  # never more connections than threads
    pool.close()
    with pytest.raises(RuntimeError):
        pool.call(fetch_accounts, [A])
    store.close()


def test_batches_are_sorted_and_spread_over_threads() -> None:
    keys = [bytes([i % 256, i // 256]) for i in range(1000)]
    cut = batches(keys, 4)
    assert [k for b in cut for k in b] == sorted(keys)
    assert len(cut) == 8
    assert batches([], 4) == [] and batches([b"x"], 4) == [[b"x"]]


# -- trie paths -------------------------------------------------------------------


def test_path_walk_finds_what_a_single_walk_finds() -> None:
    nodes: dict[bytes, bytes] = {}
    changes = {keccak(i.to_bytes(4, "big")): i.to_bytes(3, "big") * 11 for i in range(300)}
    root, new = update_root(nodes.__getitem__, BLANK_ROOT, changes)
    nodes.update(new)
    keys = list(changes)[:50] + [keccak(b"absent-%d" % i) for i in range(20)]
    paths = PathWalk()
    for key in keys:
        paths.add(root, key)
    levels = 0
    while paths.wanted():
        levels += 1
        paths.advance({h: nodes[h] for h in paths.wanted()})
    assert levels < 8
    for key in keys:
        value, _ = walk(lambda h, owner, path: nodes[h], root, key, LayoutStats())
        assert paths.values[(root, key)] == value
    partial = PathWalk()
    partial.add(root, keys[0])
    partial.advance({})  # a node no one has: the path stops, counted missing
    assert partial.missing == {root} and not partial.wanted()


def test_warm_paths_puts_every_node_of_the_paths_in_the_cache(tmp_path: Path) -> None:
    store = _store(tmp_path)
    pool = ReaderPool(store.path, 2)
    root = ROOTS[store.path]
    storage_root = store.get_account(A).storage_root  # type: ignore[union-attr]
    store.nodes.clear()
    counts = WarmCounts()

    def none(_: bytes) -> bytes | None:
        return None

    trio.run(warm_paths, pool, store, 1, root, [A, B], [(A, storage_root, 1)], none, counts)
    assert counts.read["node"] >= 2 and store.nodes.peek(root) is not MISSING
    before = store.reads.counts["node"]["db"]
    stats = LayoutStats("trie")
    walk(store.get_trie_node, root, keccak(A), stats)
    walk(store.get_trie_node, storage_root, keccak((1).to_bytes(32, "big")), stats)
    assert store.reads.counts["node"]["db"] == before  # all from the cache
    assert store.prefetch.hits["node"] >= 2
    pool.close()
    store.close()


def test_warm_state_reads_only_what_is_not_cached_and_counts_the_ledger(tmp_path: Path) -> None:
    store = _store(tmp_path)
    pool = ReaderPool(store.path, 2)
    store.get_account(A)  # cached already
    counts = WarmCounts()
    known = trio.run(warm_state, pool, store, 5, {A, B, C}, {(A, 1), (A, 9)}, counts)
    assert known[B] == Account(balance=7, code_hash=keccak(b"\x60\x00")) and known[C] is None
    assert counts.cached == 1 and counts.read["account"] == 2 and counts.read["slot"] == 2 and counts.read["code"] == 1
    db_before = store.reads.counts["slot"]["db"]
    assert store.get_storage(A, 1) == 11 and store.get_storage(A, 9) == 0
    assert store.reads.counts["slot"]["db"] == db_before
    assert store.prefetch.hits["slot"] == 2
    store.prefetch.expire(5)
    assert store.prefetch.wasted["account"] == 2  # B and C were never read
    pool.close()
    store.close()


# -- predictions ------------------------------------------------------------------


def _tx(to: bytes | None, data: bytes = b"", value: int = 0, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(to=to, data=data, value=value, **extra)


def test_predicted_read_set_sources() -> None:
    token = addr(9)
    block = SimpleNamespace(
        header=SimpleNamespace(coinbase=addr(7)),
        withdrawals=[SimpleNamespace(address=addr(8))],
        transactions=[_tx(A, value=1), _tx(token, b"\xa9\x05\x9c\xbb" + B.rjust(32, b"\0") + (5).to_bytes(32, "big"), access_list=[(C, [3])])],
    )
    hot = HotKeys()
    hot.add_block([addr(10)], [(token, 0)])
    hot.add_block([addr(10)], [(token, 0)])
    reads = predict_reads(block, [B, A], hot)
    assert {A, B, addr(7), addr(8), token, C, addr(10)} <= reads.accounts
    assert (C, 3) in reads.slots and (token, 0) in reads.slots
    assert {"base", "access_list", "hot"} <= set(reads.sources)
    assert A in reads.written_accounts and addr(7) in reads.written_accounts
    assert predict_reads(block, [], None).accounts >= {A, token}  # senders not known yet


def test_templates_carry_over_to_contracts_with_the_same_code() -> None:
    """Learned from calls of token X, predicted for token Y of the same code."""
    code = keccak(b"token code")
    x, y = addr(20), addr(21)
    predictor = CodePredictor()

    def balance_slot(holder: bytes) -> int:
        return int.from_bytes(keccak(holder.rjust(32, b"\0") + (3).to_bytes(32, "big")), "big")

    for sender, to in ((A, B), (B, C), (C, A)):
        tx = _tx(x, b"\xa9\x05\x9c\xbb" + to.rjust(32, b"\0") + (1).to_bytes(32, "big"))
        result = SimpleNamespace(
            reads={("code", x): code, ("nonce", sender): 0, ("slot", x, balance_slot(sender)): 5, ("slot", x, balance_slot(to)): 0},
            writes={("slot", x, balance_slot(sender)): 4, ("slot", x, balance_slot(to)): 1},
        )
        predictor.learn_block([tx], [sender], [result], addr(7))
    call = _tx(y, b"\xa9\x05\x9c\xbb" + addr(30).rjust(32, b"\0") + (1).to_bytes(32, "big"))
    block = SimpleNamespace(header=SimpleNamespace(coinbase=addr(7)), transactions=[call])
    reads = ReadSet()
    add_templates(reads, block, [addr(31)], predictor, {y: code})
    assert {(y, balance_slot(addr(31))), (y, balance_slot(addr(30)))} <= reads.slots
    assert (y, balance_slot(addr(30))) in reads.written_slots
    other = ReadSet()
    add_templates(other, block, [addr(31)], predictor, {y: keccak(b"other code")})
    assert not other.slots  # another code: nothing learned for it


def test_authority_is_the_signer_of_the_authorization() -> None:
    import rlp
    from eth_keys.datatypes import PrivateKey

    key = PrivateKey(b"\x11" * 32)
    signature = key.sign_msg(b"\x05" + rlp.encode([1, A, 0]))
    auth = SimpleNamespace(chain_id=1, address=A, nonce=0, y_parity=signature.v, r=signature.r, s=signature.s)
    assert authority(auth) == key.public_key.to_canonical_address()
    assert authority(SimpleNamespace(chain_id=1, address=A, nonce=0, y_parity=0, r=0, s=0)) is None


def test_prerun_chooses_creations_and_unlearned_calls_and_their_senders_earlier_transactions() -> None:
    from pipeline.prerun import chosen, with_earlier

    token = addr(9)
    txs = [
        SimpleNamespace(to=addr(1), data=b"", value=1),  # a transfer: predicted without a pre-run
        SimpleNamespace(to=b"", data=b"\x60\x00", value=0),  # a creation
        SimpleNamespace(to=token, data=b"\xa9\x05\x9c\xbb" + bytes(64), value=0),  # a call no template knows
    ]
    assert chosen(txs, CodePredictor()) == [1, 2]
    a, b = addr(20), addr(21)
    # b's creation at 3 needs b's transfer at 1 first (its nonce); a's later transaction is not needed
    ran, chains = with_earlier([3], [a, b, a, b, a])
    assert ran == [1, 3] and chains == {1: 1, 3: 1}
    ran, chains = with_earlier([0, 2], [a, b, None])
    assert ran == [0, 2] and chains == {}


def test_prerun_keys_are_read_and_written_predictions() -> None:
    from execution.speculate import SpecResult
    from pipeline.read_sets import add_prerun

    token, holder = addr(9), addr(10)
    result = SpecResult(0, True, reads={("code", token): b"h", ("slot", token, 5): 0, ("warm", holder): True}, writes={("slot", token, 6): 1, ("nonce", holder): 2})
    reads = ReadSet()
    add_prerun(reads, [result])
    assert reads.accounts == {token, holder} and reads.slots == {(token, 5), (token, 6)}
    assert reads.written_slots == {(token, 6)} and reads.written_accounts == {token, holder}
    assert reads.sources["prerun"] == 4
