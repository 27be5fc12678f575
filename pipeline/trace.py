"""Stage events as a Chrome/Perfetto trace (the trace-event JSON format).

One track (thread) per stage, and one per speculative worker, one complete ("X")
slice per block: open the file in ui.perfetto.dev or chrome://tracing and the stages
of different blocks overlap.
"""
from __future__ import annotations

from typing import Any

import json
from pathlib import Path

from pipeline.events import StageEvent
from pipeline.summary import STAGE_ORDER


def trace_events(events: list[StageEvent]) -> list[dict[str, Any]]:
    tracks = {stage: i + 1 for i, stage in enumerate(STAGE_ORDER)}
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "evmpipe"}},
    ]
    for stage, tid in tracks.items():
        out.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": stage}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": tid}})
    for event in events:
        out.append(
            {
                "name": f"block {event.block}" if event.block is not None else f"item {event.seq}",
                "cat": event.stage,
                "ph": "X",
                "pid": 1,
                "tid": tracks.setdefault(event.stage, len(tracks) + 1),
                "ts": round(event.start * 1e6, 3),
                "dur": round(event.seconds * 1e6, 3),
                "args": {"ok": event.ok, "seq": event.seq, **{k: v for k, v in event.counts.items() if isinstance(v, (int, float, str))}},
            }
        )
    return out


def write_trace(path: str | Path, events: list[StageEvent]) -> None:
    Path(path).write_text(json.dumps({"traceEvents": trace_events(events), "displayTimeUnit": "ms"}))
