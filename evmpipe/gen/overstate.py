"""`evmpipe gen KIND --state D -o FILE`: blocks over a state made by `gen state`.

The users are drawn from the state with a mainnet-like skew: senders are keyed EOAs
picked log-uniformly by index (Zipf with exponent 1: the first 1 % of them send about
two thirds of the transactions, the rest form a long cold tail); recipients are hot
EOAs, any EOA of the whole state (cold reads), or fresh addresses (first touches);
token transfers pick the token by popularity (Zipf again) and often pay someone who
holds none of it, which reads an absent slot. Every balance and nonce comes from the
state itself, read through the trie.

Sealing: py-evm's CancunVM runs over the datadir without loading it. `DatadirDB`
answers py-evm's key-value reads from the datadir's `trie_nodes` and `code` tables
(both keyed by keccak, as py-evm's own database is) and keeps every write in memory, so
the datadir is opened read-only and left byte for byte as it was.

The output is a native block file (docs/BLOCKFILE.md) with an empty allocation: its
genesis header names the state root, and `evmpipe replay` refuses a datadir that does
not hold that state.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
import time
from pathlib import Path
from random import Random

from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB

from consensus_stub.blockfile import BlockFileHeader, BlockFileWriter
from evmpipe.gen import contracts as C
from evmpipe.gen.genstate import DB_NAME, GENESIS_TIMESTAMP, genesis_header
from evmpipe.gen.keys import derive_hash, fresh_address, keyed_account
from evmpipe.gen.shape import ShapeError, StateShape
from evmpipe.gen.workloads import BlockPlan, GenerationError, Intent, Withdrawal

OVER_STATE_KINDS = ("transfers-independent", "erc20", "mixed")
GWEI = 10**9
GAS_ERC20_LIMIT = 70_000
TIPS = (10**8, 5 * 10**8, 10**9, 10**9, 2 * 10**9, 3 * 10**9)


class DatadirDB(BaseDB):
    """py-evm's database over a datadir, read-only: reads fall through to trie_nodes and code."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._writes: dict[bytes, bytes] = {}
        self._deleted: set[bytes] = set()
        self.reads = 0

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._writes:
            return self._writes[key]
        if key in self._deleted or len(key) != 32:
            raise KeyError(key)
        self.reads += 1
        row = self._db.execute("SELECT node FROM trie_nodes WHERE hash=?", (key,)).fetchone()
        if row is None:
            row = self._db.execute("SELECT code FROM code WHERE hash=?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._writes[key] = value
        self._deleted.discard(key)

    def __delitem__(self, key: bytes) -> None:
        if key not in self:
            raise KeyError(key)
        self._writes.pop(key, None)
        self._deleted.add(key)

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def close(self) -> None:
        self._db.close()


def _genesis_of(path: Path) -> tuple[StateShape, bytes, bytes]:
    """(shape, genesis header RLP, state root) of a gen-state datadir, or GenerationError."""
    if not path.exists():
        raise GenerationError(f"{path.parent}: no state database (make one with `evmpipe gen state --datadir {path.parent} --accounts N`)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            shape_row = db.execute("SELECT value FROM meta WHERE key='gen_state'").fetchone()
            header_row = db.execute("SELECT h.rlp FROM blocks b JOIN headers h ON h.hash = b.hash WHERE b.number = 0").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        raise GenerationError(f"{path}: not a datadir database ({error})") from error
    if shape_row is None or header_row is None:
        raise GenerationError(f"{path.parent}: not made by `evmpipe gen state` (no gen_state record)")
    import rlp

    shape = StateShape.from_json(shape_row[0])
    root = rlp.decode(header_row[0])[3]
    if rlp.encode(genesis_header(shape, root)) != header_row[0]:
        raise GenerationError(f"{path.parent}: the genesis header does not match its gen_state record")
    return shape, header_row[0], root


class OverStatePlanner:
    """Plans one block at a time against the head state of the sealing chain."""

    def __init__(self, shape: StateShape, kind: str, txs: int, seed: int) -> None:
        self.shape, self.kind, self.txs = shape, kind, txs
        self.rng = Random(f"evmpipe-gen-over-state/{shape.seed}/{seed}/{kind}")
        self.seed = seed
        self._fresh = 0
        self._keys: dict[int, object] = {}
        self._withdrawal_index = 0

    def _skewed(self, n: int) -> int:
        """An index in [0, n), log-uniform: Zipf with exponent 1 over n."""
        return min(n - 1, int(math.exp(self.rng.uniform(0, math.log(n + 1)))) - 1)

    def _sender(self, state, spent: dict[bytes, int], need: int):  # type: ignore[no-untyped-def]
        for _ in range(64):
            index = self._skewed(self.shape.keyed)  # type: ignore[arg-type]
            account = self._key(index)
            if state.get_balance(account.address) - spent.get(account.address, 0) >= need:
                return index, account
        raise GenerationError("no keyed account found that can pay; was the state replayed far past genesis?")

    def _key(self, index: int):  # type: ignore[no-untyped-def]
        if index not in self._keys:
            self._keys[index] = keyed_account(self.shape.seed, "user", index)
        return self._keys[index]

    def _recipient(self) -> tuple[bytes, str]:
        r = self.rng.random()
        if r < 0.12:
            self._fresh += 1
            return fresh_address(self.seed, "fresh", self._fresh), "fresh"
        if r < 0.6:
            return self.shape.eoa_address(self._skewed(self.shape.eoa_count)), "hot"
        return self.shape.eoa_address(self.rng.randrange(self.shape.eoa_count)), "cold"

    def _fee(self) -> tuple[bool, int, tuple[int, int]]:
        return self.rng.random() < 0.1, self.rng.choice(TIPS), (2, 1)

    def plan_block(self, number: int, state) -> tuple[BlockPlan, dict[str, int]]:  # type: ignore[no-untyped-def]
        rng, shape = self.rng, self.shape
        plan = BlockPlan(number, GENESIS_TIMESTAMP + 12 * number, beacon_root=derive_hash(self.seed, "beacon", number), prev_randao=derive_hash(self.seed, "randao", number))
        spent: dict[bytes, int] = {}
        counts = {"eth": 0, "erc20": 0, "fresh": 0, "hot": 0, "cold": 0, "absent_slot": 0}
        share_erc20 = {"transfers-independent": 0.0, "erc20": 1.0, "mixed": 0.45}[self.kind]
        for _ in range(self.txs):
            legacy, tip, mult = self._fee()
            max_fee = 60 * GWEI
            if rng.random() < share_erc20 and self._erc20(plan, state, spent, counts, legacy, tip, mult, max_fee):
                continue
            _, sender = self._sender(state, spent, 21_000 * max_fee + 10**15)
            to, how = self._recipient()
            balance = state.get_balance(sender.address) - spent.get(sender.address, 0) - 21_000 * max_fee
            value = max(1, int(balance * rng.uniform(0.001, 0.2)))
            spent[sender.address] = spent.get(sender.address, 0) + value + 21_000 * max_fee
            plan.intents.append(Intent("eth", sender, to, value, b"", 21_000, 21_000, True, legacy, tip, mult))
            counts["eth"] += 1
            counts[how] += 1
        if self.kind == "mixed":
            for _ in range(16):
                self._withdrawal_index += 1
                address = shape.eoa_address(self._skewed(shape.eoa_count))
                plan.withdrawals.append(Withdrawal(self._withdrawal_index, 10_000 + self._skewed(1_000_000), address, rng.randrange(10**7, 5 * 10**7)))
        return plan, counts

    def _erc20(self, plan, state, spent, counts, legacy, tip, mult, max_fee) -> bool:  # type: ignore[no-untyped-def]
        shape, rng = self.shape, self.rng
        token = self._skewed(shape.tokens)  # type: ignore[arg-type]
        token_address = shape.token_address(token)
        sender = None
        for attempt in range(96):
            if attempt < 24:  # a hot sender that happens to hold the token
                index = self._skewed(shape.keyed)  # type: ignore[arg-type]
                if shape.holder_rank(token, index) is None:
                    continue
            else:  # a holder of the token that happens to be keyed
                index = shape.holder_eoa(token, rng.randrange(shape.holders[token]))
                if index >= shape.keyed:  # type: ignore[operator]
                    continue
            account = self._key(index)
            if state.get_balance(account.address) - spent.get(account.address, 0) < GAS_ERC20_LIMIT * max_fee:
                continue
            held = state.get_storage(token_address, C.balance_slot(account.address))
            if held > 0:
                sender = account
                break
        if sender is None:
            return False
        if rng.random() < 0.55:  # pay another holder
            j = rng.randrange(shape.holders[token])
            to = shape.eoa_address(shape.holder_eoa(token, j))
        else:  # pay someone who holds none (most likely): the slot is absent until now
            to, _ = self._recipient()
            counts["absent_slot"] += state.get_storage(token_address, C.balance_slot(to)) == 0
        amount = max(1, held // rng.randrange(2, 50))
        spent[sender.address] = spent.get(sender.address, 0) + GAS_ERC20_LIMIT * max_fee
        plan.intents.append(Intent("erc20", sender, token_address, 0, C.transfer_data(to, amount), GAS_ERC20_LIMIT, 50_000, True, legacy, tip, mult))
        counts["erc20"] += 1
        return True


def generate_over_state(datadir: str | Path, kind: str, blocks: int, txs: int, seed: int, output: str | Path) -> dict:
    """Plan, seal and write the blocks; returns statistics. The datadir is only read."""
    from evmpipe.gen.builder import GenChain, seal_block
    from execution.forks import schedule_for_network

    if kind not in OVER_STATE_KINDS:
        raise GenerationError(f"over a state, KIND is one of {', '.join(OVER_STATE_KINDS)} (not {kind})")
    if blocks < 1 or txs < 1:
        raise GenerationError("--blocks and --txs must be at least 1")
    path = Path(datadir) / DB_NAME
    shape, header_rlp, root = _genesis_of(path)
    started = time.perf_counter()
    base = DatadirDB(path)
    try:
        chain = GenChain.from_genesis_header(AtomicDB(base), genesis_header(shape, root))
        parent = chain.get_canonical_head()
        planner = OverStatePlanner(shape, kind, txs, seed)
        header = BlockFileHeader(1, schedule_for_network("Cancun", 1), header_rlp, {}, f"evmpipe gen {kind} --state (seed {seed})")
        stats: dict = {"blocks": 0, "transactions": 0, "gas": 0, "per_block": []}
        nonces: dict[bytes, int] = {}
        partial = Path(f"{output}.partial")
        with BlockFileWriter.create(partial, header) as writer:
            for number in range(1, blocks + 1):
                state = chain.get_vm(parent).state
                plan, counts = planner.plan_block(number, state)
                for intent in plan.intents:
                    address = intent.sender.address
                    if address not in nonces:
                        nonces[address] = state.get_nonce(address)
                reads_before = base.reads
                sealed, transactions, receipts = seal_block(chain, parent, plan, shape.coinbase(), nonces)
                import rlp

                writer.append(sealed.number, sealed.hash, rlp.encode(sealed), sealed.header.state_root)
                failed = sum(1 for r in receipts if r.state_root != b"\x01")
                stats["blocks"] += 1
                stats["transactions"] += len(transactions)
                stats["gas"] += sealed.header.gas_used
                stats["per_block"].append({"number": number, "txs": len(transactions), "gas": sealed.header.gas_used, "failed": failed, "trie_reads": base.reads - reads_before, **counts})
                parent = sealed.header
        os.replace(partial, output)  # a failed run leaves no block file behind
    except BaseException:
        Path(f"{output}.partial").unlink(missing_ok=True)
        raise
    finally:
        base.close()
    stats["seconds"] = round(time.perf_counter() - started, 1)
    stats["state_root"] = "0x" + root.hex()
    return stats


def cmd_gen_over_state(args: argparse.Namespace) -> int:
    try:
        stats = generate_over_state(args.state, args.kind, args.blocks, args.txs, args.seed, args.output)
    except (GenerationError, ShapeError) as error:
        print(f"evmpipe gen: {error}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as error:
        print(f"evmpipe gen: {args.state}: {error} (damaged or truncated database?); no block file written", file=sys.stderr)
        return 2
    except KeyError as error:
        print(f"evmpipe gen: {args.state}: a trie node or code the state needs is missing ({error}); no block file written", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"evmpipe gen: cannot write {args.output}: {error}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in stats.items() if k != "per_block"}
    print(f"{args.output}: {json.dumps(summary)}")
    for block in stats["per_block"]:
        print("  " + json.dumps(block))
    return 0
