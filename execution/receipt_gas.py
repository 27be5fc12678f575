"""Fix to py-evm's receipt gas under the [EIP-7623] calldata floor, installed at import.

py-evm 0.12.1b1 charges the sender correctly (`finalize_computation`: gas used after
the refund, raised to the floor), but the receipt's gas comes from the VM's
`finalize_gas_used`, which adds the floor top-up *before* capping the refund at a
fifth of the gas used. When the floor applies and the refund is capped (a transaction
with heavy calldata that also clears storage), the cap grows with the top-up and the
receipt says less gas than the floor and than what was charged. EELS:
`max(gas_used - min(gas_used // 5, refund), floor)`. The replacement computes the
refund on the gas actually used, then adds py-evm's own top-up, which is exactly the
amount that lifts it to the floor (zero before Prague), so every fork is unchanged
except in that case.

[EIP-7623]: https://eips.ethereum.org/EIPS/eip-7623
"""
from __future__ import annotations

from typing import Any

from eth.vm.forks.frontier import FrontierVM


def finalize_gas_used(cls: Any, transaction: Any, computation: Any) -> int:
    consumed = transaction.gas - computation.get_gas_remaining()
    refund = cls.calculate_net_gas_refund(consumed, computation.get_gas_refund())
    return consumed - refund + computation.data_floor_gas


def install() -> None:
    FrontierVM.finalize_gas_used = classmethod(finalize_gas_used)  # type: ignore[method-assign, assignment]


install()
