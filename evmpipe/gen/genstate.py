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
from itertools import groupby
from pathlib import Path
from random import Random
from typing import Callable, Iterator

from eth_hash.auto import keccak

from evmpipe.gen import contracts as C
from evmpipe.gen.shape import BEACON_ROOTS_ADDRESS, HISTORY_BUFFER_LENGTH, OTHER_CODES, StateShape
from state.account import BLANK_ROOT, Account
from state.bulk import prefix_for, root_from_sorted
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


def build_state(datadir: str | Path, shape: StateShape, *, progress: bool = True) -> dict:
    """Build the datadir; return what was built (counts, root, seconds). Raises BuildError."""
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
    bar = BuildProgress(4 * (shape.accounts + shape.expected_slots()), stream=None if progress else open(os.devnull, "w"))
    try:
        info = _build(work, shape, bar)
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


def _build(work: Path, shape: StateShape, bar: BuildProgress) -> dict:
    os.environ["SQLITE_TMPDIR"] = str(work)  # the sorter's temp files: same disk, removed with work
    db = sqlite3.connect(work / BUILDING_NAME, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-131072", "temp_store=FILE", "threads=2", "locking_mode=EXCLUSIVE"):
            db.execute(f"PRAGMA {pragma}")
        db.executescript(_SCHEMA)
        db.execute("ATTACH DATABASE ? AS stage", (str(work / "stage.sqlite"),))
        db.execute("PRAGMA stage.journal_mode=OFF")
        db.execute("PRAGMA stage.synchronous=OFF")
        db.executescript(
            """
            CREATE TABLE stage.contracts (id INTEGER PRIMARY KEY, address BLOB NOT NULL, code_hash BLOB NOT NULL, storage_root BLOB);
            CREATE TABLE stage.slots (trie INTEGER NOT NULL, hkey BLOB NOT NULL, slot BLOB NOT NULL, value BLOB NOT NULL);
            CREATE TABLE stage.accounts (hkey BLOB NOT NULL, address BLOB NOT NULL, data BLOB NOT NULL);
            CREATE TABLE stage.nodes (hash BLOB NOT NULL, node BLOB NOT NULL);
            """
        )
        db.execute("BEGIN")
        eoas = _eoa_addresses(shape, bar)
        _stage_contracts(db, shape, eoas, bar)
        _storage_tries(db, shape, bar)
        _stage_accounts(db, shape, eoas, bar)
        del eoas
        root = _account_trie(db, shape, bar)
        counts = _flat_tables(db, bar)
        header_rlp, header_hash = _genesis(db, shape, root)
        db.execute("COMMIT")
        db.execute("DETACH DATABASE stage")
        os.unlink(work / "stage.sqlite")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()
    with open(work / BUILDING_NAME, "rb+") as f:
        os.fsync(f.fileno())
    return {"state_root": "0x" + root.hex(), "genesis_hash": "0x" + header_hash.hex(), **counts, "shape": json.loads(shape.to_json())}


def _eoa_addresses(shape: StateShape, bar: BuildProgress) -> bytearray:
    """Every EOA's address, 20 bytes each (the holders of the tokens are drawn from them)."""
    bar.set_phase("EOA addresses")
    out = bytearray()
    step = 10_000
    for start in range(0, shape.eoa_count, step):
        out += b"".join(shape.eoa_address(i) for i in range(start, min(start + step, shape.eoa_count)))
        bar.advance((min(start + step, shape.eoa_count) - start) // 4)
    return out


def _rng(shape: StateShape, what: str, chunk: int) -> Random:
    return Random(f"evmpipe-gen-state/{shape.seed}/{what}/{chunk}")


def _token_amount(rng: Random) -> int:
    return int(10 ** rng.uniform(0, 6)) * 10**18 + rng.getrandbits(40)


def _stage_contracts(db: sqlite3.Connection, shape: StateShape, eoas: bytearray, bar: BuildProgress) -> None:
    """Every contract's storage into stage.slots (trie = contract id), its code into `code`."""
    bar.set_phase("storage")
    codes = {BEACON_ROOTS_ADDRESS: beacon_code(), "token": C.runtime_code("Token"), "pair": C.runtime_code("Pair")}
    db.executemany("INSERT OR IGNORE INTO code VALUES (?, ?)", [(keccak(c), c) for c in codes.values()])
    db.executemany("INSERT OR IGNORE INTO code VALUES (?, ?)", [(keccak(other_code(k)), other_code(k)) for k in range(OTHER_CODES)])
    contracts: list[tuple[int, bytes, bytes]] = []
    rows: list[tuple] = []

    def flush(force: bool = False) -> None:
        if rows and (force or len(rows) >= _ROWS):
            db.executemany("INSERT INTO stage.slots VALUES (?, ?, ?, ?)", rows)
            bar.advance(len(rows))
            rows.clear()

    def put(trie: int, slot: bytes, value: int) -> None:
        rows.append((trie, keccak(slot), slot, encode_int(value)))
        if len(rows) >= _ROWS:
            flush()

    # the beacon-roots ring buffer, full: timestamps then roots
    cid = 0
    contracts.append((cid, BEACON_ROOTS_ADDRESS, keccak(codes[BEACON_ROOTS_ADDRESS])))
    for k in range(HISTORY_BUFFER_LENGTH):
        ts = GENESIS_TIMESTAMP - 12 * (HISTORY_BUFFER_LENGTH - k)
        put(cid, (ts % HISTORY_BUFFER_LENGTH).to_bytes(32, "big"), ts)
        put(cid, (ts % HISTORY_BUFFER_LENGTH + HISTORY_BUFFER_LENGTH).to_bytes(32, "big"), int.from_bytes(keccak(ts.to_bytes(8, "big")), "big"))
    # tokens: Zipf holder counts; the pools' reserves are balances in their two tokens
    pool_reserves = {}
    for p, (t0, t1) in enumerate(shape.pool_pairs):
        rng = _rng(shape, "pool", p)
        pool_reserves[p] = (int(10 ** rng.uniform(5, 8)) * 10**18, int(10 ** rng.uniform(5, 8)) * 10**18)
    token_hash = keccak(codes["token"])
    for t in range(shape.tokens):  # type: ignore[arg-type]
        cid += 1
        contracts.append((cid, shape.token_address(t), token_hash))
        supply = 0
        offset, stride = shape._affine(t)
        e = shape.eoa_count
        holders = shape.holders[t]
        for chunk in range(0, holders, 65_536):
            rng = _rng(shape, f"token{t}", chunk)
            for j in range(chunk, min(chunk + 65_536, holders)):
                i = (offset + j * stride) % e
                amount = _token_amount(rng)
                supply += amount
                put(cid, keccak(b"\x00" * 44 + eoas[20 * i : 20 * i + 20]), amount)
        for p, (t0, t1) in enumerate(shape.pool_pairs):
            if t in (t0, t1):
                amount = pool_reserves[p][0 if t == t0 else 1]
                supply += amount
                put(cid, C.balance_slot(shape.pool_address(p)).to_bytes(32, "big"), amount)
        put(cid, C.TOKEN_TOTAL_SUPPLY_SLOT.to_bytes(32, "big"), supply)
    pair_hash = keccak(codes["pair"])
    for p, (t0, t1) in enumerate(shape.pool_pairs):
        cid += 1
        contracts.append((cid, shape.pool_address(p), pair_hash))
        rng = _rng(shape, "pool-acc", p)
        r0, r1 = pool_reserves[p]
        put(cid, C.PAIR_TOKEN0_SLOT.to_bytes(32, "big"), int.from_bytes(shape.token_address(t0), "big"))
        put(cid, C.PAIR_TOKEN1_SLOT.to_bytes(32, "big"), int.from_bytes(shape.token_address(t1), "big"))
        put(cid, C.PAIR_RESERVES_SLOT.to_bytes(32, "big"), C.pack_reserves(r0, r1, GENESIS_TIMESTAMP - 84))
        put(cid, C.PAIR_PRICE0_SLOT.to_bytes(32, "big"), rng.getrandbits(200) or 1)
        put(cid, C.PAIR_PRICE1_SLOT.to_bytes(32, "big"), rng.getrandbits(200) or 1)
    for i in range(shape.other_count):
        cid += 1
        contracts.append((cid, shape.other_address(i), keccak(other_code(i % OTHER_CODES))))
        for s in range(shape.other_slots(i)):
            put(cid, s.to_bytes(32, "big"), (i + 1) * 1_000_003 + s)
        if len(contracts) >= _ROWS:
            db.executemany("INSERT INTO stage.contracts VALUES (?, ?, ?, NULL)", contracts)
            contracts.clear()
    flush(force=True)
    db.executemany("INSERT INTO stage.contracts VALUES (?, ?, ?, NULL)", contracts)


def _storage_tries(db: sqlite3.Connection, shape: StateShape, bar: BuildProgress) -> None:
    """Each contract's storage trie from its slots sorted by hashed key; the root into stage.contracts."""
    bar.set_phase("storage tries (sorting)")
    emit = _node_writer(db)
    sizes = dict(db.execute("SELECT trie, count(*) FROM stage.slots GROUP BY trie").fetchall())
    read = db.cursor()
    read.execute("SELECT trie, hkey, value FROM stage.slots ORDER BY trie, hkey")
    bar.set_phase("storage tries")
    roots: list[tuple[bytes, int]] = []
    for trie, group in groupby(_iter_rows(read), key=lambda row: row[0]):
        root = root_from_sorted(((h, rlp_str(v)) for _, h, v in group), emit, prefix=prefix_for(sizes.get(trie, 0)), on_leaf=bar.advance)
        roots.append((root, trie))
        if len(roots) >= _ROWS:
            db.executemany("UPDATE stage.contracts SET storage_root=? WHERE id=?", roots)
            roots.clear()
    db.executemany("UPDATE stage.contracts SET storage_root=? WHERE id=?", roots)


def _iter_rows(cursor: sqlite3.Cursor) -> Iterator[tuple]:
    while True:
        batch = cursor.fetchmany(_ROWS)
        if not batch:
            return
        yield from batch


def _node_writer(db: sqlite3.Connection) -> Callable[[dict[bytes, bytes]], None]:
    def emit(nodes: dict[bytes, bytes]) -> None:
        db.executemany("INSERT INTO stage.nodes VALUES (?, ?)", nodes.items())

    return emit


def _stage_accounts(db: sqlite3.Connection, shape: StateShape, eoas: bytearray, bar: BuildProgress) -> None:
    bar.set_phase("accounts")
    rows: list[tuple[bytes, bytes, bytes]] = []

    def flush() -> None:
        db.executemany("INSERT INTO stage.accounts VALUES (?, ?, ?)", rows)
        bar.advance(len(rows))
        rows.clear()

    for chunk in range(0, shape.eoa_count, 65_536):
        rng = _rng(shape, "eoa", chunk)
        for i in range(chunk, min(chunk + 65_536, shape.eoa_count)):
            address = bytes(eoas[20 * i : 20 * i + 20])
            r = rng.random()
            nonce = 0 if r < 0.33 else int(10 ** rng.uniform(0, 3.7))
            balance = int(10 ** rng.uniform(12, 22.5)) if rng.random() < 0.97 else int(10 ** rng.uniform(22.5, 25))
            if i < shape.keyed:  # type: ignore[operator]
                balance = max(balance, 10**18 + rng.getrandbits(56))  # senders can pay for a few transactions
            rows.append((keccak(address), address, encode_account(Account(nonce, balance))))
            if len(rows) >= _ROWS:
                flush()
    for address, code_hash, storage_root in db.execute("SELECT address, code_hash, storage_root FROM stage.contracts").fetchall():
        rows.append((keccak(address), address, encode_account(Account(1, 0, code_hash, storage_root or BLANK_ROOT))))
        if len(rows) >= _ROWS:
            flush()
    coinbase = shape.coinbase()
    rows.append((keccak(coinbase), coinbase, encode_account(Account(0, 5 * ETHER))))
    flush()


def _account_trie(db: sqlite3.Connection, shape: StateShape, bar: BuildProgress) -> bytes:
    bar.set_phase("account trie (sorting)")
    read = db.cursor()
    read.execute("SELECT hkey, data FROM stage.accounts ORDER BY hkey")
    bar.set_phase("account trie")
    emit = _node_writer(db)

    def leaves() -> Iterator[tuple[bytes, bytes]]:
        for hkey, data in _iter_rows(read):
            yield hkey, rlp_account(int.from_bytes(data[:8], "big"), int.from_bytes(data[72:], "big"), data[40:72], data[8:40])

    return root_from_sorted(leaves(), emit, prefix=prefix_for(shape.accounts), on_leaf=bar.advance)


def _flat_tables(db: sqlite3.Connection, bar: BuildProgress) -> dict:
    """The flat tables and trie_nodes, each filled in key order (SQLite sorts on disk)."""
    bar.set_phase("flat accounts")
    db.execute("INSERT INTO accounts SELECT address, data FROM stage.accounts ORDER BY address")
    accounts = db.execute("SELECT count(*) FROM stage.accounts").fetchone()[0]
    bar.advance(accounts)
    bar.set_phase("flat storage")
    db.execute(
        "INSERT INTO storage SELECT c.address, s.slot, s.value FROM stage.slots s JOIN stage.contracts c ON c.id = s.trie ORDER BY c.address, s.slot"
    )
    slots = db.execute("SELECT count(*) FROM stage.slots").fetchone()[0]
    bar.advance(slots)
    bar.set_phase("trie nodes")
    db.execute("INSERT OR IGNORE INTO trie_nodes SELECT hash, node FROM stage.nodes ORDER BY hash")
    nodes = db.execute("SELECT count(*) FROM trie_nodes").fetchone()[0]
    bar.advance(bar.total - bar.done)
    contracts = db.execute("SELECT count(*) FROM stage.contracts").fetchone()[0]
    return {"accounts": accounts, "contracts": contracts, "slots": slots, "trie_nodes": nodes}


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

