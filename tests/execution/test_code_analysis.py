"""execution/code_analysis.py: push values and JUMPDESTs as py-evm finds them."""
from __future__ import annotations

from eth.vm.code_stream import CodeStream
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.code_analysis import PADDING, AnalysisCache, push_values

# bytes biased towards PUSHes and JUMPDESTs, where the analysis can go wrong
code_bytes = st.lists(st.one_of(st.integers(0x60, 0x7F), st.just(0x5B), st.integers(0, 255)), max_size=120).map(bytes)


@settings(max_examples=300, deadline=None)
@given(code=code_bytes)
def test_matches_pyevm(code: bytes) -> None:
    pushes, jumpdests = push_values(code)
    stream = CodeStream(code)
    expected = {pc for pc in range(len(code)) if code[pc] == 0x5B and stream.is_valid_opcode(pc)}
    assert jumpdests == expected
    for pc, value in enumerate(pushes):
        if value is not None:
            size = code[pc] - 0x5F
            with stream.seek(pc + 1):
                assert value == int.from_bytes(stream.read(size).ljust(size, b"\x00"), "big")


def test_cut_off_push_reads_zeros() -> None:
    pushes, jumpdests = push_values(bytes([0x62, 0xAB]))  # PUSH3 with one byte left
    assert pushes[0] == 0xAB0000 and not jumpdests


def test_cache_is_bounded_and_translates() -> None:
    table = bytes(range(256)).replace(b"\x01", b"\xfe")
    cache = AnalysisCache(table, entries=2)
    first = cache.get(b"\x01\x02")
    assert first.kinds == b"\xfe\x02" + bytes(PADDING) and first.raw == b"\x01\x02" + bytes(PADDING)
    assert cache.get(b"\x01\x02") is first
    cache.get(b"\x03")
    cache.get(b"\x04")
    assert len(cache) == 2 and cache.get(b"\x01\x02") is not first  # the oldest went
