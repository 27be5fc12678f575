"""How a block's transactions are executed: sequential, optimistic, declared, auto.

All strategies give the sequential result, byte for byte; they differ in how much of
the work runs in parallel.

- `sequential`: one transaction after another in this process.
- `optimistic` (Block-STM, Monad, Sei v2): every transaction runs speculatively in
  worker processes against the pre-block state; then, in block order, a transaction
  whose every read still matches the state so far has its writes applied as they
  are; any other is executed again right here, on that exact state.
- `declared` (Solana, Sei v1): the same validation, but scheduled up front from
  predicted access sets (`execution.predict`): transactions predicted to depend on
  each other run as one chain, in order, on one worker; chains run in parallel.
- `auto`: declared, except for blocks where it cannot pay: small blocks, blocks
  before Byzantium (their receipts need a state root after every transaction),
  blocks whose predicted longest chain is most of the block, and the block after one
  in which most transactions ran twice although the predictor learned nothing new.
- `--verify` wraps any strategy: the block is executed sequentially as well and the
  two results must be identical, or the run stops naming the first difference.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

import trio
import rlp
from eth.abc import BlockAPI
from eth.vm.forks import ByzantiumVM

from execution.block import BlockExecution, BlockRun, execute_block, make_vm
from execution.decode import mark_sender
from execution.predict import SAMPLES, AccessPredictor, Prediction, schedule_chains
from execution.speculate import SpecResult
from execution.workers import BlockRequest, SpeculationStream, WorkerPool
from pipeline.block import InFlightBlock
from pipeline.chain import Chain
from pipeline.errors import FatalError, InvalidBlock
from state.codec import pack_diff
from state.diff import StateDiff
from state.merkle import merkleize

#: `auto` runs blocks with fewer transactions than this sequentially (IPC costs more).
AUTO_MIN_TXS = 24
#: `auto` runs blocks of plain transfers (less gas than this per transaction, by the
#: header) sequentially with fewer workers than `AUTO_LIGHT_MIN_WORKERS`: a transfer's
#: EVM work (about 0.1 ms) does not pay for the round trip on two cores (measured:
#: docs/BENCHMARKS.md). The worker count is a guess: no larger machine was measured.
AUTO_LIGHT_GAS_PER_TX = 30_000
AUTO_LIGHT_MIN_WORKERS = 4
#: `auto` goes sequential for the next block when more than this share was re-executed.
AUTO_MAX_REEXEC = 0.6
#: `auto` runs a block sequentially when its predicted longest chain is above this share.
AUTO_MAX_CHAIN_SHARE = 0.5
#: `auto` runs the next block optimistically (no senders round trip, no prediction)
#: when at most this share of a block's transactions was predicted to depend on another.
AUTO_INDEPENDENT_SHARE = 0.05
#: ...and goes back to `declared` once an optimistic block re-executed more than this.
AUTO_OPTIMISTIC_MAX_REEXEC = 0.05
#: validation yields to the event loop every this many transactions.
CHECKPOINT_EVERY = 64


class ExecutionStrategy(Protocol):
    name: str

    async def run(self, chain: Chain, item: InFlightBlock) -> BlockExecution: ...


def needs_intermediate_roots(item: InFlightBlock) -> bool:
    """Before Byzantium (EIP-658) each receipt holds the state root after its transaction."""
    return not issubclass(item.vm_class, ByzantiumVM)  # type: ignore[arg-type]


def block_vm(chain: Chain, item: InFlightBlock) -> Any:
    header = item.header
    return make_vm(
        item.vm_class,
        header,
        chain.overlay,
        chain.ancestor_hashes(header.parent_hash),
        chain.chain_id,
        root_hook=_intermediate_root(chain, item) if needs_intermediate_roots(item) else None,
    )


def _intermediate_root(chain: Chain, item: InFlightBlock):  # type: ignore[no-untyped-def]
    parent_root = item.parent.state_root  # type: ignore[union-attr]
    number = item.header.block_number

    def root(pending: StateDiff) -> bytes:
        get_account = lambda address: chain.overlay.get_account_below(number, address)  # noqa: E731
        return merkleize(pending, parent_root, get_account, chain.overlay.get_trie_node, in_place=False)[0]

    return root


class SequentialStrategy:
    """One transaction after another, as the Yellow Paper defines the block."""

    name = "sequential"

    async def run(self, chain: Chain, item: InFlightBlock) -> BlockExecution:
        item.counts.setdefault("execute", {})["strategy"] = self.name  # type: ignore[assignment]
        return execute_block(block_vm(chain, item), item.block)


class OptimisticStrategy:
    """Speculate in parallel, validate in order, re-execute what a conflict touched."""

    name = "optimistic"
    recovers_senders = True  # the workers recover senders while they speculate

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._packed: dict[tuple[int, int], bytes] = {}  # (generation, block) -> packed diff

    async def run(self, chain: Chain, item: InFlightBlock, chains: list[int] | None = None) -> BlockExecution:
        """`chains`: the block's schedule when the caller made it (`auto`)."""
        block: BlockAPI = item.block  # type: ignore[assignment]
        if needs_intermediate_roots(item) or not block.transactions:
            return await SequentialStrategy().run(chain, item)
        cpu_before = self.pool.cpu_seconds
        request, affinity = await self._plan(chain, item, chains)
        invalid: InvalidBlock | None = None
        async with trio.open_nursery() as nursery:
            stream = self.pool.start_speculation(nursery, request, label=item.header.block_number, affinity=affinity)
            run = BlockRun(block_vm(chain, item), block)
            try:
                run.begin()
                conflicts = await validate_in_order(run, stream)
            except InvalidBlock as error:  # the block is rejected: stop speculating on it
                invalid = error
                nursery.cancel_scope.cancel()
        if invalid is not None:
            raise invalid
        execution = run.finish()
        item.senders = [tx.sender for tx in block.transactions]
        counts = item.counts.setdefault("execute", {})
        counts.update(
            strategy=self.name,  # type: ignore[dict-item]
            reexecuted=sum(conflicts.values()),
            conflicts=sum(conflicts.values()),
            worker_cpu=round(self.pool.cpu_seconds - cpu_before, 6),  # type: ignore[dict-item]
            top_conflicts=";".join(f"{label}x{n}" for label, n in conflicts.most_common(3)),  # type: ignore[dict-item]
        )
        self.learn(item, execution)
        return execution

    async def _plan(self, chain: Chain, item: InFlightBlock, chains: list[int] | None) -> tuple[BlockRequest, list[int] | None]:
        """The request, and which worker runs each transaction (None: any)."""
        return self._request(chain, item, [None] * len(item.encoded_txs)), None

    def learn(self, item: InFlightBlock, execution: BlockExecution) -> int:
        """What the executed block teaches (nothing, for plain optimism); returns the
        number of transactions learned from."""
        return 0

    def _request(self, chain: Chain, item: InFlightBlock, chains: list[int | None]) -> BlockRequest:
        """What the workers need: the overlay of uncommitted diffs, the block."""
        head = chain.store.head()
        committed = head.number if head else -1
        diffs = []
        for number, diff in chain.overlay.diffs:
            key = (chain.generation, number)
            if key not in self._packed:
                self._packed[key] = pack_diff(diff)
            diffs.append((number, self._packed[key]))
        self._packed = {key: self._packed[key] for key in self._packed if key[0] == chain.generation and key[1] > committed}
        header = item.header
        senders = item.senders or [None] * len(item.encoded_txs)
        return BlockRequest(
            db_path=chain.store.path,
            db_id=chain.store.database_id,
            generation=chain.generation,
            committed=committed,
            diffs=diffs,
            schedule=chain.schedule.to_dict(),
            header_rlp=rlp.encode(header),
            prev_hashes=chain.ancestor_hashes(header.parent_hash),
            txs=[(i, encoded, senders[i], chains[i]) for i, encoded in enumerate(item.encoded_txs)],
        )


class DeclaredStrategy(OptimisticStrategy):
    """Schedule up front from predicted access sets (`execution.predict`): a chain of
    transactions predicted to depend on each other runs in order on one worker;
    chains run in parallel; in-order validation re-executes what was mispredicted."""

    name = "declared"

    def __init__(self, pool: WorkerPool) -> None:
        super().__init__(pool)
        self.predictor = AccessPredictor()

    async def schedule(self, chain: Chain, item: InFlightBlock) -> list[int]:
        """Recover the senders (in the workers), predict, and chain: the chain id of
        every transaction. `auto` looks at the chains before choosing."""
        block: BlockAPI = item.block  # type: ignore[assignment]
        if len(item.senders) != len(block.transactions):  # not recovered in prefetch
            await self.recover_senders(chain, item)
        senders = item.senders
        await self._learn_unseen(chain, item)
        # A transaction whose signature does not recover is invalid: it runs alone,
        # and validation reports it in block order.
        predictions = [self.predictor.predict(tx, sender) if sender else Prediction() for tx, sender in zip(block.transactions, senders)]
        chains = schedule_chains(predictions)
        sizes = Counter(chains)
        item.counts.setdefault("execute", {}).update(chains=len(sizes), longest_chain=max(sizes.values()))
        return chains

    async def _learn_unseen(self, chain: Chain, item: InFlightBlock) -> None:
        """Calls of contract functions the predictor has not learned: speculate a few
        of each first (one short round trip) and learn from their read and write
        sets, so that this block is already scheduled by what they touch."""
        block: BlockAPI = item.block  # type: ignore[assignment]
        wanted: Counter[tuple] = Counter()
        sample = []
        for index, (tx, sender) in enumerate(zip(block.transactions, item.senders)):
            if sender is None or not tx.data or not self.predictor.wants(tx):
                continue
            key = (tx.to, bytes(tx.data[:4]))
            if wanted[key] < SAMPLES:
                wanted[key] += 1
                sample.append(index)
        if not sample:
            return
        request = self._request(chain, item, [None] * len(item.encoded_txs))
        request.txs = [request.txs[index] for index in sample]
        async with trio.open_nursery() as nursery:
            stream = self.pool.start_speculation(nursery, request, label=item.header.block_number)
            results = [await stream.get(index) for index in sample]
        fee_recipient = item.header.coinbase
        for index, result in zip(sample, results):
            if result.ok:
                self.predictor.learn(block.transactions[index], item.senders[index], result.reads, result.writes, fee_recipient)
        item.counts.setdefault("execute", {})["sampled"] = len(sample)

    async def recover_senders(self, chain: Chain, item: InFlightBlock) -> None:
        """Recover the block's senders in the workers (the prefetch stage calls this
        for the next blocks while this one executes): `item.senders`, None where a
        signature does not recover."""
        block: BlockAPI = item.block  # type: ignore[assignment]
        senders = await self.pool.recover_senders(chain.schedule.to_dict(), rlp.encode(item.header), item.encoded_txs)
        for tx, sender in zip(block.transactions, senders):
            if sender is not None:
                mark_sender(tx, sender)
        item.senders = senders  # type: ignore[assignment]

    async def _plan(self, chain: Chain, item: InFlightBlock, chains: list[int] | None) -> tuple[BlockRequest, list[int] | None]:
        if chains is None:
            chains = await self.schedule(chain, item)
        return self._request(chain, item, chains), assign_workers(chains, self.pool.size)  # type: ignore[arg-type]

    def learn(self, item: InFlightBlock, execution: BlockExecution) -> int:
        """Teach the predictor the layouts of contracts it has not seen enough of."""
        predictor, fee_recipient = self.predictor, item.header.coinbase
        learned = 0
        for tx, result in zip(item.block.transactions, execution.tx_results):  # type: ignore[union-attr]
            if predictor.wants(tx):
                learned += predictor.learn(tx, tx.sender, result.reads, result.writes, fee_recipient)
        item.counts.setdefault("execute", {})["learned"] = learned
        return learned


def assign_workers(chains: list[int], workers: int) -> list[int]:
    """A worker per transaction: whole chains, longest first, to the least loaded."""
    sizes = Counter(chains)
    load = [0] * workers
    worker_of: dict[int, int] = {}
    for chain_id, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        worker = load.index(min(load))
        worker_of[chain_id] = worker
        load[worker] += size
    return [worker_of[chain_id] for chain_id in chains]


async def validate_in_order(run: BlockRun, results: list[SpecResult] | SpeculationStream) -> Counter[str]:
    """Block order: take each speculative result whose reads all still hold, execute
    the transaction again on the exact state otherwise. Returns what conflicted.
    With a `SpeculationStream`, validation starts while later chunks still run."""
    conflicts: Counter[str] = Counter()
    for index, tx in enumerate(run.block.transactions):
        result = results[index] if isinstance(results, list) else await results.get(index)
        if result.sender is not None:
            mark_sender(tx, result.sender)
        stale = _first_stale_read(run.db, result.reads) if result.ok else ("invalid on the pre-block state",)
        if stale is None:
            run.take_result(index, tx, result)
        else:
            conflicts[_conflict_label(stale)] += 1
            run.run_transaction(index, tx)
        if index % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            await trio.lowlevel.checkpoint()
    return conflicts


def _first_stale_read(db: Any, reads: dict[tuple, Any]) -> tuple | None:
    """The first read whose value in the state so far differs from what was seen."""
    for key, value in reads.items():
        if db.current(key) != value:
            return key
    return None


def _conflict_label(key: tuple) -> str:
    if len(key) == 1:
        return key[0]
    label = f"{key[0]}:0x{key[1].hex()[:8]}"
    return label + (f"[{key[2]}]" if key[0] == "slot" else "")


class AutoStrategy:
    """Declared where it pays, optimistic where nothing conflicts, sequential where
    neither can pay (the rules are measured: docs/BENCHMARKS.md): small blocks,
    blocks before Byzantium, blocks of plain transfers with few workers (their
    senders are still recovered by the workers, ahead), blocks whose predicted longest chain is most of the
    block (one hot pool: nothing to run in parallel), and the block after one in
    which most transactions ran twice. After a block predicted independent, the
    next runs optimistically, skipping the senders round trip and the prediction,
    until one re-executes more than a few transactions."""

    name = "auto"
    recovers_senders = True

    def __init__(self, pool: WorkerPool) -> None:
        self.declared = DeclaredStrategy(pool)
        self.optimistic = OptimisticStrategy(pool)
        self.sequential = SequentialStrategy()
        self._last_reexec_share = 0.0
        self._independent = False  # the last block scheduled was predicted independent

    async def recover_senders(self, chain: Chain, item: InFlightBlock) -> None:
        """Senders ahead of execution, for `declared`'s prediction and for a block of
        transfers run sequentially; an optimistic block's workers recover their own
        while they speculate."""
        if not self._independent or self._light(item):
            await self.declared.recover_senders(chain, item)

    def _light(self, item: InFlightBlock) -> bool:
        """Plain transfers (by the header's gas) with too few workers to pay."""
        txs = len(item.block.transactions)  # type: ignore[union-attr]
        return self.declared.pool.size < AUTO_LIGHT_MIN_WORKERS and item.header.gas_used < AUTO_LIGHT_GAS_PER_TX * txs

    async def run(self, chain: Chain, item: InFlightBlock) -> BlockExecution:
        txs = len(item.block.transactions)  # type: ignore[union-attr]
        if txs < AUTO_MIN_TXS or needs_intermediate_roots(item):
            return await self._sequential(chain, item, "small")
        if self._light(item):
            return await self._sequential(chain, item, "light")
        if self._last_reexec_share > AUTO_MAX_REEXEC:
            # Most of the last block ran twice and taught the predictor nothing new:
            # this block sequentially, then try in parallel again.
            self._last_reexec_share = 0.0
            return await self._sequential(chain, item, "conflicts")
        if self._independent:
            return await self._optimistic(chain, item, txs)
        chains = await self.declared.schedule(chain, item)
        sizes = Counter(chains)
        if max(sizes.values()) > AUTO_MAX_CHAIN_SHARE * txs:
            return await self._sequential(chain, item, "serial")
        execution = await self.declared.run(chain, item, chains)
        counts = item.counts.get("execute", {})
        if not counts.get("learned"):
            self._last_reexec_share = counts.get("reexecuted", 0) / txs
        dependent = sum(size for size in sizes.values() if size > 1)
        self._independent = dependent <= AUTO_INDEPENDENT_SHARE * txs and not counts.get("reexecuted")
        counts["strategy"] = "auto:declared"
        return execution

    async def _optimistic(self, chain: Chain, item: InFlightBlock, txs: int) -> BlockExecution:
        execution = await self.optimistic.run(chain, item)
        counts = item.counts.get("execute", {})
        if counts.get("reexecuted", 0) > AUTO_OPTIMISTIC_MAX_REEXEC * txs:
            self._independent = False  # conflicts appeared: predict and schedule again
        self.declared.learn(item, execution)
        counts["strategy"] = "auto:optimistic"
        return execution

    async def _sequential(self, chain: Chain, item: InFlightBlock, reason: str) -> BlockExecution:
        execution = await self.sequential.run(chain, item)
        self.declared.learn(item, execution)
        item.counts.setdefault("execute", {})["strategy"] = f"auto:sequential:{reason}"  # type: ignore[assignment]
        return execution


class VerifiedStrategy:
    """Run `inner`, then the block sequentially, and require identical results."""

    def __init__(self, inner: ExecutionStrategy) -> None:
        self.inner = inner
        self.name = f"{inner.name}+verify"
        self.recovers_senders = getattr(inner, "recovers_senders", False)
        if hasattr(inner, "recover_senders"):
            self.recover_senders = inner.recover_senders

    async def run(self, chain: Chain, item: InFlightBlock) -> BlockExecution:
        execution = await self.inner.run(chain, item)
        reference = execute_block(block_vm(chain, item), item.block)
        difference = first_difference(execution, reference)
        if difference:
            raise FatalError(f"--verify: block {item.number}: {self.inner.name} differs from sequential: {difference}")
        item.counts.setdefault("execute", {})["verified"] = 1
        return execution


def first_difference(a: BlockExecution, b: BlockExecution) -> str | None:
    """The first difference between two executions of one block, in words."""
    if a.gas_used != b.gas_used:
        return f"gas used {a.gas_used} vs {b.gas_used}"
    for index, (ra, rb) in enumerate(zip(a.receipts, b.receipts)):
        if ra.encode() != rb.encode():
            return f"receipt {index} differs"
    if len(a.receipts) != len(b.receipts):
        return f"{len(a.receipts)} vs {len(b.receipts)} receipts"
    da, db = a.diff, b.diff
    for address in sorted(set(da.accounts) | set(db.accounts)):
        if da.accounts.get(address) != db.accounts.get(address):
            return f"account 0x{address.hex()}: {da.accounts.get(address)} vs {db.accounts.get(address)}"
    if da.wiped != db.wiped:
        return f"wiped storage {sorted(x.hex() for x in da.wiped ^ db.wiped)}"
    for address in sorted(set(da.storage) | set(db.storage)):
        sa, sb = da.storage.get(address, {}), db.storage.get(address, {})
        if sa != sb:
            slot = min(set(sa.items()) ^ set(sb.items()))[0]
            return f"storage 0x{address.hex()}[{slot}]: {sa.get(slot)} vs {sb.get(slot)}"
    if set(da.code) != set(db.code):
        return "created code differs"
    return None


def make_strategy(name: str, pool: WorkerPool | None, *, verify: bool = False) -> ExecutionStrategy:
    """The strategy called `name` (the worker pool is needed by all but sequential)."""
    strategy: ExecutionStrategy
    if name == "sequential":
        strategy = SequentialStrategy()
    elif pool is None:
        raise ValueError(f"strategy {name!r} needs a worker pool")
    elif name == "optimistic":
        strategy = OptimisticStrategy(pool)
    elif name == "declared":
        strategy = DeclaredStrategy(pool)
    elif name == "auto":
        strategy = AutoStrategy(pool)
    else:
        raise ValueError(f"unknown strategy {name!r}: {', '.join(STRATEGIES)}")
    return VerifiedStrategy(strategy) if verify else strategy


STRATEGIES = ("sequential", "optimistic", "declared", "auto")
