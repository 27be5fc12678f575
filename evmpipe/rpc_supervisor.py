"""The node's side of its RPC processes: listen, start them, feed them, restart them.

The node binds the HTTP port itself (so a port in use is an error at start, and the
port stays the same across restarts) and hands the listening socket to each RPC
process (evmpipe/rpc_process.py), which accept from it; the node's own loop never
accepts a connection. While a process restarts, new connections wait in the kernel's
accept queue. Each process runs in a task of the node's nursery:

- it is started with the socket and one end of a control channel
  (evmpipe/rpc_control.py); the node sends it the store to open, then its state (head,
  /health) at each block and every `HEARTBEAT` seconds, and answers its /metrics asks;
- when it exits unexpectedly (a crash, the OOM killer, `kill -9`), or falls silent for
  `SILENT_LIMIT` seconds (wedged, stopped; it reports every `HEARTBEAT`) and is
  killed for it, the exit is logged and it is started again, after a pause that doubles with each quick failure (up to
  `MAX_BACKOFF`); the node itself goes on committing;
- when the node stops (its nursery is cancelled), each process gets SIGTERM, then
  SIGKILL after `STOP_WAIT` seconds.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import structlog
import trio

from evmpipe.httpd import connection_cap
from evmpipe.rpc_control import HEARTBEAT, ControlChannel, ControlClosed
from evmpipe.rpc_deadline import DEFAULT_EVM_TIMEOUT
from state.store import Head

STOP_WAIT = 2.0  # seconds between SIGTERM and SIGKILL at shutdown
MAX_BACKOFF = 5.0  # most seconds between restarts of a process that keeps failing
HEALTHY_RUN = 10.0  # a process that ran this long before exiting restarts at once
SILENT_LIMIT = 30.0  # seconds without a message (it reports every HEARTBEAT) before a process is killed as wedged
START_LIMIT = 300.0  # the same, before its first message (imports take seconds on a loaded machine)

_log = structlog.get_logger("evmpipe.rpc")


@dataclass(frozen=True)
class RpcProcessOptions:
    port: int
    processes: int = 1
    max_connections: int = 512  # over all processes
    hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    log_level: str = "info"
    log_file: str | None = None
    evm_timeout: float = DEFAULT_EVM_TIMEOUT


class RpcSupervisor:
    """Runs `options.processes` RPC processes on one listening socket.

    `state` gives (head, /health status, /health body) when asked; `metrics` the
    /metrics text; `count` takes the requests the processes report."""

    def __init__(self, options: RpcProcessOptions, *, state: Callable[[], tuple[Head | None, int, dict[str, Any]]], metrics: Callable[[], str], count: Callable[[int, int, int], None]) -> None:
        self.options = options
        self.state = state
        self.metrics = metrics
        self.count = count
        self.opened: dict[str, Any] | None = None  # the `open` message, once the store is open
        self.pids: dict[int, int] = {}  # slot -> pid of its running process
        self.restarts = 0
        self._changed = trio.Event()

    def open_store(self, path: str, schedule: dict[str, Any]) -> None:
        self.opened = {"type": "open", "path": path, "schedule": schedule}
        self.publish()

    def publish(self) -> None:
        """The state changed (a block committed, intake stopped): push it now."""
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen (an `OSError` here, before `started`, names a port in use), then keep
        the processes running until cancelled."""
        listener = socket.create_server(("127.0.0.1", self.options.port), backlog=socket.SOMAXCONN)
        try:
            task_status.started(listener.getsockname()[1])
            async with trio.open_nursery() as nursery:
                for slot in range(self.options.processes):
                    nursery.start_soon(self._keep_running, slot, listener)
        finally:
            listener.close()

    async def _keep_running(self, slot: int, listener: socket.socket) -> None:
        backoff = 0.1
        while True:
            started = trio.current_time()
            try:
                code = await self._run_once(slot, listener)
            except OSError as error:  # could not start one (out of processes or memory): try again later
                code, reason = None, f"could not start: {error}"
            ran = trio.current_time() - started
            backoff = 0.1 if ran >= HEALTHY_RUN else min(MAX_BACKOFF, backoff * 2)
            self.restarts += 1
            if code is not None:
                reason = f"killed by {_signal_name(-code)}" if code < 0 else f"exit {code}"
            _log.error("rpc_process_exited", slot=slot, reason=reason, ran_s=round(ran, 1), note=f"restarting in {backoff:.1f} s; the node goes on")
            await trio.sleep(backoff)

    async def _run_once(self, slot: int, listener: socket.socket) -> int:
        ours, theirs = socket.socketpair()
        options = self.options
        share = max(1, -(-options.max_connections // options.processes))
        command = [
            sys.executable, "-m", "evmpipe.rpc_process",
            "--listen-fd", str(listener.fileno()), "--control-fd", str(theirs.fileno()),
            "--max-connections", str(connection_cap(share)), "--log", options.log_level,
            "--evm-timeout", repr(options.evm_timeout),
        ]
        command += [f"--http-host={h}" for h in options.hosts] + [f"--http-origin={o}" for o in options.origins]
        if options.log_file:
            command += ["--log-file", options.log_file]
        try:
            process = await trio.lowlevel.open_process(command, pass_fds=(listener.fileno(), theirs.fileno()), env=_child_env())
        finally:
            theirs.close()
        self.pids[slot] = process.pid
        _log.info("rpc_process_started", slot=slot, pid=process.pid)
        control = ControlChannel(trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._feed, control)
                nursery.start_soon(self._listen, control, process, slot)
                await process.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.pids.pop(slot, None)
            with trio.CancelScope(shield=True):
                await _stop(process)
                await control.aclose()
        assert process.returncode is not None
        return process.returncode

    async def _feed(self, control: ControlChannel) -> None:
        """The store to open, then the state at each change and every heartbeat."""
        try:
            sent_open = False
            while True:
                if self.opened is not None and not sent_open:
                    await control.send(self.opened)
                    sent_open = True
                head, status, health = self.state()
                head_field = None if head is None else [head.number, head.hash.hex(), head.state_root.hex()]
                await control.send({"type": "state", "head": head_field, "status": status, "health": health})
                with trio.move_on_after(HEARTBEAT):
                    await self._changed.wait()
        except ControlClosed:
            return  # the process exited: `_run_once` sees it

    async def _listen(self, control: ControlChannel, process: trio.Process, slot: int) -> None:
        limit = START_LIMIT
        try:
            while True:
                with trio.move_on_after(limit):
                    message = await control.receive()
                    limit = SILENT_LIMIT
                    self.count(int(message.get("http", 0)), int(message.get("rpc", 0)), int(message.get("rpc_errors", 0)))
                    if message.get("type") == "metrics":
                        await control.send({"type": "metrics", "id": message["id"], "text": self.metrics()})
                    continue
                _log.error("rpc_process_silent", slot=slot, pid=process.pid, note=f"no report for {limit:.0f} s: killed, to be started again")
                process.kill()
                return
        except (ControlClosed, ValueError):
            return


def rpc_metrics(supervisor: RpcSupervisor) -> str:
    """The RPC processes' lines of /metrics (Prometheus text)."""
    return "\n".join([
        "# HELP evmpipe_rpc_processes RPC processes running.",
        "# TYPE evmpipe_rpc_processes gauge",
        f"evmpipe_rpc_processes {len(supervisor.pids)}",
        "# HELP evmpipe_rpc_process_restarts_total RPC processes that exited unexpectedly and were started again.",
        "# TYPE evmpipe_rpc_process_restarts_total counter",
        f"evmpipe_rpc_process_restarts_total {supervisor.restarts}",
    ]) + "\n"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(STOP_WAIT):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


def _child_env() -> dict[str, str]:
    """The node's environment, with this checkout first on the path: the process runs
    the same evmpipe as the node, installed or not."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
