"""A bounded pool of reader threads, each with its own read-only SQLite connection.

Prefetch reads the keys a block is predicted to touch before execution needs them.
SQLite releases the GIL while it reads, so several connections really overlap their
waits on the disk, even on two cores; the event loop only awaits
(`trio.to_thread.run_sync` with the pool's limiter) and never waits on SQLite.

Keys are sorted before they are read (neighbouring keys share B-tree pages) and
read in batches per table (accounts, storage, code, trie nodes), one batch per
thread hop. The pool reads; it does not cache: what it read goes into the store's
hot cache through `StateStore.fill_cache`, which drops what a commit made stale
while the read was under way.
"""
from __future__ import annotations

import os
import queue
import threading
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from state.account import Account
from state.codec import decode_account, decode_int, encode_slot

T = TypeVar("T")
K = TypeVar("K")
#: keys per statement at most, and at least (unless fewer keys): enough batches to
#: keep every thread busy, each large enough to amortise its thread hop (~0.1 ms)
BATCH = 256
MIN_BATCH = 16
#: default threads: measured (docs/BENCHMARKS.md, "Prefetch"): past 4 the cold
#: block time does not improve on this machine's disk
DEFAULT_THREADS = 4
SPANS = 100_000


@dataclass
class PoolStats:
    """What the pool did: batches and keys read per table, and seconds spent reading
    (summed over threads: above wall time when the threads overlap)."""

    batches: int = 0
    keys: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("account", "slot", "code", "node"), 0))
    read_s: float = 0.0


class ReaderPool:
    """`size` connections handed to at most `size` threads at a time."""

    def __init__(self, path: str, size: int = DEFAULT_THREADS, *, mmap_bytes: int | None = None) -> None:
        if size < 1:
            raise ValueError("a reader pool needs at least one thread")
        self.path = path
        self.size = size
        self.mmap_bytes = mmap_bytes
        self.stats = PoolStats()
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._limiter: trio.CapacityLimiter | None = None
        self._closed = False
        #: (reader, block, start, end) per batch (perf_counter), for the trace's reader tracks
        self.spans: deque[tuple[int, int | None, float, float]] = deque(maxlen=SPANS)
        self._readers: dict[int, int] = {}

    def _connect(self) -> sqlite3.Connection:
        """A read-only connection whose file descriptors read no more than asked:
        prefetch reads scattered pages, and the kernel's readahead (128 KiB per miss)
        would spend the disk's bandwidth on pages nobody wants."""
        before = _open_fds()
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        if self.mmap_bytes is not None:
            db.execute(f"PRAGMA mmap_size={int(self.mmap_bytes)}")
        db.execute("PRAGMA cache_size=-8192")  # the hot cache holds the values; pages mostly once
        db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # opens the database and WAL files
        for fd in _open_fds() - before:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            except OSError:
                pass
        self._all.append(db)
        return db

    def call(self, function: Callable[[sqlite3.Connection, list[K]], T], batch: list[K], tag: int | None = None) -> T:
        """Run `function(connection, batch)` on this thread with a connection of its own
        (`tag`: the block it reads for, on the trace)."""
        if self._closed:
            raise RuntimeError("reader pool is closed")
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = self._connect()
        started = time.perf_counter()
        try:
            return function(db, batch)
        finally:
            ended = time.perf_counter()
            self.stats.read_s += ended - started
            self.stats.batches += 1
            self._idle.put(db)
            reader = self._readers.setdefault(threading.get_ident(), len(self._readers))
            self.spans.append((reader, tag, started, ended))

    async def run(self, function: Callable[[sqlite3.Connection, list[K]], T], batch: list[K], tag: int | None = None) -> T:
        """`call` on one of the pool's threads (at most `size` at a time)."""
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self.size)
        return await trio.to_thread.run_sync(self.call, function, batch, tag, limiter=self._limiter)

    async def map(self, function: Callable[[sqlite3.Connection, list[K]], T], batches: Sequence[list[K]], done: Callable[[T], None], tag: int | None = None) -> None:
        """Every batch on the pool, in parallel; `done` gets each result on the event
        loop as it arrives. Cancelling waits for the batches already reading (a few
        milliseconds each) and starts no more."""
        async def one(batch: list[K]) -> None:
            done(await self.run(function, batch, tag))

        async with trio.open_nursery() as nursery:
            for batch in batches:
                nursery.start_soon(one, batch)

    def close(self) -> None:
        self._closed = True
        for db in self._all:
            try:
                db.close()
            except sqlite3.ProgrammingError:  # in use by a thread past its deadline: the process is exiting
                pass
        self._all.clear()


def batches(keys: Iterable[K], threads: int = DEFAULT_THREADS) -> list[list[K]]:
    """Sorted keys cut into consecutive batches (each reads neighbouring pages),
    about two per thread, of `MIN_BATCH` to `BATCH` keys."""
    ordered = sorted(keys)  # type: ignore[type-var]
    size = max(MIN_BATCH, min(BATCH, -(-len(ordered) // (2 * threads))))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _open_fds() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


# -- one statement per table; each returns every key asked for ------------------------
#
# Each statement returns its whole batch as one row of hex fields joined by commas
# (`_fields`), not a row per key. The sqlite3 module lets go of the GIL while it steps
# to a row and takes it back after: with another thread busy in Python (execution,
# merkleization), taking it back waits for that thread's switch interval (5 ms), per
# row. Measured at 10M accounts, 2,400 trie nodes on 4 threads beside one busy Python
# thread: 4.3 s a row per node, 0.5 s one row per batch (0.5 s and 0.7 s when no
# other thread ran).


def _fields(db: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[bytes]:
    """The fields of a `SELECT group_concat(hex(a) || ',' || hex(b) ..., ',')`, decoded."""
    (joined,) = db.execute(sql, params).fetchone()
    return [bytes.fromhex(field) for field in joined.split(",")] if joined else []


def fetch_accounts(db: sqlite3.Connection, addresses: list[bytes]) -> dict[bytes, Account | None]:
    found: dict[bytes, Account | None] = dict.fromkeys(addresses)
    sql = f"SELECT group_concat(hex(address) || ',' || hex(data), ',') FROM accounts WHERE address IN ({','.join('?' * len(addresses))})"
    fields = _fields(db, sql, addresses)
    for i in range(0, len(fields), 2):
        found[fields[i]] = decode_account(fields[i + 1])
    return found


def fetch_slots(db: sqlite3.Connection, keys: list[tuple[bytes, int]]) -> dict[tuple[bytes, int], int]:
    found = dict.fromkeys(keys, 0)
    params: list[bytes] = []
    for address, slot in keys:
        params += (address, encode_slot(slot))
    # A join, not `(address, slot) IN (VALUES ...)`: for more than one row SQLite
    # plans that IN as a scan of the whole table.
    sql = (
        "SELECT group_concat(hex(s.address) || ',' || hex(s.slot) || ',' || hex(s.value), ',') "
        f"FROM (VALUES {','.join(['(?,?)'] * len(keys))}) AS k "
        "JOIN storage AS s ON s.address = k.column1 AND s.slot = k.column2"
    )
    fields = _fields(db, sql, params)
    for i in range(0, len(fields), 3):
        found[(fields[i], decode_int(fields[i + 1]))] = decode_int(fields[i + 2])
    return found


def fetch_code(db: sqlite3.Connection, hashes: list[bytes]) -> dict[bytes, bytes]:
    sql = f"SELECT hash, code FROM code WHERE hash IN ({','.join('?' * len(hashes))})"
    return dict(db.execute(sql, hashes))


def fetch_nodes(db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, bytes]:
    """Trie nodes by their `trie_nodes` keys (state.nodekeys), returned by hash (a key
    ends with its node's hash); a key not stored is left out."""
    sql = f"SELECT group_concat(hex(hash) || ',' || hex(node), ',') FROM trie_nodes WHERE hash IN ({','.join('?' * len(keys))})"
    fields = _fields(db, sql, keys)
    return {fields[i][-32:]: fields[i + 1] for i in range(0, len(fields), 2)}


def probe_transactions(db: sqlite3.Connection, hashes: list[bytes]) -> int:
    """Look up transaction hashes (new ones: found nowhere): the lookup reads the
    B-tree pages their rows will be inserted into."""
    sql = f"SELECT count(*) FROM transactions WHERE tx_hash IN ({','.join('?' * len(hashes))})"
    found: int = db.execute(sql, hashes).fetchone()[0]
    return found


__all__ = ["BATCH", "DEFAULT_THREADS", "PoolStats", "ReaderPool", "batches", "fetch_accounts", "fetch_code", "fetch_nodes", "fetch_slots", "probe_transactions"]
