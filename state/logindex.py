"""The log index: one row per log of every committed block, written with the block.

Why: `eth_getLogs` filters a block range by emitting contract and first topic (the
event signature), and indexers call it over thousands of blocks. Scanning receipts for
that is O(range); with the rows below it is an index lookup, and only the receipts of
blocks that hold a match are decoded. Rows are keyed by block hash, so a block that
is unwound leaves its rows behind harmlessly: reads join `blocks` to keep canonical ones.
The row's address and topic 0 are cut out of the receipt's RLP directly (no object
decoding on the commit path).
"""
from __future__ import annotations

from state.trie import rlp_item

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (block_hash BLOB, idx INTEGER, number INTEGER NOT NULL, address BLOB NOT NULL, topic0 BLOB, PRIMARY KEY (block_hash, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logs_by_number ON logs (number);
CREATE INDEX IF NOT EXISTS logs_by_address ON logs (address, number);
CREATE INDEX IF NOT EXISTS logs_by_topic0 ON logs (topic0, number);
"""


def log_rows(block_hash: bytes, number: int, receipts: list[bytes]) -> list[tuple[bytes, int, int, bytes, bytes | None]]:
    """(block hash, log index in the block, number, address, topic 0 or None) of each log.

    A receipt is `[status, cumulative gas, bloom, [[address, [topics], data], ...]]`,
    after a type byte for typed transactions ([EIP-2718])."""
    rows: list[tuple[bytes, int, int, bytes, bytes | None]] = []
    for receipt in receipts:
        start = 1 if receipt and receipt[0] < 0x80 else 0
        if start >= len(receipt) or receipt[start] < 0xC0:
            continue  # not a receipt's RLP list (a test's stand-in bytes): no logs to index
        position, _ = rlp_item(receipt, start)
        for _ in range(3):  # status, cumulative gas, bloom
            position = rlp_item(receipt, position)[1]
        logs, logs_end = rlp_item(receipt, position)
        while logs < logs_end:
            fields, log_end = rlp_item(receipt, logs)
            address_start, address_end = rlp_item(receipt, fields)
            topics, topics_end = rlp_item(receipt, address_end)
            topic0 = None
            if topics < topics_end:
                topic_start, topic_end = rlp_item(receipt, topics)
                topic0 = receipt[topic_start:topic_end]
            rows.append((block_hash, len(rows), number, receipt[address_start:address_end], topic0))
            logs = log_end
    return rows
