"""The node's HTTP/1.1 server on trio: a small parser of our own, hardened, each
connection in a task of its own.

Why not h11: it was tried (issue 12) and measured. Parsing a JSON-RPC request and
writing its response costs about 250 µs through h11's state machine and about 11 µs
here (a microbenchmark on the development machine), on the event loop the pipeline
shares; under 200 clients the node with h11 served fewer requests and committed fewer
of its scheduled blocks (docs/OPERATIONS.md, *Load test*). What h11 got right is done here too, strictly: one
request line of three parts, header names that are tokens, no control characters in
values (a bare LF, NUL), no space before the colon (so no obs-fold), exactly one
`Content-Length` of digits, at most one `Host` (required on HTTP/1.1),
`Transfer-Encoding` refused (411), bounded header and body sizes, a deadline per
request, an idle timeout, a cap on open connections (a flood waits in the kernel's
accept queue instead of taking every file descriptor the node has), `Expect:
100-continue`, and no body in an answer to HEAD. A malformed request is a 400 and
closes its own connection only; a handler error is a 500; a client that vanishes is
forgotten. tests/node/test_fuzz_http.py fuzzes it.
"""
from __future__ import annotations

import json
import re
import resource
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import structlog
import trio

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
REQUEST_DEADLINE = 10.0  # seconds to receive one whole request
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request
MAX_CONNECTIONS = 512  # at most; lowered to half the descriptor limit (see `connection_cap`)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods and header names
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than HTAB
_SINGLE = ("content-length", "host", "transfer-encoding")  # a request repeating one of them is refused

_REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

_log = structlog.get_logger("evmpipe.http")


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]  # lower-case names; a repeated header's values joined by ", "
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
        if not length_text.isdigit() or len(length_text) > 18 or not length_text.isascii():
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
    if not _TOKEN.fullmatch(method) or not target or _BAD_VALUE.search(target):
        raise _plain(400, "bad request line")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _plain(505, "only HTTP/1.0 and HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise _plain(400, "bad header line")
        key = name.lower()
        if key in headers:
            if key in _SINGLE:  # two lengths or hosts: which one a proxy used is anyone's guess
                raise _plain(400, f"more than one {name} header")
            headers[key] = f"{headers[key]}, {value.strip()}"
        else:
            headers[key] = value.strip()
    if version == "HTTP/1.1" and "host" not in headers:
        raise _plain(400, "HTTP/1.1 requests need a Host header")
    return Request(method, target.split("?", 1)[0], version, headers)


def _render(response: Response, keep_alive: bool, head_only: bool = False) -> bytes:
    head = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    if response.body or response.status != 204:
        head.append(f"Content-Type: {response.content_type}")
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else response.body)


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
                head_only = False
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
                    head_only = request.method == "HEAD"
                    try:
                        response = await handler(request)
                    except Exception:
                        _log.exception("http_handler_failed", path=request.path)
                        response = Response(500, b"internal error\n", "text/plain; charset=utf-8")
                except HttpError as error:
                    response = error.response
                except trio.TooSlowError:
                    response = Response(408, b"request timeout\n", "text/plain; charset=utf-8")
                await stream.send_all(_render(response, keep_alive, head_only))
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


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """How many connections to serve at once: `wanted`, but at most half the process's
    file descriptor limit, so a flood can never take the descriptors the block source,
    SQLite and the worker pipes need (`ulimit -n 256` gives 128)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))


async def _accept_capped(listener: trio.SocketListener, handler: Callable[[trio.abc.Stream], Awaitable[None]], cap: int) -> None:
    """Accept while fewer than `cap` connections are open; at the cap, stop accepting
    (new connections wait in the kernel's queue, holding no descriptor of ours)."""
    slots = trio.Semaphore(cap)

    async def serve_one(stream: trio.abc.Stream) -> None:
        try:
            await handler(stream)
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        while True:
            try:
                slots.acquire_nowait()  # no yield per accept: a burst of connections is taken at once
            except trio.WouldBlock:
                await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as error:  # EMFILE and the like: out of descriptors for now
                slots.release()
                _log.warning("http_accept_failed", error=str(error), note="retrying in 0.1 s")
                await trio.sleep(0.1)
                continue
            except BaseException:
                slots.release()
                raise
            nursery.start_soon(serve_one, stream)


async def serve_http(handler: Handler, port: int, oversized: Callable[[int], Response], *, host: str = "127.0.0.1", max_connections: int | None = None, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on host:port (0: any free port, reported through `task_status`).

    Listening comes before `task_status.started`, so that a port already in use raises
    `OSError` from `nursery.start` itself, where the caller can name it."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await serve_listeners(handler, listeners, oversized, max_connections=max_connections)


async def serve_listeners(handler: Handler, listeners: list[trio.SocketListener], oversized: Callable[[int], Response], *, max_connections: int | None = None) -> None:
    """Serve connections accepted from `listeners` (the node's RPC processes share one
    listening socket, handed down by the node) until cancelled."""
    cap = connection_cap(max_connections or MAX_CONNECTIONS)

    async def serve(stream: trio.abc.Stream) -> None:
        await handle_connection(stream, handler, oversized)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_capped, listener, serve, cap)
