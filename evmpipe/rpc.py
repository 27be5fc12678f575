"""JSON-RPC 2.0 over the committed state: the `eth_` reads a block explorer needs first.

Served from the `StateStore` the pipeline commits to. State is flat (one row per
account, no history), so account queries answer for the head only; a block tag
naming an older block gets error -32000 saying so. Block, transaction and receipt
queries work for every committed block.

The store's reads are blocking SQLite calls, so each call runs on a trio worker
thread (a limiter of its own keeps a flood of requests from taking the threads the
pipeline needs). Reads use the store's batched `read_*` methods: they always go to
SQLite under the store's lock, so they see exactly what is committed and never race
the pipeline on the LRU caches.
"""
from __future__ import annotations

import json
import math
import re
from functools import partial
from typing import Any, Callable

import trio
from eth._utils.address import generate_contract_address

from execution.decode import decode_block, decode_header
from execution.forks import ForkSchedule
from pipeline import jsonlimits
from pipeline.errors import InvalidBlock
from state.account import EMPTY_CODE_HASH
from state.store import StateStore

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
SERVER_ERROR = -32000  # historic state asked for
MAX_BATCH = 100
HEAD_TAGS = ("latest", "pending", "safe", "finalized")  # final order: every committed block is final


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _params_error(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


# -- hex in the JSON-RPC style ---------------------------------------------------


def quantity(value: int) -> str:
    return hex(value)


def data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def parse_data(value: Any, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise _params_error(f"{what} must be a 0x-prefixed hex string")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise _params_error(f"{what} is not valid hex") from None
    if length is not None and len(raw) != length:
        raise _params_error(f"{what} must be {length} bytes")
    return raw


_QUANTITY = re.compile(r"0[xX][0-9a-fA-F]{1,64}")
MAX_BLOCK_NUMBER = 2**63 - 1  # SQLite's INTEGER; no chain gets near it


def parse_quantity(value: Any, what: str) -> int:
    """A 0x-prefixed hex number: hex digits only (`int()` alone would take "-1", " 1", "1_0")."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise _params_error(f"{what} must be a 0x-prefixed hex quantity (at most 64 hex digits)")
    return int(value[2:], 16)


def parse_block_number(value: Any, what: str = "block") -> int:
    number = parse_quantity(value, what)
    if number > MAX_BLOCK_NUMBER:
        raise _params_error(f"{what} {value} is beyond any block number (at most 2**63 - 1)")
    return number


def _arguments(params: Any, required: int, optional: int = 0) -> list[Any]:
    if params is None:
        params = []
    if not isinstance(params, list):
        raise _params_error("params must be an array")
    if not required <= len(params) <= required + optional:
        expected = str(required) if not optional else f"{required} to {required + optional}"
        raise _params_error(f"expected {expected} parameters, got {len(params)}")
    return params + [None] * (required + optional - len(params))


class RpcHandler:
    """Dispatches JSON-RPC bodies to methods that read the store on worker threads."""

    def __init__(self, store: StateStore, schedule: ForkSchedule, *, on_call: Callable[[bool], None] | None = None) -> None:
        self.store = store
        self.schedule = schedule
        self.limiter = trio.CapacityLimiter(4)
        self.on_call = on_call or (lambda ok: None)
        self.methods: dict[str, Callable[[Any], Any]] = {
            "eth_blockNumber": self.block_number,
            "eth_chainId": self.chain_id,
            "eth_getBalance": partial(self._account_field, "balance"),
            "eth_getTransactionCount": partial(self._account_field, "nonce"),
            "eth_getCode": self.get_code,
            "eth_getStorageAt": self.get_storage_at,
            "eth_getBlockByNumber": self.get_block_by_number,
            "eth_getBlockByHash": self.get_block_by_hash,
            "eth_getTransactionReceipt": self.get_transaction_receipt,
        }

    async def handle_body(self, body: bytes) -> bytes | None:
        """The response body for a request body; None when every call was a notification."""
        try:
            payload = jsonlimits.loads(body, parse_constant=_no_constant)  # depth-bounded: see pipeline/jsonlimits.py
        except (ValueError, UnicodeDecodeError) as exc:
            self.on_call(False)
            return _dump(_error(None, PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                self.on_call(False)
                return _dump(_error(None, INVALID_REQUEST, "empty batch"))
            if len(payload) > MAX_BATCH:
                self.on_call(False)
                return _dump(_error(None, INVALID_REQUEST, f"batch of {len(payload)} calls; at most {MAX_BATCH}"))
            answers = [a for a in [await self.handle_call(call) for call in payload] if a is not None]
            return _dump(answers) if answers else None
        answer = await self.handle_call(payload)
        return None if answer is None else _dump(answer)

    async def handle_call(self, call: Any) -> dict[str, Any] | None:
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not isinstance(call.get("method"), str):
            self.on_call(False)
            return _error(call.get("id") if isinstance(call, dict) and _valid_id(call.get("id")) else None, INVALID_REQUEST, "not a JSON-RPC 2.0 request")
        notification = "id" not in call
        call_id = call.get("id")
        if not _valid_id(call_id):
            self.on_call(False)
            return _error(None, INVALID_REQUEST, "id must be a string, a number or null")
        method = self.methods.get(call["method"])
        try:
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, f"method {call['method']!r} is not served (evmpipe serves {', '.join(sorted(self.methods))})")
            result = await trio.to_thread.run_sync(method, call.get("params"), limiter=self.limiter)
        except RpcError as error:
            self.on_call(False)
            return None if notification else _error(call_id, error.code, error.message)
        except Exception as exc:  # a store or decoding failure must not take the server down
            self.on_call(False)
            return None if notification else _error(call_id, INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        self.on_call(True)
        return None if notification else {"jsonrpc": "2.0", "id": call_id, "result": result}

    # -- methods (run on a worker thread) -------------------------------------------

    def _head(self) -> tuple[int, bytes]:
        head = self.store.head()
        if head is None:
            raise RpcError(SERVER_ERROR, "no block committed yet")
        return head.number, head.hash

    def _check_head_state(self, tag: Any) -> None:
        """Account state exists for the head only (flat state keeps no history)."""
        if tag is None or tag in HEAD_TAGS:
            return
        number, head_hash = self._head()
        if isinstance(tag, dict):  # EIP-1898
            if "blockHash" in tag:
                if parse_data(tag["blockHash"], "blockHash", 32) == head_hash:
                    return
                raise RpcError(SERVER_ERROR, f"state is kept for the head block only (0x{head_hash.hex()}, number {number}): flat state has no history")
            tag = tag.get("blockNumber")
            if tag is None or tag in HEAD_TAGS:
                return
        if tag == "earliest":
            wanted = 0
        elif isinstance(tag, str):
            wanted = parse_block_number(tag)
        else:
            raise _params_error("block must be a tag (latest, pending, safe, finalized, earliest) or a hex number")
        if wanted != number:
            raise RpcError(SERVER_ERROR, f"state is kept for the head block only (number {number}, asked {wanted}): flat state has no history; use \"latest\"")

    def block_number(self, params: Any) -> str:
        _arguments(params, 0)
        return quantity(self._head()[0])

    def chain_id(self, params: Any) -> str:
        _arguments(params, 0)
        return quantity(self.schedule.chain_id)

    def _account_field(self, field_name: str, params: Any) -> str:
        address, tag = _arguments(params, 1, 1)
        address = parse_data(address, "address", 20)
        self._check_head_state(tag)
        account = self.store.read_accounts([address])[address]
        return quantity(0 if account is None else getattr(account, field_name))

    def get_code(self, params: Any) -> str:
        address, tag = _arguments(params, 1, 1)
        address = parse_data(address, "address", 20)
        self._check_head_state(tag)
        account = self.store.read_accounts([address])[address]
        if account is None or account.code_hash == EMPTY_CODE_HASH:
            return "0x"
        return data(self.store.read_code([account.code_hash]).get(account.code_hash, b""))

    def get_storage_at(self, params: Any) -> str:
        address, slot, tag = _arguments(params, 2, 1)
        address = parse_data(address, "address", 20)
        slot_number = parse_quantity(slot, "slot")
        if slot_number >= 2**256:
            raise _params_error("slot must be below 2**256")
        self._check_head_state(tag)
        value = self.store.read_storage([(address, slot_number)])[(address, slot_number)]
        return data(value.to_bytes(32, "big"))

    def _block_number_of(self, tag: Any) -> int:
        if tag is None or tag in HEAD_TAGS:
            return self._head()[0]
        if tag == "earliest":
            return 0
        return parse_block_number(tag)

    def get_block_by_number(self, params: Any) -> dict[str, Any] | None:
        tag, full = _arguments(params, 1, 1)
        self._no_full_transactions(full)
        return self._block(self._block_number_of(tag))

    def get_block_by_hash(self, params: Any) -> dict[str, Any] | None:
        block_hash, full = _arguments(params, 1, 1)
        block_hash = parse_data(block_hash, "block hash", 32)
        self._no_full_transactions(full)
        found = self.store.get_header(block_hash)
        if found is None or self.store.canonical_hash(found[0]) != block_hash:
            return None
        return self._block(found[0])

    @staticmethod
    def _no_full_transactions(full: Any) -> None:
        if full not in (None, False):
            if full is True:
                raise _params_error("full transaction objects are not served: pass false and ask for receipts")
            raise _params_error("the second parameter must be a boolean")

    def _block(self, number: int) -> dict[str, Any] | None:
        raw = self.store.get_block_rlp(number)
        if raw is None:
            return None
        if not raw:  # genesis: the store keeps its header only
            block_hash = self.store.canonical_hash(number)
            found = self.store.get_header(block_hash) if block_hash else None
            if found is None:
                return None
            header, _ = decode_header(self.schedule, found[1])
            return _block_json(header, [], [], len(found[1]), found[2])
        try:
            block, _ = decode_block(self.schedule, raw)
        except InvalidBlock as exc:  # a committed block always decodes; say so if not
            raise RpcError(INTERNAL_ERROR, f"stored block {number} does not decode: {exc}") from exc
        found = self.store.get_header(block.header.hash)
        td = found[2] if found else 0
        return _block_json(block.header, [tx.hash for tx in block.transactions], [u.hash for u in block.uncles], len(raw), td)

    def get_transaction_receipt(self, params: Any) -> dict[str, Any] | None:
        (tx_hash,) = _arguments(params, 1)
        tx_hash = parse_data(tx_hash, "transaction hash", 32)
        found = self.store.find_transaction(tx_hash)
        if found is None:
            return None
        block_hash, index = found
        header_row = self.store.get_header(block_hash)
        raw = self.store.get_block_rlp(header_row[0]) if header_row else None
        if header_row is None or raw is None:
            return None
        block, vm_class = decode_block(self.schedule, raw)
        builder = vm_class.get_receipt_builder()
        receipts = [builder.decode(r) for r in self.store.get_receipts(block_hash)]
        tx = block.transactions[index]
        receipt = receipts[index]
        previous_gas = receipts[index - 1].gas_used if index else 0
        log_index = sum(len(r.logs) for r in receipts[:index])
        header = block.header
        sender = tx.sender
        base_fee = getattr(header, "base_fee_per_gas", None)
        if tx.type_id is None or not hasattr(tx, "max_fee_per_gas"):
            price = tx.gas_price
        else:
            price = min(tx.max_fee_per_gas, (base_fee or 0) + tx.max_priority_fee_per_gas)
        where = {"blockHash": data(block_hash), "blockNumber": quantity(header.block_number), "transactionHash": data(tx_hash), "transactionIndex": quantity(index)}
        out: dict[str, Any] = {
            **where,
            "from": data(sender),
            "to": data(tx.to) if tx.to else None,
            "contractAddress": None if tx.to else data(generate_contract_address(sender, tx.nonce)),
            "cumulativeGasUsed": quantity(receipt.gas_used),
            "gasUsed": quantity(receipt.gas_used - previous_gas),
            "effectiveGasPrice": quantity(price),
            "logs": [
                {**where, "logIndex": quantity(log_index + i), "address": data(log.address), "topics": [data(t.to_bytes(32, "big")) for t in log.topics], "data": data(log.data), "removed": False}
                for i, log in enumerate(receipt.logs)
            ],
            "logsBloom": data(receipt.bloom.to_bytes(256, "big")),
            "type": quantity(tx.type_id or 0),
        }
        if len(receipt.state_root) == 32:  # before Byzantium: the state root after the transaction
            out["root"] = data(receipt.state_root)
        else:
            out["status"] = quantity(1 if receipt.state_root == b"\x01" else 0)
        return out


def _block_json(header: Any, tx_hashes: list[bytes], uncle_hashes: list[bytes], size: int, total_difficulty: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": data(header.transaction_root),
        "stateRoot": data(header.state_root),
        "receiptsRoot": data(header.receipt_root),
        "miner": data(header.coinbase),
        "difficulty": quantity(header.difficulty),
        "totalDifficulty": quantity(total_difficulty),
        "extraData": data(header.extra_data),
        "size": quantity(size),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "mixHash": data(header.mix_hash),
        "transactions": [data(h) for h in tx_hashes],
        "uncles": [data(h) for h in uncle_hashes],
    }
    for field_name, key, as_data in (
        ("base_fee_per_gas", "baseFeePerGas", False),
        ("withdrawals_root", "withdrawalsRoot", True),
        ("blob_gas_used", "blobGasUsed", False),
        ("excess_blob_gas", "excessBlobGas", False),
        ("parent_beacon_block_root", "parentBeaconBlockRoot", True),
    ):
        value = getattr(header, field_name, None)
        if value is not None:
            out[key] = data(value) if as_data else quantity(value)
    return out


def _valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))


def _error(call_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": message}}


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's decoder takes them unless told not to)."""
    raise ValueError(f"{name} is not a JSON value")
