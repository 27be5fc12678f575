"""`evmpipe node` as a subprocess: follows a growing file, serves JSON-RPC, stops on
signals with exit 0, resumes, rejects an invalid block and takes the valid one at
that height, survives a corrupt record."""
from __future__ import annotations

import json
import signal
import zlib
from pathlib import Path

import msgpack

from state.store import StateStore
from tests.node.helpers import append, sample, start_node, wait_until, with_bad_state_root, write_chain, node_on_sample


def test_follows_stops_resumes_and_rejects(tmp_path: Path) -> None:
    header, records = sample()
    chain = tmp_path / "chain.blocks"
    datadir = tmp_path / "data"
    write_chain(chain, header, records[:2])

    node = start_node(datadir, str(chain), tmp_path / "run1.log")
    try:
        wait_until(lambda: node.head() == 2, what="head 2")
        append(chain, records[2])  # the file grows while the node runs
        wait_until(lambda: node.head() == 3, what="head 3")
        assert node.rpc("eth_blockNumber")["result"] == "0x3"
        block = node.rpc("eth_getBlockByNumber", ["latest", False])["result"]
        assert block["hash"] == "0x" + records[2].hash.hex() and len(block["transactions"]) == 100
        coinbase = block["miner"]
        balance = node.rpc("eth_getBalance", [coinbase, "latest"])["result"]
        historic = node.rpc("eth_getBalance", [coinbase, "0x1"])
        assert historic["error"]["code"] == -32000 and "head" in historic["error"]["message"]
        receipt = node.rpc("eth_getTransactionReceipt", [block["transactions"][0]])["result"]
        assert receipt["blockNumber"] == "0x3" and receipt["status"] in ("0x0", "0x1")
        # malformed requests are answered with JSON-RPC errors
        assert json.loads(node.post(b"{not json")[1])["error"]["code"] == -32700
        assert node.rpc("eth_noSuchMethod")["error"]["code"] == -32601
        assert node.rpc("eth_getBalance", ["0x1234"])["error"]["code"] == -32602
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill()
    assert node.logged("database_closed")
    store = StateStore(datadir / "state.sqlite")
    try:
        assert store.head().number == 3
        assert store.get_account(bytes.fromhex(coinbase[2:])).balance == int(balance, 16)
    finally:
        store.close()

    # an invalid block 4, then the valid block 4: resume, reject, then accept
    append(chain, with_bad_state_root(records[3]))
    node = start_node(datadir, str(chain), tmp_path / "run2.log")
    try:
        wait_until(lambda: node.logged("invalid_block"), what="the invalid block to be reported")
        assert node.logged("node_started")[0]["head"] == 3  # resumed: blocks 1-3 are not replayed
        assert node.head() == 3
        append(chain, records[3], replace_height=True)
        wait_until(lambda: node.head() == 4, what="head 4")
        # the head is visible in the database the moment SQLite commits; the counters
        # follow when the commit stage returns, a moment later
        metrics = wait_until(lambda: _metrics_if(node, "evmpipe_blocks_committed_total 1"), what="the commit counted")
        assert 'evmpipe_blocks_rejected_total{code="BlockException.INVALID_STATE_ROOT"} 1' in metrics
        assert node.stop(signal.SIGINT) == 0
    finally:
        node.kill()
    assert [line["number"] for line in node.logged("committed")] == [4]


def _metrics_if(node, line: str) -> str | None:  # type: ignore[no-untyped-def]
    """The /metrics text once it holds `line` (None before)."""
    metrics = node.get("/metrics")[1].decode()
    return metrics if line in metrics else None


def test_corrupt_record_stops_intake_not_the_server(tmp_path: Path) -> None:
    with node_on_sample(tmp_path, 2) as (node, chain, records):
        body = msgpack.packb({"number": 3, "hash": records[2].hash, "rlp": records[2].rlp}, use_bin_type=True)
        with open(chain, "ab") as out:  # a whole record whose checksum does not match
            out.write(msgpack.packb(["block", body, zlib.crc32(body) ^ 1], use_bin_type=True))
        wait_until(lambda: node.get("/health")[0] == 503, what="health to report the stopped intake")
        health = node.health()
        assert health["ok"] is False and health["intake"] == "stopped" and "checksum" in health["intake_error"]
        assert node.rpc("eth_blockNumber")["result"] == "0x2"  # still serving
        assert node.logged("intake_stopped")
        assert node.stop() == 0


def test_devnet_source(tmp_path: Path) -> None:
    node = start_node(tmp_path / "data", "devnet:0.05", tmp_path / "node.log", "--devnet-blocks", "3", "--devnet-txs", "4")
    try:
        wait_until(lambda: node.head() == 3, timeout=60, what="the devnet's 3 blocks")
        wait_until(lambda: node.logged("devnet_exhausted"), what="the end of the devnet chain")
        assert node.health()["intake"] == "ended"
        assert node.stop() == 0
    finally:
        node.kill()


def test_devnet_source_in_parallel(tmp_path: Path) -> None:
    """The daemon with `declared --verify`: senders recovered by prefetch in the
    workers, chains scheduled, every block checked against sequential."""
    node = start_node(tmp_path / "data", "devnet:0.05", tmp_path / "node.log", "--devnet-blocks", "3", "--devnet-txs", "40", "--strategy", "declared", "--workers", "2", "--verify")
    try:
        wait_until(lambda: node.head() == 3, what="the devnet's 3 blocks")
        assert node.stop() == 0
    finally:
        node.kill()
    assert [line["number"] for line in node.logged("committed")] == [1, 2, 3]
