"""`evmpipe gen prague`: determinism, the CLI, and a chain that starts at Prague."""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest

from evmpipe.gen import GenParams, generate
from evmpipe.gen.builder import qty
from evmpipe.gen.cli import add_gen_parser
from execution.requests import EMPTY_REQUESTS_HASH


def test_same_seed_same_bytes() -> None:
    first = generate(GenParams("prague", txs=4, seed=9)).to_json_bytes()
    assert first == generate(GenParams("prague", txs=4, seed=9)).to_json_bytes()
    assert first != generate(GenParams("prague", txs=4, seed=10)).to_json_bytes()


def test_genesis_is_prague_with_the_system_contracts() -> None:
    test = generate(GenParams("prague", txs=0, seed=2)).fixture
    genesis = test["genesisBlockHeader"]
    assert genesis["requestsHash"] == "0x" + EMPTY_REQUESTS_HASH.hex()
    for address in ("0x000f3df6d732807ef1319fb7b8bb8522d0beac02", "0x0000f90827f1c53a10cb7a02335b175320002935",
                    "0x00000961ef480eb55e80d19ad83579a64c007002", "0x0000bbddc7ce488642fb579f8b00f3a590007251"):
        assert test["pre"][address]["code"].startswith("0x3373fffffffffffffffffffffffffffffffffffffffe")
    # the history contract holds each block's parent hash (EIP-2935)
    history = test["postState"]["0x0000f90827f1c53a10cb7a02335b175320002935"]["storage"]
    for block in test["blocks"]:
        number = int(block["blockHeader"]["number"], 16)
        assert int(history[qty(number - 1)], 16) == int(block["blockHeader"]["parentHash"], 16)


def test_cli_writes_prague_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="evmpipe")
    add_gen_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "prague.json.gz"
    args = parser.parse_args(["gen", "prague", "-o", str(out), "--txs", "3", "--blocks", "5"])
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert "prague_b5_t3_s1: 5 blocks" in line and "set-code" in line and "blobs" in line
    test = next(iter(json.loads(gzip.decompress(out.read_bytes())).values()))
    assert test["network"] == "Prague" and len(test["blocks"]) == 5
