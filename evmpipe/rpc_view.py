"""A read-only, consistent view of the committed database for JSON-RPC calls that read
much at once: `eth_call` and `eth_estimateGas` (py-evm runs against it), `eth_getProof`
(the trie is walked from the head's state root), `eth_getLogs`.

Why a connection of its own: the pipeline's `StateStore` keeps LRU caches that the
commit stage updates, and its connection is the writer's. This view opens the same file
read-only (`mode=ro`) and reads inside one SQLite read transaction: in WAL mode that is
a snapshot, so a call sees one committed head from its first read to its last, however
many blocks commit meanwhile, and nothing it does can reach the pipeline's state.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

from state.account import Account
from state.codec import decode_account, decode_int, encode_slot
from state.nodekeys import HASH, META_KEY, NodePlaces
from state.store import Head

_local = threading.local()


class ReadView:
    """One snapshot of the database; a `StateReader` for py-evm's account database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        self.head = None if row is None else Head(int.from_bytes(row[0][:8], "big"), row[0][8:40], row[0][40:72])
        scheme = db.execute("SELECT value FROM meta WHERE key=?", (META_KEY,)).fetchone()
        # eth_getProof walks from the head's root down: where each node sits is learnt on the way
        self._places = NodePlaces(HASH if scheme is None else bytes(scheme[0]).decode(), None if self.head is None else self.head.state_root)

    # -- state (the StateReader protocol) --------------------------------------------

    def get_account(self, address: bytes) -> Account | None:
        row = self.db.execute("SELECT data FROM accounts WHERE address=?", (address,)).fetchone()
        return None if row is None else decode_account(row[0])

    def get_storage(self, address: bytes, slot: int) -> int:
        row = self.db.execute("SELECT value FROM storage WHERE address=? AND slot=?", (address, encode_slot(slot))).fetchone()
        return 0 if row is None else decode_int(row[0])

    def get_code(self, code_hash: bytes) -> bytes | None:
        row = self.db.execute("SELECT code FROM code WHERE hash=?", (code_hash,)).fetchone()
        return None if row is None else row[0]

    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool:
        for (slot,) in self.db.execute("SELECT slot FROM storage WHERE address=?", (address,)):
            if decode_int(slot) not in ignoring:
                return True
        return False

    def trie_node(self, node_hash: bytes) -> bytes:
        """A node of the head's tries, read after its parent (state.nodekeys.NodePlaces)."""
        key = self._places.key(node_hash)
        row = None if key is None else self.db.execute("SELECT node FROM trie_nodes WHERE hash=?", (key,)).fetchone()
        if row is None:
            raise KeyError(node_hash)
        self._places.served(node_hash, row[0])
        node: bytes = row[0]
        return node

    # -- chain -----------------------------------------------------------------------

    def get_header(self, block_hash: bytes) -> tuple[int, bytes, int] | None:
        """(number, header RLP, total difficulty) of any accepted block."""
        row = self.db.execute("SELECT number, rlp, td FROM headers WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else (row[0], row[1], decode_int(row[2]))

    def find_transaction(self, tx_hash: bytes) -> tuple[bytes, int] | None:
        """(block hash, index) of a transaction in a canonical block."""
        row = self.db.execute("SELECT t.block_hash, t.idx FROM transactions t JOIN blocks b ON b.hash = t.block_hash WHERE t.tx_hash=?", (tx_hash,)).fetchone()
        return None if row is None else (row[0], row[1])

    def get_block_rlp(self, number: int) -> bytes | None:
        row = self.db.execute("SELECT bodies.rlp FROM blocks JOIN bodies ON bodies.hash = blocks.hash WHERE blocks.number=?", (number,)).fetchone()
        return None if row is None else row[0]

    def header_rlp(self, number: int) -> bytes | None:
        row = self.db.execute("SELECT h.rlp FROM blocks b JOIN headers h ON h.hash = b.hash WHERE b.number=?", (number,)).fetchone()
        return None if row is None else row[0]

    def canonical_hash(self, number: int) -> bytes | None:
        row = self.db.execute("SELECT hash FROM blocks WHERE number=?", (number,)).fetchone()
        return None if row is None else row[0]

    def recent_hashes(self, number: int, count: int = 256) -> list[bytes]:
        """Canonical hashes of blocks `number`, `number - 1`, ... (newest first), for BLOCKHASH."""
        rows = self.db.execute("SELECT hash FROM blocks WHERE number <= ? AND number > ? ORDER BY number DESC", (number, number - count)).fetchall()
        return [r[0] for r in rows]

    def block_rlp(self, number: int) -> tuple[bytes, bytes] | None:
        """(hash, block RLP) of canonical block `number`."""
        row = self.db.execute("SELECT b.hash, bodies.rlp FROM blocks b JOIN bodies ON bodies.hash = b.hash WHERE b.number=?", (number,)).fetchone()
        return None if row is None else (row[0], row[1])

    def receipts(self, block_hash: bytes) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT rlp FROM receipts WHERE block_hash=? ORDER BY idx", (block_hash,))]

    def meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def log_positions(self, first: int, last: int, addresses: list[bytes], topic0: list[bytes], limit: int) -> list[tuple[int, bytes, int]]:
        """(number, block hash, index) of canonical logs in [first, last] matching the
        address and first-topic filters (empty list: any), in chain order, at most `limit`."""
        sql = "SELECT l.number, l.block_hash, l.idx FROM logs l JOIN blocks b ON b.number = l.number AND b.hash = l.block_hash WHERE l.number BETWEEN ? AND ?"
        params: list[object] = [first, last]
        if addresses:
            sql += f" AND l.address IN ({','.join('?' * len(addresses))})"
            params += addresses
        if topic0:
            sql += f" AND l.topic0 IN ({','.join('?' * len(topic0))})"
            params += topic0
        sql += " ORDER BY l.number, l.idx LIMIT ?"
        params.append(limit)
        return [(n, h, i) for n, h, i in self.db.execute(sql, params)]


class ReadStore:
    """The `StateStore` reads JSON-RPC makes, on this thread's read-only connection: what
    the RPC process (evmpipe/rpc_process.py) hands `RpcHandler` in place of the
    pipeline's store, which it cannot reach. Each read is a snapshot of its own unless
    an outer `read_view` of this thread is open, whose snapshot it then shares."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_header(self, block_hash: bytes) -> tuple[int, bytes, int] | None:
        with read_view(self.path) as view:
            return view.get_header(block_hash)

    def canonical_hash(self, number: int) -> bytes | None:
        with read_view(self.path) as view:
            return view.canonical_hash(number)

    def get_block_rlp(self, number: int) -> bytes | None:
        with read_view(self.path) as view:
            return view.get_block_rlp(number)

    def get_receipts(self, block_hash: bytes) -> list[bytes]:
        with read_view(self.path) as view:
            return view.receipts(block_hash)

    def find_transaction(self, tx_hash: bytes) -> tuple[bytes, int] | None:
        with read_view(self.path) as view:
            return view.find_transaction(tx_hash)

    def head(self) -> Head | None:
        with read_view(self.path) as view:
            return view.head


@contextmanager
def read_view(path: str) -> Iterator[ReadView]:
    """A snapshot of the database at `path`, on this thread's read-only connection.
    Nested uses on one thread share the outer snapshot."""
    connections: dict[str, sqlite3.Connection] = getattr(_local, "connections", None) or {}
    _local.connections = connections
    db = connections.get(path)
    if db is None:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=True)
        db.execute("PRAGMA query_only=1")
        connections[path] = db
    if db.in_transaction:  # an outer view of this thread is open: its snapshot it is
        yield ReadView(db)
        return
    db.execute("BEGIN")  # a read transaction: one snapshot for the whole call
    try:
        yield ReadView(db)
    finally:
        db.execute("ROLLBACK")
