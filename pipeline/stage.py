"""The one small interface every stage implements (after reth's `Stage` trait).

A stage has a stable `id` (it names events and checkpoints), `execute`, which enriches
one in-flight block, and `unwind`, which drops what the stage holds for blocks above
a target. The runner, not the stage, moves blocks between channels, times them and
emits events. A stage raises `InvalidBlock` to reject a block; any other exception is
fatal and cancels the pipeline.
"""
from __future__ import annotations

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


class BaseStage:
    """Defaults: a stage that skips rejected blocks and holds nothing to unwind."""

    id: StageId
    sees_failed = False

    async def unwind(self, to_number: int) -> None:
        return None
