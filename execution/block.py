"""Execute one block's transactions over our state with py-evm as the interpreter.

This is EELS's `apply_body` for evmpipe: system changes before the transactions
([EIP-4788] beacon root, [EIP-2935] parent hash, the DAO drain), each transaction
checked against state and run, then withdrawals ([EIP-4895]), before the merge block
and ommer rewards, and from Prague the requests ([EIP-7685]). The result is data:
receipts, gas, requests hash, and the block's `StateDiff` with per-transaction read
and write sets, for the stages that follow.

All system work happens in `BlockRun.begin` and `BlockRun.finish`, which every
strategy calls in the master, in block order: the system writes are never
speculative, and a transaction that read a slot they changed is re-executed.

[EIP-2935]: https://eips.ethereum.org/EIPS/eip-2935
[EIP-4788]: https://eips.ethereum.org/EIPS/eip-4788
[EIP-4895]: https://eips.ethereum.org/EIPS/eip-4895
[EIP-7685]: https://eips.ethereum.org/EIPS/eip-7685
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Callable, Iterable

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth.vm.forks.byzantium.constants import EIP658_TRANSACTION_STATUS_CODE_FAILURE, EIP658_TRANSACTION_STATUS_CODE_SUCCESS
from eth.rlp.logs import Log
from eth.vm.chain_context import ChainContext
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks import CancunVM, PragueVM
from eth.vm.forks.homestead.headers import dao_drain_list, dao_refund_contract
from eth_utils import ValidationError

import execution.precompiles  # noqa: F401  (installs the MODEXP fix)
import execution.receipt_gas  # noqa: F401  (installs the EIP-7623 receipt gas fix)
from execution.account_db import RecordingAccountDB, StateReader
from execution.blobs import blob_gas, blob_params
from execution.checks import check_transaction_state
from execution.forks import VMClass
from execution.speculate import SpecResult
from execution.requests import compute_requests_hash, process_requests
from execution.system import process_history_hash
from pipeline.errors import InvalidTransaction, TxError
from state.diff import StateDiff
from state.trie import rlp_int, rlp_list, rlp_str


@dataclass
class TxResult:
    """One transaction's outcome, and what it read and wrote (for validation)."""

    index: int
    gas_used: int
    success: bool
    reads: dict[tuple, Any]
    writes: dict[tuple, Any]


@dataclass
class BlockExecution:
    receipts: list[ReceiptAPI]
    tx_results: list[TxResult]
    gas_used: int
    blob_gas_used: int
    bloom: int
    diff: StateDiff
    system_writes: list[dict[tuple, Any]] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)  # EIP-7685, type byte first
    requests_hash: bytes | None = None  # None before Prague
    # CPU seconds of the thread that ran the transactions (`execute_sequentially`):
    # the execution's own cost, whatever the pipeline's other threads did meanwhile
    cpu_seconds: float | None = field(default=None, compare=False)


@lru_cache(maxsize=None)
def _state_class(vm_class: VMClass) -> type:
    """py-evm's state class for the fork, over our account database."""
    base = vm_class.get_state_class()
    # py-evm's Cancun state writes the beacon-roots contract into any state that lacks
    # it; the spec only runs it when deployed, so evmpipe leaves the state alone.
    return type(
        f"Evmpipe{base.__name__}",
        (base,),
        {"account_db_class": RecordingAccountDB, "set_system_contracts": lambda self: None, "delta_balance": _delta_balance},
    )


def _delta_balance(state: Any, address: bytes, delta: int) -> None:
    """Balance changes go through `credit`, which can defer a credit (fee recipient,
    value transfer recipient) in speculative execution."""
    state._account_db.credit(address, delta)


def make_vm(vm_class: VMClass, header: BlockHeaderAPI, reader: StateReader, prev_hashes: Iterable[bytes], chain_id: int, root_hook: Callable[[StateDiff], bytes] | None = None) -> Any:
    """A py-evm VM for `header` whose state reads `reader` through our account DB."""
    vm = vm_class(header=header, chaindb=None, chain_context=ChainContext(chain_id), consensus_context=None)
    context = vm_class.create_execution_context(header, tuple(prev_hashes), ChainContext(chain_id))
    vm._state = _state_class(vm_class)(reader, context, header.state_root)
    vm._state._account_db.root_hook = root_hook
    return vm


class BlockRun:
    """One block's execution in progress: the running totals of EELS's `BlockOutput`.

    `execute_block` drives it one transaction after another; the optimistic strategy
    drives the same object, taking a speculative result instead of running a
    transaction whenever that result's reads still hold."""

    def __init__(self, vm: Any, block: BlockAPI) -> None:
        self.vm = vm
        self.block = block
        self.header = block.header
        self.state = vm.state
        self.db: RecordingAccountDB = vm.state._account_db
        self.receipts: list[ReceiptAPI] = []
        self.results: list[TxResult] = []
        self.gas_used = 0
        self.blob_gas_used = 0
        self.bloom = 0
        self.system_writes: list[dict[tuple, Any]] = []
        self.prague = isinstance(vm, PragueVM)
        blobs = blob_params(type(vm))
        self.max_blob_gas = blobs.max if blobs is not None else 0

    def begin(self) -> None:
        """System changes before the first transaction: DAO drain, EIP-4788 beacon root,
        EIP-2935 parent hash (a system call, as in EELS)."""
        self.db.begin_transaction()
        _apply_dao_fork(self.vm, self.header)
        if self.prague:
            # py-evm's Prague preprocessing writes the history slot only for the code it
            # knows; EELS calls whatever code is deployed there
            CancunVM.block_preprocessing(self.vm, self.block)
            process_history_hash(self.vm, self.header)
        else:
            self.vm.block_preprocessing(self.block)
        self.system_writes.append(self.db.end_transaction())

    def check_allowance(self, index: int, tx: SignedTransactionAPI) -> None:
        """Gas and blob gas the block has left: in block order, never speculative."""
        header = self.header
        if tx.gas > header.gas_limit - self.gas_used:
            raise InvalidTransaction(TxError.GAS_ALLOWANCE_EXCEEDED, f"gas {tx.gas} > gas left in block {header.gas_limit - self.gas_used}", number=header.block_number, block_hash=header.hash, tx_index=index)
        if blob_gas(tx) > self.max_blob_gas - self.blob_gas_used:
            raise InvalidTransaction(TxError.TYPE_3_TX_MAX_BLOB_GAS_ALLOWANCE_EXCEEDED, "blob gas above what the block has left", number=header.block_number, block_hash=header.hash, tx_index=index)

    def run_transaction(self, index: int, tx: SignedTransactionAPI) -> None:
        """Check `tx` against the current state and execute it."""
        header = self.header
        try:
            tx.sender  # recovered already, or now (when a worker could not)
        except Exception as exc:  # eth-keys raises several types for bad signatures
            raise InvalidTransaction(TxError.INVALID_SIGNATURE, f"sender recovery failed: {exc}", number=header.block_number, block_hash=header.hash, tx_index=index) from exc
        self.db.begin_transaction()
        self.check_allowance(index, tx)
        check_transaction_state(self.state, header, tx, index)
        try:
            computation = self.state.apply_transaction(tx)
        except ValidationError as exc:
            raise InvalidTransaction(TxError.INVALID_TRANSACTION, f"py-evm: {exc}", number=header.block_number, block_hash=header.hash, tx_index=index) from exc
        receipt = self.vm.make_receipt(SimpleNamespace(gas_used=self.gas_used), tx, computation, self.state)
        reads = self.db.reads
        writes = self.db.end_transaction()
        self._account(index, tx, receipt, not computation.is_error, reads, writes)

    def take_result(self, index: int, tx: SignedTransactionAPI, result: SpecResult) -> None:
        """Apply a speculative result whose reads were checked to hold now."""
        self.check_allowance(index, tx)
        self.db.apply_writes(result.writes, result.new_code)
        status = EIP658_TRANSACTION_STATUS_CODE_SUCCESS if result.success else EIP658_TRANSACTION_STATUS_CODE_FAILURE
        type_id = tx.type_id if isinstance(tx, TypedTransaction) else None
        receipt = SpeculatedReceipt(type_id, status, self.gas_used + result.gas_used, result.bloom, result.logs, result.logs_rlp)
        self._account(index, tx, receipt, result.success, result.reads, result.writes)

    def _account(self, index: int, tx: SignedTransactionAPI, receipt: ReceiptAPI, success: bool, reads: dict, writes: dict) -> None:
        tx_gas = receipt.gas_used - self.gas_used
        self.gas_used = receipt.gas_used
        self.blob_gas_used += blob_gas(tx)
        self.bloom |= int(receipt.bloom)
        self.receipts.append(receipt)
        self.results.append(TxResult(index, tx_gas, success, reads, writes))

    def finish(self) -> BlockExecution:
        """Withdrawals ([EIP-4895]), before the merge block and ommer rewards, and from
        Prague the requests ([EIP-7685]: deposits from the receipts, then the withdrawal
        and consolidation system calls). Raises `InvalidBlock` when a request contract
        is missing or fails, or a deposit log is malformed."""
        self.db.begin_transaction()
        withdrawals = getattr(self.block, "withdrawals", None)
        if withdrawals:
            self.vm.apply_all_withdrawals(withdrawals)
        if self.block.number > 0:
            self.vm._assign_block_rewards(self.block)
        requests: list[bytes] = []
        requests_hash = None
        if self.prague:
            requests = process_requests(self.vm, self.header, self.receipts)
            requests_hash = compute_requests_hash(requests)
        self.system_writes.append(self.db.end_transaction())
        return BlockExecution(
            self.receipts, self.results, self.gas_used, self.blob_gas_used, self.bloom, self.db.block_diff(), self.system_writes,
            requests=requests, requests_hash=requests_hash,
        )


class SpeculatedReceipt:
    """The receipt of a transaction taken from a speculative result, with what py-evm's
    receipt offers (`state_root` (the status), `gas_used`, `bloom`, `logs`,
    `encode`), built from the worker's bloom and pre-encoded logs: py-evm's rlp
    objects cost about 70 µs per receipt here, in the one serial process."""

    __slots__ = ("type_id", "state_root", "gas_used", "bloom", "_logs", "_logs_rlp", "_encoded")

    def __init__(self, type_id: int | None, status: bytes, gas_used: int, bloom: int, logs: list, logs_rlp: bytes) -> None:
        self.type_id, self.state_root, self.gas_used, self.bloom = type_id, status, gas_used, bloom
        self._logs, self._logs_rlp = logs, logs_rlp
        self._encoded: bytes | None = None

    @property
    def logs(self) -> list[Log]:
        return [Log(address, topics, data) for address, topics, data in self._logs]

    def encode(self) -> bytes:
        if self._encoded is None:
            encoded = rlp_list(rlp_str(self.state_root) + rlp_int(self.gas_used) + rlp_str(self.bloom.to_bytes(256, "big")) + self._logs_rlp)
            self._encoded = encoded if self.type_id is None else bytes([self.type_id]) + encoded
        return self._encoded


def execute_block(vm: Any, block: BlockAPI) -> BlockExecution:
    """Run `block` on `vm`'s state, one transaction after another; raise
    `InvalidTransaction` for an invalid one."""
    run = BlockRun(vm, block)
    run.begin()
    for index, tx in enumerate(block.transactions):
        run.run_transaction(index, tx)
    return run.finish()


def _apply_dao_fork(vm: Any, header: BlockHeaderAPI) -> None:
    """The DAO fork moves the drained accounts' ether to the refund contract."""
    if not getattr(vm, "support_dao_fork", False):
        return
    if header.block_number != vm.get_dao_fork_block_number():
        return
    state = vm.state
    for hex_account in dao_drain_list:
        address = bytes.fromhex(hex_account[2:])
        balance = state.get_balance(address)
        state.delta_balance(dao_refund_contract, balance)
        state.set_balance(address, 0)
