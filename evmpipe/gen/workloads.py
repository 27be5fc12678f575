"""What the generated blocks contain: the world (genesis) and the per-kind planners.

The planner decides every transaction of every block before anything is executed, from
seeded PRNGs only, and keeps a model of the state it changes (ETH balances as a lower
bound, every token balance, every pool's reserves exactly). So it knows each
transaction's outcome in advance: a swap with a stale quote is planned to revert, every
other transaction to succeed. The builder checks py-evm's receipts against that.

Kinds (see `KIND_HELP`): transfers-independent, transfers-hot, erc20, amm, mixed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from random import Random
from typing import Callable

from eth._utils.address import generate_contract_address
from eth.vm.forks.cancun.constants import BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CONTRACT_CODE, HISTORY_BUFFER_LENGTH

from evmpipe.gen import contracts as C
from evmpipe.gen.kinds import KIND_HELP, KINDS  # noqa: F401  (re-exported)
from evmpipe.gen.keys import KeyedAccount, derive_hash, fresh_address, keyed_account

ETHER = 10**18
GWEI = 10**9

GENESIS_TIMESTAMP = 1_712_000_000  # April 2024, after mainnet's Cancun
BLOCK_TIME = 12
GENESIS_BASE_FEE = 7 * GWEI
EXTRA_DATA = b"evmpipe-gen"
FEE_BOUND = 100 * GWEI  # the planner's worst-case fee per gas, for ETH balance bounds

# Gas per transaction, measured on py-evm with the committed contracts (tests check the
# planner's estimates stay close). Used to size transaction and block gas limits.
GAS_ETH = 21_000
GAS_ERC20 = 33_840  # transfer() to a non-zero balance
GAS_ERC20_FRESH = 50_940  # transfer() that creates the recipient's balance (0 -> x SSTORE)
GAS_SWAP = 69_900  # successful swap(), not the first on its pool in the block
GAS_SWAP_FIRST = 10_200  # extra: the first swap on a pool in a block updates the accumulators
GAS_SWAP_FRESH = 17_100  # extra: the trader had none of the output token
GAS_SWAP_REVERT = 25_210  # swap() that reverts with "slippage"
ZERO_TO_NONZERO_EXTRA = GAS_ERC20_FRESH - GAS_ERC20

TIP_CHOICES = (  # priority fee per gas, wei, with weights: what wallets suggest
    (10**7, 3), (5 * 10**7, 4), (10**8, 8), (5 * 10**8, 10), (10**9, 30),
    (15 * 10**8, 15), (2 * 10**9, 15), (3 * 10**9, 8), (5 * 10**9, 5), (10 * 10**9, 2),
)
MAX_FEE_MULTIPLIERS = ((2, 1), (2, 1), (2, 1), (3, 2), (5, 4), (3, 1))  # max fee = base * m + tip
LEGACY_PRICE_MULTIPLIERS = ((1, 1), (1, 1), (11, 10), (5, 4))  # gas price = base * m + tip


class GenerationError(RuntimeError):
    """The plan and the executed block disagree, or the parameters are unusable."""


@dataclass(frozen=True)
class GenParams:
    """Generation parameters; None means "the kind's default" (see `resolved`)."""

    kind: str
    blocks: int = 4
    txs: int = 250
    seed: int = 1
    pools: int | None = None
    hot: float | None = None
    hot_wallets: int | None = None
    accounts: int | None = None
    tokens: int | None = None
    withdrawals: int | None = None
    stale: float = 0.02
    legacy: float = 0.15

    def resolved(self) -> "GenParams":
        kind, txs = self.kind, self.txs
        if kind not in KINDS:
            raise GenerationError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        if self.blocks < 1 or txs < 1:
            raise GenerationError("--blocks and --txs must be at least 1")
        if self.seed < 0 or self.seed >= 2**64:
            raise GenerationError("--seed must be in [0, 2**64)")
        pools = self.pools if self.pools is not None else {"amm": 8, "mixed": 4}.get(kind, 0)
        if kind in ("amm", "mixed") and pools < 1:
            raise GenerationError(f"{kind} needs --pools >= 1")
        if kind not in ("amm", "mixed"):
            pools = 0
        hot = self.hot if self.hot is not None else {"transfers-hot": 0.3, "mixed": 0.15}.get(kind, 0.0)
        if not 0.0 <= hot <= 1.0:
            raise GenerationError("--hot must be a fraction in [0, 1]")
        if kind not in ("transfers-hot", "mixed"):
            hot = 0.0
        hot_wallets = self.hot_wallets if self.hot_wallets is not None else {"transfers-hot": 4, "mixed": 3}.get(kind, 0)
        if hot > 0 and hot_wallets < 1:
            raise GenerationError("--hot needs at least one hot wallet")
        if hot == 0:
            hot_wallets = 0
        if kind == "erc20":
            tokens = self.tokens or 1
        elif kind == "amm":
            tokens = 2 * pools
        elif kind == "mixed":
            tokens = max(self.tokens or 4, _tokens_for_pools(pools))
        else:
            tokens = 0
        withdrawals = self.withdrawals if self.withdrawals is not None else (16 if kind == "mixed" else 0)
        default_accounts = {"amm": txs + txs // 4 + 8}.get(kind, 2 * txs + 16)
        accounts = self.accounts if self.accounts is not None else default_accounts
        if accounts < 2:
            raise GenerationError("--accounts must be at least 2")
        if not 0.0 <= self.stale <= 1.0 or not 0.0 <= self.legacy <= 1.0:
            raise GenerationError("--stale and --legacy are fractions in [0, 1]")
        if withdrawals < 0:
            raise GenerationError("--withdrawals must be >= 0")
        return replace(self, pools=pools, hot=hot, hot_wallets=hot_wallets, tokens=tokens, withdrawals=withdrawals, accounts=accounts)

    def test_name(self) -> str:
        p = self.resolved()
        name = f"{p.kind.replace('-', '_')}_b{p.blocks}_t{p.txs}_s{p.seed}"
        if p.kind == "amm" or (p.kind == "mixed" and p.pools != 4):
            name += f"_p{p.pools}"
        if p.kind == "transfers-hot" or (p.kind == "mixed" and p.hot != 0.15):
            name += f"_hot{round(p.hot * 100)}"
        return name

    def as_dict(self) -> dict:
        p = self.resolved()
        return {
            "kind": p.kind, "blocks": p.blocks, "txs_per_block": p.txs, "seed": p.seed, "pools": p.pools,
            "hot": p.hot, "hot_wallets": p.hot_wallets, "accounts": p.accounts, "tokens": p.tokens,
            "withdrawals": p.withdrawals, "stale": p.stale, "legacy": p.legacy,
        }


def _tokens_for_pools(pools: int) -> int:
    tokens = 2
    while tokens * (tokens - 1) // 2 < pools:
        tokens += 1
    return tokens


@dataclass
class Pool:
    address: bytes
    token0: int  # token indices
    token1: int
    reserve0: int
    reserve1: int
    price0: int = 0
    price1: int = 0


@dataclass
class Intent:
    """One planned transaction; fees and nonce are fixed when its block is sealed."""

    category: str  # "eth" | "erc20" | "swap"
    sender: KeyedAccount
    to: bytes
    value: int
    data: bytes
    gas: int  # the transaction's gas limit
    estimate: int  # the planner's estimate of the gas it uses
    success: bool
    legacy: bool
    tip: int
    fee_multiplier: tuple[int, int]
    hot: bool = False
    pool: int | None = None


@dataclass
class Withdrawal:
    index: int
    validator_index: int
    address: bytes
    amount_gwei: int


@dataclass
class BlockPlan:
    number: int
    timestamp: int
    intents: list[Intent] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    beacon_root: bytes = b""
    prev_randao: bytes = b""

    @property
    def estimate(self) -> int:
        return sum(i.estimate for i in self.intents)


def _log_uniform(rng: Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _round_sig(value: int, digits: int = 4) -> int:
    """Round to `digits` significant digits: people send round-ish amounts."""
    if value <= 0:
        return value
    drop = max(0, len(str(value)) - digits)
    return (value // 10**drop) * 10**drop


class World:
    """Accounts, contracts and their state at genesis, then the planner's model of it."""

    def __init__(self, params: GenParams) -> None:
        p = params.resolved()
        self.params = p
        seed = p.seed
        rng = Random(f"evmpipe-gen/{seed}/world")
        self.rng = rng
        self.users = [keyed_account(seed, "user", i) for i in range(p.accounts)]
        for user in self.users:
            user.balance = _round_sig(int(_log_uniform(rng, 0.5, 200) * ETHER), 6)
            user.nonce = int(_log_uniform(rng, 1, 3000)) - 1
        self.hot = [keyed_account(seed, "hot", i) for i in range(p.hot_wallets or 0)]
        for wallet in self.hot:
            wallet.role = "hot"
            wallet.balance = _round_sig(int(rng.uniform(50_000, 250_000) * ETHER), 6)
            wallet.nonce = rng.randrange(100_000, 5_000_000)
        self.by_address: dict[bytes, KeyedAccount] = {a.address: a for a in self.users + self.hot}
        self.deployer = keyed_account(seed, "deployer", 0)
        self.deployer.role = "deployer"
        self.deployer.balance = 10 * ETHER
        self.coinbase = fresh_address(seed, "coinbase", 0)
        self.coinbase_balance = _round_sig(int(rng.uniform(1, 20) * ETHER), 6)
        self._fresh = 0

        n_tokens = p.tokens or 0
        n_contracts = n_tokens + (p.pools or 0)
        addresses = [generate_contract_address(self.deployer.address, k) for k in range(n_contracts)]
        self.deployer.nonce = n_contracts
        self.tokens = addresses[:n_tokens]
        # dollar value of one whole token: sets the scale of balances and pools
        self.token_value = [_log_uniform(rng, 0.05, 3000) for _ in range(n_tokens)]
        self.balances: list[dict[bytes, int]] = [{} for _ in range(n_tokens)]  # token -> holder -> amount
        self.allowances: list[dict[tuple[bytes, bytes], int]] = [{} for _ in range(n_tokens)]
        self.pools: list[Pool] = []
        pairs = _pool_tokens(p.kind, p.pools or 0, n_tokens)
        for index, (t0, t1) in enumerate(pairs):
            liquidity = _log_uniform(rng, 2e6, 2e7)  # dollars on each side
            pool = Pool(addresses[n_tokens + index], t0, t1, self._amount(liquidity, t0), self._amount(liquidity, t1))
            pool.price0 = rng.getrandbits(200)
            pool.price1 = rng.getrandbits(200)
            self.pools.append(pool)
            self.balances[t0][pool.address] = pool.reserve0
            self.balances[t1][pool.address] = pool.reserve1

        self.pools_of_token: list[list[int]] = [[] for _ in range(n_tokens)]
        for index, pool in enumerate(self.pools):
            self.pools_of_token[pool.token0].append(index)
            self.pools_of_token[pool.token1].append(index)
        for t in range(n_tokens):
            hold = _hold_probability(p.kind, t)
            for user in self.users:
                if rng.random() < hold:
                    self.balances[t][user.address] = self._amount(_log_uniform(rng, 10, 50_000), t)
            for wallet in self.hot:
                self.balances[t][wallet.address] = self._amount(rng.uniform(1e6, 1e7), t)
        # every holder has approved the pairs of the tokens it holds, for an unlimited amount
        for user in self.users:
            for t in range(n_tokens):
                if user.address not in self.balances[t]:
                    continue
                for pool_index in self.pools_of_token[t]:
                    self.allowances[t][(user.address, self.pools[pool_index].address)] = C.MAX_UINT256
        self.total_supply = [sum(b.values()) for b in self.balances]
        self.genesis_alloc = self._alloc()

    def _amount(self, dollars: float, token: int) -> int:
        return _round_sig(int(dollars / self.token_value[token] * 10**18), 6) or 1

    def fresh_address(self) -> bytes:
        self._fresh += 1
        return fresh_address(self.params.seed, "fresh", self._fresh)

    def _alloc(self) -> dict[bytes, dict]:
        """The genesis allocation, in py-evm's `genesis_state` form."""
        alloc: dict[bytes, dict] = {}

        def put(address: bytes, balance: int = 0, nonce: int = 0, code: bytes = b"", storage: dict[int, int] | None = None) -> None:
            alloc[address] = {"balance": balance, "nonce": nonce, "code": code, "storage": dict(storage or {})}

        put(BEACON_ROOTS_ADDRESS, nonce=1, code=BEACON_ROOTS_CONTRACT_CODE)
        for account in self.users + self.hot + [self.deployer]:
            put(account.address, account.balance, account.nonce)
        put(self.coinbase, self.coinbase_balance)
        for t, address in enumerate(self.tokens):
            storage = {C.balance_slot(holder): amount for holder, amount in self.balances[t].items() if amount}
            storage.update({C.allowance_slot(owner, spender): amount for (owner, spender), amount in self.allowances[t].items()})
            storage[C.TOKEN_TOTAL_SUPPLY_SLOT] = self.total_supply[t]
            put(address, nonce=1, code=C.runtime_code("Token"), storage=storage)
        for pool in self.pools:
            storage = {
                C.PAIR_TOKEN0_SLOT: int.from_bytes(self.tokens[pool.token0], "big"),
                C.PAIR_TOKEN1_SLOT: int.from_bytes(self.tokens[pool.token1], "big"),
                C.PAIR_RESERVES_SLOT: C.pack_reserves(pool.reserve0, pool.reserve1, GENESIS_TIMESTAMP - 7 * BLOCK_TIME),
                C.PAIR_PRICE0_SLOT: pool.price0,
                C.PAIR_PRICE1_SLOT: pool.price1,
            }
            put(pool.address, nonce=1, code=C.runtime_code("Pair"), storage=storage)
        return alloc

    def known_addresses(self) -> list[bytes]:
        """Every address that may exist after the plan (for naming state-trie keys)."""
        out = list(self.genesis_alloc)
        out += [fresh_address(self.params.seed, "fresh", i) for i in range(1, self._fresh + 1)]
        out += [fresh_address(self.params.seed, "withdrawal", i) for i in range(WITHDRAWAL_ADDRESSES)]
        return out

    def known_slots(self, plans: list[BlockPlan]) -> dict[bytes, list[int]]:
        """Every storage slot that may be non-zero after the plan, per contract."""
        slots: dict[bytes, list[int]] = {}
        for t, address in enumerate(self.tokens):
            holders = list(self.balances[t])
            slots[address] = [C.balance_slot(h) for h in holders] + [C.TOKEN_TOTAL_SUPPLY_SLOT]
            slots[address] += [C.allowance_slot(o, s) for (o, s) in self.allowances[t]]
        for pool in self.pools:
            slots[pool.address] = [C.PAIR_TOKEN0_SLOT, C.PAIR_TOKEN1_SLOT, C.PAIR_RESERVES_SLOT, C.PAIR_PRICE0_SLOT, C.PAIR_PRICE1_SLOT]
        beacon = []
        for plan in plans:
            beacon += [plan.timestamp % HISTORY_BUFFER_LENGTH, plan.timestamp % HISTORY_BUFFER_LENGTH + HISTORY_BUFFER_LENGTH]
        slots[BEACON_ROOTS_ADDRESS] = beacon
        return slots


WITHDRAWAL_ADDRESSES = 64  # validators' withdrawal addresses, reused across blocks


def _pool_tokens(kind: str, pools: int, tokens: int) -> list[tuple[int, int]]:
    if kind == "amm":  # each pool over two tokens of its own
        return [(2 * i, 2 * i + 1) for i in range(pools)]
    pairs = sorted(((a, b) for b in range(tokens) for a in range(b)), key=lambda ab: (ab[1], ab[0]))
    return pairs[:pools]  # the most popular tokens first: (0,1), (0,2), (1,2), (0,3), ...


def _hold_probability(kind: str, token: int) -> float:
    if kind == "mixed":
        return 0.85 / (1 + 0.35 * token)  # popular tokens have more holders
    if kind == "amm":
        return 0.7  # a trader can sell into a pool when it holds either of its tokens
    return 0.8


def _zipf_weights(n: int, exponent: float = 1.0) -> list[float]:
    return [1.0 / (k + 1) ** exponent for k in range(n)]


class Planner:
    """Plans every block of one workload over a `World`, updating the world's model."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.p = world.params
        self.rng = Random(f"evmpipe-gen/{self.p.seed}/{self.p.kind}/plan")
        self._deck: list[KeyedAccount] = []
        self._used: set[bytes] = set()
        self._senders: list[KeyedAccount] = []
        self._swapped_pools: set[int] = set()
        self._withdrawal_index = 1_000_000 + self.rng.randrange(0, 10_000_000)

    # -- per-block bookkeeping ------------------------------------------------------

    def plan(self) -> list[BlockPlan]:
        plans = []
        for number in range(1, self.p.blocks + 1):
            plan = BlockPlan(number, GENESIS_TIMESTAMP + number * BLOCK_TIME)
            plan.beacon_root = derive_hash(self.p.seed, "beacon", number)
            plan.prev_randao = derive_hash(self.p.seed, "randao", number)
            self._deck = list(self.world.users)
            self.rng.shuffle(self._deck)
            self._used = set()
            self._senders = []
            self._swapped_pools = set()
            getattr(self, "_block_" + self.p.kind.replace("-", "_"))(plan)
            plan.withdrawals = self._withdrawals(self.p.withdrawals or 0)
            plans.append(plan)
        return plans

    def _take(self, accept: Callable[[KeyedAccount], bool] = lambda a: True) -> KeyedAccount | None:
        """A user not yet used in this block that `accept`s, or None."""
        deck = self._deck
        for position in range(len(deck) - 1, -1, -1):
            candidate = deck[position]
            if candidate.address in self._used:
                continue
            if accept(candidate):
                deck.pop(position)
                self._used.add(candidate.address)
                return candidate
        return None

    def _any_user(self, accept: Callable[[KeyedAccount], bool] = lambda a: True) -> KeyedAccount | None:
        """Any user (a repeat sender is fine) that `accept`s, or None."""
        users = self.world.users
        for _ in range(64):
            candidate = users[self.rng.randrange(len(users))]
            if accept(candidate):
                return candidate
        shuffled = list(users)
        self.rng.shuffle(shuffled)
        return next((u for u in shuffled if accept(u)), None)

    def _sender(self, accept: Callable[[KeyedAccount], bool] = lambda a: True) -> KeyedAccount:
        """A distinct sender if one is left, else a repeat one (a nonce chain)."""
        sender = self._maybe_sender(accept)
        if sender is None:
            raise GenerationError("no account can send this transaction (no funds or tokens left); raise --accounts")
        return sender

    def _maybe_sender(self, accept: Callable[[KeyedAccount], bool]) -> KeyedAccount | None:
        sender = self._take(accept) or self._any_user(accept)
        if sender is not None:
            self._senders.append(sender)
        return sender

    def _recipient(self, fresh: float, exclude: bytes) -> bytes:
        if self.rng.random() < fresh:
            return self.world.fresh_address()
        user = self._take(lambda a: a.address != exclude)
        return user.address if user is not None else self.world.fresh_address()

    def _fee(self) -> tuple[bool, int, tuple[int, int]]:
        rng = self.rng
        legacy = rng.random() < self.p.legacy
        tip = rng.choices([t for t, _ in TIP_CHOICES], weights=[w for _, w in TIP_CHOICES])[0]
        multiplier = rng.choice(LEGACY_PRICE_MULTIPLIERS if legacy else MAX_FEE_MULTIPLIERS)
        return legacy, tip, multiplier

    def _gas_limit(self, estimate: int) -> int:
        """What a wallet puts in: the estimate plus a safety margin, rounded up."""
        return -(-int(estimate * self.rng.uniform(1.25, 1.6)) // 1000) * 1000

    # -- transaction kinds -----------------------------------------------------------

    def _can_pay(self, account: KeyedAccount, gas: int) -> bool:
        return account.balance > gas * FEE_BOUND + ETHER // 100

    def _eth(self, plan: BlockPlan, sender: KeyedAccount, to: bytes, *, hot: bool = False) -> None:
        budget = sender.balance - GAS_ETH * FEE_BOUND - ETHER // 100
        value = min(int(_log_uniform(self.rng, 0.0005, 3.0) * ETHER), budget // 3)
        value = _round_sig(max(value, 0), 4)
        self._charge(sender, GAS_ETH, value)
        if to in self.world.by_address:
            self.world.by_address[to].balance += value
        legacy, tip, mult = self._fee()
        plan.intents.append(Intent("eth", sender, to, value, b"", GAS_ETH, GAS_ETH, True, legacy, tip, mult, hot=hot))

    def _charge(self, sender: KeyedAccount, gas: int, value: int) -> None:
        sender.balance -= value + gas * FEE_BOUND
        sender.nonce += 1

    def _erc20(self, plan: BlockPlan, token: int, sender: KeyedAccount, to: bytes, *, hot: bool = False) -> None:
        balances = self.world.balances[token]
        have = balances.get(sender.address, 0)
        cap = self.world._amount(_log_uniform(self.rng, 5, 50_000), token)
        amount = _round_sig(max(1, min(int(have * self.rng.uniform(0.01, 0.5)), cap)), 4)
        fresh = balances.get(to, 0) == 0
        estimate = GAS_ERC20_FRESH if fresh else GAS_ERC20
        gas = self._gas_limit(estimate)
        balances[sender.address] = have - amount
        balances[to] = balances.get(to, 0) + amount
        self._charge(sender, gas, 0)
        legacy, tip, mult = self._fee()
        data = C.transfer_data(to, amount)
        plan.intents.append(Intent("erc20", sender, self.world.tokens[token], 0, data, gas, estimate, True, legacy, tip, mult, hot=hot))

    def _swap(self, plan: BlockPlan, pool_index: int, trader: KeyedAccount) -> None:
        rng, world = self.rng, self.world
        pool = world.pools[pool_index]
        have0, have1 = self._spendable(pool_index, trader)
        zero_for_one = rng.random() < 0.5
        if (have1 if not zero_for_one else have0) == 0:
            zero_for_one = not zero_for_one
        t_in, t_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
        r_in, r_out = (pool.reserve0, pool.reserve1) if zero_for_one else (pool.reserve1, pool.reserve0)
        have = have0 if zero_for_one else have1
        amount_in = min(int(have * rng.uniform(0.05, 0.6)), int(r_in * _log_uniform(rng, 2e-5, 4e-3)))
        amount_in = _round_sig(max(amount_in, 1), 5)
        out = C.amount_out(amount_in, r_in, r_out)
        stale = rng.random() < self.p.stale
        if stale or out == 0:
            # quoted against a better price than the pool will have: reverts "slippage"
            min_out = out + max(1, int(out * rng.uniform(0.003, 0.03)))
        else:
            min_out = out * (10_000 - rng.choice((10, 30, 50, 50, 100))) // 10_000
        success = out >= min_out and out > 0
        balances_in, balances_out = world.balances[t_in], world.balances[t_out]
        if success:
            estimate = GAS_SWAP
            if pool_index not in self._swapped_pools:
                estimate += GAS_SWAP_FIRST
            if balances_out.get(trader.address, 0) == 0:
                estimate += GAS_SWAP_FRESH
            self._swapped_pools.add(pool_index)
            balances_in[trader.address] = have - amount_in
            balances_in[pool.address] += amount_in
            balances_out[pool.address] -= out
            balances_out[trader.address] = balances_out.get(trader.address, 0) + out
            if zero_for_one:
                pool.reserve0, pool.reserve1 = r_in + amount_in, r_out - out
            else:
                pool.reserve1, pool.reserve0 = r_in + amount_in, r_out - out
        else:
            estimate = GAS_SWAP_REVERT
        # the wallet estimated a successful swap, whatever happens when it lands
        gas = self._gas_limit(GAS_SWAP + GAS_SWAP_FIRST + GAS_SWAP_FRESH)
        self._charge(trader, gas, 0)
        legacy, tip, mult = self._fee()
        data = C.swap_data(zero_for_one, amount_in, min_out, trader.address)
        plan.intents.append(Intent("swap", trader, pool.address, 0, data, gas, estimate, success, legacy, tip, mult, pool=pool_index))

    def _spendable(self, pool_index: int, trader: KeyedAccount) -> tuple[int, int]:
        """What `trader` can sell into the pool: its balances of the pool's two tokens
        where it has approved the pool (a swap without an allowance would revert)."""
        world = self.world
        pool = world.pools[pool_index]
        key = (trader.address, pool.address)
        have0 = world.balances[pool.token0].get(trader.address, 0) if key in world.allowances[pool.token0] else 0
        have1 = world.balances[pool.token1].get(trader.address, 0) if key in world.allowances[pool.token1] else 0
        return have0, have1

    def _can_swap(self, pool_index: int) -> Callable[[KeyedAccount], bool]:
        gas = GAS_SWAP + GAS_SWAP_FIRST + GAS_SWAP_FRESH
        return lambda a: any(self._spendable(pool_index, a)) and self._can_pay(a, 2 * gas)

    def _withdrawals(self, count: int) -> list[Withdrawal]:
        rng, out = self.rng, []
        for _ in range(count):
            if rng.random() < 0.5:
                address = fresh_address(self.p.seed, "withdrawal", rng.randrange(WITHDRAWAL_ADDRESSES))
            else:
                address = self.world.users[rng.randrange(len(self.world.users))].address
            amount = rng.randrange(10_000_000, 60_000_000)  # gwei: a partial withdrawal
            if address in self.world.by_address:
                self.world.by_address[address].balance += amount * GWEI
            out.append(Withdrawal(self._withdrawal_index, rng.randrange(0, 1_000_000), address, amount))
            self._withdrawal_index += 1
        return out

    # -- kinds -----------------------------------------------------------------------

    def _block_transfers_independent(self, plan: BlockPlan) -> None:
        for _ in range(self.p.txs):
            sender = self._sender(lambda a: self._can_pay(a, GAS_ETH))
            self._eth(plan, sender, self._recipient(0.2, sender.address))

    def _block_transfers_hot(self, plan: BlockPlan) -> None:
        rng, hot = self.rng, self.world.hot
        for _ in range(self.p.txs):
            if rng.random() < (self.p.hot or 0.0):
                wallet = hot[rng.randrange(len(hot))]
                if rng.random() < 0.5:  # deposit: a user pays into the exchange
                    sender = self._sender(lambda a: self._can_pay(a, GAS_ETH))
                    self._eth(plan, sender, wallet.address, hot=True)
                else:  # withdrawal: the exchange pays out, a run of nonces
                    self._senders.append(wallet)
                    self._eth(plan, wallet, self._recipient(0.3, wallet.address), hot=True)
            else:
                sender = self._sender(lambda a: self._can_pay(a, GAS_ETH))
                self._eth(plan, sender, self._recipient(0.2, sender.address))

    def _block_erc20(self, plan: BlockPlan) -> None:
        tokens = self.p.tokens or 1
        for _ in range(self.p.txs):
            token = self.rng.randrange(tokens)
            balances = self.world.balances[token]
            sender = self._sender(lambda a, b=balances: b.get(a.address, 0) > 0 and self._can_pay(a, 2 * GAS_ERC20_FRESH))
            self._erc20(plan, token, sender, self._recipient(0.15, sender.address))

    def _block_amm(self, plan: BlockPlan) -> None:
        pools = len(self.world.pools)
        for _ in range(self.p.txs):
            first = self.rng.randrange(pools)
            for pool_index in [(first + k) % pools for k in range(pools)]:  # the chosen pool, else the next one
                trader = self._maybe_sender(self._can_swap(pool_index))
                if trader is not None:
                    self._swap(plan, pool_index, trader)
                    break
            else:
                raise GenerationError("no account holds tokens to swap; raise --accounts")

    def _block_mixed(self, plan: BlockPlan) -> None:
        rng, world = self.rng, self.world
        token_weights = _zipf_weights(len(world.tokens))
        pool_weights = _zipf_weights(len(world.pools), 1.3)
        for _ in range(self.p.txs):
            category = rng.choices(("eth", "erc20", "swap"), weights=(45, 35, 20))[0]
            if category == "swap":
                pool_index = rng.choices(range(len(world.pools)), weights=pool_weights)[0]
                trader = self._mixed_sender(self._can_swap(pool_index))
                if trader is not None:
                    self._swap(plan, pool_index, trader)
                    continue
                category = "eth"  # nobody can trade on that pool now: a plain transfer instead
            token = rng.choices(range(len(world.tokens)), weights=token_weights)[0] if category == "erc20" else -1
            balances = world.balances[token] if token >= 0 else {}
            gas = GAS_ETH if token < 0 else 2 * GAS_ERC20_FRESH

            def can_send(a: KeyedAccount, balances: dict = balances, gas: int = gas, token: int = token) -> bool:
                return (token < 0 or balances.get(a.address, 0) > 0) and self._can_pay(a, gas)

            sender: KeyedAccount | None
            if world.hot and rng.random() < (self.p.hot or 0.0):
                wallet = world.hot[rng.randrange(len(world.hot))]
                if rng.random() < 0.5:
                    sender, to = self._mixed_sender(can_send), wallet.address
                else:
                    sender = wallet
                    self._senders.append(wallet)
                    to = self._mixed_recipient(0.2, wallet.address)
                hot = True
            else:
                sender = self._mixed_sender(can_send)
                to = b""
                hot = False
            if sender is None and token >= 0:  # nobody holds that token now: ETH instead
                token = -1
                sender = self._mixed_sender(lambda a: self._can_pay(a, GAS_ETH))
            if sender is None:
                raise GenerationError("no account can afford another transaction; raise --accounts")
            if not to:
                to = self._mixed_recipient(0.2 if token < 0 else 0.1, sender.address)
            if token < 0:
                self._eth(plan, sender, to, hot=hot)
            else:
                self._erc20(plan, token, sender, to, hot=hot)

    def _mixed_sender(self, accept: Callable[[KeyedAccount], bool]) -> KeyedAccount | None:
        """Mostly a new sender; sometimes one that already sent in this block."""
        if self._senders and self.rng.random() < 0.12:
            repeat = [s for s in self._senders[-64:] if s.role == "user" and accept(s)]
            if repeat:
                sender = repeat[self.rng.randrange(len(repeat))]
                self._senders.append(sender)
                return sender
        return self._maybe_sender(accept)

    def _mixed_recipient(self, fresh: float, exclude: bytes) -> bytes:
        if self.rng.random() < fresh:
            return self.world.fresh_address()
        users = self.world.users
        for _ in range(8):
            user = users[self.rng.randrange(len(users))]
            if user.address != exclude:
                return user.address
        return self.world.fresh_address()


def plan_workload(params: GenParams) -> tuple[World, list[BlockPlan]]:
    world = World(params)
    return world, Planner(world).plan()


def block_gas_limit(plans: list[BlockPlan]) -> int:
    """One gas limit for every block, about twice the average gas a block uses."""
    estimates = [plan.estimate for plan in plans]
    largest_tx = max((i.gas for plan in plans for i in plan.intents), default=GAS_ETH)
    mean = sum(estimates) / len(estimates)
    needed = max(2 * mean, max(estimates) + largest_tx, 5_000)
    step = 1_000_000 if needed >= 10_000_000 else 100_000
    return int(-(-needed // step) * step)
