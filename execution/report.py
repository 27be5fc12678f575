"""What a strategy reports about one block it executed: a frozen record.

The execute stage turns it into the block's event figures; `auto` decides the next
block from it. Nobody else writes it, so nothing is shared through a metrics dict.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ExecutionReport:
    strategy: str
    reexecuted: int = 0  # transactions executed again after validation failed
    top_conflicts: tuple[tuple[str, int], ...] = ()  # the keys that conflicted most
    worker_cpu: float = 0.0  # CPU seconds the worker processes spent on the block
    chains: int = 0  # declared: chains scheduled, and the longest one
    longest_chain: int = 0
    predicted_dependent: int = 0  # declared: transactions in a chain of two or more
    sampled: int = 0  # declared: calls speculated first to learn their layout
    learned: int = 0  # transactions the predictor learned from
    verified: bool = False  # --verify: the sequential result was identical
    fallback: str = ""  # why the block ran sequentially instead (a hung worker...)
    speculated: bool = False  # its transactions ran in the workers, then were validated

    def but(self, **changes: Any) -> ExecutionReport:
        """A copy with `changes` (a wrapper adding what it knows)."""
        return replace(self, **changes)

    def counts(self) -> dict[str, Any]:
        """The figures for the execute stage's event (zeros left out)."""
        out: dict[str, Any] = {"strategy": self.strategy}
        for name in ("reexecuted", "worker_cpu", "chains", "longest_chain", "sampled", "learned"):
            value = getattr(self, name)
            if value:
                out[name] = round(value, 6) if isinstance(value, float) else value
        if self.speculated:
            out.setdefault("reexecuted", self.reexecuted)
            out["conflicts"] = self.reexecuted
        if self.top_conflicts:
            out["top_conflicts"] = ";".join(f"{label}x{n}" for label, n in self.top_conflicts)
        if self.verified:
            out["verified"] = 1
        if self.fallback:
            out["fallback"] = self.fallback
        return out
