"""Shared by the node tests: the bundled sample split into records, a node subprocess,
and small HTTP / JSON-RPC clients."""
from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import rlp
from eth_hash.auto import keccak

from consensus_stub.blockfile import BlockFileHeader, BlockFileWriter, BlockRecord, iter_blocks, read_header

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "evmpipe" / "samples" / "sample.blocks"


def sample() -> tuple[BlockFileHeader, list[BlockRecord]]:
    return read_header(SAMPLE), list(iter_blocks(SAMPLE))


def write_chain(path: Path, header: BlockFileHeader, records: list[BlockRecord]) -> None:
    with BlockFileWriter.create(path, header) as writer:
        for record in records:
            writer.append(record.number, record.hash, record.rlp, record.state_root)


def append(path: Path, record: BlockRecord, *, replace_height: bool = False) -> None:
    """Append a block record; `replace_height` writes another block at the last height."""
    with BlockFileWriter.open_append(path) as writer:
        if replace_height:
            writer.last_number = record.number - 1
        writer.append(record.number, record.hash, record.rlp, record.state_root)


def with_bad_state_root(record: BlockRecord) -> BlockRecord:
    """The same block with a wrong state root in its header: invalid, another hash."""
    block = rlp.decode(record.rlp)
    block[0][3] = keccak(b"not the state root")
    header_hash = keccak(rlp.encode(block[0]))
    return BlockRecord(record.number, header_hash, rlp.encode(block), 0, None)


def wait_until(predicate: Callable[[], Any], timeout: float = 90.0, what: str = "condition") -> Any:
    """Poll until `predicate` holds. The timeout only catches a hang: on a loaded
    2-core CI machine a node start (imports, a spawned worker pool) takes seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class NodeProcess:
    process: subprocess.Popen
    log: Path
    port: int

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "text", "text": line})
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def post(self, body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def health(self) -> dict[str, Any]:
        return json.loads(self.get("/health")[1])

    def head(self) -> int:
        head = self.health()["head"]
        return -1 if head is None else head["number"]

    def rpc(self, method: str, params: list | None = None) -> dict[str, Any]:
        status, body = self.post(json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}).encode())
        assert status == 200, (status, body)
        return json.loads(body)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_node(datadir: Path, source: str, log: Path, *extra: str, nofile: int | None = None) -> NodeProcess:
    """`nofile`: the node's open-file limit (`ulimit -n`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "evmpipe", "node", "--datadir", str(datadir), "--source", source, "--http-port", "0", "--poll", "0.05", *extra]
    with open(log, "wb") as out:  # one log per run: the port line is this run's
        limit = None if nofile is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out, preexec_fn=limit)
    node = NodeProcess(process, log, 0)
    try:
        found = wait_until(lambda: process.poll() is not None or node.logged("http_listening"), what="the node's HTTP port")
        if process.poll() is not None:
            raise AssertionError(f"the node exited {process.returncode}:\n{log.read_text()}")
        node.port = found[-1]["port"]
    except BaseException:
        node.kill()
        raise
    return node


@contextmanager
def node_on_sample(tmp_path: Path, blocks: int, *extra: str, nofile: int | None = None) -> Iterator[tuple[NodeProcess, Path, list[BlockRecord]]]:
    """A node following a block file that holds the sample's first `blocks` blocks,
    once it has committed them: the node, the file (to append to) and every sample
    record. Killed on the way out, whatever happened."""
    header, records = sample()
    chain = tmp_path / "chain.blocks"
    write_chain(chain, header, records[:blocks])
    node = start_node(tmp_path / "data", str(chain), tmp_path / "node.log", *extra, nofile=nofile)
    try:
        wait_until(lambda: node.head() == blocks, what=f"head {blocks}")
        yield node, chain, records
    finally:
        node.kill()
