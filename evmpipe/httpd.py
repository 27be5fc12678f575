"""A small HTTP/1.1 server on trio, for the node's status and JSON-RPC endpoints.

Why not a framework: the node serves three routes to local operators and tools, and
the project takes no new dependency for that. What it does: persistent connections,
`Content-Length` bodies (chunked request bodies are refused with 411), `Expect:
100-continue`, bounded header and body sizes, a deadline per request. What it does
not: TLS, pipelining beyond one request at a time per connection, compression.
Every failure of one connection stays in that connection's task: a handler error
is a 500, a malformed request a 400, a client that vanishes is forgotten.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Awaitable, Callable

import structlog
import trio

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
REQUEST_DEADLINE = 10.0  # seconds to receive one whole request
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request

_REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

_log = structlog.get_logger("evmpipe.http")


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: object, status: int = 200) -> Response:
        return cls(status, json.dumps(value).encode())


Handler = Callable[[Request], Awaitable[Response]]


class HttpError(Exception):
    """A request this server will not handle: answered with `response`, then closed."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _plain(status: int, text: str) -> HttpError:
    return HttpError(Response(status, (text + "\n").encode(), "text/plain; charset=utf-8"))


class _Connection:
    def __init__(self, stream: trio.abc.Stream, oversized: Callable[[int], Response]) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.oversized = oversized

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        if not data:
            return False
        self.buffer += data
        return True

    async def read_request(self) -> Request | None:
        """The next request; None when the client closed the connection between requests."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise _plain(431, "request headers too large")
            if not await self._fill():
                if self.buffer:
                    raise _plain(400, "connection closed inside the request headers")
                return None
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            raise _plain(431, "request headers too large")
        self.buffer = bytearray(rest)
        request = _parse_head(head)
        if "transfer-encoding" in request.headers:
            raise _plain(411, "chunked request bodies are not supported: send Content-Length")
        length_text = request.headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _plain(400, "bad Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise HttpError(self.oversized(length))
        if length > len(self.buffer) and request.headers.get("expect", "").lower() == "100-continue":
            await self.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(self.buffer) < length:
            if not await self._fill():
                raise _plain(400, "connection closed inside the request body")
        request.body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return request


def _parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise _plain(400, "undecodable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _plain(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _plain(505, "only HTTP/1.0 and HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _plain(400, "bad header line")
        headers[name.lower()] = value.strip()
    return Request(method, target.split("?", 1)[0], version, headers)


def _render(response: Response, keep_alive: bool) -> bytes:
    head = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    if response.body or response.status != 204:
        head.append(f"Content-Type: {response.content_type}")
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


def _wants_keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


async def handle_connection(stream: trio.abc.Stream, handler: Handler, oversized: Callable[[int], Response]) -> None:
    """Serve requests on one connection until it closes, errs or idles out."""
    connection = _Connection(stream, oversized)
    try:
        async with stream:
            first = True
            while True:
                keep_alive = False
                try:
                    with trio.move_on_after(IDLE_TIMEOUT if not first else REQUEST_DEADLINE) as idle:
                        while not connection.buffer:
                            if not await connection._fill():
                                return
                    if idle.cancelled_caught:
                        return
                    with trio.fail_after(REQUEST_DEADLINE):
                        request = await connection.read_request()
                    if request is None:
                        return
                    keep_alive = _wants_keep_alive(request)
                    try:
                        response = await handler(request)
                    except Exception:
                        _log.exception("http_handler_failed", path=request.path)
                        response = Response(500, b"internal error\n", "text/plain; charset=utf-8")
                except HttpError as error:
                    response = error.response
                except trio.TooSlowError:
                    response = Response(408, b"request timeout\n", "text/plain; charset=utf-8")
                await stream.send_all(_render(response, keep_alive))
                if not keep_alive:
                    await _linger(stream)
                    return
                first = False
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return  # the client went away
    except Exception:
        _log.exception("http_connection_failed")


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close, then read what the client still sends (an oversized body): closing
    with unread input makes the kernel reset the connection, and the client would
    lose the response it was sent."""
    if isinstance(stream, trio.SocketStream):
        await stream.send_eof()
    with trio.move_on_after(2.0):
        received = 0
        while received < 8 * MAX_BODY_BYTES:
            data = await stream.receive_some(65536)
            if not data:
                return
            received += len(data)


async def serve_http(handler: Handler, port: int, oversized: Callable[[int], Response], *, host: str = "127.0.0.1", task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on host:port (0: any free port, reported through `task_status`).

    `trio.serve_tcp` split in its two halves, so that a port already in use raises
    `OSError` from `nursery.start` itself, where the caller can name it."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(handle_connection, handler=handler, oversized=oversized), listeners)
