"""Conflicts named for people: which state serialises a block, and what it is.

Every dependency edge carries the keys that make it. Keys are grouped by *subject*:
one storage slot (``("slot", contract, slot)``), or one account (its nonce, balance,
existence and code together). A subject's cost is the longest chain of
transactions that its edges alone force, in seconds of their measured execution:
the time it serialises, which no scheduler can overlap.

What a subject is, where the block tells:

- an account whose nonce links transactions it sent: the *nonce chain of a sender*;
- an account credited and then spent or read: the *ETH balance* of that address;
- a slot of a contract that emitted ERC-20 `Transfer` events, computed as a mapping
  entry ``keccak(holder ‖ base)`` (Solidity) or ``keccak(base ‖ holder)`` (Vyper)
  of an address seen in the file: the *ERC-20 balance of that holder*;
- a small-numbered slot of a contract that emitted Uniswap-V2 `Sync` events: the
  *pool's reserves*;
- otherwise the contract and slot, and the mapping key when one explains it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from eth_hash.auto import keccak

from evmpipe.analyze.graph import Graph

TRANSFER_TOPIC = int.from_bytes(keccak(b"Transfer(address,address,uint256)"), "big")
SYNC_TOPIC = int.from_bytes(keccak(b"Sync(uint112,uint112)"), "big")
SWAP_TOPIC = int.from_bytes(keccak(b"Swap(address,uint256,uint256,uint256,uint256,address)"), "big")
#: Mapping base slots tried when explaining a slot (`execution.predict` tries as many).
MAX_BASE_SLOT = 16
#: A slot number below this is a plain variable, not a hashed mapping entry.
SMALL_SLOT = 1 << 16

Subject = tuple  # ("account", address) | ("slot", address, slot)


def subject_of(key: tuple) -> Subject:
    if key[0] == "slot":
        return ("slot", key[1], key[2])
    if key[0] == "has_storage":
        return ("storage", key[1])
    return ("account", key[1])


def short(address: bytes) -> str:
    text = address.hex()
    return f"0x{text[:4]}…{text[-4:]}"


@dataclass
class Conflict:
    subject: Subject
    kind: str  # nonce-chain, eth-balance, account, erc20-balance, pool-reserves, storage, storage-exists
    description: str
    serial_seconds: float  # the longest chain its edges force
    txs: int  # transactions on its edges
    edges: int
    holder: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "contract_or_account": "0x" + self.subject[1].hex(),
            "slot": hex(self.subject[2]) if self.subject[0] == "slot" else None,
            "holder": "0x" + self.holder.hex() if self.holder else None,
            "description": self.description,
            "serial_seconds": self.serial_seconds,
            "txs": self.txs,
            "edges": self.edges,
        }


class Namer:
    """Knows the file: which contracts are tokens or pools, which addresses were
    seen (candidate mapping keys), and who sent what."""

    def __init__(self) -> None:
        self.tokens: set[bytes] = set()
        self.pools: set[bytes] = set()
        self.addresses: set[bytes] = set()
        self._slots: dict[int, tuple[bytes, int]] | None = None

    def observe(self, logs: Iterable[tuple[bytes, int | None]], addresses: Iterable[bytes]) -> None:
        for contract, topic in logs:
            if topic == TRANSFER_TOPIC:
                self.tokens.add(contract)
            elif topic in (SYNC_TOPIC, SWAP_TOPIC):
                self.pools.add(contract)
        self.addresses.update(a for a in addresses if a)
        self._slots = None

    def mapping_entry(self, slot: int) -> tuple[bytes, int] | None:
        """(key address, base slot) when `slot` is a one-level mapping entry keyed by
        an address seen in the file."""
        if self._slots is None:
            table: dict[int, tuple[bytes, int]] = {}
            for address in self.addresses:
                word = address.rjust(32, b"\0")
                for base in range(MAX_BASE_SLOT):
                    base_word = base.to_bytes(32, "big")
                    table.setdefault(int.from_bytes(keccak(word + base_word), "big"), (address, base))
                    table.setdefault(int.from_bytes(keccak(base_word + word), "big"), (address, base))
            self._slots = table
        return self._slots.get(slot)

    def name(self, subject: Subject, keys: set[tuple], senders: dict[int, bytes], edges: list[tuple[int, int]]) -> tuple[str, str, bytes | None]:
        """(kind, description, holder) of a subject, from its keys and edges."""
        address = subject[1]
        if subject[0] == "account":
            nonce_chain = ("nonce", address) in keys and any(senders.get(i) == address and senders.get(j) == address for j, i in edges)
            if nonce_chain:
                credited = ("balance", address) in keys and any(senders.get(j) != address and senders.get(i) == address for j, i in edges)
                also = ", and the credits to it that they spend" if credited else ""
                return "nonce-chain", f"nonce chain of sender {short(address)}{also}", None
            if ("balance", address) in keys:
                spent = any(senders.get(i) == address for _, i in edges)
                how = "credited, then spent by its own transactions" if spent else "credited, then read"
                return "eth-balance", f"ETH balance of {short(address)} ({how})", None
            return "account", f"account {short(address)} ({', '.join(sorted(k[0] for k in keys))})", None
        if subject[0] == "storage":
            return "storage-exists", f"whether {short(address)} has storage", None
        slot = subject[2]
        entry = self.mapping_entry(slot)
        if address in self.tokens and entry is not None:
            holder, base = entry
            role = " (a pool)" if holder in self.pools else ""
            return "erc20-balance", f"ERC-20 balance of {short(holder)}{role} in token {short(address)}", holder
        if address in self.pools and slot < SMALL_SLOT:
            return "pool-reserves", f"reserves of pool {short(address)} (slot {slot})", None
        if entry is not None:
            holder, base = entry
            return "storage", f"mapping entry [{short(holder)}] (base slot {base}) of contract {short(address)}", holder
        where = f"slot {slot}" if slot < SMALL_SLOT else f"slot 0x{slot:064x}"[:22] + "…"
        return "storage", f"{where} of contract {short(address)}", None


def conflicts(graph: Graph, senders: list[bytes], namer: Namer, top: int | None = None) -> list[Conflict]:
    """The block's conflicts, most serialising first."""
    by_subject: dict[Subject, tuple[set[tuple], list[tuple[int, int]]]] = {}
    for j, i, keys in graph.edges():
        for subject in {subject_of(k) for k in keys}:
            entry = by_subject.setdefault(subject, (set(), []))
            entry[0].update(k for k in keys if subject_of(k) == subject)
            entry[1].append((j, i))
    sender_of = dict(enumerate(senders))
    out = []
    for subject, (keys, edges) in by_subject.items():
        kind, description, holder = namer.name(subject, keys, sender_of, edges)
        out.append(Conflict(subject, kind, description, _longest(graph.seconds, edges), len({t for e in edges for t in e}), len(edges), holder))
    out.sort(key=lambda c: (-c.serial_seconds, -c.txs, c.description))
    return out[:top] if top else out


def _longest(seconds: list[float], edges: list[tuple[int, int]]) -> float:
    """The longest chain through `edges` alone (each from an earlier transaction)."""
    preds: dict[int, list[int]] = {}
    for j, i in edges:
        preds.setdefault(i, []).append(j)
    finish: dict[int, float] = {}
    for i in sorted({t for e in edges for t in e}):
        finish[i] = seconds[i] + max((finish[j] for j in preds.get(i, ())), default=0.0)
    return max(finish.values(), default=0.0)


def merge_conflicts(per_block: list[list[Conflict]], top: int) -> list[Conflict]:
    """The file's conflicts: each subject's serialised time and transactions summed
    over the blocks."""
    merged: dict[Subject, Conflict] = {}
    for block in per_block:
        for c in block:
            if c.subject in merged:
                m = merged[c.subject]
                m.serial_seconds += c.serial_seconds
                m.txs += c.txs
                m.edges += c.edges
            else:
                merged[c.subject] = Conflict(c.subject, c.kind, c.description, c.serial_seconds, c.txs, c.edges, c.holder)
    return sorted(merged.values(), key=lambda c: (-c.serial_seconds, -c.txs, c.description))[:top]
