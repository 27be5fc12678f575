"""The lean VM's per-transaction steps: py-evm's, minus the work py-evm does for
nobody.

With the lean loop (`execution/interpreter.py`) a transaction's own EVM code is no
longer most of its cost: an ERC-20 transfer spent about as much again in py-evm's
steps around it, and three of them do work whose result is thrown away:

- `BaseState.logger` is a property that looks the logger up by name on every use
  (three `logging.getLogger` calls per transaction): the lean state holds the same
  logger object as a class attribute;
- Cancun's `build_evm_message` formats a debug line (the transaction's repr, the
  code in hex, a keccak of the call data) before handing it to a logger that drops
  it: the lean executor builds the same message without the line unless debug
  logging is on, when it runs py-evm's own;
- py-evm's receipts are rlp objects that validate every field and compute the bloom
  through generators, about a quarter of an ERC-20 transaction: the lean VM builds the
  same receipt (same fields, same encoding) as evmpipe's light receipt
  (`execution.block.SpeculatedReceipt`, what the parallel path already uses).

Each step is taken over only where the fork still uses the very py-evm function it
replaces (`tests/execution/test_interpreter_pyevm.py` pins their source), and falls
back to py-evm's otherwise. With `--interpreter pyevm` none of this applies: py-evm's
VM runs as it is.
"""
from __future__ import annotations

from typing import Any

from eth._utils.address import generate_contract_address
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks.byzantium import ByzantiumVM
from eth.vm.forks.byzantium.constants import EIP658_TRANSACTION_STATUS_CODE_FAILURE, EIP658_TRANSACTION_STATUS_CODE_SUCCESS
from eth.vm.forks.cancun.state import CancunTransactionExecutor
from eth.vm.forks.cancun.constants import BLOB_TX_TYPE
from eth.vm.message import Message
from eth_hash.auto import keccak
from eth_utils.logging import get_extended_debug_logger

from execution.block import SpeculatedReceipt
from state.trie import rlp_list, rlp_str

#: The py-evm functions whose work the lean VM does itself, by what replaces them.
_CANCUN_BUILD_MESSAGE = CancunTransactionExecutor.build_evm_message
_BYZANTIUM_MAKE_RECEIPT = ByzantiumVM.make_receipt.__func__  # type: ignore[attr-defined]


def _plain_receipt_makers() -> frozenset[Any]:
    """The transactions' `make_receipt` functions that build a plain
    `Receipt(state_root=status, gas_used=gas_used, logs=[Log(...), ...])`."""
    from eth.vm.forks.berlin.transactions import AccessListTransaction
    from eth.vm.forks.cancun.transactions import BlobTransaction
    from eth.vm.forks.frontier.transactions import FrontierTransaction
    from eth.vm.forks.london.transactions import DynamicFeeTransaction
    from eth.vm.forks.prague.transactions import SetCodeTransaction

    return frozenset(cls.make_receipt for cls in (FrontierTransaction, AccessListTransaction, DynamicFeeTransaction, BlobTransaction, SetCodeTransaction))


PLAIN_RECEIPT_MAKERS = _plain_receipt_makers()
_TYPED_MAKE_RECEIPT = TypedTransaction.make_receipt


class LeanCancunExecutor:
    """Mixed in before a fork's executor whose `build_evm_message` is Cancun's."""

    vm_state: Any

    def build_evm_message(self, transaction: Any) -> Any:
        """Cancun's `build_evm_message` without its debug line (py-evm's own when
        debug logging is on): buy gas, bump the nonce, the message."""
        state = self.vm_state
        if state.logger.show_debug2:
            return super().build_evm_message(transaction)  # type: ignore[misc]
        london_gas_fee = transaction.gas * state.get_gas_price(transaction)
        blob_data_fee = self.calc_data_fee(transaction) if transaction.type_id == BLOB_TX_TYPE else 0  # type: ignore[attr-defined]
        state.delta_balance(transaction.sender, -1 * (london_gas_fee + blob_data_fee))
        state.increment_nonce(transaction.sender)
        msg_refund = self.calc_message_refund(transaction)  # type: ignore[attr-defined]
        message_gas = transaction.gas - transaction.intrinsic_gas
        if transaction.to == CREATE_CONTRACT_ADDRESS:
            contract_address = generate_contract_address(transaction.sender, state.get_nonce(transaction.sender) - 1)
            data = b""
            code = transaction.data
            is_delegation = False
        else:
            contract_address = None
            data = transaction.data
            code, delegation_address = self.get_code_at_address(transaction.to)  # type: ignore[attr-defined]
            is_delegation = delegation_address is not None
        return Message(
            gas=message_gas,
            to=transaction.to,
            sender=transaction.sender,
            value=transaction.value,
            data=data,
            code=code,
            create_address=contract_address,  # type: ignore[arg-type]
            refund=msg_refund,
            is_delegation=is_delegation,
        )


def log_bloom(entries: Any) -> int:
    """The logs bloom of `(address, topics, data)` entries, as `eth_bloom` computes
    it: for the address and each topic (32 bytes), three bits from its keccak."""
    bloom = 0
    for address, topics, _ in entries:
        for item in (address, *(topic.to_bytes(32, "big") for topic in topics)):
            h = keccak(item)
            bloom |= (1 << (((h[0] << 8) | h[1]) & 2047)) | (1 << (((h[2] << 8) | h[3]) & 2047)) | (1 << (((h[4] << 8) | h[5]) & 2047))
    return bloom


def logs_rlp(entries: Any) -> bytes:
    """The RLP of the receipt's logs list, as `rlp.encode([Log(...), ...])` gives it."""
    return rlp_list(
        b"".join(
            rlp_list(rlp_str(address) + rlp_list(b"".join(rlp_str(topic.to_bytes(32, "big")) for topic in topics)) + rlp_str(data))
            for address, topics, data in entries
        )
    )


class LeanVM:
    """Mixed in before a fork's VM: its receipts as evmpipe's light receipt."""

    @classmethod
    def make_receipt(cls, base_header: Any, transaction: Any, computation: Any, state: Any) -> Any:
        """Byzantium's `make_receipt`, the same receipt without py-evm's rlp objects
        (py-evm's own for a transaction type it does not know)."""
        maker = type(transaction).make_receipt
        if maker is _TYPED_MAKE_RECEIPT:
            type_id = transaction.type_id
            maker = type(transaction._inner).make_receipt
        else:
            type_id = None
        if maker not in PLAIN_RECEIPT_MAKERS:
            return super().make_receipt(base_header, transaction, computation, state)  # type: ignore[misc]
        gas_used = base_header.gas_used + cls.finalize_gas_used(transaction, computation)  # type: ignore[attr-defined]
        status = EIP658_TRANSACTION_STATUS_CODE_FAILURE if computation.is_error else EIP658_TRANSACTION_STATUS_CODE_SUCCESS
        entries = computation.get_log_entries()
        logs = [(address, list(topics), data) for address, topics, data in entries]
        return SpeculatedReceipt(type_id, status, gas_used, log_bloom(entries), logs, logs_rlp(entries) if entries else b"\xc0")


def lean_vm(vm_class: Any, state_class: Any, computation_class: Any) -> Any:
    """The lean twin of `vm_class`: its state runs `computation_class` (the lean
    loop) and the steps above where the fork has py-evm's own."""
    executor = state_class.transaction_executor_class
    overrides: dict[str, Any] = {"computation_class": computation_class}
    if executor.build_evm_message is _CANCUN_BUILD_MESSAGE:
        overrides["transaction_executor_class"] = type(f"Lean{executor.__name__}", (LeanCancunExecutor, executor), {})
    name = f"Lean{state_class.__name__}"
    overrides["logger"] = get_extended_debug_logger(f"eth.vm.state.{name}")  # what BaseState.logger looks up
    lean_state = state_class.configure(__name__=name, **overrides)
    vm_overrides: dict[str, Any] = {"_state_class": lean_state}
    bases: tuple[type, ...] = (vm_class,)
    if getattr(vm_class.make_receipt, "__func__", None) is _BYZANTIUM_MAKE_RECEIPT:
        bases = (LeanVM, vm_class)
    return type(vm_class)(f"Lean{vm_class.__name__}", bases, vm_overrides)
