"""The dependency graph of one block's transactions, and its critical path.

Transaction B depends on an earlier A when B reads a key whose value A changed (read
after write), in the keys `execution.account_db` records: ``("nonce", a)``,
``("balance", a)``, ``("code", a)``, ``("exists", a)``, ``("slot", a, s)``,
``("has_storage", a)``. This is what in-order validation checks
(`execution.strategies.validate_in_order`): a speculative result is re-executed
exactly when one of its reads changed before it.

Credits are commutative, as in validation: a fee or value credit recorded as
``("credit", a)`` (the execution ran with deferred credits) changes the balance, but
two credits never depend on each other; only a transaction that really reads the
balance afterwards depends on every credit since the balance was last read and
written. A write that leaves a value as it was (an account that existed being
"touched") is no change and makes no edge.

Plain data in, plain data out: the functions here know nothing of py-evm, so tests
build graphs by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from state.account import EMPTY_CODE_HASH

Key = tuple
_UNKNOWN = object()
_ACCOUNT_FIELDS = ("nonce", "balance", "code", "exists")


@dataclass
class TxAccess:
    """What one transaction did: its measured time, what it read (key -> value seen
    at its start) and what it wrote (key -> final value; ``("credit", a)`` -> amount;
    ``("wipe", a)`` -> True)."""

    seconds: float
    reads: dict[Key, Any] = field(default_factory=dict)
    writes: dict[Key, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """`preds[i]`: the earlier transactions `i` depends on, each with the keys that
    make the dependency. `system[i]`: keys `i` read that the block's system writes
    (before the first transaction) changed: no scheduling edge, but a speculative
    execution against the pre-block state saw the old value."""

    seconds: list[float]
    preds: list[dict[int, set[Key]]]
    system: list[set[Key]]

    @property
    def size(self) -> int:
        return len(self.seconds)

    def succs(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.seconds]
        for i, preds in enumerate(self.preds):
            for j in preds:
                out[j].append(i)
        return out

    def edges(self) -> Iterable[tuple[int, int, set[Key]]]:
        for i, preds in enumerate(self.preds):
            for j, keys in sorted(preds.items()):
                yield j, i, keys

    @property
    def total(self) -> float:
        return sum(self.seconds)

    def dependent(self) -> int:
        """Transactions with at least one dependency on an earlier one."""
        return sum(1 for preds in self.preds if preds)


def _affected(key: Key, value: Any) -> list[Key]:
    """The read keys whose value a write changes."""
    kind, address = key[0], key[1]
    if kind == "credit":
        return [("balance", address), ("exists", address)]
    if kind == "wipe":
        return [("wipe", address), ("has_storage", address)]
    if kind == "slot":
        return [key, ("has_storage", address)]
    if kind == "exists" and value is False:  # deleted: every field, and its storage
        return [(f, address) for f in _ACCOUNT_FIELDS] + [("wipe", address), ("has_storage", address)]
    return [key]


def _existed(reads: dict[Key, Any], address: bytes) -> bool | None:
    """Whether the account existed at the transaction's start, where its reads tell."""
    exists = reads.get(("exists", address))
    if exists is not None:
        return bool(exists)
    if reads.get(("nonce", address), 0) or reads.get(("balance", address), 0):
        return True
    code = reads.get(("code", address))
    if code is not None and code != EMPTY_CODE_HASH:
        return True
    return None


def changed_keys(access: TxAccess, known: dict[Key, Any]) -> dict[Key, list[Key]]:
    """The writes of `access` that change a value, each with the read keys it
    changes, given what the block's state is known to hold (`known`, updated in
    place)."""
    for key, value in access.reads.items():  # the state at the transaction's start
        known[key] = value
        if key[0] in ("nonce", "balance", "code") and _existed(access.reads, key[1]):
            known[("exists", key[1])] = True
    out: dict[Key, Any] = {}
    for key, value in access.writes.items():
        kind = key[0]
        if kind == "credit":
            if value:
                # the balance changes; existence only where it was not known to hold
                existed = known.get(("exists", key[1])) is True
                out[key] = [("balance", key[1])] if existed else _affected(key, value)
                known[("balance", key[1])] = _UNKNOWN
                known[("exists", key[1])] = True
            continue
        if kind == "wipe":
            out[key] = _affected(key, value)
            continue
        before = known.get(key, access.reads.get(key, _UNKNOWN))
        if kind == "exists" and before is _UNKNOWN and value is True:
            existed = _existed(access.reads, key[1])
            before = _UNKNOWN if existed is None else existed
        if before is _UNKNOWN or before != value:
            out[key] = _affected(key, value)
        known[key] = value
    return out


def build_graph(txs: list[TxAccess], system_writes: dict[Key, Any] | None = None) -> Graph:
    """Read-after-write dependencies between `txs` (in block order).

    A reader depends on the last transaction that read and changed the key, and on
    every blind writer (credit) after it: blind writers commute among themselves."""
    pending: dict[Key, list[int]] = {}  # read key -> writers a reader of it waits for
    known: dict[Key, Any] = {}
    system_changed = set()
    for key, value in (system_writes or {}).items():
        system_changed.update(_affected(key, value))
    preds: list[dict[int, set[Key]]] = []
    system: list[set[Key]] = []
    for i, access in enumerate(txs):
        mine: dict[int, set[Key]] = {}
        seen_system: set[Key] = set()
        for key in access.reads:
            lookups = [key]
            if key[0] in ("slot", "has_storage"):
                lookups.append(("wipe", key[1]))
            for lookup in lookups:
                for j in pending.get(lookup, ()):
                    mine.setdefault(j, set()).add(key)
                if lookup in system_changed and lookup not in pending:
                    seen_system.add(key)
        preds.append(mine)
        system.append(seen_system)
        for key, targets in changed_keys(access, known).items():
            blind = key[0] == "credit"  # commutes with other credits; anything else replaces
            for target in targets:
                if blind:
                    writers = pending.setdefault(target, [])
                    if not writers or writers[-1] != i:
                        writers.append(i)
                else:
                    pending[target] = [i]
    return Graph([t.seconds for t in txs], preds, system)


def critical_path(graph: Graph) -> tuple[float, list[int]]:
    """The longest dependent chain by time: its seconds, and its transactions in
    block order. No schedule, on any number of cores, finishes the block's
    transactions sooner."""
    if not graph.size:
        return 0.0, []
    finish = [0.0] * graph.size
    via: list[int | None] = [None] * graph.size
    for i, preds in enumerate(graph.preds):
        best, best_j = 0.0, None
        for j in preds:
            if finish[j] > best:
                best, best_j = finish[j], j
        finish[i] = best + graph.seconds[i]
        via[i] = best_j
    end = max(range(graph.size), key=lambda i: finish[i])
    path = [end]
    while via[path[-1]] is not None:
        path.append(via[path[-1]])  # type: ignore[arg-type]
    return finish[end], path[::-1]


def bottom_levels(graph: Graph) -> list[float]:
    """Longest time from each transaction's start to the end of the block's
    transactions: the priority of a list scheduler that knows the graph."""
    succs = graph.succs()
    level = [0.0] * graph.size
    for i in range(graph.size - 1, -1, -1):
        level[i] = graph.seconds[i] + max((level[k] for k in succs[i]), default=0.0)
    return level
