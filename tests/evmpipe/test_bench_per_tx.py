"""`evmpipe bench --loops lean,pyevm`: the per-transaction figures are there and agree.

The issue's target is per transaction (the CPU of executing the block's transactions,
sequential, per loop); these tests check that bench reports it, per loop, with the
ratio, beside py-evm's import_block and the whole pipeline, and that the figures are
consistent with each other. No timing thresholds: speed lives in the benchmark.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pytest

from evmpipe.bench import add_bench_parser


@pytest.fixture(scope="module")
def erc20_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evmpipe.gen.builder import generate
    from evmpipe.gen.workloads import GenParams

    path = tmp_path_factory.mktemp("bench") / "erc20.json"
    generate(GenParams("erc20", blocks=2, txs=12, seed=7)).write(path)
    return path


def _bench(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    return int(args.func(args))


def test_per_tx_both_loops(erc20_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert _bench([str(erc20_file), "--runs", "2", "--strategies", "sequential", "--loops", "lean,pyevm", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per transaction, CPU µs" in printed and "import_block" in printed
    data = json.loads(out.read_text())
    by_engine = {m["engine"]: m for m in data["results"]}
    assert set(by_engine) == {"py-evm", "evmpipe sequential (lean loop)", "evmpipe sequential (pyevm loop)"}
    [row] = data["per_tx"]
    assert row["txs"] == 24
    for loop in ("lean", "pyevm"):
        m = by_engine[f"evmpipe sequential ({loop} loop)"]
        assert len(m["tx_cpu"]) == len(m["execute_busy"]) == len(m["cpu"]) == 2
        for tx_cpu, busy, cpu in zip(m["tx_cpu"], m["execute_busy"], m["cpu"]):
            # the executing thread's CPU: within the execute stage's span and the process's CPU
            assert 0 < tx_cpu <= busy + 1e-3 and tx_cpu <= cpu
        per_tx = row[f"execute_us_per_tx_{loop}"]
        assert per_tx == pytest.approx(statistics.median(m["tx_cpu"]) / 24 * 1e6) == pytest.approx(m["execute_us_per_tx"])
        assert per_tx * 24 <= statistics.median(m["execute_busy"]) * 1e6 + 1e3
        assert per_tx <= row[f"pipeline_us_per_tx_{loop}"]
        assert row[f"import_block_over_execute_{loop}"] == pytest.approx(row["import_block_us_per_tx"] / per_tx)
    assert row["execute_lean_x_pyevm_loop"] == pytest.approx(row["execute_us_per_tx_pyevm"] / row["execute_us_per_tx_lean"])
    assert row["pipeline_lean_x_pyevm_loop"] == pytest.approx(row["pipeline_us_per_tx_pyevm"] / row["pipeline_us_per_tx_lean"])
    assert row["import_block_us_per_tx"] == pytest.approx(statistics.median(by_engine["py-evm"]["cpu"]) / 24 * 1e6)


def test_no_per_tx_figure_for_parallel_runs(erc20_file: Path, tmp_path: Path) -> None:
    """A strategy whose blocks ran in the workers has no in-order execute figure, and
    without sequential there is no per-transaction table."""
    out = tmp_path / "bench.json"
    assert _bench([str(erc20_file), "--runs", "1", "--strategies", "optimistic", "--workers", "1", "--skip-pyevm", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    [m] = data["results"]
    assert data["per_tx"] == []
    if m["execute_cpu_over_wall"] is not None:  # at least one block ran in the workers
        assert m["tx_cpu"] == [None] and m["execute_us_per_tx"] is None
