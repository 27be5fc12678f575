"""An independent oracle: replay a BlockchainTest through EELS (`ethereum-execution`).

EELS is the executable specification; `state_transition` checks every header field
it computes (state, transactions, receipts and withdrawals roots, bloom, gas used,
blob gas used, requests hash) and raises `InvalidBlock` on the first mismatch. A
chain that replays here agrees with the spec block by block.
"""
from __future__ import annotations

from typing import Any


def eels_available() -> bool:
    try:
        import ethereum.forks.prague.fork  # noqa: F401
    except ImportError:
        return False
    return True


def replay_prague(test: dict[str, Any]) -> list[bytes]:
    """Run every block of a Prague BlockchainTest through EELS; return the state roots.

    Raises whatever EELS raises for the first block it rejects."""
    from ethereum_rlp import rlp
    from ethereum_types.bytes import Bytes20, Bytes32
    from ethereum_types.numeric import U64, U256, Uint

    from ethereum.forks.prague import fork
    from ethereum.forks.prague.blocks import Block
    from ethereum.forks.prague.fork_types import Account
    from ethereum.forks.prague.state import State, set_account, set_storage, state_root

    state = State()
    for address_hex, account in test["pre"].items():
        address = Bytes20(bytes.fromhex(address_hex[2:]))
        code = bytes.fromhex(account["code"][2:])
        set_account(state, address, Account(nonce=Uint(int(account["nonce"], 16)), balance=U256(int(account["balance"], 16)), code=code))
        for slot, value in account["storage"].items():
            set_storage(state, address, Bytes32(int(slot, 16).to_bytes(32, "big")), U256(int(value, 16)))
    genesis = rlp.decode_to(Block, bytes.fromhex(test["genesisRLP"][2:]))
    if state_root(state) != genesis.header.state_root:
        raise AssertionError("EELS: the pre-state does not have the genesis state root")
    chain = fork.BlockChain(blocks=[genesis], state=state, chain_id=U64(1))
    roots = []
    for block_json in test["blocks"]:
        block = rlp.decode_to(Block, bytes.fromhex(block_json["rlp"][2:]))
        fork.state_transition(chain, block)
        roots.append(bytes(state_root(chain.state)))
    return roots
