"""JSON-RPC 2.0 over the committed state: what wallets, explorers, indexers and web3.py ask.

State is flat (one row per account, no history), so account queries, `eth_call`,
`eth_estimateGas` and `eth_getProof` answer for the head only; a block tag naming an
older block gets error -32000 saying so. Block, transaction, receipt and log queries
work for every committed block.

Reads never touch the pipeline's state: account reads, calls, proofs and logs go
through `ReadView` (evmpipe/rpc_view.py), a read-only SQLite connection per thread
reading one WAL snapshot per call, so a call sees one head throughout and never waits
on the store's lock while a block commits. Every call that reads runs on a trio
worker thread with a limiter of its own (a flood of requests cannot take the threads
the pipeline needs); no SQLite statement runs on the event loop. What the event loop
answers itself is memory only: the chain id and client version, the head as the
node's `ChainState` holds it, and answers cached by block hash or per head (block
JSON, fee figures), with one computation per distinct call when a new head misses.
"""
from __future__ import annotations

import json
import math
import re
import sys
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator

import rlp
import trio
from eth._utils.address import generate_contract_address
from eth_hash.auto import keccak

from evmpipe.rpc_call import DEFAULT_CALL_GAS, CallFailed, Message, Reverted, estimate_gas, run_call
from evmpipe.rpc_deadline import DEFAULT_EVM_TIMEOUT, EvmTimeout, run_with_deadline
from evmpipe.rpc_format import block_parts, log_json, percentile_rewards, priority_fee, receipt_logs, transaction_hashes, transaction_json
from evmpipe.rpc_proof import account_fields, trie_proof
from evmpipe.rpc_view import ReadStore, ReadView, read_view
from execution.checks import expected_base_fee
from execution.decode import decode_block, decode_header
from execution.forks import ForkSchedule
from pipeline import jsonlimits
from pipeline.datadir import LOGS_FROM
from pipeline.errors import InvalidBlock
from state.account import BLANK_ROOT, EMPTY_CODE_HASH
from state.store import Head, StateStore

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
SERVER_ERROR = -32000  # historic state asked for, nothing committed, a call that cannot run
LIMIT_EXCEEDED = -32005  # a log query over the range or result limits
EXECUTION_REVERTED = 3  # geth's code for a reverted eth_call / eth_estimateGas, revert data in "data"
MAX_BATCH = 100
MAX_LOG_RANGE = 10_000  # blocks one eth_getLogs may cover
MAX_LOGS = 10_000  # logs one eth_getLogs may return
MAX_LOG_CANDIDATES = 100_000  # logs matching address and topic 0, before the other topics are checked
MAX_FEE_HISTORY = 1024  # blocks one eth_feeHistory may cover
MAX_PROOF_SLOTS = 1024  # storage keys one eth_getProof may ask for
MAX_CALL_GAS = 100_000_000  # gas one eth_call or eth_estimateGas may name
TIP_BLOCKS = 20  # blocks the suggested tip looks back on
DEFAULT_TIP = 10**9  # 1 gwei, the suggestion when recent blocks hold no transaction
BLOCK_CACHE = 256  # block JSON answers kept (cleared when full)
_MISS = object()  # a fast path's "not cached: take the thread"
EVM_METHODS = frozenset({"eth_call", "eth_estimateGas"})  # run the EVM: bounded in time (evmpipe/rpc_deadline.py)
HEAVY_METHODS = frozenset({"eth_call", "eth_estimateGas", "eth_getLogs", "eth_getProof", "eth_feeHistory", "eth_gasPrice", "eth_maxPriorityFeePerGas"})
INLINE_METHODS = frozenset({  # index lookups of bounded cost: run on the RPC process's own loop when `inline`
    "eth_blockNumber", "eth_getBalance", "eth_getTransactionCount", "eth_getCode", "eth_getStorageAt",
    "eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
})
MEMORY_METHODS = frozenset({"eth_chainId", "web3_clientVersion", "net_version", "eth_syncing"})  # answered without I/O
CALL_FIELDS = frozenset({"from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "data", "input", "nonce", "type", "chainId", "accessList"})
HEAD_TAGS = ("latest", "pending", "safe", "finalized")  # final order: every committed block is final


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data  # geth's "data" member: the revert data of a reverted call


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


class _Slot:
    """One call handed to the batcher: its outcome, and an event set once it is known
    (or once it is this call's turn to carry the queue to a thread)."""

    __slots__ = ("method", "params", "value", "error", "ran", "done")

    def __init__(self, method: Callable[[Any], Any], params: Any) -> None:
        self.method, self.params = method, params
        self.value: Any = None
        self.error: BaseException | None = None
        self.ran = False
        self.done = trio.Event()


def _run_slots(slots: list[_Slot]) -> None:
    for slot in slots:
        try:
            slot.value = slot.method(slot.params)
        except Exception as exc:  # each call's error is its own
            slot.error = exc


class Batcher:
    """Runs the light calls waiting at one moment in one thread hop.

    A hop costs two thread switches, and under load each waits for the GIL behind the
    event loop: far more than a balance read. So calls queue here. A call that finds
    no batch running carries the whole queue to a thread, runs every call in it, and
    returns; if more calls queued meanwhile, the first of them is woken to carry the
    next batch (so no caller waits for more than its own batch and the one before)."""

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self.limiter = limiter
        self.queue: list[_Slot] = []
        self.running = False

    async def run(self, method: Callable[[Any], Any], params: Any) -> Any:
        slot = _Slot(method, params)
        self.queue.append(slot)
        if self.running:
            await slot.done.wait()  # a result, or this call's turn to carry the queue
        if not slot.ran:
            await self._carry()
        if slot.error is not None:
            raise slot.error
        return slot.value

    async def _carry(self) -> None:
        self.running = True
        batch, self.queue = self.queue, []
        try:
            await trio.to_thread.run_sync(_run_slots, batch, limiter=self.limiter)
        except BaseException as exc:  # cancelled: this batch's callers must not wait forever
            for waiting in batch:
                if waiting.value is None and waiting.error is None:
                    waiting.error = RpcError(INTERNAL_ERROR, f"not run: {type(exc).__name__}")
            raise
        finally:
            for done in batch:
                done.ran = True
                done.done.set()
            if self.queue:
                self.queue[0].done.set()  # not run: its turn to carry the next batch
            else:
                self.running = False


class RpcHandler:
    """Dispatches JSON-RPC bodies to methods that read the store on worker threads."""

    def __init__(self, store: StateStore | ReadStore, schedule: ForkSchedule, *, on_call: Callable[[bool], None] | None = None, head: Callable[[], Head | None] | None = None, inline: bool = False, evm_timeout: float = DEFAULT_EVM_TIMEOUT) -> None:
        self.store = store
        self.evm_timeout = evm_timeout  # seconds an eth_call / eth_estimateGas may run (0: no limit)
        # inline: light calls (INLINE_METHODS) read SQLite on the event loop itself. Right
        # in the RPC process, whose loop serves nothing else and where a thread hop
        # costs more than the read; never on the pipeline's loop.
        self.inline = inline
        self.memory_head = head  # the committed head as the pipeline keeps it in memory (the node's ChainState)
        self.schedule = schedule
        self.limiter = trio.CapacityLimiter(4)
        self._tip_cache: tuple[bytes, int] | None = None  # (head hash, suggested tip)
        self._fee_cache: tuple[bytes, int] | None = None  # (head hash, gas price)
        self._block_tips: dict[bytes, list[int]] = {}  # block hash -> the tips its transactions paid
        self.batcher = Batcher(self.limiter)
        self._flights: dict[tuple[str, str], trio.Event] = {}  # calls being computed (see _single_flight)
        self._block_cache: dict[tuple[bytes, bool], dict[str, Any]] = {}  # (block hash, full) -> JSON; blocks never change
        # Answers that need no thread when cached: a hot `latest` block or fee figure is
        # served on the event loop (a thread hop waits for the GIL behind the loop).
        self.fast_paths: dict[str, Callable[[Any], Any]] = {
            "eth_blockNumber": self._memory_block_number,
            "eth_getBlockByNumber": self._cached_block_by_number,
            "eth_getBlockByHash": self._cached_block_by_hash,
            "eth_gasPrice": self._cached_gas_price,
            "eth_maxPriorityFeePerGas": self._cached_tip,
        }
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
            "web3_clientVersion": self.client_version,
            "net_version": self.net_version,
            "eth_syncing": self.syncing,
            "eth_gasPrice": self.gas_price,
            "eth_maxPriorityFeePerGas": self.max_priority_fee,
            "eth_feeHistory": self.fee_history,
            "eth_getTransactionByHash": self.get_transaction_by_hash,
            "eth_getTransactionByBlockNumberAndIndex": self.get_transaction_by_number_and_index,
            "eth_getTransactionByBlockHashAndIndex": self.get_transaction_by_hash_and_index,
            "eth_getBlockTransactionCountByNumber": self.transaction_count_by_number,
            "eth_getBlockTransactionCountByHash": self.transaction_count_by_hash,
            "eth_getLogs": self.get_logs,
            "eth_call": self.call,
            "eth_estimateGas": self.estimate_gas,
            "eth_getProof": self.get_proof,
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
            fast = self.fast_paths.get(call["method"])
            if fast is not None:
                result = await self._single_flight(call["method"], call.get("params"), fast, method)
            elif call["method"] in MEMORY_METHODS:
                result = method(call.get("params"))  # no I/O at all: not worth a thread hop
            else:
                result = await self._on_thread(call["method"], method, call.get("params"))
        except RpcError as error:
            self.on_call(False)
            return None if notification else _error(call_id, error.code, error.message, error.data)
        except Exception as exc:  # a store or decoding failure must not take the server down
            self.on_call(False)
            return None if notification else _error(call_id, INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        self.on_call(True)
        return None if notification else {"jsonrpc": "2.0", "id": call_id, "result": result}

    async def _on_thread(self, name: str, method: Callable[[Any], Any], params: Any) -> Any:
        """Light calls (a few reads, no execution) share thread hops through the batcher;
        heavy ones (calls, logs, proofs, fee history, full blocks) take one each."""
        full_block = name.startswith("eth_getBlockBy") and isinstance(params, list) and len(params) > 1 and params[1] is True
        if self.inline and name in INLINE_METHODS and not full_block:
            return method(params)
        if name in EVM_METHODS and self.evm_timeout > 0:
            try:
                return await run_with_deadline(partial(method, params), self.evm_timeout, self.limiter)
            except EvmTimeout:
                raise RpcError(SERVER_ERROR, f"execution aborted (timeout = {self.evm_timeout:g}s)") from None
        if name in HEAVY_METHODS or full_block:
            return await trio.to_thread.run_sync(method, params, limiter=self.limiter)
        return await self.batcher.run(method, params)

    async def _single_flight(self, name: str, params: Any, fast: Callable[[Any], Any], method: Callable[[Any], Any]) -> Any:
        """A cached answer on the event loop; on a miss, one computation per distinct
        call: when a new head arrives, the clients asking for `latest` at once wait for
        the first one's answer instead of each taking a thread to compute the same."""
        key = (name, json.dumps(params, sort_keys=True))
        while True:
            result = fast(params)
            if result is not _MISS:
                return result
            running = self._flights.get(key)
            if running is None:
                break
            await running.wait()  # the same call is being computed: then read the cache (again)
        done = trio.Event()  # set wakes every waiter in one pass (a lock would hand over one by one)
        self._flights[key] = done
        try:
            return await self._on_thread(name, method, params)
        finally:
            done.set()
            if self._flights.get(key) is done:
                del self._flights[key]

    # -- methods (run on a worker thread) -------------------------------------------

    def head(self) -> Head | None:
        """The committed head, read on this thread's read-only connection (no wait on
        the store's lock). A thread's: SQLite never runs on the event loop."""
        with read_view(self.store.path) as view:
            return view.head

    def _head(self, view: ReadView | None = None) -> tuple[int, bytes]:
        head = view.head if view is not None else self.head()
        if head is None:
            raise RpcError(SERVER_ERROR, "no block committed yet")
        return head.number, head.hash

    @contextmanager
    def _head_view(self) -> Iterator[ReadView]:
        """A read snapshot of the store that has a committed head."""
        with read_view(self.store.path) as view:
            if view.head is None:
                raise RpcError(SERVER_ERROR, "no block committed yet")
            yield view

    def _check_head_state(self, tag: Any, view: ReadView | None = None) -> None:
        """Account state exists for the head only (flat state keeps no history)."""
        if tag is None or tag in HEAD_TAGS:
            if view is not None:
                self._head(view)
            return
        number, head_hash = self._head(view)
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
        with read_view(self.store.path) as view:
            self._check_head_state(tag, view)
            account = view.get_account(address)
        return quantity(0 if account is None else getattr(account, field_name))

    def get_code(self, params: Any) -> str:
        address, tag = _arguments(params, 1, 1)
        address = parse_data(address, "address", 20)
        with read_view(self.store.path) as view:
            self._check_head_state(tag, view)
            account = view.get_account(address)
            if account is None or account.code_hash == EMPTY_CODE_HASH:
                return "0x"
            return data(view.get_code(account.code_hash) or b"")

    def get_storage_at(self, params: Any) -> str:
        address, slot, tag = _arguments(params, 2, 1)
        address = parse_data(address, "address", 20)
        slot_number = parse_quantity(slot, "slot")
        if slot_number >= 2**256:
            raise _params_error("slot must be below 2**256")
        with read_view(self.store.path) as view:
            self._check_head_state(tag, view)
            value = view.get_storage(address, slot_number)
        return data(value.to_bytes(32, "big"))

    def _block_number_of(self, tag: Any) -> int:
        if tag is None or tag in HEAD_TAGS:
            return self._head()[0]
        if tag == "earliest":
            return 0
        return parse_block_number(tag)

    def get_block_by_number(self, params: Any) -> dict[str, Any] | None:
        tag, full = _arguments(params, 1, 1)
        return self._block(self._block_number_of(tag), _full_flag(full))

    def get_block_by_hash(self, params: Any) -> dict[str, Any] | None:
        block_hash, full = _arguments(params, 1, 1)
        block_hash = parse_data(block_hash, "block hash", 32)
        full = _full_flag(full)
        number = self._canonical_number(block_hash)
        return None if number is None else self._block(number, full)

    def _canonical_number(self, block_hash: bytes) -> int | None:
        found = self.store.get_header(block_hash)
        if found is None or self.store.canonical_hash(found[0]) != block_hash:
            return None
        return found[0]

    # The fast paths run on the event loop: memory only, never SQLite (nothing blocks
    # the loop, docs/ARCHITECTURE.md); _MISS sends the call to a thread.

    def _head_in_memory(self) -> Head | None:
        return None if self.memory_head is None else self.memory_head()

    def _memory_block_number(self, params: Any) -> Any:
        _arguments(params, 0)
        head = self._head_in_memory()
        return _MISS if head is None else quantity(head.number)

    def _cached_block_by_number(self, params: Any) -> Any:
        tag, full = _arguments(params, 1, 1)
        full = _full_flag(full)
        head = self._head_in_memory()
        if head is None or not (tag is None or tag in HEAD_TAGS):
            return _MISS  # a number needs the canonical table to name its block
        return self._block_cache.get((head.hash, full), _MISS)

    def _cached_block_by_hash(self, params: Any) -> Any:
        block_hash, full = _arguments(params, 1, 1)
        return self._block_cache.get((parse_data(block_hash, "block hash", 32), _full_flag(full)), _MISS)

    def _cached_gas_price(self, params: Any) -> Any:
        _arguments(params, 0)
        cached, head = self._fee_cache, self._head_in_memory()
        return quantity(cached[1]) if cached is not None and head is not None and cached[0] == head.hash else _MISS

    def _cached_tip(self, params: Any) -> Any:
        _arguments(params, 0)
        cached, head = self._tip_cache, self._head_in_memory()
        return quantity(cached[1]) if cached is not None and head is not None and cached[0] == head.hash else _MISS

    def _block(self, number: int, full: bool = False) -> dict[str, Any] | None:
        out = self._block_json(number, full)
        if out is not None:
            if len(self._block_cache) >= BLOCK_CACHE:
                self._block_cache.clear()
            self._block_cache[(bytes.fromhex(out["hash"][2:]), full)] = out
        return out

    def _block_json(self, number: int, full: bool) -> dict[str, Any] | None:
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
        parts = block_parts(raw)  # the header and the raw lists: hashes need no py-evm decoding
        block_hash = self.store.canonical_hash(number)
        found = self.store.get_header(block_hash) if block_hash else None
        if found is None:
            return None
        header, _ = decode_header(self.schedule, found[1])
        if full:
            try:
                block, _ = decode_block(self.schedule, raw)
            except InvalidBlock as exc:  # a committed block always decodes; say so if not
                raise RpcError(INTERNAL_ERROR, f"stored block {number} does not decode: {exc}") from exc
            base_fee = getattr(header, "base_fee_per_gas", None)
            transactions: list[Any] = [transaction_json(tx, header.hash, number, i, base_fee) for i, tx in enumerate(block.transactions)]
        else:
            transactions = [data(h) for h in transaction_hashes(raw)]
        out = _block_json(header, [], [keccak(u) for u in parts.uncles], len(raw), found[2])
        out["transactions"] = transactions
        if parts.withdrawals is not None:
            out["withdrawals"] = [
                {"index": quantity(_int(w[0])), "validatorIndex": quantity(_int(w[1])), "address": data(w[2]), "amount": quantity(_int(w[3]))}
                for w in rlp.decode(parts.withdrawals)
            ]
        return out

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


    # -- node and fee methods ------------------------------------------------------------

    def client_version(self, params: Any) -> str:
        _arguments(params, 0)
        return f"evmpipe/v{_version()}/python{sys.version_info.major}.{sys.version_info.minor}"

    def net_version(self, params: Any) -> str:
        _arguments(params, 0)
        return str(self.schedule.chain_id)

    def syncing(self, params: Any) -> bool:
        """False: the node executes what its source hands it and has no peers to catch up with."""
        _arguments(params, 0)
        return False

    def _decoded(self, number: int) -> tuple[Any, bytes, Any] | None:
        """(py-evm block, its hash, VM class) of canonical block `number`; None for a
        missing one or genesis."""
        raw = self.store.get_block_rlp(number)
        if not raw:
            return None
        block, vm_class = decode_block(self.schedule, raw)
        return block, block.header.hash, vm_class

    def _suggested_tip(self) -> int:
        """The 60th percentile of the tips paid in the last 20 blocks (geth's oracle's
        defaults); 1 gwei when they hold no transaction. Computed once per head."""
        head, head_hash = self._head()
        cached = self._tip_cache
        if cached is not None and cached[0] == head_hash:
            return cached[1]
        tip = self._tip_at(head)
        self._tip_cache = (head_hash, tip)
        return tip

    def _tip_at(self, head: int) -> int:
        tips = []
        for number in range(head, max(head - TIP_BLOCKS, 0), -1):
            block_hash = self.store.canonical_hash(number)
            if block_hash is None:
                continue
            block_tips = self._block_tips.get(block_hash)
            if block_tips is None:  # a block's tips never change: decoded once
                found = self._decoded(number)
                base_fee = getattr(found[0].header, "base_fee_per_gas", None) if found else None
                block_tips = [priority_fee(tx, base_fee) for tx in found[0].transactions] if found else []
                if len(self._block_tips) >= 4 * TIP_BLOCKS:
                    self._block_tips.clear()
                self._block_tips[block_hash] = block_tips
            tips += block_tips
        if not tips:
            return DEFAULT_TIP
        tips.sort()
        return tips[min(len(tips) - 1, len(tips) * 60 // 100)]

    def _next_base_fee(self) -> int | None:
        head, head_hash = self._head()
        found = self.store.get_header(head_hash)
        if found is None:
            return None
        header, vm_class = decode_header(self.schedule, found[1])
        if getattr(header, "base_fee_per_gas", None) is None:
            return None
        return expected_base_fee(header, True)

    def gas_price(self, params: Any) -> str:
        _arguments(params, 0)
        head_hash = self._head()[1]
        price = (self._next_base_fee() or 0) + self._suggested_tip()
        self._fee_cache = (head_hash, price)
        return quantity(price)

    def max_priority_fee(self, params: Any) -> str:
        _arguments(params, 0)
        return quantity(self._suggested_tip())

    def fee_history(self, params: Any) -> dict[str, Any]:
        count, newest, percentiles = _arguments(params, 2, 1)
        if isinstance(count, int) and not isinstance(count, bool):
            blocks = count
        else:
            blocks = parse_quantity(count, "blockCount")
        if not 1 <= blocks <= MAX_FEE_HISTORY:
            raise _params_error(f"blockCount must be 1 to {MAX_FEE_HISTORY}")
        newest_number = min(self._block_number_of(newest), self._head()[0])
        percentiles = percentiles or []
        if not isinstance(percentiles, list) or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 100 for p in percentiles) or percentiles != sorted(percentiles):
            raise _params_error("rewardPercentiles must be an increasing list of numbers from 0 to 100")
        if len(percentiles) > 100:
            raise _params_error("at most 100 reward percentiles")
        oldest = max(0, newest_number - blocks + 1)
        base_fees, ratios, rewards = [], [], []
        for number in range(oldest, newest_number + 1):
            block_hash = self.store.canonical_hash(number)
            found = self.store.get_header(block_hash) if block_hash else None
            if found is None:
                raise RpcError(SERVER_ERROR, f"block {number} is not stored")
            header, _ = decode_header(self.schedule, found[1])
            base_fee = getattr(header, "base_fee_per_gas", None)
            base_fees.append(quantity(base_fee or 0))
            ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
            if percentiles:
                decoded = self._decoded(number)
                pairs: list[tuple[int, int]] = []
                if decoded is not None:
                    block, block_hash, vm_class = decoded
                    builder = vm_class.get_receipt_builder()
                    receipts = [builder.decode(r) for r in self.store.get_receipts(block_hash)]
                    previous = 0
                    for tx, receipt in zip(block.transactions, receipts):
                        pairs.append((priority_fee(tx, base_fee), receipt.gas_used - previous))
                        previous = receipt.gas_used
                rewards.append([quantity(r) for r in percentile_rewards(pairs, percentiles)])
        if newest_number == self._head()[0]:
            next_fee = self._next_base_fee() or 0
        else:
            next_header = self.store.get_header(self.store.canonical_hash(newest_number + 1) or b"")
            next_fee = getattr(decode_header(self.schedule, next_header[1])[0], "base_fee_per_gas", None) or 0 if next_header else 0
        base_fees.append(quantity(next_fee))
        out: dict[str, Any] = {"oldestBlock": quantity(oldest), "baseFeePerGas": base_fees, "gasUsedRatio": ratios}
        if percentiles:
            out["reward"] = rewards
        return out

    # -- transactions -----------------------------------------------------------------------

    def _transaction(self, number: int, index: int) -> dict[str, Any] | None:
        decoded = self._decoded(number)
        if decoded is None or not 0 <= index < len(decoded[0].transactions):
            return None
        block, block_hash, _ = decoded
        return transaction_json(block.transactions[index], block_hash, number, index, getattr(block.header, "base_fee_per_gas", None))

    def get_transaction_by_hash(self, params: Any) -> dict[str, Any] | None:
        (tx_hash,) = _arguments(params, 1)
        found = self.store.find_transaction(parse_data(tx_hash, "transaction hash", 32))
        if found is None:
            return None
        number = self._canonical_number(found[0])
        return None if number is None else self._transaction(number, found[1])

    def get_transaction_by_number_and_index(self, params: Any) -> dict[str, Any] | None:
        tag, index = _arguments(params, 2)
        return self._transaction(self._block_number_of(tag), _index(index))

    def get_transaction_by_hash_and_index(self, params: Any) -> dict[str, Any] | None:
        block_hash, index = _arguments(params, 2)
        number = self._canonical_number(parse_data(block_hash, "block hash", 32))
        return None if number is None else self._transaction(number, _index(index))

    def _transaction_count(self, number: int | None) -> str | None:
        if number is None:
            return None
        raw = self.store.get_block_rlp(number)
        if raw is None:
            return None
        return quantity(len(transaction_hashes(raw)) if raw else 0)

    def transaction_count_by_number(self, params: Any) -> str | None:
        (tag,) = _arguments(params, 1)
        return self._transaction_count(self._block_number_of(tag))

    def transaction_count_by_hash(self, params: Any) -> str | None:
        (block_hash,) = _arguments(params, 1)
        return self._transaction_count(self._canonical_number(parse_data(block_hash, "block hash", 32)))

    # -- logs ---------------------------------------------------------------------------------

    def get_logs(self, params: Any) -> list[dict[str, Any]]:
        (query,) = _arguments(params, 1)
        if not isinstance(query, dict):
            raise _params_error("the filter must be an object")
        unknown = set(query) - {"fromBlock", "toBlock", "address", "topics", "blockHash"}
        if unknown:
            raise _params_error(f"unknown filter fields: {', '.join(sorted(unknown))}")
        addresses = _list_of(query.get("address"), lambda v: parse_data(v, "address", 20), "address")
        topics = query.get("topics") or []
        if not isinstance(topics, list) or len(topics) > 4:
            raise _params_error("topics must be a list of at most 4 entries")
        wanted = [_list_of(t, lambda v: parse_data(v, "topic", 32), "topic") for t in topics]
        with self._head_view() as view:
            head = view.head.number
            if "blockHash" in query:
                if "fromBlock" in query or "toBlock" in query:
                    raise _params_error("blockHash excludes fromBlock and toBlock")
                number = self._canonical_number(parse_data(query["blockHash"], "blockHash", 32))
                if number is None:
                    raise RpcError(SERVER_ERROR, "unknown block")
                first = last = number
            else:
                first = self._block_number_of(query.get("fromBlock") or "latest")
                last = self._block_number_of(query.get("toBlock") or "latest")
                if last - first + 1 > MAX_LOG_RANGE:  # as asked, before the head bounds it
                    raise RpcError(LIMIT_EXCEEDED, f"a range of {last - first + 1} blocks; at most {MAX_LOG_RANGE} per query")
                last = min(last, head)
            if first > last:
                return []
            indexed_from = int(view.meta(LOGS_FROM) or b"0")
            if first < indexed_from:
                raise RpcError(SERVER_ERROR, f"logs are indexed from block {indexed_from} on (this datadir predates the log index)")
            positions = view.log_positions(first, last, addresses, wanted[0] if wanted else [], MAX_LOG_CANDIDATES + 1)
            if len(positions) > MAX_LOG_CANDIDATES:
                raise RpcError(LIMIT_EXCEEDED, f"more than {MAX_LOG_CANDIDATES} logs match the address and first topic in that range; narrow it")
            return self._logs_at(view, positions, wanted)

    def _logs_at(self, view: ReadView, positions: list[tuple[int, bytes, int]], wanted: list[list[bytes]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        by_block: dict[tuple[int, bytes], list[int]] = {}
        for number, block_hash, index in positions:
            by_block.setdefault((number, block_hash), []).append(index)
        for (number, block_hash), indexes in by_block.items():
            found = view.block_rlp(number)
            tx_hashes = transaction_hashes(found[1]) if found and found[1] else []
            logs = []  # (tx index, address, topics, data) in block order
            for tx_index, receipt in enumerate(view.receipts(block_hash)):
                logs += [(tx_index, *log) for log in receipt_logs(receipt)]
            for index in indexes:
                tx_index, address, topics, log_data = logs[index]
                if all(not options or (i < len(topics) and topics[i] in options) for i, options in enumerate(wanted)):
                    out.append(log_json(address, topics, log_data, block_hash=block_hash, number=number, tx_hash=tx_hashes[tx_index], tx_index=tx_index, log_index=index))
                    if len(out) > MAX_LOGS:
                        raise RpcError(LIMIT_EXCEEDED, f"query returned more than {MAX_LOGS} results; narrow the range")
        return out

    # -- execution and proofs against the head's state ---------------------------------------

    def _message(self, call: Any) -> Message:
        if not isinstance(call, dict):
            raise _params_error("the call must be an object")
        unknown = set(call) - CALL_FIELDS
        if unknown:
            raise _params_error(f"unknown call fields: {', '.join(sorted(unknown))}")
        if "data" in call and "input" in call and call["data"] != call["input"]:
            raise _params_error("data and input differ")
        payload = call.get("input", call.get("data"))
        gas = parse_quantity(call["gas"], "gas") if call.get("gas") is not None else None
        if gas is not None and not 0 < gas <= MAX_CALL_GAS:
            raise _params_error(f"gas must be 1 to {MAX_CALL_GAS}")
        price = call.get("gasPrice")
        return Message(
            sender=parse_data(call["from"], "from", 20) if call.get("from") is not None else bytes(20),
            to=parse_data(call["to"], "to", 20) if call.get("to") is not None else None,
            gas=gas,
            gas_price=parse_quantity(price, "gasPrice") if price is not None else 0,
            value=parse_quantity(call["value"], "value") if call.get("value") is not None else 0,
            data=parse_data(payload, "data") if payload is not None else b"",
        )

    def call(self, params: Any) -> str:
        call, tag = _arguments(params, 1, 1)
        message = self._message(call)
        self._check_head_state(tag)
        with self._head_view() as view:
            try:
                result = run_call(view, self.schedule, message, message.gas or DEFAULT_CALL_GAS)
            except CallFailed as failure:
                raise RpcError(SERVER_ERROR, str(failure)) from None
        if result.reverted:
            raise RpcError(EXECUTION_REVERTED, "execution reverted", data(result.output))
        if not result.success:
            raise RpcError(SERVER_ERROR, result.error or "execution failed")
        return data(result.output)

    def estimate_gas(self, params: Any) -> str:
        call, tag = _arguments(params, 1, 1)
        message = self._message(call)
        self._check_head_state(tag)
        with self._head_view() as view:
            try:
                return quantity(estimate_gas(view, self.schedule, message))
            except Reverted as reverted:
                raise RpcError(EXECUTION_REVERTED, "execution reverted", data(reverted.result.output)) from None
            except CallFailed as failure:
                raise RpcError(SERVER_ERROR, str(failure)) from None

    def get_proof(self, params: Any) -> dict[str, Any]:
        address, slots, tag = _arguments(params, 2, 1)
        address = parse_data(address, "address", 20)
        if not isinstance(slots, list) or len(slots) > MAX_PROOF_SLOTS:
            raise _params_error(f"storage keys must be a list of at most {MAX_PROOF_SLOTS}")
        keys = [_slot_key(slot) for slot in slots]
        self._check_head_state(tag)
        with self._head_view() as view:
            account_proof, leaf = trie_proof(view.trie_node, view.head.state_root, address)
            fields = account_fields(leaf)
            nonce, balance, storage_root, code_hash = fields or (0, 0, BLANK_ROOT, EMPTY_CODE_HASH)
            storage = []
            for key in keys:
                proof, value = trie_proof(view.trie_node, storage_root, key)
                storage.append({"key": data(key), "value": quantity(int.from_bytes(rlp.decode(value), "big") if value else 0), "proof": [data(node) for node in proof]})
        return {
            "address": data(address),
            "accountProof": [data(node) for node in account_proof],
            "balance": quantity(balance),
            "codeHash": data(code_hash),
            "nonce": quantity(nonce),
            "storageHash": data(storage_root),
            "storageProof": storage,
        }

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


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _full_flag(full: Any) -> bool:
    if full is None:
        return False
    if not isinstance(full, bool):
        raise _params_error("the second parameter must be a boolean (full transaction objects or hashes)")
    return full


def _index(value: Any) -> int:
    index = parse_quantity(value, "index")
    if index > 2**32:
        raise _params_error("index is beyond any block's transactions")
    return index


def _list_of(value: Any, parse: Callable[[Any], bytes], what: str) -> list[bytes]:
    """A filter entry: null (anything), one value, or a list of values (any of them)."""
    if value is None:
        return []
    if isinstance(value, list):
        if len(value) > 1000:
            raise _params_error(f"at most 1000 {what} values")
        return [parse(v) for v in value]
    return [parse(value)]


def _slot_key(value: Any) -> bytes:
    """A storage key as 32 bytes: a 0x hex quantity or 32-byte data (geth takes both)."""
    number = parse_quantity(value, "storage key")
    return number.to_bytes(32, "big")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evmpipe")
    except PackageNotFoundError:
        return "0.0.0"


def _valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))


def _error(call_id: Any, code: int, message: str, data: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": call_id, "error": error}


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's decoder takes them unless told not to)."""
    raise ValueError(f"{name} is not a JSON value")
