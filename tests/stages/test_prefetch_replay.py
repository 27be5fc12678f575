"""Prefetching never changes a result: replays over a generated state reach every
sealed root with prefetch on, off, on one thread, with the trie layout, and with
predictions made wrong, incomplete or padded with keys no one reads (hypothesis)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stages.prefetch as prefetch_stage
from evmpipe.gen.genstate import build_state
from evmpipe.gen.overstate import generate_over_state
from evmpipe.gen.shape import StateShape
from evmpipe.replay import replay_file
from evmpipe.trace_summary import load_slices
from pipeline.prerun import PRERUN_DEADLINE, PreRun
from pipeline.read_sets import ReadSet
from pipeline.state_options import StateOptions, state_reads_metrics

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = 4


@pytest.fixture(scope="module")
def state_and_blocks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("prefetch")
    build_state(folder / "d", StateShape(accounts=3000, seed=3), progress=False)
    generate_over_state(folder / "d", "mixed", BLOCKS, 30, 2, folder / "mixed.blocks")
    return folder / "d", folder / "mixed.blocks"


def _replay(state: tuple[Path, Path], tmp_path: Path, options: StateOptions) -> Any:
    datadir, blocks = state
    copy = tmp_path / f"d{random.randrange(1 << 30)}"
    shutil.copytree(datadir, copy)
    outcome = replay_file(str(blocks), str(copy), synchronous="OFF", state_options=options)
    shutil.rmtree(copy)
    return outcome


@pytest.mark.parametrize(
    "flags",
    [[], ["--no-prefetch"], ["--prefetch-threads", "1", "--no-trie-prefetch", "--prefetch-run", "--cold"], ["--layout", "trie", "--cold"]],
    ids=["prefetch", "no-prefetch", "one-thread-prerun-cold", "trie-cold"],
)
def test_replay_reaches_every_root(state_and_blocks: tuple[Path, Path], tmp_path: Path, flags: list[str]) -> None:
    datadir, blocks = state_and_blocks
    copy = tmp_path / "d"
    shutil.copytree(datadir, copy)
    out = tmp_path / "summary.json"
    trace = tmp_path / "trace.json"
    result = subprocess.run([sys.executable, "-m", "evmpipe", "replay", str(blocks), "--datadir", str(copy), "--json", str(out), "--trace", str(trace), *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["last_block"] == BLOCKS  # replay checks every block's state root
    prefetch = summary["state_reads"]["prefetch"]
    read_ahead = sum(prefetch[kind]["prefetched"] for kind in ("account", "slot", "code", "node"))
    if "--no-prefetch" in flags:
        assert read_ahead == 0
    else:
        assert read_ahead > 0 and prefetch["account"]["hit"] > 0
        assert "served from memory" in result.stderr
        assert any(s.stage.startswith("reader ") for s in load_slices(trace))  # the pool's tracks
    per_block = summary["state_reads_per_block"]
    assert len(per_block) == BLOCKS and all("prefetch" in b for b in per_block)


def test_bad_thread_count_is_refused() -> None:
    import argparse

    from pipeline.state_options import add_state_arguments

    parser = argparse.ArgumentParser()
    add_state_arguments(parser)
    with pytest.raises(SystemExit, match="--prefetch-threads must be at least 1"):
        StateOptions.from_args(parser.parse_args(["--prefetch-threads", "0"]))
    options = StateOptions.from_args(parser.parse_args(["--no-prefetch", "--prefetch-threads", "2"]))
    assert not options.prefetch and options.prefetch_options().threads == 2


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drop=st.floats(0.0, 1.0), extra=st.integers(0, 300), seed=st.integers(0, 2**32 - 1), threads=st.integers(1, 4), prerun=st.booleans())
def test_wrong_missing_and_extra_predictions_change_nothing(
    state_and_blocks: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: float, extra: int, seed: int, threads: int, prerun: bool
) -> None:
    """Predictions are perturbed where they are made: a share dropped (missing), keys
    of other accounts and made-up slots added (wrong, extra), and written keys
    shuffled (trie paths of the wrong keys); with the pre-run too, its keys. Every
    root is still reached."""
    rng = random.Random(seed)
    seen_accounts: list[bytes] = []
    real_predict, real_templates = prefetch_stage.predict_reads, prefetch_stage.add_templates

    def perturb(reads: ReadSet) -> None:
        seen_accounts.extend(reads.accounts)
        reads.accounts = {a for a in reads.accounts if rng.random() >= drop}
        reads.slots = {k for k in reads.slots if rng.random() >= drop}
        for _ in range(extra):
            address = rng.choice(seen_accounts) if seen_accounts and rng.random() < 0.7 else rng.randbytes(20)
            if rng.random() < 0.5:
                reads.accounts.add(address)
            else:
                reads.slots.add((address, rng.choice([0, 1, 2, rng.getrandbits(256)])))
        pool = list(reads.accounts)
        reads.written_accounts = set(rng.sample(pool, min(len(pool), len(reads.written_accounts))))
        reads.written_slots |= {k for k in reads.slots if rng.random() < 0.3}

    def predict(*args: Any) -> ReadSet:
        reads = real_predict(*args)
        perturb(reads)
        return reads

    def templates(reads: ReadSet, *args: Any) -> None:
        real_templates(reads, *args)
        perturb(reads)

    real_prerun = prefetch_stage.add_prerun
    prerun_results: list[int] = []

    def prerun_keys(reads: ReadSet, results: Any) -> None:
        prerun_results.append(len(results))
        real_prerun(reads, results)
        perturb(reads)

    monkeypatch.setattr(prefetch_stage, "predict_reads", predict)
    monkeypatch.setattr(prefetch_stage, "add_templates", templates)
    monkeypatch.setattr(prefetch_stage, "add_prerun", prerun_keys)
    outcome = _replay(state_and_blocks, tmp_path, StateOptions(prefetch_threads=threads, prefetch_run=prerun))
    assert outcome.rejected is None and outcome.input_error is None
    assert outcome.last == BLOCKS
    if prerun:  # the first block's creations and calls were pre-run (later blocks' may end with the run)
        assert sum(prerun_results) > 0


def test_a_crashed_or_late_prerun_worker_is_replaced_and_the_blocks_go_on(state_and_blocks: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-run's rare paths: its worker dies (block 1), then misses its deadline
    (block 2). Each time it is replaced, the block goes on without the pre-run's
    keys, every root is reached, and the failure is counted: on the prefetch event,
    in the run's reads (summary, bench JSON) and in /metrics."""
    datadir, blocks = state_and_blocks
    copy = tmp_path / "d"
    shutil.copytree(datadir, copy)
    real_run = PreRun.run
    seen: list[PreRun] = []

    async def failing_run(self: PreRun, chain: Any, header: Any, *args: Any) -> Any:
        seen.append(self)
        if len(seen) == 1:  # the worker dies before the request reaches it
            await trio.to_thread.run_sync(self._start_worker)
            process = self.pool._procs[0]
            os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=10)
        elif len(seen) == 2:  # the worker does not answer in time
            self.pool.request_deadline = 1e-4
        try:
            return await real_run(self, chain, header, *args)
        finally:
            self.pool.request_deadline = PRERUN_DEADLINE

    monkeypatch.setattr(PreRun, "run", failing_run)
    outcome = replay_file(str(blocks), str(copy), synchronous="OFF", state_options=StateOptions(prefetch_run=True))
    assert outcome.rejected is None and outcome.last == BLOCKS  # every block's state root was checked
    prerun = seen[0]
    assert len(seen) >= 3 and all(each is prerun for each in seen)
    assert prerun.failures == 2 and prerun.pool.replaced == 2
    prefetch = {e.block: e.counts for e in outcome.events.events if e.stage == "prefetch"}
    assert sorted(n for n, counts in prefetch.items() if counts.get("prerun_failed")) == [1, 2]
    assert any(prefetch[n].get("prerun_txs", 0) > 0 and "prerun_failed" not in prefetch[n] for n in range(3, BLOCKS + 1))  # the new worker serves
    assert outcome.state_reads is not None and outcome.state_reads["prefetch"]["prerun_failures"] == 2
    assert "evmpipe_prefetch_prerun_failures_total 2" in state_reads_metrics_text(outcome)


def state_reads_metrics_text(outcome: Any) -> str:
    """/metrics' prefetch lines for a finished run's reads."""

    class Done:
        def total(self, *, pages: bool = True) -> dict[str, Any]:
            return dict(outcome.state_reads)

    return state_reads_metrics(Done())  # type: ignore[arg-type]
