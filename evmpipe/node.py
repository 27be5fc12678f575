"""`evmpipe node --datadir DIR --source SOURCE`: follow a chain, commit it, serve it.

The long-running form of `replay`: the same stages and pipeline, fed by a source
that waits for new blocks (a growing block file, a drop directory, a generated
devnet chain: `consensus_stub/follow.py`, `consensus_stub/devnet.py`), resuming
after the datadir's committed head. Where `replay` stops at the first invalid
block, the node logs it, commits nothing of it and goes on waiting for a valid block
at that height. A corrupt record stops intake; the node keeps serving what it has.

Shutdown (SIGINT or SIGTERM): only the intake task's cancel scope is cancelled. Its
channel closes, the pipeline's channels close one after another behind the blocks
already in flight, every one of them is committed or rejected, the database is
closed, exit 0. A second signal cancels the blocks in flight too; a commit already
started still finishes (it is shielded), so even then the database holds whole
blocks only (and `kill -9` is safe as well: see docs/OPERATIONS.md).
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback
from contextlib import ExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import structlog
import trio

from consensus_stub.blockfile import BlockRecord
from consensus_stub.devnet import DevnetParams, DevnetSource, parse_devnet
from consensus_stub.follow import DEFAULT_POLL, BlockSource, DirectoryFollower, FileFollower
from evmpipe.httpd import MAX_CONNECTIONS
from evmpipe.metrics import NodeEvents, NodeStats, render_metrics
from evmpipe.replay import add_strategy_arguments
from execution.workers import REQUEST_DEADLINE
from evmpipe.rpc_deadline import DEFAULT_EVM_TIMEOUT
from evmpipe.rpc_supervisor import RpcProcessOptions, RpcSupervisor, rpc_metrics
from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.datadir import DatadirLock, open_datadir
from pipeline.required_state import check_required_state
from pipeline.state_options import ReadTracker, StateOptions, add_state_arguments, state_reads_metrics
from pipeline.errors import BadInput, FatalError
from pipeline.events import configure_logging
from pipeline.runner import PipelineConfig, run_pipeline
from pipeline.trace import write_trace
from state.store import Head, StateStore

_log = structlog.get_logger("evmpipe.node")
DEFAULT_RPC_PROCESSES = 1


def add_node_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("node", help="run a node: follow a block source into a datadir, serve status and JSON-RPC")
    parser.add_argument("--datadir", required=True, help="database directory; created on first use, resumed afterwards")
    parser.add_argument("--source", required=True, help="a native block file to follow as it grows, a directory of block files, or devnet:INTERVAL")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL, help=f"seconds between polls of a file with nothing new (default {DEFAULT_POLL})")
    parser.add_argument("--http-port", type=int, help="serve /health, /metrics and JSON-RPC on 127.0.0.1:PORT (0: any free port)")
    parser.add_argument("--http-max-connections", type=int, default=MAX_CONNECTIONS, help=f"HTTP connections served at once over all RPC processes; more wait to be accepted (default {MAX_CONNECTIONS}, at most half the open-file limit per process)")
    parser.add_argument("--rpc-processes", type=int, default=DEFAULT_RPC_PROCESSES, help=f"processes serving HTTP and JSON-RPC beside the pipeline's (default {DEFAULT_RPC_PROCESSES}); a crashed one is restarted")
    parser.add_argument("--http-host", action="append", default=[], metavar="NAME", help="also accept this Host header (default: localhost, 127.0.0.1 and [::1] only; against DNS rebinding); repeatable")
    parser.add_argument("--http-origin", action="append", default=[], metavar="ORIGIN", help="accept browser requests from this Origin, e.g. http://localhost:3000 (default: none); repeatable")
    parser.add_argument("--rpc-evm-timeout", type=float, default=DEFAULT_EVM_TIMEOUT, metavar="SECONDS", help=f"stop an eth_call or eth_estimateGas that runs longer (default {DEFAULT_EVM_TIMEOUT:g}, as geth; 0: no limit)")
    parser.add_argument("--lookahead", type=int, default=4, help="blocks consensus may hand out ahead of execution (K, default 4)")
    parser.add_argument("--capacity", type=int, default=2, help="buffer of each channel between stages (default 2)")
    parser.add_argument("--fsync", choices=["normal", "full", "off"], default="normal", help="SQLite synchronous mode (default normal; full: survive power loss)")
    parser.add_argument("--trace", metavar="FILE", help="at exit, write a Perfetto trace of the newest stage events")
    parser.add_argument("--log", choices=["off", "info", "debug"], default="info", help="structlog lines on stderr (default info; debug adds every stage event)")
    parser.add_argument("--log-file", metavar="FILE", help="write the structlog events as JSON lines to FILE (appended) instead of stderr")
    parser.add_argument("--devnet-blocks", type=int, default=64, help="devnet: blocks in the generated chain (default 64)")
    parser.add_argument("--devnet-txs", type=int, default=16, help="devnet: transactions per block (default 16)")
    parser.add_argument("--devnet-seed", type=int, default=1, help="devnet: generator seed (default 1)")
    add_strategy_arguments(parser)
    add_state_arguments(parser)
    parser.set_defaults(func=cmd_node)


@dataclass(frozen=True)
class NodeOptions:
    datadir: str
    config: PipelineConfig = PipelineConfig()
    synchronous: str = "NORMAL"
    http_port: int | None = None
    strategy: str = "sequential"
    workers: int | None = None
    worker_deadline: float = REQUEST_DEADLINE
    verify: bool = False
    trace: str | None = None
    log_events: bool = False
    http_max_connections: int = MAX_CONNECTIONS
    rpc_processes: int = 1
    log_level: str = "info"  # handed to the RPC processes
    log_file: str | None = None
    http_hosts: tuple[str, ...] = ()  # Host names accepted beside the loopback ones
    http_origins: tuple[str, ...] = ()  # browser Origins accepted (none by default)
    rpc_evm_timeout: float = DEFAULT_EVM_TIMEOUT  # seconds an eth_call / eth_estimateGas may run (0: no limit)
    state: StateOptions = StateOptions()  # --cold, --cache-mb, --mmap-mb, --layout


def make_source(spec: str, *, datadir: str, poll: float = DEFAULT_POLL, devnet: DevnetParams | None = None) -> BlockSource:
    """`devnet:INTERVAL`, a directory (or a path ending in "/"), else a block file."""
    if spec.startswith("devnet"):
        params = devnet or DevnetParams()
        params = DevnetParams(parse_devnet(spec), params.blocks, params.txs, params.seed, params.kind)
        return DevnetSource(params, datadir)
    if Path(spec).is_dir() or spec.endswith(("/", "\\")):
        return DirectoryFollower(spec, poll)
    return FileFollower(spec, poll)


class Node:
    """One node run: the pipeline, its intake, the HTTP server and the signal watcher."""

    def __init__(self, options: NodeOptions, source: BlockSource) -> None:
        self.options = options
        self.source = source
        self.stats = NodeStats()
        self.events = NodeEvents(self.stats, log_events=options.log_events)
        self.stopping = trio.Event()
        self.startup = trio.CancelScope()
        self.intake = trio.CancelScope()  # the source's scope: the only one a first signal cancels
        self.store: StateStore | None = None
        self.chain: ChainState | None = None
        self.rpc: RpcSupervisor | None = None
        self.http_port: int | None = None
        self.committed_number = -1
        self.lock: DatadirLock | None = None
        self._pending: dict[int, bytes] = {}  # height -> hash of the block in flight there
        self._progress = trio.Event()

    async def run(self) -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, ExitStack() as resources:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_signals, signals, nursery.cancel_scope)
                    await self._main(nursery, resources)
                    nursery.cancel_scope.cancel()
            finally:
                if self.store is not None:
                    self.store.close()
                    _log.info("database_closed", path=self.store.path)
                if self.lock is not None:
                    self.lock.release()
                if self.options.trace:
                    write_trace(self.options.trace, list(self.events.events))
        return 0

    async def _watch_signals(self, signals: AsyncIterator[int], everything: trio.CancelScope) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self.stopping.is_set():
                _log.info("stopping", signal=name, note="intake stopped, draining blocks in flight; signal again to cancel them")
                self.stopping.set()
                self.startup.cancel()
                self.intake.cancel()
            else:
                _log.warning("stopping_now", signal=name, note="cancelling blocks in flight; a commit already started finishes")
                everything.cancel()

    async def _main(self, nursery: trio.Nursery, resources: ExitStack) -> None:
        options = self.options
        self.lock = lock = DatadirLock(options.datadir)  # first: a second node on the datadir exits at once
        if options.http_port is not None:  # before the source: /health answers while the node waits for it
            rpc_options = RpcProcessOptions(
                options.http_port, options.rpc_processes, options.http_max_connections, options.http_hosts, options.http_origins, options.log_level, options.log_file,
                options.rpc_evm_timeout,
            )
            self.rpc = RpcSupervisor(rpc_options, state=self._state, metrics=self._metrics_text, count=self._count_requests)
            try:
                self.http_port = await nursery.start(self.rpc.run)
            except OSError as error:
                raise BadInput(f"--http-port {options.http_port}: cannot listen on 127.0.0.1: {error.strerror or error}") from error
            _log.info("http_listening", host="127.0.0.1", port=self.http_port)
        with self.startup:
            header = await self.source.open()
        if self.startup.cancelled_caught:
            return
        check_required_state(options.datadir, header.genesis_header_rlp, header.alloc, self.source.description)
        options.state.prepare(options.datadir)
        self.store = store = await trio.to_thread.run_sync(
            lambda: open_datadir(options.datadir, header.schedule, header.genesis_header_rlp, header.alloc, synchronous=options.synchronous, lock=lock)
        )
        self.lock = None  # the store releases it when closed
        from execution.strategies import make_strategy
        from execution.workers import WorkerPool
        from pipeline.node import build_stages

        self.chain = chain = await trio.to_thread.run_sync(ChainState.open, store, header.schedule)
        options.state.configure(store)
        self.reads = ReadTracker(store, chain.overlay)
        head = chain.head
        self.committed_number = head.number if head else -1
        if self.rpc is not None:
            self.rpc.open_store(store.path, header.schedule.to_dict())
        # Workers ignore SIGINT themselves: the node stops them after draining. The
        # pool lives inside this task: it stops when the pipeline has drained, or
        # when the run is cancelled.
        async with WorkerPool(options.workers, request_deadline=options.worker_deadline) if options.strategy != "sequential" else _no_pool() as pool:
            stages = build_stages(chain, make_strategy(options.strategy, pool, verify=options.verify), prefetch=options.state.prefetch_options())
            _log.info("node_started", datadir=options.datadir, source=self.source.description, head=self.committed_number, chain_id=header.chain_id)
            send, receive = trio.open_memory_channel[BlockInput](0)
            nursery.start_soon(self._intake, send, head.number if head else None)
            await run_pipeline(lambda: _received(receive), stages, self._sink, config=options.config, events=self.events, chain=chain)
        _log.info("pipeline_drained", head=self.committed_number)
        if not self.stopping.is_set():
            _log.info("serving_until_stopped", note="intake has ended; send SIGTERM to stop")
            await self.stopping.wait()

    # -- intake ---------------------------------------------------------------------

    async def _intake(self, send: trio.MemorySendChannel[BlockInput], start_after: int | None) -> None:
        self.stats.intake_running = True
        self._publish()
        seq = 0
        try:
            async with send:
                with self.intake:
                    try:
                        async with aclosing(self.source.records(start_after)) as records:
                            async for record in records:
                                if not await self._admit(record):
                                    continue
                                seq += 1
                                self._pending[record.number] = record.hash
                                await send.send(BlockInput(seq, record.rlp, {"number": record.number, "hash": record.hash, "offset": record.offset}))
                    except (BadInput, OSError) as error:
                        self.stats.intake_error = str(error)
                        _log.error("intake_stopped", error=str(error), note="blocks before it are still committed; the node keeps serving until stopped")
                    else:
                        _log.info("intake_finished", source=self.source.description)
        finally:
            self.stats.intake_running = False
            self._publish()

    async def _admit(self, record: BlockRecord) -> bool:
        """Hand a record on unless it is already decided: blocks are final, so a block at
        a committed height is a duplicate or a conflict, never a replacement; a block at
        the height of one in flight waits for that one's verdict (it may be rejected)."""
        while self._pending.get(record.number, record.hash) != record.hash:
            await self._progress.wait()
        if record.number in self._pending:
            self.stats.skipped_records += 1
            return False
        if record.number <= self.committed_number:
            assert self.store is not None
            canonical = await trio.to_thread.run_sync(self.store.canonical_hash, record.number)
            if canonical != record.hash:
                _log.warning("conflicting_block_ignored", number=record.number, hash="0x" + record.hash.hex(), committed="0x" + (canonical or b"").hex())
            self.stats.skipped_records += 1
            return False
        return True

    # -- results ----------------------------------------------------------------------

    async def _sink(self, block: InFlightBlock) -> None:
        number = block.input.meta.get("number")
        self._pending.pop(number, None)
        self._progress.set()
        self._progress = trio.Event()
        self._publish()
        if block.error is not None:
            error = block.error
            self.stats.rejected[error.code] = self.stats.rejected.get(error.code, 0) + 1
            _log.warning("invalid_block", number=number, hash="0x" + block.input.meta["hash"].hex(), code=error.code, reason=error.reason, stage=block.failed_stage, note="not committed; waiting for a valid block at this height")
            return
        assert block.block is not None
        self.committed_number = max(self.committed_number, block.block.number)
        self.stats.committed += 1
        self.stats.transactions += len(block.block.transactions)
        self.stats.gas += block.header.gas_used
        _log.info("committed", number=block.block.number, hash="0x" + block.header.hash.hex(), txs=len(block.block.transactions), gas=block.header.gas_used)

    # -- what the RPC processes serve ------------------------------------------------------

    def _publish(self) -> None:
        if self.rpc is not None:
            self.rpc.publish()

    def _count_requests(self, http: int, rpc: int, rpc_errors: int) -> None:
        self.stats.http_requests += http
        self.stats.rpc_requests += rpc
        self.stats.rpc_errors += rpc_errors

    def _state(self) -> tuple[Head | None, int, dict[str, Any]]:
        """The committed head and the /health answer (status, body), for the RPC processes."""
        if self.store is None or self.chain is None:  # still waiting for the source
            body: dict[str, Any] = {"ok": True, "head": None, "intake": "waiting", "intake_error": None, "in_flight": 0, "committed": 0, "rejected": 0, "source": self.source.description}
            return None, 200, body
        head = self.chain.head  # in memory: the pipeline's committed head
        intake = "running" if self.stats.intake_running else ("stopped" if self.stats.intake_error else "ended")
        ok = self.stats.intake_error is None
        body = {  # the same keys as while waiting
            "ok": ok,
            "head": None if head is None else {"number": head.number, "hash": "0x" + head.hash.hex(), "state_root": "0x" + head.state_root.hex()},
            "intake": intake,
            "intake_error": self.stats.intake_error,
            "in_flight": self.chain.in_flight,
            "committed": self.stats.committed,
            "rejected": sum(self.stats.rejected.values()),
            "source": self.source.description,
        }
        return head, 200 if ok else 503, body

    def _metrics_text(self) -> str:
        if self.store is None or self.chain is None:
            return render_metrics(self.stats, head_number=None, in_flight=0, caches={})
        head = self.chain.head
        caches = {"accounts": self.store.accounts, "slots": self.store.slots, "code": self.store.codes}
        text = render_metrics(self.stats, head_number=None if head is None else head.number, in_flight=self.chain.in_flight, caches=caches)
        text += state_reads_metrics(getattr(self, "reads", None))
        if self.rpc is not None:
            text += rpc_metrics(self.rpc)
        return text


@asynccontextmanager
async def _no_pool() -> AsyncIterator[None]:
    yield None


async def _received(channel: trio.MemoryReceiveChannel[BlockInput]) -> AsyncIterator[BlockInput]:
    async with channel:
        async for item in channel:
            yield item


def cmd_node(args: argparse.Namespace) -> int:
    configure_logging(level=args.log, log_file=args.log_file)
    try:
        source = make_source(args.source, datadir=args.datadir, poll=args.poll, devnet=DevnetParams(1.0, args.devnet_blocks, args.devnet_txs, args.devnet_seed))
    except BadInput as error:
        print(f"evmpipe node: {error}", file=sys.stderr)
        return 2
    options = NodeOptions(
        datadir=args.datadir,
        config=PipelineConfig(lookahead=args.lookahead, capacity=args.capacity),
        synchronous=args.fsync.upper(),
        http_port=args.http_port,
        strategy=args.strategy,
        workers=args.workers,
        worker_deadline=args.worker_deadline,
        verify=args.verify,
        trace=args.trace,
        log_events=args.log == "debug",
        http_max_connections=args.http_max_connections,
        rpc_processes=args.rpc_processes,
        log_level=args.log,
        log_file=args.log_file,
        http_hosts=tuple(args.http_host),
        http_origins=tuple(args.http_origin),
        rpc_evm_timeout=args.rpc_evm_timeout,
        state=StateOptions.from_args(args),
    )
    if options.http_port is not None and options.rpc_processes < 1:
        print("evmpipe node: --rpc-processes must be at least 1", file=sys.stderr)
        return 2
    code = 1
    try:
        return trio.run(Node(options, source).run)
    except* BadInput as group:
        for error in group.exceptions:
            print(f"evmpipe node: {error}", file=sys.stderr)
        code = 2
    except* FatalError as group:
        for error in group.exceptions:
            _log.error("node_failed", error=str(error))
            print(f"evmpipe node: stopped: {error}", file=sys.stderr)
        code = 1
    except* Exception as group:
        first = _first_leaf(group)
        _log.error("node_failed", error=f"{type(first).__name__}: {first}")
        traceback.print_exception(group)
        print(f"evmpipe node: stopped on an error: {type(first).__name__}: {first}", file=sys.stderr)
        code = 1
    return code


def _first_leaf(group: BaseExceptionGroup[Exception]) -> BaseException:
    """The first error in a (possibly nested) group, to name it in one line."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
