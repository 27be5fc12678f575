"""Flat state in SQLite: accounts, storage and code, with trie nodes kept apart.

Tables (WAL mode, one SQLite transaction per block):

- ``accounts(address, data)``: one row per account (see `state.codec`).
- ``storage(address, slot, value)``: non-zero slots only.
- ``code(hash, code)``: contract code by hash.
- ``trie_nodes(hash, node)``: content-addressed trie nodes for merkleization; never
  deleted, so the root of any committed block can still be walked (unwind, reorgs).
  The key column holds the node's hash or, in a datadir whose meta `trie_scheme` is
  "halfpath", where the node sits followed by its hash (state.nodekeys).
- ``headers(hash, number, parent_hash, rlp, td)``: every block ever accepted.
- ``bodies(hash, rlp)``: every accepted block's RLP; ``blocks(number, hash)``: the
  canonical chain.
- ``receipts(block_hash, idx, rlp)`` and ``transactions(tx_hash, block_hash, idx)``.
- ``changesets(hash, number, reverse, forward)``: what each committed block changed,
  both ways, kept by block hash: unwind undoes a block, redo applies it again, and a
  reorg is unwinds to the common ancestor then redos along the other branch.
- ``meta(key, value)``: head, chain configuration, stage checkpoints.

Durability: ``synchronous=NORMAL`` in WAL mode by default: a crashed *process*
(``kill -9``) loses nothing committed; a power loss may lose the last few blocks but
never leaves a half-applied one. ``synchronous=FULL`` fsyncs every commit.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar, Iterable, Iterator

from eth_hash.auto import keccak

from state.account import BLANK_ROOT, Account
from state.cache import MISSING, LRUCache
from state.codec import decode_account, decode_int, encode_account, encode_int, encode_slot, pack_diff, unpack_diff
from state.diff import StateDiff
from state.logindex import LOG_SCHEMA, log_rows
from state.nodekeys import HASH, META_KEY, SCHEMES, keyed_rows, node_key
from state.layout import LayoutStats, read_account, read_slot
from state.ledger import PrefetchLedger
from state.tiers import StoreReads, sqlite_pages

T = TypeVar("T")
SCHEMA_VERSION = 1
_BATCH = 400  # SQLite's default limit is 32766 host parameters; 400 rows keep statements small

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (address BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage (address BLOB, slot BLOB, value BLOB NOT NULL, PRIMARY KEY (address, slot)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS code (hash BLOB PRIMARY KEY, code BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trie_nodes (hash BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS headers (hash BLOB PRIMARY KEY, number INTEGER NOT NULL, parent_hash BLOB NOT NULL, rlp BLOB NOT NULL, td BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bodies (hash BLOB PRIMARY KEY, rlp BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (block_hash BLOB, idx INTEGER, rlp BLOB NOT NULL, PRIMARY KEY (block_hash, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions (tx_hash BLOB PRIMARY KEY, block_hash BLOB NOT NULL, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changesets (hash BLOB PRIMARY KEY, number INTEGER NOT NULL, reverse BLOB NOT NULL, forward BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
""" + LOG_SCHEMA  # logs(block_hash, idx, number, address, topic0): see state/logindex.py


@dataclass(frozen=True)
class Head:
    number: int
    hash: bytes
    state_root: bytes


@dataclass
class BlockCommit:
    """Everything one block writes, committed as one SQLite transaction."""

    number: int
    hash: bytes
    parent_hash: bytes
    state_root: bytes
    header_rlp: bytes
    block_rlp: bytes
    total_difficulty: int
    diff: StateDiff
    trie_nodes: dict[bytes, bytes]
    receipts: list[bytes] = field(default_factory=list)
    tx_hashes: list[bytes] = field(default_factory=list)
    meta: dict[str, bytes] = field(default_factory=dict)  # written in the same transaction


class StateStore:
    """The committed state, called from trio worker threads.

    Two connections: the writer (commits, reorganizations) and a reader for every
    read, each behind its own lock, so a block's commit never holds up the reads of
    the blocks behind it (WAL: the reader sees the last committed transaction).
    A read that raced a commit must not put a value older than the commit into the
    cache: commits bump an epoch under the cache lock, and a read caches what it
    found only if the epoch did not move while it read."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", cache_size: int = 100_000, readonly: bool = False, trie_scheme: str | None = None) -> None:
        self.path = str(path)
        self._lock = threading.RLock()  # the writer connection
        self._read_lock = self._lock  # the reader connection (its own, below, when writing)
        self._cache_lock = threading.Lock()
        self._epoch = 0  # bumps with every change of committed accounts or slots
        if readonly:  # a worker process reading committed state beside the writer (WAL)
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
            self._reader = self._db
        else:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._read_lock = threading.RLock()
        for connection in {id(self._db): self._db, id(self._reader): self._reader}.values():
            connection.execute("PRAGMA mmap_size=268435456")
            connection.execute("PRAGMA cache_size=-65536")
        self.accounts: LRUCache[bytes, Account | None] = LRUCache(cache_size)
        self.slots: LRUCache[tuple[bytes, int], int] = LRUCache(cache_size)
        self.codes: LRUCache[bytes, bytes] = LRUCache(max(cache_size // 50, 64))
        # Trie nodes near the root are read by every block's merkleization; new nodes
        # are cached as they are committed (the next block updates those paths).
        self.nodes: LRUCache[bytes, bytes] = LRUCache(max(cache_size // 2, 64))
        self.reads = StoreReads()  # which tier served each read (state.tiers)
        self.layout = LayoutStats()  # how a read that misses the hot tier is served (state.layout)
        # Prefetch (state.readers, stages/prefetch.py): what each commit changed, so a
        # value read before it is cached only if the commit left it alone (fill_cache);
        # what became of the prefetched keys; what to close with the store.
        self._changes: deque[tuple[int, frozenset[bytes] | None, frozenset[tuple[bytes, int]] | None]] = deque(maxlen=256)
        self.prefetch = PrefetchLedger()
        self.closers: list[Callable[[], None]] = []
        if not readonly and self.get_meta("schema_version") is None:  # a new database
            self.set_meta("schema_version", str(SCHEMA_VERSION).encode())
            if trie_scheme not in (None, HASH):
                if trie_scheme not in SCHEMES:
                    raise ValueError(f"unknown trie scheme {trie_scheme!r} (one of {', '.join(SCHEMES)})")
                self.set_meta(META_KEY, trie_scheme.encode())
        # How trie nodes are keyed (state.nodekeys): fixed when the database is made.
        self.trie_scheme = (self.get_meta(META_KEY) or HASH.encode()).decode()
        if self.trie_scheme not in SCHEMES:
            raise ValueError(f"{self.path}: unknown trie scheme {self.trie_scheme!r}")
        if not readonly and self.get_meta("database_id") is None:
            self.set_meta("database_id", os.urandom(16))
        # Random, set when the database is created: which database this is, whatever
        # its path (worker processes reopen when it changes).
        self.database_id = self.get_meta("database_id") or b""

    def close(self) -> None:
        """Close the connection, unless a commit left behind past its deadline still
        holds it (then the process is exiting anyway; SQLite keeps it atomic)."""
        for closer in self.closers:
            closer()
        if self._read_lock.acquire(timeout=10):
            try:
                self._reader.close()
            finally:
                self._read_lock.release()
        if self._lock.acquire(timeout=10):
            try:
                self._db.close()
            finally:
                self._lock.release()

    # -- meta ------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        with self._read_lock:
            row = self._reader.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def best_hash(self) -> bytes | None:
        """The head fork choice picked, written with each commit: the store's head
        differs from it only while a side branch is being executed (a crash there
        resumes on this one)."""
        return self.get_meta("best")

    def head(self) -> Head | None:
        row = self.get_meta("head")
        if row is None:
            return None
        return Head(int.from_bytes(row[:8], "big"), row[8:40], row[40:72])

    # -- state reads -------------------------------------------------------------

    def get_account(self, address: bytes) -> Account | None:
        cached = self.accounts.get(address)
        if cached is not MISSING:
            self.reads.add("account", "hot" if cached is not None else "hot_negative")
            if self.prefetch.pending["account"]:
                self.prefetch.hit("account", address)
            return cached  # type: ignore[return-value]
        return self.read_accounts([address])[address]

    def read_accounts(self, addresses: Iterable[bytes]) -> dict[bytes, Account | None]:
        """Batched read of accounts into the cache; returns every requested address."""
        wanted = list(dict.fromkeys(addresses))
        found: dict[bytes, Account | None] = dict.fromkeys(wanted)
        epoch = self._epoch
        started = time.perf_counter()
        with self._read_lock:
            if self.layout.layout != "flat":  # walk the account trie instead
                root = self._head_root()
                found = {a: read_account(self.get_trie_node, root, a, self.layout) for a in wanted}
            for chunk in _chunks(wanted, _BATCH) if self.layout.layout == "flat" else ():
                self.layout.account_reads += len(chunk)
                self.layout.account_lookups += len(chunk)
                sql = f"SELECT address, data FROM accounts WHERE address IN ({','.join('?' * len(chunk))})"
                for address, data in self._reader.execute(sql, chunk):
                    found[address] = decode_account(data)
            self.reads.add("account", "db", len(wanted))
            self.reads.add("account", "db_absent", sum(1 for a in found.values() if a is None))
        self.prefetch.stall_s["account"] += time.perf_counter() - started
        with self._cache_lock:
            if epoch == self._epoch:  # no commit since the read began: nothing stale
                for address, account in found.items():
                    self.accounts.put(address, account)
        return found

    def get_storage(self, address: bytes, slot: int) -> int:
        cached = self.slots.get((address, slot))
        if cached is not MISSING:
            self.reads.add("slot", "hot" if cached else "hot_negative")
            if self.prefetch.pending["slot"]:
                self.prefetch.hit("slot", (address, slot))
            return cached  # type: ignore[return-value]
        return self.read_storage([(address, slot)])[(address, slot)]

    def read_storage(self, keys: Iterable[tuple[bytes, int]]) -> dict[tuple[bytes, int], int]:
        """Batched read of storage slots into the cache (absent slots read as zero)."""
        wanted = list(dict.fromkeys(keys))
        found = dict.fromkeys(wanted, 0)
        epoch = self._epoch
        started = time.perf_counter()
        with self._read_lock:
            if self.layout.layout != "flat":  # walk the account trie, then the storage trie
                root = self._head_root()
                found = {(a, s): read_slot(self.get_trie_node, root, a, s, self.layout) for a, s in wanted}
            for chunk in _chunks(wanted, _BATCH) if self.layout.layout == "flat" else ():
                self.layout.slot_reads += len(chunk)
                self.layout.slot_lookups += len(chunk)
                params: list[bytes] = []
                for address, slot in chunk:
                    params += (address, encode_slot(slot))
                sql = (  # a join: SQLite plans `(address, slot) IN (VALUES ...)` of 2+ rows as a table scan
                    f"SELECT s.address, s.slot, s.value FROM (VALUES {','.join(['(?,?)'] * len(chunk))}) AS k "
                    "JOIN storage AS s ON s.address = k.column1 AND s.slot = k.column2"
                )
                for address, slot, value in self._reader.execute(sql, params):
                    found[(address, decode_int(slot))] = decode_int(value)
            self.reads.add("slot", "db", len(wanted))
            self.reads.add("slot", "db_absent", sum(1 for v in found.values() if not v))
        self.prefetch.stall_s["slot"] += time.perf_counter() - started
        with self._cache_lock:
            if epoch == self._epoch:
                for key, value in found.items():
                    self.slots.put(key, value)
        return found

    def get_code(self, code_hash: bytes) -> bytes | None:
        cached = self.codes.get(code_hash)
        if cached is not MISSING:
            self.reads.add("code", "hot")
            if self.prefetch.pending["code"]:
                self.prefetch.hit("code", code_hash)
            return cached  # type: ignore[return-value]
        return self.read_code([code_hash]).get(code_hash)

    def read_code(self, hashes: Iterable[bytes]) -> dict[bytes, bytes]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[bytes, bytes] = {}
        started = time.perf_counter()
        with self._read_lock:
            for chunk in _chunks(wanted, _BATCH):
                sql = f"SELECT hash, code FROM code WHERE hash IN ({','.join('?' * len(chunk))})"
                found.update(self._reader.execute(sql, chunk))
            self.reads.add("code", "db", len(wanted))
        self.prefetch.stall_s["code"] += time.perf_counter() - started
        for code_hash, code in found.items():
            self.codes.put(code_hash, code)
        return found

    def has_storage(self, address: bytes, ignoring: set[int] = frozenset()) -> bool:  # type: ignore[assignment]
        """Does `address` hold any non-zero slot outside `ignoring` ([EIP-7610] collision check)."""
        with self._read_lock:
            for (slot,) in self._reader.execute("SELECT slot FROM storage WHERE address=?", (address,)):
                if decode_int(slot) not in ignoring:
                    return True
        return False

    def iter_storage(self, address: bytes) -> Iterator[tuple[int, int]]:
        with self._read_lock:
            rows = self._reader.execute("SELECT slot, value FROM storage WHERE address=?", (address,)).fetchall()
        for slot, value in rows:
            yield decode_int(slot), decode_int(value)

    def iter_accounts(self) -> Iterator[tuple[bytes, Account]]:
        with self._read_lock:
            rows = self._reader.execute("SELECT address, data FROM accounts ORDER BY address").fetchall()
        for address, data in rows:
            yield address, decode_account(data)

    def get_trie_node(self, node_hash: bytes, owner: bytes = b"", path: str = "") -> bytes:
        """A trie node by hash; `owner` (b"": the account trie; else the hashed address)
        and nibble `path` say where it sits, which a halfpath datadir keys by."""
        cached = self.nodes.get(node_hash)
        if cached is not MISSING:
            self.reads.add("node", "hot")
            if self.prefetch.pending["node"]:
                self.prefetch.hit("node", node_hash)
            return cached  # type: ignore[return-value]
        self.reads.add("node", "db")
        started = time.perf_counter()
        with self._read_lock:
            row = self._reader.execute("SELECT node FROM trie_nodes WHERE hash=?", (node_key(self.trie_scheme, owner, path, node_hash),)).fetchone()
        self.prefetch.stall_s["node"] += time.perf_counter() - started
        if row is None:
            raise KeyError(node_hash)
        node: bytes = row[0]
        self.nodes.put(node_hash, node)
        return node

    def set_memory(self, cache_mb: int | None = None, mmap_mb: int | None = None) -> None:
        """Bound the hot tier and SQLite's page cache together by `cache_mb` (half each;
        an LRU entry is taken as 256 bytes), and set the memory map (0: off)."""
        with self._lock, self._read_lock:
            for connection in (self._db, self._reader):
                if mmap_mb is not None:
                    connection.execute(f"PRAGMA mmap_size={int(mmap_mb) << 20}")
                if cache_mb is not None:
                    connection.execute(f"PRAGMA cache_size=-{max(64, int(cache_mb) << 9)}")
            if cache_mb is not None:
                entries = max(256, (int(cache_mb) << 19) // 256)
                for cache, share in ((self.accounts, 0.3), (self.slots, 0.4), (self.codes, 0.05), (self.nodes, 0.25)):
                    cache.resize(max(64, int(entries * share)))

    def set_layout(self, layout: str) -> None:
        """How reads that miss the hot tier are served: flat, trie or trie-pinned (state.layout)."""
        self.layout = LayoutStats(layout)

    def _head_root(self) -> bytes:
        head = self.head()
        return head.state_root if head is not None else BLANK_ROOT

    def page_stats(self) -> dict[str, int] | None:
        """SQLite's page-cache hits and misses on the reader connection (state.tiers)."""
        with self._read_lock:
            return sqlite_pages(self._reader, self.path)

    # -- chain reads -------------------------------------------------------------

    def get_header(self, block_hash: bytes) -> tuple[int, bytes, int] | None:
        """(number, header RLP, total difficulty) of any accepted block."""
        with self._read_lock:
            row = self._reader.execute("SELECT number, rlp, td FROM headers WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else (row[0], row[1], decode_int(row[2]))

    def canonical_hash(self, number: int) -> bytes | None:
        with self._read_lock:
            row = self._reader.execute("SELECT hash FROM blocks WHERE number=?", (number,)).fetchone()
        return None if row is None else row[0]

    def get_block_rlp(self, number: int) -> bytes | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT bodies.rlp FROM blocks JOIN bodies ON bodies.hash = blocks.hash WHERE blocks.number=?", (number,)
            ).fetchone()
        return None if row is None else row[0]

    def get_receipts(self, block_hash: bytes) -> list[bytes]:
        with self._read_lock:
            rows = self._reader.execute("SELECT rlp FROM receipts WHERE block_hash=? ORDER BY idx", (block_hash,)).fetchall()
        return [r[0] for r in rows]

    def find_transaction(self, tx_hash: bytes) -> tuple[bytes, int] | None:
        """(block hash, index) of a transaction in a canonical block."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT t.block_hash, t.idx FROM transactions t JOIN blocks b ON b.hash = t.block_hash WHERE t.tx_hash=?",
                (tx_hash,),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    # -- writes ------------------------------------------------------------------

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite write transaction under the store's lock: all of it or nothing."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # After an I/O error (a full disk) SQLite may have rolled back already;
                # a second ROLLBACK would hide the error that matters.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def commit_block(self, commit: BlockCommit) -> None:
        """Write a block's diff, trie nodes, block, receipts, change set and new head in
        one SQLite transaction: after a crash either all of it is there or none."""
        node_rows = self.node_rows(commit)  # decoding and keying, before the write lock is taken
        with self._lock:
            with self._write_transaction() as db:
                reverse = self._reverse_diff(commit.diff)
                self._apply_diff(commit.diff)
                db.executemany("INSERT OR IGNORE INTO trie_nodes VALUES (?, ?)", node_rows.items())
                db.execute(
                    "INSERT OR REPLACE INTO headers VALUES (?, ?, ?, ?, ?)",
                    (commit.hash, commit.number, commit.parent_hash, commit.header_rlp, encode_int(commit.total_difficulty)),
                )
                db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?)", (commit.number, commit.hash))
                db.execute("INSERT OR REPLACE INTO bodies VALUES (?, ?)", (commit.hash, commit.block_rlp))
                db.executemany(
                    "INSERT OR REPLACE INTO receipts VALUES (?, ?, ?)",
                    ((commit.hash, i, r) for i, r in enumerate(commit.receipts)),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO transactions VALUES (?, ?, ?)",
                    ((h, commit.hash, i) for i, h in enumerate(commit.tx_hashes)),
                )
                db.executemany("INSERT OR IGNORE INTO logs VALUES (?, ?, ?, ?, ?)", log_rows(commit.hash, commit.number, commit.receipts))
                db.execute(
                    "INSERT OR REPLACE INTO changesets VALUES (?, ?, ?, ?)",
                    (commit.hash, commit.number, pack_diff(reverse), pack_diff(commit.diff)),
                )
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", commit.meta.items())
                self._set_head(Head(commit.number, commit.hash, commit.state_root))
            self.update_cache(commit.diff)
            for node_hash, node in commit.trie_nodes.items():
                self.nodes.put(node_hash, node)

    def node_rows(self, commit: BlockCommit) -> dict[bytes, bytes]:
        """The `trie_nodes` rows of a commit's new nodes in this datadir's scheme: under
        halfpath, each new node keyed at every place the new roots reach it."""
        if self.trie_scheme == HASH:
            return commit.trie_nodes
        roots = [(b"", commit.state_root)]
        roots += ((keccak(a), account.storage_root) for a, account in commit.diff.accounts.items() if account is not None and account.storage_root in commit.trie_nodes)
        return keyed_rows(self.trie_scheme, commit.trie_nodes, roots)

    def unwind_block(self) -> Head:
        """Undo the head block from its change set, in one transaction; returns the new head.

        The change set stays, keyed by hash, so the block can be redone (`redo_block`)."""
        head = self.head()
        if head is None or head.number == 0:
            raise ValueError("nothing to unwind")
        with self._lock:
            with self._write_transaction() as db:
                row = db.execute("SELECT reverse FROM changesets WHERE hash=?", (head.hash,)).fetchone()
                self._apply_diff(unpack_diff(row[0]))
                parent_hash, = db.execute("SELECT parent_hash FROM headers WHERE hash=?", (head.hash,)).fetchone()
                db.execute("DELETE FROM blocks WHERE number=?", (head.number,))
                parent_rlp, = db.execute("SELECT rlp FROM headers WHERE hash=?", (parent_hash,)).fetchone()
                new_head = Head(head.number - 1, parent_hash, _header_state_root(parent_rlp))
                self._set_head(new_head)
            self.clear_cache()
        return new_head

    def redo_block(self, block_hash: bytes) -> Head:
        """Apply a block committed before (then unwound) again, on top of its parent."""
        with self._lock:
            db = self._db
            row = db.execute("SELECT number, forward FROM changesets WHERE hash=?", (block_hash,)).fetchone()
            if row is None:
                raise KeyError(f"no change set for block 0x{block_hash.hex()}")
            number, forward = row
            header_rlp, = db.execute("SELECT rlp FROM headers WHERE hash=?", (block_hash,)).fetchone()
            with self._write_transaction():
                self._apply_diff(unpack_diff(forward))
                db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?)", (number, block_hash))
                new_head = Head(number, block_hash, _header_state_root(header_rlp))
                self._set_head(new_head)
            self.clear_cache()
        return new_head

    def reorg_to(self, block_hash: bytes) -> Head:
        """Make `block_hash` the head: unwind to the common ancestor, redo along its branch.

        Every block on the target branch must have been committed once (it has a change set)."""
        branch: list[bytes] = []
        current = block_hash
        while self.canonical_hash(self._number_of(current)) != current:
            branch.append(current)
            current = self._parent_of(current)
        ancestor_number = self._number_of(current)
        head = self.head()
        assert head is not None
        while head.number > ancestor_number:
            head = self.unwind_block()
        for target in reversed(branch):
            head = self.redo_block(target)
        return head

    def total_difficulty(self, block_hash: bytes) -> int:
        found = self.get_header(block_hash)
        if found is None:
            raise KeyError(block_hash)
        return found[2]

    def has_changeset(self, block_hash: bytes) -> bool:
        with self._read_lock:
            return self._reader.execute("SELECT 1 FROM changesets WHERE hash=?", (block_hash,)).fetchone() is not None

    def _number_of(self, block_hash: bytes) -> int:
        found = self.get_header(block_hash)
        if found is None:
            raise KeyError(f"unknown block 0x{block_hash.hex()}")
        return found[0]

    def _parent_of(self, block_hash: bytes) -> bytes:
        with self._read_lock:
            parent: bytes = self._reader.execute("SELECT parent_hash FROM headers WHERE hash=?", (block_hash,)).fetchone()[0]
        return parent

    def forward_diff(self, number: int) -> StateDiff | None:
        """What canonical block `number` changed."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT forward FROM changesets JOIN blocks ON blocks.hash = changesets.hash WHERE blocks.number=?", (number,)
            ).fetchone()
        return None if row is None else unpack_diff(row[0])

    def _set_head(self, head: Head) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('head', ?)",
            (head.number.to_bytes(8, "big") + head.hash + head.state_root,),
        )

    def _reverse_diff(self, diff: StateDiff) -> StateDiff:
        """The old values of everything `diff` changes (run inside the commit)."""
        reverse = StateDiff()
        db = self._db
        for address in diff.accounts:
            row = db.execute("SELECT data FROM accounts WHERE address=?", (address,)).fetchone()
            reverse.accounts[address] = None if row is None else decode_account(row[0])
        for address in diff.wiped:
            # Restoring a wiped account restores all its slots: wipe, then write them back.
            reverse.wiped.add(address)
            for slot, value in db.execute("SELECT slot, value FROM storage WHERE address=?", (address,)):
                reverse.set_storage(address, decode_int(slot), decode_int(value))
        for address, slots in diff.storage.items():
            if address in diff.wiped:
                continue  # the reverse wipe already drops slots the block added
            for slot in slots:
                row = db.execute(
                    "SELECT value FROM storage WHERE address=? AND slot=?", (address, encode_slot(slot))
                ).fetchone()
                reverse.set_storage(address, slot, 0 if row is None else decode_int(row[0]))
        return reverse

    def _apply_diff(self, diff: StateDiff) -> None:
        db = self._db
        for address in diff.wiped:
            db.execute("DELETE FROM storage WHERE address=?", (address,))
        deleted = [(a,) for a, acc in diff.accounts.items() if acc is None]
        db.executemany("DELETE FROM accounts WHERE address=?", deleted)
        db.executemany(
            "INSERT OR REPLACE INTO accounts VALUES (?, ?)",
            ((a, encode_account(acc)) for a, acc in diff.accounts.items() if acc is not None),
        )
        writes, deletes = [], []
        for address, slots in diff.storage.items():
            for slot, value in slots.items():
                if value:
                    writes.append((address, encode_slot(slot), encode_int(value)))
                else:
                    deletes.append((address, encode_slot(slot)))
        db.executemany("DELETE FROM storage WHERE address=? AND slot=?", deletes)
        db.executemany("INSERT OR REPLACE INTO storage VALUES (?, ?, ?)", writes)
        db.executemany("INSERT OR IGNORE INTO code VALUES (?, ?)", diff.code.items())

    def update_cache(self, diff: StateDiff) -> None:
        """Write a committed diff into the cache (after the commit: this one's, or
        another connection's)."""
        with self._cache_lock:
            self._epoch += 1
            if diff.wiped:
                self._changes.append((self._epoch, None, None))
            else:
                slots = frozenset((a, s) for a, changed in diff.storage.items() for s in changed)
                self._changes.append((self._epoch, frozenset(diff.accounts), slots))
            self._update_cache(diff)

    def clear_cache(self) -> None:
        """Forget cached accounts and slots (code is content-addressed: never stale)."""
        with self._cache_lock:
            self._epoch += 1
            self._changes.append((self._epoch, None, None))
            self.accounts.clear()
            self.slots.clear()

    def cache_epoch(self) -> int:
        """Take it before reading committed state elsewhere (a reader pool), give it
        to `fill_cache` with what was read."""
        return self._epoch

    def fill_cache(
        self,
        epoch: int,
        tag: int,
        *,
        accounts: dict[bytes, Account | None] | None = None,
        slots: dict[tuple[bytes, int], int] | None = None,
        codes: dict[bytes, bytes] | None = None,
        nodes: dict[bytes, bytes] | None = None,
    ) -> int:
        """Put values read from committed state since `cache_epoch()` returned `epoch`
        into the hot cache, for block `tag` (the ledger counts their hits). An account
        or slot that a commit changed since then is left out (the value read may be
        the one before it; the commit cached the new one); so is every account and
        slot when too many commits passed, or one was a wipe, unwind or reorg. Code
        and trie nodes are content-addressed: never stale. Returns how many stale
        values were left out."""
        with self._cache_lock:
            stale_accounts: frozenset[bytes] | set[bytes] = frozenset()
            stale_slots: frozenset[tuple[bytes, int]] | set[tuple[bytes, int]] = frozenset()
            everything = False
            if epoch != self._epoch:
                since = [change for change in self._changes if change[0] > epoch]
                everything = len(since) < self._epoch - epoch or any(a is None for _, a, _ in since)
                if not everything:
                    stale_accounts = set().union(*(a for _, a, _ in since if a is not None))
                    stale_slots = set().union(*(s for _, _, s in since if s is not None))
            dropped = 0
            if accounts:
                kept = [a for a in accounts if not everything and a not in stale_accounts]
                for address in kept:
                    self.accounts.put(address, accounts[address])
                self.prefetch.add("account", kept, tag)
                dropped += len(accounts) - len(kept)
            if slots:
                kept_slots = [k for k in slots if not everything and k not in stale_slots]
                for key in kept_slots:
                    self.slots.put(key, slots[key])
                self.prefetch.add("slot", kept_slots, tag)
                dropped += len(slots) - len(kept_slots)
            self.prefetch.stale += dropped
        for kind, values, cache in (("code", codes, self.codes), ("node", nodes, self.nodes)):
            if values:
                for content_hash, value in values.items():
                    cache.put(content_hash, value)
                self.prefetch.add(kind, list(values), tag)
        return dropped

    def _update_cache(self, diff: StateDiff) -> None:
        for address, account in diff.accounts.items():
            self.accounts.put(address, account)
        if diff.wiped:
            self.slots.clear()  # rare: dropping the whole slot cache is simpler than scanning it
        for address, slots in diff.storage.items():
            for slot, value in slots.items():
                self.slots.put((address, slot), value)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _header_state_root(header_rlp: bytes) -> bytes:
    import rlp

    root: bytes = rlp.decode(header_rlp)[3]
    return root
