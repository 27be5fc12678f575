"""Run BlockchainTests through an engine, in parallel, with progress on stderr.

:func:`run_blocktests` is the whole runner: discover fixture files (``discover.py``),
hand one FILE per task to a pool of worker processes (a file holds several tests, and
loading it is part of the work), run every selected test of the file through the
engine, and gather one :class:`TestResult` per test.

Engines are named in :data:`ENGINES` as ``"module:function"`` strings and imported
lazily, in the worker, by :func:`resolve_engine`. An engine function has the signature
``run_blockchain_test(path: str, name: str, test: dict) -> TestResult`` and reports a
failing test in its result rather than raising; if it raises all the same, the runner
records the exception as that test's failure and goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import importlib
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from evmpipe.blocktest.discover import Selection, WorkItem, iter_tests, iter_work_items, test_id
from evmpipe.blocktest.result import Counts, TestResult
from evmpipe.blocktest.slow import SLOW_TESTS, slow_seconds

EngineFn = Callable[[str, str, dict[str, Any]], TestResult]

ENGINES: dict[str, str] = {
    "pipeline": "evmpipe.engine:run_blockchain_test",
    "pyevm": "evmpipe.blocktest.pyevm_engine:run_blockchain_test",
}

# How many files may wait in the pool's queue per worker: enough to keep every worker
# busy, few enough that archive members are not all held in memory at once.
_QUEUED_PER_WORKER = 4

# Plain (non-TTY) progress: a line every this fraction of the files, or this many seconds.
_PLAIN_STEP_FRACTION = 0.05
_PLAIN_STEP_SECONDS = 30.0
# How long to wait for a worker before giving the progress display a chance to speak.
_HEARTBEAT_SECONDS = 5.0

_engine_cache: dict[str, EngineFn] = {}


class TestTimeout(BaseException):
    """Raised inside a test that ran past ``timeout_per_test``.

    A BaseException, so that an engine's ``except Exception`` (which turns an error in
    one block into a rejection of that block) cannot swallow it.
    """

    __test__ = False  # not a pytest test class


def resolve_engine(name: str) -> EngineFn:
    """The engine function named ``name`` in :data:`ENGINES` (or a ``module:function`` string)."""
    if name in _engine_cache:
        return _engine_cache[name]
    target = ENGINES.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    fn = getattr(importlib.import_module(module_name), attr)
    _engine_cache[name] = fn
    return fn


@dataclass
class RunOptions:
    """What every worker needs to know besides the file; picklable."""

    engine: str
    selection: Selection
    skip_slow: bool = False
    timeout_per_test: float | None = None
    engine_options: tuple[tuple[str, Any], ...] = ()  # keyword arguments for the engine (pipeline: strategy, verify)


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: a fixture file, or some of its tests.

    Usually a whole file. A file holding known-slow tests is split, one task per slow
    test (``names``) plus one for the rest (``skip_names``), so that the slow tests run
    side by side instead of one after another in a single worker.
    """

    item: WorkItem
    names: tuple[str, ...] | None = None
    skip_names: tuple[str, ...] = ()


def run_task(task: Task, options: RunOptions) -> list[TestResult]:
    """Run the selected tests of one task; never raises for a failing test."""
    item = task.item
    try:
        tests = [
            (name, test)
            for name, test in iter_tests(item, options.selection)
            if (task.names is None or name in task.names) and name not in task.skip_names
        ]
    except Exception as exc:
        return [_error_result(item.path, "<file>", options.engine, f"cannot load fixture file: {type(exc).__name__}: {exc}", 0.0)]
    return [run_test(item.path, name, test, options) for name, test in tests]


def run_test(path: str, name: str, test: dict[str, Any], options: RunOptions) -> TestResult:
    """Run one test through the engine, turning a raise, a timeout or a skip into a result."""
    tid = test_id(path, name)
    network = str(test.get("network", ""))
    if options.skip_slow:
        seconds = slow_seconds(tid)
        if seconds is not None:
            return TestResult(
                path=path, name=name, network=network, engine=options.engine,
                passed=False, error=f"skipped: slow test (about {seconds:.0f} s on pyevm)",
                seconds=0.0, blocks=[], skipped=True,
            )
    started = time.perf_counter()
    try:
        engine = resolve_engine(options.engine)
        with _deadline(options.timeout_per_test):
            result = engine(path, name, test, **dict(options.engine_options))
    except TestTimeout:
        return _error_result(path, name, options.engine, f"timed out after {options.timeout_per_test:g} s", time.perf_counter() - started, network)
    except Exception as exc:
        return _error_result(path, name, options.engine, f"engine raised {type(exc).__name__}: {exc}", time.perf_counter() - started, network)
    if not isinstance(result, TestResult):
        return _error_result(path, name, options.engine, f"engine returned {type(result).__name__}, not TestResult", time.perf_counter() - started, network)
    return result


def _error_result(path: str, name: str, engine: str, error: str, seconds: float, network: str = "") -> TestResult:
    return TestResult(path=path, name=name, network=network, engine=engine, passed=False, error=error, seconds=seconds, blocks=[])


class _deadline:
    """Raise :class:`TestTimeout` in the main thread after ``seconds`` (SIGALRM; Unix only)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.active = (
            bool(seconds)
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )

    def __enter__(self) -> None:
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)

    @staticmethod
    def _fire(signum: int, frame: object) -> None:
        raise TestTimeout()


# -- the pool --------------------------------------------------------------------------


def run_blocktests(
    paths: Sequence[str | os.PathLike[str]],
    engine: str = "pipeline",
    jobs: int | None = None,
    patterns: Iterable[str] | None = None,
    timeout_per_test: float | None = None,
    *,
    skip_slow: bool = False,
    fail_fast: bool = False,
    progress: Progress | None = None,
    engine_options: dict[str, Any] | None = None,
) -> list[TestResult]:
    """Run every selected test under ``paths`` through ``engine``; results sorted by ``path::name``.

    ``jobs`` worker processes (default: the number of CPUs; 1 runs in this process),
    one fixture file per task. ``patterns`` are ``-k`` patterns (see ``discover.py``).
    ``skip_slow`` reports the tests of ``slow.SLOW_TESTS`` as skipped without running
    them. ``fail_fast`` stops handing out files after the first failure. ``progress``
    is told about every finished file.
    Raises FileNotFoundError for a missing path, ValueError for an engine that is
    unknown or cannot be imported.
    """
    if engine not in ENGINES and ":" not in engine:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    try:  # fail once, here, rather than once per test in the workers
        resolve_engine(engine)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"engine {engine!r} ({ENGINES.get(engine, engine)}) cannot be loaded: {exc}") from exc
    jobs = jobs or os.cpu_count() or 1
    options = RunOptions(engine, Selection.parse(patterns), skip_slow, timeout_per_test, tuple(sorted((engine_options or {}).items())))
    total_files, slow_tasks = _plan_slow_tasks(paths, options)
    split_paths = {task.item.path for task in slow_tasks}
    tasks = itertools.chain(
        slow_tasks,
        (Task(item) for item in iter_work_items(paths) if item.path not in split_paths),
    )
    pieces = Counter(task.item.path for task in slow_tasks)
    progress = progress or Progress()
    progress.start(total_files)
    results: list[TestResult] = []

    def finished(task: Task, task_results: list[TestResult]) -> bool:
        """Record a finished task; True when it is time to stop (fail-fast)."""
        results.extend(task_results)
        path = task.item.path
        file_done = True
        if path in pieces:
            pieces[path] -= 1
            file_done = pieces[path] == 0
        progress.advance(task_results, files=1 if file_done else 0)
        return fail_fast and any(r.failed for r in task_results)

    try:
        if jobs == 1:
            for task in tasks:
                if finished(task, run_task(task, options)):
                    break
        else:
            _run_in_pool(tasks, options, jobs, finished, progress)
    finally:
        progress.stop()
    results.sort(key=lambda r: (r.path, r.name))
    return results


def _plan_slow_tasks(paths: Sequence[str | os.PathLike[str]], options: RunOptions) -> tuple[int, list[Task]]:
    """Count the fixture files, and split the files holding slow tests; slowest first.

    The listing reads archives once more (they decompress at about 1 GB/s) and keeps
    the bytes of only the files a slow-list key names. With ``skip_slow`` nothing is
    split: skipping takes no time.
    """
    slow_paths = [key.split("::", 1)[0] for key in SLOW_TESTS if "::" in key]

    def may_hold_slow(path: str) -> bool:
        return not options.skip_slow and any(slow in path for slow in slow_paths)

    total = 0
    planned: list[tuple[float, Task]] = []
    for item in iter_work_items(paths, with_data=may_hold_slow):
        total += 1
        if not may_hold_slow(item.path):
            continue
        try:
            tests = list(iter_tests(item, options.selection))
        except Exception:
            continue  # the ordinary task reports the load error
        slow = [(slow_seconds(test_id(item.path, name)), name) for name, _ in tests]
        slow_names = [(seconds, name) for seconds, name in slow if seconds is not None]
        if not slow_names:
            continue
        for seconds, name in slow_names:
            planned.append((seconds, Task(item, names=(name,))))
        if len(slow_names) < len(tests):
            planned.append((0.0, Task(item, skip_names=tuple(name for _, name in slow_names))))
    planned.sort(key=lambda entry: -entry[0])
    return total, [task for _, task in planned]


def _worth_sending(task: Task, options: RunOptions) -> bool:
    """Whether a worker could find a selected test in the task (archive members only).

    An archive member's bytes are already in this process; checking them here against
    the ``-k`` patterns saves sending hundreds of megabytes to workers for nothing.
    """
    item = task.item
    if item.data is None or not options.selection.include:
        return True
    try:
        return options.selection.may_match_file(item.path, item.read_bytes())
    except Exception:
        return True  # let the worker report it


def _run_in_pool(
    tasks: Iterable[Task],
    options: RunOptions,
    jobs: int,
    finished: Callable[[Task, list[TestResult]], bool],
    progress: Progress,
) -> None:
    """Feed ``tasks`` to ``jobs`` worker processes, a bounded number at a time.

    A worker that dies (a crash in native code, the OOM killer) breaks the pool and
    fails every task in flight. The pool is then rebuilt and those tasks are tried once
    more, each alone; one that breaks the pool again is recorded as a failure.
    """
    # forkserver: workers are not forked from this process, whose progress display runs a
    # thread (fork with threads can deadlock).
    context = multiprocessing.get_context("forkserver")
    task_iter = iter(tasks)
    retry: list[Task] = []
    attempts: Counter[Task] = Counter()
    pending: dict[cf.Future[list[TestResult]], Task] = {}
    executor = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    exhausted = halted = False
    try:
        while True:
            while not halted and len(pending) < jobs * _QUEUED_PER_WORKER:
                if retry:
                    # Retries run one at a time, alone, so a second break names its culprit.
                    if pending:
                        break
                    task = retry.pop()
                elif any(attempts[t] > 1 for t in pending.values()):
                    break
                elif exhausted:
                    break
                else:
                    next_task = next(task_iter, None)
                    if next_task is None:
                        exhausted = True
                        break
                    task = next_task
                if not _worth_sending(task, options):
                    finished(task, [])
                    continue
                attempts[task] += 1
                pending[executor.submit(run_task, task, options)] = task
            if not pending:
                break
            done, _ = cf.wait(pending, timeout=_HEARTBEAT_SECONDS, return_when=cf.FIRST_COMPLETED)
            if not done:
                progress.tick()
            broken = False
            for future in done:
                task = pending.pop(future)
                try:
                    task_results = future.result()
                except BrokenProcessPool as exc:
                    broken = True
                    if attempts[task] < 2:
                        retry.append(task)
                        continue
                    task_results = [_error_result(task.item.path, "<file>", options.engine, f"worker process died running this file: {exc}", 0.0)]
                if finished(task, task_results):
                    halted = True
                    retry.clear()
                    for other in pending:
                        other.cancel()
            if broken:
                # Every future still pending is failing the same way; collect them all.
                for future, task in list(pending.items()):
                    cf.wait([future])
                    if future.exception() is not None:
                        del pending[future]
                        if attempts[task] < 2 and not halted:
                            retry.append(task)
                        else:
                            finished(task, [_error_result(task.item.path, "<file>", options.engine, "worker process died running this file", 0.0)])
                progress.note(
                    f"blocktest: a worker process died; restarting the pool and retrying"
                    f" {len(retry)} file(s) one at a time"
                )
                executor.shutdown(wait=True, cancel_futures=True)
                executor = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    except KeyboardInterrupt:
        # Interrupted (Ctrl-C, SIGTERM): stop the workers now rather than wait for
        # their files; their own speculative workers see their pipes close and exit.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# -- progress --------------------------------------------------------------------------


class Progress:
    """Progress on stderr: a rich bar on a terminal, else a plain line now and then.

    Counts files (the unit of work) against the total, and tests passed / failed /
    skipped so far. ``quiet`` shows nothing.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, rich: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.use_rich = (not quiet) and (rich if rich is not None else _isatty(self.stream))
        self.total = 0
        self.files = 0
        self.counts = Counts()
        self.started = time.monotonic()
        self._last_line_at = self.started
        self._last_line_files = 0
        self._bar: Any = None
        self._task: Any = None

    def start(self, total_files: int) -> None:
        self.total = total_files
        self.started = self._last_line_at = time.monotonic()
        if self.use_rich:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress as RichProgress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = RichProgress(
                TextColumn("[bold]blocktest"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files"),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("run", total=total_files, stats=self._stats())

    def advance(self, file_results: Sequence[TestResult], files: int = 1) -> None:
        """Count finished tests, and ``files`` finished files (0 for part of a split file)."""
        self.files += files
        for result in file_results:
            self.counts.add(result)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=files, stats=self._stats())
            return
        step = max(1, int(self.total * _PLAIN_STEP_FRACTION))
        if self.files - self._last_line_files >= step or (files and self.files == self.total):
            self._print_line()
        else:
            self.tick()

    def tick(self) -> None:
        """Nothing finished lately: print the plain line if it has been quiet for long."""
        if not self.quiet and self._bar is None and time.monotonic() - self._last_line_at >= _PLAIN_STEP_SECONDS:
            self._print_line()

    def note(self, message: str) -> None:
        """An out-of-band message (a worker died), shown even when quiet."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def _print_line(self) -> None:
        self._last_line_at = time.monotonic()
        self._last_line_files = self.files
        print(self.line(), file=self.stream, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def line(self) -> str:
        return (
            f"blocktest: {self.files}/{self.total} files, {self._stats()},"
            f" {time.monotonic() - self.started:.0f}s elapsed"
        )

    def _stats(self) -> str:
        counts = self.counts
        text = f"{counts.passed} passed, {counts.failed} failed"
        if counts.skipped:
            text += f", {counts.skipped} skipped"
        return text


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
