"""The reference engine: run a BlockchainTest through py-evm's own ``Chain.import_block``.

Our own engine (``evmpipe.engine``) is checked against the fixtures; this one checks the
fixtures, the runner and py-evm itself, and gives the baseline our engine is compared to.
The rules are strict and nothing is skipped:

1. The chain is built from ``genesisBlockHeader`` and ``pre``; its genesis block must
   encode to ``genesisRLP`` and hash to ``genesisBlockHeader.hash``.
2. Every entry of ``blocks`` is decoded from its ``rlp`` and imported with
   ``perform_validation=True``. A block with ``expectException`` must be rejected (an
   exception while decoding or importing counts as a rejection); a block without it
   must be imported. The chain continues from whatever was imported.
3. Afterwards the canonical head must hash to ``lastblockhash``, and its state must
   match ``postState`` account by account, field by field, and also as a whole (the
   state root built from ``postState`` alone equals the head's, so no account or slot
   is missing from the fixture or extra in ours); with ``postStateHash`` instead, the
   head's state root must equal it.

py-evm raises generic ``ValidationError``s with free-text messages; :func:`classify`
maps them onto the ethereum/tests reason vocabulary so rejection reasons can be compared
with ``expectException``. A message it does not recognise becomes ``pyevm:<class>``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import rlp
from eth._utils.state import diff_state
from eth.abc import BlockAPI, ChainAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth.tools._utils.normalization import (
    normalize_account_state,
    normalize_block_header,
)
from eth.tools.fixtures.helpers import new_chain_from_fixture
from eth_utils import big_endian_to_int, decode_hex, encode_hex, to_normalized_address

from evmpipe.blocktest.result import BlockOutcome, TestResult

ENGINE_NAME = "pyevm"

# Position of the block number in an RLP-encoded header (every fork so far).
_HEADER_NUMBER_INDEX = 8

_TX = "TransactionException."
_BLOCK = "BlockException."

# (regular expression over "ExceptionClass: message", reason code), first match wins.
# Written from the messages py-evm 0.12.1b1 raises (eth/vm, eth/chains, eth/consensus)
# and checked against the ethereum/tests fixtures. Each maps what py-evm *says*, not
# what a fixture expects: where py-evm notices a different problem first (it checks the
# blob fee before the excess blob gas), the mismatch shows in the report.
_REASON_PATTERNS: tuple[tuple[str, str], ...] = (
    # -- decoding --
    (r"^UnrecognizedTransactionType", _TX + "TYPE_NOT_SUPPORTED"),
    (r"field uncles .*Too many elements", _BLOCK + "IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS"),
    # A 15-field (pre-London) header where the fork wants more fields.
    (r"field header .*list length \(15\) does not match sedes \((1[6-9]|2\d)\)",
     _BLOCK + "IMPORT_IMPOSSIBLE_LEGACY"),
    (r"field header .*list length", _BLOCK + "INCORRECT_BLOCK_FORMAT"),
    # The block list itself is one item short: a Shanghai+ block without withdrawals.
    (r"^ObjectDeserializationError: Deserialization failed because of underlying list"
     r" \(\"Deserializing list length \(3\) does not match sedes \(4\)",
     _BLOCK + "RLP_WITHDRAWALS_NOT_READ"),
    (r"exceeds maximum uint64 size", _BLOCK + "RLP_INVALID_FIELD_OVERFLOW_64"),
    (r"^(ObjectDeserializationError|DeserializationError|DecodingError|"
     r"ListDeserializationError|RLPException|IndexError)",
     _BLOCK + "RLP_STRUCTURES_ENCODING"),
    # The fixture's "rlp" is not even hex.
    (r"^(Error|ValueError): .*(Non-hexadecimal|Odd-length|hex)", _BLOCK + "RLP_STRUCTURES_ENCODING"),
    # -- header --
    (r"Attempt to import block .* before importing its parent", _BLOCK + "UNKNOWN_PARENT"),
    (r"Unknown ancestor", _BLOCK + "UNKNOWN_PARENT"),
    (r"This VM can only import blocks at number|Blocks must be numbered consecutively",
     _BLOCK + "INVALID_BLOCK_NUMBER"),
    (r"extra_data must be of length less than or equal", _BLOCK + "EXTRA_DATA_TOO_BIG"),
    (r"(must|must not) have extra data .*(DAO fork|declining the DAO)",
     _BLOCK + "EXTRA_DATA_INVALID_DAO"),
    (r"The gas limit \d+ is too high. It must be at most 9223372036854775807\b",
     _BLOCK + "GASLIMIT_TOO_BIG"),
    (r"The gas limit \d+ is too (high|low)", _BLOCK + "INVALID_GASLIMIT"),
    (r"timestamp must be strictly later than parent|Uncle timestamp .* is not newer",
     _BLOCK + "INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT"),
    (r"Difficulty must be|Invalid difficulty", _BLOCK + "INVALID_DIFFICULTY"),
    (r"Header has invalid base fee per gas", _BLOCK + "INVALID_BASEFEE_PER_GAS"),
    (r"Block excess blob gas was not updated", _BLOCK + "INCORRECT_EXCESS_BLOB_GAS"),
    (r"Block exceeded maximum blob gas limit", _BLOCK + "BLOB_GAS_USED_ABOVE_LIMIT"),
    (r"Block blob gas used .* does not match", _BLOCK + "INCORRECT_BLOB_GAS_USED"),
    (r"Uncles hash must be", _BLOCK + "IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS"),
    (r"Nonce must be b|Invalid nonce: |Invalid mix hash", _BLOCK + "INCORRECT_BLOCK_FORMAT"),
    (r"transaction_root .* does not match expected", _BLOCK + "INVALID_TRANSACTIONS_ROOT"),
    (r"`state_root` does not match", _BLOCK + "INVALID_STATE_ROOT"),
    # -- uncles --
    (r"Blocks may have a maximum of \d+ uncles", _BLOCK + "TOO_MANY_UNCLES"),
    (r"uncles_hash` and block `uncles` do not match|Block has uncles but header suggests"
     r"|Header suggests block should have uncles", _BLOCK + "INVALID_UNCLES_HASH"),
    (r"Block contains duplicate uncles", _BLOCK + "UNCLE_IS_BROTHER"),
    (r"Duplicate uncle: |Uncle has same hash as block", _BLOCK + "UNCLE_IN_CHAIN"),
    (r"Uncle \S+ cannot be an ancestor", _BLOCK + "UNCLE_IS_ANCESTOR"),
    (r"Uncle ancestor not found", _BLOCK + "UNCLE_UNKNOWN_PARENT"),
    (r"Uncle's parent .* is not an ancestor|Uncle number .* is (higher than|not one above)",
     _BLOCK + "UNCLE_PARENT_INCORRECT"),
    (r"Uncle's gas usage .* is above", _BLOCK + "INVALID_GAS_USED_ABOVE_LIMIT"),
    # -- transactions --
    (r"Transaction exceeds gas limit: using", _TX + "GAS_ALLOWANCE_EXCEEDED"),
    (r"^InsufficientFunds|cannot afford txn gas|Sender has insufficient funds"
     r"|Sender does not have enough balance", _TX + "INSUFFICIENT_ACCOUNT_FUNDS"),
    (r"Insufficient gas|Message.gas cannot be negative", _TX + "INTRINSIC_GAS_TOO_LOW"),
    (r"Sender's max fee per gas .* is lower than block's base fee",
     _TX + "INSUFFICIENT_MAX_FEE_PER_GAS"),
    (r"Blob transaction must pay at least the current blob base fee",
     _TX + "INSUFFICIENT_MAX_FEE_PER_BLOB_GAS"),
    (r"Blob transaction must contain at least one blob", _TX + "TYPE_3_TX_ZERO_BLOBS"),
    (r"Blob versioned hash does not start with", _TX + "TYPE_3_TX_INVALID_BLOB_VERSIONED_HASH"),
    (r"Nonce must be less than 2(\*\*|\^)64", _TX + "NONCE_IS_MAX"),
    (r"Contract code size exceeds EIP-3860", _TX + "INITCODE_SIZE_EXCEEDED"),
    (r"The chain_id field must be|The current chain_id is", _TX + "INVALID_CHAINID"),
    (r"Invalid [Ss]ignature|Bad Signature|BadSignature", _TX + "INVALID_SIGNATURE_VRS"),
)

# "Mismatch between locally executed block and proposed block": the header field that
# differs, most specific first. Fields computed from the parent and the block body come
# before execution results, which a wrong transaction disturbs all together.
_HEADER_FIELD_REASONS: tuple[tuple[str, str], ...] = (
    ("blob_gas_used", _BLOCK + "INCORRECT_BLOB_GAS_USED"),
    ("excess_blob_gas", _BLOCK + "INCORRECT_EXCESS_BLOB_GAS"),
    ("base_fee_per_gas", _BLOCK + "INVALID_BASEFEE_PER_GAS"),
    ("uncles_hash", _BLOCK + "INVALID_UNCLES_HASH"),
    ("transaction_root", _BLOCK + "INVALID_TRANSACTIONS_ROOT"),
    ("withdrawals_root", _BLOCK + "INVALID_WITHDRAWALS_ROOT"),
    ("gas_used", _BLOCK + "INVALID_GAS_USED"),
    ("receipt_root", _BLOCK + "INVALID_RECEIPTS_ROOT"),
    ("bloom", _BLOCK + "INVALID_LOG_BLOOM"),
    ("state_root", _BLOCK + "INVALID_STATE_ROOT"),
)

_NONCE_MISMATCH = re.compile(r"Invalid transaction nonce: Expected (\d+), but got (\d+)")
_FIELD_MISMATCH = re.compile(r"Mismatch between locally executed block and proposed block")


def classify(exc: BaseException) -> str:
    """Map an exception raised while decoding or importing a block to a reason code.

    The code is in the ethereum/tests vocabulary (``BlockException.INVALID_GASLIMIT``)
    when py-evm's message says which rule failed, else ``pyevm:<exception class>``.
    """
    text = f"{type(exc).__name__}: {exc}"
    if _FIELD_MISMATCH.search(text):
        fields = set(re.findall(r"header\.(\w+):", text))
        for field_name, code in _HEADER_FIELD_REASONS:
            if field_name in fields:
                return code
    nonce = _NONCE_MISMATCH.search(text)
    if nonce:
        expected, got = int(nonce.group(1)), int(nonce.group(2))
        return _TX + ("NONCE_MISMATCH_TOO_HIGH" if got > expected else "NONCE_MISMATCH_TOO_LOW")
    # validate_lte's message names no rule; the uncle reward is where it guards depth.
    if "get_uncle_reward" in _traceback_functions(exc):
        return _BLOCK + "UNCLE_PARENT_INCORRECT"
    for pattern, code in _REASON_PATTERNS:
        if re.search(pattern, text, re.DOTALL):
            return code
    return f"pyevm:{type(exc).__name__}"


def _traceback_functions(exc: BaseException) -> set[str]:
    names = set()
    tb = exc.__traceback__
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def run_blockchain_test(path: str, name: str, test: dict[str, Any]) -> TestResult:
    """Run one BlockchainTest through py-evm; never raises for a failing test."""
    _quiet_pyevm_logging()
    started = time.perf_counter()
    blocks: list[BlockOutcome] = []
    try:
        error = _run(test, blocks)
    except Exception as exc:  # a malformed fixture or a py-evm crash outside import
        error = f"{type(exc).__name__}: {_shorten(str(exc))}"
    return TestResult(
        path=path,
        name=name,
        network=str(test.get("network", "")),
        engine=ENGINE_NAME,
        passed=error is None,
        error=error,
        seconds=time.perf_counter() - started,
        blocks=blocks,
    )


def _quiet_pyevm_logging() -> None:
    """py-evm logs a warning for every rejected block; a rejection is a result here."""
    logger = logging.getLogger("eth")
    if logger.level < logging.ERROR:
        logger.setLevel(logging.ERROR)


def _run(test: dict[str, Any], blocks: list[BlockOutcome]) -> str | None:
    """Run the test, filling ``blocks``; return the first failure, or None."""
    chain = new_chain(test)
    error = _check_genesis(chain, test)
    if error:
        return error

    for index, block_fixture in enumerate(test["blocks"]):
        outcome = _import_block(chain, index, block_fixture)
        blocks.append(outcome)
        if error is None:
            error = outcome.problem()
    if error:
        return error

    head = chain.get_canonical_head()
    expected_last = decode_hex(test["lastblockhash"])
    if head.hash != expected_last:
        return (
            f"lastblockhash mismatch: head is #{head.block_number} {encode_hex(head.hash)},"
            f" expected {test['lastblockhash']}"
        )
    return _check_post_state(chain, test)


def new_chain(test: dict[str, Any]) -> ChainAPI:
    """A chain at the fixture's genesis, with the fixture's fork schedule."""
    fixture = {
        "network": test["network"],
        "genesisBlockHeader": normalize_block_header(test["genesisBlockHeader"]),
        "pre": normalize_account_state(test["pre"]),
        # chain_vm_configuration reads block timestamps for timestamp transitions.
        "blocks": [_normalize_block_for_schedule(b) for b in test["blocks"]],
    }
    if "sealEngine" in test:
        fixture["sealEngine"] = test["sealEngine"]
    return new_chain_from_fixture(fixture)


def _normalize_block_for_schedule(block_fixture: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    header = block_fixture.get("blockHeader")
    if header is not None:
        out["blockHeader"] = {
            "number": int(header["number"], 16),
            "timestamp": int(header["timestamp"], 16),
        }
    if "expectException" in block_fixture:
        out["expectException"] = block_fixture["expectException"]
    return out


def _check_genesis(chain: ChainAPI, test: dict[str, Any]) -> str | None:
    genesis = chain.get_canonical_block_by_number(0)
    expected_hash = decode_hex(test["genesisBlockHeader"]["hash"])
    if genesis.hash != expected_hash:
        return (
            f"genesis hash mismatch: built {encode_hex(genesis.hash)},"
            f" expected {encode_hex(expected_hash)}"
        )
    if "genesisRLP" in test:
        if rlp.encode(genesis) != decode_hex(test["genesisRLP"]):
            return "genesis RLP mismatch: the built genesis block encodes differently"
    return None


def _import_block(chain: ChainAPI, index: int, block_fixture: dict[str, Any]) -> BlockOutcome:
    expected = block_fixture.get("expectException")
    number: int | None = None
    header = block_fixture.get("blockHeader")
    if header is not None and "number" in header:
        number = int(header["number"], 16)
    try:
        raw = decode_hex(block_fixture["rlp"])
        if number is None:
            number = _number_from_rlp(raw)
        block = _decode_block(chain, raw, number)
        number = block.number
        chain.import_block(block, perform_validation=True)
    except Exception as exc:
        return BlockOutcome(
            index=index,
            number=number,
            expected_exception=expected,
            rejected=True,
            reason=classify(exc),
            detail=f"{type(exc).__name__}: {_shorten(str(exc))}",
        )
    return BlockOutcome(
        index=index, number=number, expected_exception=expected, rejected=False, reason=None
    )


def _number_from_rlp(raw: bytes) -> int:
    """The block number in an encoded block, read without knowing its fork."""
    items = rlp.decode(raw)
    return big_endian_to_int(items[0][_HEADER_NUMBER_INDEX])


def _decode_block(chain: ChainAPI, raw: bytes, number: int) -> BlockAPI:
    block_class = chain.get_vm_class_for_block_number(number).get_block_class()
    return rlp.decode(raw, sedes=block_class)


def _check_post_state(chain: ChainAPI, test: dict[str, Any]) -> str | None:
    head = chain.get_canonical_head()
    if "postState" not in test:
        expected_root = decode_hex(test["postStateHash"])
        if head.state_root != expected_root:
            return (
                f"post-state root mismatch: {encode_hex(head.state_root)},"
                f" expected postStateHash {test['postStateHash']}"
            )
        return None

    expected = normalize_account_state(test["postState"])
    state = chain.get_vm(head).state
    diffs = list(diff_state(expected, state))
    if diffs:
        account, field, actual, wanted = diffs[0]
        return (
            f"post-state mismatch at {to_normalized_address(account)} {field}:"
            f" got {_fmt(actual)}, expected {_fmt(wanted)}"
            + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")
        )
    if _state_root_of(expected) != head.state_root:
        return (
            "post-state mismatch: every postState field matches, but the head state"
            f" root {encode_hex(head.state_root)} differs from postState's: an account"
            " or storage slot exists that postState does not list"
        )
    return None


def _state_root_of(accounts: dict[bytes, dict[str, Any]]) -> bytes:
    """The state root of exactly these accounts."""
    db = AccountDB(AtomicDB(), BLANK_ROOT_HASH)
    for address, account in accounts.items():
        db.set_balance(address, account["balance"])
        db.set_nonce(address, account["nonce"])
        db.set_code(address, account["code"])
        for slot, value in account["storage"].items():
            db.set_storage(address, slot, value)
    db.persist()
    return db.state_root


def _fmt(value: object) -> str:
    if isinstance(value, bytes):
        return _shorten(encode_hex(value), 80)
    return repr(value)


def _shorten(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
