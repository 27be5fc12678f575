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

import time
from collections import Counter
from typing import Any, Callable, Protocol

import rlp
import trio
from eth.abc import BlockAPI, BlockHeaderAPI
from eth.vm.forks import ByzantiumVM

from execution.block import BlockExecution, BlockRun, execute_block, make_vm
from execution.decode import mark_sender, mark_senders
from execution.forks import VMClass
from execution.predict import SAMPLES, AccessPredictor, Prediction, schedule_chains
from execution.report import ExecutionReport
from execution.speculate import SpecResult
from execution.workers import BlockRequest, SpeculationStream, WorkerFailure, WorkerPool
from pipeline.block import Prefetched
from pipeline.chain import ChainState, PackedOverlay
from pipeline.errors import FatalError, InvalidBlock
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
#: validation runs on a thread in batches of at most this many transactions.
VALIDATE_BATCH = 64

Senders = list[bytes | None]


class ExecutionStrategy(Protocol):
    """How a block's transactions run. `run` returns the sequential result and a
    report; it reads the chain and the prefetched block and writes neither."""

    name: str
    #: the workers recover senders while they speculate: prefetch need not
    recovers_senders: bool

    async def run(self, chain: ChainState, pre: Prefetched) -> tuple[BlockExecution, ExecutionReport]: ...

    async def recover_senders(self, chain: ChainState, header: BlockHeaderAPI, encoded_txs: list[bytes]) -> Senders | None:
        """Senders recovered elsewhere (the workers), ahead of execution; None: not
        this strategy's job (prefetch recovers them itself, or the workers will)."""
        ...


def needs_intermediate_roots(vm_class: VMClass) -> bool:
    """Before Byzantium (EIP-658) each receipt holds the state root after its transaction."""
    return not issubclass(vm_class, ByzantiumVM)


def block_vm(chain: ChainState, pre: Prefetched) -> Any:
    header = pre.header
    return make_vm(
        pre.vm_class,
        header,
        chain.overlay,
        pre.prev_hashes,
        chain.chain_id,
        root_hook=_intermediate_root(chain, pre) if needs_intermediate_roots(pre.vm_class) else None,
    )


def _intermediate_root(chain: ChainState, pre: Prefetched) -> Callable[[StateDiff], bytes]:
    parent_root = pre.parent.state_root
    number = pre.header.block_number
    overlay = chain.overlay

    def root(pending: StateDiff) -> bytes:
        return merkleize(pending, parent_root, lambda address: overlay.get_account_below(number, address), overlay.get_trie_node).root

    return root


async def execute_sequentially(chain: ChainState, pre: Prefetched) -> BlockExecution:
    """The block on a thread: its reads may miss the cache and go to SQLite, which
    must not block the event loop."""
    vm = block_vm(chain, pre)
    return await trio.to_thread.run_sync(_execute_timed, vm, pre.block)


def _execute_timed(vm: Any, block: BlockAPI) -> BlockExecution:
    """`execute_block`, with this thread's CPU time spent on it (`evmpipe bench`'s
    per-transaction figure): the thread clock leaves out the other stages' threads."""
    started = time.thread_time()
    execution = execute_block(vm, block)
    execution.cpu_seconds = time.thread_time() - started
    return execution


class SequentialStrategy:
    """One transaction after another, as the Yellow Paper defines the block."""

    name = "sequential"
    recovers_senders = False

    async def run(self, chain: ChainState, pre: Prefetched) -> tuple[BlockExecution, ExecutionReport]:
        return await execute_sequentially(chain, pre), ExecutionReport(self.name)

    async def recover_senders(self, chain: ChainState, header: BlockHeaderAPI, encoded_txs: list[bytes]) -> Senders | None:
        return None


class OptimisticStrategy:
    """Speculate in parallel, validate in order, re-execute what a conflict touched.

    A worker that fails (dies, or misses its deadline: `WorkerFailure`) costs the
    block its parallelism, not the node: the pool replaces the worker and the block
    runs again sequentially, from scratch."""

    name = "optimistic"
    recovers_senders = True  # the workers recover senders while they speculate

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._packed = PackedOverlay()

    async def recover_senders(self, chain: ChainState, header: BlockHeaderAPI, encoded_txs: list[bytes]) -> Senders | None:
        return None

    async def run(self, chain: ChainState, pre: Prefetched, chains: list[int] | None = None) -> tuple[BlockExecution, ExecutionReport]:
        """`chains`: the block's schedule when the caller made it (`auto`)."""
        if needs_intermediate_roots(pre.vm_class) or not pre.block.transactions:
            return await execute_sequentially(chain, pre), ExecutionReport("sequential")
        try:
            return await self._run_parallel(chain, pre, chains)
        except* WorkerFailure as group:
            failure = group.exceptions[0]
        return await execute_sequentially(chain, pre), ExecutionReport(self.name, fallback=f"sequential: {failure}")

    async def _run_parallel(self, chain: ChainState, pre: Prefetched, chains: list[int] | None) -> tuple[BlockExecution, ExecutionReport]:
        cpu_before = self.pool.cpu_seconds
        request, affinity, report = await self._plan(chain, pre, chains)
        invalid: InvalidBlock | None = None
        run = BlockRun(block_vm(chain, pre), pre.block)
        async with trio.open_nursery() as nursery:
            stream = self.pool.start_speculation(nursery, request, label=pre.header.block_number, affinity=affinity)
            try:
                await trio.to_thread.run_sync(run.begin)
                conflicts = await validate_in_order(run, stream)
            except InvalidBlock as error:  # the block is rejected: stop speculating on it
                invalid = error
                nursery.cancel_scope.cancel()
        if invalid is not None:
            raise invalid
        execution = await trio.to_thread.run_sync(run.finish)
        report = report.but(
            speculated=True,
            reexecuted=sum(conflicts.values()),
            worker_cpu=self.pool.cpu_seconds - cpu_before,
            top_conflicts=tuple(conflicts.most_common(3)),
        )
        return execution, report.but(learned=self.learn(pre, execution))

    async def _plan(self, chain: ChainState, pre: Prefetched, chains: list[int] | None) -> tuple[BlockRequest, list[int] | None, ExecutionReport]:
        """The request, which worker runs each transaction (None: any), and the
        report so far."""
        return self._request(chain, pre, [None] * len(pre.encoded_txs)), None, ExecutionReport(self.name)

    def learn(self, pre: Prefetched, execution: BlockExecution) -> int:
        """What the executed block teaches (nothing, for plain optimism); returns the
        number of transactions learned from."""
        return 0

    def _request(self, chain: ChainState, pre: Prefetched, chains: list[int | None], senders: Senders | None = None) -> BlockRequest:
        """What the workers need: the overlay of uncommitted diffs, the block."""
        diffs = self._packed.diffs(chain)
        known = senders or pre.senders or [None] * len(pre.encoded_txs)
        return BlockRequest(
            db_path=chain.store.path,
            db_id=chain.store.database_id,
            generation=chain.generation,
            committed=chain.head_number,
            diffs=diffs,
            schedule=chain.schedule.to_dict(),
            header_rlp=rlp.encode(pre.header),
            prev_hashes=pre.prev_hashes,
            txs=[(i, encoded, known[i], chains[i]) for i, encoded in enumerate(pre.encoded_txs)],
        )


class DeclaredStrategy(OptimisticStrategy):
    """Schedule up front from predicted access sets (`execution.predict`): a chain of
    transactions predicted to depend on each other runs in order on one worker;
    chains run in parallel; in-order validation re-executes what was mispredicted."""

    name = "declared"
    recovers_senders = True

    def __init__(self, pool: WorkerPool) -> None:
        super().__init__(pool)
        self.predictor = AccessPredictor()

    async def recover_senders(self, chain: ChainState, header: BlockHeaderAPI, encoded_txs: list[bytes]) -> Senders | None:
        """The block's senders, recovered in the workers (prefetch asks for the next
        blocks while this one executes); None where a signature does not recover.
        After a failed worker (replaced by now) the senders are recovered later,
        when the block is scheduled."""
        try:
            return await self.pool.recover_senders(chain.schedule.to_dict(), rlp.encode(header), encoded_txs)
        except* WorkerFailure:
            pass
        return None

    async def schedule(self, chain: ChainState, pre: Prefetched) -> tuple[list[int], Senders, ExecutionReport]:
        """Predict and chain: the chain id of every transaction, the senders the
        prediction used, and the report so far. `auto` looks at the chains first."""
        block = pre.block
        senders = pre.senders
        if len(senders) != len(block.transactions):  # not recovered ahead
            senders = await self.pool.recover_senders(chain.schedule.to_dict(), rlp.encode(pre.header), pre.encoded_txs)
            mark_senders(block.transactions, senders)
        sampled = await self._learn_unseen(chain, pre, senders)
        # A transaction whose signature does not recover is invalid: it runs alone,
        # and validation reports it in block order.
        predictions = [self.predictor.predict(tx, sender) if sender else Prediction() for tx, sender in zip(block.transactions, senders)]
        chains = schedule_chains(predictions)
        sizes = Counter(chains)
        report = ExecutionReport(
            self.name,
            chains=len(sizes),
            longest_chain=max(sizes.values()),
            predicted_dependent=sum(size for size in sizes.values() if size > 1),
            sampled=sampled,
        )
        return chains, senders, report

    async def _learn_unseen(self, chain: ChainState, pre: Prefetched, senders: Senders) -> int:
        """Calls of contract functions the predictor has not learned: speculate a few
        of each first (one short round trip) and learn from their read and write
        sets, so that this block is already scheduled by what they touch. Returns
        how many were sampled."""
        block = pre.block
        wanted: Counter[tuple[bytes, bytes]] = Counter()
        sample = []
        for index, (tx, sender) in enumerate(zip(block.transactions, senders)):
            if sender is None or not tx.data or not self.predictor.wants(tx):
                continue
            key = (tx.to, bytes(tx.data[:4]))
            if wanted[key] < SAMPLES:
                wanted[key] += 1
                sample.append(index)
        if not sample:
            return 0
        request = self._request(chain, pre, [None] * len(pre.encoded_txs), senders)
        request.txs = [request.txs[index] for index in sample]
        async with trio.open_nursery() as nursery:
            stream = self.pool.start_speculation(nursery, request, label=pre.header.block_number)
            results = [await stream.get(index) for index in sample]
        fee_recipient = pre.header.coinbase
        for index, result in zip(sample, results):
            sender = senders[index]
            if result.ok and sender is not None:
                self.predictor.learn(block.transactions[index], sender, result.reads, result.writes, fee_recipient)
        return len(sample)

    async def _plan(self, chain: ChainState, pre: Prefetched, chains: list[int] | None) -> tuple[BlockRequest, list[int] | None, ExecutionReport]:
        senders: Senders | None = None
        report = ExecutionReport(self.name)
        if chains is None:
            chains, senders, report = await self.schedule(chain, pre)
        return self._request(chain, pre, list(chains), senders), assign_workers(chains, self.pool.size), report

    def learn(self, pre: Prefetched, execution: BlockExecution) -> int:
        """Teach the predictor the layouts of contracts it has not seen enough of."""
        predictor, fee_recipient = self.predictor, pre.header.coinbase
        learned = 0
        for tx, result in zip(pre.block.transactions, execution.tx_results):
            if predictor.wants(tx):
                learned += predictor.learn(tx, tx.sender, result.reads, result.writes, fee_recipient)
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
    With a `SpeculationStream`, validation starts while later chunks still run.
    The state reads of validation and re-execution may go to SQLite: each batch of
    results that has arrived is validated on a thread, off the event loop."""
    conflicts: Counter[str] = Counter()
    count = len(run.block.transactions)
    index = 0
    while index < count:
        batch = []
        while index < count and len(batch) < VALIDATE_BATCH:
            if isinstance(results, list):
                batch.append(results[index])
            elif results.ready(index) or not batch:
                batch.append(await results.get(index))
            else:
                break
            index += 1
        start = index - len(batch)
        await trio.to_thread.run_sync(_validate_batch, run, start, batch, conflicts)
    return conflicts


def _validate_batch(run: BlockRun, start: int, batch: list[SpecResult], conflicts: Counter[str]) -> None:
    transactions = run.block.transactions
    for offset, result in enumerate(batch):
        index = start + offset
        tx = transactions[index]
        if result.sender is not None:
            mark_sender(tx, result.sender)
        stale = _first_stale_read(run.db, result.reads) if result.ok else ("invalid on the pre-block state",)
        if stale is None:
            run.take_result(index, tx, result)
        else:
            conflicts[_conflict_label(stale)] += 1
            run.run_transaction(index, tx)


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


class AutoPolicy:
    """`auto`'s choices, apart from running blocks: what to do with the next block,
    from its size, its header's gas, the worker count and the reports of the blocks
    run before (`evmpipe analyze` plays the same decisions over recorded blocks)."""

    def __init__(self) -> None:
        self.last_reexec_share = 0.0
        self.independent = False  # the last block scheduled was predicted independent

    @staticmethod
    def light(workers: int, gas_used: int, txs: int) -> bool:
        """Plain transfers (by the header's gas) with too few workers to pay."""
        return workers < AUTO_LIGHT_MIN_WORKERS and gas_used < AUTO_LIGHT_GAS_PER_TX * txs

    def senders_ahead(self, workers: int, gas_used: int, txs: int) -> bool:
        """Whether prefetch has the workers recover the block's senders ahead."""
        return not self.independent or self.light(workers, gas_used, txs)

    def choose(self, workers: int, gas_used: int, txs: int, pre_byzantium: bool) -> str:
        """`sequential:small`, `sequential:light`, `sequential:conflicts`,
        `optimistic`, or `declared` (schedule the block, then ask `serial`)."""
        if txs < AUTO_MIN_TXS or pre_byzantium:
            return "sequential:small"
        if self.light(workers, gas_used, txs):
            return "sequential:light"
        if self.last_reexec_share > AUTO_MAX_REEXEC:
            # Most of the last block ran twice and taught the predictor nothing new:
            # this block sequentially, then try in parallel again.
            self.last_reexec_share = 0.0
            return "sequential:conflicts"
        return "optimistic" if self.independent else "declared"

    @staticmethod
    def serial(longest_chain: int, txs: int) -> bool:
        """A scheduled block whose predicted longest chain is most of it: sequential."""
        return longest_chain > AUTO_MAX_CHAIN_SHARE * txs

    def declared_ran(self, txs: int, reexecuted: int, learned: int, predicted_dependent: int) -> None:
        if not learned:
            self.last_reexec_share = reexecuted / txs
        self.independent = predicted_dependent <= AUTO_INDEPENDENT_SHARE * txs and not reexecuted

    def optimistic_ran(self, txs: int, reexecuted: int) -> None:
        if reexecuted > AUTO_OPTIMISTIC_MAX_REEXEC * txs:
            self.independent = False  # conflicts appeared: predict and schedule again


class AutoStrategy:
    """Declared where it pays, optimistic where nothing conflicts, sequential where
    neither can pay (the rules are measured: docs/BENCHMARKS.md): small blocks,
    blocks before Byzantium, blocks of plain transfers with few workers (their
    senders are still recovered by the workers, ahead), blocks whose predicted
    longest chain is most of the block (one hot pool: nothing to run in parallel),
    and the block after one in which most transactions ran twice. After a block
    predicted independent, the next runs optimistically, skipping the senders round
    trip and the prediction, until one re-executes more than a few transactions.
    It decides from the reports of the blocks it ran, nothing else (`AutoPolicy`)."""

    name = "auto"
    recovers_senders = True

    def __init__(self, pool: WorkerPool) -> None:
        self.declared = DeclaredStrategy(pool)
        self.optimistic = OptimisticStrategy(pool)
        self.policy = AutoPolicy()

    @property
    def _independent(self) -> bool:
        return self.policy.independent

    @_independent.setter
    def _independent(self, value: bool) -> None:
        self.policy.independent = value

    async def recover_senders(self, chain: ChainState, header: BlockHeaderAPI, encoded_txs: list[bytes]) -> Senders | None:
        """Senders ahead of execution, for `declared`'s prediction and for a block of
        transfers run sequentially; an optimistic block's workers recover their own
        while they speculate."""
        if self.policy.senders_ahead(self.declared.pool.size, header.gas_used, len(encoded_txs)):
            return await self.declared.recover_senders(chain, header, encoded_txs)
        return None

    def _light(self, header: BlockHeaderAPI, txs: int) -> bool:
        """Plain transfers (by the header's gas) with too few workers to pay."""
        return self.policy.light(self.declared.pool.size, header.gas_used, txs)

    async def run(self, chain: ChainState, pre: Prefetched) -> tuple[BlockExecution, ExecutionReport]:
        try:
            return await self._choose_and_run(chain, pre)
        except* WorkerFailure as group:
            failure = group.exceptions[0]
        execution, report = await self._sequential(chain, pre, "worker")
        return execution, report.but(fallback=f"sequential: {failure}")

    async def _choose_and_run(self, chain: ChainState, pre: Prefetched) -> tuple[BlockExecution, ExecutionReport]:
        txs = len(pre.block.transactions)
        choice = self.policy.choose(self.declared.pool.size, pre.header.gas_used, txs, needs_intermediate_roots(pre.vm_class))
        if choice.startswith("sequential:"):
            return await self._sequential(chain, pre, choice.removeprefix("sequential:"))
        if choice == "optimistic":
            return await self._optimistic(chain, pre, txs)
        chains, _, scheduled = await self.declared.schedule(chain, pre)
        if self.policy.serial(scheduled.longest_chain, txs):
            return await self._sequential(chain, pre, "serial")
        execution, report = await self.declared.run(chain, pre, chains)
        report = report.but(
            strategy="auto:declared",
            chains=scheduled.chains,
            longest_chain=scheduled.longest_chain,
            predicted_dependent=scheduled.predicted_dependent,
            sampled=scheduled.sampled,
        )
        self.policy.declared_ran(txs, report.reexecuted, report.learned, report.predicted_dependent)
        return execution, report

    async def _optimistic(self, chain: ChainState, pre: Prefetched, txs: int) -> tuple[BlockExecution, ExecutionReport]:
        execution, report = await self.optimistic.run(chain, pre)
        self.policy.optimistic_ran(txs, report.reexecuted)
        return execution, report.but(strategy="auto:optimistic", learned=self.declared.learn(pre, execution))

    async def _sequential(self, chain: ChainState, pre: Prefetched, reason: str) -> tuple[BlockExecution, ExecutionReport]:
        execution = await execute_sequentially(chain, pre)
        return execution, ExecutionReport(f"auto:sequential:{reason}", learned=self.declared.learn(pre, execution))


class VerifiedStrategy:
    """Run `inner`, then the block sequentially, and require identical results."""

    def __init__(self, inner: ExecutionStrategy) -> None:
        self.inner = inner
        self.name = f"{inner.name}+verify"
        self.recovers_senders = inner.recovers_senders

    async def recover_senders(self, chain: ChainState, header: BlockHeaderAPI, encoded_txs: list[bytes]) -> Senders | None:
        return await self.inner.recover_senders(chain, header, encoded_txs)

    async def run(self, chain: ChainState, pre: Prefetched) -> tuple[BlockExecution, ExecutionReport]:
        execution, report = await self.inner.run(chain, pre)
        reference = await execute_sequentially(chain, pre)
        difference = first_difference(execution, reference)
        if difference:
            raise FatalError(f"--verify: block {pre.header.block_number}: {self.inner.name} differs from sequential: {difference}")
        return execution, report.but(verified=True)


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
