"""Assemble the five stages over one chain: what `blocktest`, `replay` and `node` share."""
from __future__ import annotations

from execution.strategies import ExecutionStrategy
from pipeline.chain import ChainState
from pipeline.stage import Stage
from stages.commit import CommitStage
from stages.execute import ExecuteStage
from stages.merkleize import MerkleizeStage
from stages.prefetch import PrefetchStage
from stages.validate import ValidateStage


def build_stages(chain: ChainState, strategy: ExecutionStrategy | None = None, max_in_flight: int | None = None) -> list[Stage]:
    """prefetch -> execute -> validate -> merkleize -> commit, in that order. When the
    strategy speculates in worker processes, senders are recovered there: during
    speculation (optimistic), or by prefetch through the strategy (declared, auto).
    `max_in_flight=1` executes a block only once the previous one is committed (one
    block at a time, for comparison)."""
    return [
        PrefetchStage(chain, strategy),
        ExecuteStage(chain, strategy, max_in_flight),
        ValidateStage(),
        MerkleizeStage(chain),
        CommitStage(chain),
    ]
