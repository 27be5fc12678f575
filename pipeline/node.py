"""Assemble the five stages over one store: what `blocktest`, `replay` and `node` share."""
from __future__ import annotations

from pipeline.chain import Chain
from pipeline.stage import Stage
from stages.commit import CommitStage
from stages.execute import ExecuteStage, ExecutionStrategy
from stages.merkleize import MerkleizeStage
from stages.prefetch import PrefetchStage
from stages.validate import ValidateStage


def build_stages(chain: Chain, strategy: ExecutionStrategy | None = None) -> list[Stage]:
    """prefetch -> execute -> validate -> merkleize -> commit, in that order."""
    return [
        PrefetchStage(chain),
        ExecuteStage(chain, strategy),
        ValidateStage(),
        MerkleizeStage(chain),
        CommitStage(chain),
    ]
