"""`evmpipe trace-summary FILE`: what a `--trace` file says about the pipeline.

Reads the Chrome/Perfetto trace that `replay --trace` / `node --trace` write
(pipeline/trace.py: one track per stage, one complete slice per block and stage)
and answers the questions a trace viewer makes you work out by eye: how busy each
stage was (busy time, utilisation = busy / wall), how much the stages overlapped
(sum of busy / wall: 1 means no overlap, the number of stages is the ceiling), and
where blocks waited: for each boundary between consecutive stages, the time from a
block's end in one stage to its start in the next (queueing behind a busy stage).

A block's slices are matched across stages by its sequence number when the trace
has one (an arg named "seq"), else by block name in order. A block rejected in a
stage is not seen by the stages after it, except commit (which sees rejected blocks
to clean up), so a block's slices are followed only as far as the pipeline took it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.summary import STAGE_ORDER

SEES_FAILED = frozenset({"commit"})  # stages that also run for rejected blocks (CommitStage.sees_failed)
_EPS_US = 1.0  # trace timestamps are rounded: a block may appear to start a hair before its previous stage ends


def add_trace_summary_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("trace-summary", help="per-stage busy time, utilisation, overlap and waits from a --trace file")
    parser.add_argument("file", help="a trace written by `evmpipe replay --trace` or `evmpipe node --trace`")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON ('-' for stdout instead of the table)")
    parser.set_defaults(func=cmd_trace_summary)


@dataclass(frozen=True)
class Slice:
    stage: str
    name: str
    start: float  # microseconds
    end: float
    ok: bool
    seq: int | None = None  # the pipeline's sequence number, when the trace records it


@dataclass
class Wait:
    count: int = 0
    total: float = 0.0  # microseconds
    max: float = 0.0
    max_block: str = ""

    def add(self, seconds: float, block: str) -> None:
        self.count += 1
        self.total += seconds
        if seconds >= self.max:
            self.max, self.max_block = seconds, block

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass
class TraceSummary:
    wall_us: float = 0.0
    slices: int = 0
    blocks: int = 0
    busy_us: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    waits: dict[tuple[str, str], Wait] = field(default_factory=dict)

    @property
    def overlap(self) -> float:
        return sum(self.busy_us.values()) / self.wall_us if self.wall_us else 0.0

    def utilisation(self, stage: str) -> float:
        return self.busy_us[stage] / self.wall_us if self.wall_us else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_seconds": self.wall_us / 1e6,
            "slices": self.slices,
            "blocks": self.blocks,
            "overlap": self.overlap,
            "stages": {s: {"busy_seconds": self.busy_us[s] / 1e6, "utilisation": self.utilisation(s), "blocks": self.runs[s]} for s in self.busy_us},
            "waits": [
                {"from": a, "to": b, "blocks": w.count, "mean_seconds": w.mean / 1e6, "max_seconds": w.max / 1e6, "max_block": w.max_block}
                for (a, b), w in self.waits.items()
            ],
        }


class TraceError(ValueError):
    """The file is not a trace this command understands."""


def load_slices(path: str | Path) -> list[Slice]:
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TraceError(f"{path}: not a readable JSON trace ({exc})") from None
    events = payload.get("traceEvents") if isinstance(payload, dict) else payload
    if not isinstance(events, list):
        raise TraceError(f"{path}: no traceEvents array")
    names: dict[Any, str] = {}
    for event in events:
        if isinstance(event, dict) and event.get("ph") == "M" and event.get("name") == "thread_name":
            names[event.get("tid")] = str(event.get("args", {}).get("name", ""))
    slices = []
    for event in events:
        if not isinstance(event, dict) or event.get("ph") != "X":
            continue
        try:
            start, duration = float(event["ts"]), float(event["dur"])
        except (KeyError, TypeError, ValueError):
            raise TraceError(f"{path}: a complete event without numeric ts and dur: {event!r:.200}") from None
        stage = names.get(event.get("tid")) or str(event.get("cat", "?"))
        args = event.get("args") if isinstance(event.get("args"), dict) else {}
        seq = args.get("seq")
        slices.append(Slice(stage, str(event.get("name", "")), start, start + duration, bool(args.get("ok", True)), seq if isinstance(seq, int) else None))
    if not slices:
        raise TraceError(f"{path}: the trace has no stage slices")
    return slices


def summarize_trace(slices: list[Slice]) -> TraceSummary:
    summary = TraceSummary(slices=len(slices))
    summary.wall_us = max(s.end for s in slices) - min(s.start for s in slices)
    by_stage: dict[str, list[Slice]] = {}
    for item in sorted(slices, key=lambda s: s.start):
        by_stage.setdefault(item.stage, []).append(item)
    stages = [s for s in STAGE_ORDER if s in by_stage] + sorted(s for s in by_stage if s not in STAGE_ORDER)
    for stage in stages:
        summary.busy_us[stage] = sum(s.end - s.start for s in by_stage[stage])
        summary.runs[stage] = len(by_stage[stage])
    summary.blocks = max(summary.runs.values())
    for before, after in zip(stages, stages[1:]):
        summary.waits[(before, after)] = _waits(by_stage[before], by_stage[after], after in SEES_FAILED)
    return summary


def _waits(before: list[Slice], after: list[Slice], sees_failed: bool) -> Wait:
    """Each slice of `before` that handed its block on, matched to that block's slice
    in `after`: by sequence number when the trace has one, else by block name in FIFO
    order, preferring a slice with the same outcome (a valid block and an invalid one
    at the same height share a name)."""
    wait = Wait()
    if all(item.seq is not None for item in before + after):
        starts = {item.seq: item for item in after}
        for item in before:
            match = starts.get(item.seq)
            if match is not None and (item.ok or sees_failed):
                wait.add(max(0.0, match.start - item.end), item.name)
        return wait
    pending: dict[str, list[Slice]] = {}
    for item in after:
        pending.setdefault(item.name, []).append(item)
    for item in before:
        if not (item.ok or sees_failed):
            continue
        queue = [c for c in pending.get(item.name, []) if c.start >= item.end - _EPS_US]
        match = next((c for c in queue if c.ok == item.ok), queue[0] if queue else None)
        if match is not None:
            pending[item.name].remove(match)
            wait.add(max(0.0, match.start - item.end), item.name)
    return wait


def render(summary: TraceSummary, title: str) -> str:
    lines = [f"{title}: {summary.slices} slices, {summary.blocks} blocks, wall {summary.wall_us / 1e6:.3f} s", ""]
    lines.append(f"{'stage':<12}{'busy s':>10}{'util':>9}{'blocks':>8}")
    for stage, busy in summary.busy_us.items():
        lines.append(f"{stage:<12}{busy / 1e6:>10.3f}{100 * summary.utilisation(stage):>8.1f}%{summary.runs[stage]:>8}")
    lines.append("")
    lines.append(f"overlap factor (sum of busy / wall): {summary.overlap:.2f}")
    lines.append("")
    lines.append("waits between stages (a block's end in one stage to its start in the next):")
    lines.append(f"{'boundary':<24}{'blocks':>8}{'mean ms':>10}{'max ms':>10}  max at")
    for (before, after), wait in summary.waits.items():
        lines.append(f"{before + ' -> ' + after:<24}{wait.count:>8}{wait.mean / 1e3:>10.2f}{wait.max / 1e3:>10.2f}  {wait.max_block}")
    return "\n".join(lines)


def cmd_trace_summary(args: argparse.Namespace) -> int:
    try:
        summary = summarize_trace(load_slices(args.file))
    except TraceError as error:
        print(f"evmpipe trace-summary: {error}", file=sys.stderr)
        return 2
    if args.json == "-":
        print(json.dumps(summary.to_json(), indent=2))
        return 0
    print(render(summary, Path(args.file).name))
    if args.json:
        Path(args.json).write_text(json.dumps(summary.to_json(), indent=2))
    return 0
