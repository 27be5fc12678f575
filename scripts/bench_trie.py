"""Benchmark state/trie.py: a block-sized update_root against a 100k-account
trie held in a dict, and root_from_items over 100k leaves.

Run: /work/venv/bin/python scripts/bench_trie.py [--accounts N] [--changed N] [--new N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_hash.auto import keccak  # noqa: E402

from state.trie import BLANK_ROOT, encode_account, root_from_items, update_root  # noqa: E402

EMPTY_CODE = keccak(b"")


def _account(rng: random.Random) -> bytes:
    return encode_account(rng.randrange(1000), rng.randrange(10**21), BLANK_ROOT, EMPTY_CODE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--changed", type=int, default=2_000)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hexary", action="store_true", help="also time py-trie HexaryTrie on one batch")
    args = ap.parse_args()

    rng = random.Random(42)
    keys = [keccak(i.to_bytes(20, "big")) for i in range(args.accounts)]
    items = [(k, _account(rng)) for k in keys]
    print(f"keccak backend: {keccak.hasher}")

    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        root_a = root_from_items(items)
        best = min(best, time.perf_counter() - t0)
    print(
        f"root_from_items: {args.accounts} leaves in {best * 1e3:.1f} ms "
        f"= {best / args.accounts * 1e6:.2f} us/leaf"
    )

    t0 = time.perf_counter()
    root, db = update_root({}.__getitem__, BLANK_ROOT, dict(items))
    t_init = time.perf_counter() - t0
    assert root == root_a
    print(
        f"update_root from empty: {args.accounts} keys in {t_init * 1e3:.1f} ms "
        f"({len(db)} stored nodes)"
    )

    best = float("inf")
    for r in range(args.repeat):
        changes: dict[bytes, bytes | None] = {
            k: _account(rng) for k in rng.sample(keys, args.changed)
        }
        for i in range(args.new):
            changes[keccak(b"new" + r.to_bytes(4, "big") + i.to_bytes(4, "big"))] = _account(rng)
        t0 = time.perf_counter()
        new_root, new_nodes = update_root(db.__getitem__, root, changes)
        best = min(best, time.perf_counter() - t0)
    n = len(changes)
    print(
        f"update_root: {n} dirty keys ({args.changed} changed, {args.new} new) on "
        f"{args.accounts} accounts in {best * 1e3:.1f} ms = {best / n * 1e6:.2f} us/key "
        f"({len(new_nodes)} new nodes)"
    )

    if args.hexary:
        from trie import HexaryTrie

        t = HexaryTrie(dict(db), root)
        t0 = time.perf_counter()
        with t.squash_changes() as batch:
            for k, v in changes.items():
                batch[k] = v if v is not None else b""
        dt = time.perf_counter() - t0
        assert t.root_hash == new_root
        print(f"HexaryTrie (squash_changes), same batch: {dt * 1e3:.1f} ms = {dt / n * 1e6:.2f} us/key")


if __name__ == "__main__":
    main()
