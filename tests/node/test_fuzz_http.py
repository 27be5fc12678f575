"""A bounded fuzz of the node's HTTP and JSON-RPC layer, against 127.0.0.1 only: random
bytes, random JSON, random nesting, random parameters for every method served. The
node must answer or close each connection, never die, and /health must stay 200."""
from __future__ import annotations

import json
import socket
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.node.helpers import NodeProcess, sample, start_node, wait_until, write_chain

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    header, records = sample()
    chain = tmp_path / "chain.blocks"
    write_chain(chain, header, records)
    process = start_node(tmp_path / "data", str(chain), tmp_path / "node.log")
    try:
        wait_until(lambda: process.head() == len(records), what="the sample committed")
        yield process
        assert process.process.poll() is None, "the node died under the fuzz"
        assert process.get("/health")[0] == 200
        # closing is allowed, but only by choice: no connection or handler ended in an exception
        assert not process.logged("http_connection_failed") and not process.logged("http_handler_failed")
    finally:
        process.kill()


def _send(node: NodeProcess, data: bytes) -> bytes:
    """Send bytes and read until the node answers and closes, or 5 s pass."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # the request is all there is: the node must not wait for more
            received = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return received
                received += chunk
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            return b""


def _alive(node: NodeProcess) -> None:
    assert node.process.poll() is None, f"the node exited {node.process.returncode}"
    assert node.get("/health")[0] == 200


def _post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["latest", "earliest", "pending", "0x0", "0x1", "0x" + "ff" * 20, "0x" + "00" * 32, "0x-1", "0x", hex(2**64)]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(node: NodeProcess, data: bytes) -> None:
    _send(node, data)
    _send(node, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + data)
    _alive(node)


@FUZZ
@given(
    method=st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"DELETE", b"PATCH", b"TRACE", b"CONNECT", b"get", b""]),
    path=st.sampled_from([b"/", b"/health", b"/metrics", b"*", b"/x?y=1", b"http://127.0.0.1/", b""]) | st.binary(max_size=20),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1\r\n", b""]),
    headers=st.lists(st.sampled_from([
        b"Host: 127.0.0.1", b"Host: evil.example", b"Content-Length: 2", b"Content-Length: 2", b"Content-Length: -1", b"Content-Length: 99999999999",
        b"Transfer-Encoding: chunked", b"Expect: 100-continue", b"Connection: close", b"Origin: http://evil.example",
        b"Content-Type: application/json", b"Content-Type: text/plain", b"X: \x00", b" folded", b"NoColon",
    ]), max_size=6),
    body=st.binary(max_size=64),
)
def test_random_request_heads(node: NodeProcess, method: bytes, path: bytes, version: bytes, headers: list[bytes], body: bytes) -> None:
    answer = _send(node, method + b" " + path + b" " + version + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
    _alive(node)


@FUZZ
@given(value=json_values)
def test_random_json_bodies(node: NodeProcess, value: Any) -> None:
    answer = _send(node, _post(json.dumps(value).encode()))
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    _alive(node)


@FUZZ
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from([b"[", b'{"a":']))
def test_random_nesting(node: NodeProcess, depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = opener * depth + b"1" + closer * depth
    if len(body) <= 1024 * 1024:
        answer = _send(node, _post(body))
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    _alive(node)


@FUZZ
@given(data=st.data())
def test_random_parameters_for_every_method(node: NodeProcess, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(sorted(_served(node))))
    params = data.draw(st.lists(json_values, max_size=4) | json_values)
    call_id = data.draw(st.none() | st.integers() | st.text(max_size=5))
    answer = _send(node, _post(json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}).encode()))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:200]
    reply = json.loads(body)
    assert "result" in reply or reply["error"]["code"] in (-32600, -32601, -32602, -32000, 3), reply
    _alive(node)


_METHODS: list[str] = []


def _served(node: NodeProcess) -> list[str]:
    """The methods the node serves, from its own error message for an unknown one."""
    if not _METHODS:
        message = node.rpc("no_such_method")["error"]["message"]
        _METHODS.extend(name.strip() for name in message.split("serves ", 1)[1].rstrip(")").split(","))
    return _METHODS
