"""Finding BlockchainTest fixtures: files, directories, archives, and ``-k`` selection.

An input PATH is one of:

* a JSON file (``*.json``) or a gzipped one (``*.json.gz``);
* a directory, searched recursively for ``*.json`` and ``*.json.gz``;
* a tar archive (``*.tar.gz``, ``*.tgz``, ``*.tar``) of such files, read as a stream:
  nothing is extracted to disk.

Discovery yields one :class:`WorkItem` per fixture FILE (a file holds several tests).
An item is small and picklable, so a worker process loads the file itself. A tar member
cannot be reached without decompressing the archive up to it, so the parent reads the
members once, in archive order, and the item carries the member's bytes.

Paths. Every test is named ``path::name``. ``path`` is the file's path relative to the
input root: a directory argument is the root of its files; an archive member keeps its
member name without a leading ``./``; a file argument is just its file name. When the
path to a file contains a ``BlockchainTests`` directory, the path starts there instead
(``BlockchainTests/GeneralStateTests/stCreate2/x.json``), so the same test has the same
name whether it was run from the archive, from an unpacked copy or by itself.

Selection (``-k``). A pattern selects the tests whose ``path::name`` contains it as a
substring (case-sensitive). With several patterns, a test is selected when any of them
matches. A pattern starting with ``!`` or ``not `` excludes instead: a test matching an
exclusion is dropped even if an inclusion selects it; with only exclusions, every other
test is selected.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline import jsonlimits

ANCHOR_DIR = "BlockchainTests"
JSON_SUFFIXES = (".json", ".json.gz")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
EXCLUDE_PREFIXES = ("!", "not ")


@dataclass(frozen=True)
class WorkItem:
    """One fixture file to run: where to read it and what to call it.

    ``source`` is a file on disk (the fixture itself, or the archive holding it);
    ``member`` is the tar member name, None for a plain file; ``path`` is the display
    path used in ``path::name``; ``data`` holds an archive member's bytes.
    """

    source: str
    member: str | None
    path: str
    size: int = 0
    data: bytes | None = field(default=None, repr=False, compare=False)

    def read_bytes(self) -> bytes:
        """The file's JSON text as bytes (gzip already undone)."""
        if self.data is not None:
            raw = self.data
        elif self.member is not None:
            raw = _read_member(self.source, self.member)
        else:
            raw = Path(self.source).read_bytes()
        name = self.member if self.member is not None else self.source
        if name.endswith(".gz"):
            raw = jsonlimits.inflate_bounded(raw)  # in chunks, refused past the bound: no gzip bomb
        return raw

    def load(self, raw: bytes | None = None) -> dict[str, Any]:
        """The parsed fixture file (test name -> test); ``raw`` is its bytes if already read."""
        data = jsonlimits.loads(self.read_bytes() if raw is None else raw)  # depth-bounded: no C stack overflow
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: top level is {type(data).__name__}, not an object")
        return data


@dataclass(frozen=True)
class Selection:
    """Parsed ``-k`` patterns; see the module docstring."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str] | None) -> Selection:
        include: list[str] = []
        exclude: list[str] = []
        for pattern in patterns or ():
            for prefix in EXCLUDE_PREFIXES:
                if pattern.startswith(prefix):
                    exclude.append(pattern[len(prefix):])
                    break
            else:
                include.append(pattern)
        return cls(tuple(include), tuple(exclude))

    def matches(self, test_id: str) -> bool:
        if any(p in test_id for p in self.exclude):
            return False
        return not self.include or any(p in test_id for p in self.include)

    def may_match_file(self, path: str, raw: bytes) -> bool:
        """False only when no test of this file can be selected, judged without parsing it.

        A test name is a key of the file, so it appears in ``raw``: an include pattern
        can match ``path::name`` only if it lies in the path, in the raw text, or
        starts at the end of ``path::`` and goes on into the raw text.
        """
        if not self.include:
            return True
        prefix = f"{path}::"
        for pattern in self.include:
            if pattern in prefix or pattern.encode() in raw:
                return True
            for cut in range(1, len(pattern)):
                if prefix.endswith(pattern[:cut]) and pattern[cut:].encode() in raw:
                    return True
        return False


def test_id(path: str, name: str) -> str:
    """The ``path::name`` string that patterns and the slow list match against."""
    return f"{path}::{name}"


test_id.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported


def is_archive(path: str | os.PathLike[str]) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def is_fixture_file(name: str) -> bool:
    return name.endswith(JSON_SUFFIXES)


def iter_work_items(
    paths: Sequence[str | os.PathLike[str]],
    *,
    with_data: bool | Callable[[str], bool] = True,
) -> Iterator[WorkItem]:
    """One item per fixture file under ``paths``, in a stable order.

    Archives are streamed; with ``with_data`` (the default) each member item carries
    its bytes, without it the items only name the members (a cheap listing; loading
    such an item decompresses the archive up to the member). ``with_data`` may also be
    a predicate on the item's path: only those members carry their bytes.
    Raises FileNotFoundError for a path that does not exist.
    """
    for raw_path in paths:
        path = Path(raw_path)
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {raw_path}")
        if path.is_dir():
            yield from _iter_directory(path)
        elif is_archive(path):
            yield from _iter_archive(path, with_data=with_data)
        else:
            yield WorkItem(
                source=str(path),
                member=None,
                path=_display_path(path, Path(path.name)),
                size=path.stat().st_size,
            )


def iter_tests(item: WorkItem, selection: Selection | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The selected ``(name, test)`` pairs of one fixture file; keys starting with "_" are not tests."""
    raw = item.read_bytes()
    if selection is not None and not selection.may_match_file(item.path, raw):
        return
    for name, test in item.load(raw).items():
        if name.startswith("_") or not isinstance(test, dict):
            continue
        if selection is None or selection.matches(test_id(item.path, name)):
            yield name, test


def discover_tests(paths: Sequence[str | os.PathLike[str]], patterns: Iterable[str] | None = None) -> Iterator[tuple[WorkItem, str, dict[str, Any]]]:
    """Every selected test under ``paths``, loaded in this process (for listing and tests)."""
    selection = Selection.parse(patterns)
    for item in iter_work_items(paths):
        for name, test in iter_tests(item, selection):
            yield item, name, test


def _iter_directory(root: Path) -> Iterator[WorkItem]:
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and is_fixture_file(p.name)
    )
    for file in files:
        yield WorkItem(
            source=str(file),
            member=None,
            path=_display_path(file, file.relative_to(root)),
            size=file.stat().st_size,
        )


def _iter_archive(archive: Path, *, with_data: bool | Callable[[str], bool]) -> Iterator[WorkItem]:
    with tarfile.open(archive, mode="r|*") as tar:  # stream: no seeking, no extraction
        for member in tar:
            if not member.isfile() or not is_fixture_file(member.name):
                continue
            name = _member_path(member.name)
            path = _anchor(PurePosixPath(name)) or name
            data = None
            if with_data is True or (callable(with_data) and with_data(path)):
                extracted = tar.extractfile(member)
                assert extracted is not None  # a regular file always has a reader
                data = jsonlimits.read_bounded(extracted)
            yield WorkItem(
                source=str(archive),
                member=member.name,
                path=path,
                size=member.size,
                data=data,
            )


def _read_member(archive: str, member_name: str) -> bytes:
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            if member.name == member_name:
                extracted = tar.extractfile(member)
                if extracted is None:
                    break
                return jsonlimits.read_bounded(extracted)
    raise FileNotFoundError(f"{member_name} not in {archive}")


def _member_path(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _display_path(file: Path, relative: Path) -> str:
    """``relative`` as a POSIX string, unless the file's full path has a ``BlockchainTests`` anchor."""
    anchored = _anchor(PurePosixPath(file.resolve().as_posix()))
    return anchored or relative.as_posix()


def _anchor(path: PurePosixPath) -> str | None:
    """The part of ``path`` from its last ``BlockchainTests`` directory, if any."""
    parts = path.parts[:-1]
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == ANCHOR_DIR:
            return PurePosixPath(*path.parts[index:]).as_posix()
    return None
