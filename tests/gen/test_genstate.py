"""`evmpipe gen state`, workloads over it, `state dump` and `state verify` (a small state)."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rlp
from eth_hash.auto import keccak
from trie import HexaryTrie

from evmpipe.gen.genstate import BuildError, build_state, read_shape
from evmpipe.gen.overstate import BlockShape, generate_over_state, reader_code
from evmpipe.gen.shape import StateShape
from evmpipe.gen.workloads import GenerationError
from evmpipe.state_cmd import dump_lines, verify_state
from pipeline.errors import BadInput
from pipeline.required_state import check_required_state
from state.nodekeys import DEFAULT_SCHEME, HALFPATH, HASH

ROOT = Path(__file__).resolve().parents[2]
SMALL = StateShape(accounts=3000, seed=7)


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "evmpipe", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    datadir = tmp_path_factory.mktemp("genstate") / "d"
    info = build_state(datadir, SMALL, progress=False)
    return datadir, info


def test_build_is_consistent_and_deterministic(small_state: tuple[Path, dict], tmp_path: Path) -> None:
    datadir, info = small_state
    assert sorted(os.listdir(datadir)) == ["state.sqlite"]
    assert read_shape(datadir) == SMALL.resolved()
    shape = SMALL.resolved()
    assert info["accounts"] == shape.accounts
    assert info["slots"] == shape.expected_slots()
    result = verify_state(str(datadir))
    assert result["ok"], result
    assert result["state_root"] == info["state_root"]
    assert result["nodes_checked"] > 0 and result["nodes_missing"] == 0
    again = build_state(tmp_path / "again", SMALL, progress=False, jobs=1)  # one process or two: the same root
    assert again["state_root"] == info["state_root"]
    assert {k: again[k] for k in ("accounts", "slots", "trie_nodes")} == {k: info[k] for k in ("accounts", "slots", "trie_nodes")}
    other = build_state(tmp_path / "other", StateShape(accounts=3000, seed=8), progress=False)
    assert other["state_root"] != info["state_root"]


def test_shape_holders_heavy_tailed_and_invertible() -> None:
    shape = StateShape(accounts=100_000, seed=3).resolved()
    holders = shape.holders
    assert holders == sorted(holders, reverse=True)
    assert holders[0] > 10 * holders[-1]
    for t in (0, 5, len(holders) - 1):
        for j in (0, 1, holders[t] - 1):
            assert shape.holder_rank(t, shape.holder_eoa(t, j)) == j
    assert len({shape.holder_eoa(0, j) for j in range(holders[0])}) == holders[0]


def test_dump_root_matches_py_trie(small_state: tuple[Path, dict]) -> None:
    """An independent trie implementation (py-trie) over the dump gives the head's root."""
    import sqlite3

    datadir, info = small_state
    db = sqlite3.connect(datadir / "state.sqlite")
    lines = list(dump_lines(db))
    assert lines[0] == {"root": info["state_root"]}
    trie = HexaryTrie({})
    for line in lines[1:]:
        address = bytes.fromhex(line["address"][2:])
        assert line["key"] == "0x" + keccak(address).hex()
        value = rlp.encode([line["nonce"], int(line["balance"]), bytes.fromhex(line["root"][2:]), bytes.fromhex(line["codeHash"][2:])])
        trie[keccak(address)] = value
    assert "0x" + trie.root_hash.hex() == info["state_root"]
    # one contract's storage, also through py-trie
    token = read_shape(datadir).token_address(0)  # type: ignore[union-attr]
    storage = HexaryTrie({})
    for line in dump_lines(db, token):
        storage[bytes.fromhex(line["key"][2:])] = rlp.encode(int(line["value"], 16))
    account = next(line for line in lines[1:] if line["address"] == "0x" + token.hex())
    assert "0x" + storage.root_hash.hex() == account["root"]
    db.close()


def test_refuses_existing_datadir(small_state: tuple[Path, dict]) -> None:
    datadir, _ = small_state
    with pytest.raises(BuildError, match="never overwrites"):
        build_state(datadir, SMALL, progress=False)


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evmpipe.gen.genstate as G

    def boom(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(G, "_genesis", boom)  # the last step, in the main process
    with pytest.raises(KeyboardInterrupt):
        build_state(tmp_path / "d", SMALL, progress=False)
    assert os.listdir(tmp_path) == []


def test_killed_build_leaves_no_valid_datadir(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "evmpipe.gen.cli", "state", "--datadir", str(tmp_path / "d"), "--accounts", "150000", "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("d.partial-*/part-*.sqlite")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "d").exists()
    partials = list(tmp_path.glob("d.partial-*"))
    assert len(partials) == 1 and not (partials[0] / "state.sqlite").exists()
    assert (partials[0] / "INCOMPLETE").exists()
    # the next build removes the dead build's leftovers
    build_state(tmp_path / "d", SMALL, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_disk_full_is_a_clear_error(tmp_path: Path) -> None:
    def limit() -> None:  # files may not grow past 1 MiB: as a full disk does, writes fail
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    result = subprocess.run(
        [sys.executable, "-m", "evmpipe.gen.cli", "state", "--datadir", str(tmp_path / "d"), "--accounts", "20000", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=limit,
    )
    assert result.returncode == 2, result.stderr
    assert "nothing was written to" in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


def test_workload_over_state(small_state: tuple[Path, dict], tmp_path: Path) -> None:
    datadir, info = small_state
    before = _sha(datadir / "state.sqlite")
    out = tmp_path / "mixed.blocks"
    plain = BlockShape(slot_reads=0, swap_share=0.0)  # exactly --txs transactions
    stats = generate_over_state(datadir, "mixed", 2, 40, 1, out, plain)
    assert stats["blocks"] == 2 and stats["transactions"] == 80
    assert stats["state_root"] == info["state_root"]
    assert _sha(datadir / "state.sqlite") == before and sorted(os.listdir(datadir)) == ["state.sqlite"]
    kinds = {k for block in stats["per_block"] for k in ("eth", "erc20") if block[k]}
    assert kinds == {"eth", "erc20"}
    # same seed, same bytes
    generate_over_state(datadir, "mixed", 2, 40, 1, tmp_path / "again.blocks", plain)
    assert _sha(out) == _sha(tmp_path / "again.blocks")
    # the file carries no allocation; it needs this state
    from consensus_stub.blockfile import read_header

    header = read_header(out)
    assert header.alloc == {}
    check_required_state(datadir, header.genesis_header_rlp, header.alloc, str(out))
    with pytest.raises(BadInput, match="holds no database"):
        check_required_state(tmp_path / "none", header.genesis_header_rlp, header.alloc, str(out))
    with pytest.raises(GenerationError, match="KIND is one of"):
        generate_over_state(datadir, "transfers-hot", 1, 1, 1, tmp_path / "x.blocks")
    with pytest.raises(GenerationError, match="absent-reads"):
        generate_over_state(datadir, "mixed", 1, 1, 1, tmp_path / "x.blocks", BlockShape(absent_reads=2.0))
    assert not (tmp_path / "x.blocks").exists()


def test_replay_over_generated_state(small_state: tuple[Path, dict], tmp_path: Path) -> None:
    """Replay reaches every sealed root (ETH, ERC-20, approvals, swaps, reader
    transactions); verify passes after it; another state is refused."""
    datadir, info = small_state
    out = tmp_path / "mixed.blocks"
    stats = generate_over_state(datadir, "mixed", 2, 40, 2, out, BlockShape(slot_reads=60, reads_per_tx=20, swap_share=0.4))
    done = {k: sum(block[k] for block in stats["per_block"]) for k in ("eth", "erc20", "swap", "approve", "reader", "slot_reads")}
    assert all(done.values()) and done["slot_reads"] == 120 and done["reader"] == 6, done
    # readers revert (by design); every other transaction succeeds
    assert sum(block["failed"] for block in stats["per_block"]) == done["reader"]
    copy = tmp_path / "copy"
    shutil.copytree(datadir, copy)
    result = _run("replay", str(out), "--datadir", str(copy))
    assert result.returncode == 0, result.stderr
    head = json.loads(_run("head", "--datadir", str(copy), "--json").stdout)
    assert head["number"] == 2
    verify = _run("state", "verify", "--datadir", str(copy), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["trie_scheme"] == DEFAULT_SCHEME
    # the same state keyed the other way (a hash-keyed datadir from before halfpath keys,
    # or a halfpath one): same root, so the same blocks replay over it and it verifies
    other_scheme = HASH if DEFAULT_SCHEME != HASH else HALFPATH
    keyed = tmp_path / "keyed"
    assert build_state(keyed, SMALL, progress=False, trie_scheme=other_scheme)["state_root"] == info["state_root"]
    result = _run("replay", str(out), "--datadir", str(keyed))
    assert result.returncode == 0, result.stderr
    verify = _run("state", "verify", "--datadir", str(keyed), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] and json.loads(verify.stdout)["trie_scheme"] == other_scheme, verify.stdout
    other = tmp_path / "other"
    build_state(other, StateShape(accounts=3000, seed=9), progress=False)
    refused = _run("replay", str(out), "--datadir", str(other))
    assert refused.returncode == 2
    assert "refusing to replay over it" in refused.stderr and "Traceback" not in refused.stderr


def test_state_cli_errors(tmp_path: Path) -> None:
    missing = _run("state", "verify", "--datadir", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no database" in missing.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "state.sqlite").write_bytes(b"not sqlite at all" * 100)
    foreign = _run("state", "dump", "--datadir", str(tmp_path / "bad"))
    assert foreign.returncode == 2 and "not a datadir database" in foreign.stderr


def test_reader_code_shape() -> None:
    """The reader's init code: the selector once, 56 bytes per call, REVERT at the end."""
    token, holder = bytes(range(20)), bytes(range(20, 40))
    code = reader_code([(token, holder)] * 3)
    assert len(code) == 36 + 3 * 56 + 5 and code.endswith(b"\x60\x00\x60\x00\xfd")
    assert code.count(b"\x73" + token + b"\x5a\xfa\x50") == 3 and code.count(b"\x73" + holder + b"\x60\x04\x52") == 3


@pytest.mark.slow  # ~10 s: a benchmark script's check, not needed on every CI run
def test_trie_keying_bench_layouts_agree(small_state: tuple[Path, dict], tmp_path: Path) -> None:
    """scripts/trie_keying_bench.py: the path- and halfpath-keyed copies hold every trie, and
    updating them by path gives the same roots as the hash-keyed one (the script exits 1
    otherwise)."""
    datadir, info = small_state
    out = tmp_path / "keying.json"
    command = [sys.executable, str(ROOT / "scripts" / "trie_keying_bench.py"), "--state", str(datadir), "--work", str(tmp_path / "w"),
               "--blocks", "2", "--accounts", "30", "--slots", "40", "--contracts", "2", "--warm", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["setup"]["halfpath_nodes"] == data["setup"]["path_nodes"] >= data["setup"]["hash_nodes"] > 0
    hash_blocks, path_blocks, halfpath_blocks = data["blocks"]["hash"], data["blocks"]["path"], data["blocks"]["halfpath"]
    assert [b["root"] for b in hash_blocks] == [b["root"] for b in path_blocks] == [b["root"] for b in halfpath_blocks] and len(hash_blocks) == 2
    assert all(b["node_reads"] > 0 for b in hash_blocks + path_blocks + halfpath_blocks)
    assert "0x" + hash_blocks[0]["root"] != info["state_root"] != "0x" + hash_blocks[1]["root"]  # the blocks changed the state
