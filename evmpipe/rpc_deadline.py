"""A wall-clock limit on one `eth_call` or `eth_estimateGas` (geth's `--rpc.evmtimeout`).

Gas does not bound time here: py-evm prices precompiles for native code, and its
pure-Python pairing check (`py_ecc`) takes about a second for 113k gas, so a call
naming the gas cap can hold one of the RPC process's four threads for many minutes,
and four such calls stop every heavy method. A thread cannot be cancelled, so the call
runs on its thread as before and, past the limit, that thread is sent `EvmTimeout`
(`PyThreadState_SetAsyncExc`): it is raised at the thread's next bytecode boundary, in
the interpreter loop, unwinds through py-evm and closes the call's read view on the
way out. It derives from BaseException so that py-evm's and our own `except Exception`
handlers let it through. The exception can only be delivered while the call runs: it
is sent and withdrawn under one lock, and withdrawn before the thread goes back to
trio's thread cache.
"""
from __future__ import annotations

import ctypes
import threading
import time
from functools import partial
from typing import Any, Callable

import outcome
import trio

DEFAULT_EVM_TIMEOUT = 5.0  # seconds, geth's default
POLL = 0.05  # seconds between the watchdog's looks at the clock


class EvmTimeout(BaseException):
    """Raised inside a call's thread when it ran past its limit."""


class _Interruptible:
    """One call on a worker thread, which `interrupt` can stop while (only while) it runs."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.lock = threading.Lock()
        self.thread_id: int | None = None
        self.started: float | None = None  # monotonic time the thread took it up (after waiting for a slot)
        self.finished = False
        self.interrupted = False

    def run(self) -> Any:
        with self.lock:
            self.thread_id = threading.get_ident()
            self.started = time.monotonic()
        try:
            return self.function()
        finally:
            with self.lock:
                self.finished = True
                if self.interrupted:  # sent but maybe not raised yet: withdraw it
                    _set_async_exception(self.thread_id, None)

    def interrupt(self) -> None:
        with self.lock:
            if self.thread_id is not None and not self.finished and not self.interrupted:
                self.interrupted = True
                _set_async_exception(self.thread_id, EvmTimeout)


def _set_async_exception(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None)


async def run_with_deadline(function: Callable[[], Any], seconds: float, limiter: trio.CapacityLimiter) -> Any:
    """`function()` on a worker thread of `limiter`, stopped with `EvmTimeout` once it
    has run `seconds` (the time waiting for a free thread does not count)."""
    call = _Interruptible(function)

    async def watch() -> None:
        while True:
            await trio.sleep(POLL)
            started = call.started
            if started is not None and time.monotonic() - started >= seconds:
                call.interrupt()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        result = await outcome.acapture(partial(trio.to_thread.run_sync, call.run, limiter=limiter))
        nursery.cancel_scope.cancel()
    return result.unwrap()  # outside the nursery: its error is the caller's, not a group's
