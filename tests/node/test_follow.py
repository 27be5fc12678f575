"""consensus_stub/follow.py: a growing file (torn tail = not yet, corruption = error),
a drop directory, and the header that is not there yet."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import rlp
import trio

from consensus_stub.blockfile import BlockFileError, BlockFileHeader, BlockFileWriter
from consensus_stub.follow import DirectoryFollower, FileCursor, FileFollower
from pipeline.errors import BadInput
from tests.node.helpers import SAMPLE, sample, write_chain


def _record_bytes() -> tuple[bytes, list[bytes]]:
    """The sample's header record and each block record, as bytes."""
    data = SAMPLE.read_bytes()
    _, records = sample()
    offsets = [r.offset for r in records] + [len(data)]
    return data[: offsets[0]], [data[a:b] for a, b in zip(offsets, offsets[1:])]


def test_torn_tail_is_not_yet_then_completes(tmp_path: Path) -> None:
    head, blocks = _record_bytes()
    path = tmp_path / "chain.blocks"
    path.write_bytes(head + blocks[0] + blocks[1][:100])
    cursor = FileCursor(path)
    assert cursor.try_header() is not None
    first = cursor.poll()
    assert [r.number for r in first.records] == [1] and first.pending == 100
    assert cursor.poll().records == []  # still incomplete: nothing, no error
    with open(path, "ab") as out:
        out.write(blocks[1][100:] + blocks[2])
    assert [r.number for r in cursor.poll().records] == [2, 3]
    assert cursor.poll().pending == 0


def test_corrupt_record_is_an_error_with_its_offset(tmp_path: Path) -> None:
    head, blocks = _record_bytes()
    damaged = bytearray(blocks[1])
    damaged[len(damaged) // 2] ^= 0xFF
    path = tmp_path / "chain.blocks"
    path.write_bytes(head + blocks[0] + bytes(damaged) + blocks[2])
    cursor = FileCursor(path)
    cursor.try_header()
    with pytest.raises(BlockFileError) as caught:
        cursor.poll()
    assert caught.value.offset == len(head) + len(blocks[0]) and caught.value.last_block == 1


def test_header_not_yet_then_present(tmp_path: Path) -> None:
    head, _ = _record_bytes()
    path = tmp_path / "chain.blocks"
    cursor = FileCursor(path)
    assert cursor.try_header() is None  # no file yet
    path.write_bytes(head[:10])
    assert cursor.try_header() is None  # header still being written
    path.write_bytes(head)
    assert cursor.try_header() is not None
    (tmp_path / "other").write_bytes(b"hello, not a block file")
    with pytest.raises(BadInput):
        FileCursor(tmp_path / "other").try_header()


async def test_file_follower_skips_committed_and_waits(tmp_path: Path) -> None:
    header, records = sample()
    path = tmp_path / "chain.blocks"
    write_chain(path, header, records[:3])
    follower = FileFollower(path, poll=0.01)
    await follower.open()
    seen: list[int] = []
    with trio.move_on_after(0.3):
        async for record in follower.records(start_after=1):
            seen.append(record.number)
    assert seen == [2, 3]


async def test_directory_follower_reads_files_in_order(tmp_path: Path) -> None:
    header, records = sample()
    drop = tmp_path / "drop"
    drop.mkdir()
    write_chain(drop / "001.blocks", header, records[:2])
    follower = DirectoryFollower(drop, poll=0.01)
    assert (await follower.open()).genesis_hash == header.genesis_hash
    seen: list[int] = []

    async def collect() -> None:
        async for record in follower.records():
            seen.append(record.number)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await trio.sleep(0.1)
        assert seen == [1, 2]
        second = tmp_path / "002.blocks"
        with BlockFileWriter.create(second, header) as writer:
            writer.last_number = 2
            for record in records[2:]:
                writer.append(record.number, record.hash, record.rlp, record.state_root)
        (drop / ".partial.tmp").write_bytes(b"ignored: a hidden temporary")
        shutil.move(second, drop / "002.blocks")
        with trio.fail_after(5):
            while len(seen) < 4:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert seen == [1, 2, 3, 4]


async def test_directory_follower_refuses_another_chain(tmp_path: Path) -> None:
    header, records = sample()
    drop = tmp_path / "drop"
    drop.mkdir()
    write_chain(drop / "a.blocks", header, records[:1])
    fields = rlp.decode(header.genesis_header_rlp)
    fields[12] = b"another chain"  # extra data: another genesis hash, same state
    other = BlockFileHeader(header.chain_id, header.schedule, rlp.encode(fields), header.alloc)
    with BlockFileWriter.create(drop / "b.blocks", other):
        pass
    follower = DirectoryFollower(drop, poll=0.01)
    await follower.open()
    with pytest.raises(BadInput, match="genesis"):
        async for _ in follower.records():
            pass


async def test_directory_follower_torn_file_followed_by_another_is_an_error(tmp_path: Path) -> None:
    head, blocks = _record_bytes()
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.blocks").write_bytes(head + blocks[0] + blocks[1][:50])
    (drop / "b.blocks").write_bytes(head)
    follower = DirectoryFollower(drop, poll=0.01)
    await follower.open()
    seen = []
    with pytest.raises(BlockFileError, match="b.blocks came after it"):
        async for record in follower.records():
            seen.append(record.number)
    assert seen == [1]
