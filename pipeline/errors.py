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

from enum import StrEnum


class BlockError(StrEnum):
    """Why a block is invalid, in the ethereum/tests vocabulary (a `str`: reports
    compare it with a fixture's ``expectException`` directly). A block built on a
    rejected block is `UNKNOWN_PARENT`, as ethereum/tests call it
    (`InvalidAncestor` names the rejected block)."""

    BLOB_GAS_USED_ABOVE_LIMIT = "BlockException.BLOB_GAS_USED_ABOVE_LIMIT"
    DUPLICATE_UNCLE = "BlockException.DUPLICATE_UNCLE"
    EXTRA_DATA_INVALID_DAO = "BlockException.EXTRA_DATA_INVALID_DAO"
    EXTRA_DATA_TOO_BIG = "BlockException.EXTRA_DATA_TOO_BIG"
    GASLIMIT_TOO_BIG = "BlockException.GASLIMIT_TOO_BIG"
    GAS_USED_OVERFLOW = "BlockException.GAS_USED_OVERFLOW"
    IMPORT_IMPOSSIBLE_LEGACY = "BlockException.IMPORT_IMPOSSIBLE_LEGACY"
    IMPORT_IMPOSSIBLE_LEGACY_WRONG_PARENT = "BlockException.IMPORT_IMPOSSIBLE_LEGACY_WRONG_PARENT"
    IMPORT_IMPOSSIBLE_LONDON_WRONG_PARENT = "BlockException.IMPORT_IMPOSSIBLE_LONDON_WRONG_PARENT"
    IMPORT_IMPOSSIBLE_NONCE_OVER_PARIS = "BlockException.IMPORT_IMPOSSIBLE_NONCE_OVER_PARIS"
    IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS = "BlockException.IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS"
    INCORRECT_BLOB_GAS_USED = "BlockException.INCORRECT_BLOB_GAS_USED"
    INCORRECT_BLOCK_FORMAT = "BlockException.INCORRECT_BLOCK_FORMAT"
    INCORRECT_EXCESS_BLOB_GAS = "BlockException.INCORRECT_EXCESS_BLOB_GAS"
    INVALID_BASEFEE_PER_GAS = "BlockException.INVALID_BASEFEE_PER_GAS"
    INVALID_BLOCK_NUMBER = "BlockException.INVALID_BLOCK_NUMBER"
    INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT = "BlockException.INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT"
    INVALID_DEPOSIT_EVENT_LAYOUT = "BlockException.INVALID_DEPOSIT_EVENT_LAYOUT"
    INVALID_DIFFICULTY = "BlockException.INVALID_DIFFICULTY"
    INVALID_GASLIMIT = "BlockException.INVALID_GASLIMIT"
    INVALID_GAS_USED = "BlockException.INVALID_GAS_USED"
    INVALID_HEADER = "BlockException.INVALID_HEADER"
    INVALID_LOG_BLOOM = "BlockException.INVALID_LOG_BLOOM"
    INVALID_RECEIPTS_ROOT = "BlockException.INVALID_RECEIPTS_ROOT"
    INVALID_REQUESTS = "BlockException.INVALID_REQUESTS"
    INVALID_STATE_ROOT = "BlockException.INVALID_STATE_ROOT"
    INVALID_TRANSACTIONS_ROOT = "BlockException.INVALID_TRANSACTIONS_ROOT"
    INVALID_UNCLES_HASH = "BlockException.INVALID_UNCLES_HASH"
    INVALID_WITHDRAWALS_ROOT = "BlockException.INVALID_WITHDRAWALS_ROOT"
    RLP_INVALID_FIELD_OVERFLOW_64 = "BlockException.RLP_INVALID_FIELD_OVERFLOW_64"
    RLP_STRUCTURES_ENCODING = "BlockException.RLP_STRUCTURES_ENCODING"
    SYSTEM_CONTRACT_CALL_FAILED = "BlockException.SYSTEM_CONTRACT_CALL_FAILED"
    SYSTEM_CONTRACT_EMPTY = "BlockException.SYSTEM_CONTRACT_EMPTY"
    TOO_MANY_UNCLES = "BlockException.TOO_MANY_UNCLES"
    UNCLE_ALREADY_INCLUDED = "BlockException.UNCLE_ALREADY_INCLUDED"
    UNCLE_IS_ANCESTOR = "BlockException.UNCLE_IS_ANCESTOR"
    UNCLE_PARENT_INCORRECT = "BlockException.UNCLE_PARENT_INCORRECT"
    UNKNOWN_PARENT = "BlockException.UNKNOWN_PARENT"


class TxError(StrEnum):
    """Why a transaction makes its block invalid (ethereum/tests vocabulary)."""

    GASLIMIT_PRICE_PRODUCT_OVERFLOW = "TransactionException.GASLIMIT_PRICE_PRODUCT_OVERFLOW"
    GAS_ALLOWANCE_EXCEEDED = "TransactionException.GAS_ALLOWANCE_EXCEEDED"
    INITCODE_SIZE_EXCEEDED = "TransactionException.INITCODE_SIZE_EXCEEDED"
    INSUFFICIENT_ACCOUNT_FUNDS = "TransactionException.INSUFFICIENT_ACCOUNT_FUNDS"
    INSUFFICIENT_MAX_FEE_PER_BLOB_GAS = "TransactionException.INSUFFICIENT_MAX_FEE_PER_BLOB_GAS"
    INSUFFICIENT_MAX_FEE_PER_GAS = "TransactionException.INSUFFICIENT_MAX_FEE_PER_GAS"
    INTRINSIC_GAS_BELOW_FLOOR_GAS_COST = "TransactionException.INTRINSIC_GAS_BELOW_FLOOR_GAS_COST"
    INTRINSIC_GAS_TOO_LOW = "TransactionException.INTRINSIC_GAS_TOO_LOW"
    INVALID_CHAINID = "TransactionException.INVALID_CHAINID"
    INVALID_SIGNATURE = "TransactionException.INVALID_SIGNATURE"
    INVALID_TRANSACTION = "TransactionException.INVALID_TRANSACTION"
    NONCE_IS_MAX = "TransactionException.NONCE_IS_MAX"
    NONCE_MISMATCH_TOO_HIGH = "TransactionException.NONCE_MISMATCH_TOO_HIGH"
    NONCE_MISMATCH_TOO_LOW = "TransactionException.NONCE_MISMATCH_TOO_LOW"
    PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS = "TransactionException.PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS"
    SENDER_NOT_EOA = "TransactionException.SENDER_NOT_EOA"
    TYPE_3_TX_BLOB_COUNT_EXCEEDED = "TransactionException.TYPE_3_TX_BLOB_COUNT_EXCEEDED"
    TYPE_3_TX_CONTRACT_CREATION = "TransactionException.TYPE_3_TX_CONTRACT_CREATION"
    TYPE_3_TX_INVALID_BLOB_VERSIONED_HASH = "TransactionException.TYPE_3_TX_INVALID_BLOB_VERSIONED_HASH"
    TYPE_3_TX_MAX_BLOB_GAS_ALLOWANCE_EXCEEDED = "TransactionException.TYPE_3_TX_MAX_BLOB_GAS_ALLOWANCE_EXCEEDED"
    TYPE_3_TX_PRE_FORK = "TransactionException.TYPE_3_TX_PRE_FORK"
    TYPE_3_TX_ZERO_BLOBS = "TransactionException.TYPE_3_TX_ZERO_BLOBS"
    TYPE_4_EMPTY_AUTHORIZATION_LIST = "TransactionException.TYPE_4_EMPTY_AUTHORIZATION_LIST"
    TYPE_4_INVALID_AUTHORIZATION_FORMAT = "TransactionException.TYPE_4_INVALID_AUTHORIZATION_FORMAT"
    TYPE_4_TX_CONTRACT_CREATION = "TransactionException.TYPE_4_TX_CONTRACT_CREATION"
    TYPE_4_TX_PRE_FORK = "TransactionException.TYPE_4_TX_PRE_FORK"
    TYPE_NOT_SUPPORTED = "TransactionException.TYPE_NOT_SUPPORTED"



class EvmpipeError(Exception):
    """Root of evmpipe's own errors."""


class InvalidBlock(EvmpipeError):
    """A block that must not be committed, and why."""

    def __init__(self, code: BlockError | TxError, reason: str, *, number: int | None = None, block_hash: bytes | None = None, tx_index: int | None = None) -> None:
        self.code: str = code
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


class InvalidAncestor(InvalidBlock):
    """A block that descends from a rejected block: `UNKNOWN_PARENT` (its parent
    will never be part of the chain), with the first rejected block of its line."""

    def __init__(self, ancestor: object, reason: str) -> None:
        super().__init__(BlockError.UNKNOWN_PARENT, reason)
        self.ancestor = ancestor


class InvalidTransaction(InvalidBlock):
    """A transaction that makes its block invalid."""


class BadInput(EvmpipeError):
    """Input that cannot be read: names the file, byte offset and record."""


class FatalError(EvmpipeError):
    """The pipeline cannot continue: stop, commit nothing more, exit non-zero."""
