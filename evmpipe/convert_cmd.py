"""`evmpipe convert`: between BlockchainTest JSON, geth exports and native block files.

User errors (unreadable or inconsistent input, missing files) print one line and exit
with status 2; no traceback, since the message already names the file and the place.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

FORMATS_IN = ("blocktest", "geth", "native")
FORMATS_OUT = ("native", "blocktest")


def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert blocks between BlockchainTest JSON, geth export and native block files",
        description=(
            "Convert a chain of blocks. Inputs: a BlockchainTest JSON file (its valid chain; plain or gzip), "
            "a geth `export` stream (plain or gzip, with --genesis), or a native block file. Outputs: a native "
            "block file, or BlockchainTest JSON (gzip if OUTPUT ends in .gz). The input format is read from the "
            "file's content unless --from names it."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="file to convert")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="file to write (replaced if it exists)")
    parser.add_argument("--genesis", metavar="GENESIS.json", help="geth genesis.json for a geth export")
    parser.add_argument("--from", dest="from_format", choices=FORMATS_IN, help="input format (default: detected)")
    parser.add_argument("--to", dest="to_format", choices=FORMATS_OUT, help="output format (default: native, or blocktest for a native input)")
    parser.add_argument("--test", metavar="NAME", help="the test to take from a BlockchainTest file holding several (also the test name written)")
    parser.set_defaults(func=cmd_convert)
    return parser


def cmd_convert(args: argparse.Namespace) -> int:
    from pipeline.errors import BadInput

    try:
        return _convert(args)
    except BadInput as exc:
        print(f"evmpipe convert: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"evmpipe convert: {exc.filename or ''}: {exc.strerror or exc}".replace(": : ", ": "), file=sys.stderr)
        return 2


def _convert(args: argparse.Namespace) -> int:
    from consensus_stub import convert

    source = Path(args.input)
    if not source.is_file():
        print(f"evmpipe convert: {source}: no such file", file=sys.stderr)
        return 2
    if not Path(args.output).resolve().parent.is_dir():
        print(f"evmpipe convert: {args.output}: its directory does not exist", file=sys.stderr)
        return 2
    src_format = args.from_format or convert.detect_format(source)
    dst_format = args.to_format or ("blocktest" if src_format == "native" else "native")
    if src_format == "geth" and not args.genesis:
        print("evmpipe convert: a geth export needs its genesis.json: add --genesis GENESIS.json", file=sys.stderr)
        return 2
    if src_format == dst_format:
        print(f"evmpipe convert: {source} is already {src_format}; choose another --to", file=sys.stderr)
        return 2
    if dst_format == "native":
        summary = _to_native(convert, src_format, source, Path(args.output), args)
    else:
        with _native_of(convert, src_format, source, args) as native:
            summary = convert.native_to_blocktest(native, args.output, args.test)
    last = f", last block {summary.last_number} 0x{summary.last_hash.hex()}" if summary.blocks else ""
    print(f"wrote {summary.blocks} blocks ({src_format} -> {dst_format}) to {args.output}{last}")
    return 0


def _to_native(convert, src_format: str, source: Path, output: Path, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if src_format == "blocktest":
        return convert.blocktest_to_native(source, output, args.test)
    return convert.geth_to_native(source, args.genesis, output)


@contextlib.contextmanager
def _native_of(convert, src_format: str, source: Path, args: argparse.Namespace) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """The input as a native file: itself, or a temporary conversion of it."""
    if src_format == "native":
        yield source
        return
    handle, name = tempfile.mkstemp(prefix="evmpipe-convert-", suffix=".blocks")
    os.close(handle)
    try:
        _to_native(convert, src_format, source, Path(name), args)
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
