"""The one small interface every stage implements (after reth's `Stage` trait).

A stage has a stable `id` (it names events and checkpoints), `execute`, which enriches
one in-flight block, and `unwind`, which drops what the stage holds for blocks above
a target. The runner, not the stage, moves blocks between channels, times them and
emits events. A stage raises `InvalidBlock` to reject a block; any other exception is
fatal and cancels the pipeline. A stage with work of its own beside the blocks (the
background trie-path walk of prefetch) opens a nursery in `running`, which the
runner holds around the stage's task: the work is cancelled with the pipeline, and
the pipeline ends only when it has.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from enum import Enum
from typing import Protocol

from pipeline.block import InFlightBlock


class StageId(str, Enum):
    """Stable names: they appear in events, traces and stored checkpoints."""

    PREFETCH = "prefetch"
    EXECUTE = "execute"
    VALIDATE = "validate"
    MERKLEIZE = "merkleize"
    COMMIT = "commit"


class Stage(Protocol):
    id: StageId
    #: whether `execute` also sees blocks an earlier stage rejected (commit does, to clean up)
    sees_failed: bool

    async def execute(self, block: InFlightBlock) -> None:
        """Enrich `block` (set this stage's fields) or raise `InvalidBlock`."""

    async def unwind(self, to_number: int) -> None:
        """Forget in-memory work for blocks above `to_number`."""

    def running(self) -> AbstractAsyncContextManager[None]:
        """Entered before the stage's first block, left after its input ended (and
        its output closed): where a stage runs tasks of its own."""


class BaseStage:
    """Defaults: a stage that skips rejected blocks, holds nothing to unwind and runs
    no tasks of its own."""

    id: StageId
    sees_failed = False

    async def unwind(self, to_number: int) -> None:
        return None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield
