"""How should trio code reach SQLite? Measure the choices on this machine.

Compares one point read of a cached row: sqlite3 called directly, sqlite3 through
`trio.to_thread.run_sync`, and aiosqlite (an asyncio library; under trio it would also
need a trio-asyncio bridge, so its native asyncio figure is a lower bound); then one
batched read of 1,000 keys through a trio worker thread.

    python scripts/bench_sqlite_bridge.py
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time

import aiosqlite
import trio

ROWS = 10_000
N_DIRECT = 50_000
N_BRIDGED = 3_000


def setup(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    db.executemany("INSERT INTO kv VALUES (?, ?)", ((i.to_bytes(20, "big"), os.urandom(80)) for i in range(ROWS)))
    db.commit()
    db.close()


def key(i: int) -> bytes:
    return (i % ROWS).to_bytes(20, "big")


def direct(path: str) -> float:
    db = sqlite3.connect(path)
    t = time.perf_counter()
    for i in range(N_DIRECT):
        db.execute("SELECT v FROM kv WHERE k=?", (key(i),)).fetchone()
    return (time.perf_counter() - t) / N_DIRECT


def trio_thread(path: str) -> tuple[float, float]:
    db = sqlite3.connect(path, check_same_thread=False)

    def read(k: bytes) -> object:
        return db.execute("SELECT v FROM kv WHERE k=?", (k,)).fetchone()

    def read_batch(keys: list[bytes]) -> list:
        return db.execute(f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * len(keys))})", keys).fetchall()

    async def main() -> tuple[float, float]:
        t = time.perf_counter()
        for i in range(N_BRIDGED):
            await trio.to_thread.run_sync(read, key(i))
        per_read = (time.perf_counter() - t) / N_BRIDGED
        keys = [key(i * 7) for i in range(1000)]
        t = time.perf_counter()
        for _ in range(20):
            await trio.to_thread.run_sync(read_batch, keys[:400])
            await trio.to_thread.run_sync(read_batch, keys[400:800])
            await trio.to_thread.run_sync(read_batch, keys[800:])
        per_key_batched = (time.perf_counter() - t) / (20 * 1000)
        return per_read, per_key_batched

    return trio.run(main)


def aiosqlite_native(path: str) -> float:
    async def main() -> float:
        async with aiosqlite.connect(path) as db:
            t = time.perf_counter()
            for i in range(N_BRIDGED):
                async with db.execute("SELECT v FROM kv WHERE k=?", (key(i),)) as cursor:
                    await cursor.fetchone()
            return (time.perf_counter() - t) / N_BRIDGED

    return asyncio.run(main())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.sqlite")
        setup(path)
        d = direct(path)
        t, tb = trio_thread(path)
        a = aiosqlite_native(path)
    print(f"sqlite3 direct, point read:                 {d * 1e6:8.1f} µs")
    print(f"sqlite3 via trio.to_thread, point read:     {t * 1e6:8.1f} µs")
    print(f"aiosqlite (asyncio, no trio bridge), read:  {a * 1e6:8.1f} µs")
    print(f"sqlite3 via trio.to_thread, 1,000 keys in 3 batched queries: {tb * 1e6:6.2f} µs per key")


if __name__ == "__main__":
    main()
