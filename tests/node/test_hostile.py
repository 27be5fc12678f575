"""The node against what a hostile but fair client sends (issue 12): each failure found
then is a check here. The node must answer or close, never die, and keep intake going."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.node.helpers import ROOT, NodeProcess, append, sample, start_node, wait_until, write_chain, node_on_sample


def _raw(node: NodeProcess, data: bytes, timeout: float = 10.0) -> tuple[int, bytes, float]:
    """Send raw bytes; (status, body, seconds) of the one response (status 0: closed)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", node.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if lengths and len(body) >= lengths[0]:
                    break
    elapsed = time.monotonic() - started
    if not received:
        return 0, b"", elapsed
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body, elapsed


def _post(node: NodeProcess, body: bytes, headers: str = "Content-Type: application/json\r\n") -> tuple[int, bytes]:
    request = f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    status, data, _ = _raw(node, request)
    return status, data


def _strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response: not JSON")

    return json.loads(data, parse_constant=refuse)


def _call(node: NodeProcess, method: str, params: list) -> dict[str, Any]:
    status, body = _post(node, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode())
    assert status == 200, (status, body)
    return _strict_json(body)


def test_hostile_requests_are_answered_and_the_node_lives(tmp_path: Path) -> None:
    with node_on_sample(tmp_path, 2) as (node, _, _):
        # 200 KB of nesting: py_ecc's recursion limit let the C decoder overflow the stack (exit 139)
        status, body = _post(node, b"[" * 100000 + b"]" * 100000)
        assert status == 200 and _strict_json(body)["error"]["code"] == -32700
        assert "nested" in _strict_json(body)["error"]["message"]

        # NaN and Infinity are not JSON: refused, and never echoed back as an id
        for constant in (b"NaN", b"Infinity", b"-Infinity"):
            status, body = _post(node, b'{"jsonrpc": "2.0", "id": ' + constant + b', "method": "eth_blockNumber"}')
            answer = _strict_json(body)
            assert answer["error"]["code"] == -32700 and answer["id"] is None

        # quantities are hex digits only; numbers past SQLite's integers are invalid params
        for bad in ("0x-1", "0x 1", "0x1_0", "0x", "1", "0x+1"):
            assert _call(node, "eth_getBlockByNumber", [bad, False])["error"]["code"] == -32602, bad
        for huge in (hex(2**63), hex(2**64 - 1), "0x" + "f" * 64):
            assert _call(node, "eth_getBlockByNumber", [huge, False])["error"]["code"] == -32602, huge
            assert _call(node, "eth_getBalance", ["0x" + "00" * 20, huge])["error"]["code"] == -32602, huge
        assert _call(node, "eth_getBlockByNumber", [hex(2**63 - 1), False])["result"] is None

        # conflicting Content-Length: a 400 at once (it waited 10 s for a 408 before)
        status, _, seconds = _raw(node, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
        assert status == 400 and seconds < 5

        # DNS rebinding and CSRF: a foreign Host or any Origin is refused, and so is a
        # body that is not declared JSON (a form or text/plain needs no CORS preflight)
        call = b'{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}'
        assert _post(node, call, "Content-Type: application/json\r\nHost: attacker.example\r\n")[0] in (400, 403)
        status, _, _ = _raw(node, b"GET /health HTTP/1.1\r\nHost: attacker.example:8545\r\nConnection: close\r\n\r\n")
        assert status == 403
        assert _post(node, call, "Content-Type: application/json\r\nOrigin: http://attacker.example\r\n")[0] == 403
        assert _post(node, call, "Content-Type: text/plain\r\n")[0] == 415
        assert _post(node, call, "Content-Type: application/x-www-form-urlencoded\r\n")[0] == 415
        assert _post(node, call, "Content-Type: application/json; charset=utf-8\r\n")[0] == 200
        status, _, _ = _raw(node, b"GET /health HTTP/1.1\r\nHost: localhost:1234\r\nConnection: close\r\n\r\n")
        assert status == 200

        assert node.process.poll() is None
        assert node.get("/health")[0] == 200


def test_connection_flood_with_few_descriptors_recovers(tmp_path: Path) -> None:
    """`ulimit -n 256` and 300 idle connections: the old node ran out of descriptors for
    its block file and stopped intake for good (/health 503). Now connections past the
    cap wait to be accepted, the follower needs no new descriptor, and blocks appended
    during the flood are committed."""
    header, records = sample()
    chain = tmp_path / "chain.blocks"
    write_chain(chain, header, records[:2])
    node = start_node(tmp_path / "data", str(chain), tmp_path / "node.log", nofile=256)
    sockets: list[socket.socket] = []
    try:
        wait_until(lambda: node.head() == 2, what="head 2")
        for _ in range(300):
            sockets.append(socket.create_connection(("127.0.0.1", node.port), timeout=10))
        time.sleep(1.0)
        append(chain, records[2])  # the follower must read it while the connections are held
        time.sleep(2.0)
        for sock in sockets:
            sock.close()
        sockets.clear()
        assert wait_until(lambda: _health_or_none(node), timeout=60, what="/health answering again")["ok"]
        wait_until(lambda: node.head() == 3, timeout=60, what="the block appended during the flood")
        assert node.get("/health")[0] == 200
        assert node.process.poll() is None
        assert not node.logged("intake_stopped")
    finally:
        for sock in sockets:
            sock.close()
        node.kill()


def _health_or_none(node: NodeProcess) -> dict[str, Any] | None:
    try:
        status, body = node.get("/health")
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def test_health_is_served_while_waiting_for_the_source(tmp_path: Path) -> None:
    header, records = sample()
    chain = tmp_path / "later.blocks"
    node = start_node(tmp_path / "data", str(chain), tmp_path / "node.log")
    try:
        status, body = node.get("/health")
        assert status == 200 and json.loads(body)["intake"] == "waiting" and json.loads(body)["head"] is None
        assert _call(node, "eth_blockNumber", [])["error"]["code"] == -32000
        write_chain(chain, header, records[:1])
        wait_until(lambda: node.head() == 1, what="head 1 once the file appears")
    finally:
        node.kill()


def test_second_process_on_a_datadir_exits_2(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    with node_on_sample(tmp_path, 2) as (node, chain, _):
        replay = subprocess.run(
            [sys.executable, "-m", "evmpipe", "replay", str(chain), "--datadir", str(datadir)],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )
        assert replay.returncode == 2, replay.stderr
        assert "in use by another evmpipe process" in replay.stderr and f"pid {node.process.pid}" in replay.stderr
        second = subprocess.run(
            [sys.executable, "-m", "evmpipe", "node", "--datadir", str(datadir), "--source", str(chain)],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )
        assert second.returncode == 2 and "in use by another evmpipe process" in second.stderr
        head = subprocess.run([sys.executable, "-m", "evmpipe", "head", "--datadir", str(datadir)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert head.returncode == 0 and head.stdout.startswith("block 2")  # reading needs no lock
        assert node.head() == 2 and node.get("/health")[0] == 200
