"""Converters between the native block file and other clients' formats.

- BlockchainTest JSON -> native: the valid chain of one test (plain or gzip).
- geth ``export`` stream + geth ``genesis.json`` -> native.
- native -> BlockchainTest JSON, so other clients can check our files.

Every converter writes to a temporary file beside the output and renames it at the
end, so a failed conversion never leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import rlp
from eth_hash.auto import keccak

from consensus_stub.blockfile import MAGIC, BlockFileHeader, BlockFileWriter, iter_blocks, read_header
from consensus_stub.fixture import fixture_alloc, hex_bytes, hex_int
from execution.forks import FORKS, Activation, ForkSchedule, schedule_for_network
from pipeline import jsonlimits
from pipeline.errors import BadInput
from state.account import BLANK_ROOT
from state.genesis import alloc_diff
from state.merkle import merkleize

StrPath = str | os.PathLike[str]

GZIP_MAGIC = b"\x1f\x8b"
EMPTY_UNCLES_HASH = keccak(rlp.encode([]))
EMPTY_REQUESTS_HASH = hashlib.sha256(b"").digest()
_MAX_RLP_ITEM = 1 << 28

# ethereum/tests transition networks, for naming a schedule (see schedule_for_network).
TRANSITION_NETWORKS = (
    "FrontierToHomesteadAt5",
    "HomesteadToEIP150At5",
    "HomesteadToDaoAt5",
    "EIP158ToByzantiumAt5",
    "ByzantiumToConstantinopleFixAt5",
    "BerlinToLondonAt5",
    "ArrowGlacierToParisAtDiffC0000",
    "ParisToShanghaiAtTime15k",
    "ShanghaiToCancunAtTime15k",
    "CancunToPragueAtTime15k",
)

# Header fields by position (the order is the same in every fork; later forks append).
HEADER_FIELDS = (
    "parentHash", "uncleHash", "coinbase", "stateRoot", "transactionsTrie", "receiptTrie", "bloom",
    "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "extraData", "mixHash", "nonce",
    "baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot", "requestsHash",
)  # fmt: skip
_INT_FIELDS = frozenset({"difficulty", "number", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas", "blobGasUsed", "excessBlobGas"})


@dataclass(frozen=True)
class ConvertSummary:
    """What a conversion wrote, for the command's one-line report."""

    blocks: int
    last_number: int
    last_hash: bytes


# --- detection and small helpers ---------------------------------------------------


def _open_maybe_gzip(path: StrPath) -> IO[bytes]:
    stream: IO[bytes] = open(path, "rb")
    if stream.read(2) == GZIP_MAGIC:
        stream.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    stream.seek(0)
    return stream


def detect_format(path: StrPath) -> str:
    """"blocktest", "geth" or "native", from the first bytes of the file."""
    with open(path, "rb") as raw:
        head = raw.read(len(MAGIC))
    if head.startswith(MAGIC):
        return "native"
    try:
        with _open_maybe_gzip(path) as stream:
            head = stream.read(64)
    except (OSError, EOFError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from exc
    text = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    if text.startswith(b"{"):
        return "blocktest"
    if text[:1] and text[0] >= 0xF8:
        return "geth"
    raise BadInput(f"{path}: cannot tell its format (not BlockchainTest JSON, a geth export or an evmpipe block file); name it with --from")


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _hex_quantity(value: int) -> str:
    text = f"{value:x}"
    return "0x" + ("0" * (len(text) % 2)) + text


@contextlib.contextmanager
def _text_writer(path: Path, *, gzipped: bool) -> Iterator[IO[str]]:
    """A UTF-8 text file, gzip-compressed (with no file name or time inside) if asked."""
    with open(path, "wb") as raw:
        if not gzipped:
            with io.TextIOWrapper(raw, encoding="utf-8") as text:
                yield text
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed, io.TextIOWrapper(packed, encoding="utf-8") as text:
            yield text


@contextlib.contextmanager
def _atomic_output(dst: StrPath) -> Iterator[Path]:
    """A temporary path beside `dst`, renamed onto it only if the block succeeds."""
    target = Path(dst)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _block_parts(data: bytes) -> list:
    raw = rlp.decode(data)
    if not isinstance(raw, list) or len(raw) < 3 or not isinstance(raw[0], list) or len(raw[0]) < 15:
        raise ValueError("not a block: [header, transactions, ommers, ...]")
    return raw


def _header_info(header: list) -> tuple[int, bytes, bytes, bytes]:
    """(number, hash, parent hash, state root) of a raw header list."""
    return int.from_bytes(header[8], "big"), keccak(rlp.encode(header)), header[0], header[3]


def state_root_of(alloc: dict[bytes, dict]) -> bytes:
    """The state root of a genesis allocation."""

    def no_node(node_hash: bytes) -> bytes:
        raise KeyError(node_hash)

    root = merkleize(alloc_diff(alloc), BLANK_ROOT, lambda address: None, no_node).root
    return root


def simplify_schedule(schedule: ForkSchedule) -> ForkSchedule:
    """Drop activations that never apply: everything before the last one active from
    the start (block 0 or time 0), which then becomes the schedule's first entry."""
    acts = schedule.activations
    start = max((i for i, a in enumerate(acts) if a.block == 0 or a.timestamp == 0), default=None)
    if start is None:
        return schedule
    first = Activation(acts[start].fork, block=0)
    return ForkSchedule((first, *acts[start + 1 :]), schedule.chain_id, schedule.dao_fork_block)


def network_name(schedule: ForkSchedule) -> str | None:
    """The ethereum/tests network a schedule stands for, if any."""
    simple = simplify_schedule(schedule)
    for name in (*FORKS, *TRANSITION_NETWORKS):
        if schedule_for_network(name, schedule.chain_id) == simple:
            return name
    return None


# --- BlockchainTest JSON -> native -------------------------------------------------


def _load_json(path: StrPath) -> Any:
    """The file's JSON, inflated in bounded chunks and depth-checked (`pipeline.jsonlimits`):
    a gzip bomb or a deeply nested document is an error naming the file, not a crash."""
    try:
        return jsonlimits.load_file(path)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInput(f"{path}: not readable JSON: {exc}") from exc


def _choose_test(path: StrPath, data: Any, test_name: str | None) -> tuple[str, dict[str, Any]]:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise BadInput(f"{path}: not a BlockchainTest file (the top level is not an object of tests)")
    if test_name is not None:
        if test_name not in data:
            raise BadInput(f"{path}: no test named {test_name!r} (it has {_names(data)})")
        return test_name, data[test_name]
    if len(data) != 1:
        raise BadInput(f"{path}: holds {len(data)} tests; choose one with --test ({_names(data)})")
    return next(iter(data.items()))


def _names(data: dict[str, Any], limit: int = 5) -> str:
    names = list(data)
    shown = ", ".join(names[:limit])
    return shown + (f", … {len(names) - limit} more" if len(names) > limit else "")


def _test_schedule(test: dict[str, Any]) -> ForkSchedule:
    config = test.get("config") if isinstance(test.get("config"), dict) else {}
    chain_id = hex_int(config.get("chainid", 1))
    if isinstance(test.get("evmpipeSchedule"), dict):
        return ForkSchedule.from_dict({**test["evmpipeSchedule"], "chain_id": chain_id})
    return schedule_for_network(str(test.get("network") or config.get("network")), chain_id)


def _canonical_chain(where: str, test: dict[str, Any], genesis_hash: bytes) -> list[tuple[int, bytes, bytes, bytes]]:
    """(number, hash, rlp, state root) of the valid blocks on the chain to lastblockhash."""
    by_hash: dict[bytes, tuple[int, bytes, bytes, bytes]] = {}
    parents: dict[bytes, bytes] = {}
    for index, entry in enumerate(test.get("blocks", [])):
        if any(key.startswith("expectException") for key in entry):
            continue
        try:
            data = hex_bytes(entry["rlp"])
            number, block_hash, parent, root = _header_info(_block_parts(data)[0])
        except (KeyError, ValueError, rlp.exceptions.DecodingError) as exc:
            raise BadInput(f"{where}: block entry {index} (valid, no expectException) does not decode: {exc}") from exc
        by_hash[block_hash] = (number, block_hash, data, root)
        parents[block_hash] = parent
    cursor = hex_bytes(test["lastblockhash"])
    chain = []
    while cursor != genesis_hash:
        if cursor not in by_hash:
            raise BadInput(f"{where}: the chain to lastblockhash breaks at 0x{cursor.hex()}: no valid block has that hash")
        chain.append(by_hash[cursor])
        cursor = parents[cursor]
    chain.reverse()
    return chain


def blocktest_to_native(src: StrPath, dst: StrPath, test_name: str | None = None) -> ConvertSummary:
    """Write the canonical valid chain of one BlockchainTest as a native block file."""
    name, test = _choose_test(src, _load_json(src), test_name)
    where = f"{src}::{name}"
    missing = [key for key in ("genesisRLP", "pre", "lastblockhash") if key not in test]
    if missing:  # without them the file would convert to a chain that cannot be replayed or checked
        raise BadInput(f"{where}: not a complete BlockchainTest: no {', '.join(repr(k) for k in missing)}")
    if not isinstance(test["pre"], dict):
        raise BadInput(f"{where}: 'pre' is not an object of accounts")
    try:
        schedule = _test_schedule(test)
        genesis_header = rlp.encode(_block_parts(hex_bytes(test["genesisRLP"]))[0])
        genesis_hash = keccak(genesis_header)
        claimed = test.get("genesisBlockHeader", {}).get("hash")
        if claimed is not None and hex_bytes(claimed) != genesis_hash:
            raise BadInput(f"{where}: genesisRLP hashes to 0x{genesis_hash.hex()}, genesisBlockHeader.hash says {claimed}")
        chain = _canonical_chain(where, test, genesis_hash)
        header = BlockFileHeader(schedule.chain_id, schedule, genesis_header, fixture_alloc(test["pre"]))
        with _atomic_output(dst) as tmp, BlockFileWriter.create(tmp, header) as writer:
            for number, block_hash, data, root in chain:
                writer.append(number, block_hash, data, root)
    except (KeyError, ValueError, TypeError, AttributeError, rlp.exceptions.DecodingError) as exc:
        raise BadInput(f"{where}: {type(exc).__name__}: {exc}") from exc
    return ConvertSummary(len(chain), writer.last_number, chain[-1][1] if chain else genesis_hash)


# --- native -> BlockchainTest JSON -------------------------------------------------


def header_fields(header: list) -> dict[str, str]:
    """A raw header list as BlockchainTest `blockHeader` fields, with its hash."""
    if len(header) > len(HEADER_FIELDS):
        raise ValueError(f"header has {len(header)} fields; evmpipe knows {len(HEADER_FIELDS)}")
    out = {}
    for name, value in zip(HEADER_FIELDS, header):
        out[name] = _hex_quantity(int.from_bytes(value, "big")) if name in _INT_FIELDS else _hex(value)
    out["hash"] = _hex(keccak(rlp.encode(header)))
    return dict(sorted(out.items()))


def _genesis_block_rlp(schedule: ForkSchedule, header: list) -> bytes:
    number, timestamp = int.from_bytes(header[8], "big"), int.from_bytes(header[11], "big")
    parts = len(schedule.vm_class(number, timestamp).get_block_class()._meta.fields)
    return rlp.encode([header] + [[] for _ in range(parts - 1)])


def _pre_json(alloc: dict[bytes, dict]) -> dict[str, Any]:
    return {
        _hex(address): {
            "balance": _hex_quantity(fields.get("balance", 0)),
            "code": _hex(fields.get("code", b"")),
            "nonce": _hex_quantity(fields.get("nonce", 0)),
            "storage": {_hex_quantity(k): _hex_quantity(v) for k, v in sorted(fields.get("storage", {}).items())},
        }
        for address, fields in sorted(alloc.items())
    }


def native_to_blocktest(src: StrPath, dst: StrPath, test_name: str | None = None) -> ConvertSummary:
    """Write a native file as a one-test BlockchainTest JSON (gzip if `dst` ends .gz).

    Blocks are streamed out one by one. `postStateHash` is the last block's state root
    (no post state is computed here).
    """
    header = read_header(src)
    genesis = rlp.decode(header.genesis_header_rlp)
    name = test_name or Path(dst).name.split(".")[0] or "evmpipe"
    test: dict[str, Any] = {
        "_info": {"comment": f"converted by evmpipe from {Path(src).name}", "filling-tool": header.created_by},
        "network": network_name(header.schedule) or "evmpipeCustom",
        "sealEngine": "NoProof",
        "genesisBlockHeader": header_fields(genesis),
        "genesisRLP": _hex(_genesis_block_rlp(header.schedule, genesis)),
        "pre": _pre_json(header.alloc),
    }
    if test["network"] == "evmpipeCustom":
        test["evmpipeSchedule"] = header.schedule.to_dict()
    if header.chain_id != 1:
        test["config"] = {"network": test["network"], "chainid": _hex_quantity(header.chain_id)}
    head = json.dumps({name: test}, indent=1)
    assert head.endswith("\n }\n}")
    count, last_hash, last_root, last_number = 0, header.genesis_hash, genesis[3], header.genesis_number
    with _atomic_output(dst) as tmp, _text_writer(tmp, gzipped=str(dst).endswith(".gz")) as out:
        out.write(head[: -len("\n }\n}")] + ',\n  "blocks": [')
        for record in iter_blocks(src):
            try:
                parts = _block_parts(record.rlp)
                entry = {
                    "blockHeader": header_fields(parts[0]),
                    "blocknumber": str(record.number),
                    "rlp": _hex(record.rlp),
                    "uncleHeaders": [header_fields(uncle) for uncle in parts[2]],
                }
            except (ValueError, TypeError, rlp.exceptions.DecodingError) as exc:
                raise BadInput(f"{src}: block {record.number} at byte {record.offset} is not a block: {exc}") from exc
            out.write(("\n   " if count == 0 else ",\n   ") + json.dumps(entry))
            count, last_hash, last_root, last_number = count + 1, record.hash, parts[0][3], record.number
        out.write(f'\n  ],\n  "lastblockhash": "{_hex(last_hash)}",\n  "postStateHash": "{_hex(last_root)}"\n }}\n}}\n')
    return ConvertSummary(count, last_number, last_hash)


# --- geth export + genesis.json -> native ------------------------------------------

# geth config key -> fork, in activation order (time-based keys are marked).
_GETH_BLOCK_FORKS = (
    ("homesteadBlock", "Homestead"),
    ("eip150Block", "EIP150"),
    ("eip158Block", "EIP158"),
    ("byzantiumBlock", "Byzantium"),
    ("constantinopleBlock", "Constantinople"),
    ("petersburgBlock", "ConstantinopleFix"),
    ("istanbulBlock", "Istanbul"),
    ("berlinBlock", "Berlin"),
    ("londonBlock", "London"),
    ("grayGlacierBlock", "GrayGlacier"),
)
_GETH_TIME_FORKS = (("shanghaiTime", "Shanghai"), ("cancunTime", "Cancun"), ("pragueTime", "Prague"))
_GETH_UNSUPPORTED_TIMES = ("osakaTime", "bpo1Time", "verkleTime")


def geth_schedule(config: dict[str, Any], genesis_difficulty: int, first_pos_block: int | None = None) -> ForkSchedule:
    """geth's genesis `config` as a fork schedule.

    Paris is at block 0 when the terminal total difficulty is reached at genesis (or
    `terminalTotalDifficultyPassed` without a TTD), at `mergeNetsplitBlock` when given,
    else at `first_pos_block` (the first exported block with difficulty 0). Muir and
    Arrow Glacier only move the difficulty bomb and have no VM of their own here: Arrow
    Glacier stands in for Gray Glacier when the latter is absent.
    """
    config = dict(config)
    if "eip158Block" not in config and "eip155Block" in config:
        config["eip158Block"] = config["eip155Block"]
    if "grayGlacierBlock" not in config and "arrowGlacierBlock" in config:
        config["grayGlacierBlock"] = config["arrowGlacierBlock"]
    activations = [Activation("Frontier", block=0)]
    for key, fork in _GETH_BLOCK_FORKS:
        if config.get(key) is not None:
            activations.append(Activation(fork, block=hex_int(config[key])))
    paris = _paris_block(config, genesis_difficulty, first_pos_block)
    if paris is not None:
        activations.append(Activation("Paris", block=paris))
    for key, fork in _GETH_TIME_FORKS:
        if config.get(key) is not None:
            activations.append(Activation(fork, timestamp=hex_int(config[key])))
    dao = hex_int(config["daoForkBlock"]) if config.get("daoForkSupport") and config.get("daoForkBlock") is not None else None
    chain_id = hex_int(config.get("chainId", 1))
    return simplify_schedule(ForkSchedule(tuple(activations), chain_id, dao))


def check_blob_schedule(config: dict[str, Any]) -> None:
    """geth's `config.blobSchedule` (blobs per block and update fraction per fork):
    accepted when it is mainnet's ([EIP-7691]), which evmpipe's per-fork table
    (`execution.blobs`) implements; any other schedule is refused rather than run
    with the wrong limits. Entries of forks evmpipe does not run are ignored.

    [EIP-7691]: https://eips.ethereum.org/EIPS/eip-7691"""
    from execution.blobs import CANCUN, GAS_PER_BLOB, PRAGUE

    schedule = config.get("blobSchedule") or {}
    if not isinstance(schedule, dict):
        raise ValueError("blobSchedule is not an object")
    for fork, params in (("cancun", CANCUN), ("prague", PRAGUE)):
        entry = schedule.get(fork)
        if entry is None:
            continue
        given = (hex_int(entry.get("target")), hex_int(entry.get("max")), hex_int(entry.get("baseFeeUpdateFraction")))
        expected = (params.target // GAS_PER_BLOB, params.max // GAS_PER_BLOB, params.update_fraction)
        if given != expected:
            raise ValueError(f"blobSchedule.{fork} is {given} (target, max, fraction); evmpipe runs mainnet's {expected}")


def _paris_block(config: dict[str, Any], genesis_difficulty: int, first_pos_block: int | None) -> int | None:
    if config.get("mergeNetsplitBlock") is not None:
        return hex_int(config["mergeNetsplitBlock"])
    ttd = config.get("terminalTotalDifficulty")
    if ttd is None:
        return 0 if config.get("terminalTotalDifficultyPassed") else None
    if hex_int(ttd) <= genesis_difficulty:
        return 0
    return first_pos_block


def _needs_merge_scan(config: dict[str, Any], genesis_difficulty: int) -> bool:
    ttd = config.get("terminalTotalDifficulty")
    return config.get("mergeNetsplitBlock") is None and ttd is not None and hex_int(ttd) > genesis_difficulty


def _mix_hash(genesis: dict[str, Any]) -> bytes:
    return hex_bytes(genesis.get("mixHash") or genesis.get("mixhash") or "0x").rjust(32, b"\0")


def geth_difficulty(genesis: dict[str, Any]) -> int:
    """geth's rule: no difficulty and a zero mix hash mean 131072, else the value (or 0)."""
    if genesis.get("difficulty") is not None:
        return hex_int(genesis["difficulty"])
    return 131_072 if _mix_hash(genesis) == b"\0" * 32 else 0


def geth_genesis_header(genesis: dict[str, Any], schedule: ForkSchedule, alloc: dict[bytes, dict]) -> bytes:
    """The genesis header RLP geth builds from `genesis.json` (core/genesis.go ToBlock)."""
    number, timestamp = hex_int(genesis.get("number", 0)), hex_int(genesis.get("timestamp", 0))
    header_class = schedule.vm_class(number, timestamp).get_block_class()._meta.fields[0][1]
    values: dict[str, Any] = {
        "parent_hash": hex_bytes(genesis.get("parentHash", "0x" + "00" * 32)).rjust(32, b"\0"),
        "uncles_hash": EMPTY_UNCLES_HASH,
        "coinbase": hex_bytes(genesis.get("coinbase", "0x" + "00" * 20)).rjust(20, b"\0"),
        "state_root": state_root_of(alloc),
        "transaction_root": BLANK_ROOT,
        "receipt_root": BLANK_ROOT,
        "bloom": 0,
        "difficulty": geth_difficulty(genesis),
        "block_number": number,
        "gas_limit": hex_int(genesis.get("gasLimit", 0)) or 4_712_388,
        "gas_used": hex_int(genesis.get("gasUsed", 0)),
        "timestamp": timestamp,
        "extra_data": hex_bytes(genesis.get("extraData", "0x")),
        "mix_hash": _mix_hash(genesis),
        "nonce": hex_int(genesis.get("nonce", 0)).to_bytes(8, "big"),
        "base_fee_per_gas": hex_int(genesis.get("baseFeePerGas", 1_000_000_000)),
        "withdrawals_root": BLANK_ROOT,
        "blob_gas_used": hex_int(genesis.get("blobGasUsed", 0) or 0),
        "excess_blob_gas": hex_int(genesis.get("excessBlobGas", 0) or 0),
        "parent_beacon_block_root": hex_bytes(genesis.get("parentBeaconBlockRoot", "0x" + "00" * 32)).rjust(32, b"\0"),
        "requests_hash": hex_bytes(genesis["requestsHash"]) if genesis.get("requestsHash") else EMPTY_REQUESTS_HASH,
    }
    names = [name for name, _ in header_class._meta.fields]
    return rlp.encode(header_class(**{name: values[name] for name in names}))


def iter_rlp_items(stream: IO[bytes], where: str) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each top-level RLP list in a stream, in constant memory."""
    offset = 0
    while True:
        first = stream.read(1)
        if not first:
            return
        prefix = first[0]
        if prefix < 0xC0:
            raise BadInput(f"{where}: byte {offset}: 0x{prefix:02x} starts no RLP list (not a geth export?)")
        length_bytes = b""
        if prefix <= 0xF7:
            length = prefix - 0xC0
        else:
            length_bytes = stream.read(prefix - 0xF7)
            length = int.from_bytes(length_bytes, "big")
            if len(length_bytes) != prefix - 0xF7:
                raise BadInput(f"{where}: byte {offset}: the file ends inside an RLP length (truncated)")
        if length > _MAX_RLP_ITEM:
            raise BadInput(f"{where}: byte {offset}: an RLP item of {length} bytes (corrupt)")
        payload = stream.read(length)
        if len(payload) != length:
            raise BadInput(f"{where}: byte {offset}: the file ends {len(payload)} bytes into a {length}-byte block (truncated)")
        yield offset, first + length_bytes + payload
        offset += 1 + len(length_bytes) + length


def _export_blocks(export_path: StrPath) -> Iterator[tuple[int, list, bytes]]:
    """(offset, raw block parts, block RLP) of each exported block."""
    try:
        with _open_maybe_gzip(export_path) as stream:
            where = f"{export_path} (uncompressed)" if isinstance(stream, gzip.GzipFile) else str(export_path)
            for offset, data in iter_rlp_items(stream, where):
                try:
                    parts = _block_parts(data)
                except (ValueError, rlp.exceptions.DecodingError) as exc:
                    raise BadInput(f"{where}: byte {offset}: not a block: {exc}") from exc
                yield offset, parts, data
    except (OSError, EOFError) as exc:
        raise BadInput(f"{export_path}: cannot read: {exc}") from exc


def _first_pos_block(export_path: StrPath) -> int | None:
    for _, parts, _ in _export_blocks(export_path):
        if int.from_bytes(parts[0][7], "big") == 0:
            return int.from_bytes(parts[0][8], "big")
    return None


def geth_to_native(export_path: StrPath, genesis_json_path: StrPath, dst: StrPath) -> ConvertSummary:
    """Write a geth `export` stream (plain or gzip) with its genesis.json as a native file."""
    genesis = _load_json(genesis_json_path)
    if not isinstance(genesis, dict) or not isinstance(genesis.get("config"), dict):
        raise BadInput(f"{genesis_json_path}: not a geth genesis.json (no `config` object)")
    try:
        alloc = fixture_alloc(genesis.get("alloc", {}))
        difficulty = geth_difficulty(genesis)
        first_pos = _first_pos_block(export_path) if _needs_merge_scan(genesis["config"], difficulty) else None
        schedule = geth_schedule(genesis["config"], difficulty, first_pos)
        check_blob_schedule(genesis["config"])
        genesis_header = geth_genesis_header(genesis, schedule, alloc)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise BadInput(f"{genesis_json_path}: cannot build the genesis block: {exc}") from exc
    unsupported = {key: hex_int(genesis["config"][key]) for key in _GETH_UNSUPPORTED_TIMES if genesis["config"].get(key) is not None}
    header = BlockFileHeader(schedule.chain_id, schedule, genesis_header, alloc)
    genesis_hash, genesis_number = header.genesis_hash, header.genesis_number
    count, last_hash, seen_genesis = 0, genesis_hash, False
    with _atomic_output(dst) as tmp, BlockFileWriter.create(tmp, header) as writer:
        for offset, parts, data in _export_blocks(export_path):
            number, block_hash, parent, root = _header_info(parts[0])
            where = f"{export_path}: byte {offset}: block {number}"
            if number == genesis_number and count == 0 and not seen_genesis:
                if block_hash != genesis_hash:
                    raise BadInput(f"{where} (genesis) is 0x{block_hash.hex()}, but {genesis_json_path} builds 0x{genesis_hash.hex()}")
                seen_genesis = True
                continue
            if number != writer.last_number + 1:
                raise BadInput(f"{where}: expected block {writer.last_number + 1} (the export must run from genesis, in order)")
            if parent != last_hash:
                hint = f" (does {genesis_json_path} match this chain?)" if count == 0 else ""
                raise BadInput(f"{where}: parent 0x{parent.hex()} is not the previous block 0x{last_hash.hex()}{hint}")
            timestamp = int.from_bytes(parts[0][11], "big")
            for key, at in unsupported.items():
                if timestamp >= at:
                    raise BadInput(f"{where} is past {key} ({at}): evmpipe runs forks up to Prague")
            writer.append(number, block_hash, data, root)
            count, last_hash = count + 1, block_hash
    return ConvertSummary(count, writer.last_number, last_hash)
