"""SIGTERM stops `evmpipe blocktest` and every process it started.

Killed with the default handler, the pool's workers (forkserver children) and their
speculative workers outlived the command, idle but holding memory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT.parent / "shared" / "fixtures" / "blockchain-tests-dev.tar.gz"


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return "Z" not in (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


@pytest.mark.skipif(not ARCHIVE.exists() or not Path("/proc").is_dir(), reason="needs the fixture archive and /proc")
def test_sigterm_stops_the_workers_too() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "evmpipe", "blocktest", str(ARCHIVE), "-k", "stBadOpcode", "-j", "2", "--strategy", "optimistic", "-q"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        # wait for the pool and its speculative workers: 2 jobs, each with 2+ workers
        while len(_descendants(process.pid)) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        started = _descendants(process.pid)
        assert len(started) >= 5, "the worker processes did not start"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) != 0
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in started if _alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
