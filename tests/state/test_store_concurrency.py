"""The store's two connections: a commit does not hold up readers, and a read that
raced a commit never leaves a value older than the commit in the cache."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from state.account import Account
from state.diff import StateDiff
from state.store import StateStore
from tests.state.test_store import addr, make_commit

A = addr(1)


def _store_with(tmp_path: Path, balance: int) -> StateStore:
    store = StateStore(tmp_path / "state.sqlite", synchronous="OFF")
    diff = StateDiff()
    diff.accounts[A] = Account(balance=balance)
    store.commit_block(make_commit(0, diff))
    store.clear_cache()
    return store


def test_reads_do_not_wait_for_a_commit(tmp_path: Path) -> None:
    store = _store_with(tmp_path, 100)
    holding = threading.Event()
    release = threading.Event()

    def long_commit() -> None:
        with store._write_transaction() as db:  # what a commit holds, for as long as it takes
            db.execute("INSERT OR REPLACE INTO meta VALUES ('x', x'00')")
            holding.set()
            release.wait(10)

    writer = threading.Thread(target=long_commit)
    writer.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        assert store.read_accounts([A])[A] == Account(balance=100)  # the committed value
        assert store.get_header(b"\x00" * 32) is None
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        writer.join()
        store.close()


class _CommitDuringRead:
    """The reader connection, with a commit landing after a SELECT ran and before
    its rows reach the cache: the rows read are older than the commit."""

    def __init__(self, inner: Any, commit: Any) -> None:
        self._inner, self._commit, self.fired = inner, commit, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def execute(self, sql: str, *args: Any) -> Any:
        rows = self._inner.execute(sql, *args).fetchall()
        if not self.fired and sql.startswith("SELECT address, data FROM accounts"):
            self.fired = True
            thread = threading.Thread(target=self._commit)
            thread.start()
            thread.join()
        return iter(rows)


def test_a_read_racing_a_commit_caches_nothing_stale(tmp_path: Path) -> None:
    store = _store_with(tmp_path, 100)
    diff = StateDiff()
    diff.accounts[A] = Account(balance=200)
    racing = _CommitDuringRead(store._reader, lambda: store.commit_block(make_commit(1, diff)))
    store._reader = racing
    try:
        assert store.read_accounts([A])[A] == Account(balance=100)  # read before the commit
        assert racing.fired
        assert store.get_account(A) == Account(balance=200)  # not the stale 100 from the cache
    finally:
        store._reader = racing._inner
        store.close()
