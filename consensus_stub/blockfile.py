"""The native recorded block file: a msgpack record stream (spec: docs/BLOCKFILE.md).

Why this shape: a stream of self-checking records can be read in constant memory,
appended to by a recorder, and cut at any byte without losing the records before the
cut. Every record is one msgpack array ``[kind, body, crc32]``: ``body`` is the
msgpack encoding of the record's map and ``crc32 = zlib.crc32(body)``, so a flipped
byte shows as a checksum or framing error, and a torn write as a record the file ends
inside. Either is reported with the record's byte offset and the last good block,
after every good record before it has been handed out.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

import msgpack
import rlp
from eth_hash.auto import keccak

from execution.forks import FORKS, ForkSchedule
from pipeline.errors import BadInput

FORMAT_NAME = "evmpipe-blocks"
VERSION = 1
CREATED_BY = "evmpipe"
# Every file starts with the header record: a 3-element array, then the fixstr "header".
MAGIC = b"\x93\xa6header"

_READ_SIZE = 1 << 16
_MAX_RECORD = 1 << 30  # a length field past this is corruption, not a block
_HASH_LEN = 32

StrPath = str | os.PathLike[str]


class BlockFileError(BadInput):
    """A record that cannot be read: where it starts and what came before it."""

    def __init__(self, path: StrPath, offset: int, record: int, last_block: int | None, problem: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.record = record
        self.last_block = last_block
        self.problem = problem
        last = "none" if last_block is None else str(last_block)
        what = "header record" if record == 0 else f"record {record}"
        super().__init__(f"{self.path}: {what} at byte {offset}: {problem} (last good block: {last})")


@dataclass
class BlockFileHeader:
    """The chain a file's blocks run on: schedule, genesis header and allocation.

    `alloc` has the shape `consensus_stub.fixture.fixture_alloc` returns:
    address -> {"nonce": int, "balance": int, "code": bytes, "storage": {int: int}}.
    """

    chain_id: int
    schedule: ForkSchedule
    genesis_header_rlp: bytes
    alloc: dict[bytes, dict] = field(default_factory=dict)
    created_by: str = CREATED_BY

    @property
    def genesis_hash(self) -> bytes:
        return keccak(self.genesis_header_rlp)

    @property
    def genesis_number(self) -> int:
        return _header_number(self.genesis_header_rlp)


@dataclass(frozen=True)
class BlockRecord:
    """One block as stored: `offset` is where its record starts in the file."""

    number: int
    hash: bytes
    rlp: bytes
    offset: int
    state_root: bytes | None = None


def read_header(path: StrPath) -> BlockFileHeader:
    """The header record alone (reads no further than its end)."""
    with open(path, "rb") as stream:
        return _RecordReader(path, stream).read_header()


def iter_blocks(path: StrPath, start_after: int | None = None) -> Iterator[BlockRecord]:
    """Every block record in order, in constant memory.

    Raises `BlockFileError` (a `BadInput`) at the first bad record, after yielding all
    the good ones before it. With `start_after`, blocks numbered up to it are skipped
    (still read and checked: the file has no index).
    """
    with open(path, "rb") as stream:
        reader = _RecordReader(path, stream)
        reader.read_header()
        for record in reader.blocks():
            if start_after is None or record.number > start_after:
                yield record


class BlockFileWriter:
    """Writes records to a new file or to the end of an existing one.

    Each `append` is one `write` of one whole record; a crash mid-write leaves a torn
    tail that readers report and `open_append(..., repair=True)` cuts off.
    """

    def __init__(self, path: StrPath, stream: IO[bytes], header: BlockFileHeader, last_number: int) -> None:
        self.path = str(path)
        self.header = header
        self.last_number = last_number
        self.repaired: BlockFileError | None = None  # what open_append(repair=True) cut off
        self._stream = stream

    @classmethod
    def create(cls, path: StrPath, header: BlockFileHeader) -> BlockFileWriter:
        """A new file (replacing any file at `path`) holding just the header record."""
        record = _frame("header", _header_map(header))
        stream = open(path, "wb")
        try:
            stream.write(record)
        except BaseException:
            stream.close()
            raise
        return cls(path, stream, header, header.genesis_number)

    @classmethod
    def open_append(cls, path: StrPath, *, repair: bool = False) -> BlockFileWriter:
        """Reopen a file to add blocks after its last one.

        The whole file is checked first. A bad tail raises its `BlockFileError` unless
        `repair`, which cuts the file at the bad record's offset and keeps the error in
        `writer.repaired`. A bad header is never repaired.
        """
        with open(path, "rb") as stream:
            reader = _RecordReader(path, stream)
            header = reader.read_header()
            last = header.genesis_number
            cut: BlockFileError | None = None
            try:
                for record in reader.blocks():
                    last = record.number
            except BlockFileError as exc:
                if not repair:
                    raise BlockFileError(exc.path, exc.offset, exc.record, exc.last_block, exc.problem + "; open with repair=True to cut the file there") from exc
                cut = exc
        stream = open(path, "r+b")
        try:
            if cut is not None:
                stream.truncate(cut.offset)
            stream.seek(0, os.SEEK_END)
        except BaseException:
            stream.close()
            raise
        writer = cls(path, stream, header, last)
        writer.repaired = cut
        return writer

    def append(self, number: int, hash: bytes, rlp: bytes, state_root: bytes | None = None) -> None:
        """Add the next block; numbers must follow on from the last one."""
        if number != self.last_number + 1:
            raise ValueError(f"{self.path}: block {number} does not follow block {self.last_number}")
        if len(hash) != _HASH_LEN or (state_root is not None and len(state_root) != _HASH_LEN):
            raise ValueError(f"{self.path}: block {number}: hash and state root must be 32 bytes")
        body: dict[str, Any] = {"number": number, "hash": bytes(hash), "rlp": bytes(rlp)}
        if state_root is not None:
            body["state_root"] = bytes(state_root)
        self._stream.write(_frame("block", body))
        self.last_number = number

    def flush(self, *, sync: bool = False) -> None:
        """Push buffered records to the OS (and with `sync`, to the disk)."""
        self._stream.flush()
        if sync:
            os.fsync(self._stream.fileno())

    def close(self) -> None:
        if not self._stream.closed:
            self._stream.flush()
            self._stream.close()

    def __enter__(self) -> BlockFileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- framing ---------------------------------------------------------------------


def _frame(kind: str, body_map: dict[str, Any]) -> bytes:
    body = msgpack.packb(body_map, use_bin_type=True)
    return msgpack.packb([kind, body, zlib.crc32(body)], use_bin_type=True)


class _RecordReader:
    """Reads `[kind, body, crc]` records one at a time, tracking offsets."""

    def __init__(self, path: StrPath, stream: IO[bytes]) -> None:
        self.path = path
        self.stream = stream
        self.unpacker = msgpack.Unpacker(stream, read_size=_READ_SIZE, raw=False, max_buffer_size=_MAX_RECORD)
        self.index = 0  # the record about to be read; 0 is the header
        self.last_block: int | None = None
        self.header: BlockFileHeader | None = None

    def _fail(self, offset: int, problem: str) -> BlockFileError:
        return BlockFileError(self.path, offset, self.index, self.last_block, problem)

    def next_record(self) -> tuple[str, dict[str, Any], int] | None:
        """(kind, body map, offset) of the next record; None at a clean end of file."""
        offset = self.unpacker.tell()
        try:
            item = self.unpacker.unpack()
        except msgpack.OutOfData:
            end = self.stream.tell()
            if end == offset:
                return None
            raise self._fail(offset, f"the file ends {end - offset} bytes into the record (truncated)") from None
        except Exception as exc:  # msgpack raises several types for garbage
            raise self._fail(offset, f"not a valid record ({type(exc).__name__}: {exc})") from None
        try:
            kind, body_map = decode_frame(item)
        except RecordProblem as problem:
            raise self._fail(offset, str(problem)) from None
        return kind, body_map, offset

    def read_header(self) -> BlockFileHeader:
        prefix = self.stream.read(len(MAGIC))
        self.stream.seek(0)
        if prefix != MAGIC:
            raise BadInput(f"{self.path}: not an evmpipe block file (it does not start with a header record)")
        record = self.next_record()
        if record is None:
            raise BadInput(f"{self.path}: not an evmpipe block file (empty)")
        kind, body, offset = record
        if kind != "header" or body.get("format") != FORMAT_NAME:
            raise BadInput(f"{self.path}: not an evmpipe block file (first record is {kind!r}, format {body.get('format')!r})")
        version = body.get("version")
        if version != VERSION:
            raise BadInput(f"{self.path}: block file version {version!r} is not supported (this evmpipe reads version {VERSION})")
        try:
            header = _parse_header(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._fail(offset, f"bad header record: {exc}") from None
        self.header = header
        self.last_block = header.genesis_number
        self.index = 1
        return header

    def blocks(self) -> Iterator[BlockRecord]:
        assert self.header is not None, "read_header first"
        while True:
            record = self.next_record()
            if record is None:
                return
            kind, body, offset = record
            if kind != "block":
                raise self._fail(offset, f"unexpected {kind!r} record")
            block = self._block(body, offset)
            self.last_block = block.number
            self.index += 1
            yield block

    def _block(self, body: dict[str, Any], offset: int) -> BlockRecord:
        try:
            block = parse_block(body, offset)
        except RecordProblem as problem:
            raise self._fail(offset, str(problem)) from None
        expected = (self.last_block if self.last_block is not None else -1) + 1
        if block.number != expected:
            raise self._fail(offset, f"block {block.number} where block {expected} was due")
        return block


class RecordProblem(ValueError):
    """What is wrong with one record; the reader that met it adds where."""


def decode_frame(item: object) -> tuple[str, dict[str, Any]]:
    """(kind, body map) of one unpacked `[kind, body, crc32]` record, checksum checked."""
    if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], bytes) and isinstance(item[2], int)):
        raise RecordProblem("not a [kind, body, crc32] record")
    kind, body, crc = item
    if zlib.crc32(body) != crc:
        raise RecordProblem("checksum mismatch (corrupt record)")
    try:
        body_map = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise RecordProblem(f"record body does not decode ({exc})") from None
    if not isinstance(body_map, dict):
        raise RecordProblem("record body is not a map")
    return kind, body_map


def parse_block(body: dict[str, Any], offset: int) -> BlockRecord:
    """A block record's fields, type-checked."""
    number, block_hash, data, root = body.get("number"), body.get("hash"), body.get("rlp"), body.get("state_root")
    if not isinstance(number, int) or number < 0 or not isinstance(data, bytes) or not _is_hash(block_hash) or not (root is None or _is_hash(root)):
        raise RecordProblem("block record lacks number, 32-byte hash or rlp")
    return BlockRecord(number, block_hash, data, offset, root)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == _HASH_LEN


# --- header map <-> BlockFileHeader ------------------------------------------------


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _header_number(header_rlp: bytes) -> int:
    fields = rlp.decode(header_rlp)
    if not isinstance(fields, list) or len(fields) < 15 or not isinstance(fields[8], bytes):
        raise ValueError("genesis header is not an RLP header")
    return int.from_bytes(fields[8], "big")


def _header_map(header: BlockFileHeader) -> dict[str, Any]:
    _header_number(header.genesis_header_rlp)  # refuse to write a header that does not decode
    alloc: dict[bytes, dict[str, Any]] = {}
    for address in sorted(header.alloc):
        if len(address) != 20:
            raise ValueError(f"allocation address 0x{address.hex()} is not 20 bytes")
        fields = header.alloc[address]
        storage = fields.get("storage", {})
        alloc[bytes(address)] = {
            "nonce": int(fields.get("nonce", 0)),
            "balance": _int_bytes(int(fields.get("balance", 0))),
            "code": bytes(fields.get("code", b"")),
            "storage": [[slot.to_bytes(32, "big"), _int_bytes(storage[slot])] for slot in sorted(storage)],
        }
    schedule = header.schedule.to_dict()
    schedule["chain_id"] = header.chain_id
    return {
        "format": FORMAT_NAME,
        "version": VERSION,
        "chain_id": header.chain_id,
        "schedule": schedule,
        "genesis": {"header_rlp": bytes(header.genesis_header_rlp), "alloc": alloc},
        "created_by": header.created_by,
    }


def _parse_header(body: dict[str, Any]) -> BlockFileHeader:
    chain_id = body["chain_id"]
    schedule_map = dict(body["schedule"])
    schedule_map.setdefault("chain_id", chain_id)
    schedule = ForkSchedule.from_dict(schedule_map)
    unknown = [a.fork for a in schedule.activations if a.fork not in FORKS]
    if unknown or not schedule.activations:
        raise ValueError(f"schedule names forks this evmpipe does not run: {unknown}" if unknown else "empty fork schedule")
    genesis = body["genesis"]
    header_rlp = genesis["header_rlp"]
    if not isinstance(header_rlp, bytes) or not isinstance(chain_id, int):
        raise TypeError("chain_id or genesis header has the wrong type")
    _header_number(header_rlp)
    alloc: dict[bytes, dict] = {}
    for address, fields in genesis["alloc"].items():
        if not isinstance(address, bytes) or len(address) != 20:
            raise ValueError(f"allocation key {address!r} is not a 20-byte address")
        alloc[address] = {
            "nonce": int(fields["nonce"]),
            "balance": int.from_bytes(fields["balance"], "big"),
            "code": bytes(fields["code"]),
            "storage": {int.from_bytes(slot, "big"): int.from_bytes(value, "big") for slot, value in fields["storage"]},
        }
    return BlockFileHeader(chain_id, schedule, header_rlp, alloc, str(body.get("created_by", "")))
