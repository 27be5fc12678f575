"""Where state reads are served from, and cold runs that make the answer reproducible.

Tiers, from fast to slow, and how each is counted:

- overlay: the diffs of in-flight blocks (`state.overlay.Overlay`); counted per read
  by `watch_overlay`, which wraps one overlay's read methods.
- hot: the store's in-process LRU caches (`StateStore.accounts/slots/codes/nodes`);
  counted per read by the store (`StateStore.reads`). A cached absence (an account
  that does not exist, a slot that is zero) is a *negative* hit, counted apart: most
  slot reads on mainnet probe slots that do not exist.
- db: a lookup that reached SQLite (counted per read, by kind, with how many found
  nothing). SQLite then serves the pages from its page cache or its memory map, or
  asks the OS: `sqlite_pages` gives SQLite's page-cache hits and misses for the
  connection (`sqlite3_db_status`, through ctypes).
- disk: what the OS really read from the device for this process, from
  `/proc/self/io` (`read_bytes`): the bytes, not the reads, since one read may
  touch several pages and the kernel reads ahead.

A cold run (`evict`) drops every database file of the datadir from the OS page cache
with `posix_fadvise(POSIX_FADV_DONTNEED)` (no privileges needed), so the first read
of every page comes off the disk.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("account", "slot", "code", "node")
TIERS = ("overlay", "hot", "hot_negative", "db", "db_absent")


@dataclass
class ReadCounts:
    """Per kind of read, per tier: how many reads it served."""

    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {k: dict.fromkeys(TIERS, 0) for k in KINDS})

    def add(self, kind: str, tier: str, n: int = 1) -> None:
        self.counts[kind][tier] += n

    def copy(self) -> ReadCounts:
        return ReadCounts({k: dict(v) for k, v in self.counts.items()})

    def minus(self, other: ReadCounts) -> ReadCounts:
        return ReadCounts({k: {t: self.counts[k][t] - other.counts[k][t] for t in TIERS} for k in KINDS})


def proc_io() -> dict[str, int]:
    """This process's I/O counters (`read_bytes`: what came off the device)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/io") as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key.strip()] = int(value)
    except OSError:
        pass
    return out


def evict(datadir: str | Path) -> int:
    """Drop the datadir's database files from the OS page cache; returns the bytes they hold.

    Dirty pages cannot be dropped, so each file is synced first."""
    total = 0
    for path in sorted(Path(datadir).iterdir()):
        if not path.is_file() or not path.name.startswith("state.sqlite"):
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


_SQLITE_DBSTATUS_CACHE_HIT = 7
_SQLITE_DBSTATUS_CACHE_MISS = 8
_lib: Any = None


def _sqlite_lib() -> Any:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("sqlite3")
        _lib = ctypes.CDLL(name) if name else False
        if _lib:
            _lib.sqlite3_db_status.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.c_int]
            _lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            _lib.sqlite3_db_filename.restype = ctypes.c_char_p
    return _lib


def _handle(db: sqlite3.Connection, path: str) -> int | None:
    """The connection's `sqlite3*`: the first field after the object header of CPython's
    connection object. Used only once `sqlite3_db_filename` confirms it is that database."""
    lib = _sqlite_lib()
    if not lib:
        return None
    pointer = ctypes.c_void_p.from_address(id(db) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    if not pointer:
        return None
    try:
        name = lib.sqlite3_db_filename(pointer, b"main")
    except (OSError, ValueError):
        return None
    if name is None or os.path.realpath(name.decode()) != os.path.realpath(path):
        return None
    return pointer


def sqlite_pages(db: sqlite3.Connection, path: str) -> dict[str, int] | None:
    """SQLite's page-cache hits and misses on this connection so far (None: not available)."""
    handle = _handle(db, path)
    if handle is None:
        return None
    out = {}
    for key, op in (("page_hits", _SQLITE_DBSTATUS_CACHE_HIT), ("page_misses", _SQLITE_DBSTATUS_CACHE_MISS)):
        current, high = ctypes.c_int(0), ctypes.c_int(0)
        if _sqlite_lib().sqlite3_db_status(handle, op, ctypes.byref(current), ctypes.byref(high), 0) != 0:
            return None
        out[key] = current.value
    return out


def watch_overlay(overlay: Any, counts: ReadCounts) -> None:
    """Count the reads one overlay answers from its in-flight diffs (the rest go to the
    store, which counts them). Wraps the instance's methods; the class is untouched."""
    store = overlay.store

    def wrap(name: str, kind: str) -> None:
        inner = getattr(overlay, name)

        def read(*args: Any) -> Any:
            before = store.reads.thread_calls()
            value = inner(*args)
            if store.reads.thread_calls() == before:  # this thread did not reach the store
                counts.add(kind, "overlay")
            return value

        setattr(overlay, name, read)

    for name, kind in (("get_account", "account"), ("get_account_below", "account"), ("get_storage", "slot"), ("get_code", "code"), ("get_trie_node", "node")):
        if hasattr(overlay, name):
            wrap(name, kind)


class StoreReads(ReadCounts):
    """The store's own counters (hot, hot_negative, db, db_absent), plus how many times
    each thread counted (so an overlay read can tell whether it reached the store,
    whatever other threads read meanwhile)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def add(self, kind: str, tier: str, n: int = 1) -> None:
        self.counts[kind][tier] += n
        self._local.calls = getattr(self._local, "calls", 0) + 1

    def thread_calls(self) -> int:
        return getattr(self._local, "calls", 0)

    def total(self, kind: str) -> int:
        c = self.counts[kind]
        return c["hot"] + c["hot_negative"] + c["db"]


def snapshot(store: Any, overlay_counts: ReadCounts | None = None, *, pages: bool = True) -> dict[str, Any]:
    """Everything counted so far, for differences between two points of a run.
    `pages=False` skips SQLite's page counters, which wait for the store's lock."""
    reads = store.reads.copy()
    if overlay_counts is not None:
        for kind in KINDS:
            reads.counts[kind]["overlay"] = overlay_counts.counts[kind]["overlay"]
    return {"reads": reads, "io": proc_io(), "pages": store.page_stats() if pages else None}


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The reads per kind and tier, SQLite page hits and misses, and bytes off the disk
    between two snapshots (JSON-ready)."""
    reads = after["reads"].minus(before["reads"]).counts
    out: dict[str, Any] = {"reads": reads}
    total = sum(sum(v for t, v in c.items() if t != "db_absent") for c in reads.values())
    served = {t: sum(reads[k][t] for k in KINDS) for t in ("overlay", "hot", "hot_negative", "db")}
    out["share"] = {t: round(v / total, 4) if total else 0.0 for t, v in served.items()}
    if after["pages"] is not None and before["pages"] is not None:
        out["sqlite_pages"] = {k: after["pages"][k] - before["pages"][k] for k in after["pages"]}
    out["disk_read_bytes"] = after["io"].get("read_bytes", 0) - before["io"].get("read_bytes", 0)
    return out


def advise_random(datadir: str | Path) -> int:
    """Turn off the kernel's readahead on this process's open database files
    (`POSIX_FADV_RANDOM` on SQLite's own descriptors, found in /proc/self/fd): a point
    lookup then reads its page, not the 128 KiB around it. Returns how many
    descriptors were advised. Reads through the memory map are not affected."""
    prefix = os.path.realpath(Path(datadir) / "state.sqlite")
    advised = 0
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(prefix):
            try:
                os.posix_fadvise(int(name), 0, 0, os.POSIX_FADV_RANDOM)
                advised += 1
            except OSError:
                pass
    return advised
