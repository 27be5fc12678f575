"""A wall-clock limit on eth_call / eth_estimateGas (evmpipe/rpc_deadline.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus_stub.blockfile import read_header
from evmpipe.replay import replay_file
from evmpipe.rpc import RpcHandler
from evmpipe.rpc_deadline import EvmTimeout, run_with_deadline
from state.store import StateStore
from tests.node.helpers import SAMPLE

LOOP_FOREVER = "0x5b600056"  # JUMPDEST PUSH1 0 JUMP: init code that spins until out of gas


def _spin_swallowing_exceptions() -> None:
    while True:
        try:
            sum(range(100))
        except Exception:  # py-evm-style broad handlers must not stop the interruption
            pass


async def test_a_call_past_its_limit_is_stopped_even_through_except_exception() -> None:
    limiter = trio.CapacityLimiter(1)
    started = time.monotonic()
    with pytest.raises(EvmTimeout):
        await run_with_deadline(_spin_swallowing_exceptions, 0.2, limiter)
    assert time.monotonic() - started < 30  # stopped, not left running forever
    assert await run_with_deadline(lambda: 42, 0.2, limiter) == 42  # the thread serves the next call


async def test_time_waiting_for_a_thread_does_not_count() -> None:
    limiter = trio.CapacityLimiter(1)
    results: list[Any] = []

    async def run(function: Any) -> None:
        try:
            results.append(await run_with_deadline(function, 0.5, limiter))
        except EvmTimeout:
            results.append("timeout")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, lambda: time.sleep(0.3) or "first")
        await trio.sleep(0.05)
        nursery.start_soon(run, lambda: time.sleep(0.3) or "second")  # waits 0.25 s for the thread, runs 0.3 s
    assert sorted(results) == ["first", "second"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    datadir = tmp_path_factory.mktemp("deadline") / "data"
    assert replay_file(str(SAMPLE), str(datadir)).committed == 4
    return datadir


async def _call(rpc: RpcHandler, method: str, *params: Any) -> dict[str, Any]:
    answer = await rpc.handle_body(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode())
    assert answer is not None
    return json.loads(answer)


@pytest.mark.parametrize("method", ["eth_call", "eth_estimateGas"])
async def test_an_endless_call_gets_a_timeout_error_and_the_server_goes_on(replayed: Path, method: str) -> None:
    store = StateStore(replayed / "state.sqlite")
    try:
        rpc = RpcHandler(store, read_header(SAMPLE).schedule, evm_timeout=0.2)
        answer = await _call(rpc, method, {"data": LOOP_FOREVER, "gas": hex(100_000_000)})
        assert answer["error"] == {"code": -32000, "message": "execution aborted (timeout = 0.2s)"}
        assert (await _call(rpc, "eth_call", {"data": "0x"}))["result"] == "0x"  # the next call runs
        unlimited = RpcHandler(store, read_header(SAMPLE).schedule, evm_timeout=0)
        answer = await _call(unlimited, "eth_call", {"data": LOOP_FOREVER, "gas": hex(100_000)})
        assert "out of gas" in answer["error"]["message"].lower()  # without a limit it runs out of gas instead
    finally:
        store.close()
