"""Long-lived worker processes for speculative execution.

Tasks are not cores: trio gives concurrency, EVM execution needs processes. Each
worker imports py-evm once, opens the state database read-only (WAL lets it read
beside the writer), keeps its own cache warm across blocks, and mirrors the master's
overlay of uncommitted block diffs. A request carries what changed since the last
one (new diffs, the committed head, a generation that bumps when the master threw
in-flight work away), the block's header and its share of the transactions, as
msgpack bytes; the reply is the packed `SpecResult`s plus the worker's CPU seconds.

The trio side (`WorkerPool.start_speculation`) sends and receives on trio worker
threads, so the event loop never blocks on a pipe; it hands a block out in chunks,
round-robin in block order, so that in-order validation starts on the first chunk
while the workers run the rest; and it checks that every transaction it sent came
back (a dead worker raises `FatalError` inside the nursery).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from pipeline.errors import FatalError

#: Below this many transactions per worker a message costs more than it saves.
MIN_TXS_PER_WORKER = 8


@dataclass
class BlockRequest:
    db_path: str
    generation: int
    committed: int
    diffs: list[tuple[int, bytes]]
    schedule: dict
    header_rlp: bytes
    prev_hashes: list[bytes]
    txs: list[tuple[int, bytes, bytes | None]]  # index, encoded transaction, sender if known

    def pack(self) -> bytes:
        return msgpack.packb(
            ["speculate", [self.db_path, self.generation, self.committed, self.diffs, self.schedule, self.header_rlp, self.prev_hashes, self.txs]],
            use_bin_type=True,
        )


def worker_main(conn: Any) -> None:
    """A worker's loop: one request, one reply, until the pipe closes.

    Ctrl-C reaches the whole process group; the master decides when workers stop
    (it drains in-flight blocks first), so workers ignore SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import execution  # noqa: F401  (selects the keccak backend before eth imports)
    import execution.block  # noqa: F401  (py-evm and every fork, imported before the first block)
    from execution.speculate import pack_results

    worker = _Worker()
    conn.send_bytes(msgpack.packb(time.process_time()))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if data == b"stop":
            break
        op, payload = msgpack.unpackb(data, raw=False)
        if op != "speculate":
            raise ValueError(f"unknown request {op!r}")
        reply = pack_results(worker.run(payload))
        conn.send_bytes(msgpack.packb([time.process_time(), reply], use_bin_type=True))
    worker.close()


class _Worker:
    def __init__(self) -> None:
        self.store: Any = None
        self.overlay: Any = None
        self.path = ""
        self.generation = -1
        self.schedules: dict[str, Any] = {}

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _sync(self, path: str, generation: int, committed: int, diffs: list) -> None:
        from state.codec import unpack_diff
        from state.overlay import Overlay
        from state.store import StateStore

        if path != self.path or generation != self.generation:
            self.close()
            self.store = StateStore(path, readonly=True)
            self.overlay = Overlay(self.store)
            self.path, self.generation = path, generation
        for number, diff in self.overlay.diffs:
            if number <= committed:
                self.store.update_cache(diff)
        self.overlay.drop_committed(committed)
        for number, packed in diffs:
            self.overlay.push(number, unpack_diff(packed))

    def _schedule(self, schedule: dict) -> Any:
        import json

        from execution.forks import ForkSchedule

        key = json.dumps(schedule, sort_keys=True)
        return self.schedules.get(key) or self.schedules.setdefault(key, ForkSchedule.from_dict(schedule))

    def run(self, payload: list) -> list:
        from execution.block import make_vm
        from execution.decode import decode_header, mark_sender, skip_signature_check
        from execution.speculate import speculate

        path, generation, committed, diffs, schedule, header_rlp, prev_hashes, txs = payload
        self._sync(path, generation, committed, diffs)
        fork_schedule = self._schedule(schedule)
        header, vm_class = decode_header(fork_schedule, header_rlp)
        builder = vm_class.get_transaction_builder()
        decoded = []
        for index, encoded, sender in txs:
            tx = builder.decode(encoded)
            if sender is not None:
                mark_sender(tx, sender)  # recovered once already
            else:
                skip_signature_check(tx)  # recovery (in `speculate`) is the check
            decoded.append((index, tx))
        self._warm(header, decoded)
        vm = make_vm(vm_class, header, self.overlay, prev_hashes, fork_schedule.chain_id)
        return speculate(vm, header, decoded)

    def _warm(self, header: Any, txs: list) -> None:
        """One batched read of the accounts every transaction touches first."""
        addresses = {header.coinbase}
        addresses.update(tx.to for _, tx in txs if tx.to)
        accounts = self.store.read_accounts(addresses)
        self.store.read_code({a.code_hash for a in accounts.values() if a is not None})


class WorkerPool:
    """`size` worker processes; use as a context manager (processes stop on exit)."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or os.cpu_count() or 1
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._cpu: list[float] = []
        self._locks: list[trio.Lock] = []
        self._locks_run: Any = None
        self.cpu_seconds = 0.0  # CPU time the workers spent, summed from their replies
        self.spans: list[tuple[int, int | None, float, float]] = []  # worker, block, start, end (perf_counter)

    def __enter__(self) -> WorkerPool:
        context = multiprocessing.get_context("spawn")
        for _ in range(self.size):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True, name="evmpipe-worker")
            process.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(process)
            self._cpu.append(0.0)
        for worker, conn in enumerate(self._conns):  # imports take about a second: not on the clock
            try:
                self._cpu[worker] = msgpack.unpackb(conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                self.__exit__()
                raise FatalError(f"speculative worker {worker} did not start (see its error above)") from None
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            try:
                conn.send_bytes(b"stop")
            except OSError:
                pass
        for process in self._procs:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._procs.clear()

    def workers_for(self, tx_count: int) -> int:
        return max(1, min(self.size, tx_count // MIN_TXS_PER_WORKER))

    async def _call(self, worker: int, data: bytes, label: int | None = None) -> bytes:
        """One request and its reply on one worker (requests to a worker never interleave)."""
        run = trio.lowlevel.current_root_task()
        if self._locks_run is not run:  # trio primitives belong to one trio.run
            self._locks, self._locks_run = [trio.Lock() for _ in self._conns], run
        conn = self._conns[worker]
        async with self._locks[worker]:
            started = time.perf_counter()
            # Shielded: a request and its reply are one unit, or a cancelled caller
            # would leave a reply in the pipe for the next request to read.
            with trio.CancelScope(shield=True):
                try:
                    await trio.to_thread.run_sync(conn.send_bytes, data)
                    reply = await trio.to_thread.run_sync(conn.recv_bytes)
                except (EOFError, OSError) as exc:
                    raise FatalError(f"worker {worker} died: {exc!r}") from exc
            self.spans.append((worker, label, started, time.perf_counter()))
        cpu, packed = msgpack.unpackb(reply, raw=False)
        self.cpu_seconds += max(0.0, cpu - self._cpu[worker])
        self._cpu[worker] = cpu
        return packed

    def start_speculation(self, nursery: trio.Nursery, request: BlockRequest, label: int | None = None) -> SpeculationStream:
        """Start speculating in the background, in chunks handed out round-robin in
        block order, so that in-order validation can begin on the first chunk while
        the workers run the rest. Results are read with `await stream.get(index)`."""
        from execution.speculate import unpack_results

        txs = request.txs
        workers = self.workers_for(len(txs))
        chunks = max(1, min(len(txs), workers * CHUNKS_PER_WORKER))
        size = -(-len(txs) // chunks) if txs else 1
        parts = [txs[i : i + size] for i in range(0, len(txs), size)]
        stream = SpeculationStream([index for index, _, _ in txs], [len(p) for p in parts])

        async def run_worker(worker: int) -> None:
            for chunk in range(worker, len(parts), workers):  # ascending: early chunks first
                data = BlockRequest(**{**request.__dict__, "txs": parts[chunk]}).pack()
                stream.deliver(chunk, unpack_results(await self._call(worker, data, label)))

        for worker in range(min(workers, len(parts))):
            nursery.start_soon(run_worker, worker)
        return stream


#: Chunks per worker per block: smaller chunks let validation start sooner; each costs
#: one round trip (about a millisecond here).
CHUNKS_PER_WORKER = 4


class SpeculationStream:
    """Speculative results of one block as they arrive, chunk by chunk."""

    def __init__(self, indices: list[int], chunk_sizes: list[int]) -> None:
        self._indices = indices
        self._results: dict[int, Any] = {}
        self._ready = [trio.Event() for _ in chunk_sizes]
        self._chunk_of: dict[int, int] = {}
        self._expected: list[list[int]] = []
        position = 0
        for chunk, size in enumerate(chunk_sizes):
            members = indices[position : position + size]
            self._expected.append(members)
            for index in members:
                self._chunk_of[index] = chunk
            position += size

    def deliver(self, chunk: int, results: list) -> None:
        if [r.index for r in results] != self._expected[chunk]:
            raise FatalError(f"a worker returned {len(results)} results for {len(self._expected[chunk])} transactions")
        for result in results:
            self._results[result.index] = result
        self._ready[chunk].set()

    async def get(self, index: int) -> Any:
        await self._ready[self._chunk_of[index]].wait()
        return self._results[index]
