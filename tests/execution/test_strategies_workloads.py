"""Every strategy against sequential and against py-evm, on the shared workloads.

Each workload file (sealed by py-evm: its headers carry py-evm's state roots,
receipts roots and gas) is converted to a native block file and replayed with each
strategy and `--verify` (every block also executed sequentially and compared). The
pipeline rejects any block whose roots differ from the header, so a clean replay
means: the same result as sequential, and as py-evm, block by block.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from consensus_stub.convert import blocktest_to_native
from execution.strategies import STRATEGIES, AutoStrategy
from execution.workers import WorkerPool
from tests.replay_check import replay_verified

WORKLOADS = Path(__file__).resolve().parents[2].parent / "shared" / "workloads"
FILES = sorted(p.name for p in WORKLOADS.glob("*_b4_t250_s1.json.gz")) + ["amm_b2_t200_s3_pools1.json.gz", "transfers-hot_b2_t500_s3_hot90.json.gz"]


@pytest.fixture(scope="module")
def pool():  # type: ignore[no-untyped-def]
    with WorkerPool(2) as workers:
        yield workers


@pytest.mark.skipif(not WORKLOADS.is_dir(), reason="../shared/workloads is not present")
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", FILES)
def test_strategy_replays_workload(name: str, strategy: str, pool: WorkerPool, tmp_path: Path) -> None:
    native = tmp_path / "blocks"
    summary = blocktest_to_native(WORKLOADS / name, native)
    executed = replay_verified(native, tmp_path / "db", strategy, pool, summary.blocks)
    if strategy == "optimistic":
        assert all(e.counts.get("strategy") == "optimistic" for e in executed)
    if strategy == "declared":
        # After the first block has taught the predictor the contracts' layouts,
        # every dependency in these workloads is predicted: nothing runs twice.
        later = executed[1:]
        assert [e.counts.get("reexecuted") for e in later] == [0] * len(later)
    if strategy == "auto":
        chosen = [e.counts.get("strategy") for e in executed]
        if name.startswith("transfers"):
            # plain transfers with two workers: sequential, senders recovered ahead
            assert chosen == ["auto:sequential:light"] * len(chosen)
        elif name.startswith("erc20"):
            # the first block is predicted independent: the rest run optimistically
            assert chosen == ["auto:declared"] + ["auto:optimistic"] * (len(chosen) - 1)
        else:
            assert "auto:optimistic" not in chosen


@pytest.mark.skipif(not WORKLOADS.is_dir(), reason="../shared/workloads is not present")
def test_auto_goes_back_to_declared_when_an_optimistic_block_conflicts(pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` as if the block before had been predicted independent, on AMM swaps:
    the first block runs optimistically, re-executes most swaps, and the next is
    scheduled by prediction again."""
    original = AutoStrategy.__init__

    def after_an_independent_block(self: AutoStrategy, workers: WorkerPool) -> None:
        original(self, workers)
        self._independent = True

    monkeypatch.setattr(AutoStrategy, "__init__", after_an_independent_block)
    native = tmp_path / "blocks"
    summary = blocktest_to_native(WORKLOADS / "amm_b4_t250_s1.json.gz", native)
    executed = replay_verified(native, tmp_path / "db", "auto", pool, summary.blocks)
    chosen = [e.counts.get("strategy") for e in executed]
    assert chosen[0] == "auto:optimistic" and executed[0].counts["reexecuted"] > 0.05 * 250
    assert chosen[1:] == ["auto:declared"] * 3
