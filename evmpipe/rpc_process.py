"""An RPC process: the node's HTTP server and JSON-RPC, off the pipeline's event loop.

`evmpipe node` starts one or more of these (`--rpc-processes`, evmpipe/rpc_supervisor.py)
and hands each the listening socket and one end of a control channel
(evmpipe/rpc_control.py). Why a process: on one event loop (and one GIL) with the
pipeline, a flood of requests took the CPU the pipeline needed and blocks fell behind
their schedule, while a busy pipeline delayed every answer (issue 12's load test). Here
the two share nothing but the database file and a socket pair.

What it sees: the committed chain only. It reads the datadir through read-only SQLite
connections (`ReadStore`, `read_view`: WAL gives each read a snapshot while the node
writes), and learns the committed head from the node's `state` messages, which follow
each commit. Blocks executed but not committed (the pipeline's overlay, at most
`--lookahead` of them) are not visible until their commit; `pending` means `latest`.
/health is the node's own answer, pushed at every block and every second; when the
node has not reported for `STALE_AFTER` seconds, /health says so with a 503. /metrics
is asked of the node (it holds the pipeline's counters) with this process's counts.

Run only by the node: `python -m evmpipe.rpc_process --listen-fd N --control-fd M ...`.
It ignores SIGINT (the node decides when to stop it) and exits when the control
channel closes, so it never outlives the node, even one killed with SIGKILL.
"""
from __future__ import annotations

import argparse
import importlib
import json
import signal
import socket
import sys
from typing import Any

import structlog
import trio

from evmpipe.httpd import Request, Response, serve_listeners
from evmpipe.rpc_control import HEARTBEAT, ControlChannel, ControlClosed
from evmpipe.rpc_deadline import DEFAULT_EVM_TIMEOUT
from pipeline.events import configure_logging
from state.store import Head

STALE_AFTER = 10.0  # seconds without a state message before /health reports the node silent
METRICS_WAIT = 5.0  # seconds to wait for the node's /metrics text
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
INVALID_REQUEST = -32600

_log = structlog.get_logger("evmpipe.rpc_process")


class Front:
    """Routes HTTP requests: JSON-RPC to an `RpcHandler` over the read-only datadir,
    /health from the node's last report, /metrics by asking the node."""

    def __init__(self, control: ControlChannel, *, hosts: tuple[str, ...] = (), origins: tuple[str, ...] = (), evm_timeout: float = DEFAULT_EVM_TIMEOUT) -> None:
        self.control = control
        self.evm_timeout = evm_timeout
        self.allowed_hosts = frozenset(LOOPBACK_HOSTS + tuple(h.lower() for h in hosts))
        self.origins = frozenset(origins)
        self.rpc: Any = None  # an RpcHandler once the node reports its store open and it is loaded
        self.opened: tuple[str, dict[str, Any]] | None = None  # (database path, fork schedule) from the node
        self.loaded = False  # evmpipe.rpc (py-evm and all) imported
        self.ready = trio.Event()  # self.rpc is set
        self.head: Head | None = None
        self.health: tuple[int, dict[str, Any]] | None = None
        self.reported = trio.current_time()  # when the node last sent its state
        self.counts = {"http": 0, "rpc": 0, "rpc_errors": 0}  # since the last report to the node
        self._metrics: dict[int, list[Any]] = {}  # request id -> [event, text]
        self._next_id = 0

    # -- from the node -----------------------------------------------------------------

    async def follow_node(self) -> None:
        """Apply the node's messages until the channel closes (the node is gone)."""
        while True:
            message = await self.control.receive()
            kind = message.get("type")
            if kind == "open":
                self.opened = (message["path"], message["schedule"])
                self._make_handler()
            elif kind == "state":
                head = message.get("head")
                self.head = None if head is None else Head(head[0], bytes.fromhex(head[1]), bytes.fromhex(head[2]))
                self.health = (message["status"], message["health"])
                self.reported = trio.current_time()
            elif kind == "metrics":
                waiting = self._metrics.get(message["id"])
                if waiting is not None:
                    waiting[1] = message["text"]
                    waiting[0].set()

    async def load(self) -> None:
        """Import JSON-RPC's modules (py-evm: seconds on a loaded machine) on a thread,
        while /health is already served."""
        await trio.to_thread.run_sync(importlib.import_module, "evmpipe.rpc")
        self.loaded = True
        self._make_handler()

    def _make_handler(self) -> None:
        if not self.loaded or self.opened is None or self.rpc is not None:
            return
        from evmpipe.rpc import RpcHandler
        from evmpipe.rpc_view import ReadStore
        from execution.forks import ForkSchedule

        path, schedule = self.opened
        self.rpc = RpcHandler(ReadStore(path), ForkSchedule.from_dict(schedule), on_call=self._count_call, head=lambda: self.head, inline=True, evm_timeout=self.evm_timeout)
        self.ready.set()
        _log.info("rpc_process_serving", path=path)

    async def report_counts(self) -> None:
        while True:  # at once, then every heartbeat, counted or not: the node takes silence for a wedged process
            try:
                await self.control.send({"type": "counts", **self._take_counts()})
            except ControlClosed:
                return  # follow_node sees it too, and ends the process
            await trio.sleep(HEARTBEAT)

    def _take_counts(self) -> dict[str, int]:
        counts, self.counts = self.counts, {"http": 0, "rpc": 0, "rpc_errors": 0}
        return counts

    def _count_call(self, ok: bool) -> None:
        self.counts["rpc"] += 1
        self.counts["rpc_errors"] += not ok

    # -- HTTP --------------------------------------------------------------------------

    async def route(self, request: Request) -> Response:
        self.counts["http"] += 1
        refused = self._refuse_foreign(request)
        if refused is not None:
            return refused
        if request.path == "/health":
            return self._health() if request.method == "GET" else _not_allowed("GET")
        if request.path == "/metrics":
            return await self._metrics_text() if request.method == "GET" else _not_allowed("GET")
        if request.path == "/":
            if request.method != "POST":
                return _not_allowed("POST")
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json":
                # a web page can send text/plain or a form cross-origin without asking; not JSON
                return Response(415, b"JSON-RPC needs Content-Type: application/json\n", "text/plain; charset=utf-8")
            if self.opened is not None:
                await self.ready.wait()  # the store is open; JSON-RPC is still being imported
            if self.rpc is None:
                return Response.json({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "no chain yet: the node is waiting for its source"}})
            body = await self.rpc.handle_body(request.body)
            return Response(204) if body is None else Response(200, body)
        return Response(404, b"not found: try GET /health, GET /metrics or POST / (JSON-RPC)\n", "text/plain; charset=utf-8")

    def _refuse_foreign(self, request: Request) -> Response | None:
        """DNS rebinding and CSRF: a page in the operator's browser may reach 127.0.0.1.
        It cannot choose the Host it sends (its own name) nor hide its Origin."""
        host = request.headers.get("host")
        if host is not None and host_name(host) not in self.allowed_hosts:
            return Response(403, f"Host {host!r} is not served (add it with --http-host)\n".encode(), "text/plain; charset=utf-8")
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.origins:
            return Response(403, f"Origin {origin!r} is not allowed (add it with --http-origin)\n".encode(), "text/plain; charset=utf-8")
        return None

    def _health(self) -> Response:
        silent = trio.current_time() - self.reported
        if self.health is None or silent > STALE_AFTER:
            body = {"ok": False, "head": None, "error": f"the node has not reported for {silent:.1f} s"}
            return Response.json(body, 503)
        status, body = self.health
        return Response.json(body, status)

    async def _metrics_text(self) -> Response:
        self._next_id += 1
        request_id = self._next_id
        waiting: list[Any] = [trio.Event(), None]
        self._metrics[request_id] = waiting
        try:
            await self.control.send({"type": "metrics", "id": request_id, **self._take_counts()})
            with trio.move_on_after(METRICS_WAIT):
                await waiting[0].wait()
        except ControlClosed:
            pass  # the node is going away: answered below as not in time
        finally:
            del self._metrics[request_id]
        if waiting[1] is None:
            return Response(503, b"the node did not answer with its metrics in time\n", "text/plain; charset=utf-8")
        return Response(200, waiting[1].encode(), "text/plain; version=0.0.4; charset=utf-8")


def host_name(host: str) -> str:
    """The name of a Host header, without its port ("[::1]:8545" -> "[::1]")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _not_allowed(method: str) -> Response:
    return Response(405, f"use {method}\n".encode(), "text/plain; charset=utf-8", {"Allow": method})


def oversized(length: int) -> Response:
    from evmpipe.httpd import MAX_BODY_BYTES

    error = {"code": INVALID_REQUEST, "message": f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}"}
    return Response(413, json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode())


async def serve(args: argparse.Namespace) -> None:
    control = ControlChannel(trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=args.control_fd))))
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=args.listen_fd)))
    front = Front(control, hosts=tuple(args.http_host), origins=tuple(args.http_origin), evm_timeout=args.evm_timeout)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(front.report_counts)
        nursery.start_soon(front.load)
        nursery.start_soon(_serve_http, front, listener, args.max_connections)
        try:
            await front.follow_node()
        except ControlClosed:
            pass  # the node is gone or stopping: so is this process
        nursery.cancel_scope.cancel()


async def _serve_http(front: Front, listener: trio.SocketListener, max_connections: int) -> None:
    await serve_listeners(front.route, [listener], oversized, max_connections=max_connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evmpipe.rpc_process", description="an RPC process of `evmpipe node` (started by the node only)")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--max-connections", type=int, required=True)
    parser.add_argument("--http-host", action="append", default=[])
    parser.add_argument("--http-origin", action="append", default=[])
    parser.add_argument("--evm-timeout", type=float, default=DEFAULT_EVM_TIMEOUT)
    parser.add_argument("--log", default="info")
    parser.add_argument("--log-file")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops its RPC processes itself, after draining
    configure_logging(level=args.log, log_file=args.log_file)
    try:
        trio.run(serve, args)
    except ControlClosed:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
