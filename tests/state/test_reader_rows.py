"""The reader pool's statements return a batch as one row of hex fields: the same
keys and values as a row per key, whatever bytes they hold (commas, zeros, empty)."""
from __future__ import annotations

import random
import sqlite3

from state.codec import decode_account, decode_int, encode_int, encode_slot
from state.readers import fetch_accounts, fetch_nodes, fetch_slots


def _db() -> tuple[sqlite3.Connection, random.Random]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE accounts (address BLOB PRIMARY KEY, data BLOB NOT NULL)")
    db.execute("CREATE TABLE storage (address BLOB, slot BLOB, value BLOB NOT NULL, PRIMARY KEY (address, slot))")
    db.execute("CREATE TABLE trie_nodes (hash BLOB PRIMARY KEY, node BLOB NOT NULL)")
    return db, random.Random(7)


def test_one_row_per_batch_gives_every_row() -> None:
    db, rng = _db()
    addresses = [rng.randbytes(20) for _ in range(40)] + [b",,,," * 5, b"\x00" * 20]
    for address in addresses[::2]:
        db.execute("INSERT INTO accounts VALUES (?, ?)", (address, rng.randbytes(8) + b"," * 64 + rng.randbytes(rng.randrange(0, 12))))
    slots = [(address, rng.randrange(1 << 256)) for address in addresses for _ in range(3)]
    for address, slot in slots[::2]:
        db.execute("INSERT INTO storage VALUES (?, ?, ?)", (address, encode_slot(slot), encode_int(rng.choice([0, 1, 44, rng.randrange(1 << 256)]))))
    keys = [rng.randbytes(rng.choice([32, 45])) for _ in range(60)]  # hash keys, and keys by place ending in the hash
    for key in keys[::2]:
        db.execute("INSERT INTO trie_nodes VALUES (?, ?)", (key, rng.randbytes(rng.randrange(1, 600)) + b"\x00,"))

    accounts = fetch_accounts(db, addresses)
    stored_accounts = dict(db.execute("SELECT address, data FROM accounts"))
    assert accounts == {a: (decode_account(stored_accounts[a]) if a in stored_accounts else None) for a in addresses}
    assert fetch_slots(db, slots) == {
        (a, s): decode_int(v[0]) if (v := db.execute("SELECT value FROM storage WHERE address=? AND slot=?", (a, encode_slot(s))).fetchone()) else 0
        for a, s in slots
    }
    assert fetch_nodes(db, keys) == {key[-32:]: node for key, node in db.execute("SELECT hash, node FROM trie_nodes")}
    assert fetch_nodes(db, [b"\x01" * 32]) == {} and fetch_accounts(db, [b"\x02" * 20]) == {b"\x02" * 20: None}
