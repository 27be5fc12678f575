"""JSON from untrusted hands, read with two bounds: nesting depth and inflated size.

Why a nesting bound: py_ecc (imported by py-evm) raises the interpreter's recursion
limit to 100,000 so deep EVM call stacks fit. The C JSON decoder counts its nesting
against that limit, so `'[' * 100000` no longer raises `RecursionError`: it overflows
the C stack and the process dies (SIGSEGV, nothing logged). Lowering the limit again
is not an option while EVM code runs on other threads, so the depth is measured
before decoding, in C-speed passes (strings cut out by splitting on quotes, or by a
regex when an escaped quote is present; everything but brackets deleted by
`bytes.translate`), and a too-deep document is refused.

Why a size bound: a gzip file of 1 MB can inflate to 1 GB. Files are inflated in
chunks and given up on as soon as the text passes the bound, so a bomb costs at most
the bound in memory, never the whole inflation.
"""
from __future__ import annotations

import gzip
import json
import re
from itertools import accumulate, count
from operator import sub
from pathlib import Path
from typing import Any, Protocol

MAX_DEPTH = 128  # arrays and objects inside one another; BlockchainTest files use ~8, JSON-RPC ~6
MAX_FILE_BYTES = 512 * 1024 * 1024  # JSON text of one file after gzip is undone
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")  # +1 / -1 as 2 / 0, shifted back below


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class JsonLimitError(ValueError):
    """A JSON document over one of the bounds (a `ValueError`, as a parse error is)."""


def nesting_depth(text: bytes | str) -> int:
    """The deepest nesting of arrays and objects in `text` (brackets inside strings not counted)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return raw.count(b"[") + raw.count(b"{")
    if b'\\"' in raw:  # an escaped quote: strings must be matched one by one
        outside = _STRING.sub(b"", raw)
    else:  # quotes alternate: every other piece between them is outside any string
        outside = b"".join(raw.split(b'"')[0::2])
    brackets = outside.translate(None, _NOT_BRACKETS).translate(_STEP)
    if not brackets:
        return 0
    # the running sum of the +1 / -1 steps: each step is stored as step + 1, so the
    # depth after the i-th bracket is the sum of the first i stored values minus i
    deepest: int = max(map(sub, accumulate(brackets), count(1)))
    return max(0, deepest)


def check_depth(text: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise `JsonLimitError` if `text` nests deeper than `limit` (cheap when it cannot)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    depth = nesting_depth(raw)
    if depth > limit:
        raise JsonLimitError(f"JSON nested {depth} levels deep; at most {limit}")


def loads(text: bytes | str, limit: int = MAX_DEPTH, **options: Any) -> Any:
    """`json.loads` that refuses documents nested deeper than `limit` instead of crashing."""
    check_depth(text, limit)
    try:
        return json.loads(text, **options)
    except RecursionError as exc:  # a lower recursion limit than the check's: still an error, not a crash
        raise JsonLimitError(f"JSON nested too deep to decode ({exc})") from None


def read_bounded(stream: Readable, limit: int | None = None) -> bytes:
    """All of `stream`, read in chunks; `JsonLimitError` as soon as it passes `limit`
    bytes (default `MAX_FILE_BYTES`, read at call time)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise JsonLimitError(f"more than {limit} bytes of JSON text (after gzip is undone); refused")
        parts.append(chunk)


def read_text(path: str | Path, limit: int | None = None) -> bytes:
    """A file's bytes, gzip undone (detected by its magic), bounded by `limit`."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if not gzipped:
            return read_bounded(raw, limit)
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            return read_bounded(stream, limit)


def inflate_bounded(data: bytes, limit: int | None = None) -> bytes:
    """gzip-compressed bytes inflated in chunks, bounded by `limit`."""
    import io

    with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
        return read_bounded(stream, limit)


def load_file(path: str | Path, limit: int | None = None, depth: int = MAX_DEPTH) -> Any:
    """A JSON file (plain or gzip) with both bounds; `ValueError`s name no file: callers do."""
    return loads(read_text(path, limit), depth)
