"""Replay a block file sequentially and record what the analysis needs.

Each block runs through `execution.block.BlockRun`, as `execute_block` runs it, on
the state its parent left (committed state in a datadir plus the diffs of the blocks
run so far, held in memory: nothing is written). On top, each transaction is timed
and its read and write sets are kept; a block whose gas differs from its header's
stops the analysis (`evmpipe replay` is the full validator; `analyze` also replays
the file through it, see `evmpipe.analyze.calibrate`).

Execution uses deferred credits, as speculative execution does, so a fee or value
credit is recorded as a commutative ``("credit", a)`` and not as a read and a write
of the balance: the graph then has exactly the conflicts validation would see.

Timings are the CPU time of this thread (`time.thread_time`), per transaction, per
block's system work before and after the transactions, per block's sender recovery
(timed apart, on fresh copies of the transactions) and per block's prediction
(what `declared` would do).
"""
from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus_stub.blockfile import iter_blocks, read_header
from consensus_stub.convert import blocktest_to_native, detect_format
from execution.block import BlockRun, make_vm
from execution.decode import decode_block_and_transactions
from execution.predict import SAMPLES, AccessPredictor, Prediction, schedule_chains
from execution.senders import recover_sender
from pipeline.chain import ChainState
from pipeline.datadir import open_datadir
from pipeline.errors import BadInput, InvalidBlock
from state.account import Account
from state.diff import StateDiff
from state.store import StateStore

#: BLOCKHASH reaches this many ancestors.
MAX_ANCESTORS = 256


@dataclass
class TxRecord:
    index: int
    sender: bytes
    to: bytes | None
    selector: bytes
    gas: int
    success: bool
    seconds: float
    reads: dict[tuple, Any]
    writes: dict[tuple, Any]
    logs: list[tuple[bytes, int | None]]  # (contract, first topic) of each log


@dataclass
class BlockRecord:
    number: int
    hash: bytes
    coinbase: bytes
    gas: int
    txs: list[TxRecord]
    system_writes: dict[tuple, Any]
    begin_seconds: float = 0.0  # system work before the first transaction
    finish_seconds: float = 0.0  # withdrawals, rewards, requests
    recover_seconds: float = 0.0  # sender recovery of the block's transactions, timed apart
    predict_seconds: float = 0.0  # declared's prediction and chaining of the whole block
    validate_seconds: float = 0.0  # what in-order validation would cost the master for the block's results
    pack_seconds: float = 0.0  # what packing the block's results would cost the workers
    chains: list[int] = field(default_factory=list)  # declared's chain per transaction
    sampled: list[int] = field(default_factory=list)  # declared's first speculated, to learn from
    decode_seconds: float = 0.0  # decoding the block (the pipeline's prefetch does it too)
    learned: int = 0  # transactions the predictor learned from after the block (`auto` reads it)


class AnalyzeError(Exception):
    """Input the analysis cannot use, or a block that failed; the message says which."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PendingState:
    """The committed state of a store with one diff on top: every block run so far,
    merged (reads cost the same for the tenth block as for the first)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.diff = StateDiff()

    def get_account(self, address: bytes) -> Account | None:
        if address in self.diff.accounts:
            return self.diff.accounts[address]
        return self.store.get_account(address)

    def get_storage(self, address: bytes, slot: int) -> int:
        slots = self.diff.storage.get(address)
        if slots is not None and slot in slots:
            return slots[slot]
        if address in self.diff.wiped:
            return 0
        return self.store.get_storage(address, slot)

    def get_code(self, code_hash: bytes) -> bytes | None:
        if code_hash in self.diff.code:
            return self.diff.code[code_hash]
        return self.store.get_code(code_hash)

    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool:
        zeroed = set(ignoring)
        for slot, value in self.diff.storage.get(address, {}).items():
            if slot in zeroed:
                continue
            if value:
                return True
            zeroed.add(slot)
        if address in self.diff.wiped:
            return False
        return self.store.has_storage(address, zeroed)  # type: ignore[arg-type]


class Recorder:
    """Runs blocks one after another on a `PendingState` and records each."""

    def __init__(self, store: StateStore, schedule: Any, ancestors: list[bytes]) -> None:
        self.state = PendingState(store)
        self.schedule = schedule
        self.ancestors = ancestors  # newest first, the parent of the next block first
        self.predictor = AccessPredictor()

    def run_block(self, rlp_bytes: bytes, where: str) -> BlockRecord:
        clock = time.thread_time
        started = clock()
        try:
            block, vm_class, encoded = decode_block_and_transactions(self.schedule, rlp_bytes)
        except InvalidBlock as error:
            raise AnalyzeError(f"evmpipe analyze: {where}: {error.describe()}", 1) from error
        decode = clock() - started
        header = block.header
        if self.ancestors and header.parent_hash != self.ancestors[0]:
            raise AnalyzeError(f"evmpipe analyze: {where}: block {header.block_number}'s parent 0x{header.parent_hash.hex()[:16]}… is not the block before it", 1)
        if not _post_byzantium(vm_class):
            raise AnalyzeError(f"evmpipe analyze: {where}: block {header.block_number} is before Byzantium (receipts with intermediate state roots); every strategy runs those sequentially, so there is nothing to analyze", 2)
        recover = _time_recovery(block, encoded)
        vm = make_vm(vm_class, header, self.state, self.ancestors, self.schedule.chain_id)
        run = BlockRun(vm, block)
        run.db.deferred_credits = True
        try:
            started = clock()
            run.begin()
            begin = clock() - started
            seconds = []
            validate = pack = 0.0
            for index, tx in enumerate(block.transactions):
                started = clock()
                run.run_transaction(index, tx)
                seconds.append(clock() - started)
                packing, validating = _time_validation(run)
                pack += packing
                validate += validating
            started = clock()
            execution = run.finish()
            finish = clock() - started
        except InvalidBlock as error:
            raise AnalyzeError(f"evmpipe analyze: {where}: invalid block: {error.describe()}", 1) from error
        if execution.gas_used != header.gas_used:
            raise AnalyzeError(f"evmpipe analyze: {where}: block {header.block_number} used {execution.gas_used} gas, its header says {header.gas_used}", 1)
        txs = []
        for tx, result, receipt, took in zip(block.transactions, execution.tx_results, execution.receipts, seconds):
            logs = [(log.address, log.topics[0] if log.topics else None) for log in receipt.logs]
            data = bytes(tx.data)
            txs.append(TxRecord(result.index, tx.sender, tx.to or None, data[:4] if tx.to else b"", result.gas_used, result.success, took, result.reads, result.writes, logs))
        system = dict(execution.system_writes[0]) if execution.system_writes else {}
        record = BlockRecord(header.block_number, header.hash, header.coinbase, execution.gas_used, txs, system, begin, finish, recover)
        record.validate_seconds = validate
        record.pack_seconds = pack
        record.decode_seconds = decode
        self._predict(block, record)
        self.state.diff.merge(execution.diff)
        self.ancestors.insert(0, header.hash)
        del self.ancestors[MAX_ANCESTORS:]
        return record

    def _predict(self, block: Any, record: BlockRecord) -> None:
        """What `declared` would schedule: learn from the first calls of functions not
        learned yet (`DeclaredStrategy` speculates them first and learns), predict and
        chain every transaction, then learn from the whole block."""
        predictor, coinbase = self.predictor, record.coinbase
        wanted: dict[tuple, int] = {}
        for index, tx in enumerate(block.transactions):
            if tx.data and predictor.wants(tx):
                key = (tx.to, bytes(tx.data[:4]))
                if wanted.get(key, 0) < SAMPLES:
                    wanted[key] = wanted.get(key, 0) + 1
                    record.sampled.append(index)
        for index in record.sampled:
            rec = record.txs[index]
            predictor.learn(block.transactions[index], rec.sender, rec.reads, rec.writes, coinbase)
        started = time.thread_time()
        predictions = [predictor.predict(tx, rec.sender) if rec.sender else Prediction() for tx, rec in zip(block.transactions, record.txs)]
        record.chains = schedule_chains(predictions)
        record.predict_seconds = time.thread_time() - started
        for tx, rec in zip(block.transactions, record.txs):
            if predictor.wants(tx):
                record.learned += predictor.learn(tx, rec.sender, rec.reads, rec.writes, coinbase)


def _time_validation(run: BlockRun) -> tuple[float, float]:
    """What the transaction just run would cost as a speculative result: a worker
    packing it, and the master (`validate_in_order`) unpacking it, comparing each
    read with the state and applying its writes. Applying them again is harmless
    (the same values), except credits, which would add twice and are left out of
    the copy applied."""
    from execution.speculate import SpecResult, pack_results, unpack_results

    result = run.results[-1]
    started = time.thread_time()
    packed = pack_results([SpecResult(result.index, True, result.reads, result.writes, {}, result.gas_used, result.success)])
    packing = time.thread_time() - started
    db = run.db
    started = time.thread_time()
    taken = unpack_results(packed)[0]
    for key, value in taken.reads.items():
        if db.current(key) != value:
            pass  # the transaction's own writes may differ from what it read: only the cost counts
    db.apply_writes({k: v for k, v in taken.writes.items() if k[0] != "credit"}, {})
    return packing, time.thread_time() - started


def _post_byzantium(vm_class: Any) -> bool:
    from eth.vm.forks import ByzantiumVM

    return issubclass(vm_class, ByzantiumVM)


def _time_recovery(block: Any, encoded: list[bytes]) -> float:
    """Sender recovery of the block's transactions (marks each sender), timed."""
    started = time.thread_time()
    for tx, data in zip(block.transactions, encoded):
        try:
            recover_sender(tx, data)
        except Exception:  # a bad signature: `run_transaction` reports it, in block order
            pass
    return time.thread_time() - started


def native_file(path: str, stack: ExitStack, test_name: str | None = None) -> str:
    """`path` as a native block file: converted into a temporary file when it is a
    BlockchainTest JSON (plain or gzip)."""
    if not Path(path).is_file():
        raise AnalyzeError(f"evmpipe analyze: {path}: no such file")
    try:
        kind = detect_format(path)
    except BadInput as error:
        raise AnalyzeError(f"evmpipe analyze: {error}") from error
    if kind == "native":
        return path
    if kind != "blocktest":
        raise AnalyzeError(f"evmpipe analyze: {path}: a geth export; convert it to a block file first (`evmpipe convert {path} --genesis GENESIS -o FILE`)")
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="evmpipe-analyze-"))
    native = str(Path(tmp) / "blocks.native")
    try:
        blocktest_to_native(path, native, test_name)
    except (BadInput, ValueError, KeyError) as error:
        message = str(error)
        raise AnalyzeError(f"evmpipe analyze: {message}" if message.startswith(path) else f"evmpipe analyze: {path}: {message}") from error
    return native


def record_file(native: str, *, state: str | None = None, limit: int | None = None, label: str | None = None) -> list[BlockRecord]:
    """Run the blocks of the native block file `native` sequentially, on the state in
    the datadir `state` (its blocks up to its head are skipped; nothing is written to
    it) or, by default, on the file's genesis in a temporary datadir; record each.

    Raises `AnalyzeError`: unreadable input (exit code 2), an invalid block (1).
    `label`: the file as the user named it (`native` may be a converted copy)."""
    where = native if label is None or label == native else f"{label} (converted)"
    try:
        header = read_header(native)
    except (BadInput, OSError) as error:
        raise AnalyzeError(f"evmpipe analyze: {error}") from error
    with ExitStack() as stack:
        datadir = state or stack.enter_context(tempfile.TemporaryDirectory(prefix="evmpipe-analyze-db-"))
        try:
            store = open_datadir(datadir, header.schedule, header.genesis_header_rlp, header.alloc, synchronous="OFF")
        except BadInput as error:
            raise AnalyzeError(f"evmpipe analyze: {error}") from error
        stack.callback(store.close)
        head = store.head()
        recorder = Recorder(store, header.schedule, ChainState(store, header.schedule, head, None).ancestor_hashes(head.hash) if head else [])
        out: list[BlockRecord] = []
        try:
            for record in iter_blocks(native, start_after=head.number if head else None):
                if limit is not None and len(out) >= limit:
                    break
                offset = f" (byte offset {record.offset})" if where == native else ""
                out.append(recorder.run_block(record.rlp, f"{where}: block {record.number}{offset}"))
        except BadInput as error:
            raise AnalyzeError(f"evmpipe analyze: {error}") from error
        if not out:
            why = f" after the head of {state}" if state else (" (a BlockchainTest's invalid blocks are not converted, only its chain of valid ones)" if where != native else "")
            raise AnalyzeError(f"evmpipe analyze: {label or native}: no block to analyze{why}")
        return out
