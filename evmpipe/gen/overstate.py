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
the datadir is opened read-only and left byte for byte as it was. py-evm asks for nodes
by hash only; where a datadir keys them by place (state.nodekeys, halfpath), `DatadirDB`
follows py-evm's walks: every node it serves tells it where that node's children sit
(and an account leaf, where its storage trie's root sits), and py-evm only ever reads a
node after its parent (from the head's root down), so every node it asks for is placed.

Kinds: transfers-independent (ETH transfers), erc20 (token transfers), amm (swaps on
the state's pools), mixed (ETH 45 %, ERC-20 35 %, swaps 20 %). A swap needs the pool
to hold an allowance for the trader's input token; the generated state holds none, so a
trader's first swap on a pool is preceded by its `approve(pool, 2**256-1)` in the same
block (the next nonce), as a wallet does it, and later swaps go straight to the pool.

Slot reads (`BlockShape`): mainnet blocks touch 800-2,800 storage slots, far more than
transfers alone do. `--slot-reads N` adds N reads per block through "reader"
transactions: a contract creation whose init code STATICCALLs `balanceOf(holder)` on
tokens (Zipf by popularity) `--reads-per-tx` times and then REVERTs, so it reads state
the way routers, aggregators and searchers do and writes nothing but the sender's nonce
and fee. `--absent-reads` of them ask about an EOA that holds none of the token (an
absent slot, as most of mainnet's slot reads are), the rest about real holders.

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
from dataclasses import dataclass
from random import Random

from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB

from consensus_stub.blockfile import BlockFileHeader, BlockFileWriter
from evmpipe.gen import contracts as C
from evmpipe.gen.genstate import DB_NAME, GENESIS_TIMESTAMP, genesis_header
from evmpipe.gen.keys import derive_hash, fresh_address, keyed_account
from evmpipe.gen.shape import ShapeError, StateShape
from evmpipe.gen.workloads import BlockPlan, GenerationError, Intent, Withdrawal
from state.nodekeys import HASH, META_KEY, NodePlaces

OVER_STATE_KINDS = ("transfers-independent", "erc20", "amm", "mixed")
GWEI = 10**9
GAS_ERC20_LIMIT = 70_000
GAS_APPROVE_LIMIT = 60_000
GAS_APPROVE = 46_500
GAS_SWAP_LIMIT = 200_000
GAS_SWAP = 130_000
GAS_CREATE = 53_000  # a contract creation's intrinsic gas
GAS_PER_READ = 3_500  # STATICCALL balanceOf, cold slot: the estimate (a warm token account)
GAS_PER_READ_LIMIT = 5_400  # the same with the token account cold too: the gas limit


@dataclass(frozen=True)
class BlockShape:
    """What each block holds besides its --txs transactions (see the module docstring)."""

    slot_reads: int = 0  # extra slot reads per block, by reader transactions
    reads_per_tx: int = 40
    absent_reads: float = 0.5  # share of reads that probe an absent slot
    swap_share: float | None = None  # mixed: share of swaps (default 0.2)

    @classmethod
    def default_for(cls, kind: str) -> BlockShape:
        return cls(slot_reads=1200 if kind in ("amm", "mixed") else 0)

    def check(self) -> None:
        if self.slot_reads < 0 or self.reads_per_tx < 1 or self.reads_per_tx > 400:
            raise GenerationError("--slot-reads must be >= 0 and --reads-per-tx in [1, 400]")
        if not 0.0 <= self.absent_reads <= 1.0:
            raise GenerationError("--absent-reads must be in [0, 1]")
        if self.swap_share is not None and not 0.0 <= self.swap_share <= 1.0:
            raise GenerationError("--swap-share must be in [0, 1]")
TIPS = (10**8, 5 * 10**8, 10**9, 10**9, 2 * 10**9, 3 * 10**9)


class DatadirDB(BaseDB):
    """py-evm's database over a datadir, read-only: reads fall through to trie_nodes and code."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (META_KEY,)).fetchone()
        head = self._db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        self._places = NodePlaces(HASH if row is None else bytes(row[0]).decode(), None if head is None else head[0][40:72])
        self._writes: dict[bytes, bytes] = {}
        self._deleted: set[bytes] = set()
        self.reads = 0

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._writes:
            return self._writes[key]
        if key in self._deleted or len(key) != 32:
            raise KeyError(key)
        self.reads += 1
        node_key = self._places.key(key)
        row = None if node_key is None else self._db.execute("SELECT node FROM trie_nodes WHERE hash=?", (node_key,)).fetchone()
        if row is not None:
            self._places.served(key, row[0])
        else:
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

    def __init__(self, shape: StateShape, kind: str, txs: int, seed: int, block_shape: BlockShape | None = None) -> None:
        self.shape, self.kind, self.txs = shape, kind, txs
        self.block_shape = block_shape or BlockShape.default_for(kind)
        self._approved: set[tuple[bytes, int, int]] = set()  # (trader, pool, input token) approved
        self._reserves: dict[int, tuple[int, int]] = {}  # pools' reserves after this block's swaps so far
        self._tokens_spent: dict[tuple[bytes, int], int] = {}  # (holder, token): sent or sold this block
        self._gas = 0  # the block's estimated gas so far
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
        counts = {"eth": 0, "erc20": 0, "swap": 0, "approve": 0, "reader": 0, "slot_reads": 0, "absent_reads": 0, "fresh": 0, "hot": 0, "cold": 0, "absent_slot": 0}
        self._reserves, self._tokens_spent, self._gas = {}, {}, 0
        swaps = {"amm": 1.0, "mixed": 0.2 if self.block_shape.swap_share is None else self.block_shape.swap_share}.get(self.kind, 0.0)
        share_erc20 = {"transfers-independent": 0.0, "erc20": 1.0, "amm": 0.0, "mixed": 0.35}[self.kind]
        budget = shape.gas_limit * 95 // 100
        reads = self.block_shape.slot_reads
        readers = -(-reads // self.block_shape.reads_per_tx) if reads else 0
        for n in range(self.txs + readers):
            if self._gas + GAS_SWAP_LIMIT > budget:
                counts["trimmed"] = self.txs + readers - n  # the block is full
                break
            legacy, tip, mult = self._fee()
            max_fee = 60 * GWEI
            if readers and (n * readers) // (self.txs + readers) != ((n + 1) * readers) // (self.txs + readers):
                per_tx = min(self.block_shape.reads_per_tx, reads - counts["slot_reads"])
                if per_tx > 0:
                    self._reader(plan, state, spent, counts, per_tx, legacy, tip, mult, max_fee)
                    continue
            r = rng.random()
            if r < swaps and self._swap(plan, state, spent, counts, legacy, tip, mult, max_fee):
                continue
            if r >= swaps and r < swaps + share_erc20 and self._erc20(plan, state, spent, counts, legacy, tip, mult, max_fee):
                continue
            _, sender = self._sender(state, spent, 21_000 * max_fee + 10**15)
            to, how = self._recipient()
            balance = state.get_balance(sender.address) - spent.get(sender.address, 0) - 21_000 * max_fee
            value = max(1, int(balance * rng.uniform(0.001, 0.2)))
            spent[sender.address] = spent.get(sender.address, 0) + value + 21_000 * max_fee
            plan.intents.append(Intent("eth", sender, to, value, b"", 21_000, 21_000, True, legacy, tip, mult))
            self._gas += 21_000
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
            held = state.get_storage(token_address, C.balance_slot(account.address)) - self._tokens_spent.get((account.address, token), 0)
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
        self._tokens_spent[(sender.address, token)] = self._tokens_spent.get((sender.address, token), 0) + amount
        spent[sender.address] = spent.get(sender.address, 0) + GAS_ERC20_LIMIT * max_fee
        plan.intents.append(Intent("erc20", sender, token_address, 0, C.transfer_data(to, amount), GAS_ERC20_LIMIT, 50_000, True, legacy, tip, mult))
        self._gas += GAS_ERC20_LIMIT
        counts["erc20"] += 1
        return True

    def _holder_sender(self, state, spent, token: int, need: int):  # type: ignore[no-untyped-def]
        """A keyed EOA that holds `token` (and can pay `need` wei of gas), and what it holds."""
        shape, rng = self.shape, self.rng
        for attempt in range(96):
            if attempt < 24:
                index = self._skewed(shape.keyed)  # type: ignore[arg-type]
                if shape.holder_rank(token, index) is None:
                    continue
            else:
                index = shape.holder_eoa(token, rng.randrange(shape.holders[token]))
                if index >= shape.keyed:  # type: ignore[operator]
                    continue
            account = self._key(index)
            if state.get_balance(account.address) - spent.get(account.address, 0) < need:
                continue
            held = state.get_storage(shape.token_address(token), C.balance_slot(account.address)) - self._tokens_spent.get((account.address, token), 0)
            if held > 0:
                return account, held
        return None, 0

    def _swap(self, plan, state, spent, counts, legacy, tip, mult, max_fee) -> bool:  # type: ignore[no-untyped-def]
        """A swap on one of the state's pools (Zipf by index), approving the pool first
        when this trader has not yet; reserves are tracked through the block."""
        shape, rng = self.shape, self.rng
        if not shape.pools:
            return False
        pool = self._skewed(shape.pools)  # type: ignore[arg-type]
        pool_address = shape.pool_address(pool)
        t0, t1 = shape.pool_pairs[pool]
        zero_for_one = rng.random() < 0.5
        token_in = t0 if zero_for_one else t1
        trader, held = self._holder_sender(state, spent, token_in, (GAS_SWAP_LIMIT + GAS_APPROVE_LIMIT) * max_fee)
        if trader is None:
            return False
        if pool not in self._reserves:
            r0, r1, _ = C.unpack_reserves(state.get_storage(pool_address, C.PAIR_RESERVES_SLOT))
            self._reserves[pool] = (r0, r1)
        r0, r1 = self._reserves[pool]
        r_in, r_out = (r0, r1) if zero_for_one else (r1, r0)
        amount_in = min(int(held * rng.uniform(0.05, 0.6)), int(r_in * math.exp(rng.uniform(math.log(2e-5), math.log(4e-3)))))
        if amount_in < 1:
            return False
        out = C.amount_out(amount_in, r_in, r_out)
        if out < 1:
            return False
        min_out = out * (10_000 - rng.choice((10, 30, 50, 50, 100))) // 10_000
        token_address = shape.token_address(token_in)
        gas_fees = GAS_SWAP_LIMIT * max_fee
        if (trader.address, pool, token_in) not in self._approved and state.get_storage(token_address, C.allowance_slot(trader.address, pool_address)) == 0:
            plan.intents.append(Intent("approve", trader, token_address, 0, C.encode_call(C.SEL_APPROVE, pool_address, C.MAX_UINT256), GAS_APPROVE_LIMIT, GAS_APPROVE, True, legacy, tip, mult))
            self._gas += GAS_APPROVE_LIMIT
            gas_fees += GAS_APPROVE_LIMIT * max_fee
            counts["approve"] += 1
        self._approved.add((trader.address, pool, token_in))
        spent[trader.address] = spent.get(trader.address, 0) + gas_fees
        self._tokens_spent[(trader.address, token_in)] = self._tokens_spent.get((trader.address, token_in), 0) + amount_in
        self._reserves[pool] = (r0 + amount_in, r1 - out) if zero_for_one else (r0 - out, r1 + amount_in)
        plan.intents.append(Intent("swap", trader, pool_address, 0, C.swap_data(zero_for_one, amount_in, min_out, trader.address), GAS_SWAP_LIMIT, GAS_SWAP, True, legacy, tip, mult, pool=pool))
        self._gas += GAS_SWAP_LIMIT
        counts["swap"] += 1
        return True

    def _reader(self, plan, state, spent, counts, reads: int, legacy, tip, mult, max_fee) -> None:  # type: ignore[no-untyped-def]
        """A contract creation whose init code asks `reads` tokens for a balance, then reverts."""
        shape, rng = self.shape, self.rng
        calls = []
        for _ in range(reads):
            token = self._skewed(shape.tokens)  # type: ignore[arg-type]
            holder = None
            if rng.random() < self.block_shape.absent_reads:
                for _ in range(8):  # an EOA that holds none of it: an absent slot
                    eoa = rng.randrange(shape.eoa_count)
                    if shape.holder_rank(token, eoa) is None:
                        holder = shape.eoa_address(eoa)
                        break
                else:  # every EOA holds this one (a small state): ask about a fresh address
                    self._fresh += 1
                    holder = fresh_address(self.seed, "fresh", self._fresh)
                counts["absent_reads"] += 1
            else:
                holder = shape.eoa_address(shape.holder_eoa(token, self._skewed(shape.holders[token])))
            calls.append((shape.token_address(token), holder))
        code = reader_code(calls)
        estimate = GAS_CREATE + 16 * len(code) + GAS_PER_READ * reads
        gas = GAS_CREATE + 16 * len(code) + GAS_PER_READ_LIMIT * reads
        _, sender = self._sender(state, spent, gas * max_fee + 10**15)
        spent[sender.address] = spent.get(sender.address, 0) + gas * max_fee
        plan.intents.append(Intent("reader", sender, b"", 0, code, gas, estimate, False, legacy, tip, mult))
        self._gas += gas
        counts["reader"] += 1
        counts["slot_reads"] += reads


def reader_code(calls: list[tuple[bytes, bytes]]) -> bytes:
    """Init code: STATICCALL token.balanceOf(holder) for each (token, holder), then REVERT.

    Memory: [0, 4) the selector (set once), [4, 36) the holder word, [64, 96) the answer."""
    out = bytearray(b"\x7f" + C.SEL_BALANCE_OF.ljust(32, b"\x00") + b"\x60\x00\x52")  # PUSH32 selector.., PUSH1 0, MSTORE
    for token, holder in calls:
        out += b"\x73" + holder + b"\x60\x04\x52"  # PUSH20 holder, PUSH1 4, MSTORE
        out += b"\x60\x20\x60\x40\x60\x24\x60\x00"  # retSize 32, retOffset 64, argsSize 36, argsOffset 0
        out += b"\x73" + token + b"\x5a\xfa\x50"  # PUSH20 token, GAS, STATICCALL, POP
    out += b"\x60\x00\x60\x00\xfd"  # REVERT(0, 0): nothing is created
    return bytes(out)


def generate_over_state(datadir: str | Path, kind: str, blocks: int, txs: int, seed: int, output: str | Path, block_shape: BlockShape | None = None) -> dict:
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
        block_shape = block_shape or BlockShape.default_for(kind)
        block_shape.check()
        planner = OverStatePlanner(shape, kind, txs, seed, block_shape)
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
    stats["block_shape"] = vars(block_shape)
    return stats


def cmd_gen_over_state(args: argparse.Namespace) -> int:
    defaults = BlockShape.default_for(args.kind)
    block_shape = BlockShape(
        slot_reads=defaults.slot_reads if args.slot_reads is None else args.slot_reads,
        reads_per_tx=args.reads_per_tx, absent_reads=args.absent_reads, swap_share=args.swap_share,
    )
    try:
        stats = generate_over_state(args.state, args.kind, args.blocks, args.txs, args.seed, args.output, block_shape)
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
