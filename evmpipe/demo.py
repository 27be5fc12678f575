"""`evmpipe demo`: replay the bundled sample blocks into a fresh datadir, with the summary.

The sample (`evmpipe/samples/sample.blocks`) is a native block file written by
`evmpipe gen mixed` and `evmpipe convert`: a few hundred ETH transfers, ERC-20
transfers and AMM swaps on Cancun, with withdrawals. It ships inside the package, so
the demo needs nothing but the installed project.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources

from evmpipe.replay import add_strategy_arguments, cmd_replay


def sample_path() -> str:
    return str(resources.files("evmpipe") / "samples" / "sample.blocks")


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="replay the bundled sample blocks and print the summary")
    parser.add_argument("--datadir", help="where to keep the database (default: a temporary directory)")
    parser.add_argument("--trace", metavar="FILE", help="also write a Perfetto trace of the stages")
    add_strategy_arguments(parser)
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="evmpipe-demo-") as tmp:
        replay_args = argparse.Namespace(
            file=sample_path(),
            datadir=args.datadir or tmp,
            lookahead=4,
            capacity=2,
            fsync="normal",
            trace=args.trace,
            json=None,
            log="off",
            log_file=None,
            limit=None,
            strategy=args.strategy,
            workers=args.workers,
            worker_deadline=args.worker_deadline,
            verify=args.verify,
            max_in_flight=None,
        )
        print(f"replaying {replay_args.file}", file=sys.stderr)
        return cmd_replay(replay_args)
