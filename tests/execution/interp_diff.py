"""Differential harness: one message through py-evm's loop and through the lean loop.

Both run in evmpipe's own setup (`make_vm` over a `RecordingAccountDB` and a dict
state), from identical fresh states, and `Outcome` holds everything the two must
agree on: status, error type, gas used and left, refund, output, logs, and every
state write.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from eth.vm.forks import BerlinVM
from eth.vm.message import Message
from eth_hash.auto import keccak

from execution.account_db import DictState
from execution.block import make_vm
from execution.forks import FORKS, with_interpreter
from state.account import Account

CONTRACT = bytes.fromhex("c0de") * 10
CALLER = bytes.fromhex("ca11e4") + bytes(17)
OTHER = bytes.fromhex("0be4") * 10  # a second contract the program may call


def world(codes: dict[bytes, bytes], storage: dict[bytes, dict[int, int]] | None = None, balances: dict[bytes, int] | None = None) -> DictState:
    accounts = {CALLER: Account(nonce=1, balance=10**20)}
    for address, code in codes.items():
        accounts[address] = Account(nonce=1, balance=(balances or {}).get(address, 10**6), code_hash=keccak(code))
    return DictState(accounts, {a: dict(s) for a, s in (storage or {}).items()}, {keccak(c): c for c in codes.values()})


@dataclass(frozen=True)
class Outcome:
    success: bool
    error: str | None
    gas_used: int
    gas_remaining: int
    refund: int
    output: bytes
    logs: tuple
    writes: tuple

    def __str__(self) -> str:
        return f"{'ok' if self.success else self.error} used={self.gas_used} left={self.gas_remaining} refund={self.refund} out={self.output[:40].hex()} logs={len(self.logs)} writes={len(self.writes)}"


@functools.lru_cache(maxsize=None)
def _header(vm_class: Any) -> Any:
    params: dict[str, Any] = {"gas_limit": 30_000_000, "difficulty": 0 if _merged(vm_class) else 1, "timestamp": 1_700_000_000, "coinbase": bytes(20)}
    return vm_class.create_genesis_header(**params)


def _merged(vm_class: Any) -> bool:
    from execution.forks import is_merged

    return is_merged(vm_class)


def run_message(
    fork: str,
    interpreter: str,
    state: DictState,
    *,
    to: bytes = CONTRACT,
    gas: int,
    data: bytes = b"",
    value: int = 0,
    static: bool = False,
    sender: bytes = CALLER,
    origin: bytes = CALLER,
) -> Outcome:
    """Run one message call to `to` with `gas`, in a fresh state over `state`."""
    vm_class = with_interpreter(FORKS[fork], interpreter)
    vm = make_vm(vm_class, _header(vm_class), state, [], 1)
    vm_state = vm.state
    db = vm_state._account_db
    db.begin_transaction()
    if issubclass(vm_class, BerlinVM):  # as a transaction would: sender and target warm
        vm_state.mark_address_warm(sender)
        vm_state.mark_address_warm(to)
    code = vm_state.get_code(to)
    message = Message(gas=gas, to=to, sender=sender, value=value, data=data, code=code, is_static=static, depth=0)
    context = vm_state.get_transaction_context_class()(gas_price=1, origin=origin)
    computation = vm_state.computation_class.apply_message(vm_state, message, context)
    writes = db.end_transaction()
    error = None if computation.is_success else type(computation.error).__name__
    return Outcome(
        computation.is_success,
        error,
        computation.get_gas_used(),
        computation.get_gas_remaining(),
        computation.get_gas_refund(),
        computation.output,
        tuple(computation.get_log_entries()),
        tuple(sorted(writes.items(), key=repr)),
    )


def compare(fork: str, state_factory: Any, **kwargs: Any) -> tuple[Outcome, Outcome]:
    """(stock, lean) for the same message; each gets its own fresh state."""
    stock = run_message(fork, "pyevm", state_factory(), **kwargs)
    lean = run_message(fork, "lean", state_factory(), **kwargs)
    return stock, lean
