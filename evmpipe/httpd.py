"""The node's HTTP/1.1 server: h11 parses, trio serves, each connection in a task of its own.

Why h11: the wire format is where hostile input arrives (duplicate or conflicting
`Content-Length`, bare LF, obs-fold, missing `Host`, pipelined garbage), and a
well-kept parser with a state machine gets those right where a hand-written one
guessed. What this module adds around it: bounded header and body sizes, a deadline
per request, an idle timeout, a cap on open connections (a flood waits in the
kernel's accept queue instead of taking every file descriptor the node has),
`Expect: 100-continue`, and chunked request bodies refused (411). No TLS, no
compression, one request at a time per connection. Every failure of one connection
stays in that connection's task: a handler error is a 500, a malformed request a
400 (then close), a client that vanishes is forgotten.
"""
from __future__ import annotations

import json
import resource
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import h11
import structlog
import trio

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
REQUEST_DEADLINE = 10.0  # seconds to receive one whole request
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request
MAX_CONNECTIONS = 512  # at most; lowered to half the descriptor limit (see `connection_cap`)

_REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    415: "Unsupported Media Type", 421: "Misdirected Request", 431: "Request Header Fields Too Large",
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
    """One client connection: bytes in through h11, requests out."""

    def __init__(self, stream: trio.abc.Stream, oversized: Callable[[int], Response]) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.oversized = oversized
        self.method = b""  # of the request being answered: a HEAD response carries no body

    async def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if "exceeds" in str(exc) or exc.error_status_hint == 431:
                    raise _plain(431, "request headers too large") from None
                raise _plain(exc.error_status_hint or 400, f"bad request: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(65536)
            self.h11.receive_data(data)  # b"" tells h11 the client closed

    async def has_input(self) -> bool:
        """Wait for the first bytes of the next request; False when the client closed."""
        if self.h11.trailing_data[0]:
            return True
        data = await self.stream.receive_some(65536)
        self.h11.receive_data(data)
        return bool(data)

    async def read_request(self) -> Request | None:
        """The next request; None when the client closed the connection between requests."""
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise _plain(400, "bad request")
        self.method = event.method
        # h11 bounds an incomplete head only; a whole one that arrived at once is measured here
        if len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) > MAX_HEADER_BYTES:
            raise _plain(431, "request headers too large")
        version = event.http_version.decode("ascii", "replace")
        if version not in ("1.0", "1.1"):
            raise _plain(505, "only HTTP/1.0 and HTTP/1.1")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        target = event.target.decode("latin-1")
        request = Request(event.method.decode("latin-1"), target.split("?", 1)[0], f"HTTP/{version}", headers)
        if "transfer-encoding" in headers:
            raise _plain(411, "chunked request bodies are not supported: send Content-Length")
        length = int(headers.get("content-length", "0"))  # h11 checked it is one decimal number
        if length > MAX_BODY_BYTES:
            raise HttpError(self.oversized(length))
        if self.h11.they_are_waiting_for_100_continue:
            await self.stream.send_all(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed inside the body
                raise _plain(400, "connection closed inside the request body")
        request.body = bytes(body)
        return request

    async def respond(self, response: Response, keep_alive: bool) -> bool:
        """Send `response`; True when the connection can carry another request."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        headers = [("Content-Length", str(len(response.body)))]
        if response.body or response.status != 204:
            headers.append(("Content-Type", response.content_type))
        headers += list(response.headers.items())
        if not keep_alive or self.h11.their_state is h11.ERROR:
            headers.append(("Connection", "close"))
        reason = _REASONS.get(response.status, "Status").encode()
        data = self.h11.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        data += self.h11.send(h11.Data(data=response.body)) if response.body and self.method != b"HEAD" else b""
        data += self.h11.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


def _wants_keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return False  # h11 does not keep HTTP/1.0 connections alive
    return "close" not in connection


async def handle_connection(stream: trio.abc.Stream, handler: Handler, oversized: Callable[[int], Response]) -> None:
    """Serve requests on one connection until it closes, errs or idles out."""
    connection = _Connection(stream, oversized)
    try:
        async with stream:
            first = True
            while True:
                keep_alive = False
                try:
                    with trio.move_on_after(REQUEST_DEADLINE if first else IDLE_TIMEOUT) as idle:
                        if not await connection.has_input():
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
                if not await connection.respond(response, keep_alive):
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
    cap = connection_cap(max_connections or MAX_CONNECTIONS)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def serve(stream: trio.abc.Stream) -> None:
        await handle_connection(stream, handler, oversized)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_capped, listener, serve, cap)
