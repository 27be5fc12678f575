"""A block file over a pre-built state: refuse a datadir that does not hold that state.

A file written by `evmpipe gen KIND --state D` carries no allocation: its genesis
header names a state root that only a datadir made by `evmpipe gen state` holds. Left
to `open_datadir`, such a file on an empty datadir would try to commit an empty
genesis, and on another state it would name only genesis hashes. This check runs
first and says which state is needed and which one the datadir has.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import rlp

from pipeline.errors import BadInput
from state.account import BLANK_ROOT

DB_NAME = "state.sqlite"


def check_required_state(datadir: str | Path, genesis_header_rlp: bytes, alloc: dict[bytes, Any], source: str) -> None:
    """Raise BadInput unless `datadir` holds the genesis a state-only block file needs."""
    if alloc:
        return  # the file carries its genesis; open_datadir commits or checks it
    root = rlp.decode(genesis_header_rlp)[3]
    if root == BLANK_ROOT:
        return
    from eth_hash.auto import keccak

    wanted = keccak(genesis_header_rlp)
    need = f"{source} runs on the state 0x{root.hex()} (genesis 0x{wanted.hex()}), which it does not carry"
    path = Path(datadir) / DB_NAME
    if not path.exists():
        raise BadInput(f"{need}; {datadir} holds no database: make it with `evmpipe gen state` using the parameters that made the file's state")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT h.rlp FROM blocks b JOIN headers h ON h.hash = b.hash WHERE b.number = 0").fetchone()
        finally:
            db.close()
    except sqlite3.Error as error:
        raise BadInput(f"{path}: cannot be read as a datadir: {error}") from None
    if row is None:
        raise BadInput(f"{need}; {datadir} holds no genesis block")
    if keccak(row[0]) != wanted:
        held = rlp.decode(row[0])[3]
        raise BadInput(f"{need}; {datadir} holds the state 0x{held.hex()} (genesis 0x{keccak(row[0]).hex()}): refusing to replay over it")
