"""Execution-layer requests ([EIP-7685]): deposits, withdrawals and consolidations.

After the withdrawals of a Prague block, EELS's `process_general_purpose_requests`
collects, in type order: deposit requests from the deposit contract's logs in the
block's receipts ([EIP-6110], type 0), and the outputs of the system calls to the
withdrawal-request ([EIP-7002], type 1) and consolidation-request ([EIP-7251], type 2)
contracts. Empty ones are left out; the header commits to them with
`sha256(sha256(type ‖ data) for each)`.

py-evm 0.12.1b1 reads deposits back through `block.get_receipts(chaindb)`, which our
VM (no chaindb) cannot do, and does not check the deposit log's layout; evmpipe
parses its own receipts as EELS does (`extract_deposit_data`).

[EIP-6110]: https://eips.ethereum.org/EIPS/eip-6110
[EIP-7002]: https://eips.ethereum.org/EIPS/eip-7002
[EIP-7251]: https://eips.ethereum.org/EIPS/eip-7251
[EIP-7685]: https://eips.ethereum.org/EIPS/eip-7685
"""
from __future__ import annotations

from hashlib import sha256
from typing import Any, Iterable

from eth.abc import BlockHeaderAPI, ReceiptAPI

from execution.system import checked_system_call
from pipeline.errors import BlockError, InvalidBlock

DEPOSIT_CONTRACT_ADDRESS = bytes.fromhex("00000000219ab540356cbb839cbe05303d7705fa")
DEPOSIT_EVENT_SIGNATURE_HASH = bytes.fromhex("649bbc62d0e31342afea4e5cd82d4049e7e1ee912fc0889aa790803be39038c5")
WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS = bytes.fromhex("00000961ef480eb55e80d19ad83579a64c007002")
CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS = bytes.fromhex("0000bbddc7ce488642fb579f8b00f3a590007251")
DEPOSIT_REQUEST_TYPE = b"\x00"
WITHDRAWAL_REQUEST_TYPE = b"\x01"
CONSOLIDATION_REQUEST_TYPE = b"\x02"

# DepositEvent(bytes pubkey, bytes withdrawal_credentials, bytes amount, bytes signature,
# bytes index): five offsets, then each field as (length word, padded data).
DEPOSIT_EVENT_LENGTH = 576
DEPOSIT_FIELDS = ((160, 48), (256, 32), (320, 8), (384, 96), (512, 8))  # (offset, size)
EMPTY_REQUESTS_HASH = sha256().digest()



def parse_deposit_requests(header: BlockHeaderAPI, receipts: Iterable[ReceiptAPI]) -> bytes:
    """[EIP-6110] the deposit requests of the block, in log order.

    Raises `InvalidBlock` (`INVALID_DEPOSIT_EVENT_LAYOUT`) for a deposit log that does
    not have the deposit contract's ABI layout."""
    out = b""
    for receipt in receipts:
        for log in receipt.logs:
            if log.address == DEPOSIT_CONTRACT_ADDRESS and log.topics and _word(log.topics[0]) == DEPOSIT_EVENT_SIGNATURE_HASH:
                out += extract_deposit_data(header, log.data)
    return out


def extract_deposit_data(header: BlockHeaderAPI, data: bytes) -> bytes:
    """pubkey ‖ withdrawal credentials ‖ amount ‖ signature ‖ index, from one log."""
    def fail(reason: str) -> None:
        raise InvalidBlock(BlockError.INVALID_DEPOSIT_EVENT_LAYOUT, reason, number=header.block_number, block_hash=header.hash)

    if len(data) != DEPOSIT_EVENT_LENGTH:
        fail(f"deposit log of {len(data)} bytes, expected {DEPOSIT_EVENT_LENGTH}")
    request = b""
    for position, (offset, size) in enumerate(DEPOSIT_FIELDS):
        if int.from_bytes(data[32 * position : 32 * position + 32], "big") != offset:
            fail(f"deposit log field {position}: offset is not {offset}")
        if int.from_bytes(data[offset : offset + 32], "big") != size:
            fail(f"deposit log field {position}: size is not {size}")
        request += data[offset + 32 : offset + 32 + size]
    return request


def process_requests(vm: Any, header: BlockHeaderAPI, receipts: Iterable[ReceiptAPI]) -> list[bytes]:
    """The block's requests (type byte ‖ data), empty ones left out, in type order.

    The two system calls write the request contracts' storage (queue heads, counts,
    excess) through the block's state."""
    requests = []
    deposits = parse_deposit_requests(header, receipts)
    if deposits:
        requests.append(DEPOSIT_REQUEST_TYPE + deposits)
    withdrawals = checked_system_call(vm, header, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, b"")
    if withdrawals:
        requests.append(WITHDRAWAL_REQUEST_TYPE + withdrawals)
    consolidations = checked_system_call(vm, header, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, b"")
    if consolidations:
        requests.append(CONSOLIDATION_REQUEST_TYPE + consolidations)
    return requests


def compute_requests_hash(requests: Iterable[bytes]) -> bytes:
    """[EIP-7685] sha256 over the sha256 of each request."""
    outer = sha256()
    for request in requests:
        outer.update(sha256(request).digest())
    return outer.digest()


def _word(topic: Any) -> bytes:
    """py-evm keeps topics as integers."""
    return topic.to_bytes(32, "big") if isinstance(topic, int) else bytes(topic)
