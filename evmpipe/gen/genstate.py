"""`evmpipe gen state`: write a mainnet-shaped genesis state (`shape.StateShape`) as a datadir.

Streamed and sorted, in bounded memory. Python generates rows in index order and
appends them to unindexed staging tables; SQLite's external sorter (C, temp files on
the same disk, `PRAGMA threads`) puts them in key order, twice: by hashed key for the
tries (`state.bulk.root_from_sorted`, one bucket of leaves in memory at a time) and by
raw key for the flat tables. Trie nodes are staged too and copied into `trie_nodes`
sorted by hash. Only the EOA address table (20 bytes each) is held in memory whole.

Order: the storage tries first (an account's row needs its storage root), then the
accounts and the account trie, then the flat tables, the genesis header and the meta
rows a datadir has (`pipeline.datadir.open_datadir` then opens it as any other).

Atomic: everything is built in `D.partial-<pid>` beside `D` under the name
`state.sqlite.building`, then renamed to `state.sqlite` and the directory to `D`. A
killed build leaves only a `.partial-` directory without a `state.sqlite` (the next
build removes it once its process is gone); a failed build (disk full included)
removes its own.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from random import Random
from typing import Callable, Iterator

from eth_hash.auto import keccak

from evmpipe.gen import contracts as C
from evmpipe.gen.shape import BEACON_ROOTS_ADDRESS, HISTORY_BUFFER_LENGTH, OTHER_CODES, StateShape
from state.account import Account
from state.bulk import build_buckets, join_buckets, prefix_for, root_from_sorted
from state.nodekeys import DEFAULT_SCHEME, HASH, META_KEY, SCHEMES
from state.codec import encode_account, encode_int
from state.store import SCHEMA_VERSION, _SCHEMA
from state.trie import encode_account as rlp_account, rlp_str

DB_NAME = "state.sqlite"
BUILDING_NAME = "state.sqlite.building"
ETHER = 10**18
GENESIS_TIMESTAMP = 1_712_000_000
EXTRA_DATA = b"evmpipe-gen-state"
BYTES_PER_ITEM = 420  # measured: final + staging + sorter bytes per account or slot, peak
_ROWS = 20_000  # rows per executemany


class BuildError(RuntimeError):
    """The build could not finish; nothing was left at the target."""


def beacon_code() -> bytes:
    from eth.vm.forks.cancun.constants import BEACON_ROOTS_CONTRACT_CODE

    return BEACON_ROOTS_CONTRACT_CODE


def other_code(k: int) -> bytes:
    """One of the small contracts' code blobs: PUSH1 0 DUP1 REVERT, then a tag."""
    return b"\x60\x00\x80\xfd" + keccak(b"evmpipe-gen/other-code" + k.to_bytes(4, "big"))


class BuildProgress:
    """Work units done of a total, with an ETA: a rich bar on a terminal, else a line every 10 s."""

    def __init__(self, total: int, stream=None) -> None:  # type: ignore[no-untyped-def]
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.phase = ""
        self.started = self._last = time.perf_counter()
        self._bar = self._task = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(file=self.stream))
            self._bar.start()
            self._task = self._bar.add_task("gen state", total=total)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if self._bar is not None:
            self._bar.update(self._task, description=phase)
        else:
            self._line(force=True)

    def advance(self, units: int) -> None:
        units = max(0, min(units, self.total - self.done))
        self.done += units
        if self._bar is not None:
            self._bar.update(self._task, advance=units)
        else:
            self._line()

    def _line(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 10:
            return
        self._last = now
        elapsed = now - self.started
        eta = elapsed * (self.total - self.done) / self.done if self.done else float("nan")
        print(f"gen state: {self.phase}: {self.done / self.total:6.1%}, {elapsed:5.0f} s elapsed, ETA {eta:5.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def build_state(datadir: str | Path, shape: StateShape, *, progress: bool = True, jobs: int | None = None, trie_scheme: str = DEFAULT_SCHEME) -> dict:
    """Build the datadir; return what was built (counts, root, seconds). Raises BuildError.
    `trie_scheme`: how its trie nodes are keyed (state.nodekeys)."""
    global _SCHEME
    if trie_scheme not in SCHEMES:
        raise BuildError(f"unknown trie scheme {trie_scheme!r} (one of {', '.join(SCHEMES)})")
    _SCHEME = trie_scheme  # read by the forked jobs
    shape = shape.resolved()
    target = Path(datadir).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BuildError(f"{target} exists and is not an empty directory; gen state never overwrites a datadir")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    need = BYTES_PER_ITEM * (shape.accounts + shape.expected_slots())
    free = shutil.disk_usage(target.parent).free
    if free < need:
        raise BuildError(f"{target.parent}: {free / 2**30:.1f} GiB free, a state of this size needs about {need / 2**30:.1f} GiB while it builds")
    work = target.parent / f"{target.name}.partial-{os.getpid()}"
    work.mkdir()
    (work / "INCOMPLETE").write_text("a gen state build that did not finish; safe to delete\n")
    started = time.perf_counter()
    # units: EOA table, slots, EOA rows, account trie, flat accounts + slots, trie-node copy (accounts + slots)
    bar = BuildProgress(5 * shape.accounts + 3 * shape.expected_slots(), stream=None if progress else open(os.devnull, "w"))
    try:
        info = _build(work, shape, bar, jobs or min(2, os.cpu_count() or 1))
        os.replace(work / BUILDING_NAME, work / DB_NAME)
        (work / "INCOMPLETE").unlink()
        if target.exists():
            target.rmdir()
        os.replace(work, target)
        _fsync_dir(target.parent)
    except sqlite3.Error as error:
        shutil.rmtree(work, ignore_errors=True)
        if "full" in str(error) or "I/O" in str(error):
            raise BuildError(f"{work}: {error} (the disk filled?): nothing was written to {target}") from error
        raise BuildError(f"{work}: {error}; nothing was written to {target}") from error
    except OSError as error:
        shutil.rmtree(work, ignore_errors=True)
        what = "the disk is full" if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else str(error)
        raise BuildError(f"{work}: {what}; nothing was written to {target}") from error
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        bar.close()
    info["seconds"] = round(time.perf_counter() - started, 1)
    return info


def _remove_stale_partials(target: Path) -> None:
    for partial in target.parent.glob(f"{target.name}.partial-*"):
        try:
            os.kill(int(partial.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the build, in `jobs` processes --------------------------------------------------
#
# Phase 1: the EOA address table (keyed ones derive a public key: the costly part).
# Phase 2: every contract's storage, contracts dealt to the jobs by size: slots
#   generated, sorted by hashed key in memory (on disk above IN_MEMORY_SLOTS), the
#   storage trie built; flat rows, trie nodes and the contract's account row go to the
#   job's own part file.
# Phase 3: the EOAs' account rows, each job a range of them.
# Phase 4: the account trie, each job a range of first nibbles, reading every part
#   file in hashed-key order; the main process joins the buckets into the root.
# Phase 5 (main): the final tables, each filled in key order from all part files.

IN_MEMORY_SLOTS = 500_000
_EOAS = bytearray()  # the EOA address table, inherited by forked jobs
_COUNTER = None  # a shared progress counter (multiprocessing.Value), inherited too
_SCHEME = DEFAULT_SCHEME  # the trie-node key scheme of the build (state.nodekeys), inherited too


def _job_init() -> None:
    """A job leaves Ctrl-C to the main process, which cleans up, and dies quietly when
    the pool terminates it (SIGTERM)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _tick(units: int) -> None:
    if _COUNTER is not None:
        with _COUNTER.get_lock():
            _COUNTER.value += units


def _build(work: Path, shape: StateShape, bar: BuildProgress, jobs: int) -> dict:
    global _EOAS, _COUNTER
    import multiprocessing

    os.environ["SQLITE_TMPDIR"] = str(work)  # the sorter's temp files: same disk, removed with work
    ctx = multiprocessing.get_context("fork")
    _COUNTER = ctx.Value("q", 0)
    try:
        bar.set_phase("EOA addresses")
        step = 65_536
        chunks = [(shape, start, min(start + step, shape.eoa_count)) for start in range(0, shape.eoa_count, step)]
        with ctx.Pool(jobs, initializer=_job_init) as pool:
            _EOAS = bytearray(b"".join(_wait(pool.starmap_async(_eoa_chunk, chunks, chunksize=1), bar)))
        sizes = _contract_sizes(shape)
        loads = [0] * jobs
        dealt: list[list[int]] = [[] for _ in range(jobs)]
        for cid in sorted(range(len(sizes)), key=lambda c: -sizes[c]):  # the largest first, to the least loaded
            k = loads.index(min(loads))
            dealt[k].append(cid)
            loads[k] += sizes[cid] + 8
        bounds = [round(shape.eoa_count * k / jobs / step) * step for k in range(jobs)] + [shape.eoa_count]
        prefix = max(1, prefix_for(shape.accounts))
        nibbles = [round(16 * k / jobs) for k in range(jobs + 1)]
        with ctx.Pool(jobs, initializer=_job_init) as pool:
            bar.set_phase("storage and storage tries")
            _wait(pool.starmap_async(_storage_job, [(work, k, shape, dealt[k]) for k in range(jobs)], chunksize=1), bar)
            bar.set_phase("accounts")
            _wait(pool.starmap_async(_accounts_job, [(work, k, shape, bounds[k], bounds[k + 1]) for k in range(jobs)], chunksize=1), bar)
            bar.set_phase("account trie")
            parts = _wait(pool.starmap_async(_account_trie_job, [(work, k, jobs, nibbles[k], nibbles[k + 1], prefix) for k in range(jobs)], chunksize=1), bar)
        _EOAS = bytearray()
        with ctx.Pool(jobs, initializer=_job_init) as pool:  # fresh jobs: the sorts' caches on top of small processes
            bar.set_phase("sorted tables")
            units = shape.accounts + shape.expected_slots()
            counts = dict(kv for done in _wait(pool.starmap_async(_sorted_job, [(work, jobs, what, units) for what in ("trie_nodes", "flat")], chunksize=1), bar) for kv in done.items())
    finally:
        _COUNTER = None
    tops: dict[str, tuple] = {}
    for part in parts:
        tops.update(part)
    db = sqlite3.connect(work / BUILDING_NAME, isolation_level=None)
    try:
        for pragma in _FINAL_PRAGMAS:
            db.execute(f"PRAGMA {pragma}")
        db.execute("ATTACH DATABASE ? AS flat", (str(work / FLAT_NAME),))
        db.execute("BEGIN")
        bar.set_phase("copy flat tables")
        # `INSERT INTO t SELECT * FROM flat.t` into an empty table of the same schema is
        # SQLite's transfer optimisation: b-tree cells copied in key order, no sort.
        db.execute("INSERT INTO accounts SELECT * FROM flat.accounts")
        db.execute("INSERT INTO storage SELECT * FROM flat.storage")
        before = db.total_changes
        root = join_buckets(tops, lambda nodes: db.executemany("INSERT OR IGNORE INTO trie_nodes VALUES (?, ?)", nodes.items()), prefix=prefix, owner=_owner(b""))
        counts["trie_nodes"] += db.total_changes - before  # the nodes above the buckets
        _codes(db)
        header_rlp, header_hash = _genesis(db, shape, root)
        db.execute("COMMIT")
        db.execute("DETACH DATABASE flat")
        for k in range(jobs):
            os.unlink(work / f"part-{k}.sqlite")
            os.unlink(work / f"trie-{k}.sqlite")
        os.unlink(work / FLAT_NAME)
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()
    bar.advance(bar.total - bar.done)
    with open(work / BUILDING_NAME, "rb+") as f:
        os.fsync(f.fileno())
    return {"state_root": "0x" + root.hex(), "genesis_hash": "0x" + header_hash.hex(), **counts, "contracts": len(sizes), "jobs": jobs, "shape": json.loads(shape.to_json())}


def _wait(result, bar: BuildProgress):  # type: ignore[no-untyped-def]
    """Wait for the jobs, moving the bar by what they count."""
    seen = 0
    while not result.ready():
        result.wait(0.5)
        value = _COUNTER.value if _COUNTER is not None else 0
        bar.advance(value - seen)
        seen = value
    out = result.get()  # raises what a job raised
    if _COUNTER is not None:
        with _COUNTER.get_lock():
            bar.advance(_COUNTER.value - seen)
            _COUNTER.value = 0
    return out


try:  # keccak256 without eth_hash's dispatch (~2 us of ~4 us per hash; three hashes a slot)
    from sha3 import keccak_256 as _k256

    def _keccak_fn() -> Callable[[bytes], bytes]:
        return lambda data: _k256(data).digest()
except ImportError:  # pragma: no cover - safe-pysha3 is in our dependencies (pyproject.toml)
    def _keccak_fn() -> Callable[[bytes], bytes]:
        return keccak


def _eoa_chunk(shape: StateShape, start: int, end: int) -> bytes:
    keyed = min(end, max(start, shape.keyed))  # type: ignore[type-var]
    h = _keccak_fn()
    stem = b"evmpipe-gen/addr/" + shape.seed.to_bytes(8, "big") + b"eoa/"  # = keys.fresh_address(seed, "eoa", i)
    out = b"".join(shape.eoa_address(i) for i in range(start, keyed)) + b"".join(h(stem + i.to_bytes(8, "big"))[12:] for i in range(keyed, end))
    _tick(end - start)
    return out


def _rng(shape: StateShape, what: str, chunk: int) -> Random:
    return Random(f"evmpipe-gen-state/{shape.seed}/{what}/{chunk}")


def _token_amount(rng: Random) -> int:
    return int(10 ** rng.uniform(0, 6)) * 10**18 + rng.getrandbits(40)


def _contract_sizes(shape: StateShape) -> list[int]:
    """Slots of each contract, by contract id: beacon roots, tokens, pools, small contracts."""
    sizes = [2 * HISTORY_BUFFER_LENGTH]
    for t in range(shape.tokens):  # type: ignore[arg-type]
        sizes.append(shape.holders[t] + 1 + sum(1 for pair in shape.pool_pairs if t in pair))
    sizes += [5] * shape.pools  # type: ignore[operator]
    sizes += [shape.other_slots(i) for i in range(shape.other_count)]
    return sizes


def _pool_reserves(shape: StateShape, p: int) -> tuple[int, int]:
    rng = _rng(shape, "pool", p)
    return int(10 ** rng.uniform(5, 8)) * 10**18, int(10 ** rng.uniform(5, 8)) * 10**18


def _contract(shape: StateShape, cid: int) -> tuple[bytes, bytes, Iterator[tuple[bytes, int]]]:
    """(address, code hash, its slots as (32-byte slot, value)) of contract `cid`."""
    t_end = 1 + shape.tokens  # type: ignore[operator]
    p_end = t_end + shape.pools  # type: ignore[operator]
    if cid == 0:
        return BEACON_ROOTS_ADDRESS, keccak(beacon_code()), _beacon_slots()
    if cid < t_end:
        return shape.token_address(cid - 1), keccak(C.runtime_code("Token")), _token_slots(shape, cid - 1)
    if cid < p_end:
        return shape.pool_address(cid - t_end), keccak(C.runtime_code("Pair")), _pool_slots(shape, cid - t_end)
    i = cid - p_end
    return shape.other_address(i), keccak(other_code(i % OTHER_CODES)), (((s).to_bytes(32, "big"), (i + 1) * 1_000_003 + s) for s in range(shape.other_slots(i)))


def _beacon_slots() -> Iterator[tuple[bytes, int]]:
    """The beacon-roots ring buffer, full: timestamps, then roots."""
    for k in range(HISTORY_BUFFER_LENGTH):
        ts = GENESIS_TIMESTAMP - 12 * (HISTORY_BUFFER_LENGTH - k)
        yield (ts % HISTORY_BUFFER_LENGTH).to_bytes(32, "big"), ts
        yield (ts % HISTORY_BUFFER_LENGTH + HISTORY_BUFFER_LENGTH).to_bytes(32, "big"), int.from_bytes(keccak(ts.to_bytes(8, "big")), "big")


def _token_slots(shape: StateShape, t: int) -> Iterator[tuple[bytes, int]]:
    """Token t's balances (Zipf holder count), the pools' reserves, the total supply."""
    supply = 0
    offset, stride = shape._affine(t)
    e, holders, eoas = shape.eoa_count, shape.holders[t], _EOAS
    zeros = b"\x00" * 44
    h = _keccak_fn()
    for chunk in range(0, holders, 65_536):
        rng = _rng(shape, f"token{t}", chunk)
        uniform, bits = rng.uniform, rng.getrandbits
        for j in range(chunk, min(chunk + 65_536, holders)):
            i = 20 * ((offset + j * stride) % e)
            amount = int(10 ** uniform(0, 6)) * 10**18 + bits(40)  # = _token_amount(rng)
            supply += amount
            yield h(zeros + eoas[i : i + 20]), amount
    for p, pair in enumerate(shape.pool_pairs):
        if t in pair:
            amount = _pool_reserves(shape, p)[pair.index(t)]
            supply += amount
            yield C.balance_slot(shape.pool_address(p)).to_bytes(32, "big"), amount
    yield C.TOKEN_TOTAL_SUPPLY_SLOT.to_bytes(32, "big"), supply


def _pool_slots(shape: StateShape, p: int) -> Iterator[tuple[bytes, int]]:
    t0, t1 = shape.pool_pairs[p]
    r0, r1 = _pool_reserves(shape, p)
    rng = _rng(shape, "pool-acc", p)
    yield C.PAIR_TOKEN0_SLOT.to_bytes(32, "big"), int.from_bytes(shape.token_address(t0), "big")
    yield C.PAIR_TOKEN1_SLOT.to_bytes(32, "big"), int.from_bytes(shape.token_address(t1), "big")
    yield C.PAIR_RESERVES_SLOT.to_bytes(32, "big"), C.pack_reserves(r0, r1, GENESIS_TIMESTAMP - 84)
    yield C.PAIR_PRICE0_SLOT.to_bytes(32, "big"), rng.getrandbits(200) or 1
    yield C.PAIR_PRICE1_SLOT.to_bytes(32, "big"), rng.getrandbits(200) or 1


def _part(work: Path, name: str) -> sqlite3.Connection:
    """A job's part file: its flat rows, trie nodes and account rows, unsorted."""
    db = sqlite3.connect(work / f"{name}.sqlite", isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-65536", "temp_store=FILE", "locking_mode=NORMAL"):
        db.execute(f"PRAGMA {pragma}")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS slots (address BLOB NOT NULL, slot BLOB NOT NULL, value BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS nodes (hash BLOB NOT NULL, node BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS accounts (hkey BLOB NOT NULL, address BLOB NOT NULL, data BLOB NOT NULL);
        """
    )
    return db


def _storage_job(work: Path, k: int, shape: StateShape, cids: list[int]) -> int:
    db = _part(work, f"part-{k}")
    db.execute("BEGIN")
    emit = _node_writer(db)
    h = _keccak_fn()
    flat: list[tuple[bytes, bytes, bytes]] = []
    accounts: list[tuple[bytes, bytes, bytes]] = []
    for cid in cids:
        address, code_hash, slots = _contract(shape, cid)
        leaves: list[tuple[bytes, bytes]] = []
        spilled = 0
        for slot, value in slots:
            encoded = encode_int(value)
            flat.append((address, slot, encoded))
            leaves.append((h(slot), rlp_str(encoded)))
            if len(flat) >= _ROWS:
                db.executemany("INSERT INTO slots VALUES (?, ?, ?)", flat)
                _tick(len(flat))
                flat.clear()
            if len(leaves) >= IN_MEMORY_SLOTS:  # a big contract: its leaves sorted on disk
                if not spilled:
                    db.execute("CREATE TEMP TABLE big (key BLOB NOT NULL, value BLOB NOT NULL)")
                db.executemany("INSERT INTO temp.big VALUES (?, ?)", leaves)
                spilled += len(leaves)
                leaves.clear()
        if spilled:
            db.executemany("INSERT INTO temp.big VALUES (?, ?)", leaves)
            count = spilled + len(leaves)
            leaves.clear()
            root = root_from_sorted(_iter_rows(db.execute("SELECT key, value FROM temp.big ORDER BY key")), emit, prefix=prefix_for(count), owner=_owner(keccak(address)))
            db.execute("DROP TABLE temp.big")
        else:
            leaves.sort()
            root = root_from_sorted(leaves, emit, prefix=prefix_for(len(leaves)), owner=_owner(keccak(address)))
        accounts.append((keccak(address), address, encode_account(Account(1, 0, code_hash, root))))
        if len(accounts) >= _ROWS:
            db.executemany("INSERT INTO accounts VALUES (?, ?, ?)", accounts)
            accounts.clear()
    db.executemany("INSERT INTO slots VALUES (?, ?, ?)", flat)
    _tick(len(flat))
    db.executemany("INSERT INTO accounts VALUES (?, ?, ?)", accounts)
    db.execute("COMMIT")
    db.close()
    return len(cids)


def _owner(owner: bytes) -> bytes | None:
    """The owner argument of state.bulk: None (rows keyed by hash) unless the build keys
    nodes by place."""
    return None if _SCHEME == HASH else owner


def _iter_rows(cursor: sqlite3.Cursor) -> Iterator[tuple]:
    while True:
        batch = cursor.fetchmany(_ROWS)
        if not batch:
            return
        yield from batch


def _node_writer(db: sqlite3.Connection) -> Callable[[dict[bytes, bytes]], None]:
    def emit(nodes: dict[bytes, bytes]) -> None:
        db.executemany("INSERT INTO nodes VALUES (?, ?)", nodes.items())

    return emit


def _accounts_job(work: Path, k: int, shape: StateShape, start: int, end: int) -> int:
    """The account rows of EOAs [start, end) (job 0 adds the coinbase)."""
    db = _part(work, f"part-{k}")
    db.execute("BEGIN")
    rows: list[tuple[bytes, bytes, bytes]] = []
    eoas = _EOAS
    h = _keccak_fn()
    for chunk in range(start, end, 65_536):
        rng = _rng(shape, "eoa", chunk)
        for i in range(chunk, min(chunk + 65_536, end)):
            address = bytes(eoas[20 * i : 20 * i + 20])
            nonce = 0 if rng.random() < 0.33 else int(10 ** rng.uniform(0, 3.7))
            balance = int(10 ** rng.uniform(12, 22.5)) if rng.random() < 0.97 else int(10 ** rng.uniform(22.5, 25))
            if i < shape.keyed:  # type: ignore[operator]
                balance = max(balance, 10**18 + rng.getrandbits(56))  # senders can pay for a few transactions
            rows.append((h(address), address, encode_account(Account(nonce, balance))))
        db.executemany("INSERT INTO accounts VALUES (?, ?, ?)", rows)
        _tick(len(rows))
        rows.clear()
    if k == 0:
        coinbase = shape.coinbase()
        db.execute("INSERT INTO accounts VALUES (?, ?, ?)", (keccak(coinbase), coinbase, encode_account(Account(0, 5 * ETHER))))
    db.execute("COMMIT")
    db.close()
    return end - start


def _account_trie_job(work: Path, k: int, jobs: int, lo: int, hi: int, prefix: int) -> dict[str, tuple]:
    """Buckets of the account trie whose first nibble is in [lo, hi), from every part file
    (its nodes go to a file of their own: the parts are read meanwhile)."""
    db = _part(work, f"trie-{k}")
    for j in range(jobs):
        db.execute(f"ATTACH DATABASE ? AS a{j}", (str(work / f"part-{j}.sqlite"),))
    union = " UNION ALL ".join(f"SELECT hkey, data FROM a{j}.accounts" for j in range(jobs))
    low, high = bytes([lo << 4]), (bytes([hi << 4]) if hi < 16 else b"\xff" * 33)
    db.execute("BEGIN")
    cursor = db.execute(f"SELECT hkey, data FROM ({union}) WHERE hkey >= ? AND hkey < ? ORDER BY hkey", (low, high))

    def leaves() -> Iterator[tuple[bytes, bytes]]:
        for hkey, data in _iter_rows(cursor):
            yield hkey, rlp_account(int.from_bytes(data[:8], "big"), int.from_bytes(data[72:], "big"), data[40:72], data[8:40])

    tops = build_buckets(leaves(), _node_writer(db), prefix=prefix, on_leaf=_tick, owner=_owner(b""))
    db.execute("COMMIT")
    db.close()
    return tops


def _codes(db: sqlite3.Connection) -> None:
    codes = [beacon_code(), C.runtime_code("Token"), C.runtime_code("Pair")] + [other_code(k) for k in range(OTHER_CODES)]
    db.executemany("INSERT OR IGNORE INTO code VALUES (?, ?)", [(keccak(c), c) for c in codes])


# threads=0: SQLite's multi-threaded sorter merges through buffers of cache_size each,
# several per merge level; at 10M accounts that held 1.8 GB (measured). Each of the two
# sorting jobs gets 256 MiB.
_FINAL_PRAGMAS = ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144", "temp_store=FILE", "threads=0", "locking_mode=EXCLUSIVE")
FLAT_NAME = "flat.sqlite"


def _sorted_job(work: Path, jobs: int, what: str, units: int) -> dict[str, int]:
    """One of the final sorts, run beside the other: the trie nodes by hash straight into
    the datadir's file, or the flat accounts and storage by key into `flat.sqlite`
    (the main process copies those in without sorting again)."""
    db = sqlite3.connect(work / (BUILDING_NAME if what == "trie_nodes" else FLAT_NAME), isolation_level=None)
    try:
        for pragma in _FINAL_PRAGMAS:
            db.execute(f"PRAGMA {pragma}")
        db.executescript(_SCHEMA)
        for k in range(jobs):
            db.execute(f"ATTACH DATABASE ? AS p{k}", (str(work / f"part-{k}.sqlite"),))
            db.execute(f"ATTACH DATABASE ? AS t{k}", (str(work / f"trie-{k}.sqlite"),))

        def union(table: str, columns: str, parts: str = "p") -> str:
            return " UNION ALL ".join(f"SELECT {columns} FROM {p}{k}.{table}" for p in parts for k in range(jobs))

        db.execute("BEGIN")
        if what == "trie_nodes":
            db.execute(f"INSERT OR IGNORE INTO trie_nodes SELECT hash, node FROM ({union('nodes', 'hash, node', 'pt')}) ORDER BY hash")
            out = {"trie_nodes": db.execute("SELECT count(*) FROM trie_nodes").fetchone()[0]}
            _tick(units)
        else:
            db.execute(f"INSERT INTO accounts SELECT address, data FROM ({union('accounts', 'address, data')}) ORDER BY address")
            accounts = db.execute("SELECT count(*) FROM accounts").fetchone()[0]
            _tick(accounts)
            db.execute(f"INSERT INTO storage SELECT address, slot, value FROM ({union('slots', 'address, slot, value')}) ORDER BY address, slot")
            out = {"accounts": accounts, "slots": db.execute("SELECT count(*) FROM storage").fetchone()[0]}
            _tick(units - accounts)
        db.execute("COMMIT")
        return out
    finally:
        db.close()


def genesis_header(shape: StateShape, state_root: bytes):  # type: ignore[no-untyped-def]
    """The Cancun genesis header over `state_root` (py-evm builds and encodes it)."""
    from eth import constants
    from eth.vm.forks import CancunVM

    return CancunVM.create_genesis_header(
        coinbase=constants.ZERO_ADDRESS, difficulty=0, gas_limit=shape.gas_limit, timestamp=GENESIS_TIMESTAMP,
        extra_data=EXTRA_DATA, mix_hash=constants.ZERO_HASH32, nonce=b"\0" * 8, base_fee_per_gas=7 * 10**9,
        withdrawals_root=constants.BLANK_ROOT_HASH, blob_gas_used=0, excess_blob_gas=0,
        parent_beacon_block_root=constants.ZERO_HASH32, state_root=state_root,
    )


def _genesis(db: sqlite3.Connection, shape: StateShape, root: bytes) -> tuple[bytes, bytes]:
    """Block 0 and the meta rows `open_datadir` and `StateStore` expect."""
    import rlp

    from execution.forks import schedule_for_network

    header = genesis_header(shape, root)
    header_rlp = rlp.encode(header)
    block_hash = keccak(header_rlp)
    db.execute("INSERT INTO headers VALUES (?, 0, ?, ?, ?)", (block_hash, b"\x00" * 32, header_rlp, encode_int(0)))
    db.execute("INSERT INTO blocks VALUES (0, ?)", (block_hash,))
    db.execute("INSERT INTO bodies VALUES (?, ?)", (block_hash, b""))
    meta = {
        "schema_version": str(SCHEMA_VERSION).encode(),
        "database_id": os.urandom(16),
        "genesis_hash": block_hash,
        "schedule": json.dumps(schedule_for_network("Cancun", 1).to_dict()).encode(),
        "head": (0).to_bytes(8, "big") + block_hash + root,
        "gen_state": shape.to_json().encode(),
    }
    if _SCHEME != HASH:
        meta[META_KEY] = _SCHEME.encode()
    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
    return header_rlp, block_hash


def read_shape(datadir: str | Path) -> StateShape | None:
    """The shape a datadir was generated with (None: not made by gen state)."""
    path = Path(datadir) / DB_NAME
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='gen_state'").fetchone()
    finally:
        db.close()
    return None if row is None else StateShape.from_json(row[0])

