"""`devnet:INTERVAL`: a generated chain handed out one block per interval, for demos.

This is not block production. The blocks are sealed ahead of time by `evmpipe gen`
(a deterministic Cancun workload: the same parameters give the same chain), written
as a native block file in the datadir, and then replayed at a steady pace so that an
operator can watch the node follow a chain. Block timestamps are the generator's
(12 s apart from a fixed genesis time), not the wall clock. The chain is finite:
after its last block the source ends and the node keeps serving what it committed.
Because generation is deterministic, a restart regenerates (or reuses) the same file
and resumes after the committed head.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import structlog
import trio

from consensus_stub.blockfile import BlockFileHeader, BlockRecord, iter_blocks
from consensus_stub.follow import FileCursor
from pipeline.errors import BadInput

_log = structlog.get_logger("evmpipe.source")


@dataclass(frozen=True)
class DevnetParams:
    interval: float = 1.0
    blocks: int = 64
    txs: int = 16
    seed: int = 1
    kind: str = "mixed"

    @property
    def file_name(self) -> str:
        return f"devnet-{self.kind}-b{self.blocks}-t{self.txs}-s{self.seed}.blocks"


def parse_devnet(spec: str) -> float:
    """The interval in seconds of a `devnet:INTERVAL` source (INTERVAL may end in "s")."""
    text = spec.split(":", 1)[1].strip().removesuffix("s") if ":" in spec else "1"
    try:
        interval = float(text)
    except ValueError:
        raise BadInput(f"--source {spec}: the interval must be seconds, e.g. devnet:2 or devnet:0.5") from None
    if not interval >= 0:
        raise BadInput(f"--source {spec}: the interval must not be negative")
    return interval


def generate_chain(params: DevnetParams, directory: Path) -> Path:
    """Write the generated chain as a native file in `directory` (reused when there)."""
    from consensus_stub.convert import blocktest_to_native
    from evmpipe.gen import GenParams, GenerationError, generate

    target = directory / params.file_name
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    try:
        workload = generate(GenParams(params.kind, blocks=params.blocks, txs=params.txs, seed=params.seed))
    except GenerationError as exc:
        raise BadInput(f"devnet: cannot generate the chain: {exc}") from exc
    with tempfile.TemporaryDirectory(dir=directory, prefix=".devnet-") as tmp:
        fixture = Path(tmp) / "chain.json"
        workload.write(fixture)
        blocktest_to_native(fixture, target)  # written beside and renamed: never half a file
    return target


class DevnetSource:
    """Hands out the records of a generated chain, one every `interval` seconds."""

    def __init__(self, params: DevnetParams, directory: str | os.PathLike[str]) -> None:
        self.params = params
        self.directory = Path(directory)
        self.description = f"devnet (a generated {params.kind} chain of {params.blocks} blocks, one every {params.interval:g} s)"
        self.path: Path | None = None

    async def open(self) -> BlockFileHeader:
        _log.info("devnet_generating", blocks=self.params.blocks, txs=self.params.txs, kind=self.params.kind, seed=self.params.seed)
        self.path = await trio.to_thread.run_sync(generate_chain, self.params, self.directory, abandon_on_cancel=True)
        header = await trio.to_thread.run_sync(FileCursor(self.path).try_header)
        if header is None:
            raise BadInput(f"{self.path}: generated file has no header")
        return header

    async def records(self, start_after: int | None = None) -> AsyncIterator[BlockRecord]:
        assert self.path is not None, "open() first"
        records = await trio.to_thread.run_sync(lambda: list(iter_blocks(self.path, start_after)))  # type: ignore[arg-type]
        for record in records:
            await trio.sleep(self.params.interval)
            yield record
        _log.info("devnet_exhausted", blocks=self.params.blocks)
