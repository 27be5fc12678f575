"""`evmpipe state dump` and `evmpipe state verify`: look into a datadir's state.

dump: the head's flat state as JSON lines, in the conventions of geth's `dump`
(`geth dump --iterative`): a first line `{"root": ...}`, then one object per account
with `address`, `key` (keccak of the address: its trie key), `nonce` (a number),
`balance` (a decimal string), `codeHash` and `root` (the storage root). Accounts come
in address order (the flat table's), not in trie-key order as geth's do. With
`--storage ADDRESS` the lines are that account's slots: `slot`, `key` (keccak of the
slot), `value` (hex quantities).

verify: recomputes every root from the flat tables, as geth's `snapshot
verify-state` does: each contract's storage root from its slots, then the account
root from the accounts, and compares them with the stored roots (each account's
storage root, the head's state root). With `--nodes` (default) it also checks that
every node of the recomputed tries is in `trie_nodes` (under the datadir's key
scheme, state.nodekeys: by hash, or at its place), so the stored trie can be walked
for every key. Memory stays bounded: leaves are sorted by SQLite in a
temporary file, and a contract's slots are held in memory only up to a limit.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from eth_hash.auto import keccak

from state.account import BLANK_ROOT
from state.bulk import prefix_for, root_from_sorted
from state.codec import decode_account
from state.nodekeys import HASH, META_KEY
from state.trie import encode_account as rlp_account, rlp_str, root_from_items

DB_NAME = "state.sqlite"
IN_MEMORY_SLOTS = 200_000  # a contract with more slots is sorted on disk


def add_state_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("state", help="dump or verify a datadir's state (geth dump / snapshot verify-state)")
    sub = parser.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    dump = sub.add_parser("dump", help="the head's accounts (or one account's storage) as JSON lines, as geth's dump")
    dump.add_argument("--datadir", required=True, help="directory holding state.sqlite")
    dump.add_argument("--storage", metavar="ADDRESS", help="dump this account's storage slots instead")
    dump.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    dump.set_defaults(func=cmd_dump)
    verify = sub.add_parser("verify", help="recompute every root from the flat tables and compare with the stored ones")
    verify.add_argument("--datadir", required=True, help="directory holding state.sqlite")
    verify.add_argument("--no-nodes", dest="nodes", action="store_false", help="skip checking that every recomputed node is stored")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(func=cmd_verify)


class StateError(RuntimeError):
    pass


def _open(datadir: str) -> sqlite3.Connection:
    path = Path(datadir) / DB_NAME
    if not path.exists():
        raise StateError(f"no database at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT count(*) FROM meta").fetchone()
    except sqlite3.DatabaseError as error:
        raise StateError(f"{path}: not a datadir database ({error})") from None
    return db


def trie_scheme(db: sqlite3.Connection) -> str:
    """The datadir's trie-node key scheme (absent: hash)."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (META_KEY,)).fetchone()
    return HASH if row is None else bytes(row[0]).decode()


def _head_root(db: sqlite3.Connection) -> bytes:
    row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
    if row is None:
        raise StateError("the database has no committed block")
    return row[0][40:72]


def dump_lines(db: sqlite3.Connection, storage: bytes | None = None) -> Iterator[dict]:
    if storage is not None:
        for slot, value in db.execute("SELECT slot, value FROM storage WHERE address=? ORDER BY slot", (storage,)):
            yield {"slot": "0x" + slot.hex(), "key": "0x" + keccak(slot).hex(), "value": hex(int.from_bytes(value, "big"))}
        return
    yield {"root": "0x" + _head_root(db).hex()}
    for address, data in db.execute("SELECT address, data FROM accounts ORDER BY address"):
        account = decode_account(data)
        yield {
            "address": "0x" + address.hex(),
            "key": "0x" + keccak(address).hex(),
            "nonce": account.nonce,
            "balance": str(account.balance),
            "codeHash": "0x" + account.code_hash.hex(),
            "root": "0x" + account.storage_root.hex(),
        }


def cmd_dump(args: argparse.Namespace) -> int:
    try:
        db = _open(args.datadir)
        storage = None
        if args.storage is not None:
            text = args.storage[2:] if args.storage.startswith("0x") else args.storage
            try:
                storage = bytes.fromhex(text)
            except ValueError:
                storage = b""
            if len(storage) != 20:
                raise StateError(f"--storage {args.storage}: not a 20-byte hex address")
        out = open(args.output, "w") if args.output else sys.stdout
        try:
            for line in dump_lines(db, storage):
                out.write(json.dumps(line) + "\n")
        finally:
            if args.output:
                out.close()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except (StateError, OSError) as error:
        print(f"evmpipe state dump: {error}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as error:
        print(f"evmpipe state dump: {args.datadir}: {error} (damaged or truncated database?)", file=sys.stderr)
        return 2
    return 0


class _NodeCheck:
    """Counts recomputed nodes missing from trie_nodes (batched lookups)."""

    def __init__(self, db: sqlite3.Connection, enabled: bool) -> None:
        self.db, self.enabled = db, enabled
        self.checked = self.missing = 0

    def __call__(self, nodes: dict[bytes, bytes]) -> None:
        if not self.enabled or not nodes:
            return
        hashes = list(nodes)
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            found = self.db.execute(f"SELECT count(*) FROM trie_nodes WHERE hash IN ({','.join('?' * len(chunk))})", chunk).fetchone()[0]
            self.checked += len(chunk)
            self.missing += len(chunk) - found


def verify_state(datadir: str, *, nodes: bool = True, progress: bool = False) -> dict:
    """Recompute and compare; returns the findings (ok: everything matched)."""
    db = _open(datadir)
    started = time.perf_counter()
    check = _NodeCheck(db, nodes)
    head_root = _head_root(db)
    scheme = trie_scheme(db)
    placed = scheme != HASH  # nodes are looked up at their places
    bad_storage: list[str] = []
    counts = {"accounts": 0, "contracts_with_storage": 0, "slots": 0}
    with tempfile.TemporaryDirectory(prefix="evmpipe-verify-", dir=os.environ.get("TMPDIR")) as tmp:
        sort_db = sqlite3.connect(Path(tmp) / "leaves.sqlite", isolation_level=None)
        sort_db.execute("PRAGMA journal_mode=OFF")
        sort_db.execute("PRAGMA synchronous=OFF")
        sort_db.execute("CREATE TABLE leaves (key BLOB NOT NULL, value BLOB NOT NULL)")
        sort_db.execute("BEGIN")
        slots = db.cursor()
        slots.execute("SELECT address, slot, value FROM storage ORDER BY address, slot")
        pending = slots.fetchone()
        rows: list[tuple[bytes, bytes]] = []
        for address, data in db.execute("SELECT address, data FROM accounts ORDER BY address"):
            account = decode_account(data)
            while pending is not None and pending[0] < address:  # slots of an absent account
                bad_storage.append(f"0x{pending[0].hex()}: storage without an account")
                pending = _skip(slots, pending[0])
            leaves: list[tuple[bytes, bytes]] = []
            while pending is not None and pending[0] == address:
                leaves.append((keccak(pending[1]), rlp_str(pending[2])))
                pending = slots.fetchone()
            counts["slots"] += len(leaves)
            root = _storage_root(leaves, check, sort_db, keccak(address) if placed else None) if leaves else BLANK_ROOT
            counts["contracts_with_storage"] += bool(leaves)
            if root != account.storage_root:
                bad_storage.append(f"0x{address.hex()}: storage root 0x{account.storage_root.hex()} stored, 0x{root.hex()} from its slots")
            rows.append((keccak(address), rlp_account(account.nonce, account.balance, account.storage_root, account.code_hash)))
            counts["accounts"] += 1
            if len(rows) >= 20_000:
                sort_db.executemany("INSERT INTO leaves VALUES (?, ?)", rows)
                rows.clear()
                if progress and counts["accounts"] % 1_000_000 == 0:
                    print(f"state verify: {counts['accounts']:,} accounts, {time.perf_counter() - started:.0f} s", file=sys.stderr)
        sort_db.executemany("INSERT INTO leaves VALUES (?, ?)", rows)
        while pending is not None:
            bad_storage.append(f"0x{pending[0].hex()}: storage without an account")
            pending = _skip(slots, pending[0])
        cursor = sort_db.execute("SELECT key, value FROM leaves ORDER BY key")
        root = root_from_sorted(_rows(cursor), check, prefix=prefix_for(counts["accounts"]), owner=b"" if placed else None)
        sort_db.close()
    db.close()
    ok = root == head_root and not bad_storage and check.missing == 0
    return {
        "ok": ok,
        "trie_scheme": scheme,
        "state_root": "0x" + root.hex(),
        "head_state_root": "0x" + head_root.hex(),
        "storage_mismatches": len(bad_storage),
        "first_mismatches": bad_storage[:10],
        "nodes_checked": check.checked,
        "nodes_missing": check.missing,
        **counts,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _skip(cursor: sqlite3.Cursor, address: bytes) -> tuple | None:
    row = cursor.fetchone()
    while row is not None and row[0] == address:
        row = cursor.fetchone()
    return row


def _rows(cursor: sqlite3.Cursor) -> Iterator[tuple[bytes, bytes]]:
    while batch := cursor.fetchmany(20_000):
        yield from batch


def _storage_root(leaves: list[tuple[bytes, bytes]], check: _NodeCheck, sort_db: sqlite3.Connection, owner: bytes | None) -> bytes:
    if len(leaves) <= IN_MEMORY_SLOTS:
        if not check.enabled:
            return root_from_items(leaves)
        leaves.sort()
        return root_from_sorted(leaves, check, prefix=prefix_for(len(leaves)), owner=owner)
    sort_db.execute("CREATE TEMP TABLE big (key BLOB NOT NULL, value BLOB NOT NULL)")
    sort_db.executemany("INSERT INTO big VALUES (?, ?)", leaves)
    count = len(leaves)
    leaves.clear()
    root = root_from_sorted(_rows(sort_db.execute("SELECT key, value FROM big ORDER BY key")), check, prefix=prefix_for(count), owner=owner)
    sort_db.execute("DROP TABLE big")
    return root


def cmd_verify(args: argparse.Namespace) -> int:
    import signal

    def stop(signum: int, frame: object) -> None:  # SIGTERM: remove the temporary sort file, as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        result = verify_state(args.datadir, nodes=args.nodes, progress=not args.json)
    except KeyboardInterrupt:
        print("evmpipe state verify: interrupted", file=sys.stderr)
        return 130
    except StateError as error:
        print(f"evmpipe state verify: {error}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as error:
        print(f"evmpipe state verify: {args.datadir}: {error} (damaged or truncated database?)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        status = "OK" if result["ok"] else "MISMATCH"
        print(
            f"state verify: {status}: {result['accounts']:,} accounts, {result['slots']:,} slots in {result['contracts_with_storage']:,} storage tries; "
            f"root {result['state_root']} (head {result['head_state_root']}); {result['storage_mismatches']} storage root mismatches; "
            f"{result['nodes_missing']} of {result['nodes_checked']:,} nodes missing; {result['seconds']} s"
        )
        for line in result["first_mismatches"]:
            print("  " + line)
    return 0 if result["ok"] else 1
