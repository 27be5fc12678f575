"""Per-stage, per-block events: structlog JSON lines and an in-memory record.

One event per stage per block: stage, block number, start and end (seconds since the
run began, monotonic clock), the depth of the stage's input and output channels, and
that stage's counts. The in-memory list feeds the
summary table and the trace file; structlog writes them as they happen.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import structlog


@dataclass(frozen=True)
class StageEvent:
    stage: str
    block: int | None
    seq: int
    start: float
    end: float
    ok: bool
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def configure_logging(*, json_lines: bool | None = None, level: str = "info", stream: Any = None, log_file: str | None = None) -> None:
    """JSON lines when not on a terminal (or when asked, or to `log_file`), a readable
    console otherwise."""
    if log_file is not None:
        stream, json_lines = open(log_file, "a", buffering=1), True  # line-buffered: each event lands whole
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "off": 50}  # 50: critical, never used by evmpipe


class EventLog:
    """Collects stage events of one run and logs each one."""

    def __init__(self, log_events: bool = True) -> None:
        self.t0 = time.perf_counter()
        self.events: list[StageEvent] = []
        self.log_events = log_events
        self._log = structlog.get_logger("evmpipe.pipeline")

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def record(self, event: StageEvent) -> None:
        self.events.append(event)
        if self.log_events:
            self._log.info(
                "stage",
                stage=event.stage,
                block=event.block,
                start=round(event.start, 6),
                end=round(event.end, 6),
                ok=event.ok,
                **event.counts,
            )

    def busy_by_stage(self) -> dict[str, float]:
        busy: dict[str, float] = {}
        for event in self.events:
            busy[event.stage] = busy.get(event.stage, 0.0) + event.seconds
        return busy
