"""Progress of a long run: a rich bar on a terminal, a plain line every few seconds otherwise."""
from __future__ import annotations

import sys
import time
from typing import Any

PLAIN_EVERY = 5.0  # seconds between plain progress lines


class Progress:
    def __init__(self, total: int | None, *, label: str, stream: Any = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.txs = 0
        self._bar: Any = None
        self._task: Any = None
        self._started = time.perf_counter()
        self._last_line = self._started

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=Console(file=self.stream))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, block: Any) -> None:
        self.done += 1
        if block.execution is not None:
            self.txs += len(block.execution.tx_results)
        elapsed = time.perf_counter() - self._started
        rate = f"{self.txs / elapsed:,.0f} tx/s" if elapsed > 0 else ""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, rate=rate)
        elif time.perf_counter() - self._last_line >= PLAIN_EVERY:
            self._last_line = time.perf_counter()
            of = f"/{self.total}" if self.total else ""
            print(f"{self.label}: {self.done}{of} blocks, {self.txs} txs, {rate}, {elapsed:.0f} s", file=self.stream, flush=True)
