"""`eth_call` and `eth_estimateGas`: py-evm runs a message against a read-only snapshot.

The state is the committed head's (flat state keeps no history), read through
`ReadView` (a read transaction of its own: see evmpipe/rpc_view.py), wrapped in the
same `RecordingAccountDB` the pipeline executes with. Its writes stay in that
account database's dicts and are dropped with it: nothing reaches SQLite or the
pipeline. As geth does, the call runs in the context of the head block with a base
fee of zero and no gas price unless one is given, and the sender's nonce is taken
from the state (no signature, no nonce check).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth.vm.spoof import SpoofTransaction

from execution.block import make_vm
from execution.decode import decode_header
from execution.forks import ForkSchedule
from evmpipe.rpc_view import ReadView

DEFAULT_CALL_GAS = 50_000_000  # when the call names no gas: geth's RPCGasCap
TX_GAS = 21_000


class CallFailed(Exception):
    """The message could not run (not a revert): bad sender balance, gas below intrinsic."""


@dataclass(frozen=True)
class CallResult:
    success: bool
    output: bytes
    error: str | None  # py-evm's error, when not successful
    reverted: bool  # a REVERT (its output is the revert data)


@dataclass(frozen=True)
class Message:
    sender: bytes
    to: bytes | None
    gas: int | None
    gas_price: int
    value: int
    data: bytes


def run_call(view: ReadView, schedule: ForkSchedule, message: Message, gas: int) -> CallResult:
    """Execute `message` with `gas` on the head's state; nothing is written anywhere."""
    head = view.head
    assert head is not None
    raw = view.header_rlp(head.number)
    if raw is None:
        raise CallFailed(f"the head block {head.number} has no stored header")
    header, vm_class = decode_header(schedule, raw)
    changes: dict[str, Any] = {"gas_limit": max(header.gas_limit, gas)}
    if getattr(header, "base_fee_per_gas", None) is not None:
        changes["base_fee_per_gas"] = 0
    if getattr(header, "excess_blob_gas", None) is not None:
        changes["excess_blob_gas"] = 0
    header = header.copy(**changes)
    vm = make_vm(vm_class, header, view, view.recent_hashes(head.number), schedule.chain_id)
    state = vm.state
    db = state._account_db
    db.begin_transaction()
    nonce = state.get_nonce(message.sender)
    unsigned = vm.create_unsigned_transaction(
        nonce=nonce, gas_price=message.gas_price, gas=gas, to=message.to or b"", value=message.value, data=message.data,
    )
    try:
        computation = state.apply_transaction(SpoofTransaction(unsigned, from_=message.sender))
    except Exception as exc:  # py-evm's ValidationError and friends: the message never ran
        raise CallFailed(f"{type(exc).__name__}: {exc}") from None
    if computation.is_success:
        return CallResult(True, bytes(computation.output), None, False)
    error = computation.error
    reverted = type(error).__name__ == "Revert"
    return CallResult(False, bytes(computation.output), f"{type(error).__name__}: {error}" if not reverted else "execution reverted", reverted)


def estimate_gas(view: ReadView, schedule: ForkSchedule, message: Message) -> int:
    """The least gas with which `message` succeeds: a binary search over whole runs,
    as geth does (refunds and the 63/64 rule make the gas used a poor guess)."""
    high = message.gas or _cap(view, schedule)
    result = run_call(view, schedule, message, high)
    if not result.success:
        raise Reverted(result) if result.reverted else CallFailed(result.error or "execution failed")
    low = TX_GAS - 1
    while low + 1 < high:
        middle = (low + high) // 2
        try:
            ok = run_call(view, schedule, message, middle).success
        except CallFailed:
            ok = False  # below the intrinsic gas
        if ok:
            high = middle
        else:
            low = middle
    return high


def _cap(view: ReadView, schedule: ForkSchedule) -> int:
    head = view.head
    assert head is not None
    raw = view.header_rlp(head.number)
    header, _ = decode_header(schedule, raw or b"")
    return max(header.gas_limit, TX_GAS)


class Reverted(Exception):
    """The message reverts even with all the gas it may have: nothing to estimate."""

    def __init__(self, result: CallResult) -> None:
        super().__init__("execution reverted")
        self.result = result
