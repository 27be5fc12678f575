"""Code analysis for the lean interpreter: each code once, then cached.

py-evm decodes a PUSH's bytes every time it runs and finds out whether a jump target
is a JUMPDEST by looking back up to 32 bytes for a PUSH that covers it. The lean loop
(`execution/interpreter.py`) asks once per code instead: the push values as ints,
the valid JUMPDEST positions (a 0x5b byte that is not push data, py-evm's rule), and
the code translated through a fork's table of inlined opcodes, so the loop's dispatch
needs no second lookup.

The cache is keyed by the code bytes themselves, not by their keccak: the account
database hands out the same `bytes` object for the same code, whose hash Python keeps,
so a hit costs a dict probe; a keccak would cost more than most analyses save. It is
bounded (`CACHE_ENTRIES`, oldest out first) and lives per fork table.
"""
from __future__ import annotations

from dataclasses import dataclass

JUMPDEST = 0x5B
PUSH1, PUSH32 = 0x60, 0x7F
#: Code is padded with this many STOP bytes: a PUSH at the end moves pc at most 33
#: past the last byte, and the loop then reads a STOP, as py-evm's code stream does.
PADDING = 33
CACHE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Analysis:
    """One code as the loop reads it."""

    kinds: bytes  # the code through a fork's dispatch table, padded with STOPs
    raw: bytes  # the code, padded with STOPs (the real opcode of a fallback)
    pushes: list[int | None]  # pc -> the value a PUSH at pc pushes
    jumpdests: frozenset[int]


def push_values(code: bytes) -> tuple[list[int | None], frozenset[int]]:
    """Push values by position and the valid JUMPDESTs, in one linear pass.

    A position is an instruction when it is not inside the data of an earlier PUSH
    that is itself an instruction; py-evm's `CodeStream.is_valid_opcode` says the same
    recursively. Push data cut off by the end of the code reads as zeros (py-evm pads)."""
    length = len(code)
    pushes: list[int | None] = [None] * length
    jumpdests = set()
    pc = 0
    while pc < length:
        op = code[pc]
        if PUSH1 <= op <= PUSH32:
            size = op - PUSH1 + 1
            data = code[pc + 1 : pc + 1 + size]
            pushes[pc] = int.from_bytes(data, "big") << (8 * (size - len(data)))
            pc += size + 1
        else:
            if op == JUMPDEST:
                jumpdests.add(pc)
            pc += 1
    return pushes, frozenset(jumpdests)


class AnalysisCache:
    """Analyses of the codes one fork table runs, bounded in entries."""

    def __init__(self, table: bytes, entries: int = CACHE_ENTRIES) -> None:
        if len(table) != 256:
            raise ValueError("a dispatch table maps all 256 byte values")
        self.table = table
        self.entries = entries
        self._cache: dict[bytes, Analysis] = {}

    def get(self, code: bytes) -> Analysis:
        try:
            return self._cache[code]
        except KeyError:
            pass
        pushes, jumpdests = push_values(code)
        padded = code + bytes(PADDING)
        analysis = Analysis(padded.translate(self.table), padded, pushes, jumpdests)
        if len(self._cache) >= self.entries:
            del self._cache[next(iter(self._cache))]
        self._cache[code] = analysis
        return analysis

    def __len__(self) -> int:
        return len(self._cache)
