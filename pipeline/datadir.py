"""A node's data directory: one SQLite file, created from a chain's genesis once.

The chain it belongs to (genesis hash and fork schedule) is stored in the database,
so a restart resumes the same chain and a file of another chain is refused.

One process at a time: a writer takes an exclusive `flock` on `LOCK` in the directory
(released by the kernel when the process dies, so a `kill -9` leaves no stale lock).
Two writers on one database would each trust its own cached head and call the
other's blocks invalid. A datadir that cannot be used (read-only, not a database,
truncated) is a `BadInput` naming the file, never a traceback.
"""
from __future__ import annotations

from typing import Any

import fcntl
import json
import os
import sqlite3
from pathlib import Path

from execution.decode import decode_header
from execution.forks import ForkSchedule
from pipeline.errors import BadInput
from state.genesis import genesis_commit
from state.nodekeys import DEFAULT_SCHEME
from state.store import Head, StateStore

DB_NAME = "state.sqlite"
LOCK_NAME = "LOCK"
LOGS_FROM = "logs_indexed_from"  # meta: the first block whose logs are in the log index


class DatadirLock:
    """An exclusive lock on a datadir, held until `release` (or the process ends)."""

    def __init__(self, datadir: str | Path) -> None:
        directory = Path(datadir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise BadInput(f"{directory}: cannot use it as a datadir: {error.strerror or error} (a writer needs it writable; `evmpipe head` reads a read-only one)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise BadInput(f"{directory}: in use by another evmpipe process (pid {holder}); one process per datadir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd: int | None = fd
        self.path = directory / LOCK_NAME

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def open_datadir(datadir: str | Path, schedule: ForkSchedule, genesis_header_rlp: bytes, alloc: dict[bytes, dict[str, Any]], *, synchronous: str = "NORMAL", lock: DatadirLock | None = None) -> StateStore:
    """Open (or create, with the genesis block committed) the database of a chain.

    Takes the datadir's lock unless `lock` is one already held; closing the store
    releases it."""
    directory = Path(datadir)
    lock = lock or DatadirLock(directory)
    path = directory / DB_NAME
    store: StateStore | None = None
    try:
        check_database_file(path)
        store = StateStore(path, synchronous=synchronous, trie_scheme=DEFAULT_SCHEME)  # a new datadir's node keys
        genesis, _ = decode_header(schedule, genesis_header_rlp)
        stored = store.get_meta("genesis_hash")
        if stored is None:
            commit = genesis_commit(alloc, genesis.hash, genesis_header_rlp, genesis.state_root, genesis.difficulty)
            commit.meta = {"genesis_hash": genesis.hash, "schedule": json.dumps(schedule.to_dict()).encode()}
            store.commit_block(commit)  # one transaction: a kill leaves all of it or none
        elif stored != genesis.hash:
            raise BadInput(f"{directory}: holds the chain with genesis 0x{stored.hex()}, not 0x{genesis.hash.hex()}")
        head = store.head()
        if store.get_meta(LOGS_FROM) is None:  # a datadir older than the log index: logs from the next block on
            store.set_meta(LOGS_FROM, str(0 if stored is None or head is None else head.number + 1).encode())
    except BaseException as error:
        if store is not None:
            try:
                store.close()
            except sqlite3.Error:
                pass
        lock.release()
        if isinstance(error, sqlite3.Error):
            raise BadInput(f"{path}: cannot be used: {error} (not an evmpipe database, damaged, or not writable)") from None
        raise
    _release_on_close(store, lock)
    return store


def _release_on_close(store: StateStore, lock: DatadirLock) -> None:
    """The store's `close` also drops the datadir lock (the store does not know of locks)."""
    close = store.close

    def close_and_unlock() -> None:
        try:
            close()
        finally:
            lock.release()

    store.close = close_and_unlock  # type: ignore[method-assign]


def check_database_file(path: Path) -> None:
    """Refuse a file SQLite would only fail on later, mid-run: too short for the page
    count its header gives (truncated), or not starting with SQLite's header at all."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(100)
            size = os.fstat(stream.fileno()).st_size
    except FileNotFoundError:
        return  # created on first use
    except OSError as error:
        raise BadInput(f"{path}: cannot be read: {error.strerror or error}") from None
    if size == 0:
        return
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise BadInput(f"{path}: not an SQLite database (its first bytes are not SQLite's header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the page count is trusted only when this matches
    # A checkpoint cut short (a full disk) leaves the file shorter than its header
    # while the write-ahead log still holds every page: SQLite reads them from there.
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return
    if valid and pages and size < pages * page_size:
        raise BadInput(f"{path}: truncated: {size} bytes where its header says {pages} pages of {page_size} ({pages * page_size} bytes)")


def read_head(datadir: str | Path) -> Head | None:
    """The committed head, read without writing anything (works on a read-only datadir)."""
    path = Path(datadir) / DB_NAME
    if not path.exists():
        raise BadInput(f"no database at {path}")
    check_database_file(path)
    wal = path.with_name(path.name + "-wal")
    try:
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        except sqlite3.OperationalError:
            if wal.exists() and wal.stat().st_size:
                raise
            # a read-only directory: SQLite cannot create the WAL index; with no WAL
            # content the file alone is the whole database
            db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        db.close()
    except sqlite3.Error as error:
        raise BadInput(f"{path}: cannot be read: {error}") from None
    if row is None:
        return None
    value = row[0]  # the layout `StateStore._set_head` writes
    return Head(int.from_bytes(value[:8], "big"), value[8:40], value[40:72])
