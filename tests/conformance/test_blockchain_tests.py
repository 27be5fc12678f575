"""The official BlockchainTests, one parametrized test per fixture file (as EELS's
`tests/json_infra` does), each run through the whole pipeline with a fresh database.

Reads ../shared/fixtures/blockchain-tests-dev.tar.gz, extracted once into `.cache/`.
Tests listed in `evmpipe.blocktest.slow.SLOW_TESTS` are marked `slow` (CI deselects
them with ``-m "not slow"``). Every test in a file must pass and every rejected block
must be rejected for the fixture's reason, except the documented `KNOWN_FAILURES`
below, which must still fail (strict), so the list stays true.
"""
from __future__ import annotations

import fcntl
import json
import tarfile
from pathlib import Path

import pytest

from evmpipe.engine import run_blockchain_test

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT.parent / "shared" / "fixtures" / "blockchain-tests-dev.tar.gz"
CACHE = ROOT / ".cache" / "blockchain-tests"

#: "path::test name" -> why it fails (here: rejected, but for another reason).
KNOWN_FAILURES: dict[str, str] = {
    "BlockchainTests/TransitionTests/bcBerlinToLondon/BerlinToLondonTransition.json::BerlinToLondonTransition_BerlinToLondonAt5": (
        "block 4 carries a London (16-field) header before London: we reject it as "
        "IMPORT_IMPOSSIBLE_LONDON_WRONG_PARENT, the fixture (geth decodes headers by content) says INVALID_GASLIMIT"
    ),
}


def _slow_files() -> set[str]:
    try:
        from evmpipe.blocktest.slow import SLOW_TESTS
    except ImportError:
        return set()
    return {key.split("::")[0] for key in SLOW_TESTS}


def _extract() -> Path:
    """Extract the archive once (a lock keeps parallel xdist workers out of each other's way)."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "extract.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = CACHE / ".complete"
        if not marker.exists() or marker.read_text() != str(ARCHIVE.stat().st_mtime):
            with tarfile.open(ARCHIVE) as tar:
                tar.extractall(CACHE, filter="data")
            marker.write_text(str(ARCHIVE.stat().st_mtime))
    return CACHE


def _fixture_files() -> list[str]:
    if not ARCHIVE.exists():
        return []
    root = _extract()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.json"))


FILES = _fixture_files()
SLOW = _slow_files()


def _param(path: str) -> object:
    marks = [pytest.mark.slow] if any(path.endswith(s) or s.endswith(path) or s in path for s in SLOW) else []
    return pytest.param(path, id=path.removeprefix("BlockchainTests/"), marks=marks)


@pytest.mark.skipif(not FILES, reason="../shared/fixtures/blockchain-tests-dev.tar.gz is not present")
@pytest.mark.parametrize("path", [_param(p) for p in FILES] or ["none"])
def test_fixture_file(path: str) -> None:
    tests = json.loads((CACHE / path).read_text())
    problems = []
    for name, test in tests.items():
        if name.startswith("_"):
            continue
        key = f"{path}::{name}"
        result = run_blockchain_test(path, name, test)
        mismatched = [b for b in result.blocks if b.rejected and b.reason_matches is False]
        failed = not result.passed or mismatched
        if key in KNOWN_FAILURES:
            if not failed:
                problems.append(f"{key}: listed in KNOWN_FAILURES but passes now")
            continue
        if not result.passed:
            problems.append(f"{name}: {result.error}")
        for block in mismatched:
            problems.append(f"{name}: block #{block.index} rejected for {block.reason}, fixture expects {block.expected_exception}")
    assert not problems, "\n".join(problems)


BLOCK_FOLDERS = ("BlockchainTests/ValidBlocks/", "BlockchainTests/InvalidBlocks/", "BlockchainTests/TransitionTests/")


@pytest.mark.skipif(not FILES, reason="../shared/fixtures/blockchain-tests-dev.tar.gz is not present")
@pytest.mark.parametrize("strategy", ["optimistic", "declared", "auto"])
@pytest.mark.parametrize("path", [p for p in FILES if p.startswith(BLOCK_FOLDERS)] or ["none"])
def test_fixture_file_parallel_strategies(path: str, strategy: str) -> None:
    """The block-level fixtures again with the parallel strategies and `--verify`
    (every block also executed sequentially and compared)."""
    tests = json.loads((CACHE / path).read_text())
    problems = []
    for name, test in tests.items():
        if name.startswith("_") or f"{path}::{name}" in KNOWN_FAILURES:
            continue
        result = run_blockchain_test(path, name, test, strategy=strategy, verify=True)
        if not result.passed:
            problems.append(f"{name}: {result.error}")
    assert not problems, "\n".join(problems)


#: GeneralStateTests whose `declared --verify` run (each test executed twice, one
#: worker process per transaction batch) took 19-123 s each in CI: 13 minutes of CPU
#: in all, half of CI's wall time. CI still runs them sequentially (`test_fixture_file`)
#: and `declared` on every other state test; these run with `-m slow`.
DECLARED_HEAVY = (
    "VMTests/vmPerformance/loopExp.json",
    "stTimeConsuming/static_Call50000_sha256.json",
    "stStaticCall/static_Call50000.json",
    "stStaticCall/static_Call50000_ecrec.json",
    "stStaticCall/static_Call50000_identity.json",
    "stStaticCall/static_Call50000_identity2.json",
    "stStaticCall/static_Call50000_rip160.json",
    "stStaticCall/static_Call1024PreCalls.json",
    "stStaticCall/static_Call1024PreCalls2.json",
    "stStaticCall/static_Call1024PreCalls3.json",
    "stStaticCall/static_LoopCallsThenRevert.json",
    "stDelegatecallTestHomestead/Call1024PreCalls.json",
    "stCallCreateCallCodeTest/Call1024PreCalls.json",
    "stQuadraticComplexityTest/Call50000.json",
    "stQuadraticComplexityTest/Return50000.json",
    "stZeroKnowledge/pairingTest.json",
)


def _declared_param(path: str) -> object:
    if path.endswith(DECLARED_HEAVY):
        return pytest.param(path, id=path.removeprefix("BlockchainTests/"), marks=[pytest.mark.slow])
    return _param(path)


@pytest.mark.skipif(not FILES, reason="../shared/fixtures/blockchain-tests-dev.tar.gz is not present")
@pytest.mark.parametrize("path", [_declared_param(p) for p in FILES if not p.startswith(BLOCK_FOLDERS)] or ["none"])
def test_fixture_file_declared(path: str) -> None:
    """The rest of the archive (GeneralStateTests) with `declared` and `--verify`:
    speculation, chains and in-order validation against sequential on every opcode
    and precompile test (`optimistic` shares all of that but the chains)."""
    tests = json.loads((CACHE / path).read_text())
    problems = []
    for name, test in tests.items():
        if name.startswith("_") or f"{path}::{name}" in KNOWN_FAILURES:
            continue
        result = run_blockchain_test(path, name, test, strategy="declared", verify=True)
        if not result.passed:
            problems.append(f"{name}: {result.error}")
    assert not problems, "\n".join(problems)
