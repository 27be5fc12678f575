"""Predicted access sets, for the `declared` strategy (Solana, Sei v1 style).

Before a block runs, each transaction gets a predicted read set and write set, in
the keys `execution.account_db` records (``("nonce", a)``, ``("slot", a, s)``...):

- what every transaction touches: the sender's nonce and balance, a value
  recipient's balance (a credit);
- its EIP-2930 access list, taken as both read and written (a declaration says
  "touched", not how);
- a call of a contract function not learned yet: a key of its own per contract, so
  such calls run in one chain (conservative until learned);
- what calls of the same contract and function touched before, learned from
  executed transactions as *templates*: a slot is a constant, or a mapping entry
  ``keccak(key ‖ base)`` / ``keccak(base ‖ key)`` (Solidity / Vyper layouts), one
  or two levels deep, whose key is the sender, the called contract or a calldata
  word; an address is the sender, the contract, a calldata word or a constant.

A prediction is only a schedule: transactions whose predictions say that one reads
what another wrote run one after the other in the same worker; validation in block
order still checks every read, so a wrong prediction costs a re-execution, never a
wrong result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from eth_hash.auto import keccak

from state.account import EMPTY_CODE_HASH

#: Calls of one (contract, function) learned from before its templates are trusted.
SAMPLES = 3
#: Mapping base slots tried when explaining a slot (covers simple contracts' layouts).
MAX_BASE_SLOT = 16
#: Calldata words looked at (after the 4-byte selector).
MAX_WORDS = 6
#: Profiles kept (oldest dropped first): a long-running node sees many contracts.
MAX_PROFILES = 20_000

Key = tuple
_UNSET = object()
Source = tuple  # ("sender",) | ("to",) | ("word", k) | ("const", value)


@dataclass
class Prediction:
    reads: set[Key] = field(default_factory=set)
    writes: set[Key] = field(default_factory=set)


@dataclass
class _Profile:
    """What calls of one (contract, selector) touched, as templates."""

    samples: int = 0
    reads: set[tuple] = field(default_factory=set)
    writes: set[tuple] = field(default_factory=set)


def _words(sender: bytes, to: bytes, data: bytes) -> dict[Source, bytes]:
    """The 32-byte values a key may be derived from."""
    words: dict[Source, bytes] = {("sender",): sender.rjust(32, b"\0"), ("to",): to.rjust(32, b"\0")}
    for k in range(min(MAX_WORDS, (len(data) - 4) // 32)):
        words[("word", k)] = data[4 + 32 * k : 36 + 32 * k]
    return words


def _address_of(source: Source, words: dict[Source, bytes]) -> bytes | None:
    if source[0] == "const":
        return source[1]
    word = words.get(source)
    if word is None or any(word[:12]):
        return None
    return word[12:]


def _slot_of(source: tuple, words: dict[Source, bytes]) -> int | None:
    kind = source[0]
    if kind == "const":
        return source[1]
    if kind == "map":
        _, key_source, base, key_first = source
        inner = _map_value(words.get(key_source), base.to_bytes(32, "big"), key_first)
    else:  # "map2": outer key over an inner mapping entry
        _, outer_source, inner_source, base, outer_first, inner_first = source
        inner_entry = _map_value(words.get(inner_source), base.to_bytes(32, "big"), inner_first)
        inner = _map_value(words.get(outer_source), inner_entry, outer_first) if inner_entry else None
    return None if inner is None else int.from_bytes(inner, "big")


def _map_value(key: bytes | None, base: bytes, key_first: bool) -> bytes | None:
    if key is None:
        return None
    return keccak(key + base) if key_first else keccak(base + key)


def _explain_slots(words: dict[Source, bytes]) -> dict[int, tuple]:
    """Every mapping slot the words could address, one and two levels deep."""
    level1: dict[bytes, tuple] = {}
    for source, word in words.items():
        for base in range(MAX_BASE_SLOT):
            base_bytes = base.to_bytes(32, "big")
            level1.setdefault(keccak(word + base_bytes), ("map", source, base, True))
            level1.setdefault(keccak(base_bytes + word), ("map", source, base, False))
    explained = {int.from_bytes(v, "big"): s for v, s in level1.items()}
    for inner, (_, inner_source, base, inner_first) in level1.items():
        for source, word in words.items():
            for outer_first in (True, False):
                value = int.from_bytes(keccak(word + inner) if outer_first else keccak(inner + word), "big")
                explained.setdefault(value, ("map2", source, inner_source, base, outer_first, inner_first))
    return explained


class AccessPredictor:
    """Learns templates from executed transactions; predicts access sets."""

    def __init__(self) -> None:
        self._profiles: dict[tuple[bytes, bytes], _Profile] = {}

    @staticmethod
    def _profile_key(tx: Any) -> tuple[bytes, bytes] | None:
        if not tx.to:
            return None
        return tx.to, bytes(tx.data[:4])

    def predict(self, tx: Any, sender: bytes) -> Prediction:
        prediction = Prediction()
        prediction.reads.update({("nonce", sender), ("balance", sender)})
        prediction.writes.update({("nonce", sender), ("balance", sender)})
        if tx.to and tx.value:
            prediction.writes.add(("balance", tx.to))
        for address, slots in getattr(tx, "access_list", ()) or ():
            keys = {("slot", address, slot) for slot in slots} | {("balance", address)}
            prediction.reads.update(keys)
            prediction.writes.update(keys)
        key = self._profile_key(tx)
        profile = self._profiles.get(key) if key else None
        if profile is not None and profile.samples:
            words = _words(sender, tx.to, bytes(tx.data))
            prediction.reads.update(_resolve(profile.reads, words))
            prediction.writes.update(_resolve(profile.writes, words))
        elif key is not None and tx.data:
            # A call of a function not learned yet: assume it conflicts with every
            # other such call of the contract (they run in one chain) until it is.
            unknown = ("unlearned", tx.to)
            prediction.reads.add(unknown)
            prediction.writes.add(unknown)
        return prediction

    def wants(self, tx: Any) -> bool:
        """Whether this transaction's reads and writes would teach anything."""
        key = self._profile_key(tx)
        return key is not None and self._profiles.get(key, _Profile()).samples < SAMPLES

    def learn(self, tx: Any, sender: bytes, reads: dict[Key, Any], writes: dict[Key, Any], fee_recipient: bytes) -> int:
        """Add an executed call's keys to its (contract, selector) profile. The fee
        recipient's balance is left out: speculation credits it without a read (a
        transaction executed again in block order reads and writes it)."""
        key = self._profile_key(tx)
        if key is None:
            return 0
        no_code = reads.get(("code", tx.to)) == EMPTY_CODE_HASH
        if no_code and not tx.data:
            return 0  # a plain transfer to an account without code: nothing to learn
        profile = self._profiles.get(key)
        if profile is None:
            if len(self._profiles) >= MAX_PROFILES:
                del self._profiles[next(iter(self._profiles))]
            profile = self._profiles[key] = _Profile()
        if profile.samples >= SAMPLES:
            return 0
        if no_code:  # data sent to an account without code: a transfer, nothing to learn
            profile.samples = SAMPLES
            return 1
        words = _words(sender, tx.to, bytes(tx.data))
        addresses = {}
        for source, word in words.items():
            if not any(word[:12]):
                addresses.setdefault(word[12:], source)
        slots = _explain_slots(words)
        # A write of the value the transaction read changes nothing another transaction
        # could read; nor does touching an account with code (it existed already).
        changed = {
            key: value
            for key, value in writes.items()
            if reads.get(key, _UNSET) != value and not (key[0] == "exists" and reads.get(("code", key[1]), EMPTY_CODE_HASH) != EMPTY_CODE_HASH)
        }
        profile.reads.update(_templates(reads, addresses, slots, fee_recipient))
        profile.writes.update(_templates(changed, addresses, slots, fee_recipient))
        profile.samples += 1
        return 1


def _templates(keys: dict[Key, Any], addresses: dict[bytes, Source], slots: dict[int, tuple], fee_recipient: bytes) -> Iterator[tuple]:
    for key in keys:
        kind = key[0]
        if kind not in ("nonce", "balance", "code", "exists", "slot", "credit"):
            continue
        if key[1] == fee_recipient and kind in ("balance", "credit", "exists"):
            continue
        if kind == "credit":
            kind = "balance"
        address_source = addresses.get(key[1], ("const", key[1]))
        if kind == "slot":
            yield kind, address_source, slots.get(key[2], ("const", key[2]))
        else:
            yield kind, address_source, None


def _resolve(templates: set[tuple], words: dict[Source, bytes]) -> Iterator[Key]:
    for kind, address_source, slot_source in templates:
        address = _address_of(address_source, words)
        if address is None:
            continue
        if kind != "slot":
            yield kind, address
            continue
        slot = _slot_of(slot_source, words)
        if slot is not None:
            yield kind, address, slot


def schedule_chains(predictions: list[Prediction]) -> list[int]:
    """Chain id per transaction: transactions are in one chain when, by prediction,
    one reads what an earlier one writes (directly or through others). The id is the
    chain's first transaction; chains are in block order within."""
    parent = list(range(len(predictions)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Writers since the key was last read: blind writes (credits) commute with each
    # other, so only a reader joins them, all of them, into its chain.
    writers: dict[Key, list[int]] = {}
    for j, prediction in enumerate(predictions):
        for key in prediction.reads:
            for i in writers.get(key, ()):
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if key in writers:
                writers[key] = [j]
        for key in prediction.writes:
            pending = writers.setdefault(key, [])
            if not pending or pending[-1] != j:
                pending.append(j)
    return [find(j) for j in range(len(predictions))]
