"""The native block file (framing, streaming, append, damage) and the converters."""
from __future__ import annotations

import argparse
import gzip
import json
import re
import tracemalloc
import zlib
from pathlib import Path

import msgpack
import pytest
import rlp
from eth.rlp.headers import BlockHeader
from eth_hash.auto import keccak

from consensus_stub.blockfile import MAGIC, BlockFileError, BlockFileHeader, BlockFileWriter, iter_blocks, read_header
from consensus_stub.convert import (
    blocktest_to_native,
    detect_format,
    geth_schedule,
    geth_to_native,
    native_to_blocktest,
    network_name,
)
from consensus_stub.fixture import fixture_alloc, hex_bytes
from evmpipe.convert_cmd import add_convert_parser
from execution.forks import Activation, ForkSchedule, schedule_for_network
from pipeline.errors import BadInput

WORKLOADS = Path(__file__).resolve().parents[2].parent / "shared" / "workloads"
WORKLOAD = WORKLOADS / "transfers-independent_b4_t250_s1.json.gz"

GENESIS_RLP = rlp.encode(BlockHeader(difficulty=131072, block_number=0, gas_limit=30_000_000, timestamp=0))
ALLOC = {
    b"\x11" * 20: {"nonce": 1, "balance": 10**30, "code": b"\x60\x00", "storage": {1: 2, 2**255: 2**256 - 1}},
    b"\x22" * 20: {"nonce": 0, "balance": 0, "code": b"", "storage": {}},
}


def _header(chain_id: int = 1) -> BlockFileHeader:
    return BlockFileHeader(chain_id, schedule_for_network("Cancun", chain_id), GENESIS_RLP, ALLOC)


def _payload(number: int, size: int = 60) -> bytes:
    return (number.to_bytes(4, "big") * (size // 4 + 1))[:size]


def _write(path: Path, count: int, size: int = 60) -> list[int]:
    """Write `count` blocks; return each record's offset (and the end offset last)."""
    offsets = []
    with BlockFileWriter.create(path, _header()) as writer:
        for number in range(1, count + 1):
            writer.flush()
            offsets.append(path.stat().st_size)
            writer.append(number, keccak(_payload(number, size)), _payload(number, size), keccak(bytes([number % 256])))
    offsets.append(path.stat().st_size)
    return offsets


def _read_until_error(path: Path) -> tuple[list[int], BadInput | None]:
    numbers: list[int] = []
    try:
        for record in iter_blocks(path):
            numbers.append(record.number)
    except BadInput as exc:
        return numbers, exc
    return numbers, None


# --- format ----------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    offsets = _write(path, 5)
    header = read_header(path)
    assert header.chain_id == 1
    assert header.schedule == schedule_for_network("Cancun")
    assert header.genesis_header_rlp == GENESIS_RLP
    assert header.alloc == ALLOC
    assert header.genesis_hash == keccak(GENESIS_RLP)
    records = list(iter_blocks(path))
    assert [r.number for r in records] == [1, 2, 3, 4, 5]
    assert [r.offset for r in records] == offsets[:-1]
    assert records[2].rlp == _payload(3) and records[2].hash == keccak(_payload(3))
    assert records[2].state_root == keccak(bytes([3]))
    assert path.read_bytes().startswith(MAGIC)


def test_state_root_optional_and_chain_id(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    with BlockFileWriter.create(path, _header(chain_id=1337)) as writer:
        writer.append(1, b"\x01" * 32, b"\xc0")
    assert read_header(path).chain_id == 1337
    assert read_header(path).schedule.chain_id == 1337
    (record,) = iter_blocks(path)
    assert record.state_root is None


def test_start_after(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    _write(path, 10)
    assert [r.number for r in iter_blocks(path, start_after=7)] == [8, 9, 10]
    assert [r.number for r in iter_blocks(path, start_after=0)] == list(range(1, 11))


def test_streaming_is_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.blocks"
    count, size = 4000, 2500
    _write(path, count, size)
    assert path.stat().st_size > 10_000_000
    tracemalloc.start()
    try:
        seen = 0
        for record in iter_blocks(path):
            seen += 1
            assert len(record.rlp) == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 2_000_000, f"peak {peak} bytes while reading a {path.stat().st_size}-byte file"


def test_append(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    _write(path, 3)
    with BlockFileWriter.open_append(path) as writer:
        assert writer.last_number == 3 and writer.repaired is None
        writer.append(4, b"\x04" * 32, b"four")
        with pytest.raises(ValueError, match="does not follow"):
            writer.append(6, b"\x06" * 32, b"six")
    with BlockFileWriter.open_append(path) as writer:
        writer.append(5, b"\x05" * 32, b"five")
    assert [r.number for r in iter_blocks(path)] == [1, 2, 3, 4, 5]
    assert [r.rlp for r in iter_blocks(path, start_after=3)] == [b"four", b"five"]


def test_append_to_empty_chain(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    BlockFileWriter.create(path, _header()).close()
    assert list(iter_blocks(path)) == []
    with BlockFileWriter.open_append(path) as writer:
        with pytest.raises(ValueError):
            writer.append(2, b"\x02" * 32, b"two")
        writer.append(1, b"\x01" * 32, b"one")
    assert [r.number for r in iter_blocks(path)] == [1]


# --- damage ----------------------------------------------------------------------


def test_truncated_tail_at_every_cut(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    offsets = _write(path, 4)
    data = path.read_bytes()
    cut_path = tmp_path / "cut.blocks"
    for cut in range(offsets[0], len(data) + 1):
        cut_path.write_bytes(data[:cut])
        numbers, error = _read_until_error(cut_path)
        whole = sum(1 for end in offsets[1:] if end <= cut)
        assert numbers == list(range(1, whole + 1)), cut
        if cut in offsets:
            assert error is None, cut
            continue
        assert isinstance(error, BlockFileError), cut
        assert error.offset == offsets[whole] and error.record == whole + 1
        assert error.last_block == whole
        message = str(error)
        assert str(cut_path) in message
        assert f"at byte {offsets[whole]}" in message and "truncated" in message
        assert f"last good block: {whole}" in message


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    offsets = _write(path, 1)
    data = path.read_bytes()
    for cut in (0, 5, offsets[0] // 2, offsets[0] - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(BadInput):
            read_header(path)
        with pytest.raises(BadInput):
            list(iter_blocks(path))


def test_flipped_byte_in_any_position_of_a_record(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    offsets = _write(path, 4)
    data = path.read_bytes()
    start, end = offsets[2], offsets[3]  # block 3's record
    bad = tmp_path / "bad.blocks"
    for position in range(start, end):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= mask
            bad.write_bytes(bytes(damaged))
            numbers, error = _read_until_error(bad)
            assert numbers == [1, 2], (position, mask)
            assert isinstance(error, BlockFileError), (position, mask)
            assert error.offset == start and error.last_block == 2
            assert f"at byte {start}" in str(error) and "last good block: 2" in str(error)


def test_flipped_byte_in_header_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    offsets = _write(path, 2)
    data = bytearray(path.read_bytes())
    data[offsets[0] // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput):
        read_header(path)


def test_open_append_refuses_a_bad_tail_unless_repair(tmp_path: Path) -> None:
    path = tmp_path / "chain.blocks"
    offsets = _write(path, 4)
    path.write_bytes(path.read_bytes()[: offsets[3] + 7])  # block 4 torn
    with pytest.raises(BlockFileError, match=f"at byte {offsets[3]}.*repair=True"):
        BlockFileWriter.open_append(path)
    assert path.stat().st_size == offsets[3] + 7  # nothing cut
    with BlockFileWriter.open_append(path, repair=True) as writer:
        assert writer.repaired is not None and writer.repaired.offset == offsets[3]
        assert writer.last_number == 3
        writer.append(4, b"\x04" * 32, b"again")
    assert [r.rlp for r in iter_blocks(path, start_after=3)] == [b"again"]


def test_not_a_block_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    for content in (b"", b"hello world", b'{"a": 1}', msgpack.packb(["block", b"", 0]), bytes(range(256))):
        path.write_bytes(content)
        with pytest.raises(BadInput, match="not an evmpipe block file"):
            read_header(path)


def _forged(path: Path, **changes: object) -> None:
    body = {"format": "evmpipe-blocks", "version": 1, "chain_id": 1, "schedule": schedule_for_network("Cancun").to_dict(), "genesis": {"header_rlp": GENESIS_RLP, "alloc": {}}, "created_by": "test"}
    body.update(changes)
    packed = msgpack.packb(body, use_bin_type=True)
    path.write_bytes(msgpack.packb(["header", packed, zlib.crc32(packed)], use_bin_type=True))


def test_wrong_format_or_version(tmp_path: Path) -> None:
    path = tmp_path / "x.blocks"
    _forged(path)
    assert read_header(path).created_by == "test"
    _forged(path, version=2)
    with pytest.raises(BadInput, match="version 2"):
        read_header(path)
    _forged(path, format="something-else")
    with pytest.raises(BadInput, match="not an evmpipe block file"):
        read_header(path)
    _forged(path, extra_field_from_the_future=[1, 2])  # fields may be added
    read_header(path)
    _forged(path, schedule={"activations": [{"fork": "Osaka", "block": 0}]})
    with pytest.raises(BadInput, match="Osaka"):
        read_header(path)


# --- converters --------------------------------------------------------------------


@pytest.fixture
def workload() -> tuple[str, dict]:
    if not WORKLOAD.is_file():
        pytest.skip(f"{WORKLOAD} is not present")
    with gzip.open(WORKLOAD, "rt") as stream:
        data = json.load(stream)
    return next(iter(data.items()))


def test_workload_to_native_and_back(tmp_path: Path, workload: tuple[str, dict]) -> None:
    name, test = workload
    native = tmp_path / "w.blocks"
    summary = blocktest_to_native(WORKLOAD, native)
    assert summary.blocks == len(test["blocks"]) and summary.last_hash == hex_bytes(test["lastblockhash"])
    assert detect_format(WORKLOAD) == "blocktest" and detect_format(native) == "native"
    header = read_header(native)
    assert header.schedule == schedule_for_network("Cancun")
    assert header.alloc == fixture_alloc(test["pre"])
    assert header.genesis_hash == hex_bytes(test["genesisBlockHeader"]["hash"])
    records = list(iter_blocks(native))
    assert [r.rlp for r in records] == [hex_bytes(b["rlp"]) for b in test["blocks"]]
    assert [r.hash for r in records] == [hex_bytes(b["blockHeader"]["hash"]) for b in test["blocks"]]
    assert [r.state_root for r in records] == [hex_bytes(b["blockHeader"]["stateRoot"]) for b in test["blocks"]]

    for out in (tmp_path / "back.json", tmp_path / "back.json.gz"):
        native_to_blocktest(native, out)
        opener = gzip.open if out.suffix == ".gz" else open
        with opener(out, "rt") as stream:
            (back,) = json.load(stream).values()
        assert back["network"] == "Cancun" and back["sealEngine"] == "NoProof"
        assert back["genesisRLP"] == test["genesisRLP"]
        assert back["genesisBlockHeader"] == test["genesisBlockHeader"]
        assert fixture_alloc(back["pre"]) == fixture_alloc(test["pre"])
        assert [b["rlp"] for b in back["blocks"]] == [b["rlp"] for b in test["blocks"]]
        assert [b["blockHeader"] for b in back["blocks"]] == [b["blockHeader"] for b in test["blocks"]]
        assert back["lastblockhash"] == test["lastblockhash"]
        assert back["postStateHash"] == test["blocks"][-1]["blockHeader"]["stateRoot"]

    # and the JSON we wrote converts back to the same native file
    again = tmp_path / "again.blocks"
    blocktest_to_native(tmp_path / "back.json", again)
    assert again.read_bytes() == native.read_bytes()


def _side_block(data: bytes) -> bytes:
    parts = rlp.decode(data)
    parts[0][12] = b"side chain"
    return rlp.encode(parts)


def test_blocktest_keeps_only_the_canonical_valid_chain(tmp_path: Path, workload: tuple[str, dict]) -> None:
    name, test = workload
    blocks = test["blocks"]
    side = _side_block(hex_bytes(blocks[1]["rlp"]))
    side_hash = keccak(rlp.encode(rlp.decode(side)[0]))
    test = dict(test, blocks=[blocks[0], {"rlp": "0xdeadbeef", "expectException": "BlockException.X"}, {"rlp": "0x" + side.hex()}, *blocks[1:]])
    src = tmp_path / "side.json"
    src.write_text(json.dumps({name: test, "other": test}))
    with pytest.raises(BadInput, match="choose one with --test"):
        blocktest_to_native(src, tmp_path / "x.blocks")
    assert not (tmp_path / "x.blocks").exists()
    blocktest_to_native(src, tmp_path / "main.blocks", test_name=name)
    assert [r.rlp for r in iter_blocks(tmp_path / "main.blocks")] == [hex_bytes(b["rlp"]) for b in blocks]
    src.write_text(json.dumps({name: dict(test, lastblockhash="0x" + side_hash.hex())}))
    blocktest_to_native(src, tmp_path / "side.blocks")
    assert [r.rlp for r in iter_blocks(tmp_path / "side.blocks")] == [hex_bytes(blocks[0]["rlp"]), side]


def _geth_genesis(test: dict) -> dict:
    g = test["genesisBlockHeader"]
    config = {"chainId": 1, "terminalTotalDifficulty": 0, "shanghaiTime": 0, "cancunTime": 0}
    for key in ("homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock", "constantinopleBlock", "petersburgBlock", "istanbulBlock", "berlinBlock", "londonBlock"):
        config[key] = 0
    fields = {key: g[key] for key in ("nonce", "timestamp", "extraData", "gasLimit", "difficulty", "mixHash", "coinbase", "baseFeePerGas", "excessBlobGas", "blobGasUsed")}
    return {"config": config, **fields, "alloc": test["pre"]}


def test_geth_export_to_native(tmp_path: Path, workload: tuple[str, dict]) -> None:
    name, test = workload
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(_geth_genesis(test)))
    blocks = [hex_bytes(b["rlp"]) for b in test["blocks"]]
    stream = hex_bytes(test["genesisRLP"]) + b"".join(blocks)
    for export, content in ((tmp_path / "chain.rlp", stream), (tmp_path / "chain.rlp.gz", gzip.compress(stream)), (tmp_path / "nogenesis.rlp", b"".join(blocks))):
        export.write_bytes(content)
        assert detect_format(export) == "geth"
        out = tmp_path / (export.name + ".blocks")
        summary = geth_to_native(export, genesis_path, out)
        header = read_header(out)
        assert header.genesis_hash == hex_bytes(test["genesisBlockHeader"]["hash"])
        assert header.genesis_header_rlp == rlp.encode(rlp.decode(hex_bytes(test["genesisRLP"]))[0])
        assert network_name(header.schedule) == "Cancun"
        assert header.alloc == fixture_alloc(test["pre"])
        assert [r.rlp for r in iter_blocks(out)] == blocks
        assert summary.blocks == len(blocks)


def test_geth_export_errors(tmp_path: Path, workload: tuple[str, dict]) -> None:
    name, test = workload
    genesis = _geth_genesis(test)
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(genesis))
    genesis_block = hex_bytes(test["genesisRLP"])
    blocks = [hex_bytes(b["rlp"]) for b in test["blocks"]]
    export = tmp_path / "chain.rlp"
    out = tmp_path / "out.blocks"
    export.write_bytes(genesis_block + b"".join(blocks)[:-100])
    with pytest.raises(BadInput, match=rf"byte {len(genesis_block) + sum(map(len, blocks[:-1]))}: the file ends"):
        geth_to_native(export, genesis_path, out)
    assert not out.exists()
    export.write_bytes(blocks[0] + blocks[2])
    with pytest.raises(BadInput, match="expected block 2"):
        geth_to_native(export, genesis_path, out)
    genesis_path.write_text(json.dumps(dict(genesis, gasLimit="0x01")))
    export.write_bytes(genesis_block + blocks[0])
    with pytest.raises(BadInput, match=r"\(genesis\) is 0x"):
        geth_to_native(export, genesis_path, out)


def test_geth_schedule_mainnet_like() -> None:
    config = {
        "chainId": 1, "homesteadBlock": 1_150_000, "daoForkBlock": 1_920_000, "daoForkSupport": True,
        "eip150Block": 2_463_000, "eip155Block": 2_675_000, "eip158Block": 2_675_000, "byzantiumBlock": 4_370_000,
        "constantinopleBlock": 7_280_000, "petersburgBlock": 7_280_000, "istanbulBlock": 9_069_000,
        "muirGlacierBlock": 9_200_000, "berlinBlock": 12_244_000, "londonBlock": 12_965_000,
        "arrowGlacierBlock": 13_773_000, "grayGlacierBlock": 15_050_000,
        "terminalTotalDifficulty": 58_750_000_000_000_000_000_000, "shanghaiTime": 1_681_338_455, "cancunTime": 1_710_338_135,
    }  # fmt: skip
    schedule = geth_schedule(config, genesis_difficulty=17_179_869_184, first_pos_block=15_537_394)
    assert schedule.dao_fork_block == 1_920_000
    assert schedule.fork_at(1_149_999, 0) == "Frontier"
    assert schedule.fork_at(2_675_000, 0) == "EIP158"
    assert schedule.fork_at(7_280_000, 0) == "ConstantinopleFix"
    assert schedule.fork_at(15_050_000, 0) == "GrayGlacier"
    assert schedule.fork_at(15_537_394, 1_663_224_179) == "Paris"
    assert schedule.fork_at(17_034_870, 1_681_338_455) == "Shanghai"
    assert schedule.fork_at(19_426_587, 1_710_338_135) == "Cancun"
    # merged at genesis, difficulty still 1 in the header: Paris from block 0
    merged = geth_schedule({"chainId": 7, "londonBlock": 0, "terminalTotalDifficulty": 0}, genesis_difficulty=1)
    assert merged == ForkSchedule((Activation("Paris", block=0),), 7)
    netsplit = geth_schedule({"londonBlock": 0, "mergeNetsplitBlock": 10, "terminalTotalDifficulty": 99}, genesis_difficulty=1)
    assert netsplit.fork_at(9, 0) == "London" and netsplit.fork_at(10, 0) == "Paris"


def test_custom_schedule_survives_blocktest_json(tmp_path: Path) -> None:
    schedule = ForkSchedule((Activation("London", block=0), Activation("Paris", block=3), Activation("Shanghai", timestamp=99)), 5)
    assert network_name(schedule) is None
    assert network_name(schedule_for_network("ShanghaiToCancunAtTime15k")) == "ShanghaiToCancunAtTime15k"
    genesis = rlp.encode(BlockHeader(difficulty=1, block_number=0, gas_limit=30_000_000, timestamp=0))
    src = tmp_path / "custom.blocks"
    BlockFileWriter.create(src, BlockFileHeader(5, schedule, genesis, ALLOC)).close()
    native_to_blocktest(src, tmp_path / "custom.json")
    (test,) = json.loads((tmp_path / "custom.json").read_text()).values()
    assert "evmpipeSchedule" in test and test["config"]["chainid"] == "0x05"
    blocktest_to_native(tmp_path / "custom.json", tmp_path / "again.blocks")
    header = read_header(tmp_path / "again.blocks")
    assert header.schedule == schedule and header.chain_id == 5 and header.alloc == ALLOC


# --- command -----------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evmpipe")
    add_convert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", *argv])
    return args.func(args)


def test_convert_command(tmp_path: Path, workload: tuple[str, dict], capsys: pytest.CaptureFixture[str]) -> None:
    native = tmp_path / "w.blocks"
    assert _run([str(WORKLOAD), "-o", str(native)]) == 0
    assert "wrote 4 blocks (blocktest -> native)" in capsys.readouterr().out
    assert _run([str(native), "-o", str(tmp_path / "w.json")]) == 0
    assert detect_format(tmp_path / "w.json") == "blocktest"
    assert _run([str(WORKLOAD), "--to", "blocktest", "-o", str(tmp_path / "x.json")]) == 2
    capsys.readouterr()

    corrupt = tmp_path / "corrupt.blocks"
    data = native.read_bytes()
    corrupt.write_bytes(data[:-50])
    assert _run([str(corrupt), "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"record 4 at byte \d+: .*truncated.*last good block: 3", err) and "Traceback" not in err
    assert not (tmp_path / "c.json").exists()

    export = tmp_path / "chain.rlp"
    export.write_bytes(b"".join(hex_bytes(b["rlp"]) for b in workload[1]["blocks"]))
    assert _run([str(export), "-o", str(tmp_path / "g.blocks")]) == 2
    assert "--genesis" in capsys.readouterr().err
    (tmp_path / "genesis.json").write_text(json.dumps(_geth_genesis(workload[1])))
    assert _run([str(export), "--genesis", str(tmp_path / "genesis.json"), "-o", str(tmp_path / "g.json"), "--to", "blocktest"]) == 0
    (back,) = json.loads((tmp_path / "g.json").read_text()).values()
    assert back["lastblockhash"] == workload[1]["lastblockhash"]

    (tmp_path / "junk").write_bytes(b"\x00\x01junk")
    assert _run([str(tmp_path / "junk"), "-o", str(tmp_path / "j.blocks")]) == 2
    assert "--from" in capsys.readouterr().err
    assert _run([str(tmp_path / "missing"), "-o", str(tmp_path / "j.blocks")]) == 2
