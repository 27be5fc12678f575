"""What the lean loop relies on in py-evm, asserted so that an upgrade fails loudly.

The loop (`execution/interpreter.py`) reads and writes py-evm's private state: the
stack's value list, the gas meter, the memory's bytearray, the code stream's program
counter, the log entries and the output. It also re-implements the py-evm functions
it inlines. If py-evm renames any of these, or changes one of those functions, these
tests fail: review the loop against the new source, then update the digests.
"""
from __future__ import annotations

import hashlib
import inspect

import pytest
from eth.vm import opcode_values
from eth.vm.code_stream import CodeStream
from eth.vm.computation import BaseComputation, memory_gas_cost
from eth.vm.forks.berlin.logic import _mark_storage_warm, sload_eip2929, sstore_eip2929_generic
from eth.vm.forks.byzantium.opcodes import ensure_no_static
from eth.vm.forks.istanbul.storage import sstore_eip2200_generic
from eth.vm.gas_meter import GasMeter
from eth.vm.logic import arithmetic, context, flow, logging, memory, sha3, storage, system
from eth.vm.memory import Memory
from eth.vm.opcode import _FastOpcode, as_opcode
from eth.vm.stack import Stack

from execution.forks import FORKS, with_interpreter
from execution.interpreter import FALLBACK, ForkTable, LeanComputation, lean_computation
from tests.execution.interp_diff import CONTRACT, run_message, world

# sha256 (16 hex digits) of the source of each py-evm function the loop replaces or copies.
SOURCES = {
    "BaseComputation.apply_computation": (BaseComputation.apply_computation, "d2f86d6b1ebc8070"),
    "BaseComputation.extend_memory": (BaseComputation.extend_memory, "cf57f8caf075a7c4"),
    "memory_gas_cost": (memory_gas_cost, "6ed6c8904ab6ae70"),
    "GasMeter.consume_gas": (GasMeter.consume_gas, "6d9c5cdbcbdb6cbf"),
    "Stack.push_int": (Stack.push_int, "5fb2d7277a8f393d"),
    "Stack.dup": (Stack.dup, "f7a9211dcf721b31"),
    "Stack.swap": (Stack.swap, "fe66dcf6d6fb20aa"),
    "Stack.pop_any": (Stack.pop_any, "46165cf0a63aa170"),
    "Memory.extend": (Memory.extend, "638f8332883345a0"),
    "CodeStream.__iter__": (CodeStream.__iter__, "0dc9459291151dbb"),
    "CodeStream.is_valid_opcode": (CodeStream.is_valid_opcode, "694e92b9e15115d0"),
    "_FastOpcode.__call__": (_FastOpcode.__call__, "67d28fc6f625f1f0"),
    "net_sstore": (storage.net_sstore, "aa04da2f87f9c48d"),
    "sload": (storage.sload, "e48dbe7e1451dfe2"),
    "sstore_eip2200_generic": (sstore_eip2200_generic.func, "115a98edddc7b6f8"),
    "sstore_eip2929_generic": (sstore_eip2929_generic.func, "3864a88aedb03edc"),
    "sload_eip2929": (sload_eip2929, "31a974814288689c"),
    "_mark_storage_warm": (_mark_storage_warm, "9fb8a5a6ef1401b7"),
    "log_XX": (logging.log_XX, "a9f8713bb2c0bf89"),
    "sha3": (sha3.sha3, "1a3a06e684873bdb"),
    "jump": (flow.jump, "e485eaf21a89997c"),
    "jumpi": (flow.jumpi, "9d327be693b81546"),
    "mstore": (memory.mstore, "48141b996f20ebe0"),
    "mload": (memory.mload, "aac2f52fcf9eca42"),
    "mstore8": (memory.mstore8, "5c1edaa256e77fd1"),
    "calldataload": (context.calldataload, "509ad49949102189"),
    "codecopy": (context.codecopy, "b553d5edc6a992ea"),
    "return_op": (system.return_op, "43c837bd52913a8b"),
    "revert": (system.revert, "6e4ee95ff1be3118"),
    "ensure_no_static": (ensure_no_static, "396e2f262a4f792c"),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_replaced_pyevm_source_unchanged(name: str) -> None:
    fn, digest = SOURCES[name]
    actual = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
    assert actual == digest, f"py-evm's {name} changed: review execution/interpreter.py against it, then update the digest"


def test_private_attributes() -> None:
    """The private state the loop reads and writes, on a live computation."""
    seen = {}

    class Probe(lean_computation(FORKS["Cancun"].get_state_class().computation_class)):  # type: ignore[misc]
        def __exit__(self, *exc):  # noqa: ANN001, ANN204
            seen["computation"] = self
            return super().__exit__(*exc)

    computation = Probe.__new__(Probe)
    assert isinstance(computation, LeanComputation)
    code = bytes.fromhex("6001600255" "6020600060aa60bb60cc60dd600060008152a4" "60206000f3")  # SSTORE, MSTORE, LOG4, RETURN
    state = world({CONTRACT: code})
    from eth.vm.message import Message

    from execution.block import make_vm
    from tests.execution.interp_diff import CALLER, _header

    vm_class = with_interpreter(FORKS["Cancun"], "lean")
    vm = make_vm(vm_class, _header(vm_class), state, [], 1)
    context_ = vm.state.get_transaction_context_class()(gas_price=1, origin=CALLER)
    message = Message(gas=100_000, to=CONTRACT, sender=CALLER, value=0, data=b"", code=code)
    computation = BaseComputation.apply_computation.__func__(Probe, vm.state, message, context_)  # py-evm's own loop
    assert computation.is_success
    assert type(computation._stack) is Stack and type(computation._stack.values) is list
    assert computation._stack._append.__self__ is computation._stack.values  # bound to the list the loop mutates
    assert type(computation._gas_meter) is GasMeter and isinstance(computation._gas_meter.gas_remaining, int)
    assert type(computation._memory) is Memory and type(computation._memory._bytes) is bytearray
    assert type(computation.code) is CodeStream and computation.code.program_counter > 0
    assert computation.code._raw_code_bytes is message.code
    assert type(computation._log_entries) is list and len(computation._log_entries[0]) == 4
    assert computation._output == computation.output and len(computation._output) == 32
    assert computation.transaction_context.get_next_log_counter() == 1
    assert isinstance(message.data_as_bytes, bytes) and message.storage_address == CONTRACT
    assert isinstance(computation.return_data, bytes)
    for name in ("consume_initcode_gas_cost", "precompiles", "is_origin_computation", "contracts_created"):
        assert hasattr(computation, name) or name == "contracts_created"


def test_fork_tables() -> None:
    """What each fork inlines follows its opcode table."""
    def table(fork: str) -> ForkTable:
        return with_interpreter(FORKS[fork], "lean").get_state_class().computation_class.lean_table

    cancun, frontier = table("Cancun"), table("Frontier")
    hot = {0x01, 0x1B, 0x1C, 0x20, 0x35, 0x39, 0x51, 0x52, 0x54, 0x55, 0x56, 0x57, 0x5B, 0x5F, 0x60, 0x7F, 0x80, 0x9F, 0xA0, 0xA4, 0xF3, 0xFD}
    assert hot <= cancun.inlined
    assert {0xF1, 0x5C, 0x5D, 0x5E, 0x05, 0x0A, 0x1D, 0xFE}.isdisjoint(cancun.inlined)  # CALL, TLOAD, TSTORE, MCOPY, SDIV, EXP, SAR
    assert cancun.sstore_cold and cancun.sload_eip2929 and cancun.sstore_schedule.sstore_clears_schedule == 4800
    assert table("Berlin").sstore_schedule.sstore_clears_schedule == 15000
    assert table("Istanbul").sstore_schedule.sload_gas == 800 and not table("Istanbul").sstore_cold
    # Frontier: SSTORE is the old rule, SHL/SHR/PUSH0/REVERT do not exist: py-evm's entries
    assert {0x55, 0x1B, 0x1C, 0x5F, 0xFD}.isdisjoint(frontier.inlined) and 0x54 in frontier.inlined
    assert 0x55 not in table("Constantinople").inlined  # EIP-1283: py-evm's function
    assert 0xA0 not in frontier.static_checked and 0xA0 in cancun.static_checked
    assert frontier.costs[0x54] == 50 and table("Istanbul").costs[0x54] == 800 and cancun.costs[0x54] == 0


def test_a_replaced_function_is_not_inlined() -> None:
    """An opcode whose table entry is not py-evm's own function runs that entry."""
    opcodes = dict(FORKS["Cancun"].get_state_class().computation_class.opcodes)
    opcodes[opcode_values.ADD] = as_opcode(logic_fn=arithmetic.sub, mnemonic="ADD", gas_cost=3)
    opcodes[opcode_values.MUL] = as_opcode(logic_fn=arithmetic.mul, mnemonic="MUL", gas_cost=4)
    table = ForkTable.build(opcodes)
    assert table.kinds[opcode_values.ADD] == FALLBACK and table.fallback[opcode_values.ADD] is opcodes[opcode_values.ADD]
    assert table.costs[opcode_values.MUL] == 4  # the cost comes from the table


def test_debug_tracing_keeps_pyevm_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import execution.interpreter as interpreter

    calls = []
    monkeypatch.setattr(interpreter, "run", lambda *a: calls.append(a))
    cls = with_interpreter(FORKS["Cancun"], "lean").get_state_class().computation_class
    monkeypatch.setattr(type(cls.logger), "show_debug2", property(lambda self: True), raising=False)
    code = bytes.fromhex("600160020160005260206000f3")
    outcome = run_message("Cancun", "lean", world({CONTRACT: code}), gas=100_000)
    assert outcome.success and int.from_bytes(outcome.output, "big") == 3 and not calls
