"""Trie nodes keyed by hash (evmpipe's `trie_nodes`) vs keyed by path (geth's path scheme),
for merkleization's dirty-path update over a big generated state, cold.

From one `evmpipe gen state` datadir it lays the genesis trie nodes out twice, in two
SQLite files of one table each:

- hash.sqlite: (hash -> node), a copy of the datadir's `trie_nodes` (what evmpipe stores);
- path.sqlite: (key -> node) with key = b"A" + nibble path for the account trie and
  b"O" + hashed address + nibble path for a storage trie, one byte per nibble, as geth's
  pathdb keys them. Nodes of one subtrie sit next to each other; an update overwrites a
  path's row in place (no garbage), where the hash layout adds new rows and keeps the old;
- halfpath.sqlite: (key -> node) with Nethermind's "HalfPath" key: a section byte (0: the
  account trie's top levels, path length <= 5; 1: the rest of the account trie; 2: storage
  tries, followed by the hashed address), the first 8 bytes of the packed nibble path
  (zero-padded), the path length, and the node's hash. Neighbours on disk like path keys,
  but content-addressed like hash keys: rows are only added (INSERT OR IGNORE), never
  overwritten, so old roots stay readable.

Then it replays the same dirty-key sets (`--blocks` blocks of `--accounts` accounts and
`--slots` slots over `--contracts` contracts, a `--fresh` share of them new keys) on both,
each block cold (the file evicted from the OS page cache, a new connection with a
`--cache-mb` SQLite cache, mmap off): read the nodes on every dirty path, compute the new
roots with `state.trie.update_root` (the same code for both; the roots must agree), and
write the new nodes. The path layout reads by path (every node read is hashed and checked,
as geth's pathdb does). Per block: wall ms (read / hash+encode / write), node reads, bytes
read from disk (/proc/self/io), SQLite page misses, file growth.

    python scripts/trie_keying_bench.py --state /work/gsbench/d1m --work /work/gsbench/keying1m --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from random import Random
from typing import Callable

from eth_hash.auto import keccak

from evmpipe.gen.shape import StateShape
from state.codec import decode_account
from state.nodekeys import halfpath_key
from state.tiers import proc_io, sqlite_pages
from state.trie import BLANK_ROOT, _decode, encode_account, rlp_int, update_root

_HASH_REF = 0xA0


def _connect(path: Path, cache_mb: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{cache_mb * 1024}", "mmap_size=0", "locking_mode=EXCLUSIVE"):
        db.execute(f"PRAGMA {pragma}")
    return db


def _no_readahead(path: Path) -> None:
    """POSIX_FADV_RANDOM on SQLite's own descriptor of `path` (as `--no-readahead` does)."""
    target = os.path.realpath(path)
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == target:
                os.posix_fadvise(int(name), 0, 0, os.POSIX_FADV_RANDOM)
        except OSError:
            continue


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- the two layouts ---------------------------------------------------------------


def build_hash_layout(source: Path, out: Path) -> int:
    db = _connect(out, 256)
    db.execute("CREATE TABLE nodes (hash BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID")
    db.execute("ATTACH DATABASE ? AS src", (str(source),))
    db.execute("BEGIN")
    scheme = db.execute("SELECT value FROM src.meta WHERE key = 'trie_scheme'").fetchone()
    if scheme is None:  # a hash-keyed datadir: SQLite's transfer, in key order, as stored
        db.execute("INSERT INTO nodes SELECT * FROM src.trie_nodes")
    else:  # keyed by place (state.nodekeys): a key ends with the node's hash
        db.execute("INSERT OR IGNORE INTO nodes SELECT substr(hash, -32) AS h, node FROM src.trie_nodes ORDER BY h")
    db.execute("COMMIT")
    count = db.execute("SELECT count(*) FROM nodes").fetchone()[0]
    db.close()
    return int(count)


def _children(enc: bytes, path: str) -> list[tuple[str, bytes]]:
    """(path, hash) of the hashed nodes directly below the node `enc` at `path`,
    through embedded nodes too."""
    node = _decode(enc)
    out: list[tuple[str, bytes]] = []
    if node[0] == 0:
        return out
    if node[0] == 1:
        refs = [(path + node[1], node[2])]
    else:
        refs = [(path + "0123456789abcdef"[n], ref) for n, ref in enumerate(node[1]) if ref != b"\x80"]
    for child_path, ref in refs:
        if len(ref) == 33 and ref[0] == _HASH_REF:
            out.append((child_path, ref[1:]))
        else:  # an embedded node: its hashed descendants hang below it
            out += _children(ref, child_path)
    return out


def _path_to_halfpath(key: bytes, enc: bytes) -> bytes:
    """The halfpath key of a row of the path layout."""
    if key[:1] == b"A":
        return halfpath_key(b"", key[1:].decode(), keccak(enc))
    return halfpath_key(key[1:33], key[33:].decode(), keccak(enc))


def build_halfpath_layout(path_path: Path, out: Path) -> int:
    """Re-key the path layout (every node at its path) into halfpath keys, sorted."""
    db = _connect(out, 256)
    db.execute("CREATE TABLE nodes (key BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TEMP TABLE staged (key BLOB, node BLOB)")
    db.execute("ATTACH DATABASE ? AS src", (str(path_path),))
    db.create_function("halfpath", 2, _path_to_halfpath, deterministic=True)
    db.execute("BEGIN")
    db.execute("INSERT INTO staged SELECT halfpath(key, node), node FROM src.nodes")
    db.execute("INSERT OR IGNORE INTO nodes SELECT key, node FROM staged ORDER BY key")
    db.execute("COMMIT")
    count = db.execute("SELECT count(*) FROM nodes").fetchone()[0]
    db.close()
    return int(count)


def build_path_layout(hash_path: Path, account_root: bytes, out: Path, progress: Callable[[int], None], jobs: int = 2) -> tuple[int, dict[bytes, bytes]]:
    """Walk every trie depth first (nibble order = key order) and write the rows in key
    order. With `jobs` > 1 the subtries below the account root are split by first nibble
    over forked processes, each writing its rows in order into a part file; the parts are
    then appended in key order. Returns (rows, storage root by hashed address)."""
    hash_db = _connect(hash_path, 256)
    root_enc = hash_db.execute("SELECT node FROM nodes WHERE hash = ?", (account_root,)).fetchone()[0]
    hash_db.close()
    starts = _children(root_enc, "")
    embedded: list[tuple[str, bytes]] = []
    _leaves(root_enc, "", lambda path, value: embedded.append((path, value)))
    groups = [[st for st in starts if int(st[0][0], 16) * jobs // 16 == k] for k in range(jobs)] if jobs > 1 and not embedded else [starts]
    parts = [out.with_name(f"{out.stem}.part{k}.sqlite") for k in range(len(groups))]
    for part in parts:
        part.unlink(missing_ok=True)
    if len(groups) > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(len(groups)) as pool:
            results = pool.starmap(_walk_part, [(hash_path, part, group, None) for part, group in zip(parts, groups)])
    else:
        results = [_walk_part(hash_path, parts[0], groups[0], progress)]
    storage_roots: dict[bytes, bytes] = {}
    for path, value in embedded:
        _account_leaf(storage_roots, path, value)
    count = 1
    for _, roots in results:
        storage_roots.update(roots)
    db = _connect(out, 64)
    db.execute("CREATE TABLE nodes (key BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID")
    db.execute("BEGIN")
    db.execute("INSERT INTO nodes VALUES (?, ?)", (b"A", root_enc))
    for k, part in enumerate(parts):
        db.execute(f"ATTACH DATABASE ? AS p{k}", (str(part),))
    for table in ("a", "o"):  # every b"A" key before every b"O" key; parts in nibble order
        for k in range(len(parts)):
            db.execute(f"INSERT INTO nodes SELECT key, node FROM p{k}.{table} ORDER BY key")
    db.execute("COMMIT")
    count = db.execute("SELECT count(*) FROM nodes").fetchone()[0]
    for k in range(len(parts)):
        db.execute(f"DETACH DATABASE p{k}")
    db.close()
    for part in parts:
        part.unlink()
    return int(count), storage_roots


def _account_leaf(storage_roots: dict[bytes, bytes], path: str, value: bytes) -> None:
    from state.layout import _account_from_rlp

    root = _account_from_rlp(value).storage_root
    if root != BLANK_ROOT:
        storage_roots[bytes.fromhex(path)] = root


def _walk_part(hash_path: Path, out: Path, starts: list[tuple[str, bytes]], progress: Callable[[int], None] | None) -> tuple[int, dict[bytes, bytes]]:
    """The account subtries at `starts` (table a) and the storage tries of their
    accounts (table o), each written in key order."""
    hash_db = _connect(hash_path, 256)
    get = hash_db.execute
    db = _connect(out, 64)
    db.execute("CREATE TABLE a (key BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE o (key BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID")
    db.execute("BEGIN")
    rows: list[tuple[bytes, bytes]] = []
    count = 0
    storage_roots: dict[bytes, bytes] = {}
    table = "a"

    def flush() -> None:
        nonlocal count
        db.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
        count += len(rows)
        if progress is not None:
            progress(count)
        rows.clear()

    def walk(prefix: bytes, stack: list[tuple[str, bytes]], accounts: bool) -> None:
        stack = list(reversed(stack))
        while stack:
            path, node_hash = stack.pop()
            enc = get("SELECT node FROM nodes WHERE hash = ?", (node_hash,)).fetchone()[0]
            rows.append((prefix + path.encode(), enc))
            if len(rows) >= 20_000:
                flush()
            stack += reversed(_children(enc, path))  # pop order = ascending path
            if accounts:
                _leaves(enc, path, lambda p, v: _account_leaf(storage_roots, p, v))

    walk(b"A", starts, True)
    flush()
    table = "o"
    for owner in sorted(storage_roots):
        walk(b"O" + owner, [("", storage_roots[owner])], False)
    flush()
    db.execute("COMMIT")
    db.close()
    hash_db.close()
    return count, storage_roots


def _leaves(enc: bytes, path: str, on_leaf: Callable[[str, bytes], None]) -> None:
    """Leaves held in `enc` itself (a leaf node, or embedded leaves of a branch)."""
    node = _decode(enc)
    if node[0] == 0:
        on_leaf(path + node[1], node[2])
    elif node[0] == 2:
        for n, ref in enumerate(node[1]):
            if ref != b"\x80" and not (len(ref) == 33 and ref[0] == _HASH_REF):
                _leaves(ref, path + "0123456789abcdef"[n], on_leaf)


# -- dirty sets ---------------------------------------------------------------------


def dirty_blocks(state_db: sqlite3.Connection, shape: StateShape, storage_roots: dict[bytes, bytes], args: argparse.Namespace) -> list[dict]:
    """Per block: {owner: {hashed slot: value or None}} and {hashed address: account fields}."""
    rng = Random(f"trie-keying/{args.seed}")
    tokens = [shape.token_address(t) for t in range(shape.tokens or 0)]
    weights = [1.0 / (t + 1) for t in range(len(tokens))]

    def sample_account() -> tuple[bytes, bytes]:
        row = state_db.execute("SELECT address, data FROM accounts WHERE address >= ? LIMIT 1", (rng.randbytes(20),)).fetchone()
        return row if row is not None else state_db.execute("SELECT address, data FROM accounts LIMIT 1").fetchone()

    hot = [sample_account() for _ in range(2000)]
    blocks = []
    for _ in range(args.blocks):
        accounts: dict[bytes, tuple] = {}
        storage: dict[bytes, dict[bytes, bytes]] = {}
        for address in rng.choices(tokens, weights, k=args.contracts):
            data = state_db.execute("SELECT data FROM accounts WHERE address = ?", (address,)).fetchone()[0]
            owner = keccak(address)
            accounts[owner] = decode_account(data)
            changes = storage.setdefault(owner, {})
            for _ in range(max(1, args.slots // args.contracts)):
                if rng.random() < args.fresh:
                    slot = rng.randbytes(32)
                else:
                    row = state_db.execute("SELECT slot FROM storage WHERE address = ? AND slot >= ? LIMIT 1", (address, rng.randbytes(32))).fetchone()
                    slot = row[0] if row is not None else rng.randbytes(32)
                changes[keccak(slot)] = rlp_int(rng.getrandbits(100) + 1)
        while len(accounts) < args.accounts:
            if rng.random() < args.fresh:
                accounts[rng.randbytes(32)] = None  # a first touch: a new account
                continue
            address, data = rng.choice(hot) if rng.random() < 0.3 else sample_account()
            accounts[keccak(address)] = decode_account(data)
        blocks.append({"storage": storage, "accounts": accounts, "balances": {k: rng.getrandbits(70) for k in accounts}})
    return blocks


def _account_changes(block: dict, storage_roots: dict[bytes, bytes]) -> dict[bytes, bytes]:
    out = {}
    for owner, account in block["accounts"].items():
        balance = block["balances"][owner]
        if account is None:
            out[owner] = encode_account(0, balance, BLANK_ROOT, keccak(b""))
        else:
            out[owner] = encode_account(account.nonce + 1, balance, storage_roots.get(owner, account.storage_root), account.code_hash)
    return out


# -- one block, each layout -----------------------------------------------------------


class Meter:
    def __init__(self) -> None:
        self.reads = 0
        self.read_s = 0.0


def hash_block(db: sqlite3.Connection, block: dict, roots: dict, meter: Meter) -> tuple[bytes, float]:
    def get(node_hash: bytes) -> bytes:
        t = time.perf_counter()
        row = db.execute("SELECT node FROM nodes WHERE hash = ?", (node_hash,)).fetchone()
        meter.read_s += time.perf_counter() - t
        meter.reads += 1
        return row[0]

    new: dict[bytes, bytes] = {}
    for owner, changes in block["storage"].items():
        roots["storage"][owner], nodes = update_root(get, roots["storage"].get(owner, BLANK_ROOT), changes)
        new.update(nodes)
    roots["account"], nodes = update_root(get, roots["account"], _account_changes(block, roots["storage"]))
    new.update(nodes)
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO nodes VALUES (?, ?)", new.items())
    db.execute("COMMIT")
    return roots["account"], time.perf_counter() - t


def path_block(db: sqlite3.Connection, block: dict, roots: dict, meter: Meter) -> tuple[bytes, float]:
    rows: dict[bytes, bytes] = {}
    for owner, changes in block["storage"].items():
        roots["storage"][owner] = _path_update(db, b"O" + owner, roots["storage"].get(owner, BLANK_ROOT), changes, meter, rows)
    roots["account"] = _path_update(db, b"A", roots["account"], _account_changes(block, roots["storage"]), meter, rows)
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?)", rows.items())
    db.execute("COMMIT")
    return roots["account"], time.perf_counter() - t


def halfpath_block(db: sqlite3.Connection, block: dict, roots: dict, meter: Meter) -> tuple[bytes, float]:
    rows: dict[bytes, bytes] = {}
    for owner, changes in block["storage"].items():
        roots["storage"][owner] = _path_update(db, owner, roots["storage"].get(owner, BLANK_ROOT), changes, meter, rows, halfpath=True)
    roots["account"] = _path_update(db, b"", roots["account"], _account_changes(block, roots["storage"]), meter, rows, halfpath=True)
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO nodes VALUES (?, ?)", rows.items())
    db.execute("COMMIT")
    return roots["account"], time.perf_counter() - t


def _path_update(db: sqlite3.Connection, prefix: bytes, root: bytes, changes: dict[bytes, bytes], meter: Meter, rows: dict[bytes, bytes], halfpath: bool = False) -> bytes:
    """Read the dirty paths by path, update with the shared code, write the new nodes by path.
    With `halfpath`, `prefix` is the owner (b"" for the account trie) and keys hold the hash
    too (a node read is found by its key, so it needs no check)."""
    known: dict[bytes, bytes] = {}
    keys = sorted(k.hex() for k in changes)

    def fetch(path: str, expect: bytes) -> bytes:
        t = time.perf_counter()
        row = db.execute("SELECT node FROM nodes WHERE key = ?", (halfpath_key(prefix, path, expect) if halfpath else prefix + path.encode(),)).fetchone()
        meter.read_s += time.perf_counter() - t
        meter.reads += 1
        if row is None or (not halfpath and keccak(row[0]) != expect):
            raise RuntimeError(f"path layout: node at {prefix!r}/{path} missing or stale")
        return row[0]

    def prewalk(path: str, enc: bytes, lo: int, hi: int) -> None:
        node = _decode(enc)
        depth = len(path)
        if node[0] == 0:
            return
        if node[0] == 1:
            child = path + node[1]
            sub = [i for i in range(lo, hi) if keys[i].startswith(child)]
            if sub:
                _descend(child, node[2], sub[0], sub[-1] + 1)
            return
        i = lo
        while i < hi:
            n = keys[i][depth]
            j = i
            while j < hi and keys[j][depth] == n:
                j += 1
            ref = node[1]["0123456789abcdef".index(n)]
            if ref != b"\x80":
                _descend(path + n, ref, i, j)
            i = j

    def _descend(path: str, ref: bytes, lo: int, hi: int) -> None:
        if len(ref) == 33 and ref[0] == _HASH_REF:
            enc = fetch(path, ref[1:])
            known[ref[1:]] = enc
        else:
            enc = ref
        prewalk(path, enc, lo, hi)

    if root != BLANK_ROOT:
        enc = fetch("", root)
        known[root] = enc
        prewalk("", enc, 0, len(keys))

    def get(node_hash: bytes) -> bytes:
        found = known.get(node_hash)
        if found is None:  # update_root wanted a node off the dirty paths (a deletion's sibling)
            raise RuntimeError("path layout: update needs a node the dirty paths did not read")
        return found

    new_root, nodes = update_root(get, root, changes)
    if new_root != BLANK_ROOT and halfpath:
        rows[halfpath_key(prefix, "", new_root)] = nodes[new_root]
        for path, node_hash in _new_below(nodes[new_root], "", nodes):
            rows[halfpath_key(prefix, path, node_hash)] = nodes[node_hash]
    elif new_root != BLANK_ROOT:
        rows[prefix] = nodes[new_root]
        for path, node_hash in _new_below(nodes[new_root], "", nodes):
            rows[prefix + path.encode()] = nodes[node_hash]
    return new_root


def _new_below(enc: bytes, path: str, nodes: dict[bytes, bytes]) -> list[tuple[str, bytes]]:
    out = []
    for child_path, node_hash in _children(enc, path):
        if node_hash in nodes:  # new; an old hash means an unchanged subtrie, in place
            out.append((child_path, node_hash))
            out += _new_below(nodes[node_hash], child_path, nodes)
    return out


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", required=True, help="a datadir made by `evmpipe gen state` (read only)")
    parser.add_argument("--work", required=True, help="directory for the two layouts (reused when present)")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=450, help="accounts changed per block (default 450)")
    parser.add_argument("--slots", type=int, default=1500, help="slots changed per block (default 1500)")
    parser.add_argument("--contracts", type=int, default=60, help="contracts whose storage changes per block (tokens, Zipf)")
    parser.add_argument("--fresh", type=float, default=0.1, help="share of new keys (first touches)")
    parser.add_argument("--cache-mb", type=int, default=8, help="SQLite page cache per layout while replaying")
    parser.add_argument("--warm", action="store_true", help="do not evict the files before each block")
    parser.add_argument("--no-readahead", action="store_true", help="POSIX_FADV_RANDOM on the layout files (reads fetch their page, not 128 KiB)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="processes laying out the path-keyed copy (default 2)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    source = Path(args.state) / "state.sqlite"
    if not source.is_file():
        print(f"{source}: no such state database", file=sys.stderr)
        return 2
    state_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    head = state_db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
    shape_row = state_db.execute("SELECT value FROM meta WHERE key = 'gen_state'").fetchone()
    if head is None or shape_row is None:
        print(f"{source}: not a datadir made by `evmpipe gen state`", file=sys.stderr)
        return 2
    account_root = head[0][40:72]
    shape = StateShape.from_json(shape_row[0])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    hash_path, path_path, done = work / "hash.sqlite", work / "path.sqlite", work / "layouts.json"
    halfpath_path = work / "halfpath.sqlite"
    setup: dict = json.loads(done.read_text()) if done.exists() else {}
    if setup.get("root") != account_root.hex():
        for p in (hash_path, path_path, halfpath_path):
            p.unlink(missing_ok=True)
        t = time.perf_counter()
        hash_rows = build_hash_layout(source, hash_path)
        print(f"hash layout: {hash_rows} nodes, {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        t = time.perf_counter()
        last = [time.perf_counter()]

        def progress(n: int) -> None:
            if time.perf_counter() - last[0] > 15:
                last[0] = time.perf_counter()
                print(f"path layout: {n} of {hash_rows} nodes", file=sys.stderr, flush=True)

        path_rows, storage_roots = build_path_layout(hash_path, account_root, path_path, progress, args.jobs)
        print(f"path layout: {path_rows} nodes, {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        setup = {"root": account_root.hex(), "hash_nodes": hash_rows, "path_nodes": path_rows, "storage_roots": {k.hex(): v.hex() for k, v in storage_roots.items()}}
        done.write_text(json.dumps(setup))
    if "halfpath_nodes" not in setup or not halfpath_path.exists():
        t = time.perf_counter()
        halfpath_path.unlink(missing_ok=True)
        setup["halfpath_nodes"] = build_halfpath_layout(path_path, halfpath_path)
        print(f"halfpath layout: {setup['halfpath_nodes']} nodes, {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        done.write_text(json.dumps(setup))
    storage_roots = {bytes.fromhex(k): bytes.fromhex(v) for k, v in setup["storage_roots"].items()}
    sources = {"hash": hash_path, "path": path_path, "halfpath": halfpath_path}
    sizes = {name: p.stat().st_size for name, p in sources.items()}
    # the files are updated by each run: work on copies so that runs repeat
    import shutil

    run_files = {name: work / f"{name}.run.sqlite" for name in sources}
    for name, p in sources.items():
        shutil.copyfile(p, run_files[name])
    blocks = dirty_blocks(state_db, shape, storage_roots, args)
    state_db.close()
    roots = {name: {"account": account_root, "storage": dict(storage_roots)} for name in run_files}
    per_block: dict[str, list[dict]] = {name: [] for name in sources}
    layouts = list(sources)
    update = {"hash": hash_block, "path": path_block, "halfpath": halfpath_block}
    for number, block in enumerate(blocks):
        order = layouts[number % 3:] + layouts[:number % 3]  # each layout goes first in turn
        for name in order:
            path = run_files[name]
            if not args.warm:
                _evict(path)
            db = _connect(path, args.cache_mb)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the file
            if args.no_readahead:
                _no_readahead(path)
            meter = Meter()
            io0 = proc_io()
            pages0 = sqlite_pages(db, str(path)) or {}
            size0 = path.stat().st_size
            t = time.perf_counter()
            root, write_s = update[name](db, block, roots[name], meter)
            total = time.perf_counter() - t
            pages1 = sqlite_pages(db, str(path)) or {}
            io1 = proc_io()
            db.close()
            per_block[name].append({
                "block": number, "ms": round(total * 1e3, 1), "read_ms": round(meter.read_s * 1e3, 1), "write_ms": round(write_s * 1e3, 1),
                "compute_ms": round((total - meter.read_s - write_s) * 1e3, 1), "node_reads": meter.reads,
                "disk_read_bytes": io1.get("read_bytes", 0) - io0.get("read_bytes", 0),
                "page_misses": pages1.get("page_misses", 0) - pages0.get("page_misses", 0), "growth_bytes": path.stat().st_size - size0,
                "root": root.hex(),
            })
        if len({per_block[n][-1]["root"] for n in layouts}) != 1:
            print(f"block {number}: the layouts disagree on the root", file=sys.stderr)
            return 1
        print(f"block {number}: " + "; ".join(f"{n} {per_block[n][-1]['ms']} ms, {per_block[n][-1]['node_reads']} reads, {per_block[n][-1]['disk_read_bytes'] >> 10} KiB" for n in layouts), file=sys.stderr, flush=True)

    def mean(name: str, key: str) -> float:
        rows = per_block[name]
        return round(sum(r[key] for r in rows) / len(rows), 1)

    summary = {
        name: {key: mean(name, key) for key in ("ms", "read_ms", "compute_ms", "write_ms", "node_reads", "disk_read_bytes", "page_misses", "growth_bytes")} | {"file_bytes": sizes[name]}
        for name in per_block
    }
    result = {"state": str(args.state), "accounts": shape.accounts, "setup": {k: v for k, v in setup.items() if k != "storage_roots"}, "args": {k: v for k, v in vars(args).items() if k != "json"}, "cold": not args.warm, "summary": summary, "blocks": per_block}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    for p in run_files.values():
        p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
