"""A few real ethereum/tests BlockchainTests end to end through the five stages
(`evmpipe.engine.run_blockchain_test`), read straight from the fixture archive."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from evmpipe.engine import run_blockchain_test

ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "blockchain-tests-dev.tar.gz"

VALID = "BlockchainTests/ValidBlocks/bcStateTests/blockhashTests.json"  # 5 blocks, BLOCKHASH across the pipeline
INVALID_GASLIMIT = "BlockchainTests/InvalidBlocks/bcEIP1559/gasLimit20m.json"  # blocks 1 and 5 invalid, 7 in all
INVALID_TIMESTAMP = "BlockchainTests/InvalidBlocks/bcEIP3675/timestampPerBlock.json"  # blocks 3 and 4 invalid, then more
FRONTIER_HOMESTEAD = "BlockchainTests/TransitionTests/bcFrontierToHomestead/CallContractThatCreateContractBeforeAndAfterSwitchover.json"
HOMESTEAD = "BlockchainTests/GeneralStateTests/Pyspecs/homestead/yul/yul.json"  # Homestead .. Cancun, one block each

FILES = [VALID, INVALID_GASLIMIT, INVALID_TIMESTAMP, FRONTIER_HOMESTEAD, HOMESTEAD]


@pytest.fixture(scope="module")
def fixtures() -> dict[str, dict[str, Any]]:
    """The chosen files, read in one streaming pass over the archive (nothing extracted)."""
    if not ARCHIVE.is_file():
        pytest.skip(f"fixture archive not present: {ARCHIVE}")
    wanted = set(FILES)
    found: dict[str, dict[str, Any]] = {}
    with tarfile.open(ARCHIVE, "r|gz") as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                handle = archive.extractfile(member)
                assert handle is not None
                found[name] = json.loads(handle.read())
                if len(found) == len(wanted):
                    break
    missing = wanted - set(found)
    assert not missing, f"not in the archive: {sorted(missing)}"
    return found


def _run_all(path: str, tests: dict[str, Any]) -> list:
    results = []
    for name, test in tests.items():
        result = run_blockchain_test(path, name, test)
        assert result.passed, f"{name}: {result.error}"
        assert len(result.blocks) == len(test["blocks"])
        results.append((test, result))
    return results


def test_valid_blocks(fixtures: dict[str, dict[str, Any]]) -> None:
    for test, result in _run_all(VALID, fixtures[VALID]):
        assert len(result.blocks) >= 3
        assert all(not b.rejected and b.reason_matches is None for b in result.blocks)
        assert [b.number for b in result.blocks] == list(range(1, len(result.blocks) + 1))


@pytest.mark.parametrize("path", [INVALID_GASLIMIT, INVALID_TIMESTAMP], ids=["gasLimit20m", "timestampPerBlock"])
def test_invalid_blocks_then_more(fixtures: dict[str, dict[str, Any]], path: str) -> None:
    for test, result in _run_all(path, fixtures[path]):
        expected = [bool(entry.get("expectException")) for entry in test["blocks"]]
        assert any(expected)
        # there is a block after an invalid one, and the chain went on past it
        first_bad = expected.index(True)
        assert first_bad < len(expected) - 1
        assert not all(expected[first_bad:])
        for outcome, bad in zip(result.blocks, expected):
            assert outcome.rejected == bad
            if bad:
                assert outcome.reason_matches is True, (outcome.expected_exception, outcome.reason, outcome.detail)
            else:
                assert outcome.reason_matches is None


@pytest.mark.parametrize("path", [FRONTIER_HOMESTEAD, HOMESTEAD], ids=["FrontierToHomesteadAt5", "yul-Homestead-to-Cancun"])
def test_pre_byzantium(fixtures: dict[str, dict[str, Any]], path: str) -> None:
    networks = set()
    for test, result in _run_all(path, fixtures[path]):
        networks.add(test["network"])
        for outcome in result.blocks:
            if outcome.expected_exception:
                assert outcome.rejected
            else:
                assert not outcome.rejected
    assert networks & {"Frontier", "Homestead", "FrontierToHomesteadAt5"}
