"""Validate: the block's results against its header, in block order.

Reads from the in-flight block: `execution`. Adds: `receipts_root`. Writes to disk:
nothing. Unwind: nothing to undo.

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
from pipeline.errors import InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.trie import ordered_trie_root

_B = "BlockException."


class ValidateStage(BaseStage):
    id = StageId.VALIDATE

    async def execute(self, item: InFlightBlock) -> None:
        header = item.header
        execution = item.execution
        assert execution is not None
        if execution.gas_used != header.gas_used:
            raise InvalidBlock(_B + "INVALID_GAS_USED", f"gas used {execution.gas_used}, header says {header.gas_used}")
        blob_gas_used = getattr(header, "blob_gas_used", None)
        if blob_gas_used is not None and execution.blob_gas_used != blob_gas_used:
            raise InvalidBlock(_B + "INCORRECT_BLOB_GAS_USED", f"blob gas used {execution.blob_gas_used}, header says {blob_gas_used}")
        block = item.block
        assert block is not None
        if ordered_trie_root(item.encoded_txs) != header.transaction_root:
            raise InvalidBlock(_B + "INVALID_TRANSACTIONS_ROOT", "transactions do not match the header's root")
        withdrawals = getattr(block, "withdrawals", None)
        if withdrawals is not None and hasattr(header, "withdrawals_root"):
            if ordered_trie_root([w.encode() for w in withdrawals]) != header.withdrawals_root:
                raise InvalidBlock(_B + "INVALID_WITHDRAWALS_ROOT", "withdrawals do not match the header's root")
        receipts_root = ordered_trie_root([receipt.encode() for receipt in execution.receipts])
        if receipts_root != header.receipt_root:
            raise InvalidBlock(_B + "INVALID_RECEIPTS_ROOT", f"receipts root 0x{receipts_root.hex()}, header says 0x{header.receipt_root.hex()}")
        if execution.bloom != header.bloom:
            raise InvalidBlock(_B + "INVALID_LOG_BLOOM", "logs bloom differs from the header's")
        requests_hash = header_field(header, "requests_hash")
        if requests_hash is not None and execution.requests_hash != requests_hash:
            computed = execution.requests_hash.hex() if execution.requests_hash else "none"
            raise InvalidBlock(_B + "INVALID_REQUESTS", f"requests hash 0x{computed}, header says 0x{requests_hash.hex()}")
        item.receipts_root = receipts_root
        item.counts["validate"] = {"txs": len(execution.receipts)}
