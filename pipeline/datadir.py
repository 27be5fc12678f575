"""A node's data directory: one SQLite file, created from a chain's genesis once.

The chain it belongs to (genesis hash and fork schedule) is stored in the database,
so a restart resumes the same chain and a file of another chain is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

from execution.decode import decode_header
from execution.forks import ForkSchedule
from pipeline.errors import BadInput
from state.genesis import genesis_commit
from state.store import StateStore

DB_NAME = "state.sqlite"


def open_datadir(datadir: str | Path, schedule: ForkSchedule, genesis_header_rlp: bytes, alloc: dict[bytes, dict], *, synchronous: str = "NORMAL") -> StateStore:
    """Open (or create, with the genesis block committed) the database of a chain."""
    directory = Path(datadir)
    directory.mkdir(parents=True, exist_ok=True)
    store = StateStore(directory / DB_NAME, synchronous=synchronous)
    genesis, _ = decode_header(schedule, genesis_header_rlp)
    stored = store.get_meta("genesis_hash")
    if stored is None:
        commit = genesis_commit(alloc, genesis.hash, genesis_header_rlp, genesis.state_root, genesis.difficulty)
        commit.meta = {"genesis_hash": genesis.hash, "schedule": json.dumps(schedule.to_dict()).encode()}
        store.commit_block(commit)  # one transaction: a kill leaves all of it or none
    elif stored != genesis.hash:
        store.close()
        raise BadInput(f"{directory}: holds the chain with genesis 0x{stored.hex()}, not 0x{genesis.hash.hex()}")
    return store

