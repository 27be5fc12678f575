"""Validate: the block's results against its header, in block order.

Reads: `item.pre` (the block), `item.run` (its execution). Adds: `receipts_root`.
Writes to disk: nothing. Unwind: nothing to undo.

The transactions and withdrawals roots are checked here, after execution, in the
order of the specs (EELS `apply_body` then the header comparisons): a fixture whose
header roots leave out an invalid transaction must be rejected for that transaction.

Transaction validity against state (nonce, balance, sender code) is checked as each
transaction runs; here the block as a whole: gas used, logs bloom, receipts root,
blob gas used ([EIP-4844]) and, for Prague headers, the requests hash ([EIP-7685])
must equal the header's.

[EIP-4844]: https://eips.ethereum.org/EIPS/eip-4844
[EIP-7685]: https://eips.ethereum.org/EIPS/eip-7685
"""
from __future__ import annotations

from execution.forks import header_field
from pipeline.block import InFlightBlock
from pipeline.errors import BlockError, InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.trie import ordered_trie_root



class ValidateStage(BaseStage):
    id = StageId.VALIDATE

    async def execute(self, item: InFlightBlock) -> None:
        header = item.header
        execution = item.run.execution
        if execution.gas_used != header.gas_used:
            raise InvalidBlock(BlockError.INVALID_GAS_USED, f"gas used {execution.gas_used}, header says {header.gas_used}")
        blob_gas_used = getattr(header, "blob_gas_used", None)
        if blob_gas_used is not None and execution.blob_gas_used != blob_gas_used:
            raise InvalidBlock(BlockError.INCORRECT_BLOB_GAS_USED, f"blob gas used {execution.blob_gas_used}, header says {blob_gas_used}")
        pre = item.pre
        if pre.transactions_root != header.transaction_root:
            raise InvalidBlock(BlockError.INVALID_TRANSACTIONS_ROOT, "transactions do not match the header's root")
        if pre.withdrawals_root is not None and pre.withdrawals_root != header.withdrawals_root:
            raise InvalidBlock(BlockError.INVALID_WITHDRAWALS_ROOT, "withdrawals do not match the header's root")
        receipts_root = ordered_trie_root([receipt.encode() for receipt in execution.receipts])
        if receipts_root != header.receipt_root:
            raise InvalidBlock(BlockError.INVALID_RECEIPTS_ROOT, f"receipts root 0x{receipts_root.hex()}, header says 0x{header.receipt_root.hex()}")
        if execution.bloom != header.bloom:
            raise InvalidBlock(BlockError.INVALID_LOG_BLOOM, "logs bloom differs from the header's")
        requests_hash = header_field(header, "requests_hash")
        if requests_hash is not None and execution.requests_hash != requests_hash:
            computed = execution.requests_hash.hex() if execution.requests_hash else "none"
            raise InvalidBlock(BlockError.INVALID_REQUESTS, f"requests hash 0x{computed}, header says 0x{requests_hash.hex()}")
        item.receipts_root = receipts_root
        item.count("validate", txs=len(execution.receipts))
