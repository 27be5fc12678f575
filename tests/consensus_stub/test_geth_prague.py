"""A geth export of a chain that starts at Prague: genesis.json with `pragueTime` and
`blobSchedule`, converted to a native file and replayed to the last block."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus_stub.blockfile import read_header
from consensus_stub.convert import BadInput, geth_to_native, network_name
from consensus_stub.fixture import hex_bytes
from evmpipe.gen import GenParams, generate
from evmpipe.replay import replay_file

BLOB_SCHEDULE = {
    "cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477},
    "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
    "osaka": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
}


def _genesis(test: dict, blob_schedule: dict) -> dict:
    g = test["genesisBlockHeader"]
    config = {"chainId": 1, "terminalTotalDifficulty": 0, "shanghaiTime": 0, "cancunTime": 0, "pragueTime": 0, "blobSchedule": blob_schedule}
    for key in ("homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock", "constantinopleBlock", "petersburgBlock", "istanbulBlock", "berlinBlock", "londonBlock"):
        config[key] = 0
    fields = {key: g[key] for key in ("nonce", "timestamp", "extraData", "gasLimit", "difficulty", "mixHash", "coinbase", "baseFeePerGas", "excessBlobGas", "blobGasUsed")}
    return {"config": config, **fields, "alloc": test["pre"]}


def test_prague_geth_export_replays(tmp_path: Path) -> None:
    test = generate(GenParams("prague", txs=2, seed=4)).fixture
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(_genesis(test, BLOB_SCHEDULE)))
    export = tmp_path / "chain.rlp"
    export.write_bytes(hex_bytes(test["genesisRLP"]) + b"".join(hex_bytes(b["rlp"]) for b in test["blocks"]))
    out = tmp_path / "chain.blocks"
    summary = geth_to_native(export, genesis_path, out)
    header = read_header(out)
    assert network_name(header.schedule) == "Prague"
    assert header.genesis_hash == hex_bytes(test["genesisBlockHeader"]["hash"])  # requestsHash = sha256("")
    outcome = replay_file(str(out), str(tmp_path / "db"), synchronous="OFF")
    assert outcome.rejected is None and outcome.committed == summary.blocks == len(test["blocks"])

    other = dict(BLOB_SCHEDULE, prague={"target": 9, "max": 12, "baseFeeUpdateFraction": 5007716})
    genesis_path.write_text(json.dumps(_genesis(test, other)))
    with pytest.raises(BadInput, match="blobSchedule.prague"):
        geth_to_native(export, genesis_path, tmp_path / "other.blocks")
