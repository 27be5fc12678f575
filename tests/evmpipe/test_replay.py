"""`evmpipe replay` on good and bad input: resume, and errors that name what and where.

Every bad input must exit non-zero with a message naming the block, record or byte
offset, and leave the database at the last good block.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import rlp

from consensus_stub.blockfile import BlockFileWriter, iter_blocks, read_header
from evmpipe.demo import sample_path
from evmpipe.replay import replay_file
from pipeline.datadir import DB_NAME, read_head
from state.store import StateStore

SAMPLE = Path(sample_path())
BLOCKS = list(iter_blocks(SAMPLE))


def _replay(path: Path, datadir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evmpipe", "replay", str(path), "--datadir", str(datadir), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _head(datadir: Path) -> int | None:
    store = StateStore(datadir / DB_NAME)
    try:
        head = store.head()
        return None if head is None else head.number
    finally:
        store.close()


def _copy_with(tmp_path: Path, records: list) -> Path:
    """A block file with the sample's header and the given (number, hash, rlp) records."""
    path = tmp_path / "blocks"
    with BlockFileWriter.create(path, read_header(SAMPLE)) as writer:
        for number, block_hash, data in records:
            writer.append(number, block_hash, data)
    return path


def test_replay_resumes_where_it_stopped(tmp_path: Path) -> None:
    first = replay_file(str(SAMPLE), str(tmp_path / "db"), limit=2)
    assert first.committed == 2 and _head(tmp_path / "db") == 2
    second = replay_file(str(SAMPLE), str(tmp_path / "db"))
    assert second.committed == len(BLOCKS) - 2
    assert _head(tmp_path / "db") == BLOCKS[-1].number


def test_truncated_file_keeps_good_blocks(tmp_path: Path) -> None:
    path = tmp_path / "blocks"
    shutil.copy(SAMPLE, path)
    cut = BLOCKS[-1].offset + 10  # inside the last record
    with open(path, "r+b") as handle:
        handle.truncate(cut)
    result = _replay(path, tmp_path / "db")
    assert result.returncode == 2
    assert f"at byte {BLOCKS[-1].offset}" in result.stderr and "truncated" in result.stderr
    assert _head(tmp_path / "db") == BLOCKS[-2].number


def test_flipped_byte_is_named(tmp_path: Path) -> None:
    path = tmp_path / "blocks"
    data = bytearray(SAMPLE.read_bytes())
    data[BLOCKS[2].offset + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    result = _replay(path, tmp_path / "db")
    assert result.returncode == 2
    assert f"at byte {BLOCKS[2].offset}" in result.stderr
    assert _head(tmp_path / "db") == BLOCKS[1].number


def test_wrong_header_record(tmp_path: Path) -> None:
    path = tmp_path / "blocks"
    path.write_bytes(b"\x93\xa6header\xc4\x03abc\x00")
    result = _replay(path, tmp_path / "db")
    assert result.returncode == 2
    assert "evmpipe replay:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "db" / DB_NAME).exists()


def test_bad_rlp_block_is_rejected_with_its_number(tmp_path: Path) -> None:
    records = [(b.number, b.hash, b.rlp) for b in BLOCKS[:2]]
    records.append((BLOCKS[2].number, BLOCKS[2].hash, b"\xf9\x01\x00garbage"))
    result = _replay(_copy_with(tmp_path, records), tmp_path / "db")
    assert result.returncode == 1
    assert "RLP_STRUCTURES_ENCODING" in result.stderr and f"block {BLOCKS[2].number}" in result.stderr
    assert _head(tmp_path / "db") == BLOCKS[1].number


def test_block_whose_parent_does_not_match(tmp_path: Path) -> None:
    """Block 3 left out: block 4's parent is not the head."""
    records = [(b.number, b.hash, b.rlp) for b in BLOCKS[:2]]
    records.append((BLOCKS[2].number, BLOCKS[3].hash, BLOCKS[3].rlp))  # numbered 3, carries block 4
    result = _replay(_copy_with(tmp_path, records), tmp_path / "db")
    assert result.returncode == 1
    assert "UNKNOWN_PARENT" in result.stderr
    assert _head(tmp_path / "db") == BLOCKS[1].number


def test_wrong_state_root_leaves_database_untouched(tmp_path: Path) -> None:
    """A block whose header claims another state root: rejected, nothing of it committed."""
    raw = rlp.decode(BLOCKS[0].rlp)
    raw[0][3] = b"\x11" * 32  # header field 3: state root
    records = [(BLOCKS[0].number, BLOCKS[0].hash, rlp.encode(raw))]
    result = _replay(_copy_with(tmp_path, records), tmp_path / "db")
    assert result.returncode == 1
    assert "INVALID_STATE_ROOT" in result.stderr
    assert _head(tmp_path / "db") == 0


@pytest.mark.parametrize("strategy", ["optimistic", "auto"])
def test_sample_replays_with_parallel_strategies(tmp_path: Path, strategy: str) -> None:
    result = _replay(SAMPLE, tmp_path / "db", "--strategy", strategy, "--workers", "2", "--verify")
    assert result.returncode == 0, result.stderr
    assert _head(tmp_path / "db") == BLOCKS[-1].number


def test_full_disk_during_commit_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    """A disk that fills mid-replay (here: a file-size limit, so SQLite's writes fail
    with EFBIG) stops the replay with one line naming the block, exit 1, no traceback;
    the database keeps its last whole commit, and a second run finishes the file with
    the same head as a run that never failed."""
    import re
    import resource
    import signal

    datadir = tmp_path / "db"
    assert replay_file(str(SAMPLE), str(datadir), limit=1).committed == 1
    limit = (datadir / DB_NAME).stat().st_size + 4096

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run(
        [sys.executable, "-m", "evmpipe", "replay", str(SAMPLE), "--datadir", str(datadir)],
        capture_output=True, text=True, timeout=120, preexec_fn=full_disk,
    )
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    named = re.search(r"block (\d+): the commit failed \(.+; is the disk full\?\)", failed.stderr)
    assert named, failed.stderr
    head = _head(datadir)
    assert head is not None and int(named.group(1)) - 1 <= head <= int(named.group(1))
    with closing(sqlite3.connect(datadir / DB_NAME)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    resumed = _replay(SAMPLE, datadir)
    assert resumed.returncode == 0, resumed.stderr
    clean = tmp_path / "clean"
    replay_file(str(SAMPLE), str(clean))
    assert _head(datadir) == _head(clean) == BLOCKS[-1].number
    assert read_head(datadir) == read_head(clean)
