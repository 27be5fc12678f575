"""Hostile input files: deep nesting, gzip bombs, incomplete BlockchainTests. Each is a
clear error with a non-zero exit, never a crash (the nesting ones run in a subprocess:
on the old code they killed the interpreter with SIGSEGV)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from consensus_stub.convert import blocktest_to_native
from pipeline import jsonlimits
from pipeline.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]


def _evmpipe(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "evmpipe", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert jsonlimits.nesting_depth(b"[[[]]]") == 3
    assert jsonlimits.nesting_depth(b'["[[[[", {"a": [1]}]') == 3
    assert jsonlimits.nesting_depth(b'["\\"[[[", "]]]]]]"]') == 1
    assert jsonlimits.nesting_depth(b"1") == 0
    assert jsonlimits.loads(b'{"a": [[["ok"]]]}') == {"a": [[["ok"]]]}
    with pytest.raises(jsonlimits.JsonLimitError, match="100000 levels"):
        jsonlimits.loads("[" * 100000 + "]" * 100000)
    # an escaped quote must not end the string early and hide (or invent) brackets
    hidden = '["\\"' + "]" * 200 + '"' + ", " + "[" * 200 + "]" * 200 + "]"
    with pytest.raises(jsonlimits.JsonLimitError):
        jsonlimits.loads(hidden)


@pytest.mark.parametrize("command", ["convert", "blocktest"])
def test_deeply_nested_file_is_an_error_not_a_crash(tmp_path: Path, command: str) -> None:
    nested = tmp_path / "nest.json"
    nested.write_text('{"t": ' + "[" * 100000 + "]" * 100000 + "}")
    args = [command, str(nested)] + (["-o", str(tmp_path / "out.blocks")] if command == "convert" else [])
    result = _evmpipe(*args)
    assert result.returncode > 0, (result.returncode, result.stderr[-500:])  # negative: killed by a signal
    assert "nested 100001 levels deep" in result.stdout + result.stderr


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """64 MiB of JSON text in a 64 KiB gzip file, against a bound of 4 MiB: refused after
    reading a little more than the bound (the old code inflated all of it first)."""
    bomb = tmp_path / "bomb.json.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as out:
        out.write(b'{"t": {"network": "Cancun", "blocks": [')
        chunk = b" " * (1 << 20)
        for _ in range(64):
            out.write(chunk)
    monkeypatch.setattr(jsonlimits, "MAX_FILE_BYTES", 4 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match="bomb.json.gz.*more than 4194304 bytes"):
            blocktest_to_native(bomb, tmp_path / "out.blocks")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes"


def test_blocktest_gzip_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evmpipe.blocktest.discover import WorkItem

    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b"[" + b" " * (16 << 20) + b"]", compresslevel=1))
    monkeypatch.setattr(jsonlimits, "MAX_FILE_BYTES", 1 << 20)
    with pytest.raises(jsonlimits.JsonLimitError):
        WorkItem(source=str(bomb), member=None, path="bomb.json.gz").load()


@pytest.mark.parametrize("missing", ["pre", "lastblockhash"])
def test_incomplete_blocktest_is_refused_at_convert(tmp_path: Path, missing: str) -> None:
    native = ROOT / "evmpipe" / "samples" / "sample.blocks"
    full = tmp_path / "full.json"
    assert _evmpipe("convert", str(native), "-o", str(full)).returncode == 0
    data = json.loads(full.read_text())
    (name, test), = data.items()
    del test[missing]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({name: test}))
    result = _evmpipe("convert", str(broken), "-o", str(tmp_path / "out.blocks"))
    assert result.returncode == 2
    assert f"no '{missing}'" in result.stderr and "broken.json" in result.stderr
    assert not (tmp_path / "out.blocks").exists()
