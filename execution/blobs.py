"""Blob gas parameters per fork: target, maximum and base fee update fraction.

[EIP-4844] fixed them for Cancun; [EIP-7691] raised them for Prague. Each fork has its
own row, chosen by the block's VM class, so a header is checked with its own fork's
numbers. At the Cancun→Prague boundary the first Prague block's excess blob gas is
computed from its Cancun parent with Prague's target (EELS `calculate_excess_blob_gas`
uses the child fork's constants; so does geth).

[EIP-4844]: https://eips.ethereum.org/EIPS/eip-4844
[EIP-7691]: https://eips.ethereum.org/EIPS/eip-7691
"""
from __future__ import annotations

from dataclasses import dataclass

from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth.vm.forks import CancunVM, PragueVM

from execution.forks import VMClass, header_field

GAS_PER_BLOB = 2**17
MIN_BLOB_BASE_FEE = 1
VERSIONED_HASH_VERSION_KZG = b"\x01"


@dataclass(frozen=True)
class BlobParams:
    """One fork's blob gas schedule (geth's `blobSchedule` entry, in gas)."""

    target: int
    max: int
    update_fraction: int

    @property
    def max_blobs(self) -> int:
        return self.max // GAS_PER_BLOB


CANCUN = BlobParams(target=393_216, max=786_432, update_fraction=3_338_477)  # EIP-4844: 3 / 6 blobs
PRAGUE = BlobParams(target=786_432, max=1_179_648, update_fraction=5_007_716)  # EIP-7691: 6 / 9 blobs


def blob_params(vm_class: VMClass) -> BlobParams | None:
    """The fork's blob parameters; None before Cancun (no blobs)."""
    if issubclass(vm_class, PragueVM):
        return PRAGUE
    if issubclass(vm_class, CancunVM):
        return CANCUN
    return None


def fake_exponential(factor: int, numerator: int, denominator: int) -> int:
    """EIP-4844's integer approximation of factor * e ** (numerator / denominator)."""
    i, output, accum = 1, 0, factor * denominator
    while accum > 0:
        output += accum
        accum = (accum * numerator) // (denominator * i)
        i += 1
    return output // denominator


def blob_base_fee(excess_blob_gas: int, params: BlobParams) -> int:
    """The price of one unit of blob gas in a block with this excess."""
    return fake_exponential(MIN_BLOB_BASE_FEE, excess_blob_gas, params.update_fraction)


def calc_excess_blob_gas(parent: BlockHeaderAPI, params: BlobParams) -> int:
    """The excess blob gas of a child of `parent`, with the child's fork `params`."""
    excess = header_field(parent, "excess_blob_gas") or 0
    used = header_field(parent, "blob_gas_used") or 0
    total = excess + used
    return 0 if total < params.target else total - params.target


def blob_gas(tx: SignedTransactionAPI) -> int:
    """Blob gas a transaction consumes (type 3 only)."""
    if getattr(tx, "type_id", None) == 3:
        return GAS_PER_BLOB * len(tx.blob_versioned_hashes)
    return 0

