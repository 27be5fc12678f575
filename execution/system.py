"""System calls: the protocol calling a contract as `SYSTEM_ADDRESS`, outside any transaction.

From Prague, EELS's `apply_body` calls the [EIP-2935] history contract with the parent
hash before the first transaction (unchecked: no code, no effect), and after the
withdrawals calls the [EIP-7002] and [EIP-7251] request contracts (checked: missing
code or a failed call makes the block invalid). py-evm 0.12.1b1 writes the history
slot directly and only when the deployed code is the one it knows; evmpipe runs the
code that is there, as EELS does, through the block's own state, so the writes are
recorded like any other and go into the block's diff.

[EIP-2935]: https://eips.ethereum.org/EIPS/eip-2935
[EIP-7002]: https://eips.ethereum.org/EIPS/eip-7002
[EIP-7251]: https://eips.ethereum.org/EIPS/eip-7251
"""
from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI, ComputationAPI

from pipeline.errors import BlockError, InvalidBlock

SYSTEM_ADDRESS = bytes.fromhex("fffffffffffffffffffffffffffffffffffffffe")
SYSTEM_TRANSACTION_GAS = 30_000_000
HISTORY_STORAGE_ADDRESS = bytes.fromhex("0000f90827f1c53a10cb7a02335b175320002935")



def system_call(vm: Any, header: BlockHeaderAPI, target: bytes, data: bytes) -> ComputationAPI:
    """Run `target`'s code with `data` as the system (EELS `process_system_transaction`):
    30M gas, no value, no nonce or balance change. A failed call leaves no trace in
    the state (EELS rolls its frame back)."""
    state = vm.state
    code = state.get_code(target)
    snapshot = state.snapshot()
    computation = vm.execute_bytecode(
        origin=SYSTEM_ADDRESS,
        gas_price=header.base_fee_per_gas,
        gas=SYSTEM_TRANSACTION_GAS,
        to=target,
        sender=SYSTEM_ADDRESS,
        value=0,
        data=data,
        code=code,
        code_address=target,
    )
    if computation.is_error:
        state.revert(snapshot)
    else:
        state.commit(snapshot)
    return computation


def checked_system_call(vm: Any, header: BlockHeaderAPI, target: bytes, data: bytes) -> bytes:
    """A system call whose contract must exist and succeed; returns its output.

    Raises `InvalidBlock` (`SYSTEM_CONTRACT_EMPTY`, `SYSTEM_CONTRACT_CALL_FAILED`)."""
    if not vm.state.get_code(target):
        raise InvalidBlock(BlockError.SYSTEM_CONTRACT_EMPTY, f"system contract 0x{target.hex()} has no code", number=header.block_number, block_hash=header.hash)
    computation = system_call(vm, header, target, data)
    if computation.is_error:
        raise InvalidBlock(BlockError.SYSTEM_CONTRACT_CALL_FAILED, f"system contract 0x{target.hex()} failed: {computation.error!r}", number=header.block_number, block_hash=header.hash)
    return computation.output


def process_history_hash(vm: Any, header: BlockHeaderAPI) -> None:
    """[EIP-2935] store the parent hash in the history contract (an unchecked call)."""
    system_call(vm, header, HISTORY_STORAGE_ADDRESS, header.parent_hash)
