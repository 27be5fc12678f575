"""Tests of the blocktest runner: discovery, selection, results, reports, the pyevm engine.

Discovery and reporting use tiny synthetic fixtures built here. The pyevm engine runs on
a few small real files taken from ../shared/fixtures/blockchain-tests-dev.tar.gz; those
tests are skipped when the archive is absent.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from evmpipe.blocktest import main as blocktest_main
from evmpipe.blocktest import runner
from evmpipe.blocktest.discover import Selection, discover_tests, iter_tests, iter_work_items
from evmpipe.blocktest.expect import parse_expected, reason_matches
from evmpipe.blocktest.pyevm_engine import classify, run_blockchain_test
from evmpipe.blocktest.report import (
    group_of,
    load_json_report,
    print_report,
    summarize_rejections,
    write_json_report,
)
from evmpipe.blocktest.result import BlockOutcome, TestResult
from evmpipe.blocktest.slow import SLOW_TESTS, slow_seconds

ARCHIVE = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "blockchain-tests-dev.tar.gz"

# Small real fixture files (about 10 KB each, well under a second on py-evm).
VALID_FILE = "BlockchainTests/GeneralStateTests/stTransactionTest/TransactionToItself.json"
INVALID_RLP_FILE = "BlockchainTests/InvalidBlocks/bc4895-withdrawals/shanghaiWithoutWithdrawalsRLP.json"
INVALID_TX_FILE = "BlockchainTests/InvalidBlocks/bcStateTests/gasLimitTooHigh.json"
REAL_FILES = (VALID_FILE, INVALID_RLP_FILE, INVALID_TX_FILE)


# -- synthetic fixtures ----------------------------------------------------------------


def fake_test(network: str = "Cancun", *, invalid: str | None = None) -> dict[str, Any]:
    """A test object with the keys discovery and the runner look at (not runnable on pyevm)."""
    block: dict[str, Any] = {"rlp": "0xc0"}
    if invalid:
        block["expectException"] = invalid
    return {"network": network, "blocks": [block], "pre": {}, "postState": {}, "lastblockhash": "0x00"}


def fake_file(*names: str) -> dict[str, Any]:
    return {"_info": {"comment": "not a test"}, **{name: fake_test() for name in names}}


def write_json(path: Path, data: dict[str, Any], *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    root = tmp_path / "fixtures"
    write_json(root / "GeneralStateTests" / "stA" / "one.json", fake_file("one_Cancun", "one_Shanghai"))
    write_json(root / "GeneralStateTests" / "stB" / "two.json.gz", fake_file("two_Cancun"), gz=True)
    write_json(root / "InvalidBlocks" / "bcX" / "three.json", fake_file("three_Cancun"))
    (root / "README.md").write_text("not a fixture")
    return root


# -- discovery -------------------------------------------------------------------------


def test_directory_discovery_is_recursive_and_sorted(fixture_dir: Path) -> None:
    items = list(iter_work_items([fixture_dir]))
    assert [item.path for item in items] == [
        "GeneralStateTests/stA/one.json",
        "GeneralStateTests/stB/two.json.gz",
        "InvalidBlocks/bcX/three.json",
    ]
    ids = [f"{item.path}::{name}" for item, name, _ in discover_tests([fixture_dir])]
    assert ids == [
        "GeneralStateTests/stA/one.json::one_Cancun",
        "GeneralStateTests/stA/one.json::one_Shanghai",
        "GeneralStateTests/stB/two.json.gz::two_Cancun",
        "InvalidBlocks/bcX/three.json::three_Cancun",
    ]


def test_paths_start_at_a_blockchaintests_directory(tmp_path: Path) -> None:
    root = tmp_path / "BlockchainTests"
    file = write_json(root / "ValidBlocks" / "bcY" / "four.json", fake_file("four"))
    assert [i.path for i in iter_work_items([root])] == ["BlockchainTests/ValidBlocks/bcY/four.json"]
    assert [i.path for i in iter_work_items([root / "ValidBlocks"])] == ["BlockchainTests/ValidBlocks/bcY/four.json"]
    assert [i.path for i in iter_work_items([file])] == ["BlockchainTests/ValidBlocks/bcY/four.json"]


def test_single_json_gz_file(tmp_path: Path) -> None:
    file = write_json(tmp_path / "workload_b2.json.gz", fake_file("workload_b2"), gz=True)
    found = [(item.path, name) for item, name, _ in discover_tests([file])]
    assert found == [("workload_b2.json.gz", "workload_b2")]


def test_tar_gz_is_streamed_and_member_paths_lose_leading_dot(tmp_path: Path) -> None:
    archive = tmp_path / "fixtures.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_member(tar, "./BlockchainTests/GeneralStateTests/stA/one.json", json.dumps(fake_file("one_Cancun")).encode())
        add_member(tar, "./BlockchainTests/InvalidBlocks/bcX/two.json.gz", gzip.compress(json.dumps(fake_file("two_Cancun")).encode()))
        add_member(tar, "./BlockchainTests/notes.txt", b"skip me")
    items = list(iter_work_items([archive]))
    assert [i.path for i in items] == [
        "BlockchainTests/GeneralStateTests/stA/one.json",
        "BlockchainTests/InvalidBlocks/bcX/two.json.gz",
    ]
    assert all(i.data is not None for i in items)
    assert [name for name, _ in iter_tests(items[1])] == ["two_Cancun"]
    # Without data the item still loads, by reading the archive up to the member.
    listed = list(iter_work_items([archive], with_data=False))
    assert listed[1].data is None
    assert [name for name, _ in iter_tests(listed[1])] == ["two_Cancun"]
    # tgz and plain tar work too.
    tgz = archive.rename(tmp_path / "fixtures.tgz")
    assert len(list(iter_work_items([tgz]))) == 2


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(iter_work_items([tmp_path / "nope.json"]))


# -- selection -------------------------------------------------------------------------


def selected(fixture_dir: Path, *patterns: str) -> list[str]:
    return [name for _, name, _ in discover_tests([fixture_dir], patterns)]


def test_k_substring_over_path_and_name(fixture_dir: Path) -> None:
    assert selected(fixture_dir, "Shanghai") == ["one_Shanghai"]
    assert selected(fixture_dir, "stB/") == ["two_Cancun"]
    assert selected(fixture_dir, "one.json::one_C") == ["one_Cancun"]  # across the "::"
    assert selected(fixture_dir, "bcX", "stB") == ["two_Cancun", "three_Cancun"]  # any of several
    assert selected(fixture_dir, "nothing-like-this") == []


def test_k_exclusions(fixture_dir: Path) -> None:
    assert selected(fixture_dir, "!Cancun") == ["one_Shanghai"]
    assert selected(fixture_dir, "not GeneralState") == ["three_Cancun"]
    assert selected(fixture_dir, "stA", "!Shanghai") == ["one_Cancun"]


def test_prefilter_never_drops_a_matching_file() -> None:
    selection = Selection.parse(["json::loopMul_d1"])
    raw = json.dumps(fake_file("loopMul_d1g0v0_Cancun")).encode()
    assert selection.may_match_file("x/loopMul.json", raw)
    assert not selection.may_match_file("x/loopMul.json", json.dumps(fake_file("other")).encode())
    assert Selection.parse(["!anything"]).may_match_file("a.json", b"{}")


# -- results and reasons ---------------------------------------------------------------


def test_parse_expected_and_reason_matches() -> None:
    both = "TransactionException.INSUFFICIENT_ACCOUNT_FUNDS|TransactionException.INTRINSIC_GAS_TOO_LOW"
    assert parse_expected(both) == (
        "TransactionException.INSUFFICIENT_ACCOUNT_FUNDS",
        "TransactionException.INTRINSIC_GAS_TOO_LOW",
    )
    assert parse_expected(None) == ()
    assert reason_matches(both, "TransactionException.INTRINSIC_GAS_TOO_LOW")
    assert not reason_matches(both, "BlockException.INVALID_STATE_ROOT")
    assert not reason_matches(None, "BlockException.INVALID_STATE_ROOT")
    assert not reason_matches(both, None)


@pytest.mark.parametrize(
    ("expected", "rejected", "reason", "verdict"),
    [
        (None, False, None, None),  # valid block, accepted
        ("BlockException.INVALID_GASLIMIT", True, "BlockException.INVALID_GASLIMIT", True),
        ("BlockException.A|BlockException.B", True, "BlockException.B", True),
        ("BlockException.INVALID_GASLIMIT", True, "BlockException.INVALID_STATE_ROOT", False),
        ("BlockException.INVALID_GASLIMIT", False, None, False),  # invalid block accepted
        (None, True, "BlockException.INVALID_STATE_ROOT", False),  # valid block rejected
    ],
)
def test_block_outcome_reason_matches(expected: str | None, rejected: bool, reason: str | None, verdict: bool | None) -> None:
    assert BlockOutcome(0, 1, expected, rejected, reason).reason_matches is verdict


def sample_results() -> list[TestResult]:
    return [
        TestResult("BlockchainTests/GeneralStateTests/stA/one.json", "one", "Cancun", "pyevm", True, None, 0.5,
                   [BlockOutcome(0, 1, None, False, None)]),
        TestResult("BlockchainTests/InvalidBlocks/bcX/two.json", "two", "Cancun", "pyevm", False,
                   "block 0 (#1) rejected for the wrong reason", 0.25,
                   [BlockOutcome(0, 1, "BlockException.INVALID_GASLIMIT", True, "BlockException.INVALID_STATE_ROOT", "detail"),
                    BlockOutcome(1, 1, "TransactionException.NONCE_IS_MAX", True, "TransactionException.NONCE_IS_MAX")]),
        TestResult("BlockchainTests/GeneralStateTests/VMTests/slow.json", "slow", "Cancun", "pyevm", False,
                   "skipped: slow", 0.0, [], skipped=True),
    ]


def test_result_dict_round_trip() -> None:
    for result in sample_results():
        again = TestResult.from_dict(json.loads(json.dumps(result.to_dict())))
        assert again == result


def test_json_report_round_trip(tmp_path: Path) -> None:
    results = sample_results()
    out = tmp_path / "report.json"
    written = write_json_report(out, results, engine="pyevm", started="2024-01-01T00:00:00+00:00", wall_seconds=1.5, jobs=2)
    meta, loaded = load_json_report(out)
    assert loaded == results
    assert meta["engine"] == "pyevm" and meta["jobs"] == 2 and meta["wall_seconds"] == 1.5
    assert meta["totals"] == written["totals"]
    totals = meta["totals"]
    assert (totals["tests"], totals["passed"], totals["failed"], totals["skipped"]) == (3, 1, 1, 1)
    assert (totals["rejected_blocks"], totals["rejections_matched"], totals["rejections_wrong_reason"]) == (2, 1, 1)


def test_group_of() -> None:
    assert group_of("BlockchainTests/GeneralStateTests/stCreate2/x.json") == "GeneralStateTests/stCreate2"
    assert group_of("BlockchainTests/GeneralStateTests/Cancun/stEIP1153/x.json") == "GeneralStateTests/Cancun"
    assert group_of("InvalidBlocks/bcUncleTest/x.json") == "InvalidBlocks/bcUncleTest"
    assert group_of("workload.json.gz") == "(top level)"


def test_plain_report_lists_folders_failures_and_mismatches() -> None:
    out = io.StringIO()
    print_report(sample_results(), engine="pyevm", wall_seconds=1.0, jobs=2, stream=out)
    text = out.getvalue()
    assert "GeneralStateTests/stA" in text and "InvalidBlocks/bcX" in text
    assert "3 tests in 3 files: 1 passed, 1 failed, 1 skipped" in text
    assert "BlockchainTests/InvalidBlocks/bcX/two.json::two: block 0 (#1) rejected" in text
    assert "2 rejected, 1 with an expected reason" in text
    assert "BlockException.INVALID_STATE_ROOT" in text and "BlockException.INVALID_GASLIMIT" in text
    summary = summarize_rejections(sample_results())
    assert summary.mismatches == {
        ("BlockException.INVALID_STATE_ROOT", "BlockException.INVALID_GASLIMIT"):
            [1, "BlockchainTests/InvalidBlocks/bcX/two.json::two#0"],
    }


def test_rich_report_renders() -> None:
    out = io.StringIO()
    print_report(sample_results(), engine="pyevm", wall_seconds=1.0, jobs=2, stream=out, rich=True)
    assert "GeneralStateTests/stA" in out.getvalue()


# -- the runner, with a fake engine ----------------------------------------------------

ENGINE = f"{__name__}:fake_engine"


def fake_engine(path: str, name: str, test: dict[str, Any]) -> TestResult:
    """Passes everything, except: names with "boom" raise, names with "sleep" hang."""
    if "boom" in name:
        raise RuntimeError("engine exploded")
    if "sleep" in name:
        time.sleep(5)
    blocks = [BlockOutcome(i, None, b.get("expectException"), False, None) for i, b in enumerate(test["blocks"])]
    return TestResult(path, name, test["network"], "fake", True, None, 0.0, blocks)


def test_runner_in_process_with_selection(fixture_dir: Path) -> None:
    results = runner.run_blocktests([fixture_dir], engine=ENGINE, jobs=1, patterns=["!Shanghai"], progress=runner.Progress(quiet=True))
    assert [r.name for r in results] == ["one_Cancun", "two_Cancun", "three_Cancun"]  # sorted by path::name
    assert all(r.passed for r in results)


def test_runner_turns_raise_and_timeout_into_failures(tmp_path: Path) -> None:
    write_json(tmp_path / "f.json", {"ok": fake_test(), "boom": fake_test(), "sleepy": fake_test()})
    results = {r.name: r for r in runner.run_blocktests([tmp_path], engine=ENGINE, jobs=1, timeout_per_test=0.2, progress=runner.Progress(quiet=True))}
    assert results["ok"].passed
    assert not results["boom"].passed and "engine raised RuntimeError: engine exploded" in results["boom"].error
    assert not results["sleepy"].passed and "timed out" in results["sleepy"].error


def test_runner_reports_unloadable_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    [result] = runner.run_blocktests([tmp_path], engine=ENGINE, jobs=1, progress=runner.Progress(quiet=True))
    assert result.name == "<file>" and not result.passed and "cannot load fixture file" in result.error


def test_skip_slow(fixture_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SLOW_TESTS, "stA/one.json::one_Shanghai", 42.0)
    assert slow_seconds("GeneralStateTests/stA/one.json::one_Shanghai") == 42.0
    results = {r.name: r for r in runner.run_blocktests([fixture_dir], engine=ENGINE, jobs=1, skip_slow=True, progress=runner.Progress(quiet=True))}
    assert results["one_Shanghai"].skipped and not results["one_Shanghai"].failed
    assert results["one_Cancun"].passed


def test_slow_files_are_split_per_test(fixture_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SLOW_TESTS, "stA/one.json::one_Shanghai", 42.0)
    options = runner.RunOptions(ENGINE, Selection())
    total, tasks = runner._plan_slow_tasks([fixture_dir], options)
    assert total == 3
    assert [(t.item.path, t.names, t.skip_names) for t in tasks] == [
        ("GeneralStateTests/stA/one.json", ("one_Shanghai",), ()),
        ("GeneralStateTests/stA/one.json", None, ("one_Shanghai",)),
    ]
    results = runner.run_blocktests([fixture_dir], engine=ENGINE, jobs=1, progress=runner.Progress(quiet=True))
    assert [r.name for r in results] == ["one_Cancun", "one_Shanghai", "two_Cancun", "three_Cancun"]


def test_plain_progress_lines(fixture_dir: Path) -> None:
    out = io.StringIO()
    runner.run_blocktests([fixture_dir], engine=ENGINE, jobs=1, progress=runner.Progress(stream=out))
    assert out.getvalue().splitlines()[-1].startswith("blocktest: 3/3 files, 4 passed, 0 failed")


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        runner.run_blocktests([], engine="nope")
    with pytest.raises(ValueError, match="cannot be loaded"):
        runner.run_blocktests([], engine="evmpipe.no_such_module:run_blockchain_test")


# -- the pyevm engine on real fixtures -------------------------------------------------


@pytest.fixture(scope="module")
def real_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few small real fixture files, unpacked from the archive into a temporary BlockchainTests tree."""
    if not ARCHIVE.is_file():
        pytest.skip(f"fixture archive not found: {ARCHIVE}")
    root = tmp_path_factory.mktemp("real")
    wanted = set(REAL_FILES)
    with tarfile.open(ARCHIVE, "r|gz") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted:
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                extracted = tar.extractfile(member)
                assert extracted is not None
                target.write_bytes(extracted.read())
                wanted.discard(name)
                if not wanted:
                    break
    assert not wanted, f"missing from the archive: {sorted(wanted)}"
    return root / "BlockchainTests"


def load_real(root: Path, rel: str) -> tuple[str, dict[str, Any]]:
    data = json.loads((root.parent / rel).read_text())
    [(name, test)] = [(k, v) for k, v in data.items() if not k.startswith("_")]
    return name, test


def test_pyevm_valid_fixture_passes(real_fixtures: Path) -> None:
    name, test = load_real(real_fixtures, VALID_FILE)
    result = run_blockchain_test(VALID_FILE, name, test)
    assert result.passed, result.error
    assert result.engine == "pyevm" and result.network == "Cancun"
    assert [b.rejected for b in result.blocks] == [False]
    assert all(b.reason_matches is None for b in result.blocks)


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        (INVALID_RLP_FILE, "BlockException.RLP_WITHDRAWALS_NOT_READ"),
        (INVALID_TX_FILE, "TransactionException.GAS_ALLOWANCE_EXCEEDED"),
    ],
)
def test_pyevm_invalid_fixture_rejects_with_expected_reason(real_fixtures: Path, rel: str, reason: str) -> None:
    name, test = load_real(real_fixtures, rel)
    result = run_blockchain_test(rel, name, test)
    assert result.passed, result.error
    rejected = [b for b in result.blocks if b.rejected]
    assert rejected and all(b.expected_exception for b in rejected)
    assert rejected[0].reason == reason and rejected[0].reason_matches


def test_pyevm_detects_post_state_mismatch(real_fixtures: Path) -> None:
    name, test = load_real(real_fixtures, VALID_FILE)
    broken = copy.deepcopy(test)
    address = next(iter(broken["postState"]))
    broken["postState"][address]["balance"] = hex(int(broken["postState"][address]["balance"], 16) + 1)
    result = run_blockchain_test(VALID_FILE, name, broken)
    assert not result.passed
    assert result.error.startswith(f"post-state mismatch at {address.lower()} balance")

    missing = copy.deepcopy(test)
    del missing["postState"][address]  # an account we have that postState does not list
    result = run_blockchain_test(VALID_FILE, name, missing)
    assert not result.passed and "postState does not list" in result.error


def test_pyevm_post_state_hash(real_fixtures: Path) -> None:
    name, test = load_real(real_fixtures, VALID_FILE)
    hashed = copy.deepcopy(test)
    del hashed["postState"]
    hashed["postStateHash"] = test["blocks"][-1]["blockHeader"]["stateRoot"]
    assert run_blockchain_test(VALID_FILE, name, hashed).passed
    hashed["postStateHash"] = "0x" + "00" * 32
    result = run_blockchain_test(VALID_FILE, name, hashed)
    assert not result.passed and "post-state root mismatch" in result.error


def test_pyevm_flags_wrong_lastblockhash_and_accepted_invalid_block(real_fixtures: Path) -> None:
    name, test = load_real(real_fixtures, VALID_FILE)
    wrong_head = copy.deepcopy(test)
    wrong_head["lastblockhash"] = "0x" + "11" * 32
    result = run_blockchain_test(VALID_FILE, name, wrong_head)
    assert not result.passed and result.error.startswith("lastblockhash mismatch")

    wrongly_invalid = copy.deepcopy(test)
    wrongly_invalid["blocks"][0]["expectException"] = "BlockException.INVALID_STATE_ROOT"
    result = run_blockchain_test(VALID_FILE, name, wrongly_invalid)
    assert not result.passed and "was accepted, the fixture expects rejection" in result.error
    assert result.blocks[0].reason_matches is False


def test_pyevm_engine_never_raises_on_garbage() -> None:
    result = run_blockchain_test("x.json", "garbage", {"network": "NoSuchFork", "blocks": []})
    assert not result.passed and result.error


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("The gas limit 9223372036854775808 is too high. It must be at most 9223372036854775807",
         "BlockException.GASLIMIT_TOO_BIG"),
        ("The gas limit 100000 is too low. It must be at least 3138526", "BlockException.INVALID_GASLIMIT"),
        ("Invalid transaction nonce: Expected 0, but got 10", "TransactionException.NONCE_MISMATCH_TOO_HIGH"),
        ("Invalid transaction nonce: Expected 3, but got 1", "TransactionException.NONCE_MISMATCH_TOO_LOW"),
        ("Mismatch between locally executed block and proposed block on 2 fields:\n"
         " - header.state_root: (locally executed block) : b'1' (proposed block ) : b'2'\n"
         " - header.gas_used: (locally executed block) : 1 (proposed block ) : 2 (+1)",
         "BlockException.INVALID_GAS_USED"),
        ("Sender b'ab' cannot afford txn gas 100 with account balance 9", "TransactionException.INSUFFICIENT_ACCOUNT_FUNDS"),
        ("Insufficient gas", "TransactionException.INTRINSIC_GAS_TOO_LOW"),
        ("Block exceeded maximum blob gas limit.", "BlockException.BLOB_GAS_USED_ABOVE_LIMIT"),
        ("something py-evm never says", "pyevm:ValidationError"),
    ],
)
def test_classify_pyevm_messages(message: str, reason: str) -> None:
    from eth_utils import ValidationError

    assert classify(ValidationError(message)) == reason


def test_classify_unknown_exception() -> None:
    assert classify(KeyError("x")) == "pyevm:KeyError"


def test_cli_runs_pyevm_in_a_pool_and_writes_json(real_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code = blocktest_main(["--engine", "pyevm", "-j", "2", "-q", "--json", str(out), str(real_fixtures)])
    assert code == 0
    meta, results = load_json_report(out)
    assert meta["totals"]["tests"] == len(REAL_FILES) == meta["totals"]["passed"]
    assert {r.path for r in results} == set(REAL_FILES)
    assert "3 tests in 3 files: 3 passed, 0 failed" in capsys.readouterr().out


def test_cli_exit_code_is_1_on_failure(real_fixtures: Path, tmp_path: Path) -> None:
    name, test = load_real(real_fixtures, VALID_FILE)
    broken = copy.deepcopy(test)
    broken["lastblockhash"] = "0x" + "11" * 32
    write_json(tmp_path / "broken.json", {name: broken})
    assert blocktest_main(["--engine", "pyevm", "-j", "1", "-q", str(tmp_path)]) == 1


def test_cli_list(fixture_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert blocktest_main(["--list", "-k", "stA", str(fixture_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "GeneralStateTests/stA/one.json::one_Cancun",
        "GeneralStateTests/stA/one.json::one_Shanghai",
    ]


def crashing_engine(path: str, name: str, test: dict[str, Any]) -> TestResult:
    """Kills its worker process for names with "crash"; passes everything else."""
    if "crash" in name:
        import os

        os._exit(3)
    return fake_engine(path, name, test)


def test_pool_survives_a_dying_worker(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"a_ok": fake_test()})
    write_json(tmp_path / "b.json", {"b_crash": fake_test()})
    write_json(tmp_path / "c.json", {"c_ok": fake_test()})
    engine = f"{__name__}:crashing_engine"
    results = {r.path: r for r in runner.run_blocktests([tmp_path], engine=engine, jobs=2, progress=runner.Progress(quiet=True))}
    assert results["a.json"].passed and results["c.json"].passed
    assert not results["b.json"].passed and "worker process died" in results["b.json"].error
