"""Validity checks that need no execution, in the order of the specs.

Header checks (`validate_header`) and transaction checks that depend only on the
transaction and its block header (`check_transaction_static`) run before execution,
in the prefetch stage; checks against state (`check_transaction_state`: nonce,
balance, sender code, gas left in the block) run just before each transaction.

py-evm 0.12.1b1 leaves out some of these (no chain-id check, no [EIP-3607] sender
check, no signature or intrinsic-gas check in type-2 `validate()`, a Cancun balance
check that forgets `tx.value`, no [EIP-7623] calldata floor check, no [EIP-7702]
transaction rules beyond a non-empty list); evmpipe checks them all itself, each with
the ethereum/tests exception code, and keeps py-evm's own checks behind as a backstop.
Blob limits and prices are per fork (`execution.blobs`, [EIP-7691]).

[EIP-3607]: https://eips.ethereum.org/EIPS/eip-3607
[EIP-7623]: https://eips.ethereum.org/EIPS/eip-7623
[EIP-7691]: https://eips.ethereum.org/EIPS/eip-7691
[EIP-7702]: https://eips.ethereum.org/EIPS/eip-7702
"""
from __future__ import annotations

from typing import Any, Callable

from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth.vm.forks import BerlinVM, CancunVM, LondonVM, PragueVM, ShanghaiVM
from eth_utils import ValidationError

from execution.blobs import GAS_PER_BLOB, VERSIONED_HASH_VERSION_KZG, blob_base_fee, blob_params, calc_excess_blob_gas
from execution.forks import VMClass, header_field, is_merged
from pipeline.errors import BlockError, InvalidBlock, InvalidTransaction, TxError
from state.account import EMPTY_CODE_HASH

# Constants under the specs' names.
GAS_LIMIT_ADJUSTMENT_FACTOR = 1024  # Yellow Paper eq. 47
GAS_LIMIT_MINIMUM = 5000
GAS_LIMIT_MAXIMUM = 2**63 - 1  # geth's and ethereum/tests' bound
ELASTICITY_MULTIPLIER = 2  # EIP-1559
MAX_EXTRA_DATA = 32
MAX_INITCODE_SIZE = 2 * 24576  # EIP-3860
TX_BASE_COST = 21000
FLOOR_CALLDATA_COST = 10  # EIP-7623, per calldata token
STANDARD_CALLDATA_TOKEN_COST = 4  # a non-zero byte is 4 tokens, a zero byte 1
SECP256K1N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
EOA_DELEGATION_MARKER = b"\xef\x01\x00"  # EIP-7702
EOA_DELEGATED_CODE_LENGTH = 23
UINT8_MAX = 2**8 - 1
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
EMPTY_OMMERS_HASH = bytes.fromhex("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
DAO_EXTRA_DATA = b"dao-hard-fork"



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
    def fail(code: BlockError, reason: str) -> None:
        raise InvalidBlock(code, reason, number=header.block_number, block_hash=header.hash)

    if header.block_number != parent.block_number + 1:
        fail(BlockError.INVALID_BLOCK_NUMBER, f"number {header.block_number} does not follow parent {parent.block_number}")
    if header.timestamp <= parent.timestamp:
        fail(BlockError.INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT, f"timestamp {header.timestamp} <= parent's {parent.timestamp}")
    if len(header.extra_data) > MAX_EXTRA_DATA:
        fail(BlockError.EXTRA_DATA_TOO_BIG, f"extra data of {len(header.extra_data)} bytes > {MAX_EXTRA_DATA}")
    if header.gas_used > header.gas_limit:
        fail(BlockError.GAS_USED_OVERFLOW, f"gas used {header.gas_used} > gas limit {header.gas_limit}")

    london = issubclass(vm_class, LondonVM)
    parent_gas_limit = parent.gas_limit
    if london and not issubclass(parent_vm, LondonVM):
        parent_gas_limit *= ELASTICITY_MULTIPLIER
    if header.gas_limit > GAS_LIMIT_MAXIMUM:
        fail(BlockError.GASLIMIT_TOO_BIG, f"gas limit {header.gas_limit} above 2**63 - 1")
    max_delta = parent_gas_limit // GAS_LIMIT_ADJUSTMENT_FACTOR
    if not (parent_gas_limit - max_delta < header.gas_limit < parent_gas_limit + max_delta) or header.gas_limit < GAS_LIMIT_MINIMUM:
        fail(BlockError.INVALID_GASLIMIT, f"gas limit {header.gas_limit} outside the bounds around parent's {parent_gas_limit}")

    if london:
        expected = expected_base_fee(parent, issubclass(parent_vm, LondonVM))
        base_fee = header_field(header, "base_fee_per_gas")
        if base_fee != expected:
            fail(BlockError.INVALID_BASEFEE_PER_GAS, f"base fee {base_fee}, expected {expected}")

    if is_merged(vm_class):
        if header.difficulty != 0:
            fail(BlockError.INVALID_DIFFICULTY, f"difficulty {header.difficulty} after the merge")
        if header.nonce != b"\x00" * 8:
            fail(BlockError.IMPORT_IMPOSSIBLE_NONCE_OVER_PARIS, "non-zero nonce after the merge")
        if header.uncles_hash != EMPTY_OMMERS_HASH:
            fail(BlockError.IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS, "ommers after the merge")
    else:
        expected_difficulty = vm_class.compute_difficulty(parent, header.timestamp)
        if header.difficulty != expected_difficulty:
            fail(BlockError.INVALID_DIFFICULTY, f"difficulty {header.difficulty}, expected {expected_difficulty}")

    params = blob_params(vm_class)
    if params is not None:
        expected_excess = calc_excess_blob_gas(parent, params) if issubclass(parent_vm, CancunVM) else 0
        excess, used = header_field(header, "excess_blob_gas"), header_field(header, "blob_gas_used")
        if excess is None or used is None:
            fail(BlockError.INCORRECT_BLOCK_FORMAT, "a Cancun header needs blob gas fields")
        if excess != expected_excess:
            fail(BlockError.INCORRECT_EXCESS_BLOB_GAS, f"excess blob gas {excess}, expected {expected_excess}")
        if used % GAS_PER_BLOB:
            fail(BlockError.INCORRECT_BLOB_GAS_USED, f"blob gas used {used} not a multiple of {GAS_PER_BLOB}")
    if issubclass(vm_class, PragueVM) and header_field(header, "requests_hash") is None:
        fail(BlockError.INCORRECT_BLOCK_FORMAT, "a Prague header needs the requests hash ([EIP-7685])")

    dao_block = getattr(vm_class, "_dao_fork_block_number", None)
    if getattr(vm_class, "support_dao_fork", False) and dao_block is not None:
        if dao_block <= header.block_number < dao_block + 10 and header.extra_data != DAO_EXTRA_DATA:
            fail(BlockError.EXTRA_DATA_INVALID_DAO, "blocks 0..9 after the DAO fork must carry 'dao-hard-fork'")

    try:  # py-evm's own rules, as a backstop for anything not listed above
        vm_class.validate_header(header, parent)
    except ValidationError as exc:
        fail(BlockError.INVALID_HEADER, f"py-evm: {exc}")


def check_transaction_static(vm_class: VMClass, header: BlockHeaderAPI, tx: SignedTransactionAPI, index: int, chain_id: int) -> None:
    """Checks of one transaction that need only the header ([EIP-1559], [EIP-4844],
    [EIP-3860], [EIP-7623], [EIP-7702]), in EELS's order (`validate_transaction`, then
    the header-only part of `check_transaction`).

    Raises `InvalidTransaction` naming the transaction index.
    """
    def fail(code: TxError, reason: str) -> None:
        raise InvalidTransaction(code, reason, number=header.block_number, block_hash=header.hash, tx_index=index)

    type_id = getattr(tx, "type_id", None) or 0
    if type_id == 3 and not issubclass(vm_class, CancunVM):
        fail(TxError.TYPE_3_TX_PRE_FORK, f"blob transactions start at Cancun, this block is {vm_class.fork}")
    if type_id == 4 and not issubclass(vm_class, PragueVM):
        fail(TxError.TYPE_4_TX_PRE_FORK, f"set-code transactions start at Prague, this block is {vm_class.fork}")
    if type_id and type_id not in _allowed_types(vm_class):
        fail(TxError.TYPE_NOT_SUPPORTED, f"transaction type {type_id} is not valid in {vm_class.fork}")
    if type_id == 4:
        check_authorization_format(tx, fail)
    tx_chain_id = getattr(tx, "chain_id", None)
    if tx_chain_id is not None and tx_chain_id != chain_id:
        fail(TxError.INVALID_CHAINID, f"chain id {tx_chain_id}, expected {chain_id}")
    if tx.nonce >= UINT64_MAX:
        fail(TxError.NONCE_IS_MAX, f"nonce {tx.nonce} is 2**64 - 1 or more")
    if tx.gas > header.gas_limit:
        fail(TxError.GAS_ALLOWANCE_EXCEEDED, f"gas {tx.gas} above the block gas limit {header.gas_limit}")

    if type_id >= 2:
        if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
            fail(TxError.PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS, f"priority fee {tx.max_priority_fee_per_gas} > max fee {tx.max_fee_per_gas}")
    max_fee = tx.max_fee_per_gas if type_id >= 2 else tx.gas_price
    if max_fee * tx.gas > UINT256_MAX:
        fail(TxError.GASLIMIT_PRICE_PRODUCT_OVERFLOW, "gas * price overflows 256 bits")
    if issubclass(vm_class, LondonVM) and max_fee < header.base_fee_per_gas:
        fail(TxError.INSUFFICIENT_MAX_FEE_PER_GAS, f"max fee {max_fee} < base fee {header.base_fee_per_gas}")

    is_create = not tx.to
    if issubclass(vm_class, ShanghaiVM) and is_create and len(tx.data) > MAX_INITCODE_SIZE:
        fail(TxError.INITCODE_SIZE_EXCEEDED, f"init code of {len(tx.data)} bytes > {MAX_INITCODE_SIZE}")
    if tx.gas < tx.intrinsic_gas:
        fail(TxError.INTRINSIC_GAS_TOO_LOW, f"gas {tx.gas} < intrinsic gas {tx.intrinsic_gas}")
    if issubclass(vm_class, PragueVM) and tx.gas < calldata_floor_gas(tx.data):
        fail(TxError.INTRINSIC_GAS_BELOW_FLOOR_GAS_COST, f"gas {tx.gas} < calldata floor {calldata_floor_gas(tx.data)} ([EIP-7623])")

    if type_id == 3:
        params = blob_params(vm_class)
        assert params is not None  # type 3 before Cancun was rejected above
        hashes = tx.blob_versioned_hashes
        if is_create:
            fail(TxError.TYPE_3_TX_CONTRACT_CREATION, "a blob transaction cannot create a contract")
        if not hashes:
            fail(TxError.TYPE_3_TX_ZERO_BLOBS, "a blob transaction carries no blob")
        if len(hashes) * GAS_PER_BLOB > params.max:
            fail(TxError.TYPE_3_TX_BLOB_COUNT_EXCEEDED, f"{len(hashes)} blobs exceed the block limit of {params.max_blobs}")
        for h in hashes:
            if h[:1] != VERSIONED_HASH_VERSION_KZG:
                fail(TxError.TYPE_3_TX_INVALID_BLOB_VERSIONED_HASH, f"versioned hash 0x{h.hex()} lacks the KZG version byte")
        fee = blob_base_fee(header.excess_blob_gas, params)
        if tx.max_fee_per_blob_gas < fee:
            fail(TxError.INSUFFICIENT_MAX_FEE_PER_BLOB_GAS, f"max fee per blob gas {tx.max_fee_per_blob_gas} < blob base fee {fee}")
    if type_id == 4:
        if is_create:
            fail(TxError.TYPE_4_TX_CONTRACT_CREATION, "a set-code transaction cannot create a contract")
        if not tx.authorization_list:
            fail(TxError.TYPE_4_EMPTY_AUTHORIZATION_LIST, "a set-code transaction without authorizations")

    try:
        tx.validate()
    except ValidationError as exc:
        fail(TxError.INVALID_SIGNATURE, f"py-evm: {exc}")


def calldata_floor_gas(data: bytes) -> int:
    """[EIP-7623] the least gas a transaction with this calldata pays (and must offer)."""
    zeros = data.count(0)
    tokens = zeros + (len(data) - zeros) * STANDARD_CALLDATA_TOKEN_COST
    return TX_BASE_COST + FLOOR_CALLDATA_COST * tokens


def check_authorization_format(tx: SignedTransactionAPI, fail: Callable[[str, str], None]) -> None:
    """[EIP-7702] field widths of each authorization: EELS decodes the tuple as
    (U256, Address, U64, U8, U256, U256) and rejects the transaction if it does not fit.
    Signature validity (r, s ranges, recovery) is not checked here: an authorization
    whose signature is bad is skipped at execution, the transaction stays valid."""
    for number, auth in enumerate(tx.authorization_list):
        if auth.chain_id > UINT256_MAX or auth.nonce > UINT64_MAX or auth.y_parity > UINT8_MAX or auth.r > UINT256_MAX or auth.s > UINT256_MAX:
            fail(TxError.TYPE_4_INVALID_AUTHORIZATION_FORMAT, f"authorization {number}: a field is wider than EIP-7702 allows")


def check_block_blob_gas(vm_class: VMClass, header: BlockHeaderAPI) -> None:
    """[EIP-4844] the header's blob gas used within the fork's block limit (after the
    per-transaction blob checks, which ethereum/tests report first)."""
    used = header_field(header, "blob_gas_used")
    params = blob_params(vm_class)
    if used is not None and params is not None and used > params.max:
        raise InvalidBlock(BlockError.BLOB_GAS_USED_ABOVE_LIMIT, f"blob gas used {used} > {params.max}", number=header.block_number, block_hash=header.hash)



def check_withdrawals(header: BlockHeaderAPI, withdrawals: Any) -> None:
    """[EIP-4895] index, validator index and amount are 64-bit fields."""
    for index, withdrawal in enumerate(withdrawals or ()):
        for name in ("index", "validator_index", "amount"):
            if getattr(withdrawal, name) > UINT64_MAX:
                raise InvalidBlock(BlockError.RLP_INVALID_FIELD_OVERFLOW_64, f"withdrawal {index}: {name} above 2**64 - 1", number=header.block_number, block_hash=header.hash)


def _allowed_types(vm_class: VMClass) -> set[int]:
    if issubclass(vm_class, PragueVM):
        return {1, 2, 3, 4}
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


def is_valid_delegation(code: bytes) -> bool:
    """[EIP-7702] a delegation designation: 0xef0100 followed by an address. An account
    whose code is one is still an EOA and may send transactions ([EIP-3607] as amended).
    Before Prague no such code can be set, and 0xef-prefixed code cannot be deployed
    since London ([EIP-3541]).

    [EIP-3541]: https://eips.ethereum.org/EIPS/eip-3541"""
    return len(code) == EOA_DELEGATED_CODE_LENGTH and code[:3] == EOA_DELEGATION_MARKER


def check_transaction_state(state: Any, header: BlockHeaderAPI, tx: SignedTransactionAPI, index: int) -> None:
    """Checks against the state just before `tx` runs: sender code, nonce, balance.

    (Gas and blob gas left in the block are in-order facts, checked by `BlockRun`.)
    Reading a delegated sender's code records a read of its code hash, so a
    speculative result is re-run when an earlier transaction changed the delegation."""
    def fail(code: TxError, reason: str) -> None:
        raise InvalidTransaction(code, reason, number=header.block_number, block_hash=header.hash, tx_index=index)

    sender = tx.sender
    if state.get_code_hash(sender) != EMPTY_CODE_HASH:
        # from Prague (its headers carry a requests hash) a delegated EOA may send
        prague = header_field(header, "requests_hash") is not None
        if not (prague and is_valid_delegation(state.get_code(sender))):
            fail(TxError.SENDER_NOT_EOA, f"sender 0x{sender.hex()} has code")
    nonce = state.get_nonce(sender)
    if tx.nonce < nonce:
        fail(TxError.NONCE_MISMATCH_TOO_LOW, f"nonce {tx.nonce} < account nonce {nonce}")
    if tx.nonce > nonce:
        fail(TxError.NONCE_MISMATCH_TOO_HIGH, f"nonce {tx.nonce} > account nonce {nonce}")
    balance = state.get_balance(sender)
    cost = max_transaction_cost(tx)
    if balance < cost:
        fail(TxError.INSUFFICIENT_ACCOUNT_FUNDS, f"balance {balance} < up-front cost {cost}")
