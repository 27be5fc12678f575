"""Seal planned blocks with py-evm and write them as an ethereum/tests BlockchainTest.

Sealing. A py-evm `Chain` (CancunVM, chain id 1) starts from the world's genesis
allocation. For each block the builder makes the header template from its parent
(`create_header_from_parent`: number, parent hash, EIP-1559 base fee, excess blob gas),
sets coinbase, gas limit, timestamp, prevRandao, extra data and the block's parent
beacon block root, signs the planned transactions with that base fee, and hands the
block to `Chain.import_block(block, perform_validation=False)`. That path runs the VM
exactly as a validating import does (the EIP-4788 beacon-root system write, the
transactions, the EIP-4895 withdrawals) and computes every root of the header: state,
transactions, receipts, withdrawals, plus bloom and gas used. (`MiningChain`'s block
building would skip the beacon-root write, and its blocks would not import.) The receipts
are then checked against the planner's prediction for each transaction.

Output: one test with `pre`, `genesisBlockHeader`, `genesisRLP`, `blocks` (`rlp`,
`blockHeader`, `transactions`, `withdrawals`, ...), `lastblockhash`, `postState` (the
complete state after the last block, read from the state trie) and `_info`
(parameters, statistics, how the contracts were compiled).
"""
from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rlp
from eth import constants
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.chains.base import Chain
from eth.db.atomic import AtomicDB
from eth.rlp.accounts import Account
from eth.vm.forks import CancunVM
from eth.vm.forks.shanghai.withdrawals import Withdrawal as PyEvmWithdrawal
from eth_hash.auto import keccak
from rlp.sedes import big_endian_int
from trie import HexaryTrie
from trie.iter import NodeIterator

from evmpipe.gen import contracts as C
from evmpipe.gen.workloads import (
    EXTRA_DATA,
    GENESIS_BASE_FEE,
    GENESIS_TIMESTAMP,
    BlockPlan,
    GenerationError,
    GenParams,
    Intent,
    block_gas_limit,
    plan_workload,
)

CHAIN_ID = 1
NETWORK = "Cancun"
GENERATOR = "evmpipe-gen/1"

GenChain = Chain.configure("EvmpipeGenChain", vm_configuration=((0, CancunVM),), chain_id=CHAIN_ID)
TX_BUILDER = CancunVM.get_transaction_builder()
BLOCK_CLASS = CancunVM.get_block_class()


# -- hex in the ethereum/tests style -------------------------------------------------


def qty(value: int) -> str:
    """A quantity: even-length lowercase hex, "0x00" for zero."""
    text = f"{value:x}"
    return "0x" + ("0" * (len(text) % 2)) + text


def data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def header_json(header: BlockHeaderAPI) -> dict[str, str]:
    return {
        "parentHash": data(header.parent_hash),
        "uncleHash": data(header.uncles_hash),
        "coinbase": data(header.coinbase),
        "stateRoot": data(header.state_root),
        "transactionsTrie": data(header.transaction_root),
        "receiptTrie": data(header.receipt_root),
        "bloom": data(header.bloom.to_bytes(256, "big")),
        "difficulty": qty(header.difficulty),
        "number": qty(header.block_number),
        "gasLimit": qty(header.gas_limit),
        "gasUsed": qty(header.gas_used),
        "timestamp": qty(header.timestamp),
        "extraData": data(header.extra_data),
        "mixHash": data(header.mix_hash),
        "nonce": data(header.nonce),
        "baseFeePerGas": qty(header.base_fee_per_gas),
        "withdrawalsRoot": data(header.withdrawals_root),
        "blobGasUsed": qty(header.blob_gas_used),
        "excessBlobGas": qty(header.excess_blob_gas),
        "parentBeaconBlockRoot": data(header.parent_beacon_block_root),
        **({"requestsHash": data(header.requests_hash)} if getattr(header, "requests_hash", None) is not None else {}),
        "hash": data(header.hash),
    }


def transaction_json(tx: SignedTransactionAPI, sender: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": qty(tx.type_id or 0),
        "chainId": qty(CHAIN_ID),
        "nonce": qty(tx.nonce),
        "gasLimit": qty(tx.gas),
        "to": data(tx.to),
        "value": qty(tx.value),
        "data": data(tx.data),
        "v": qty(tx.v if tx.type_id is None else tx.y_parity),
        "r": qty(tx.r),
        "s": qty(tx.s),
        "sender": data(sender),
    }
    if tx.type_id is None:
        out["gasPrice"] = qty(tx.gas_price)
    else:
        out["maxPriorityFeePerGas"] = qty(tx.max_priority_fee_per_gas)
        out["maxFeePerGas"] = qty(tx.max_fee_per_gas)
        out["accessList"] = []
    return out


def withdrawal_json(w: PyEvmWithdrawal) -> dict[str, str]:
    return {"index": qty(w.index), "validatorIndex": qty(w.validator_index), "address": data(w.address), "amount": qty(w.amount)}


def account_json(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "nonce": qty(fields["nonce"]),
        "balance": qty(fields["balance"]),
        "code": data(fields["code"]),
        "storage": {qty(slot): qty(value) for slot, value in sorted(fields["storage"].items()) if value},
    }


def alloc_json(alloc: dict[bytes, dict[str, Any]]) -> dict[str, Any]:
    return {data(address): account_json(alloc[address]) for address in sorted(alloc)}


# -- sealing ----------------------------------------------------------------------------


@dataclass
class Stats:
    gas_by_category: dict[str, list[int]] = field(default_factory=dict)
    gas_used_per_block: list[int] = field(default_factory=list)
    base_fee_per_block: list[int] = field(default_factory=list)
    transactions: int = 0
    legacy: int = 0
    reverted: int = 0
    hot: int = 0
    senders: set[bytes] = field(default_factory=set)
    max_per_sender: int = 0
    withdrawals: int = 0

    def add(self, category: str, gas: int) -> None:
        self.gas_by_category.setdefault(category, [0, 0])
        self.gas_by_category[category][0] += 1
        self.gas_by_category[category][1] += gas


@dataclass
class Workload:
    """A generated workload: the fixture (JSON-ready) and what went into it."""

    params: GenParams
    name: str
    fixture: dict[str, Any]
    stats: dict[str, Any]
    seconds: float

    def to_json_bytes(self) -> bytes:
        return (json.dumps({self.name: self.fixture}, sort_keys=True, indent=1) + "\n").encode()

    def write(self, path: str | Path) -> int:
        """Write the file (gzip when the name ends in .gz); return its size in bytes."""
        payload = self.to_json_bytes()
        if str(path).endswith(".gz"):
            payload = gzip.compress(payload, compresslevel=9, mtime=0)
        Path(path).write_bytes(payload)
        return len(payload)


def genesis_params(gas_limit: int) -> dict[str, Any]:
    """Genesis header fields (post-merge, Cancun) for py-evm's `Chain.from_genesis`."""
    return {
        "coinbase": constants.ZERO_ADDRESS,
        "difficulty": 0,
        "gas_limit": gas_limit,
        "timestamp": GENESIS_TIMESTAMP,
        "extra_data": EXTRA_DATA,
        "mix_hash": constants.ZERO_HASH32,
        "nonce": b"\0" * 8,
        "base_fee_per_gas": GENESIS_BASE_FEE,
        "withdrawals_root": constants.BLANK_ROOT_HASH,
        "blob_gas_used": 0,
        "excess_blob_gas": 0,
        "parent_beacon_block_root": constants.ZERO_HASH32,
    }


def sign(intent: Intent, nonce: int, base_fee: int) -> SignedTransactionAPI:
    num, den = intent.fee_multiplier
    key = intent.sender.private_key
    if intent.legacy:
        gas_price = base_fee * num // den + intent.tip
        unsigned = TX_BUILDER.create_unsigned_transaction(nonce=nonce, gas_price=gas_price, gas=intent.gas, to=intent.to, value=intent.value, data=intent.data)
        return unsigned.as_signed_transaction(key, chain_id=CHAIN_ID)
    max_fee = base_fee * num // den + intent.tip
    unsigned = TX_BUILDER.new_unsigned_dynamic_fee_transaction(
        chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=intent.tip, max_fee_per_gas=max_fee,
        gas=intent.gas, to=intent.to, value=intent.value, data=intent.data, access_list=(),
    )
    # py-evm signs into a London typed transaction; a Cancun block wants its own class
    return TX_BUILDER.decode(unsigned.as_signed_transaction(key).encode())


def seal_block(chain: Chain, parent: BlockHeaderAPI, plan: BlockPlan, coinbase: bytes, nonces: dict[bytes, int]) -> tuple[BlockAPI, list[SignedTransactionAPI], tuple]:
    template = chain.create_header_from_parent(
        parent,
        coinbase=coinbase,
        gas_limit=parent.gas_limit,
        timestamp=plan.timestamp,
        extra_data=EXTRA_DATA,
        mix_hash=plan.prev_randao,
        parent_beacon_block_root=plan.beacon_root,
    )
    base_fee = template.base_fee_per_gas
    transactions = []
    for intent in plan.intents:
        address = intent.sender.address
        transactions.append(sign(intent, nonces[address], base_fee))
        nonces[address] += 1
    withdrawals = [PyEvmWithdrawal(w.index, w.validator_index, w.address, w.amount_gwei) for w in plan.withdrawals]
    block = BLOCK_CLASS(header=template, transactions=transactions, uncles=[], withdrawals=withdrawals)
    sealed = chain.import_block(block, perform_validation=False).imported_block
    receipts = sealed.get_receipts(chain.chaindb)
    return sealed, transactions, receipts


def dump_state(db: Any, state_root: bytes, addresses: list[bytes], slots: dict[bytes, list[int]]) -> dict[bytes, dict[str, Any]]:
    """Every account in the state trie, with all of its storage, by walking the tries."""
    names = {keccak(a): a for a in addresses}
    state: dict[bytes, dict[str, Any]] = {}
    for hashed, encoded in NodeIterator(HexaryTrie(db, state_root)).items():
        address = names.get(hashed)
        if address is None:
            raise GenerationError(f"state has an account the generator does not know (key {hashed.hex()})")
        account = rlp.decode(encoded, sedes=Account)
        code = b"" if account.code_hash == constants.EMPTY_SHA3 else db[account.code_hash]
        storage: dict[int, int] = {}
        if account.storage_root != constants.BLANK_ROOT_HASH:
            slot_names = {keccak(C.word(s)): s for s in slots.get(address, ())}
            for hashed_slot, value in NodeIterator(HexaryTrie(db, account.storage_root)).items():
                if hashed_slot not in slot_names:
                    raise GenerationError(f"0x{address.hex()} has a storage slot the generator does not know")
                storage[slot_names[hashed_slot]] = rlp.decode(value, sedes=big_endian_int)
        state[address] = {"nonce": account.nonce, "balance": account.balance, "code": code, "storage": storage}
    return state


def generate(params: GenParams) -> Workload:
    """Plan, seal and assemble one workload (deterministic in `params`)."""
    if params.kind == "prague":
        from evmpipe.gen.prague import generate_prague

        return generate_prague(params)
    started = time.perf_counter()
    params = params.resolved()
    world, plans = plan_workload(params)
    gas_limit = block_gas_limit(plans)
    chain = GenChain.from_genesis(AtomicDB(), genesis_params(gas_limit), world.genesis_alloc)
    genesis = chain.get_canonical_block_by_number(0)
    nonces = {address: fields["nonce"] for address, fields in world.genesis_alloc.items()}
    stats = Stats()
    blocks_json = []
    parent = genesis.header
    for plan in plans:
        sealed, transactions, receipts = seal_block(chain, parent, plan, world.coinbase, nonces)
        previous_gas = 0
        per_sender: dict[bytes, int] = {}
        for index, (intent, receipt) in enumerate(zip(plan.intents, receipts, strict=True)):
            gas = receipt.gas_used - previous_gas
            previous_gas = receipt.gas_used
            success = receipt.state_root == b"\x01"
            if success != intent.success:
                raise GenerationError(
                    f"block {plan.number} tx {index} ({intent.category}): planned {'success' if intent.success else 'revert'}, "
                    f"py-evm says {'success' if success else 'revert'} after {gas} gas"
                )
            stats.add(intent.category + ("" if success else "-reverted"), gas)
            stats.reverted += not success
            stats.legacy += intent.legacy
            stats.hot += intent.hot
            stats.senders.add(intent.sender.address)
            per_sender[intent.sender.address] = per_sender.get(intent.sender.address, 0) + 1
        stats.max_per_sender = max([stats.max_per_sender, *per_sender.values()])
        stats.transactions += len(transactions)
        stats.withdrawals += len(plan.withdrawals)
        stats.gas_used_per_block.append(sealed.header.gas_used)
        stats.base_fee_per_block.append(sealed.header.base_fee_per_gas)
        blocks_json.append({
            "blockHeader": header_json(sealed.header),
            "blocknumber": str(sealed.number),
            "chainname": "default",
            "rlp": data(rlp.encode(sealed)),
            "transactions": [transaction_json(tx, i.sender.address) for tx, i in zip(transactions, plan.intents, strict=True)],
            "uncleHeaders": [],
            "withdrawals": [withdrawal_json(w) for w in sealed.withdrawals],
        })
        parent = sealed.header

    post = dump_state(chain.chaindb.db, parent.state_root, world.known_addresses(), world.known_slots(plans))
    gas_total = sum(stats.gas_used_per_block)
    stats_json = {
        "transactions": stats.transactions,
        "legacyTransactions": stats.legacy,
        "reverted": stats.reverted,
        "hotTransactions": stats.hot,
        "distinctSenders": len(stats.senders),
        "maxTxsFromOneSenderInABlock": stats.max_per_sender,
        "withdrawals": stats.withdrawals,
        "gasLimit": gas_limit,
        "gasUsed": gas_total,
        "gasUsedPerBlock": stats.gas_used_per_block,
        "baseFeePerBlock": stats.base_fee_per_block,
        "gasLimitUtilization": round(gas_total / (gas_limit * len(plans)), 3),
        "gasPerTx": round(gas_total / max(1, stats.transactions), 1),
        "gasPerTxByCategory": {k: {"count": n, "avgGas": round(g / n, 1)} for k, (n, g) in sorted(stats.gas_by_category.items())},
        "preStateAccounts": len(world.genesis_alloc),
        "postStateAccounts": len(post),
    }
    info = {
        "comment": f"evmpipe gen {params.kind}: transactions planned from seed {params.seed}, executed and sealed by py-evm CancunVM.",
        "generator": GENERATOR,
        "filling-tool-version": "py-evm 0.12.1b1",
        "params": params.as_dict(),
        "stats": stats_json,
        "contracts": C.build_info() if world.tokens else {},
        "addresses": {
            "coinbase": data(world.coinbase),
            "tokens": [data(t) for t in world.tokens],
            "pools": [data(p.address) for p in world.pools],
            "hotWallets": [data(h.address) for h in world.hot],
        },
    }
    fixture = fixture_json(info, NETWORK, world.genesis_alloc, genesis, blocks_json, parent.hash, post)
    return Workload(params, params.test_name(), fixture, stats_json, time.perf_counter() - started)


def fixture_json(info: dict[str, Any], network: str, pre: dict, genesis: Any, blocks_json: list[dict], last_hash: bytes, post: dict) -> dict[str, Any]:
    """One BlockchainTest, as ethereum/tests writes it."""
    return {
        "_info": info,
        "network": network,
        "sealEngine": "NoProof",
        "pre": alloc_json(pre),
        "genesisBlockHeader": header_json(genesis.header),
        "genesisRLP": data(rlp.encode(genesis)),
        "blocks": blocks_json,
        "lastblockhash": data(last_hash),
        "postState": alloc_json(post),
    }
