"""The JSON shapes of JSON-RPC results: transactions, logs, fee figures.

Field names and presence follow geth's (`RPCTransaction`, `types.Log`), which is
what web3.py, ethers and indexers parse. Pure functions over py-evm objects and raw
RLP; nothing here reads the database.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_hash.auto import keccak

from state.trie import rlp_item


def quantity(value: int) -> str:
    return hex(value)


def data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def effective_gas_price(tx: Any, base_fee: int | None) -> int:
    """What the sender paid per gas ([EIP-1559]: the tip is capped by the max fee)."""
    if not hasattr(tx, "max_fee_per_gas") or tx.type_id in (None, 0, 1):
        return tx.gas_price
    return min(tx.max_fee_per_gas, (base_fee or 0) + tx.max_priority_fee_per_gas)


def priority_fee(tx: Any, base_fee: int | None) -> int:
    """The miner's tip per gas: the effective price above the base fee."""
    return effective_gas_price(tx, base_fee) - (base_fee or 0)


def transaction_json(tx: Any, block_hash: bytes, number: int, index: int, base_fee: int | None) -> dict[str, Any]:
    type_id = tx.type_id or 0
    out: dict[str, Any] = {
        "blockHash": data(block_hash),
        "blockNumber": quantity(number),
        "transactionIndex": quantity(index),
        "hash": data(tx.hash),
        "from": data(tx.sender),
        "to": data(tx.to) if tx.to else None,
        "nonce": quantity(tx.nonce),
        "gas": quantity(tx.gas),
        "gasPrice": quantity(effective_gas_price(tx, base_fee)),
        "value": quantity(tx.value),
        "input": data(tx.data),
        "type": quantity(type_id),
        "r": quantity(tx.r),
        "s": quantity(tx.s),
    }
    if type_id == 0:
        out["v"] = quantity(tx.v)
        chain_id = (tx.v - 35) // 2 if tx.v >= 35 else None  # EIP-155
        if chain_id is not None:
            out["chainId"] = quantity(chain_id)
        return out
    out["v"] = quantity(tx.y_parity)
    out["yParity"] = quantity(tx.y_parity)
    out["chainId"] = quantity(tx.chain_id)
    out["accessList"] = [{"address": data(address), "storageKeys": [data(slot.to_bytes(32, "big") if isinstance(slot, int) else slot) for slot in slots]} for address, slots in tx.access_list]
    if type_id >= 2:
        out["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
    if type_id == 3:
        out["maxFeePerBlobGas"] = quantity(tx.max_fee_per_blob_gas)
        out["blobVersionedHashes"] = [data(h) for h in tx.blob_versioned_hashes]
    if type_id == 4:
        out["authorizationList"] = [
            {"chainId": quantity(a.chain_id), "address": data(a.address), "nonce": quantity(a.nonce), "yParity": quantity(a.y_parity), "r": quantity(a.r), "s": quantity(a.s)}
            for a in tx.authorization_list
        ]
    return out


def transaction_hashes(block_rlp: bytes) -> list[bytes]:
    """The hashes of a block's transactions, cut from its RLP (no py-evm decoding):
    a legacy transaction is an RLP list, a typed one a string holding type || payload."""
    start, _ = rlp_item(block_rlp, 0)  # inside the block's list
    header_end = rlp_item(block_rlp, start)[1]
    items, items_end = rlp_item(block_rlp, header_end)
    hashes = []
    while items < items_end:
        content, end = rlp_item(block_rlp, items)
        hashes.append(keccak(block_rlp[content:end] if block_rlp[items] < 0xC0 else block_rlp[items:end]))
        items = end
    return hashes


@dataclass(frozen=True)
class BlockParts:
    """A block's RLP cut into its items: the uncles' RLP each, the withdrawals list's RLP."""

    uncles: list[bytes]
    withdrawals: bytes | None  # the whole list, from Shanghai on


def block_parts(block_rlp: bytes) -> BlockParts:
    start, end = rlp_item(block_rlp, 0)
    items = []
    while start < end:
        item_end = rlp_item(block_rlp, start)[1]
        items.append((start, item_end))
        start = item_end
    uncles_start, uncles_end = items[2]
    content, _ = rlp_item(block_rlp, uncles_start)
    uncles = []
    while content < uncles_end:
        uncle_end = rlp_item(block_rlp, content)[1]
        uncles.append(block_rlp[content:uncle_end])
        content = uncle_end
    withdrawals = block_rlp[items[3][0]:items[3][1]] if len(items) > 3 else None
    return BlockParts(uncles, withdrawals)


def receipt_logs(receipt: bytes) -> list[tuple[bytes, list[bytes], bytes]]:
    """(address, topics, data) of each log in a receipt's RLP."""
    body = receipt[1:] if receipt and receipt[0] < 0x80 else receipt
    return [(address, list(topics), log_data) for address, topics, log_data in rlp.decode(body)[3]]


def log_json(address: bytes, topics: list[bytes], log_data: bytes, *, block_hash: bytes, number: int, tx_hash: bytes, tx_index: int, log_index: int) -> dict[str, Any]:
    return {
        "address": data(address),
        "topics": [data(t) for t in topics],
        "data": data(log_data),
        "blockNumber": quantity(number),
        "blockHash": data(block_hash),
        "transactionHash": data(tx_hash),
        "transactionIndex": quantity(tx_index),
        "logIndex": quantity(log_index),
        "removed": False,
    }


def percentile_rewards(tips_and_gas: list[tuple[int, int]], percentiles: list[float]) -> list[int]:
    """geth's `eth_feeHistory` rewards: the tip at each percentile of the block's gas
    used, transactions sorted by tip (all zero for an empty block)."""
    if not tips_and_gas:
        return [0] * len(percentiles)
    ordered = sorted(tips_and_gas)
    total = sum(gas for _, gas in ordered)
    rewards = []
    index, cumulative = 0, ordered[0][1]
    for percentile in percentiles:
        threshold = total * percentile / 100
        while cumulative < threshold and index < len(ordered) - 1:
            index += 1
            cumulative += ordered[index][1]
        rewards.append(ordered[index][0])
    return rewards
