"""Execute one block's transactions over our state with py-evm as the interpreter.

This is EELS's `apply_body` for evmpipe: system changes before the transactions
([EIP-4788] beacon root, the DAO drain), each transaction checked against state and
run, then withdrawals ([EIP-4895]) and, before the merge, block and ommer rewards.
The result is data: receipts, gas, and the block's `StateDiff` with per-transaction
read and write sets, for the stages that follow.

[EIP-4788]: https://eips.ethereum.org/EIPS/eip-4788
[EIP-4895]: https://eips.ethereum.org/EIPS/eip-4895
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Callable, Iterable

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI
from eth.chains.mainnet.constants import DAO_FORK_MAINNET_EXTRA_DATA  # noqa: F401  (documentation of the rule)
from eth.vm.chain_context import ChainContext
from eth.vm.forks.homestead.headers import dao_drain_list, dao_refund_contract
from eth_utils import ValidationError

import execution.precompiles  # noqa: F401  (installs the MODEXP fix)
from execution.account_db import RecordingAccountDB, StateReader
from execution.checks import GAS_PER_BLOB, MAX_BLOB_GAS_PER_BLOCK, check_transaction_state
from execution.forks import VMClass
from pipeline.errors import InvalidTransaction
from state.diff import StateDiff


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


def execute_block(vm: Any, block: BlockAPI) -> BlockExecution:
    """Run `block` on `vm`'s state; raise `InvalidTransaction` for an invalid one."""
    state = vm.state
    db: RecordingAccountDB = state._account_db
    header = block.header
    system_writes = []

    db.begin_transaction()
    _apply_dao_fork(vm, header)
    vm.block_preprocessing(block)
    system_writes.append(db.end_transaction())

    receipts: list[ReceiptAPI] = []
    results: list[TxResult] = []
    gas_used = 0
    blob_gas_used = 0
    bloom = 0
    for index, tx in enumerate(block.transactions):
        db.begin_transaction()
        check_transaction_state(state, header, tx, index, header.gas_limit - gas_used, MAX_BLOB_GAS_PER_BLOCK - blob_gas_used)
        try:
            computation = state.apply_transaction(tx)
        except ValidationError as exc:
            raise InvalidTransaction("TransactionException.INVALID_TRANSACTION", f"py-evm: {exc}", number=header.block_number, block_hash=header.hash, tx_index=index) from exc
        receipt = vm.make_receipt(SimpleNamespace(gas_used=gas_used), tx, computation, state)
        tx_gas = receipt.gas_used - gas_used
        gas_used = receipt.gas_used
        if getattr(tx, "type_id", None) == 3:
            blob_gas_used += GAS_PER_BLOB * len(tx.blob_versioned_hashes)
        bloom |= int(receipt.bloom)
        reads = db.reads
        writes = db.end_transaction()
        receipts.append(receipt)
        results.append(TxResult(index, tx_gas, not computation.is_error, reads, writes))

    db.begin_transaction()
    withdrawals = getattr(block, "withdrawals", None)
    if withdrawals:
        vm.apply_all_withdrawals(withdrawals)
    if block.number > 0:
        vm._assign_block_rewards(block)
    system_writes.append(db.end_transaction())
    return BlockExecution(receipts, results, gas_used, blob_gas_used, bloom, db.block_diff(), system_writes)


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
