"""JSON-RPC served by RPC processes beside the pipeline's (evmpipe/rpc_process.py): a
crashed one is restarted while the node goes on committing; none outlives the node,
even one killed with SIGKILL;
what they answer is the committed chain (`pending` is `latest`, the head they report
is always readable)."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import trio

from evmpipe.rpc_control import ControlChannel
from evmpipe.rpc_process import STALE_AFTER, Front
from evmpipe.rpc_supervisor import SILENT_LIMIT, START_LIMIT, RpcProcessOptions, RpcSupervisor
from evmpipe.httpd import Request
from tests.node.helpers import append, wait_until, node_on_sample


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited too (its parent may not have reaped it yet)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_rpc_process_is_restarted_and_the_node_goes_on(tmp_path: Path) -> None:
    with node_on_sample(tmp_path, 1, "--rpc-processes", "2") as (node, chain, records):
        pids = wait_until(lambda: len(node.logged("rpc_process_started")) >= 2 and [line["pid"] for line in node.logged("rpc_process_started")], what="two RPC processes")
        assert node.rpc("eth_blockNumber")["result"] == "0x1"

        os.kill(pids[0], signal.SIGKILL)
        append(chain, records[1])  # the pipeline keeps committing meanwhile
        wait_until(lambda: node.logged("rpc_process_exited"), what="the exit logged")
        assert "SIGKILL" in node.logged("rpc_process_exited")[0]["reason"]
        wait_until(lambda: len(node.logged("rpc_process_started")) == 3, what="a new RPC process")
        wait_until(lambda: node.rpc("eth_blockNumber")["result"] == "0x2", what="block 2 served")
        metrics = node.get("/metrics")[1].decode()
        assert "evmpipe_rpc_process_restarts_total 1" in metrics and "evmpipe_rpc_processes 2" in metrics
        assert node.health()["ok"] and node.process.poll() is None

        assert node.stop() == 0
        for pid in [line["pid"] for line in node.logged("rpc_process_started")]:
            assert not _alive(pid), f"RPC process {pid} outlived the node"


def test_rpc_serves_the_committed_chain_and_dies_with_the_node(tmp_path: Path) -> None:
    with node_on_sample(tmp_path, 1) as (node, chain, records):
        for record in records[1:4]:
            append(chain, record)
            # while blocks commit, the head the RPC process reports is always readable
            deadline = time.monotonic() + 60
            while node.head() < record.number and time.monotonic() < deadline:
                number = node.rpc("eth_blockNumber")["result"]
                block = node.rpc("eth_getBlockByNumber", [number, False])["result"]
                assert block is not None and block["number"] == number
        health = node.health()["head"]
        wait_until(lambda: node.rpc("eth_blockNumber")["result"] == hex(health["number"]), what="the RPC head to follow /health")
        for tag in ("latest", "pending", "safe", "finalized"):
            block = node.rpc("eth_getBlockByNumber", [tag, False])["result"]
            assert block["hash"] == health["hash"] and block["stateRoot"] == health["state_root"], tag
        assert node.rpc("eth_getBlockByNumber", [hex(health["number"] + 1), False])["result"] is None

        # a node killed with SIGKILL runs no cleanup: its RPC process exits on its own
        pid = node.logged("rpc_process_started")[0]["pid"]
        node.process.kill()
        node.process.wait()
        wait_until(lambda: not _alive(pid), timeout=30, what="the RPC process to exit (its control channel closed)")


async def test_health_says_when_the_node_stops_reporting() -> None:
    ours, theirs = socket.socketpair()
    try:
        front = Front(ControlChannel(trio.SocketStream(trio.socket.from_stdlib_socket(ours))))
        request = Request("GET", "/health", "HTTP/1.1", {"host": "127.0.0.1"})
        assert (await front.route(request)).status == 503  # nothing reported yet
        front.health = (200, {"ok": True})
        front.reported = trio.current_time()
        assert (await front.route(request)).status == 200
        front.reported = trio.current_time() - STALE_AFTER - 1
        response = await front.route(request)
        assert response.status == 503 and b"has not reported" in response.body
    finally:
        theirs.close()


async def test_a_silent_rpc_process_is_killed(autojump_clock: trio.abc.Clock) -> None:
    """A process that stops reporting (wedged, SIGSTOP) is killed, to be started again:
    after START_LIMIT while it starts, SILENT_LIMIT once it has reported."""

    class Process:
        pid = 1
        killed_at: float | None = None

        def kill(self) -> None:
            self.killed_at = trio.current_time()

    supervisor = RpcSupervisor(RpcProcessOptions(0), state=lambda: (None, 200, {}), metrics=lambda: "", count=lambda *counts: None)
    for reports, limit in ((0, START_LIMIT), (1, SILENT_LIMIT)):
        ours, theirs = socket.socketpair()
        try:
            control = ControlChannel(trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
            theirs.sendall(b'{"type": "counts", "http": 1, "rpc": 0, "rpc_errors": 0}\n' * reports)
            process = Process()
            started = trio.current_time()
            await supervisor._listen(control, process, 0)  # type: ignore[arg-type]
            assert process.killed_at is not None and abs(process.killed_at - started - limit) < 1
        finally:
            theirs.close()
