"""`evmpipe gen prague`: a scripted Prague chain that exercises what Prague added.

Genesis holds the system contracts with their real code (beacon roots [EIP-4788],
history [EIP-2935], withdrawal requests [EIP-7002], consolidations [EIP-7251]; the
latter two from geth's `params/protocol_params.go`), a stand-in deposit contract at
the mainnet address that emits the `DepositEvent` it is given (only the log matters
to execution, [EIP-6110]), two delegation targets, a probe contract and a sweeper.
The blocks then carry, in a fixed script:

- [EIP-7702] set-code transactions: delegations (chain id 1 and 0), a sponsor calling
  into the EOA it just delegated, a self-sponsored delegation, authorizations that
  must be skipped (wrong nonce, wrong chain id), a re-delegation, clearing with the
  zero address, a delegated EOA sending its own transaction, contracts calling into
  delegated EOAs and reading their code size and hash;
- [EIP-7623] transactions at the calldata floor, and one whose refund is capped while
  the floor applies (py-evm's receipt gas is wrong there, see execution/receipt_gas.py);
- blob transactions with Prague's blob counts ([EIP-7691]: 9 blobs in a block);
- a deposit log, a withdrawal request and a consolidation request, so the header's
  requests hash ([EIP-7685]) covers all three types, and EIP-4895 withdrawals;
- `--txs` filler transfers per block, a quarter of them into a delegated EOA (they
  conflict on its storage: the optimistic strategy must re-execute them).

Blocks are sealed by py-evm's `PragueVM` exactly as `builder.py` seals Cancun blocks
(with evmpipe's receipt gas fix installed) and written as a BlockchainTest with
network `Prague`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import rlp
from eth import constants
from eth.abc import SignedTransactionAPI
from eth.chains.base import Chain
from eth.db.atomic import AtomicDB
from eth.vm.forks import PragueVM
from eth.vm.forks.cancun.constants import BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CONTRACT_CODE, HISTORY_BUFFER_LENGTH
from eth.vm.forks.prague.constants import HISTORY_SERVE_WINDOW, HISTORY_STORAGE_ADDRESS, HISTORY_STORAGE_CONTRACT_CODE
from eth.vm.forks.prague.transactions import Authorization
from eth.vm.forks.shanghai.withdrawals import Withdrawal as PyEvmWithdrawal

import execution.receipt_gas  # noqa: F401  (py-evm's receipt gas under the calldata floor, fixed)
from evmpipe.gen.builder import GENERATOR, Workload, data, dump_state, fixture_json, header_json, qty, withdrawal_json
from evmpipe.gen.keys import KeyedAccount, derive_hash, fresh_address, keyed_account
from evmpipe.gen.workloads import GenerationError, GenParams
from execution.requests import (
    CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS,
)

CHAIN_ID = 1
NETWORK = "Prague"
ETHER = 10**18
GWEI = 10**9
GENESIS_TIMESTAMP = 1_746_612_311  # mainnet's Prague activation
BLOCK_TIME = 12
GENESIS_BASE_FEE = 7 * GWEI
GAS_LIMIT = 36_000_000
EXTRA_DATA = b"evmpipe-gen/prague"
TIP = GWEI
MAX_FEE_PER_BLOB_GAS = GWEI
SET_CODE_MAGIC = b"\x05"
DELEGATION_PREFIX = b"\xef\x01\x00"
ZERO_ADDRESS = b"\x00" * 20

WITHDRAWAL_REQUEST_CODE = bytes.fromhex(
    "3373fffffffffffffffffffffffffffffffffffffffe1460cb5760115f54807fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff146101f457600182026001905f5b5f82111560685781019083028483029004916001019190604d565b909390049250505036603814608857366101f457346101f4575f5260205ff35b34106101f457600154600101600155600354806003026004013381556001015f35815560010160203590553360601b5f5260385f601437604c5fa0600101600355005b6003546002548082038060101160df575060105b5f5b8181146101835782810160030260040181604c02815460601b8152601401816001015481526020019060020154807fffffffffffffffffffffffffffffffff00000000000000000000000000000000168252906010019060401c908160381c81600701538160301c81600601538160281c81600501538160201c81600401538160181c81600301538160101c81600201538160081c81600101535360010160e1565b910180921461019557906002556101a0565b90505f6002555f6003555b5f54807fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff14156101cd57505f5b6001546002828201116101e25750505f6101e8565b01600290035b5f555f600155604c025ff35b5f5ffd"
)
CONSOLIDATION_REQUEST_CODE = bytes.fromhex(
    "3373fffffffffffffffffffffffffffffffffffffffe1460d35760115f54807fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff1461019a57600182026001905f5b5f82111560685781019083028483029004916001019190604d565b9093900492505050366060146088573661019a573461019a575f5260205ff35b341061019a57600154600101600155600354806004026004013381556001015f358155600101602035815560010160403590553360601b5f5260605f60143760745fa0600101600355005b6003546002548082038060021160e7575060025b5f5b8181146101295782810160040260040181607402815460601b815260140181600101548152602001816002015481526020019060030154905260010160e9565b910180921461013b5790600255610146565b90505f6002555f6003555b5f54807fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff141561017357505f5b6001546001828201116101885750505f61018e565b01600190035b5f555f6001556074025ff35b5f5ffd"
)
# slot 1 += 1; slot 0 = CALLER; LOG0(CALLVALUE): what a delegated EOA runs
DELEGATE_CODE = bytes.fromhex("600154600101600155" "33600055" "34600052" "60206000a0" "00")
# slot 2 = NUMBER: the target of a re-delegation
DELEGATE2_CODE = bytes.fromhex("43600255" "00")
# calldata = target (32 bytes) ‖ inner data: CALL(target, inner, CALLVALUE), then
# slot[NUMBER] = success, slot[NUMBER + 0x1000] = first return word,
# slot[NUMBER + 0x2000] = EXTCODESIZE(target), slot[NUMBER + 0x3000] = EXTCODEHASH(target)
PROBE_CODE = bytes.fromhex(
    "3660006000" "37"  # CALLDATACOPY(0, 0, CALLDATASIZE)
    "6020" "6000" "60203603" "6020" "34" "600051" "5a" "f1"  # CALL(gas, target, value, 32, size - 32, 0, 32)
    "4355"  # slot[NUMBER] = success
    "600051" "4361100001" "55"  # slot[NUMBER + 0x1000] = mem[0:32]
    "6000353b" "4361200001" "55"  # slot[NUMBER + 0x2000] = EXTCODESIZE(target)
    "6000353f" "4361300001" "55"  # slot[NUMBER + 0x3000] = EXTCODEHASH(target)
    "00"
)
SWEEP_SLOTS = 16
# clears slots 0..15 (each 1 at genesis): a refund larger than a fifth of the gas used
SWEEPER_CODE = b"".join(bytes([0x60, 0x00, 0x60, slot, 0x55]) for slot in range(SWEEP_SLOTS)) + b"\x00"
# emits DepositEvent with the calldata as its data (a stand-in for the deposit contract)
DEPOSIT_STANDIN_CODE = bytes.fromhex("3660006000" "37" "7f") + DEPOSIT_EVENT_SIGNATURE_HASH + bytes.fromhex("366000a1" "00")

PROBE_BASE = {"success": 0, "word": 0x1000, "size": 0x2000, "hash": 0x3000}


@dataclass
class Auth:
    """One authorization to sign: `nonce` None means the authority's nonce when it runs."""

    authority: KeyedAccount
    address: bytes
    chain_id: int = CHAIN_ID
    nonce: int | None = None
    valid: bool = True


@dataclass
class Tx:
    """One scripted transaction; the nonce is filled in at sealing."""

    label: str
    sender: KeyedAccount
    to: bytes
    value: int = 0
    data: bytes = b""
    gas: int = 21_000
    kind: str = "dynamic"  # legacy | dynamic | blob | setcode
    blobs: int = 0
    auths: list[Auth] = field(default_factory=list)
    success: bool = True


@dataclass
class PragueWorld:
    seed: int
    sponsors: list[KeyedAccount]
    authorities: list[KeyedAccount]
    fillers: list[KeyedAccount]
    coinbase: bytes
    delegate: bytes
    delegate2: bytes
    probe: bytes
    sweeper: bytes
    alloc: dict[bytes, dict[str, Any]]


def build_world(seed: int, fillers: int) -> PragueWorld:
    sponsors = [keyed_account(seed, "prague-sponsor", i) for i in range(4)]
    authorities = [keyed_account(seed, "prague-authority", i) for i in range(5)]
    filler_accounts = [keyed_account(seed, "prague-filler", i) for i in range(fillers)]
    contract = lambda i: fresh_address(seed, "prague-contract", i)  # noqa: E731
    world = PragueWorld(
        seed, sponsors, authorities, filler_accounts, fresh_address(seed, "coinbase", 0),
        contract(0), contract(1), contract(2), contract(3), {},
    )
    alloc = world.alloc
    for account in sponsors + authorities + filler_accounts:
        alloc[account.address] = {"balance": 1000 * ETHER, "nonce": 0, "code": b"", "storage": {}}
    system = {
        BEACON_ROOTS_ADDRESS: BEACON_ROOTS_CONTRACT_CODE,
        HISTORY_STORAGE_ADDRESS: HISTORY_STORAGE_CONTRACT_CODE,
        WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS: WITHDRAWAL_REQUEST_CODE,
        CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS: CONSOLIDATION_REQUEST_CODE,
    }
    for address, code in system.items():
        alloc[address] = {"balance": 0, "nonce": 1, "code": code, "storage": {}}
    alloc[DEPOSIT_CONTRACT_ADDRESS] = {"balance": 0, "nonce": 1, "code": DEPOSIT_STANDIN_CODE, "storage": {}}
    for address, code in ((world.delegate, DELEGATE_CODE), (world.delegate2, DELEGATE2_CODE), (world.probe, PROBE_CODE)):
        alloc[address] = {"balance": 0, "nonce": 1, "code": code, "storage": {}}
    alloc[world.sweeper] = {"balance": 0, "nonce": 1, "code": SWEEPER_CODE, "storage": {slot: 1 for slot in range(SWEEP_SLOTS)}}
    return world


def word(value: int | bytes) -> bytes:
    return value.rjust(32, b"\0") if isinstance(value, bytes) else value.to_bytes(32, "big")


def deposit_event_data(seed: int, index: int) -> bytes:
    """A `DepositEvent` log's data, laid out as the deposit contract's ABI encodes it."""
    pubkey, credentials = derive_hash(seed, "pubkey", index) + derive_hash(seed, "pubkey2", index)[:16], b"\x01" + b"\0" * 11 + fresh_address(seed, "withdraw", index)
    amount, signature = (32 * 10**9).to_bytes(8, "little"), (derive_hash(seed, "sig", index) * 3)
    fields = [pubkey, credentials, amount, signature, index.to_bytes(8, "little")]
    head, body, offset = b"", b"", 160
    for value in fields:
        head += word(offset)
        padded = value.ljust((len(value) + 31) // 32 * 32, b"\0")
        body += word(len(value)) + padded
        offset += 32 + len(padded)
    return head + body


def nonzero_calldata(seed: int, label: str, size: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += bytes(b | 1 for b in derive_hash(seed, label, counter))
        counter += 1
    return out[:size]


def script(world: PragueWorld, blocks: int, filler_txs: int) -> list[list[Tx]]:
    """The scripted transactions of each block (at least 4 blocks)."""
    s0, s1, s2, s3 = world.sponsors
    a1, a2, a3, a4, a5 = world.authorities
    seed = world.seed
    probe = lambda target, inner=b"": word(target) + inner  # noqa: E731
    plan: list[list[Tx]] = [[] for _ in range(max(blocks, 4))]
    plan[0] = [
        Tx("delegate two, skip two, call in", s0, a1.address, gas=300_000, kind="setcode", auths=[
            Auth(a1, world.delegate), Auth(a2, world.delegate, chain_id=0),
            Auth(a3, world.delegate, nonce=5, valid=False), Auth(a4, world.delegate, chain_id=7, valid=False),
        ]),
        Tx("self-sponsored delegation", a5, a5.address, value=3, gas=200_000, kind="setcode", auths=[Auth(a5, world.delegate)]),
        Tx("7 blobs", s1, fresh_address(seed, "blob-sink", 0), gas=21_000, kind="blob", blobs=7),
        Tx("2 blobs", s2, fresh_address(seed, "blob-sink", 1), gas=21_000, kind="blob", blobs=2),
        Tx("calldata at the floor", s3, fresh_address(seed, "floor-sink", 0), data=nonzero_calldata(seed, "floor", 1000), gas=61_000),
        Tx("legacy calldata at the floor", s3, fresh_address(seed, "floor-sink", 1), data=b"\0" * 500 + nonzero_calldata(seed, "floor2", 100), gas=21_000 + 10 * 900, kind="legacy"),
    ]
    plan[1] = [
        Tx("probe a delegated EOA", s0, world.probe, value=5, data=probe(a1.address), gas=200_000),
        Tx("delegated EOA sends", a1, fresh_address(seed, "a1-sink", 0), value=ETHER, gas=21_000),
        Tx("re-delegate", s1, a1.address, gas=300_000, kind="setcode", auths=[Auth(a1, world.delegate2)]),
        Tx("refund capped under the floor", s2, world.sweeper, data=nonzero_calldata(seed, "sweep", 4000), gas=250_000),
        Tx("withdrawal request", s3, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, value=1, data=derive_hash(seed, "wr", 0) + derive_hash(seed, "wr", 1)[:16] + (7 * GWEI).to_bytes(8, "big"), gas=200_000),
        Tx("consolidation request", s3, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, value=1, data=b"".join(derive_hash(seed, "cr", i) for i in range(3)), gas=250_000),
        Tx("deposit log", s0, DEPOSIT_CONTRACT_ADDRESS, data=deposit_event_data(seed, 0), gas=100_000),
        Tx("6 blobs", s1, fresh_address(seed, "blob-sink", 2), gas=21_000, kind="blob", blobs=6),
    ]
    plan[2] = [
        Tx("clear a delegation", s0, a2.address, gas=200_000, kind="setcode", auths=[Auth(a2, ZERO_ADDRESS)]),
        Tx("probe the re-delegated EOA", s1, world.probe, data=probe(a1.address), gas=200_000),
        Tx("probe the cleared EOA", s2, world.probe, data=probe(a2.address), gas=200_000),
        Tx("history contract: parent of block 2", s3, world.probe, data=probe(HISTORY_STORAGE_ADDRESS, word(1)), gas=200_000),
        Tx("two deposits in one block (1)", s0, DEPOSIT_CONTRACT_ADDRESS, data=deposit_event_data(seed, 1), gas=100_000),
        Tx("two withdrawal requests (1)", s1, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, value=1, data=derive_hash(seed, "wr", 2) + derive_hash(seed, "wr", 3)[:16] + (0).to_bytes(8, "big"), gas=200_000),
        Tx("two withdrawal requests (2)", s2, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, value=2, data=derive_hash(seed, "wr", 4) + derive_hash(seed, "wr", 5)[:16] + (1).to_bytes(8, "big"), gas=200_000),
        Tx("9 blobs in one transaction", s2, fresh_address(seed, "blob-sink", 3), gas=21_000, kind="blob", blobs=9),
    ]
    plan[3] = [
        Tx("cleared EOA sends", a2, fresh_address(seed, "a2-sink", 0), value=ETHER, gas=21_000),
        Tx("re-delegate the cleared EOA", a2, a3.address, gas=300_000, kind="setcode", auths=[Auth(a3, world.delegate), Auth(a2, world.delegate)]),
        Tx("call a5 (delegated to itself's sponsor code)", s0, a5.address, value=7, gas=100_000),
    ]
    for number, txs in enumerate(plan):
        for i in range(filler_txs):
            sender = world.fillers[i % len(world.fillers)]
            if i % 4 == 3:
                txs.append(Tx("filler into a delegated EOA", sender, a5.address, value=i + 1, gas=100_000))
            else:
                txs.append(Tx("filler transfer", sender, fresh_address(seed, f"filler-sink-{number}", i), value=(i + 1) * GWEI))
    return plan


def sign_authorization(auth: Auth, nonce: int) -> Authorization:
    message = SET_CODE_MAGIC + rlp.encode([auth.chain_id, auth.address, nonce])
    signature = auth.authority.private_key.sign_msg(message)
    v, r, s = signature.vrs
    return Authorization(chain_id=auth.chain_id, address=auth.address, nonce=nonce, y_parity=v, r=r, s=s)


def sign(tx: Tx, nonces: dict[bytes, int], base_fee: int) -> SignedTransactionAPI:
    """Sign `tx` with the sender's next nonce; apply its valid authorizations to `nonces`."""
    builder = PragueVM.get_transaction_builder()
    key = tx.sender.private_key
    nonce = nonces[tx.sender.address]
    nonces[tx.sender.address] += 1
    max_fee = 2 * base_fee + TIP
    if tx.kind == "legacy":
        unsigned = builder.create_unsigned_transaction(nonce=nonce, gas_price=base_fee + TIP, gas=tx.gas, to=tx.to, value=tx.value, data=tx.data)
        return unsigned.as_signed_transaction(key, chain_id=CHAIN_ID)
    if tx.kind == "dynamic":
        unsigned = builder.new_unsigned_dynamic_fee_transaction(
            chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=TIP, max_fee_per_gas=max_fee, gas=tx.gas, to=tx.to, value=tx.value, data=tx.data, access_list=(),
        )
    elif tx.kind == "blob":
        hashes = [b"\x01" + derive_hash(0, f"blob/{nonce}/{tx.sender.address.hex()}", i)[1:] for i in range(tx.blobs)]
        unsigned = builder.new_unsigned_blob_transaction(
            chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=TIP, max_fee_per_gas=max_fee, gas=tx.gas, to=tx.to, value=tx.value, data=tx.data,
            access_list=(), max_fee_per_blob_gas=MAX_FEE_PER_BLOB_GAS, blob_versioned_hashes=hashes,
        )
    else:
        authorizations = []
        for auth in tx.auths:
            auth_nonce = nonces[auth.authority.address] if auth.nonce is None else auth.nonce
            authorizations.append(sign_authorization(auth, auth_nonce))
            if auth.valid:
                nonces[auth.authority.address] += 1
        unsigned = builder.new_unsigned_set_code_transaction(
            chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=TIP, max_fee_per_gas=max_fee, gas=tx.gas, to=tx.to, value=tx.value, data=tx.data,
            access_list=(), authorization_list=authorizations,
        )
    # py-evm signs typed transactions into earlier forks' classes; a Prague block wants its own
    return builder.decode(unsigned.as_signed_transaction(key).encode())


def transaction_json(tx: SignedTransactionAPI, sender: bytes) -> dict[str, Any]:
    type_id = tx.type_id or 0
    out: dict[str, Any] = {
        "type": qty(type_id), "chainId": qty(CHAIN_ID), "nonce": qty(tx.nonce), "gasLimit": qty(tx.gas),
        "to": data(tx.to), "value": qty(tx.value), "data": data(tx.data),
        "v": qty(tx.v if type_id == 0 else tx.y_parity), "r": qty(tx.r), "s": qty(tx.s), "sender": data(sender),
    }
    if type_id == 0:
        out["gasPrice"] = qty(tx.gas_price)
        return out
    out.update(maxPriorityFeePerGas=qty(tx.max_priority_fee_per_gas), maxFeePerGas=qty(tx.max_fee_per_gas), accessList=[])
    if type_id == 3:
        out.update(maxFeePerBlobGas=qty(tx.max_fee_per_blob_gas), blobVersionedHashes=[data(h) for h in tx.blob_versioned_hashes])
    if type_id == 4:
        out["authorizationList"] = [
            {"chainId": qty(a.chain_id), "address": data(a.address), "nonce": qty(a.nonce), "v": qty(a.y_parity), "r": qty(a.r), "s": qty(a.s)}
            for a in tx.authorization_list
        ]
    return out


def genesis_params() -> dict[str, Any]:
    return {
        "coinbase": constants.ZERO_ADDRESS, "difficulty": 0, "gas_limit": GAS_LIMIT, "timestamp": GENESIS_TIMESTAMP,
        "extra_data": EXTRA_DATA, "mix_hash": constants.ZERO_HASH32, "nonce": b"\0" * 8, "base_fee_per_gas": GENESIS_BASE_FEE,
        "withdrawals_root": constants.BLANK_ROOT_HASH, "blob_gas_used": 0, "excess_blob_gas": 0,
        "parent_beacon_block_root": constants.ZERO_HASH32, "requests_hash": constants.EMPTY_SHA256,
    }


PragueGenChain = Chain.configure("EvmpipePragueGenChain", vm_configuration=((0, PragueVM),), chain_id=CHAIN_ID)


def known_slots(world: PragueWorld, headers: list[Any]) -> dict[bytes, list[int]]:
    """Every storage slot the script can write, so the post state can be dumped by name."""
    numbers = [h.block_number for h in headers]
    slots: dict[bytes, list[int]] = {
        BEACON_ROOTS_ADDRESS: [s for h in headers for s in (h.timestamp % HISTORY_BUFFER_LENGTH, h.timestamp % HISTORY_BUFFER_LENGTH + HISTORY_BUFFER_LENGTH)],
        HISTORY_STORAGE_ADDRESS: [(n - 1) % HISTORY_SERVE_WINDOW for n in numbers],
        WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS: list(range(4 + 3 * 64)),
        CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS: list(range(4 + 4 * 64)),
        world.probe: [n + base for n in numbers for base in PROBE_BASE.values()],
        world.sweeper: list(range(SWEEP_SLOTS)),
    }
    for account in world.authorities:
        slots[account.address] = [0, 1, 2]
    return slots


def generate_prague(params: GenParams) -> Workload:
    """Script, seal and assemble the Prague chain (deterministic in `params`)."""
    started = time.perf_counter()
    if params.seed < 0 or params.seed >= 2**64 or params.txs < 0:
        raise GenerationError("--seed must be in [0, 2**64) and --txs >= 0")
    blocks = max(params.blocks, 4)
    filler_txs = params.txs
    world = build_world(params.seed, max(4, filler_txs))
    plan = script(world, blocks, filler_txs)
    chain = PragueGenChain.from_genesis(AtomicDB(), genesis_params(), world.alloc)
    genesis = chain.get_canonical_block_by_number(0)
    nonces = {address: fields["nonce"] for address, fields in world.alloc.items()}
    block_class = PragueVM.get_block_class()
    parent = genesis.header
    blocks_json, headers = [], []
    counts = {"transactions": 0, "setCode": 0, "authorizations": 0, "blobs": 0, "requests": 0, "reverted": 0}
    for number, txs in enumerate(plan, start=1):
        template = chain.create_header_from_parent(
            parent, coinbase=world.coinbase, gas_limit=GAS_LIMIT, timestamp=GENESIS_TIMESTAMP + number * BLOCK_TIME,
            extra_data=EXTRA_DATA, mix_hash=derive_hash(params.seed, "randao", number), parent_beacon_block_root=derive_hash(params.seed, "beacon", number),
        )
        signed = [sign(tx, nonces, template.base_fee_per_gas) for tx in txs]
        withdrawals = [PyEvmWithdrawal(2 * number + i, 1000 + i, fresh_address(params.seed, "validator", i), (i + 1) * GWEI) for i in range(2)]
        block = block_class(header=template, transactions=signed, uncles=[], withdrawals=withdrawals)
        sealed = chain.import_block(block, perform_validation=False).imported_block
        receipts = sealed.get_receipts(chain.chaindb)
        for index, (tx, receipt) in enumerate(zip(txs, receipts, strict=True)):
            success = receipt.state_root == b"\x01"
            if success != tx.success:
                raise GenerationError(f"block {number} tx {index} ({tx.label}): planned {'success' if tx.success else 'failure'}, py-evm says otherwise")
            counts["reverted"] += not success
        counts["transactions"] += len(signed)
        counts["setCode"] += sum(tx.kind == "setcode" for tx in txs)
        counts["authorizations"] += sum(len(tx.auths) for tx in txs)
        counts["blobs"] += sum(tx.blobs for tx in txs)
        counts["requests"] += sum(tx.to in (DEPOSIT_CONTRACT_ADDRESS, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS) for tx in txs)
        blocks_json.append({
            "blockHeader": header_json(sealed.header),
            "blocknumber": str(sealed.number),
            "chainname": "default",
            "rlp": data(rlp.encode(sealed)),
            "transactions": [transaction_json(t, tx.sender.address) for t, tx in zip(signed, txs, strict=True)],
            "uncleHeaders": [],
            "withdrawals": [withdrawal_json(w) for w in sealed.withdrawals],
        })
        headers.append(sealed.header)
        parent = sealed.header
    addresses = list(world.alloc) + [world.coinbase, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, DEPOSIT_CONTRACT_ADDRESS]
    addresses += [fresh_address(params.seed, "validator", i) for i in range(2)]
    addresses += [fresh_address(params.seed, role, i) for role in ("blob-sink", "floor-sink", "a1-sink", "a2-sink") for i in range(4)]
    addresses += [fresh_address(params.seed, f"filler-sink-{n}", i) for n in range(len(plan)) for i in range(filler_txs)]
    post = dump_state(chain.chaindb.db, parent.state_root, addresses, known_slots(world, headers))
    stats = dict(counts, blocks=len(plan), gasUsedPerBlock=[h.gas_used for h in headers], blobGasUsedPerBlock=[h.blob_gas_used for h in headers])
    info = {
        "comment": f"evmpipe gen prague: a scripted Prague chain (seed {params.seed}), executed and sealed by py-evm PragueVM with evmpipe's receipt gas fix.",
        "generator": GENERATOR,
        "filling-tool-version": "py-evm 0.12.1b1",
        "params": {"kind": "prague", "blocks": len(plan), "filler_txs_per_block": filler_txs, "seed": params.seed},
        "stats": stats,
        "script": [[tx.label for tx in txs] for txs in plan],
        "addresses": {
            "coinbase": data(world.coinbase), "delegate": data(world.delegate), "delegate2": data(world.delegate2),
            "probe": data(world.probe), "sweeper": data(world.sweeper),
            "authorities": [data(a.address) for a in world.authorities],
        },
    }
    fixture = fixture_json(info, NETWORK, world.alloc, genesis, blocks_json, parent.hash, post)
    name = f"prague_b{len(plan)}_t{filler_txs}_s{params.seed}"
    return Workload(params, name, fixture, stats, time.perf_counter() - started)
