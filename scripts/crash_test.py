"""Crash test: `kill -9` a replay at random instants, restart it, compare with a clean run.

    python scripts/crash_test.py --kills 20 --seed 1
    python scripts/crash_test.py --workload ../shared/workloads/mixed_b2_t1000_s2.json.gz --kills 50

Why: every block is committed in one SQLite transaction (WAL), so a process killed at
any instant must leave the last whole block and nothing of the next, and a restart
must resume after it. The test checks exactly that from the outside:

1. an uninterrupted `evmpipe replay FILE --datadir ref` gives the reference head and
   the canonical hash of every block;
2. `evmpipe replay FILE --datadir run` is started, killed with SIGKILL at a random
   instant (uniform over the part of a run that executes blocks), and after every kill
   the database is opened read-only: `PRAGMA integrity_check` must say ok, the head
   must not have gone backwards, and it must be the reference chain's block at that
   height (number, hash and state root);
3. after the last kill the replay runs to its end, which must commit only the blocks
   after the head it found (it resumes) and land on the reference head; the flat
   state (accounts, storage, code) must equal the reference's row for row.

A run that completes the chain before the next kill starts a new round on a fresh
datadir, so every kill interrupts real work. Exit status 0 when nothing differed.
The workload (default: a generated `mixed` chain of 40 blocks x 20 transactions) may
be a native block file or a BlockchainTest JSON (converted first).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from state.store import Head  # noqa: E402  (after the path is set)

DB_NAME = "state.sqlite"


@dataclass
class Tally:
    kills: int = 0
    kills_mid_run: int = 0  # the process was still running when killed
    kills_after_progress: int = 0  # ... and had committed at least one block in that run
    finished_early: int = 0
    rounds: int = 0
    resumed_runs: int = 0  # runs that started on a non-genesis head
    heads_at_kill: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _replay_command(blocks: Path, datadir: Path, fsync: str, json_out: Path | None = None, strategy: str = "sequential") -> list[str]:
    command = [sys.executable, "-m", "evmpipe", "replay", str(blocks), "--datadir", str(datadir), "--fsync", fsync, "--strategy", strategy]
    if json_out is not None:
        command += ["--json", str(json_out)]
    return command


def read_head(datadir: Path) -> Head | None:
    """The committed head, read-only (as a restarted node would find it)."""
    path = datadir / DB_NAME
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
    except sqlite3.OperationalError:  # killed before the schema was created
        return None
    finally:
        db.close()
    if row is None:
        return None
    value = row[0]
    return Head(int.from_bytes(value[:8], "big"), value[8:40], value[40:72])


def integrity(datadir: Path) -> str:
    path = datadir / DB_NAME
    if not path.exists():
        return "ok"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "; ".join(row[0] for row in db.execute("PRAGMA integrity_check"))
    finally:
        db.close()


def canonical_chain(datadir: Path) -> dict[int, bytes]:
    db = sqlite3.connect(f"file:{datadir / DB_NAME}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT number, hash FROM blocks"))
    finally:
        db.close()


def state_digest(datadir: Path) -> dict[str, str]:
    """A digest of each flat-state table, rows in key order."""
    db = sqlite3.connect(f"file:{datadir / DB_NAME}?mode=ro", uri=True)
    try:
        out = {}
        for table, order in (("accounts", "address"), ("storage", "address, slot"), ("code", "hash")):
            digest = hashlib.sha256()
            for row in db.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                for value in row:
                    digest.update(len(value).to_bytes(4, "big") + value)
            out[table] = digest.hexdigest()
        return out
    finally:
        db.close()


def prepare_workload(workload: str | None, workdir: Path, blocks: int, txs: int, seed: int) -> Path:
    """A native block file: the given one, converted, or generated."""
    from consensus_stub.blockfile import MAGIC
    from consensus_stub.convert import blocktest_to_native

    if workload is not None:
        source = Path(workload)
        with open(source, "rb") as stream:
            if stream.read(len(MAGIC)) == MAGIC:
                return source
        target = workdir / (source.name.split(".")[0] + ".blocks")
        blocktest_to_native(source, target)
        return target
    target = workdir / f"mixed_b{blocks}_t{txs}_s{seed}.blocks"
    if not target.exists():
        from evmpipe.gen import GenParams, generate

        fixture = workdir / "workload.json"
        generate(GenParams("mixed", blocks=blocks, txs=txs, seed=seed)).write(fixture)
        blocktest_to_native(fixture, target)
        fixture.unlink()
    return target


def timed_run(command: list[str], log: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with open(log, "ab") as out:
        code = subprocess.run(command, cwd=ROOT, env=_env(), stdout=out, stderr=out).returncode
    return code, time.perf_counter() - started


def check_after_kill(datadir: Path, previous: Head | None, reference: dict[int, bytes], tally: Tally, label: str) -> Head | None:
    report = integrity(datadir)
    if report != "ok":
        tally.problems.append(f"{label}: integrity_check: {report}")
    head = read_head(datadir)
    if head is None:
        if previous is not None:
            tally.problems.append(f"{label}: the head disappeared (was {previous.number})")
        return None
    if previous is not None and head.number < previous.number:
        tally.problems.append(f"{label}: head went backwards from {previous.number} to {head.number}")
    if reference.get(head.number) != head.hash:
        tally.problems.append(f"{label}: head {head.number} is 0x{head.hash.hex()[:16]}, the reference block there is 0x{reference.get(head.number, b'').hex()[:16]}")
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", help="native block file or BlockchainTest JSON (default: generate a mixed chain)")
    parser.add_argument("--kills", type=int, default=20, help="how many times to kill -9 the replay (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the kill instants (and the generated workload)")
    parser.add_argument("--blocks", type=int, default=40, help="generated workload: blocks (default 40)")
    parser.add_argument("--txs", type=int, default=20, help="generated workload: transactions per block (default 20)")
    parser.add_argument("--fsync", choices=["normal", "full", "off"], default="normal", help="passed to replay (default normal)")
    parser.add_argument("--strategy", default="sequential", help="passed to every replay (default sequential)")
    parser.add_argument("--workdir", help="keep files here (default: a temporary directory, removed at the end)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="evmpipe-crash-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        return run(args, workdir)


def run(args: argparse.Namespace, workdir: Path) -> int:
    rng = random.Random(args.seed)
    blocks = prepare_workload(args.workload, workdir, args.blocks, args.txs, args.seed)
    log = workdir / "replay.log"
    reference_dir = workdir / "reference"
    for stale in [reference_dir, *workdir.glob("run-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    code, full = timed_run(_replay_command(blocks, reference_dir, args.fsync, strategy=args.strategy), log)
    if code != 0:
        print(f"crash test: the reference replay failed (exit {code}); see {log}", file=sys.stderr)
        return 2
    code, startup = timed_run(_replay_command(blocks, reference_dir, args.fsync, strategy=args.strategy), log)  # nothing left to do: startup cost
    reference_head = read_head(reference_dir)
    assert reference_head is not None
    reference = canonical_chain(reference_dir)
    reference_state = state_digest(reference_dir)
    print(f"workload {blocks.name}: {reference_head.number} blocks; clean run {full:.2f} s, of which startup {startup:.2f} s")

    def kill_instant(head: Head | None) -> float:
        """Uniform over the part of the run that executes blocks: from just before the
        startup ends to the expected end of the blocks still to do."""
        left = 1.0 - (head.number / reference_head.number if head and reference_head.number else 0.0)
        return rng.uniform(0.8 * startup, startup + max(full - startup, 0.05) * max(left, 0.25))

    tally = Tally(rounds=1)
    round_dir = workdir / "run-1"
    head: Head | None = None
    started_all = time.perf_counter()
    for kill in range(1, args.kills + 1):
        label = f"kill {kill} (round {tally.rounds})"
        before = head
        if before is not None and before.number > 0:
            tally.resumed_runs += 1
        with open(log, "ab") as out:
            process = subprocess.Popen(_replay_command(blocks, round_dir, args.fsync, strategy=args.strategy), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=out)
            time.sleep(kill_instant(before))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                tally.kills_mid_run += 1
            elif process.returncode != 0:
                tally.problems.append(f"{label}: replay exited {process.returncode} before the kill")
            else:
                tally.finished_early += 1
            process.wait()
        tally.kills += 1
        head = check_after_kill(round_dir, before, reference, tally, label)
        tally.heads_at_kill.append(-1 if head is None else head.number)
        if process.returncode == -signal.SIGKILL and head is not None and (before is None or head.number > before.number):
            tally.kills_after_progress += 1
        if head == reference_head and kill < args.kills:
            final_check(round_dir, reference_head, reference_state, tally, f"round {tally.rounds}")
            tally.rounds += 1
            round_dir = workdir / f"run-{tally.rounds}"
            head = None

    before = head
    summary_json = workdir / "final.json"
    code, _ = timed_run(_replay_command(blocks, round_dir, args.fsync, summary_json, strategy=args.strategy), log)
    if code != 0:
        tally.problems.append(f"final run: replay exited {code}")
    elif summary_json.exists():
        committed = json.loads(summary_json.read_text())["blocks"]
        expected = reference_head.number - (before.number if before else 0)
        if committed != expected:
            tally.problems.append(f"final run: committed {committed} blocks, expected {expected} after head {before.number if before else None} (it did not resume)")
    check_after_kill(round_dir, before, reference, tally, "final run")
    final_check(round_dir, reference_head, reference_state, tally, f"round {tally.rounds}")

    heads = tally.heads_at_kill
    print(
        f"{tally.kills} kills in {time.perf_counter() - started_all:.1f} s over {tally.rounds} rounds: "
        f"{tally.kills_mid_run} mid-run ({tally.kills_after_progress} after committing blocks in that run), "
        f"{tally.finished_early} runs finished before their kill; {tally.resumed_runs} restarts resumed from a committed head"
    )
    if heads:
        print(f"heads found after the kills: {', '.join(str(h) for h in heads[:60])}{' ...' if len(heads) > 60 else ''}")
    print(f"final head {reference_head.number} 0x{reference_head.hash.hex()[:16]}… state root 0x{reference_head.state_root.hex()[:16]}…")
    print(f"mismatches: {len(tally.problems)}")
    for problem in tally.problems:
        print(f"  {problem}")
    return 1 if tally.problems else 0


def final_check(datadir: Path, reference_head: Head, reference_state: dict[str, str], tally: Tally, label: str) -> None:
    head = read_head(datadir)
    if head != reference_head:
        tally.problems.append(f"{label}: final head {head} differs from the reference {reference_head}")
    report = integrity(datadir)
    if report != "ok":
        tally.problems.append(f"{label}: integrity_check: {report}")
    state = state_digest(datadir)
    for table, digest in state.items():
        if digest != reference_state[table]:
            tally.problems.append(f"{label}: table {table} differs from the reference")


if __name__ == "__main__":
    sys.exit(main())
