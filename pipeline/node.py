"""Assemble the five stages over one chain: what `blocktest`, `replay` and `node` share."""
from __future__ import annotations

from execution.strategies import ExecutionStrategy
from pipeline.chain import ChainState
from pipeline.stage import Stage
from stages.commit import CommitStage
from stages.execute import ExecuteStage
from stages.merkleize import MerkleizeStage
from stages.prefetch import PrefetchOptions, PrefetchStage, open_reader_pool
from stages.validate import ValidateStage


def build_stages(chain: ChainState, strategy: ExecutionStrategy | None = None, max_in_flight: int | None = None, prefetch: PrefetchOptions = PrefetchOptions()) -> list[Stage]:
    """prefetch -> execute -> validate -> merkleize -> commit, in that order. When the
    strategy speculates in worker processes, senders are recovered there: during
    speculation (optimistic), or by prefetch through the strategy (declared, auto).
    `max_in_flight=1` executes a block only once the previous one is committed (one
    block at a time, for comparison). Prefetch and merkleize share one pool of
    reader threads (`prefetch`: `--no-prefetch`, `--prefetch-threads`), closed with
    the store."""
    pool = open_reader_pool(chain, prefetch)
    return [
        PrefetchStage(chain, strategy, prefetch, pool),
        ExecuteStage(chain, strategy, max_in_flight),
        ValidateStage(),
        MerkleizeStage(chain, pool, trie_paths=prefetch.trie_paths),
        CommitStage(chain),
    ]
