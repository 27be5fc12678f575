"""web3.py, a real client, against a node following a generated ERC-20 workload: every
method served, eth_call of balanceOf equal to the stored slot, eth_getLogs equal to the
receipts, eth_getProof verified against the state root with py-trie."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest
import rlp
from eth_hash.auto import keccak
from trie import HexaryTrie
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from evmpipe.gen.contracts import SEL_BALANCE_OF, SEL_TOTAL_SUPPLY, TOPIC_TRANSFER, balance_slot, encode_call, transfer_data
from tests.node.helpers import ROOT, NodeProcess, start_node, wait_until

BLOCKS = 3


def _evmpipe(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "evmpipe", *args], check=True, capture_output=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    tmp = tmp_path_factory.mktemp("web3")
    _evmpipe("gen", "erc20", "--blocks", str(BLOCKS), "--txs", "20", "--seed", "3", "--legacy", "0.3", "-o", str(tmp / "erc20.json"), "--quiet")
    _evmpipe("convert", str(tmp / "erc20.json"), "-o", str(tmp / "erc20.blocks"))
    process = start_node(tmp / "data", str(tmp / "erc20.blocks"), tmp / "node.log")
    try:
        wait_until(lambda: process.head() == BLOCKS, what="the workload committed")
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def w3(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(f"http://127.0.0.1:{node.port}", request_kwargs={"timeout": 60}))


def test_connection_and_node_methods(w3: Web3) -> None:
    assert w3.is_connected()
    assert w3.client_version.startswith("evmpipe/v")
    assert w3.net.version == str(w3.eth.chain_id) == "1"
    assert w3.eth.syncing is False
    assert w3.eth.block_number == BLOCKS
    head = w3.eth.get_block("latest")
    tip = w3.eth.max_priority_fee
    assert tip > 0 and w3.eth.gas_price >= tip  # base fee of the next block + the tip
    history = w3.eth.fee_history(BLOCKS, "latest", [10, 50, 90])
    assert history["oldestBlock"] == 1 and len(history["baseFeePerGas"]) == BLOCKS + 1
    assert history["baseFeePerGas"][-2] == head["baseFeePerGas"]
    assert [round(r, 9) for r in history["gasUsedRatio"]] == [round(w3.eth.get_block(n)["gasUsed"] / w3.eth.get_block(n)["gasLimit"], 9) for n in range(1, BLOCKS + 1)]
    assert all(len(rewards) == 3 and rewards == sorted(rewards) for rewards in history["reward"])


def test_blocks_and_transactions(w3: Web3) -> None:
    for number in range(1, BLOCKS + 1):
        full = w3.eth.get_block(number, full_transactions=True)
        hashes = w3.eth.get_block(number)["transactions"]
        assert [tx["hash"] for tx in full["transactions"]] == hashes
        assert w3.eth.get_block_transaction_count(number) == len(hashes) == 20
        assert w3.eth.get_block(full["hash"], True)["transactions"] == full["transactions"]
        for index, tx in enumerate(full["transactions"]):
            assert w3.eth.get_transaction(tx["hash"]) == tx
            assert w3.eth.get_transaction_by_block(number, index) == tx
            assert tx["blockNumber"] == number and tx["transactionIndex"] == index
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            assert receipt["from"] == tx["from"] and receipt["effectiveGasPrice"] == tx["gasPrice"]
        assert {tx["type"] for tx in full["transactions"]} <= {0, 2}
    with pytest.raises(TransactionNotFound):  # web3.py's answer to a null result
        w3.eth.get_transaction_by_block(1, 20)


def _token_and_holders(w3: Web3) -> tuple[str, list[str]]:
    logs = w3.eth.get_logs({"fromBlock": 1, "toBlock": BLOCKS, "topics": ["0x" + TOPIC_TRANSFER.hex()]})
    token = logs[0]["address"]
    holders = sorted({"0x" + log["topics"][i][-20:].hex() for log in logs for i in (1, 2)})
    return token, [Web3.to_checksum_address(h) for h in holders]


def test_get_logs_equal_the_receipts(w3: Web3) -> None:
    expected = []
    for number in range(1, BLOCKS + 1):
        for tx_hash in w3.eth.get_block(number)["transactions"]:
            expected += w3.eth.get_transaction_receipt(tx_hash)["logs"]
    assert expected, "the workload has Transfer events"
    logs = w3.eth.get_logs({"fromBlock": 1, "toBlock": "latest"})
    assert logs == expected
    token, holders = _token_and_holders(w3)
    assert w3.eth.get_logs({"fromBlock": 0, "toBlock": BLOCKS, "address": token, "topics": ["0x" + TOPIC_TRANSFER.hex()]}) == expected
    # a topic in second position: Transfers from one holder
    sender = holders[0]
    topic = "0x" + bytes.fromhex(sender[2:]).rjust(32, b"\0").hex()
    mine = w3.eth.get_logs({"fromBlock": 1, "toBlock": BLOCKS, "topics": [None, topic]})
    assert mine == [log for log in expected if log["topics"][1].hex().endswith(sender[2:].lower())]
    # one block by hash; an address that emitted nothing
    block_hash = w3.eth.get_block(2)["hash"]
    assert w3.eth.get_logs({"blockHash": block_hash}) == [log for log in expected if log["blockNumber"] == 2]
    assert w3.eth.get_logs({"fromBlock": 1, "toBlock": BLOCKS, "address": "0x" + "11" * 20}) == []
    with pytest.raises(Web3RPCError, match="at most 10000"):
        w3.eth.get_logs({"fromBlock": 0, "toBlock": 20000})


def test_eth_call_balance_of_equals_the_state(w3: Web3) -> None:
    token, holders = _token_and_holders(w3)
    total = 0
    for holder in holders:
        answer = w3.eth.call({"to": token, "data": "0x" + encode_call(SEL_BALANCE_OF, bytes.fromhex(holder[2:])).hex()})
        stored = w3.eth.get_storage_at(token, balance_slot(bytes.fromhex(holder[2:])))
        assert int.from_bytes(answer, "big") == int.from_bytes(stored, "big")
        total += int.from_bytes(answer, "big")
    supply = int.from_bytes(w3.eth.call({"to": token, "data": "0x" + SEL_TOTAL_SUPPLY.hex()}), "big")
    assert 0 < total <= supply


def test_estimate_gas_is_the_least_that_succeeds(w3: Web3) -> None:
    token, holders = _token_and_holders(w3)
    rich = max(holders, key=lambda h: int.from_bytes(w3.eth.get_storage_at(token, balance_slot(bytes.fromhex(h[2:]))), "big"))
    call = {"from": rich, "to": token, "data": "0x" + transfer_data(b"\x22" * 20, 1).hex()}
    gas = w3.eth.estimate_gas(call)
    assert 21_000 < gas < 200_000
    assert w3.eth.call({**call, "gas": gas}) == (1).to_bytes(32, "big")
    with pytest.raises(Web3RPCError):
        w3.eth.call({**call, "gas": gas - 1})
    assert w3.eth.estimate_gas({"from": rich, "to": "0x" + "33" * 20, "value": 1}) == 21_000
    # more than the sender holds: the token reverts
    too_much = {"from": rich, "to": token, "data": "0x" + transfer_data(b"\x22" * 20, 2**255).hex()}
    with pytest.raises(ContractLogicError):
        w3.eth.call(too_much)
    with pytest.raises(ContractLogicError):
        w3.eth.estimate_gas(too_much)
    # the call changed nothing
    assert w3.eth.get_storage_at(token, balance_slot(b"\x22" * 20)) == b"\0" * 32


def test_get_proof_verifies_against_the_state_root(w3: Web3) -> None:
    token, holders = _token_and_holders(w3)
    state_root = bytes(w3.eth.get_block("latest")["stateRoot"])
    slots = [balance_slot(bytes.fromhex(h[2:])) for h in holders[:3]] + [12345]
    proof = w3.eth.get_proof(token, slots, "latest")
    account = HexaryTrie.get_from_proof(state_root, keccak(bytes.fromhex(token[2:])), [rlp.decode(bytes(n)) for n in proof["accountProof"]])
    nonce, balance, storage_root, code_hash = rlp.decode(account)
    assert (int.from_bytes(nonce, "big"), int.from_bytes(balance, "big")) == (proof["nonce"], proof["balance"])
    assert storage_root == bytes(proof["storageHash"]) and code_hash == bytes(proof["codeHash"])
    assert keccak(bytes(w3.eth.get_code(token))) == code_hash
    for slot, entry in zip(slots, proof["storageProof"]):
        value = HexaryTrie.get_from_proof(storage_root, keccak(slot.to_bytes(32, "big")), [rlp.decode(bytes(n)) for n in entry["proof"]])
        stored = int.from_bytes(w3.eth.get_storage_at(token, slot), "big")
        assert (int.from_bytes(rlp.decode(value), "big") if value else 0) == int.from_bytes(entry["value"], "big") == stored
    assert int.from_bytes(proof["storageProof"][-1]["value"], "big") == 0  # an absent slot, proven absent
    absent = w3.eth.get_proof("0x" + "44" * 20, [], "latest")
    assert absent["balance"] == 0 and HexaryTrie.get_from_proof(state_root, keccak(b"\x44" * 20), [rlp.decode(bytes(n)) for n in absent["accountProof"]]) == b""
