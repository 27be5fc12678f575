"""A block source over an ethereum/tests BlockchainTest: blocks in their final order.

Consensus has already ordered these blocks; the source hands them out without
executing anything. How far ahead of execution it may run is the capacity of the
channel in front of prefetch (the lookahead K), not a property of the source.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

import trio

from pipeline.block import BlockInput


def hex_bytes(value: str) -> bytes:
    text = value[2:] if value.startswith(("0x", "0X")) else value
    if len(text) % 2:
        text = "0" + text
    return bytes.fromhex(text)


def hex_int(value: str | int) -> int:
    if isinstance(value, int):
        return value
    return int(value, 16) if value.startswith(("0x", "0X")) else int(value)


def fixture_blocks(test: dict[str, Any]) -> list[BlockInput]:
    """Every block entry of the test, valid or not, with its expected exception."""
    inputs = []
    for seq, entry in enumerate(test["blocks"]):
        try:
            data = hex_bytes(entry["rlp"])
        except ValueError:
            data = b""  # not even hex: the pipeline rejects it as an RLP error
        inputs.append(BlockInput(seq, data, {"expect_exception": entry.get("expectException")}))
    return inputs


def fixture_source(test: dict[str, Any]):  # type: ignore[no-untyped-def]
    """An async block source (for `run_pipeline`) over the test's blocks."""
    blocks = fixture_blocks(test)

    async def source() -> AsyncIterator[BlockInput]:
        for item in blocks:
            await trio.lowlevel.checkpoint()
            yield item

    return source


def fixture_alloc(pre: dict[str, Any]) -> dict[bytes, dict]:
    """The `pre` section as a genesis allocation."""
    return {
        hex_bytes(address): {
            "nonce": hex_int(fields.get("nonce", "0x0")),
            "balance": hex_int(fields.get("balance", "0x0")),
            "code": hex_bytes(fields.get("code", "0x")),
            "storage": {hex_int(k): hex_int(v) for k, v in fields.get("storage", {}).items()},
        }
        for address, fields in pre.items()
    }
