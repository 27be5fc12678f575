"""Datadirs that cannot be used: a clear message naming the file and exit 2, no traceback;
and one writer per datadir."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.datadir import DB_NAME, DatadirLock, open_datadir, read_head
from pipeline.errors import BadInput
from tests.node.helpers import ROOT, SAMPLE, sample


def _evmpipe(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "evmpipe", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def good_datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    datadir = tmp_path_factory.mktemp("good") / "data"
    result = _evmpipe("replay", str(SAMPLE), "--datadir", str(datadir))
    assert result.returncode == 0, result.stderr
    return datadir


def _copy(datadir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(datadir, copy)
    return copy


def _open(datadir: Path):  # type: ignore[no-untyped-def]
    header, _ = sample()
    return open_datadir(datadir, header.schedule, header.genesis_header_rlp, header.alloc)


def test_lock_is_exclusive_and_released_on_close(tmp_path: Path) -> None:
    store = _open(tmp_path / "data")
    with pytest.raises(BadInput, match=f"in use by another evmpipe process \\(pid {os.getpid()}\\)"):
        DatadirLock(tmp_path / "data")
    store.close()
    DatadirLock(tmp_path / "data").release()  # free again once the store is closed


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty-header"])
def test_damaged_database_is_named_not_a_traceback(good_datadir: Path, tmp_path: Path, damage: str) -> None:
    datadir = _copy(good_datadir, tmp_path)
    database = datadir / DB_NAME
    for suffix in ("-wal", "-shm"):
        database.with_name(DB_NAME + suffix).unlink(missing_ok=True)
    size = database.stat().st_size
    if damage == "truncated":
        os.truncate(database, size // 2)
    elif damage == "garbage":
        with open(database, "r+b") as out:
            out.write(os.urandom(4096))
    else:
        with open(database, "r+b") as out:
            out.write(b"\0" * 100)
    with pytest.raises(BadInput, match=str(database)):
        _open(datadir)
    DatadirLock(datadir).release()  # a failed open leaves no lock behind
    for command in (["head", "--datadir", str(datadir)], ["replay", str(SAMPLE), "--datadir", str(datadir)]):
        result = _evmpipe(*command)
        assert result.returncode == 2, (command, result.returncode, result.stderr)
        assert str(database) in result.stderr and "Traceback" not in result.stderr


def test_read_only_datadir(good_datadir: Path, tmp_path: Path) -> None:
    datadir = _copy(good_datadir, tmp_path)
    for suffix in ("-wal", "-shm"):  # a cleanly closed database has no WAL content
        (datadir / (DB_NAME + suffix)).unlink(missing_ok=True)
    files = [datadir, *datadir.iterdir()]
    for path in files:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.access(datadir, os.W_OK):
            pytest.skip("running as root: permissions do not make a directory read-only")
        head = read_head(datadir)
        assert head is not None and head.number == 4
        result = _evmpipe("head", "--datadir", str(datadir))
        assert result.returncode == 0 and result.stdout.startswith("block 4")
        result = _evmpipe("replay", str(SAMPLE), "--datadir", str(datadir))
        assert result.returncode == 2 and str(datadir) in result.stderr and "Traceback" not in result.stderr
    finally:
        for path in files:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_head_reads_without_the_wal_index(good_datadir: Path, tmp_path: Path) -> None:
    """What a read-only directory does to SQLite, made without root's bypass: the WAL
    index (-shm) cannot be created. `evmpipe head` still reads the file alone."""
    datadir = _copy(good_datadir, tmp_path)
    for suffix in ("-wal", "-shm"):
        (datadir / (DB_NAME + suffix)).unlink(missing_ok=True)
    (datadir / (DB_NAME + "-shm")).mkdir()  # not a file: SQLite cannot open it
    result = _evmpipe("head", "--datadir", str(datadir))
    assert result.returncode == 0 and result.stdout.startswith("block 4"), result.stderr
