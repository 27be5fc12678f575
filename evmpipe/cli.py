"""The `evmpipe` command: one entry point, one subcommand per job."""
from __future__ import annotations

import argparse
import json
import sys

from evmpipe import __doc__ as _package_doc  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="evmpipe",
        description="A pipelined Ethereum execution client over py-evm: prefetch, execute, validate, merkleize, commit.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from evmpipe.bench import add_bench_parser
    from evmpipe.blocktest import add_blocktest_parser
    from evmpipe.convert_cmd import add_convert_parser
    from evmpipe.demo import add_demo_parser
    from evmpipe.gen.cli import add_gen_parser
    from evmpipe.replay import add_replay_parser
    from evmpipe.node import add_node_parser
    from evmpipe.trace_summary import add_trace_summary_parser
    from evmpipe.state_cmd import add_state_parser
    from evmpipe.analyze import add_analyze_parser

    add_demo_parser(sub)
    add_replay_parser(sub)
    add_blocktest_parser(sub)
    add_convert_parser(sub)
    add_gen_parser(sub)
    add_bench_parser(sub)
    add_node_parser(sub)
    add_trace_summary_parser(sub)
    add_state_parser(sub)
    add_analyze_parser(sub)

    head = sub.add_parser("head", help="print the committed head of a state database")
    head.add_argument("--datadir", required=True, help="directory holding state.sqlite")
    head.add_argument("--json", action="store_true", help="print JSON instead of text")
    head.set_defaults(func=cmd_head)
    add_interpreter_arguments(sub)

    args = parser.parse_args(argv)
    if getattr(args, "interpreter", None):
        from execution.forks import set_interpreter

        set_interpreter(args.interpreter)  # in the environment: worker processes inherit it
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


#: Commands that execute no EVM code through evmpipe (gen seals with py-evm's own chain).
_NO_EXECUTION = frozenset({"head", "convert", "trace-summary", "gen"})


def add_interpreter_arguments(sub: argparse._SubParsersAction) -> None:
    """`--interpreter lean|pyevm` on every command that executes blocks."""
    from execution.forks import DEFAULT_INTERPRETER, INTERPRETER_ENV, INTERPRETERS

    for name, command in sub.choices.items():
        if name not in _NO_EXECUTION:
            command.add_argument(
                "--interpreter",
                choices=INTERPRETERS,
                help=f"EVM interpreter loop: lean (evmpipe's, py-evm's semantics, faster) or pyevm (py-evm's own loop); "
                f"default ${INTERPRETER_ENV}, else {DEFAULT_INTERPRETER}",
            )


def cmd_head(args: argparse.Namespace) -> int:
    from pipeline.datadir import read_head
    from pipeline.errors import BadInput

    try:
        head = read_head(args.datadir)  # read-only: works on a read-only datadir, and beside a running node
    except BadInput as error:
        print(f"evmpipe: {error}", file=sys.stderr)
        return 2
    if head is None:
        print("evmpipe: the database has no committed block", file=sys.stderr)
        return 1
    record = {"number": head.number, "hash": "0x" + head.hash.hex(), "state_root": "0x" + head.state_root.hex()}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"block {record['number']}  hash {record['hash']}  state root {record['state_root']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
