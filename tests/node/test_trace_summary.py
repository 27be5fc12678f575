"""evmpipe/trace_summary.py on a trace written by pipeline/trace.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evmpipe.cli import main
from evmpipe.trace_summary import load_slices, summarize_trace
from pipeline.events import StageEvent
from pipeline.trace import write_trace

STAGES = ("prefetch", "execute", "validate", "merkleize", "commit")


def _events() -> list[StageEvent]:
    """Block 1 flows with gaps; block 2 (seq 2) is rejected in prefetch and only
    commit sees it after; block 2 again (seq 3) is valid."""
    events = []
    t = 0.0
    for stage in STAGES:
        events.append(StageEvent(stage, 1, 1, t, t + 0.010, True))
        t += 0.012  # 2 ms between stages
    events.append(StageEvent("prefetch", 2, 2, 0.011, 0.013, False))
    events.append(StageEvent("commit", 2, 2, 0.070, 0.071, False))
    t = 0.020
    for stage in STAGES:
        events.append(StageEvent(stage, 2, 3, t, t + 0.005, True))
        t += 0.015 if stage != "merkleize" else 0.060
    return events


def test_busy_overlap_and_waits(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    write_trace(path, _events())
    summary = summarize_trace(load_slices(path))
    assert summary.busy_us["prefetch"] == pytest.approx(17_000, abs=1)
    assert summary.busy_us["commit"] == pytest.approx(16_000, abs=1)
    wall = 0.020 + 3 * 0.015 + 0.060 + 0.005  # the last commit's end
    assert summary.wall_us == pytest.approx(wall * 1e6, abs=1)
    assert summary.overlap == pytest.approx(sum(summary.busy_us.values()) / summary.wall_us)
    first = summary.waits[("prefetch", "execute")]
    assert first.count == 2  # the rejected block never reached execute
    assert first.max == pytest.approx(10_000, abs=1) and first.mean == pytest.approx(6_000, abs=1)
    last = summary.waits[("merkleize", "commit")]
    assert last.count == 2 and last.max == pytest.approx(55_000, abs=1) and last.max_block == "block 2"


def test_sequence_numbers_match_exactly(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    write_trace(path, _events())
    payload = json.loads(path.read_text())
    seqs = iter(e.seq for e in _events())
    for event in payload["traceEvents"]:
        if event["ph"] == "X":
            event["args"]["seq"] = next(seqs)
    path.write_text(json.dumps(payload))
    summary = summarize_trace(load_slices(path))
    last = summary.waits[("merkleize", "commit")]
    assert last.count == 2 and last.max == pytest.approx(55_000, abs=1)


def test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trace.json"
    write_trace(path, _events())
    assert main(["trace-summary", str(path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "overlap factor" in out and "merkleize -> commit" in out
    assert json.loads((tmp_path / "s.json").read_text())["stages"]["execute"]["blocks"] == 2
    (tmp_path / "bad.json").write_text("{}")
    assert main(["trace-summary", str(tmp_path / "bad.json")]) == 2
