"""Errors, by what happens next (after reth's `StageError` and EELS's exceptions).

- `InvalidBlock` / `InvalidTransaction`: an expected rejection. The block is dropped
  with everything built on it; the chain goes on from the last good block. `code` uses
  the ethereum/tests vocabulary (``TransactionException.NONCE_MISMATCH_TOO_LOW``,
  ``BlockException.INVALID_STATE_ROOT``...) so that reports compare it with a fixture's
  ``expectException`` directly.
- `BadInput`: the input itself is unreadable (corrupt file, truncated record).
- `FatalError`: the node cannot go on (corrupt database, dead worker, count mismatch).
"""
from __future__ import annotations


class EvmpipeError(Exception):
    """Root of evmpipe's own errors."""


class InvalidBlock(EvmpipeError):
    """A block that must not be committed, and why."""

    def __init__(self, code: str, reason: str, *, number: int | None = None, block_hash: bytes | None = None, tx_index: int | None = None) -> None:
        self.code = code
        self.reason = reason
        self.number = number
        self.block_hash = block_hash
        self.tx_index = tx_index
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"block {self.number}" if self.number is not None else "block"
        if self.block_hash is not None:
            where += f" (0x{self.block_hash.hex()[:16]}…)"
        if self.tx_index is not None:
            where += f", transaction {self.tx_index}"
        return f"{where}: {self.code}: {self.reason}"

    def at(self, number: int | None, block_hash: bytes | None) -> InvalidBlock:
        """Fill in where the error happened, once known."""
        if self.number is None:
            self.number = number
        if self.block_hash is None:
            self.block_hash = block_hash
        self.args = (self.describe(),)
        return self


class InvalidTransaction(InvalidBlock):
    """A transaction that makes its block invalid."""


class BadInput(EvmpipeError):
    """Input that cannot be read: names the file, byte offset and record."""


class FatalError(EvmpipeError):
    """The pipeline cannot continue: stop, commit nothing more, exit non-zero."""
