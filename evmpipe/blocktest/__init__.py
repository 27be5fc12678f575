"""``evmpipe blocktest``: run ethereum/tests BlockchainTest fixtures through an engine.

Modules:

* ``result``: :class:`TestResult` and :class:`BlockOutcome`, what an engine returns;
* ``expect``: ``expectException`` alternatives and reason matching;
* ``discover``: fixture files, directories, ``.tar.gz`` archives, ``-k`` selection;
* ``runner``: :func:`run_blocktests`, the process pool, progress, the engine registry;
* ``report``: the summary table, failures, rejection reasons, the ``--json`` report;
* ``pyevm_engine``: the reference engine, py-evm's own ``Chain.import_block``;
* ``slow``: tests ``--skip-slow`` leaves out.

The CLI is wired in ``evmpipe/cli.py`` with :func:`add_blocktest_parser` and
:func:`cmd_blocktest`; ``python -m evmpipe.blocktest`` runs it standalone.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
from collections.abc import Sequence

from evmpipe.blocktest.result import BlockOutcome, TestResult
from execution.strategies import STRATEGIES

__all__ = [
    "BlockOutcome",
    "TestResult",
    "add_blocktest_parser",
    "build_parser",
    "cmd_blocktest",
    "main",
]

DEFAULT_ENGINE = "pipeline"


def _engine_names() -> list[str]:
    from evmpipe.blocktest.runner import ENGINES

    return list(ENGINES)


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="fixture JSON file (.json or .json.gz), directory (searched recursively),"
        " or .tar.gz/.tgz archive of fixtures (read without extracting)",
    )
    parser.add_argument(
        "--engine",
        choices=_engine_names(),
        default=DEFAULT_ENGINE,
        help="execution engine: 'pipeline' is evmpipe's own, 'pyevm' is py-evm's"
        " Chain.import_block, the reference (default: %(default)s)",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes, one fixture file per task; 1 runs in this process"
        " (default: the number of CPUs, %(default)s)",
    )
    parser.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only tests whose 'path::name' contains PATTERN (substring, case-sensitive);"
        " repeat for several, any may match; '!PATTERN' or 'not PATTERN' excludes",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        metavar="FILE",
        help="also write the machine-readable report (every result, every block) to FILE",
    )
    parser.add_argument(
        "--skip-slow",
        action="store_true",
        help="do not run the tests listed in evmpipe/blocktest/slow.py; report them as skipped",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop handing out fixture files after the first failure",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail a test that runs longer than SECONDS (default: no limit)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="sequential",
        help="pipeline engine: how transactions execute (default sequential)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="pipeline engine: also execute every block sequentially and fail on any difference",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print the selected tests as 'path::name', one a line, and run nothing",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display and no per-folder table: totals, failures and rejections only",
    )
    return parser


def add_blocktest_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``blocktest`` subcommand to an argparse ``subparsers``; its handler is :func:`cmd_blocktest`."""
    parser = subparsers.add_parser(
        "blocktest",
        help="run BlockchainTest conformance fixtures through an engine",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _configure(parser)
    parser.set_defaults(func=cmd_blocktest)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser (``python -m evmpipe.blocktest``)."""
    return _configure(argparse.ArgumentParser(prog="evmpipe blocktest", description="Run BlockchainTest conformance fixtures through an engine."))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_blocktest(args: argparse.Namespace) -> int:
    """Run the blocktest subcommand; 0 when nothing failed, 1 otherwise, 2 on bad input."""
    from evmpipe.blocktest import report, runner
    from evmpipe.blocktest.discover import discover_tests, test_id

    if args.list:
        try:
            for item, name, _ in discover_tests(args.paths, args.patterns):
                print(test_id(item.path, name))
        except FileNotFoundError as exc:
            print(f"evmpipe blocktest: {exc}", file=sys.stderr)
            return 2
        return 0

    jobs = max(1, args.jobs)
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: worker processes too
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        results = runner.run_blocktests(
            args.paths,
            engine=args.engine,
            jobs=jobs,
            patterns=args.patterns,
            timeout_per_test=args.timeout,
            skip_slow=args.skip_slow,
            fail_fast=args.fail_fast,
            progress=runner.Progress(quiet=args.quiet),
            engine_options={"strategy": args.strategy, "verify": args.verify} if args.engine == "pipeline" else None,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"evmpipe blocktest: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0

    report.print_report(results, engine=args.engine, wall_seconds=wall, jobs=jobs, quiet=args.quiet)
    if args.json_path:
        report.write_json_report(args.json_path, results, engine=args.engine, started=started, wall_seconds=wall, jobs=jobs)
    if not results:
        print("evmpipe blocktest: no tests selected", file=sys.stderr)
    return 1 if any(r.failed for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evmpipe.blocktest ARGS``: the subcommand on its own."""
    return cmd_blocktest(build_parser().parse_args(argv))
