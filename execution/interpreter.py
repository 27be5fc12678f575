"""The lean interpreter loop: py-evm's semantics, pc, gas and stack kept as locals.

py-evm's `BaseComputation.apply_computation` spends about 1.9 µs per opcode: every
opcode goes through `Opcode.__call__`, a `consume_gas` call, validated stack pushes
and byte/int conversions. This loop runs the hot opcodes inline instead and hands
every other opcode to py-evm's own function, with pc and gas written back before and
read after, so py-evm stays the definition of the EVM.

What it keeps of py-evm, exactly (the differential tests in
`tests/execution/test_interpreter_diff.py` compare both loops on random programs):

- the order of charges: an opcode's fixed cost from the fork's table before it runs;
  SHA3 charges memory, then per word; LOG charges data and topics, then memory;
  SSTORE checks the static context, fails at <= 2300 gas left (EIP-2200), charges
  and refunds by EIP-2200/3529, writes, then charges a cold slot (EIP-2929); SLOAD
  marks the slot warm before it charges;
- memory cost words * 3 + words² / 512, no growth for a size of 0, out of gas before
  any allocation for a huge offset;
- the 1024 stack limit on every push, stack underflow (`InsufficientStack`), the two
  invalid-jump errors (`InvalidJumpDestination`, `InvalidInstruction` inside push
  data), `WriteProtection` for SSTORE and LOG in a static call.

Fork safety: `ForkTable.build` inlines an opcode only where the fork's opcode table
holds the very py-evm function the inline code replaces (SSTORE: the net-metering
function and the gas schedule in the table); anything else runs py-evm's entry. The
stack holds ints only: the one value a py-evm opcode may push as bytes is converted
right after it runs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

from eth import constants
from eth.exceptions import (
    FullStack,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
    Revert,
    WriteProtection,
)
from eth.vm.computation import NO_RESULT, BaseComputation
from eth.vm.forks.berlin import constants as berlin_constants
from eth.vm.forks.berlin.logic import sload_eip2929, sstore_eip2929_generic
from eth.vm.forks.byzantium.opcodes import ensure_no_static
from eth.vm.forks.istanbul.storage import sstore_eip2200_generic
from eth.vm.logic import arithmetic, comparison, context, duplication, flow, logging, memory, sha3, stack, storage, swap, system
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.logic.storage import NetSStoreGasSchedule
from eth.vm.opcode import _FastOpcode
from eth_hash.auto import keccak

from execution.code_analysis import PADDING, AnalysisCache

UINT256_MAX = constants.UINT_256_MAX
GAS_MEMORY = constants.GAS_MEMORY
GAS_MEMORY_QUADRATIC_DENOMINATOR = constants.GAS_MEMORY_QUADRATIC_DENOMINATOR
GAS_SHA3WORD = constants.GAS_SHA3WORD
GAS_COPY = constants.GAS_COPY
GAS_LOGDATA = constants.GAS_LOGDATA
GAS_LOGTOPIC = constants.GAS_LOGTOPIC
COLD_SLOAD_COST = berlin_constants.COLD_SLOAD_COST
WARM_STORAGE_READ_COST = berlin_constants.WARM_STORAGE_READ_COST
#: EIP-2200: a net-metered SSTORE fails with this much gas left or less (py-evm's
#: `sstore_eip2200_generic` writes the number out; the tests plant a bug here).
SSTORE_STIPEND = 2300
STACK_LIMIT = constants.STACK_DEPTH_LIMIT
#: The kind every opcode that is not inlined for a fork maps to (INVALID, which is in
#: no table: py-evm's `InvalidOpcode` answers it as the fallback).
FALLBACK = 0xFE
SLOAD, SSTORE = 0x54, 0x55

# The py-evm function each inlined opcode replaces.
_PLAIN: dict[int, Callable[..., Any]] = {
    0x00: flow.stop, 0x01: arithmetic.add, 0x02: arithmetic.mul, 0x03: arithmetic.sub,
    0x04: arithmetic.div, 0x06: arithmetic.mod,
    0x10: comparison.lt, 0x11: comparison.gt, 0x14: comparison.eq, 0x15: comparison.iszero,
    0x16: comparison.and_op, 0x17: comparison.or_op, 0x18: comparison.xor, 0x19: comparison.not_op,
    0x1A: comparison.byte_op, 0x1B: arithmetic.shl, 0x1C: arithmetic.shr,
    0x20: sha3.sha3,
    0x30: context.address, 0x33: context.caller, 0x34: context.callvalue,
    0x35: context.calldataload, 0x36: context.calldatasize, 0x39: context.codecopy,
    0x3D: context.returndatasize,
    0x50: stack.pop, 0x51: memory.mload, 0x52: memory.mstore, 0x53: memory.mstore8,
    0x56: flow.jump, 0x57: flow.jumpi, 0x58: flow.program_counter, 0x59: memory.msize,
    0x5A: flow.gas, 0x5B: flow.jumpdest, 0x5F: stack.push0,
    0xF3: system.return_op,
}
_PLAIN.update({0x60 + i: getattr(stack, f"push{i + 1}") for i in range(32)})
_PLAIN.update({0x80 + i: getattr(duplication, f"dup{i + 1}") for i in range(16)})
_PLAIN.update({0x90 + i: getattr(swap, f"swap{i + 1}") for i in range(16)})
# Opcodes py-evm wraps in `ensure_no_static` from Byzantium on.
_STATIC_CHECKED: dict[int, Callable[..., Any]] = {0xA0 + i: getattr(logging, f"log{i}") for i in range(5)}
_STATIC_CHECKED[0xFD] = system.revert  # never wrapped; listed here so REVERT is recognised bare too


_NO_STATIC_CODE = ensure_no_static(flow.stop).__code__  # the wrapper's code, shared by all


def _unwrap_no_static(fn: Any) -> tuple[Any, bool]:
    """py-evm's `ensure_no_static(fn)` wrapper off, and whether it was there. The
    wrapped object comes from the closure: `__wrapped__` loses a curry's arguments."""
    if getattr(fn, "__code__", None) is _NO_STATIC_CODE and fn.__closure__:
        cells = dict(zip(fn.__code__.co_freevars, (cell.cell_contents for cell in fn.__closure__)))
        if "opcode_fn" in cells:
            return cells["opcode_fn"], True
    return fn, False


def _curried(fn: Any) -> tuple[Any, tuple[Any, ...]]:
    """The function under toolz curries and functools partials, and their arguments."""
    args: tuple[Any, ...] = ()
    while isinstance(fn, functools.partial) or type(fn).__name__ == "curry":
        if getattr(fn, "keywords", None):
            return None, ()
        args = tuple(fn.args) + args
        fn = fn.func
    return fn, args


_SSTORE_2200 = _curried(sstore_eip2200_generic)[0]
_SSTORE_2929 = _curried(sstore_eip2929_generic)[0]


@dataclass
class ForkTable:
    """What the loop needs of one fork's opcode table, derived from it once."""

    kinds: bytes  # opcode -> itself where inlined, else FALLBACK
    costs: list[int]  # kind -> the fixed cost charged before the opcode runs
    fallback: list[Any]  # opcode -> py-evm's opcode (or its InvalidOpcode)
    static_checked: frozenset[int]  # inlined opcodes that reject a static call
    sload_eip2929: bool = False
    sstore_schedule: NetSStoreGasSchedule | None = None
    sstore_cold: bool = False  # EIP-2929: the cold-slot charge after the write
    analyses: AnalysisCache = field(init=False)

    def __post_init__(self) -> None:
        self.analyses = AnalysisCache(self.kinds)

    @property
    def inlined(self) -> frozenset[int]:
        return frozenset(op for op in range(256) if self.kinds[op] == op and op != FALLBACK)

    @classmethod
    def build(cls, opcodes: dict[int, Any]) -> ForkTable:
        kinds = bytearray([FALLBACK] * 256)
        costs = [0] * 256
        fallback = [opcodes.get(op) or InvalidOpcode(op) for op in range(256)]
        static_checked = set()
        sload_2929 = False
        schedule = None
        cold = False
        for op, entry in opcodes.items():
            if type(entry) is not _FastOpcode:
                continue
            fn, no_static = _unwrap_no_static(entry.logic_fn)
            if op in _PLAIN and fn is _PLAIN[op] and not no_static:
                pass
            elif op in _STATIC_CHECKED and fn is _STATIC_CHECKED[op] and (op != 0xFD or not no_static):
                if no_static:
                    static_checked.add(op)
            elif op == SLOAD and fn is storage.sload and not no_static:
                pass
            elif op == SLOAD and fn is sload_eip2929 and not no_static:
                sload_2929 = True
            elif op == SSTORE and no_static:
                base, args = _curried(fn)
                if base not in (_SSTORE_2200, _SSTORE_2929) or len(args) != 1 or not isinstance(args[0], NetSStoreGasSchedule):
                    continue
                schedule, cold = args[0], base is _SSTORE_2929
                static_checked.add(op)
            else:
                continue
            kinds[op] = op
            costs[op] = entry.gas_cost
        return cls(bytes(kinds), costs, fallback, frozenset(static_checked), sload_2929, schedule, cold)


def _expand(memory: Any, end: int, gas: int) -> int:
    """Grow memory to cover `end` (> its size), charging py-evm's cost first; the gas left."""
    old_words = len(memory._bytes) >> 5
    new_words = (end + 31) >> 5
    fee = (new_words * GAS_MEMORY + new_words * new_words // GAS_MEMORY_QUADRATIC_DENOMINATOR) - (
        old_words * GAS_MEMORY + old_words * old_words // GAS_MEMORY_QUADRATIC_DENOMINATOR
    )
    if fee > gas:
        raise OutOfGas(f"Out of gas: Needed {fee} - Remaining {gas} - Reason: Expanding memory {old_words * 32} -> {new_words * 32}")
    extra = bytearray((new_words - old_words) << 5)
    try:
        memory._bytes.extend(extra)
    except BufferError:  # a memoryview of it is alive: what py-evm's Memory.extend does
        memory._bytes = memory._bytes + extra
    return gas - fee


def _out_of_gas(needed: int, gas: int, op: int) -> OutOfGas:
    return OutOfGas(f"Out of gas: Needed {needed} - Remaining {gas} - Reason: opcode 0x{op:02x}")


def run(computation: Any, table: ForkTable) -> None:
    """Execute `computation`'s code, as the loop in `BaseComputation.apply_computation`.

    Raises what py-evm's opcodes raise (the computation's `__exit__` turns a `VMError`
    into the computation's error); `Halt` ends the loop. On every way out the gas meter
    holds the gas left and the stack list is py-evm's own."""
    msg = computation.msg
    analysis = table.analyses.get(msg.code)
    kinds = analysis.kinds
    raw = analysis.raw
    pushes = analysis.pushes
    jumpdests = analysis.jumpdests
    costs = table.costs
    fallback = table.fallback
    static_checked = table.static_checked
    meter = computation._gas_meter
    stack = computation._stack.values
    mem_obj = computation._memory
    mem = mem_obj._bytes
    code_stream = computation.code
    append = stack.append
    pop = stack.pop
    gas = meter.gas_remaining
    pc = 0
    fallback_raised = False
    stipend = SSTORE_STIPEND  # read once: the planted-bug test changes the module's
    mask = UINT256_MAX
    limit = STACK_LIMIT
    sload_eip2929 = table.sload_eip2929
    calldata = None  # msg.data_as_bytes copies on every access: once, when first needed
    try:
        while True:
            op = kinds[pc]
            cost = costs[op]
            if cost > gas:
                raise _out_of_gas(cost, gas, raw[pc])
            gas -= cost
            if op >= 0x60:
                if op < 0x80:  # PUSH1..PUSH32
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    append(pushes[pc])
                    pc += op - 0x5E
                    continue
                if op < 0x90:  # DUP1..DUP16
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    append(stack[0x7F - op])
                elif op < 0xA0:  # SWAP1..SWAP16
                    index = 0x8E - op
                    stack[-1], stack[index] = stack[index], stack[-1]
                elif op < 0xA5:  # LOG0..LOG4
                    if op in static_checked and msg.is_static:
                        raise WriteProtection("Cannot modify state while inside of a STATICCALL context")
                    start = stack[-1]
                    size = stack[-2]
                    count = op - 0xA0
                    if len(stack) < 2 + count:
                        raise InsufficientStack(f"Wanted {2 + count} stack items, only had {len(stack)}")
                    del stack[-2:]
                    topics = tuple(pop() for _ in range(count))
                    cost = GAS_LOGDATA * size + GAS_LOGTOPIC * count
                    if cost > gas:
                        raise _out_of_gas(cost, gas, op)
                    gas -= cost
                    if size:
                        end = start + size
                        if end > len(mem):
                            gas = _expand(mem_obj, end, gas)
                            mem = mem_obj._bytes
                        data = bytes(mem[start:end])
                    else:
                        data = b""
                    computation._log_entries.append(
                        (computation.transaction_context.get_next_log_counter(), msg.storage_address, topics, data)
                    )
                elif op == 0xF3 or op == 0xFD:  # RETURN, REVERT
                    start = pop()
                    size = pop()
                    if size:
                        end = start + size
                        if end > len(mem):
                            gas = _expand(mem_obj, end, gas)
                            mem = mem_obj._bytes
                        computation._output = bytes(mem[start:end])
                    else:
                        computation._output = b""
                    if op == 0xFD:
                        raise Revert(computation._output)
                    break
                else:  # FALLBACK: py-evm's own opcode
                    meter.gas_remaining = gas
                    code_stream.program_counter = pc + 1
                    try:
                        fallback[raw[pc]](computation)
                    except Halt:
                        gas = meter.gas_remaining
                        pc = code_stream.program_counter
                        break
                    except BaseException:
                        gas = meter.gas_remaining
                        fallback_raised = True
                        raise
                    gas = meter.gas_remaining
                    pc = code_stream.program_counter
                    mem = mem_obj._bytes
                    if stack and type(stack[-1]) is bytes:
                        stack[-1] = int.from_bytes(stack[-1], "big")
                    continue
                pc += 1
            elif op >= 0x50:
                if op == 0x5B:  # JUMPDEST
                    pass
                elif op == 0x57:  # JUMPI
                    dest = pop()
                    if pop():
                        if dest in jumpdests:
                            pc = dest
                            continue
                        _bad_jump(raw, dest, len(raw) - PADDING)
                elif op == 0x56:  # JUMP
                    dest = pop()
                    if dest in jumpdests:
                        pc = dest
                        continue
                    _bad_jump(raw, dest, len(raw) - PADDING)
                elif op == 0x50:  # POP
                    pop()
                elif op == 0x51:  # MLOAD
                    start = stack[-1]
                    end = start + 32
                    if end > len(mem):
                        gas = _expand(mem_obj, end, gas)
                        mem = mem_obj._bytes
                    stack[-1] = int.from_bytes(mem[start:end], "big")
                elif op == 0x52:  # MSTORE
                    start = pop()
                    value = pop()
                    end = start + 32
                    if end > len(mem):
                        gas = _expand(mem_obj, end, gas)
                        mem = mem_obj._bytes
                    mem[start:end] = value.to_bytes(32, "big")
                elif op == 0x54:  # SLOAD
                    slot = stack[-1]
                    state = computation.state
                    address = msg.storage_address
                    if sload_eip2929:
                        if state.is_storage_warm(address, slot):
                            cost = WARM_STORAGE_READ_COST
                        else:
                            state.mark_storage_warm(address, slot)
                            cost = COLD_SLOAD_COST
                        if cost > gas:
                            raise _out_of_gas(cost, gas, op)
                        gas -= cost
                    stack[-1] = state.get_storage(address, slot)
                elif op == 0x55:  # SSTORE
                    if op in static_checked and msg.is_static:
                        raise WriteProtection("Cannot modify state while inside of a STATICCALL context")
                    if gas <= stipend:
                        raise OutOfGas("Net-metered SSTORE always fails below 2300 gas, per EIP-2200", gas)
                    slot = pop()
                    value = pop()
                    gas = _sstore(computation, table, slot, value, gas)
                elif op == 0x5F:  # PUSH0
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    append(0)
                elif op == 0x53:  # MSTORE8
                    start = pop()
                    value = pop()
                    end = start + 1
                    if end > len(mem):
                        gas = _expand(mem_obj, end, gas)
                        mem = mem_obj._bytes
                    mem[start] = value & 0xFF
                elif op == 0x5A:  # GAS
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    append(gas)
                elif op == 0x58:  # PC
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    append(pc)
                else:  # 0x59 MSIZE
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    append(len(mem))
                pc += 1
            elif op >= 0x30:
                if op == 0x35:  # CALLDATALOAD
                    start = stack[-1]
                    if calldata is None:
                        calldata = msg.data_as_bytes
                    stack[-1] = int.from_bytes(calldata[start : start + 32].ljust(32, b"\x00"), "big")
                elif op == 0x39:  # CODECOPY
                    start = pop()
                    code_start = pop()
                    size = pop()
                    if size:
                        end = start + size
                        if end > len(mem):
                            gas = _expand(mem_obj, end, gas)
                            mem = mem_obj._bytes
                    cost = GAS_COPY * ((size + 31) >> 5)
                    if cost > gas:
                        raise _out_of_gas(cost, gas, op)
                    gas -= cost
                    if size:
                        mem[start:end] = msg.code[code_start : code_start + size].ljust(size, b"\x00")
                else:
                    if len(stack) >= limit:
                        raise FullStack("Stack limit reached")
                    if op == 0x33:  # CALLER
                        append(int.from_bytes(msg.sender, "big"))
                    elif op == 0x34:  # CALLVALUE
                        append(msg.value)
                    elif op == 0x36:  # CALLDATASIZE
                        append(len(msg.data))
                    elif op == 0x30:  # ADDRESS
                        append(int.from_bytes(msg.storage_address, "big"))
                    else:  # 0x3D RETURNDATASIZE
                        append(len(computation.return_data))
                pc += 1
            elif op >= 0x10:
                if op == 0x14:  # EQ
                    a = pop()
                    stack[-1] = 1 if a == stack[-1] else 0
                elif op == 0x15:  # ISZERO
                    stack[-1] = 0 if stack[-1] else 1
                elif op == 0x16:  # AND
                    a = pop()
                    stack[-1] &= a
                elif op == 0x10:  # LT
                    a = pop()
                    stack[-1] = 1 if a < stack[-1] else 0
                elif op == 0x11:  # GT
                    a = pop()
                    stack[-1] = 1 if a > stack[-1] else 0
                elif op == 0x1C:  # SHR
                    a = pop()
                    stack[-1] = stack[-1] >> a if a < 256 else 0
                elif op == 0x1B:  # SHL
                    a = pop()
                    stack[-1] = (stack[-1] << a) & mask if a < 256 else 0
                elif op == 0x17:  # OR
                    a = pop()
                    stack[-1] |= a
                elif op == 0x19:  # NOT
                    stack[-1] ^= mask
                elif op == 0x18:  # XOR
                    a = pop()
                    stack[-1] ^= a
                elif op == 0x1A:  # BYTE
                    a = pop()
                    stack[-1] = (stack[-1] >> (248 - 8 * a)) & 0xFF if a < 32 else 0
                else:  # 0x20 SHA3
                    start = pop()
                    size = pop()
                    if size:
                        end = start + size
                        if end > len(mem):
                            gas = _expand(mem_obj, end, gas)
                            mem = mem_obj._bytes
                        data = bytes(mem[start:end])
                    else:
                        data = b""
                    cost = GAS_SHA3WORD * ((size + 31) >> 5)
                    if cost > gas:
                        raise _out_of_gas(cost, gas, op)
                    gas -= cost
                    append(int.from_bytes(keccak(data), "big"))
                pc += 1
            else:
                if op == 0x01:  # ADD
                    a = pop()
                    stack[-1] = (a + stack[-1]) & mask
                elif op == 0x03:  # SUB
                    a = pop()
                    stack[-1] = (a - stack[-1]) & mask
                elif op == 0x00:  # STOP
                    break
                elif op == 0x02:  # MUL
                    a = pop()
                    stack[-1] = (a * stack[-1]) & mask
                elif op == 0x04:  # DIV
                    a = pop()
                    b = stack[-1]
                    stack[-1] = a // b if b else 0
                else:  # 0x06 MOD
                    a = pop()
                    b = stack[-1]
                    stack[-1] = a % b if b else 0
                pc += 1
    except IndexError:
        meter.gas_remaining = gas
        if fallback_raised:
            raise
        raise InsufficientStack(f"Too few stack items for opcode 0x{raw[pc]:02x} at pc {pc}") from None
    except BaseException:
        meter.gas_remaining = gas
        raise
    meter.gas_remaining = gas
    code_stream.program_counter = pc


def _bad_jump(raw: bytes, dest: int, length: int) -> None:
    """py-evm's two errors for a jump to no JUMPDEST."""
    if dest >= length or raw[dest] != 0x5B:
        raise InvalidJumpDestination("Invalid Jump Destination")
    raise InvalidInstruction("Jump resulted in invalid instruction")


def _sstore(computation: Any, table: ForkTable, slot: int, value: int, gas: int) -> int:
    """py-evm's `net_sstore` (EIP-2200/3529 metering) and the EIP-2929 cold charge,
    after the static and stipend checks the loop made; the gas left."""
    schedule = table.sstore_schedule
    assert schedule is not None  # SSTORE is inlined only with a schedule
    state = computation.state
    address = computation.msg.storage_address
    current = state.get_storage(address, slot)
    original = state.get_storage(address, slot, from_journal=False)
    refund = 0
    if current == value:
        cost = schedule.sload_gas
    elif original == current:
        if original == 0:
            cost = schedule.sstore_set_gas
        else:
            cost = schedule.sstore_reset_gas
            if value == 0:
                refund += schedule.sstore_clears_schedule
    else:
        cost = schedule.sload_gas
        if original != 0:
            if current == 0:
                refund -= schedule.sstore_clears_schedule
            if value == 0:
                refund += schedule.sstore_clears_schedule
        if original == value:
            if original == 0:
                refund += schedule.sstore_set_gas - schedule.sload_gas
            else:
                refund += schedule.sstore_reset_gas - schedule.sload_gas
    if cost > gas:
        raise _out_of_gas(cost, gas, SSTORE)
    gas -= cost
    if refund:
        computation._gas_meter.refund_gas(refund)
    state.set_storage(address, slot, value)
    if table.sstore_cold and not state.is_storage_warm(address, slot):
        state.mark_storage_warm(address, slot)
        if COLD_SLOAD_COST > gas:
            raise _out_of_gas(COLD_SLOAD_COST, gas, SSTORE)
        gas -= COLD_SLOAD_COST
    return gas


# BaseComputation methods whose work the loop does inline: a fork that overrides one
# of them keeps py-evm's loop.
_INLINED_METHODS = (
    "apply_computation", "extend_memory", "consume_gas", "get_gas_remaining", "add_log_entry",
    "memory_write", "memory_read_bytes", "stack_swap", "stack_dup", "refund_gas",
)


class LeanComputation:
    """Mixed in before a fork's py-evm computation: the same class, the lean loop."""

    lean_table: ForkTable

    @classmethod
    def apply_computation(
        cls,
        state: Any,
        message: Any,
        transaction_context: Any,
        parent_computation: Any = None,
    ) -> Any:
        """`BaseComputation.apply_computation` with `run` for its loop (debug tracing
        keeps py-evm's loop, which logs every opcode)."""
        if cls.logger.show_debug2:
            return super().apply_computation(state, message, transaction_context, parent_computation)
        with cls(state, message, transaction_context) as computation:
            if computation.is_origin_computation:
                computation.contracts_created = []
                if message.is_create:
                    cls.consume_initcode_gas_cost(computation)
            if parent_computation is not None:
                computation.contracts_created = parent_computation.contracts_created
            if message.is_create:
                computation.contracts_created.append(message.storage_address)
            precompile = computation.precompiles.get(message.code_address, NO_RESULT)
            if precompile is not NO_RESULT:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            run(computation, cls.lean_table)
        return computation


def overridden(base: type) -> list[str]:
    """The inlined BaseComputation methods `base` (a fork's computation) overrides."""
    return [name for name in _INLINED_METHODS if next(k for k in base.__mro__ if name in k.__dict__) is not BaseComputation]


@functools.lru_cache(maxsize=None)
def lean_computation(base: type) -> type:
    """The lean twin of a fork's py-evm computation class (`base` itself where the
    fork overrides a method the loop inlines)."""
    if overridden(base):
        return base
    return type(f"Lean{base.__name__}", (LeanComputation, base), {"lean_table": ForkTable.build(base.opcodes)})
