"""The control channel between the node and each of its RPC processes: JSON lines over
a socket pair, both ends trio.

What travels on it (`type` names each message):

- node → RPC process: `open` (the datadir's database path and fork schedule, once the
  store is open), `state` (the committed head and the /health answer, at every block
  the node finishes and at least every `HEARTBEAT` seconds), `metrics` (the /metrics
  text asked for).
- RPC process → node: `counts` (HTTP requests, JSON-RPC calls and errors since the last
  report, every `HEARTBEAT` seconds), `metrics` (a request for the text, with counts).

Both ends are ours, so this is framing, not a parser of what strangers send; a line
is still bounded, so a confused peer cannot make the other side buffer without end.
"""
from __future__ import annotations

import json
from typing import Any

import trio

HEARTBEAT = 1.0  # seconds between state pushes and count reports when nothing else happens
MAX_LINE = 16 * 1024 * 1024


class ControlClosed(Exception):
    """The other end closed the channel (it exited, or is shutting down)."""


class ControlChannel:
    """One end of the channel: `send` a message, `receive` the next one."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._send_lock = trio.Lock()  # several tasks send; a stream takes one writer at a time

    async def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            try:
                await self.stream.send_all(line)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ControlClosed(str(error)) from error

    async def receive(self) -> dict[str, Any]:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a control message must be a JSON object")
                return message
            if len(self._buffer) > MAX_LINE:
                raise ValueError(f"a control line over {MAX_LINE} bytes")
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ControlClosed(str(error)) from error
            if not data:
                raise ControlClosed("end of stream")
            self._buffer += data

    async def aclose(self) -> None:
        await self.stream.aclose()
