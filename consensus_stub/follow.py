"""Block sources for a long-running node: a growing block file, a drop directory.

A recorder appends whole records to a native block file (docs/BLOCKFILE.md), so a
reader that polls sees, at the end of the file, either nothing new, whole new
records, or a record still being written. msgpack is prefix-free: the bytes of a
record cut short never decode as a complete object, so an incomplete tail is "not
yet" and the next poll tries again from its offset. Anything else that does not read
(checksum mismatch, garbage, a record of the wrong kind) is corruption, raised as a
`BlockFileError` naming the byte offset: the node logs it and stops intake.

Record numbers are not required to follow on: after an invalid block a recorder may
write another block at the same height, and the pipeline, not the file, decides
which block is valid.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, AsyncIterator, Callable, Protocol, TypeVar

import msgpack
import structlog
import trio

from consensus_stub.blockfile import MAGIC, BlockFileError, BlockFileHeader, BlockRecord, RecordProblem, decode_frame, parse_block, read_header
from pipeline.errors import BadInput

DEFAULT_POLL = 0.2  # seconds between polls of a file that has nothing new
MAX_BATCH = 64  # records read per poll: bounds memory when resuming on a long file
STALL_WARNING = 60.0  # seconds an incomplete tail may sit unchanged before a warning
TRANSIENT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR})
TRANSIENT_RETRY = 1.0  # seconds before reading again after a transient failure
_MAX_RECORD = 1 << 30

_log = structlog.get_logger("evmpipe.source")


class BlockSource(Protocol):
    """What the node reads blocks from: a chain header first, then block records."""

    description: str

    async def open(self) -> BlockFileHeader:
        """The chain's header; waits until the source has one."""

    def records(self, start_after: int | None = None) -> AsyncIterator[BlockRecord]:
        """Block records in order, waiting for new ones; ends only if the source does.
        Records numbered up to `start_after` (the committed head) are skipped."""


@dataclass
class Poll:
    """What one read of a file found after `offset`."""

    records: list[BlockRecord]
    offset: int  # where the next unread record starts
    pending: int  # bytes of an incomplete record after `offset` (0: a clean end)


class FileCursor:
    """Reads the complete records of one growing file, remembering where it stopped."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.header: BlockFileHeader | None = None
        self.offset = 0
        self.index = 1  # records read, the header being record 0
        self.last_block: int | None = None
        self._pending_since: float | None = None
        self._warned = False
        self._stream: IO[bytes] | None = None  # kept open between polls: no descriptor needed per poll

    def _reader(self) -> IO[bytes]:
        """The open file, reopened only when the path names another file (replaced)."""
        if self._stream is not None:
            same = os.stat(self.path)
            held = os.fstat(self._stream.fileno())
            if (same.st_dev, same.st_ino) == (held.st_dev, held.st_ino):
                return self._stream
            self.close()
        self._stream = open(self.path, "rb")
        return self._stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def try_header(self) -> BlockFileHeader | None:
        """The header once its record is complete; None while the file is missing or short."""
        try:
            with open(self.path, "rb") as stream:
                prefix = stream.read(len(MAGIC))
                if len(prefix) < len(MAGIC) and MAGIC.startswith(prefix):
                    return None
                if prefix != MAGIC:
                    raise BadInput(f"{self.path}: not an evmpipe block file (it does not start with a header record)")
                stream.seek(0)
                unpacker = msgpack.Unpacker(stream, raw=False, max_buffer_size=_MAX_RECORD)
                try:
                    unpacker.skip()
                except msgpack.OutOfData:
                    return None  # the header record is still being written
                except Exception as exc:
                    raise BadInput(f"{self.path}: the header record does not read ({exc})") from None
                end = unpacker.tell()
        except FileNotFoundError:
            return None
        self.header = read_header(self.path)  # checks what the header says
        self.offset = end
        self.last_block = self.header.genesis_number
        return self.header

    def poll(self, max_records: int = MAX_BATCH) -> Poll:
        """Read what complete records there are (blocking: call it on a worker thread)."""
        records: list[BlockRecord] = []
        stream = self._reader()  # kept open: a poll takes no new descriptor
        size = os.fstat(stream.fileno()).st_size
        if size < self.offset:
            raise self.fail(self.offset, f"the file shrank to {size} bytes: it was truncated or replaced")
        stream.seek(self.offset)
        unpacker = msgpack.Unpacker(stream, read_size=1 << 16, raw=False, max_buffer_size=_MAX_RECORD)
        at_end = False
        consumed = 0  # bytes of whole records (tell() is unreliable after OutOfData)
        while len(records) < max_records:
            start = self.offset + consumed
            try:
                item = unpacker.unpack()
            except msgpack.OutOfData:
                at_end = True
                break
            except Exception as exc:  # msgpack raises several types for garbage
                raise self.fail(start, f"not a valid record ({type(exc).__name__}: {exc})") from None
            record = self._block(item, start)
            records.append(record)
            consumed = unpacker.tell()
            self.last_block = record.number
            self.index += 1
        self.offset += consumed
        pending = os.fstat(stream.fileno()).st_size - self.offset if at_end else 0
        self._watch_stall(pending)
        return Poll(records, self.offset, pending)

    def _watch_stall(self, pending: int) -> None:
        """An incomplete tail that never completes may be a corrupt length: say so once."""
        if pending <= 0:
            self._pending_since, self._warned = None, False
            return
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        elif not self._warned and now - self._pending_since > STALL_WARNING:
            self._warned = True
            _log.warning("incomplete_record", file=self.path, offset=self.offset, bytes=pending, seconds=round(now - self._pending_since))

    def fail(self, offset: int, problem: str) -> BlockFileError:
        return BlockFileError(self.path, offset, self.index, self.last_block, problem)

    def _block(self, item: Any, offset: int) -> BlockRecord:
        try:
            kind, body = decode_frame(item)
            if kind != "block":
                raise RecordProblem(f"unexpected {kind!r} record")
            return parse_block(body, offset)
        except RecordProblem as problem:
            raise self.fail(offset, str(problem)) from None


_T = TypeVar("_T")


async def _read(function: Callable[[], _T], what: str) -> _T:
    """Run a blocking read on a worker thread; a transient OS failure (out of file
    descriptors or memory for a moment, e.g. under a connection flood) is waited out
    and retried rather than stopping intake for good."""
    warned = False
    while True:
        try:
            return await trio.to_thread.run_sync(function)
        except OSError as error:
            if error.errno not in TRANSIENT_ERRNOS:
                raise
            if not warned:
                _log.warning("source_read_deferred", source=what, error=str(error), note=f"retrying every {TRANSIENT_RETRY} s")
                warned = True
            await trio.sleep(TRANSIENT_RETRY)


async def _wait_header(cursor: FileCursor, poll: float, what: str) -> BlockFileHeader:
    announced = False
    while True:
        header = await _read(cursor.try_header, what)
        if header is not None:
            return header
        if not announced:
            _log.info("waiting_for_header", source=what)
            announced = True
        await trio.sleep(poll)


class FileFollower:
    """`tail -f` for a native block file: every complete record, then wait for more."""

    def __init__(self, path: str | os.PathLike[str], poll: float = DEFAULT_POLL) -> None:
        self.cursor = FileCursor(path)
        self.poll = poll
        self.description = f"file {path}"

    async def open(self) -> BlockFileHeader:
        return await _wait_header(self.cursor, self.poll, self.description)

    async def records(self, start_after: int | None = None) -> AsyncIterator[BlockRecord]:
        while True:
            found = await _read(self.cursor.poll, self.description)
            for record in found.records:
                if start_after is None or record.number > start_after:
                    yield record
            if not found.records:
                await trio.sleep(self.poll)


class DirectoryFollower:
    """Block files dropped into a directory, read in name order as one chain.

    Genesis comes from the first file; every later file must name the same genesis.
    The newest file is followed like a growing file; once a file with a later name
    appears, the one before it is finished, and an incomplete record at its end is
    an error. Names starting with "." are ignored (converters write temporaries so).
    """

    def __init__(self, directory: str | os.PathLike[str], poll: float = DEFAULT_POLL) -> None:
        self.directory = Path(directory)
        self.poll = poll
        self.description = f"directory {directory}"
        self.header: BlockFileHeader | None = None
        self.cursor: FileCursor | None = None

    def _files(self) -> list[str]:
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory) if entry.is_file() and not entry.name.startswith("."))
        except FileNotFoundError:
            return []
        return names

    def _next_file(self) -> str | None:
        current = Path(self.cursor.path).name if self.cursor else None
        later = [name for name in self._files() if current is None or name > current]
        return later[0] if later else None

    async def open(self) -> BlockFileHeader:
        announced = False
        while True:
            first = await _read(self._next_file, self.description)
            if first is not None:
                break
            if not announced:
                _log.info("waiting_for_block_file", source=self.description)
                announced = True
            await trio.sleep(self.poll)
        self.cursor = FileCursor(self.directory / first)
        self.header = await _wait_header(self.cursor, self.poll, f"file {self.cursor.path}")
        return self.header

    async def records(self, start_after: int | None = None) -> AsyncIterator[BlockRecord]:
        assert self.cursor is not None and self.header is not None, "open() first"
        while True:
            found = await _read(self.cursor.poll, self.description)
            for record in _after(found.records, start_after):
                yield record
            if found.records:
                continue
            following = await _read(self._next_file, self.description)
            if following is None:
                await trio.sleep(self.poll)
                continue
            # A later file exists: this one is finished. Read once more in case the
            # last record landed after the poll above, then it must end cleanly.
            found = await _read(self.cursor.poll, self.description)
            for record in _after(found.records, start_after):
                yield record
            if found.records:
                continue
            if found.pending:
                raise self.cursor.fail(found.offset, f"the file ends {found.pending} bytes into a record, and {following} came after it")
            await self._switch(following)

    async def _switch(self, name: str) -> None:
        cursor = FileCursor(self.directory / name)
        header = await _wait_header(cursor, self.poll, f"file {cursor.path}")
        assert self.header is not None
        if header.genesis_hash != self.header.genesis_hash:
            raise BadInput(f"{cursor.path}: genesis 0x{header.genesis_hash.hex()} is not this chain's (0x{self.header.genesis_hash.hex()})")
        _log.info("next_block_file", file=cursor.path)
        if self.cursor is not None:
            self.cursor.close()
        self.cursor = cursor


def _after(records: list[BlockRecord], start_after: int | None) -> list[BlockRecord]:
    """The records past the committed head (all of them when there is none)."""
    return [r for r in records if start_after is None or r.number > start_after]
