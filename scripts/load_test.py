"""Load test of a node's JSON-RPC while blocks commit: N clients for T seconds, loopback only.

Starts `evmpipe node` on a devnet source (a generated chain handed out one block per
`--interval` seconds, so blocks commit during the whole run), then runs N clients on
trio, each with one kept-alive HTTP/1.1 connection, sending a mix of calls one after
another (closed loop, `--think` seconds between a response and the next request).
Reports requests, errors, latency percentiles, and whether blocks kept their
schedule. Bounded: at most 600 s and 2,000 clients; only 127.0.0.1.

    python scripts/load_test.py --clients 200 --seconds 20
    python scripts/load_test.py --clients 50 --seconds 10 --think 0.05 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 600
MAX_CLIENTS = 2000

MIX = [  # (weight, method, params): what a wallet and an explorer ask most
    (4, "eth_blockNumber", []),
    (3, "eth_getBalance", ["0x" + "00" * 19 + "01", "latest"]),
    (2, "eth_getBlockByNumber", ["latest", False]),
    (1, "eth_chainId", []),
    (1, "eth_gasPrice", []),
]


class Client:
    """One kept-alive connection, one request at a time (the node always sends
    Content-Length, so a response ends where it says)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buffer = b""

    async def request(self, body: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer = b""
        stream = self.stream
        head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        await stream.send_all(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self._receive()
        response_head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = response_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
        while len(self.buffer) < length:
            self.buffer += await self._receive()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        if any(line.lower() == "connection: close" for line in lines[1:]):
            await stream.aclose()
            self.stream = None
        return status, data

    async def _receive(self) -> bytes:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the node closed the connection")
        return data


async def client_loop(port: int, deadline: float, think: float, seed: int, latencies: list[tuple[str, float]], errors: list[str], methods: frozenset[str]) -> None:
    calls = [(method, params) for weight, method, params in MIX for _ in range(weight) if method in methods]
    client = Client(port)
    index = seed
    while time.monotonic() < deadline:
        method, params = calls[index % len(calls)]
        index += 1
        body = json.dumps({"jsonrpc": "2.0", "id": index, "method": method, "params": params}).encode()
        started = time.perf_counter()
        try:
            with trio.fail_after(30):
                status, data = await client.request(body)
            reply = json.loads(data)
            if status != 200 or "error" in reply:
                errors.append(f"{method}: HTTP {status} {reply.get('error')}")
        except Exception as exc:  # a refused or reset connection counts as an error
            errors.append(f"{method}: {type(exc).__name__}: {exc}")
            client.stream = None
        latencies.append((method if index > seed + 1 else "(first, with connect)", time.perf_counter() - started))
        if think:
            await trio.sleep(think)


async def run_clients(port: int, clients: int, seconds: float, think: float, methods: frozenset[str]) -> tuple[list[tuple[str, float]], list[str], float]:
    latencies: list[tuple[str, float]] = []
    errors: list[str] = []
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client_loop, port, started + seconds, think, i, latencies, errors, methods)
    return latencies, errors, time.monotonic() - started


def _get(port: int, path: str) -> Any:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def start_node(datadir: Path, interval: float, blocks: int, log: Path, rpc_processes: int = 1) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "evmpipe", "node", "--datadir", str(datadir), "--source", f"devnet:{interval}", "--devnet-blocks", str(blocks), "--http-port", "0", "--log-file", str(log), "--rpc-processes", str(rpc_processes)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the node exited {process.returncode}; see {log}")
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        ports = [line["port"] for line in lines if line.get("event") == "http_listening"]
        committed = [line for line in lines if line.get("event") == "committed"]
        if ports and committed:
            return process, ports[-1]
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the node did not start within 300 s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long they send (default 20)")
    parser.add_argument("--think", type=float, default=0.0, help="seconds each client waits between a response and its next request (default 0)")
    parser.add_argument("--interval", type=float, default=1.0, help="devnet: seconds between blocks handed to the node (default 1)")
    parser.add_argument("--methods", default=",".join(m for _, m, _ in MIX), help="comma-separated subset of the mix (default: all of it)")
    parser.add_argument("--rpc-processes", type=int, default=1, help="the node's --rpc-processes (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if not set(args.methods.split(",")) <= {m for _, m, _ in MIX}:
        parser.error(f"--methods: choose from {', '.join(m for _, m, _ in MIX)}")
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--clients 1..{MAX_CLIENTS}, --seconds up to {MAX_SECONDS}")
    with tempfile.TemporaryDirectory(prefix="evmpipe-load-") as tmp:
        log = Path(tmp) / "node.log"
        blocks = int(args.seconds / args.interval) + 30  # enough to commit through the whole run
        process, port = start_node(Path(tmp) / "data", args.interval, blocks, log, args.rpc_processes)
        load_before = os.getloadavg()[0]
        try:
            head_before = _get(port, "/health")["head"]["number"]
            methods = frozenset(args.methods.split(","))
            timed, errors, wall = trio.run(run_clients, port, args.clients, args.seconds, args.think, methods)
            health = _get(port, "/health")
            head_after = health["head"]["number"]
        finally:
            process.terminate()
            process.wait(60)
    expected_blocks = wall / args.interval
    latencies = [seconds for method, seconds in timed if not method.startswith("(")]  # steady state; first requests listed apart
    by_method = {
        method: {"requests": len(times), "p50_ms": round(percentile(times, 0.5) * 1000, 1), "p99_ms": round(percentile(times, 0.99) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}
        for method in sorted({m for m, _ in timed})
        for times in [[t for m, t in timed if m == method]]
    }
    figures = {
        "clients": args.clients,
        "seconds": round(wall, 2),
        "think_s": args.think,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "errors": len(errors),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "blocks_committed": head_after - head_before,
        "blocks_scheduled": round(expected_blocks, 1),
        "health_after": health["ok"],
        "rpc_processes": args.rpc_processes,
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
    for key, value in figures.items():
        print(f"{key:>18}: {value}")
    for method, row in by_method.items():
        print(f"  {method:<22} {row['requests']:>7} requests  p50 {row['p50_ms']:>7} ms  p99 {row['p99_ms']:>7} ms  max {row['max_ms']:>8} ms")
    figures["by_method"] = by_method
    for error in errors[:5]:
        print(f"  error: {error}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if not errors and health["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
