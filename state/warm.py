"""Warming the store's hot cache through the reader pool, off the event loop.

`warm_state` reads accounts and slots not cached yet (flat tables, or trie walks
when the layout has no flat reads), then the code of the accounts it found;
`warm_paths` reads the trie nodes on the paths of keys about to be written, so
that merkleization finds them in memory. Every SQLite read runs on a pool thread,
which also puts what it read into the store (`StateStore.fill_cache`, with the
cache epoch taken before the read): the event loop only awaits.

`PathWarm` is one block's walk of the paths of its predicted writes, which prefetch
runs in the background (`walk_predicted`) and merkleize settles (`settle`) before
walking what it left: merkleize's exact dirty paths less the keys a finished walk
covered.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
from eth_hash.auto import keccak

from state.account import BLANK_ROOT, EMPTY_CODE_HASH, Account
from state.cache import MISSING
from state.layout import _account_from_rlp
from state.overlay import Overlay
from state.nodekeys import HASH, node_key
from state.paths import PathWalk
from state.readers import ReaderPool, batches, fetch_accounts, fetch_code, fetch_nodes, fetch_slots, probe_transactions
from state.store import StateStore
from state.trie import rlp_item

NodeLookup = Callable[[bytes], bytes | None]
Slot = tuple[bytes, int]


@dataclass
class WarmCounts:
    """One warm-up: keys asked for, already cached, read from SQLite, left out as stale."""

    predicted: int = 0
    cached: int = 0
    read: dict[str, int] = field(default_factory=lambda: {"account": 0, "slot": 0, "code": 0, "node": 0})
    stale: int = 0
    levels: int = 0

    def as_counts(self, prefix: str = "") -> dict[str, int]:
        out = {f"{prefix}predicted": self.predicted, f"{prefix}cached": self.cached, f"{prefix}stale": self.stale}
        out.update({f"{prefix}read_{kind}": n for kind, n in self.read.items() if n})
        if self.levels:
            out[f"{prefix}levels"] = self.levels
        return out


WalkState = Literal["queued", "walking", "done", "failed", "taken"]


@dataclass(eq=False)
class PathWarm:
    """A block's predicted writes whose trie paths prefetch walks in the background:
    queued, walking, then done or failed; or taken back, still queued, by merkleize
    (which then walks those paths itself). Prefetch owns it and its counts; merkleize
    only settles it (`settle`) and reads which keys it covered."""

    number: int
    accounts: frozenset[bytes]
    slots: list[tuple[bytes, bytes, int]]  # (address, storage root as prefetch knew it, slot)
    state: WalkState = "queued"
    counts: WarmCounts = field(default_factory=WarmCounts)
    start: float = 0.0  # perf_counter seconds, while and after it walked
    end: float = 0.0
    ended: trio.Event = field(default_factory=trio.Event)  # set once it is done, failed or taken
    error: str = ""  # why it failed

    def uncovered(self, accounts: Iterable[bytes], slots: Iterable[tuple[bytes, bytes, int]]) -> tuple[list[bytes], list[tuple[bytes, bytes, int]]]:
        """The keys a finished walk did not cover (all of them unless it is done). A
        key is covered whatever root it was walked from: the nodes that changed since
        are in memory (the overlay's, or cached by their commit)."""
        if self.state != "done":
            return list(accounts), list(slots)
        walked = {(address, slot) for address, _, slot in self.slots}
        return [a for a in accounts if a not in self.accounts], [s for s in slots if (s[0], s[2]) not in walked]


async def settle(paths: PathWarm) -> bool:
    """Merkleize's side: take a queued walk back, wait for one under way; whether
    the paths were walked."""
    if paths.state == "queued":
        paths.state = "taken"
        paths.ended.set()
    await paths.ended.wait()
    return paths.state == "done"


async def walk_predicted(pool: ReaderPool, store: StateStore, paths: PathWarm, lookup: NodeLookup) -> None:
    """Walk a queued `PathWarm` from the committed head's root (its storage roots
    as prefetch knew them); what it reads goes into the store's node cache. An
    error (or a cancellation) leaves it failed and propagates."""
    if paths.state != "queued":
        return
    paths.state = "walking"
    paths.start = time.perf_counter()
    try:
        root = await trio.to_thread.run_sync(store._head_root)
        await warm_paths(pool, store, paths.number, root, paths.accounts, paths.slots, lookup, paths.counts)
        paths.state = "done"
    finally:
        if paths.state != "done":
            paths.state = "failed"
        paths.end = time.perf_counter()
        paths.ended.set()


def _filler(store: StateStore, epoch: int, tag: int, kind: str, fetch: Callable[[sqlite3.Connection, list[Any]], dict[Any, Any]], counts: WarmCounts) -> Callable[[sqlite3.Connection, list[Any]], dict[Any, Any]]:
    """A pool function: read a batch, put it into the store's cache (same thread)."""

    def read_and_fill(db: sqlite3.Connection, batch: list[Any]) -> dict[Any, Any]:
        found = fetch(db, batch)
        counts.stale += store.fill_cache(epoch, tag, **{{"account": "accounts", "slot": "slots", "code": "codes", "node": "nodes"}[kind]: found})
        counts.read[kind] += len(batch)
        return found

    return read_and_fill


async def warm_state(pool: ReaderPool, store: StateStore, tag: int, accounts: Iterable[bytes], slots: Iterable[Slot], counts: WarmCounts) -> dict[bytes, Account | None]:
    """Accounts and slots not cached yet, read in parallel, then their accounts' code.
    Returns every account it knows of afterwards (cached or read): the caller finds
    storage roots there."""
    epoch = store.cache_epoch()
    slot_set = set(slots)
    known: dict[bytes, Account | None] = {}
    want_accounts: list[bytes] = []
    for address in set(accounts):
        cached = store.accounts.peek(address)
        if cached is MISSING:
            want_accounts.append(address)
        else:
            known[address] = cached  # type: ignore[assignment]
    want_slots = [key for key in slot_set if store.slots.peek(key) is MISSING]
    counts.predicted += len(known) + len(want_accounts) + len(slot_set)
    counts.cached += len(known)
    counts.cached += len(slot_set) - len(want_slots)

    if store.layout.layout == "flat":
        def got_accounts(found: dict[bytes, Account | None]) -> None:
            known.update(found)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.map, _filler(store, epoch, tag, "account", fetch_accounts, counts), batches(want_accounts, pool.size), got_accounts, tag)
            nursery.start_soon(pool.map, _filler(store, epoch, tag, "slot", fetch_slots, counts), batches(want_slots, pool.size), _ignore, tag)
    else:
        known.update(await _walk_state(pool, store, epoch, tag, want_accounts, want_slots, counts))
    code_hashes = {a.code_hash for a in known.values() if a is not None and a.code_hash != EMPTY_CODE_HASH}
    want_code = [h for h in code_hashes if store.codes.peek(h) is MISSING]
    await pool.map(_filler(store, epoch, tag, "code", fetch_code, counts), batches(want_code, pool.size), _ignore, tag)
    return known


async def _walk_state(pool: ReaderPool, store: StateStore, epoch: int, tag: int, accounts: list[bytes], slots: list[Slot], counts: WarmCounts) -> dict[bytes, Account | None]:
    """Accounts and slots read by walking the tries from the head's root (trie
    layouts): the account paths first, then each slot's path in its storage trie."""
    root = await trio.to_thread.run_sync(store._head_root)
    slot_accounts = {a for a, _ in slots}
    walk = PathWalk()
    for address in set(accounts) | slot_accounts:
        walk.add(root, keccak(address))
    await _run_walk(pool, store, tag, walk, _store_nodes(store), counts)
    found: dict[bytes, Account | None] = {}
    for address in set(accounts) | slot_accounts:
        value = walk.values.get((root, keccak(address)))
        found[address] = None if value is None else _account_from_rlp(value)
    values: dict[Slot, int] = {}
    walk = PathWalk()
    for address, slot in slots:
        account = found.get(address)
        walk.add(account.storage_root if account is not None else BLANK_ROOT, keccak(slot.to_bytes(32, "big")), keccak(address))
    await _run_walk(pool, store, tag, walk, _store_nodes(store), counts)
    for address, slot in slots:
        account = found.get(address)
        leaf = walk.values.get((account.storage_root if account is not None else BLANK_ROOT, keccak(slot.to_bytes(32, "big"))))
        if leaf:
            start, end = rlp_item(leaf, 0)
            values[(address, slot)] = int.from_bytes(leaf[start:end], "big")
        else:
            values[(address, slot)] = 0
    counts.read["account"] += len(accounts)
    counts.read["slot"] += len(slots)
    counts.stale += await trio.to_thread.run_sync(lambda: store.fill_cache(epoch, tag, accounts={a: found[a] for a in accounts}, slots=values))
    return found


async def warm_paths(pool: ReaderPool, store: StateStore, tag: int, root: bytes, accounts: Iterable[bytes], slots: Iterable[tuple[bytes, bytes, int]], lookup: NodeLookup, counts: WarmCounts) -> None:
    """The nodes on the paths of `accounts` in the trie at `root` and of `slots`
    ((address, storage root, slot)) in their storage tries, read into the store's
    node cache. `lookup` finds nodes already in memory (the overlay's, the cache's)."""
    walk = PathWalk()
    for address in accounts:
        walk.add(root, keccak(address))
    for address, storage_root, slot in slots:
        walk.add(storage_root, keccak(slot.to_bytes(32, "big")), keccak(address))
    await _run_walk(pool, store, tag, walk, lookup, counts)


async def _run_walk(pool: ReaderPool, store: StateStore, tag: int, walk: PathWalk, lookup: NodeLookup, counts: WarmCounts) -> None:
    """Level by level: what memory holds is used as it is, the rest read in parallel."""
    while True:
        wanted = walk.wanted()
        if not wanted:
            return
        counts.levels += 1
        nodes: dict[bytes, bytes] = {}
        missing: list[bytes] = []
        for node_hash in wanted:
            node = lookup(node_hash)
            if node is None:
                missing.append(node_hash)
            else:
                nodes[node_hash] = node
        counts.predicted += len(wanted)
        counts.cached += len(nodes)
        if store.trie_scheme != HASH:  # keyed by place: the walk knows where each node sits
            missing = [node_key(store.trie_scheme, *walk.place(h), h) for h in missing]
        await pool.map(_filler(store, 0, tag, "node", fetch_nodes, counts), batches(missing, pool.size), nodes.update, tag)
        await trio.to_thread.run_sync(walk.advance, nodes)


async def warm_commit(pool: ReaderPool, tag: int, nodes: Iterable[bytes], tx_hashes: Iterable[bytes]) -> None:
    """Read the pages a block's commit will insert into: its new trie nodes' and its
    transactions' places in their hash-keyed tables (keys spread evenly, so each
    lands on a page of its own, cold in a large state). The lookups find nothing;
    they leave the pages in the OS page cache, where the commit's writer finds them."""
    await pool.map(fetch_nodes, batches(nodes, pool.size), _ignore, tag)
    await pool.map(probe_transactions, batches(tx_hashes, pool.size), _ignore, tag)


def memory_nodes(overlay: Overlay) -> NodeLookup:
    """Trie nodes already in memory: the overlay's (merkleized, not committed) and
    the store's cache (looked at without counting a read)."""
    cache = overlay.store.nodes

    def lookup(node_hash: bytes) -> bytes | None:
        for nodes in overlay.nodes.values():
            found = nodes.get(node_hash)
            if found is not None:
                return found
        cached = cache.peek(node_hash)
        return None if cached is MISSING else cached  # type: ignore[return-value]

    return lookup


def _store_nodes(store: StateStore) -> NodeLookup:
    def lookup(node_hash: bytes) -> bytes | None:
        found = store.nodes.peek(node_hash)
        return None if found is MISSING else found  # type: ignore[return-value]

    return lookup


def _ignore(_: Any) -> None:
    return None
