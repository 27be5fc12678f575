"""Predicted access sets and the chains they schedule (the `declared` strategy)."""
from __future__ import annotations

from types import SimpleNamespace

from eth_hash.auto import keccak

from execution.predict import AccessPredictor, Prediction, schedule_chains
from state.account import EMPTY_CODE_HASH

TOKEN = b"\x70" * 20
FEE = b"\xfe" * 20
CODE_HASH = b"\xcc" * 32
TRANSFER = bytes.fromhex("a9059cbb")
TRANSFER_FROM = bytes.fromhex("23b872dd")


def word(value: bytes | int) -> bytes:
    return value.rjust(32, b"\0") if isinstance(value, bytes) else value.to_bytes(32, "big")


def slot(*parts: bytes) -> int:
    return int.from_bytes(keccak(b"".join(parts)), "big")


def call(to: bytes, data: bytes, value: int = 0) -> SimpleNamespace:
    return SimpleNamespace(to=to, data=data, value=value, access_list=())


def transfer(sender: bytes, recipient: bytes, solidity: bool) -> tuple[SimpleNamespace, dict, dict]:
    """An ERC-20 transfer's call and its recorded reads and writes: balances at
    mapping base 3, Solidity (key ‖ base) or Vyper (base ‖ key) layout."""
    base = word(3)
    entry = (lambda key: slot(word(key), base)) if solidity else (lambda key: slot(base, word(key)))
    tx = call(TOKEN, TRANSFER + word(recipient) + word(5))
    reads = {("nonce", sender): 0, ("balance", sender): 10, ("code", TOKEN): CODE_HASH, ("slot", TOKEN, entry(sender)): 9, ("slot", TOKEN, entry(recipient)): 0, ("slot", TOKEN, 0): 1}
    writes = {("nonce", sender): 1, ("balance", sender): 9, ("credit", FEE): 1, ("slot", TOKEN, entry(sender)): 4, ("slot", TOKEN, entry(recipient)): 5, ("exists", TOKEN): True}
    return tx, reads, writes


def test_learns_mapping_slots_in_either_layout() -> None:
    for solidity in (True, False):
        predictor = AccessPredictor()
        alice, bob, carol, dave = (bytes([i]) * 20 for i in (1, 2, 3, 4))
        tx, reads, writes = transfer(alice, bob, solidity)
        assert predictor.learn(tx, alice, reads, writes, FEE) == 1
        new_tx, new_reads, new_writes = transfer(carol, dave, solidity)
        prediction = predictor.predict(new_tx, carol)
        # the balances of the new sender and recipient, by the template; the constant slot
        assert set(new_reads) - {("code", TOKEN)} <= prediction.reads | {("balance", carol), ("nonce", carol)}
        assert {k for k in new_writes if k[0] == "slot"} <= prediction.writes
        # left out: the fee recipient's credit, and `exists` of a contract that has code
        assert ("balance", FEE) not in prediction.writes and ("exists", TOKEN) not in prediction.writes


def test_learns_a_nested_mapping() -> None:
    """allowance[owner][spender] at base 4: keccak(spender ‖ keccak(owner ‖ 4))."""
    owner, spender, recipient = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
    inner = keccak(word(owner) + word(4))
    allowance = int.from_bytes(keccak(word(spender) + inner), "big")
    tx = call(TOKEN, TRANSFER_FROM + word(owner) + word(recipient) + word(1))
    predictor = AccessPredictor()
    predictor.learn(tx, spender, {("slot", TOKEN, allowance): 7, ("code", TOKEN): CODE_HASH}, {("slot", TOKEN, allowance): 6}, FEE)
    other_owner, other_spender = b"\x04" * 20, b"\x05" * 20
    expected = int.from_bytes(keccak(word(other_spender) + keccak(word(other_owner) + word(4))), "big")
    prediction = predictor.predict(call(TOKEN, TRANSFER_FROM + word(other_owner) + word(recipient) + word(1)), other_spender)
    assert ("slot", TOKEN, expected) in prediction.writes


def test_plain_transfers_to_accounts_without_code_teach_nothing() -> None:
    predictor = AccessPredictor()
    eoa = b"\x09" * 20
    assert predictor.learn(call(eoa, b"", 1), b"\x01" * 20, {("code", eoa): EMPTY_CODE_HASH}, {("credit", eoa): 1}, FEE) == 0
    assert predictor.wants(call(eoa, b"", 1))  # still nothing known about it


def test_chains_follow_reads_after_writes() -> None:
    a = Prediction({("x",)}, {("x",)})  # reads and writes x
    credit = Prediction(set(), {("x",)})  # writes x blindly (a credit)
    other = Prediction({("y",)}, {("y",)})
    # two blind credits do not depend on each other; a later reader joins both
    assert schedule_chains([credit, credit, other]) == [0, 1, 2]
    assert schedule_chains([credit, credit, other, a]) == [0, 0, 2, 0]
    # a write after a read is no dependency (the reader ran first, on the older value)
    assert schedule_chains([Prediction({("x",)}, set()), credit]) == [0, 1]
    # a read of what an earlier transaction wrote is; one that reads from two chains joins them
    assert schedule_chains([a, other, a]) == [0, 1, 0]
    assert schedule_chains([a, other, a, Prediction({("y",), ("x",)}, set())]) == [0, 0, 0, 0]
