"""evmpipe/rpc.py against a replayed sample, and evmpipe/httpd.py's request handling."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio

from consensus_stub.blockfile import read_header
from evmpipe.httpd import MAX_BODY_BYTES, Request, Response, serve_http
from evmpipe.replay import replay_file
from evmpipe.rpc import RpcHandler
from state.account import EMPTY_CODE_HASH
from state.store import StateStore
from tests.node.helpers import SAMPLE


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    datadir = tmp_path_factory.mktemp("rpc") / "data"
    outcome = replay_file(str(SAMPLE), str(datadir))
    assert outcome.committed == 4
    return datadir


@pytest.fixture
def rpc(replayed: Path) -> Any:
    store = StateStore(replayed / "state.sqlite")
    yield RpcHandler(store, read_header(SAMPLE).schedule)
    store.close()


async def call(rpc: RpcHandler, method: str, *params: Any) -> dict[str, Any]:
    answer = await rpc.handle_body(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode())
    assert answer is not None
    return json.loads(answer)


async def test_reads_match_the_store(rpc: RpcHandler) -> None:
    store = rpc.store
    head = store.head()
    assert (await call(rpc, "eth_blockNumber"))["result"] == hex(head.number) == "0x4"
    assert (await call(rpc, "eth_chainId"))["result"] == "0x1"
    contract = next((a, acc) for a, acc in store.iter_accounts() if acc.code_hash != EMPTY_CODE_HASH)
    user = next((a, acc) for a, acc in store.iter_accounts() if acc.nonce > 0 and acc.code_hash == EMPTY_CODE_HASH)
    assert (await call(rpc, "eth_getBalance", "0x" + user[0].hex(), "latest"))["result"] == hex(user[1].balance)
    assert (await call(rpc, "eth_getTransactionCount", "0x" + user[0].hex(), "0x4"))["result"] == hex(user[1].nonce)
    code = (await call(rpc, "eth_getCode", "0x" + contract[0].hex()))["result"]
    assert bytes.fromhex(code[2:]) == store.get_code(contract[1].code_hash)
    slot, value = next(iter(store.iter_storage(contract[0])))
    assert int((await call(rpc, "eth_getStorageAt", "0x" + contract[0].hex(), hex(slot), "latest"))["result"], 16) == value
    assert (await call(rpc, "eth_getBalance", "0x" + "00" * 20))["result"] == "0x0"
    block = (await call(rpc, "eth_getBlockByNumber", "0x2", False))["result"]
    assert block["hash"] == "0x" + store.canonical_hash(2).hex()
    assert (await call(rpc, "eth_getBlockByHash", block["hash"], False))["result"]["number"] == "0x2"
    assert (await call(rpc, "eth_getBlockByNumber", "earliest"))["result"]["number"] == "0x0"
    assert (await call(rpc, "eth_getBlockByNumber", "0x63"))["result"] is None
    receipt = (await call(rpc, "eth_getTransactionReceipt", block["transactions"][5]))["result"]
    assert receipt["transactionIndex"] == "0x5" and receipt["blockHash"] == block["hash"]
    assert int(receipt["gasUsed"], 16) > 0 and int(receipt["cumulativeGasUsed"], 16) >= int(receipt["gasUsed"], 16)
    assert (await call(rpc, "eth_getTransactionReceipt", "0x" + "11" * 32))["result"] is None


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{oops", -32700),
        (b"[]", -32600),
        (b'"a string"', -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "eth_blockNumber"}', -32600),
        (b'{"jsonrpc": "2.0", "id": [1], "method": "eth_blockNumber"}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": ["0x00"]}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": {"a": 1}}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": []}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": ["0xzz"]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": ["0x' + b"00" * 20 + b'", "0x2"]}', -32000),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": ["0x' + b"00" * 20 + b'", 5]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["latest", "yes"]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_getStorageAt", "params": ["0x' + b"00" * 20 + b'", "slot"]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": [1]}', -32602),
    ],
)
async def test_bad_requests_get_errors(rpc: RpcHandler, body: bytes, code: int) -> None:
    answer = json.loads(await rpc.handle_body(body))  # type: ignore[arg-type]
    assert answer["error"]["code"] == code, answer


async def test_batches_and_notifications(rpc: RpcHandler) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        17,
    ]
    answers = json.loads(await rpc.handle_body(json.dumps(batch).encode()))  # type: ignore[arg-type]
    assert [a.get("result") or a["error"]["code"] for a in answers] == ["0x4", -32601, -32600]
    assert await rpc.handle_body(b'{"jsonrpc": "2.0", "method": "eth_blockNumber"}') is None
    too_many = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber"} for i in range(101)]).encode()
    assert json.loads(await rpc.handle_body(too_many))["error"]["code"] == -32600  # type: ignore[arg-type]


# -- the HTTP server --------------------------------------------------------------


async def _echo(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    return Response.json({"method": request.method, "path": request.path, "body": request.body.decode()})


def _oversized(length: int) -> Response:
    return Response.json({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": f"{length} bytes"}}, 413)


async def _exchange(port: int, raw: bytes, responses: int = 1) -> list[tuple[int, bytes]]:
    """Send raw bytes, read `responses` responses (status, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        buffer = b""
        out: list[tuple[int, bytes]] = []
        with trio.fail_after(10):
            while len(out) < responses:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return out
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                status = int(head.split(b" ")[1])
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                if status != 100:
                    out.append((status, buffer[:length]))
                buffer = buffer[length:]
        return out


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_http, _echo, 0, _oversized)
        nursery.cancel_scope.cancel()


async def test_keep_alive_and_bodies(port: int) -> None:
    raw = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    (s1, b1), (s2, b2) = await _exchange(port, raw, 2)
    assert s1 == s2 == 200
    assert json.loads(b1)["path"] == "/health" and json.loads(b2)["body"] == "hello"
    [(status, body)] = await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
    assert status == 200 and json.loads(body)["body"] == "abc"


async def test_malformed_http_is_answered_not_fatal(port: int) -> None:
    assert (await _exchange(port, b"NONSENSE\r\n\r\n"))[0][0] == 400
    assert (await _exchange(port, b"GET / HTTP/2.0\r\n\r\n"))[0][0] == 505
    assert (await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))[0][0] == 411
    assert (await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"))[0][0] == 400
    assert (await _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 5000 + b"\r\n"))[0][0] == 431
    assert (await _exchange(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"))[0][0] == 500
    big = MAX_BODY_BYTES + 1
    [(status, body)] = await _exchange(port, f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n".encode() + b"x" * big)
    assert status == 413 and json.loads(body)["error"]["code"] == -32600
    # what a well-kept parser refuses, refused here too: each is a 400 at once
    for bad in (
        b"GET / HTTP/1.1\r\n\r\n",  # no Host on HTTP/1.1
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\nY: b\r\n\r\n",  # a bare LF
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}",
    ):
        with trio.fail_after(5):
            assert (await _exchange(port, bad))[0][0] == 400, bad
    assert (await _exchange(port, b"GET /still-up HTTP/1.1\r\nHost: x\r\n\r\n"))[0][0] == 200


async def test_head_response_has_no_body(port: int) -> None:
    """A HEAD answer carries the headers only, and the connection goes on."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b'"body": ""}'):
                received += await stream.receive_some(65536)
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and first.endswith(b"\r\n\r\n")  # no body after the HEAD's headers
    assert second.startswith(b"200") and b'"path": "/y"' in second


async def test_batcher_runs_each_call_once_with_its_own_outcome() -> None:
    from evmpipe.rpc import Batcher

    batcher = Batcher(trio.CapacityLimiter(1))
    ran: list[int] = []

    def double(x: int) -> int:
        ran.append(x)
        if x == 3:
            raise ValueError("three")
        return 2 * x

    results: dict[int, object] = {}

    async def call(i: int) -> None:
        await trio.sleep(0.001 * (i % 5))  # arrivals spread over several batches
        try:
            results[i] = await batcher.run(double, i)
        except ValueError as error:
            results[i] = str(error)

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(call, i)
    assert results == {i: "three" if i == 3 else 2 * i for i in range(60)}
    assert sorted(ran) == list(range(60))
    assert not batcher.running and not batcher.queue
