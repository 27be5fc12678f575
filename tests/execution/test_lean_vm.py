"""The lean VM's per-transaction steps (`execution/lean_vm.py`) against py-evm's.

Whole generated blocks run through `execute_block` with each loop must give the same
receipts (byte for byte), gas, bloom and state writes; the light receipt's bloom and
log encoding must equal py-evm's on random logs; each step is taken over only where
the fork has the py-evm function it replaces."""
from __future__ import annotations

import functools
import hashlib
import inspect
from types import SimpleNamespace
from typing import Any

import pytest
import rlp
import eth_bloom.bloom as eth_bloom
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks import BerlinVM, CancunVM, FrontierVM, PragueVM
from eth.vm.forks.berlin.receipts import TypedReceipt
from eth.vm.forks.berlin.transactions import AccessListTransaction, TypedTransaction
from eth.vm.forks.byzantium import ByzantiumVM
from eth.vm.forks.cancun.state import CancunTransactionExecutor
from eth.vm.forks.cancun.transactions import BlobTransaction
from eth.vm.forks.frontier.transactions import FrontierTransaction
from eth.vm.forks.london.transactions import DynamicFeeTransaction
from eth.vm.forks.prague.transactions import SetCodeTransaction
from eth.vm.state import BaseState
from eth.vm.message import Message
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.block import SpeculatedReceipt, execute_block, make_vm
from execution.forks import FORKS, schedule_for_network, with_interpreter
from execution.lean_vm import LeanCancunExecutor, LeanVM, lean_vm, log_bloom, logs_rlp
from state.account import Account
from tests.execution.interp_diff import DictState


# sha256 (16 hex digits) of the source of each py-evm function the lean VM copies or
# relies on: an upgrade that changes one fails here; review execution/lean_vm.py
# against the new source, then update the digest.
SOURCES = {
    "CancunTransactionExecutor.build_evm_message": (CancunTransactionExecutor.build_evm_message, "7fe1d84297715987"),
    "ByzantiumVM.make_receipt": (ByzantiumVM.make_receipt, "6679dc5e2dd10336"),
    "TypedTransaction.make_receipt": (TypedTransaction.make_receipt, "aaead8c3e6303db1"),
    "FrontierTransaction.make_receipt": (FrontierTransaction.make_receipt, "69162367d87b1390"),
    "AccessListTransaction.make_receipt": (AccessListTransaction.make_receipt, "11f80424481a3669"),
    "DynamicFeeTransaction.make_receipt": (DynamicFeeTransaction.make_receipt, "11f80424481a3669"),
    "BlobTransaction.make_receipt": (BlobTransaction.make_receipt, "11f80424481a3669"),
    "SetCodeTransaction.make_receipt": (SetCodeTransaction.make_receipt, "11f80424481a3669"),
    "BaseState.logger": (BaseState.logger.fget, "c850e872e4e93528"),
    "Receipt.__init__": (Receipt.__init__, "f752da6886208f1f"),
    "TypedReceipt.encode": (TypedReceipt.encode, "eac6dae4a383d6ab"),
    "Log.bloomables": (Log.bloomables.fget, "ae5e53870cab5236"),
    "get_bloom_bits": (eth_bloom.get_bloom_bits, "47ea31c465c3ff24"),
    "chunk_to_bloom_bits": (eth_bloom.chunk_to_bloom_bits, "9ca00c6550c2e045"),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_copied_pyevm_source_unchanged(name: str) -> None:
    fn, digest = SOURCES[name]
    actual = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
    assert actual == digest, f"py-evm's {name} changed: review execution/lean_vm.py against it, then update the digest"


class FixtureState(DictState):
    """A generated fixture's pre-state as evmpipe's `StateReader`."""

    def __init__(self, pre: dict[str, Any]) -> None:
        super().__init__({}, {}, {})
        for address, fields in pre.items():
            raw, code = bytes.fromhex(address[2:]), bytes.fromhex(fields.get("code", "0x")[2:])
            self.accounts[raw] = Account(nonce=int(fields["nonce"], 16), balance=int(fields["balance"], 16), code_hash=keccak(code))
            self.code[keccak(code)] = code
            self.storage[raw] = {int(k, 16): int(v, 16) for k, v in fields.get("storage", {}).items()}


@functools.lru_cache(maxsize=None)
def _fixture(kind: str) -> dict[str, Any]:
    from evmpipe.gen.builder import generate
    from evmpipe.gen.workloads import GenParams

    extra = {"stale": 0.5} if kind == "mixed" else {}  # swaps at a stale price revert
    return generate(GenParams(kind, blocks=1, txs=24, seed=5, **extra)).fixture


def _run_block(fixture: dict[str, Any], loop: str) -> Any:
    schedule = schedule_for_network(fixture["network"])
    entry = fixture["blocks"][0]
    header = entry["blockHeader"]
    vm_class = with_interpreter(FORKS[schedule.fork_at(int(header["number"], 16), int(header["timestamp"], 16))], loop)
    block = rlp.decode(bytes.fromhex(entry["rlp"][2:]), sedes=vm_class.get_block_class())
    prev = [bytes.fromhex(fixture["genesisBlockHeader"]["hash"][2:])]
    vm = make_vm(vm_class, block.header, FixtureState(fixture["pre"]), prev, schedule.chain_id)
    return vm_class, execute_block(vm, block)


@pytest.mark.parametrize("kind", ["mixed", "prague"])
def test_blocks_match_pyevm(kind: str) -> None:
    """Transfers, ERC-20 calls, swaps (some reverting), and for Prague every
    transaction type: receipts byte for byte, gas, bloom and writes."""
    fixture = _fixture(kind)
    stock_vm, stock = _run_block(fixture, "pyevm")
    lean_vm_class, lean = _run_block(fixture, "lean")
    assert issubclass(lean_vm_class, LeanVM) and not issubclass(stock_vm, LeanVM)
    assert all(type(r) is SpeculatedReceipt for r in lean.receipts), "the lean VM builds the light receipt"
    assert [r.encode() for r in lean.receipts] == [r.encode() for r in stock.receipts]
    assert [(r.state_root, r.gas_used, int(r.bloom), [tuple(log) for log in r.logs]) for r in lean.receipts] == [
        (r.state_root, r.gas_used, int(r.bloom), [tuple(log) for log in r.logs]) for r in stock.receipts
    ]
    assert lean.gas_used == stock.gas_used and lean.bloom == stock.bloom
    assert [(t.gas_used, t.success, t.writes) for t in lean.tx_results] == [(t.gas_used, t.success, t.writes) for t in stock.tx_results]
    assert lean.diff == stock.diff
    assert any(r.logs for r in stock.receipts), "the block must have logs to compare"
    if kind == "mixed":
        assert any(not t.success for t in stock.tx_results), "and a failed transaction"


_entries = st.lists(
    st.tuples(
        st.binary(min_size=20, max_size=20),
        st.lists(st.one_of(st.sampled_from([0, 1, 0x7F, 0x80, 2**255, 2**256 - 1]), st.integers(0, 2**256 - 1)), max_size=4),
        st.one_of(st.binary(max_size=70), st.sampled_from([b"", b"\x00", b"\x7f", b"\x80", bytes(55), bytes(56), bytes(300)])),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(_entries)
def test_bloom_and_logs_rlp_match_pyevm(entries: list[tuple[bytes, list[int], bytes]]) -> None:
    logs = [Log(address, topics, data) for address, topics, data in entries]
    receipt = Receipt(state_root=b"\x01", gas_used=21_000, logs=logs)
    assert log_bloom(entries) == receipt.bloom
    assert logs_rlp(entries) == rlp.encode(logs)
    light = SpeculatedReceipt(None, b"\x01", 21_000, log_bloom(entries), [(a, list(t), d) for a, t, d in entries], logs_rlp(entries))
    assert light.encode() == receipt.encode()


def test_steps_taken_only_over_pyevm_functions() -> None:
    lean_cancun = with_interpreter(CancunVM, "lean")
    assert issubclass(lean_cancun, LeanVM)
    assert issubclass(lean_cancun.get_state_class().transaction_executor_class, LeanCancunExecutor)
    assert issubclass(with_interpreter(PragueVM, "lean").get_state_class().transaction_executor_class, LeanCancunExecutor)
    # Berlin's message building is not Cancun's; Frontier's receipts carry state roots
    assert not issubclass(with_interpreter(BerlinVM, "lean").get_state_class().transaction_executor_class, LeanCancunExecutor)
    assert not issubclass(with_interpreter(FrontierVM, "lean"), LeanVM)
    # a fork that overrides either step keeps its own
    state = CancunVM.get_state_class()
    own_executor = type("OwnExecutor", (CancunTransactionExecutor,), {"build_evm_message": lambda self, tx: None})
    own_state = state.configure(__name__="OwnState", transaction_executor_class=own_executor)
    own_vm = CancunVM.configure(__name__="OwnVM", _state_class=own_state, make_receipt=classmethod(lambda cls, *a: None))
    lean = lean_vm(own_vm, own_state, state.computation_class)
    assert not issubclass(lean, LeanVM)
    assert not issubclass(lean.get_state_class().transaction_executor_class, LeanCancunExecutor)


def test_lean_logger_is_pyevm_logger() -> None:
    state = with_interpreter(CancunVM, "lean").get_state_class()
    from eth_utils import get_extended_debug_logger

    assert state.logger is get_extended_debug_logger(f"eth.vm.state.{state.__name__}")


def test_unknown_transaction_type_gets_pyevm_receipt() -> None:
    lean = with_interpreter(CancunVM, "lean")
    sentinel = object()

    class OddTransaction:
        gas = 21_000

        def make_receipt(self, status: bytes, gas_used: int, entries: Any) -> Any:
            return sentinel

    computation = SimpleNamespace(is_error=False, get_log_entries=lambda: (), get_gas_remaining=lambda: 0, get_gas_refund=lambda: 0, data_floor_gas=0)
    assert lean.make_receipt(SimpleNamespace(gas_used=0), OddTransaction(), computation, None) is sentinel


def test_debug_logging_builds_pyevm_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """With debug logging on, py-evm's own `build_evm_message` runs (and logs)."""
    fixture = _fixture("mixed")
    called = []
    original = CancunTransactionExecutor.build_evm_message

    def spy(self: Any, tx: Any) -> Message:
        called.append(tx)
        return original(self, tx)

    monkeypatch.setattr(CancunTransactionExecutor, "build_evm_message", spy)
    state_class = with_interpreter(CancunVM, "lean").get_state_class()
    monkeypatch.setattr(type(state_class.logger), "show_debug2", property(lambda self: True), raising=False)
    _run_block(fixture, "lean")
    assert called, "py-evm's message building ran"
