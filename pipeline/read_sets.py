"""Predicted read sets: the keys a block will read and write, known before it executes.

Every source is cheap (no EVM run); each key says which source predicted it first:

- ``base``: every sender and recipient, the fee recipient, the withdrawal targets
  (and their code, once their accounts are read);
- ``access_list``: EIP-2930 access lists, accounts and slots;
- ``authority``: EIP-7702 authorizations: the authority (recovered from the
  authorization's signature) and the delegate it points at;
- ``template``: the learned templates of `execution.predict` (the `declared`
  strategy's), for every strategy: calls of a function seen before read the same
  slots of the same mappings, keyed by the sender, the contract or a calldata word
  (token balances and allowances of the parties, pool reserves). Prefetch keys
  them by the called contract's *code* and selector (`CodePredictor`), not its
  address: every token deployed from one code shares what any of them taught, so
  the long tail of rarely called tokens is predicted too;
- ``hot``: keys that at least two of the last few blocks read (a pool's reserves,
  a token's total supply, the system contracts' slots);
- ``prerun`` (``--prefetch-run``): the keys the transactions no template covers
  (creations, calls of functions not learned yet) read and wrote when run ahead on
  a worker against the committed state (`pipeline.prerun`).

A prediction only decides what is read early: a wrong key costs one wasted read, a
missed key one read on demand; no result depends on it.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import rlp
from eth_keys.datatypes import Signature

from execution.predict import AccessPredictor

#: blocks whose reads make the hot set, and how many of them must have read a key
HOT_BLOCKS = 4
HOT_MIN = 2
#: the hot set is bounded (most recently counted kept)
HOT_MAX = 4096
_SET_CODE_MAGIC = b"\x05"

Slot = tuple[bytes, int]


@dataclass
class ReadSet:
    """Accounts and slots a block is predicted to read, those it is predicted to write
    (their trie paths are warmed for merkleization), and the source of each key."""

    accounts: set[bytes] = field(default_factory=set)
    slots: set[Slot] = field(default_factory=set)
    written_accounts: set[bytes] = field(default_factory=set)
    written_slots: set[Slot] = field(default_factory=set)
    sources: Counter[str] = field(default_factory=Counter)

    def account(self, address: bytes, source: str, *, written: bool = False) -> None:
        if address not in self.accounts:
            self.accounts.add(address)
            self.sources[source] += 1
        if written:
            self.written_accounts.add(address)

    def slot(self, address: bytes, slot: int, source: str, *, written: bool = False) -> None:
        self.account(address, source)
        key = (address, slot)
        if key not in self.slots:
            self.slots.add(key)
            self.sources[source] += 1
        if written:
            self.written_slots.add(key)
            self.written_accounts.add(address)

    def __len__(self) -> int:
        return len(self.accounts) + len(self.slots)


def authority(auth: Any) -> bytes | None:
    """The account an EIP-7702 authorization speaks for (None: its signature does not
    recover, and execution will skip it)."""
    try:
        message = _SET_CODE_MAGIC + rlp.encode([auth.chain_id, auth.address, auth.nonce])
        signature = Signature(vrs=(auth.y_parity, auth.r, auth.s))
        return bytes(signature.recover_public_key_from_msg(message).to_canonical_address())
    except Exception:  # eth-keys raises several types for bad signatures
        return None


class HotKeys:
    """Keys read by at least `HOT_MIN` of the last `HOT_BLOCKS` executed blocks."""

    def __init__(self) -> None:
        self._recent: deque[tuple[frozenset[bytes], frozenset[Slot]]] = deque(maxlen=HOT_BLOCKS)

    def add_block(self, accounts: Iterable[bytes], slots: Iterable[Slot]) -> None:
        self._recent.append((frozenset(accounts), frozenset(slots)))

    def keys(self) -> tuple[list[bytes], list[Slot]]:
        accounts: Counter[bytes] = Counter()
        slots: Counter[Slot] = Counter()
        for a, s in self._recent:
            accounts.update(a)
            slots.update(s)
        hot_accounts = [k for k, n in accounts.items() if n >= HOT_MIN][:HOT_MAX]
        hot_slots = [k for k, n in slots.items() if n >= HOT_MIN][:HOT_MAX]
        return hot_accounts, hot_slots


class CodePredictor(AccessPredictor):
    """`AccessPredictor` with profiles keyed by (code hash, selector): templates name
    the called contract as "to", so they carry over to every contract with its code.
    `code_of` says which code an address has (filled before `predict`/`learn`)."""

    def __init__(self) -> None:
        super().__init__()
        self.code_of: dict[bytes, bytes] = {}

    def _profile_key(self, tx: Any) -> tuple[bytes, bytes] | None:  # type: ignore[override]
        if not tx.to:
            return None
        return self.code_of.get(tx.to, tx.to), bytes(tx.data[:4])

    def learn_block(self, transactions: Sequence[Any], senders: Sequence[bytes | None], results: Sequence[Any], fee_recipient: bytes) -> None:
        """Learn from an executed block's transactions (the code each called: read
        by the transaction itself)."""
        for tx, sender, result in zip(transactions, senders, results):
            if sender is None or not tx.to:
                continue
            code = result.reads.get(("code", tx.to))
            if isinstance(code, bytes):
                self.code_of[tx.to] = code
            if self.wants(tx):
                self.learn(tx, sender, result.reads, result.writes, fee_recipient)
        if len(self.code_of) > 200_000:
            self.code_of.clear()


def add_templates(reads: ReadSet, block: Any, senders: Sequence[bytes | None], predictor: CodePredictor, code_of: dict[bytes, bytes]) -> None:
    """The template keys of every call, once the called accounts (their code hashes,
    `code_of`) are known."""
    if len(senders) != len(block.transactions):
        return
    predictor.code_of.update(code_of)
    for tx, sender in zip(block.transactions, senders):
        if sender is None or not tx.to or not tx.data:
            continue
        prediction = predictor.predict(tx, sender)
        for key in prediction.reads | prediction.writes:
            if key[0] == "slot":
                reads.slot(key[1], key[2], "template", written=key in prediction.writes)
            elif key[0] in ("nonce", "balance", "code", "exists"):
                reads.account(key[1], "template", written=key in prediction.writes)


#: the keys of a pre-run's results that name an account (the rest: slots, and the
#: warm/wipe markers, which read nothing)
_ACCOUNT_KINDS = frozenset({"nonce", "balance", "code", "exists", "has_storage", "credit", "account"})


def add_prerun(reads: ReadSet, results: Iterable[Any]) -> None:
    """The keys pre-run transactions (`pipeline.prerun`) read and wrote."""
    for result in results:
        for keys, written in ((result.reads, False), (result.writes, True)):
            for key in keys:
                if key[0] == "slot":
                    reads.slot(key[1], key[2], "prerun", written=written)
                elif key[0] in _ACCOUNT_KINDS:
                    reads.account(key[1], "prerun", written=written)


def predict_reads(block: Any, senders: Sequence[bytes | None], hot: HotKeys | None) -> ReadSet:
    """Every cheap prediction for `block` but the templates, which need the called
    accounts' code first (`add_templates`). Senders: recovered, or empty when the
    strategy's workers recover them later: then the sender-based keys are missing."""
    reads = ReadSet()
    header = block.header
    reads.account(header.coinbase, "base", written=True)
    for withdrawal in getattr(block, "withdrawals", ()) or ():
        reads.account(withdrawal.address, "base", written=True)
    known = len(senders) == len(block.transactions)
    for index, tx in enumerate(block.transactions):
        sender = senders[index] if known else None
        if sender is not None:
            reads.account(sender, "base", written=True)
        if tx.to:
            reads.account(tx.to, "base", written=bool(tx.value))
        for address, slots in _field(tx, "access_list"):
            reads.account(address, "access_list")
            for slot in slots:
                reads.slot(address, slot, "access_list")
        for auth in _field(tx, "authorization_list"):
            reads.account(auth.address, "authority")
            signer = authority(auth)
            if signer is not None:
                reads.account(signer, "authority", written=True)
    if hot is not None:
        hot_accounts, hot_slots = hot.keys()
        for address in hot_accounts:
            reads.account(address, "hot")
        for address, slot in hot_slots:
            reads.slot(address, slot, "hot")
    return reads


def _field(tx: Any, name: str) -> Sequence[Any]:
    """A transaction field that older transaction types lack (py-evm raises
    NotImplementedError or AttributeError for them)."""
    try:
        return getattr(tx, name) or ()
    except (AttributeError, NotImplementedError):
        return ()


def executed_keys(tx_results: Iterable[Any]) -> tuple[set[bytes], set[Slot]]:
    """The accounts and slots an executed block's transactions read."""
    accounts: set[bytes] = set()
    slots: set[Slot] = set()
    for result in tx_results:
        for key in result.reads:
            if key[0] == "slot":
                slots.add((key[1], key[2]))
            elif key[0] in ("nonce", "balance", "code", "exists"):
                accounts.add(key[1])
    return accounts, slots
