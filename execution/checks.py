"""Validity checks that need no execution, in the order of the specs.

Header checks (`validate_header`) and transaction checks that depend only on the
transaction and its block header (`check_transaction_static`) run before execution,
in the prefetch stage; checks against state (`check_transaction_state`: nonce,
balance, sender code, gas left in the block) run just before each transaction.

py-evm 0.12.1b1 leaves out some of these (no chain-id check, no [EIP-3607] sender
check, no signature or intrinsic-gas check in type-2 `validate()`, a Cancun balance
check that forgets `tx.value`); evmpipe checks them all itself, each with the
ethereum/tests exception code, and keeps py-evm's own checks behind as a backstop.

[EIP-3607]: https://eips.ethereum.org/EIPS/eip-3607
"""
from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth.vm.forks import BerlinVM, CancunVM, LondonVM, ShanghaiVM
from eth_utils import ValidationError

from execution.forks import VMClass, is_merged
from pipeline.errors import InvalidBlock, InvalidTransaction
from state.account import EMPTY_CODE_HASH

# Constants under the specs' names.
GAS_LIMIT_ADJUSTMENT_FACTOR = 1024  # Yellow Paper eq. 47
GAS_LIMIT_MINIMUM = 5000
GAS_LIMIT_MAXIMUM = 2**63 - 1  # geth's and ethereum/tests' bound
ELASTICITY_MULTIPLIER = 2  # EIP-1559
MAX_EXTRA_DATA = 32
MAX_INITCODE_SIZE = 2 * 24576  # EIP-3860
MAX_BLOB_GAS_PER_BLOCK = 786432  # EIP-4844
GAS_PER_BLOB = 2**17
TARGET_BLOB_GAS_PER_BLOCK = 393216
VERSIONED_HASH_VERSION_KZG = b"\x01"
MIN_BLOB_BASE_FEE = 1
BLOB_BASE_FEE_UPDATE_FRACTION = 3338477
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
EMPTY_OMMERS_HASH = bytes.fromhex("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
DAO_EXTRA_DATA = b"dao-hard-fork"

_B = "BlockException."
_T = "TransactionException."


def fake_exponential(factor: int, numerator: int, denominator: int) -> int:
    """EIP-4844's integer approximation of factor * e ** (numerator / denominator)."""
    i, output, accum = 1, 0, factor * denominator
    while accum > 0:
        output += accum
        accum = (accum * numerator) // (denominator * i)
        i += 1
    return output // denominator


def blob_base_fee(excess_blob_gas: int) -> int:
    return fake_exponential(MIN_BLOB_BASE_FEE, excess_blob_gas, BLOB_BASE_FEE_UPDATE_FRACTION)


def calc_excess_blob_gas(parent: BlockHeaderAPI) -> int:
    excess = header_field(parent, "excess_blob_gas") or 0
    used = header_field(parent, "blob_gas_used") or 0
    total = excess + used
    return 0 if total < TARGET_BLOB_GAS_PER_BLOCK else total - TARGET_BLOB_GAS_PER_BLOCK


def header_field(header: BlockHeaderAPI, name: str) -> Any:
    """A header field, or None where the header's fork has no such field."""
    try:
        return getattr(header, name)
    except AttributeError:  # py-evm raises it for fields of later forks
        return None


def expected_base_fee(parent: BlockHeaderAPI, parent_is_london: bool) -> int:
    """EIP-1559 base fee of a child of `parent` (1 gwei at the fork block)."""
    if not parent_is_london:
        return 1_000_000_000
    target = parent.gas_limit // ELASTICITY_MULTIPLIER
    base = parent.base_fee_per_gas
    if parent.gas_used == target:
        return base
    if parent.gas_used > target:
        delta = max(base * (parent.gas_used - target) // target // 8, 1)
        return base + delta
    return base - base * (target - parent.gas_used) // target // 8


def validate_header(vm_class: VMClass, header: BlockHeaderAPI, parent: BlockHeaderAPI, parent_vm: VMClass) -> None:
    """Check `header` against its parent before executing anything.

    Raises `InvalidBlock` with the ethereum/tests code of the first failed check.
    """
    def fail(code: str, reason: str) -> None:
        raise InvalidBlock(_B + code, reason, number=header.block_number, block_hash=header.hash)

    if header.block_number != parent.block_number + 1:
        fail("INVALID_BLOCK_NUMBER", f"number {header.block_number} does not follow parent {parent.block_number}")
    if header.timestamp <= parent.timestamp:
        fail("INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT", f"timestamp {header.timestamp} <= parent's {parent.timestamp}")
    if len(header.extra_data) > MAX_EXTRA_DATA:
        fail("EXTRA_DATA_TOO_BIG", f"extra data of {len(header.extra_data)} bytes > {MAX_EXTRA_DATA}")
    if header.gas_used > header.gas_limit:
        fail("GAS_USED_OVERFLOW", f"gas used {header.gas_used} > gas limit {header.gas_limit}")

    london = issubclass(vm_class, LondonVM)
    parent_gas_limit = parent.gas_limit
    if london and not issubclass(parent_vm, LondonVM):
        parent_gas_limit *= ELASTICITY_MULTIPLIER
    if header.gas_limit > GAS_LIMIT_MAXIMUM:
        fail("GASLIMIT_TOO_BIG", f"gas limit {header.gas_limit} above 2**63 - 1")
    max_delta = parent_gas_limit // GAS_LIMIT_ADJUSTMENT_FACTOR
    if not (parent_gas_limit - max_delta < header.gas_limit < parent_gas_limit + max_delta) or header.gas_limit < GAS_LIMIT_MINIMUM:
        fail("INVALID_GASLIMIT", f"gas limit {header.gas_limit} outside the bounds around parent's {parent_gas_limit}")

    if london:
        expected = expected_base_fee(parent, issubclass(parent_vm, LondonVM))
        base_fee = header_field(header, "base_fee_per_gas")
        if base_fee != expected:
            fail("INVALID_BASEFEE_PER_GAS", f"base fee {base_fee}, expected {expected}")

    if is_merged(vm_class):
        if header.difficulty != 0:
            fail("INVALID_DIFFICULTY", f"difficulty {header.difficulty} after the merge")
        if header.nonce != b"\x00" * 8:
            fail("IMPORT_IMPOSSIBLE_NONCE_OVER_PARIS", "non-zero nonce after the merge")
        if header.uncles_hash != EMPTY_OMMERS_HASH:
            fail("IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS", "ommers after the merge")
    else:
        expected_difficulty = vm_class.compute_difficulty(parent, header.timestamp)
        if header.difficulty != expected_difficulty:
            fail("INVALID_DIFFICULTY", f"difficulty {header.difficulty}, expected {expected_difficulty}")

    if issubclass(vm_class, CancunVM):
        expected_excess = calc_excess_blob_gas(parent) if issubclass(parent_vm, CancunVM) else 0
        excess, used = header_field(header, "excess_blob_gas"), header_field(header, "blob_gas_used")
        if excess is None or used is None:
            fail("INCORRECT_BLOCK_FORMAT", "a Cancun header needs blob gas fields")
        if excess != expected_excess:
            fail("INCORRECT_EXCESS_BLOB_GAS", f"excess blob gas {excess}, expected {expected_excess}")
        if used % GAS_PER_BLOB:
            fail("INCORRECT_BLOB_GAS_USED", f"blob gas used {used} not a multiple of {GAS_PER_BLOB}")

    dao_block = getattr(vm_class, "_dao_fork_block_number", None)
    if getattr(vm_class, "support_dao_fork", False) and dao_block is not None:
        if dao_block <= header.block_number < dao_block + 10 and header.extra_data != DAO_EXTRA_DATA:
            fail("EXTRA_DATA_INVALID_DAO", "blocks 0..9 after the DAO fork must carry 'dao-hard-fork'")

    try:  # py-evm's own rules, as a backstop for anything not listed above
        vm_class.validate_header(header, parent)
    except ValidationError as exc:
        fail("INVALID_HEADER", f"py-evm: {exc}")


def check_transaction_static(vm_class: VMClass, header: BlockHeaderAPI, tx: SignedTransactionAPI, index: int, chain_id: int) -> None:
    """Checks of one transaction that need only the header ([EIP-1559], [EIP-4844], [EIP-3860]).

    Raises `InvalidTransaction` naming the transaction index.
    """
    def fail(code: str, reason: str) -> None:
        raise InvalidTransaction(_T + code, reason, number=header.block_number, block_hash=header.hash, tx_index=index)

    type_id = getattr(tx, "type_id", None) or 0
    if type_id == 3 and not issubclass(vm_class, CancunVM):
        fail("TYPE_3_TX_PRE_FORK", f"blob transactions start at Cancun, this block is {vm_class.fork}")
    if type_id and type_id not in _allowed_types(vm_class):
        fail("TYPE_NOT_SUPPORTED", f"transaction type {type_id} is not valid in {vm_class.fork}")
    tx_chain_id = getattr(tx, "chain_id", None)
    if tx_chain_id is not None and tx_chain_id != chain_id:
        fail("INVALID_CHAINID", f"chain id {tx_chain_id}, expected {chain_id}")
    if tx.nonce >= UINT64_MAX:
        fail("NONCE_IS_MAX", f"nonce {tx.nonce} is 2**64 - 1 or more")
    if tx.gas > header.gas_limit:
        fail("GAS_ALLOWANCE_EXCEEDED", f"gas {tx.gas} above the block gas limit {header.gas_limit}")

    if type_id >= 2:
        if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
            fail("PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS", f"priority fee {tx.max_priority_fee_per_gas} > max fee {tx.max_fee_per_gas}")
    max_fee = tx.max_fee_per_gas if type_id >= 2 else tx.gas_price
    if max_fee * tx.gas > UINT256_MAX:
        fail("GASLIMIT_PRICE_PRODUCT_OVERFLOW", "gas * price overflows 256 bits")
    if issubclass(vm_class, LondonVM) and max_fee < header.base_fee_per_gas:
        fail("INSUFFICIENT_MAX_FEE_PER_GAS", f"max fee {max_fee} < base fee {header.base_fee_per_gas}")

    is_create = not tx.to
    if issubclass(vm_class, ShanghaiVM) and is_create and len(tx.data) > MAX_INITCODE_SIZE:
        fail("INITCODE_SIZE_EXCEEDED", f"init code of {len(tx.data)} bytes > {MAX_INITCODE_SIZE}")
    if tx.gas < tx.intrinsic_gas:
        fail("INTRINSIC_GAS_TOO_LOW", f"gas {tx.gas} < intrinsic gas {tx.intrinsic_gas}")

    if type_id == 3:
        hashes = tx.blob_versioned_hashes
        if is_create:
            fail("TYPE_3_TX_CONTRACT_CREATION", "a blob transaction cannot create a contract")
        if not hashes:
            fail("TYPE_3_TX_ZERO_BLOBS", "a blob transaction carries no blob")
        if len(hashes) * GAS_PER_BLOB > MAX_BLOB_GAS_PER_BLOCK:
            fail("TYPE_3_TX_BLOB_COUNT_EXCEEDED", f"{len(hashes)} blobs exceed the block limit")
        for h in hashes:
            if h[:1] != VERSIONED_HASH_VERSION_KZG:
                fail("TYPE_3_TX_INVALID_BLOB_VERSIONED_HASH", f"versioned hash 0x{h.hex()} lacks the KZG version byte")
        fee = blob_base_fee(header.excess_blob_gas)
        if tx.max_fee_per_blob_gas < fee:
            fail("INSUFFICIENT_MAX_FEE_PER_BLOB_GAS", f"max fee per blob gas {tx.max_fee_per_blob_gas} < blob base fee {fee}")

    try:
        tx.validate()
    except ValidationError as exc:
        fail("INVALID_SIGNATURE", f"py-evm: {exc}")


def check_block_blob_gas(header: BlockHeaderAPI) -> None:
    """[EIP-4844] the header's blob gas used within the block limit (after the
    per-transaction blob checks, which ethereum/tests report first)."""
    used = header_field(header, "blob_gas_used")
    if used is not None and used > MAX_BLOB_GAS_PER_BLOCK:
        raise InvalidBlock(_B + "BLOB_GAS_USED_ABOVE_LIMIT", f"blob gas used {used} > {MAX_BLOB_GAS_PER_BLOCK}", number=header.block_number, block_hash=header.hash)


def check_withdrawals(header: BlockHeaderAPI, withdrawals: Any) -> None:
    """[EIP-4895] index, validator index and amount are 64-bit fields."""
    for index, withdrawal in enumerate(withdrawals or ()):
        for name in ("index", "validator_index", "amount"):
            if getattr(withdrawal, name) > UINT64_MAX:
                raise InvalidBlock(_B + "RLP_INVALID_FIELD_OVERFLOW_64", f"withdrawal {index}: {name} above 2**64 - 1", number=header.block_number, block_hash=header.hash)


def _allowed_types(vm_class: VMClass) -> set[int]:
    if issubclass(vm_class, CancunVM):
        return {1, 2, 3}
    if issubclass(vm_class, LondonVM):
        return {1, 2}
    if issubclass(vm_class, BerlinVM):
        return {1}
    return set()


def max_transaction_cost(tx: SignedTransactionAPI) -> int:
    """The balance a sender must hold up front: gas at the max fee, value and blob gas."""
    type_id = getattr(tx, "type_id", None) or 0
    price = tx.max_fee_per_gas if type_id >= 2 else tx.gas_price
    cost = tx.gas * price + tx.value
    if type_id == 3:
        cost += len(tx.blob_versioned_hashes) * GAS_PER_BLOB * tx.max_fee_per_blob_gas
    return cost


def check_transaction_state(state: Any, header: BlockHeaderAPI, tx: SignedTransactionAPI, index: int) -> None:
    """Checks against the state just before `tx` runs: sender code, nonce, balance.

    (Gas and blob gas left in the block are in-order facts, checked by `BlockRun`.)"""
    def fail(code: str, reason: str) -> None:
        raise InvalidTransaction(_T + code, reason, number=header.block_number, block_hash=header.hash, tx_index=index)

    sender = tx.sender
    if state.get_code_hash(sender) != EMPTY_CODE_HASH:
        fail("SENDER_NOT_EOA", f"sender 0x{sender.hex()} has code")
    nonce = state.get_nonce(sender)
    if tx.nonce < nonce:
        fail("NONCE_MISMATCH_TOO_LOW", f"nonce {tx.nonce} < account nonce {nonce}")
    if tx.nonce > nonce:
        fail("NONCE_MISMATCH_TOO_HIGH", f"nonce {tx.nonce} > account nonce {nonce}")
    balance = state.get_balance(sender)
    cost = max_transaction_cost(tx)
    if balance < cost:
        fail("INSUFFICIENT_ACCOUNT_FUNDS", f"balance {balance} < up-front cost {cost}")
