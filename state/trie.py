"""Merkle-Patricia-Trie root computation for Ethereum state, in pure Python.

Why this module exists: py-trie's ``HexaryTrie`` walks the trie one key at a
time, re-encoding and re-hashing every node on the path for every key.  Here a
whole batch is handled in one pass: keys are sorted, the trie is built (or the
affected paths rebuilt) recursively, and every new node is RLP-encoded and
hashed exactly once.

Internal conventions (kept private, chosen for speed):

* Paths are hex strings (``key.hex()``): one character per nibble, so slicing,
  comparing and common-prefix tests are plain ``str`` operations and the
  hex-prefix encoding is a single ``bytes.fromhex``.
* A *reference* to a child is the child's RLP *item* as it appears inside the
  parent: ``b"\\xa0" + hash`` for a hashed node, the node's own RLP for an
  embedded (< 32 bytes) node, ``b"\\x80"`` for empty.  A branch node is then
  re-encoded by concatenating its 17 items.
* A decoded node is a tuple: ``(0, path, value)`` leaf, ``(1, path, child_ref)``
  extension, ``(2, children, value_or_None)`` branch (``children``: 16 refs).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from eth_hash.auto import keccak

__all__ = [
    "BLANK_ROOT",
    "NodeGetter",
    "PathNodeGetter",
    "encode_account",
    "encode_storage_value",
    "ordered_trie_root",
    "rlp_int",
    "rlp_item",
    "rlp_list",
    "rlp_str",
    "root_from_items",
    "update_root",
]

BLANK_ROOT: bytes = bytes.fromhex(
    "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
)

NodeGetter = Callable[[bytes], bytes]
# (hash, nibble path where the node sits, as a hex string): for stores keyed by place
# (state.nodekeys); internally every read passes the path.
PathNodeGetter = Callable[[bytes, str], bytes]


def _keccak(data: bytes) -> bytes:
    """keccak256 without eth_hash's per-call type check (~1 us of a ~5 us
    node).  The first call goes through `keccak`, which settles whichever
    backend the rest of the program chose; then this global is rebound to
    that backend's raw hasher."""
    global _keccak
    h = keccak(data)
    _keccak = keccak.hasher  # type: ignore[assignment]
    return h


# A child slot: an encoded RLP item (bytes) or, transiently during an update,
# a decoded node not yet encoded (tuple), or None once deleted.
_Node = tuple[Any, ...]  # (kind, path_or_children, value_or_ref)
_Slot = Union[bytes, _Node, None]

_EMPTY = b"\x80"
_STR_HDR = [bytes((0x80 + i,)) for i in range(56)]
_LIST_HDR = [bytes((0xC0 + i,)) for i in range(56)]
_NIB = {c: i for i, c in enumerate("0123456789abcdef")}
_HEX = "0123456789abcdef"
_FULL_OFFSETS = range(3, 3 + 16 * 33, 33)
_FULL_MARKS = b"\xa0" * 16 + b"\x80"  # enc[3::33] of a full branch


# --------------------------------------------------------------------------
# RLP primitives (hand-written: ~5x faster than the generic ``rlp`` package
# for the handful of shapes trie nodes and accounts use)
# --------------------------------------------------------------------------


def rlp_str(b: bytes) -> bytes:
    """RLP-encode a byte string."""
    n = len(b)
    if n == 1 and b[0] < 0x80:
        return b
    if n < 56:
        return _STR_HDR[n] + b
    lb = n.to_bytes((n.bit_length() + 7) >> 3, "big")
    return bytes((0xB7 + len(lb),)) + lb + b


def rlp_list(payload: bytes) -> bytes:
    """Wrap an already-encoded concatenation of items in a list header."""
    n = len(payload)
    if n < 56:
        return _LIST_HDR[n] + payload
    lb = n.to_bytes((n.bit_length() + 7) >> 3, "big")
    return bytes((0xF7 + len(lb),)) + lb + payload


def rlp_int(v: int) -> bytes:
    """RLP-encode a non-negative integer (big-endian, minimal)."""
    if v == 0:
        return _EMPTY
    if v < 0x80:
        return bytes((v,))
    return rlp_str(v.to_bytes((v.bit_length() + 7) >> 3, "big"))


def encode_account(nonce: int, balance: int, storage_root: bytes, code_hash: bytes) -> bytes:
    """RLP of ``[nonce, balance, storage_root, code_hash]`` without the generic
    ``rlp`` machinery (it is called once per touched account per block)."""
    return rlp_list(
        rlp_int(nonce) + rlp_int(balance) + rlp_str(storage_root) + rlp_str(code_hash)
    )


def encode_storage_value(value: int) -> bytes:
    """Leaf value of a storage slot: RLP of the minimal big-endian bytes."""
    return rlp_int(value)


# --------------------------------------------------------------------------
# Node encoding / decoding
# --------------------------------------------------------------------------


def _encode(node: _Node) -> bytes:
    """RLP of a decoded node whose children are all refs (bytes)."""
    kind = node[0]
    if kind == 2:
        value = node[2]
        return rlp_list(b"".join(node[1]) + (rlp_str(value) if value else _EMPTY))
    path = node[1]
    if kind == 0:
        hp = bytes.fromhex(("3" + path) if len(path) & 1 else ("20" + path))
        return rlp_list(rlp_str(hp) + rlp_str(node[2]))
    hp = bytes.fromhex(("1" + path) if len(path) & 1 else ("00" + path))
    return rlp_list(rlp_str(hp) + node[2])


def _leaf_ref(path: str, value: bytes, store: Optional[dict[bytes, bytes]]) -> bytes:
    """_ref of a leaf, inlined: leaves are most of the nodes a build makes."""
    hp = bytes.fromhex(("3" + path) if len(path) & 1 else ("20" + path))
    n = len(value)
    payload = (hp if len(hp) == 1 else _STR_HDR[len(hp)] + hp) + (
        value if n == 1 and value[0] < 0x80 else _STR_HDR[n] + value if n < 56 else rlp_str(value)
    )
    return _reference(rlp_list(payload), store)


def _ref(node: _Node, store: Optional[dict[bytes, bytes]]) -> bytes:
    """Encode a node and return how its parent refers to it."""
    return _reference(_encode(node), store)


def _reference(enc: bytes, store: Optional[dict[bytes, bytes]]) -> bytes:
    """How a parent refers to an encoded node: inline if the encoding is under 32
    bytes, else by hash (recording the node in store)."""
    if len(enc) < 32:
        return enc
    h = _keccak(enc)
    if store is not None:
        store[h] = enc
    return b"\xa0" + h


def rlp_item(enc: bytes, pos: int) -> tuple[int, int]:
    """(content_start, item_end) of the RLP item starting at pos (well-formed input)."""
    b = enc[pos]
    if b < 0x80:
        return pos, pos + 1
    if b <= 0xB7:
        return pos + 1, pos + 1 + (b - 0x80)
    if b <= 0xBF:
        cs = pos + 1 + (b - 0xB7)
        return cs, cs + int.from_bytes(enc[pos + 1 : cs], "big")
    if b <= 0xF7:
        return pos + 1, pos + 1 + (b - 0xC0)
    cs = pos + 1 + (b - 0xF7)
    return cs, cs + int.from_bytes(enc[pos + 1 : cs], "big")


def _decode(enc: bytes) -> _Node:
    """Decode a node encoding into the tuple form.

    Branch children are almost always empty or a hash ref, so they are sliced
    out by a special-cased loop rather than a generic item splitter, and a
    full branch (16 hash refs, no value; 532 bytes) by fixed offsets.
    """
    if len(enc) == 532 and enc[3::33] == _FULL_MARKS:
        return (2, [enc[i : i + 33] for i in _FULL_OFFSETS], None)
    b0 = enc[0]
    p0 = 1 if b0 <= 0xF7 else b0 - 0xF6
    c0, p1 = rlp_item(enc, p0)
    c1, p2 = rlp_item(enc, p1)
    if p2 == len(enc):
        hexpath = enc[c0:p1].hex()
        flag = hexpath[0]
        path = hexpath[1:] if flag in "13" else hexpath[2:]
        if flag in "23":
            return (0, path, enc[c1:p2])
        return (1, path, enc[p1:p2])
    children = [enc[p0:p1], enc[p1:p2]]
    append = children.append
    pos = p2
    for _ in range(14):
        b = enc[pos]
        if b == 0x80:
            append(_EMPTY)
            pos += 1
        elif b == 0xA0:
            e = pos + 33
            append(enc[pos:e])
            pos = e
        else:
            e = rlp_item(enc, pos)[1]
            append(enc[pos:e])
            pos = e
    if enc[pos] == 0x80:
        return (2, children, None)
    cs, e = rlp_item(enc, pos)
    return (2, children, enc[cs:e])


# --------------------------------------------------------------------------
# Builder over a sorted key range
# --------------------------------------------------------------------------


def _build(
    ks: list[str], vs: list[bytes], lo: int, hi: int, d: int, store: Optional[dict[bytes, bytes]]
) -> _Node:
    """Node holding the (sorted, unique, non-empty) keys ks[lo:hi], all of
    which share their first d nibbles; children are encoded once, here."""
    if hi - lo == 1:
        return (0, ks[lo][d:], vs[lo])
    first = ks[lo]
    last = ks[hi - 1]
    if len(first) > d and first[d] == last[d]:
        m = min(len(first), len(last))
        cp = d + 1
        while cp < m and first[cp] == last[cp]:
            cp += 1
        return (1, first[d:cp], _ref(_build_branch(ks, vs, lo, hi, cp, store), store))
    return _build_branch(ks, vs, lo, hi, d, store)


def _build_branch(
    ks: list[str], vs: list[bytes], lo: int, hi: int, d: int, store: Optional[dict[bytes, bytes]]
) -> _Node:
    """Branch at depth d for ks[lo:hi] (which diverge at nibble d, or one of
    which ends exactly at d and becomes the branch value)."""
    children = [_EMPTY] * 16
    value = None
    if len(ks[lo]) == d:
        value = vs[lo]
        lo += 1
    i = lo
    while i < hi:
        k = ks[i]
        c = k[d]
        if i + 1 == hi or ks[i + 1][d] != c:
            children[_NIB[c]] = _leaf_ref(k[d + 1 :], vs[i], store)
            i += 1
            continue
        # chr(ord(c)+1) sorts after every key with nibble c at d (':' after '9').
        j = bisect_left(ks, k[:d] + chr(ord(c) + 1), i + 2, hi)
        children[_NIB[c]] = _ref(_build(ks, vs, i, j, d + 1, store), store)
        i = j
    return (2, children, value)


def root_from_items(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Root of a trie holding exactly these (key, value) pairs.

    Keys are raw trie keys of any length, in any order (a repeated key keeps
    its last value); values are the already-RLP-encoded leaf values.  An empty
    value means "absent", as in HexaryTrie.  Each node is encoded and hashed
    once, like geth's StackTrie / reth's HashBuilder.
    """
    d = {k: v for k, v in items if v}
    if not d:
        return BLANK_ROOT
    keys = sorted(d)
    vs = [d[k] for k in keys]
    ks = [k.hex() for k in keys]
    return _keccak(_encode(_build(ks, vs, 0, len(ks), 0, None)))


def _index_key(i: int) -> bytes:
    """rlp.encode(i) for a list index."""
    return rlp_int(i)


def ordered_trie_root(values: list[bytes]) -> bytes:
    """Root of the transaction/receipt/withdrawal trie: key rlp(index), value
    the item's encoding as given (for typed txs/receipts the typed envelope),
    i.e. the root of py-evm's ``make_trie_root_and_nodes``."""
    return root_from_items((_index_key(i), v) for i, v in enumerate(values))


# --------------------------------------------------------------------------
# Batched update
# --------------------------------------------------------------------------


def _build_range(
    ks: list[str], vs: list[Optional[bytes]], lo: int, hi: int, d: int, store: dict[bytes, bytes]
) -> Optional[_Node]:
    """Node for the insertions in ks[lo:hi] (deletions dropped) under an
    empty subtree."""
    for i in range(lo, hi):
        if not vs[i]:
            fk = [ks[j] for j in range(lo, hi) if vs[j]]
            if not fk:
                return None
            fv = [v for v in vs[lo:hi] if v]
            return _build(fk, fv, 0, len(fk), d, store)
    return _build(ks, vs, lo, hi, d, store)  # type: ignore[arg-type]


def _update(
    slot: _Slot,
    d: int,
    ks: list[str],
    vs: list[Optional[bytes]],
    lo: int,
    hi: int,
    get_node: PathNodeGetter,
    store: dict[bytes, bytes],
) -> Optional[_Node]:
    """Apply changes ks[lo:hi] (sharing their first d nibbles) to the subtree
    in `slot` (a child ref or a decoded node) rooted at depth d; return the
    new subtree unencoded so that the parent can still merge paths into it
    before it is encoded, once."""
    if type(slot) is tuple:
        node: Optional[_Node] = slot
    elif slot is None or slot == _EMPTY:
        node = None
    elif len(slot) == 33:  # b"\xa0" + hash (embedded nodes are < 32 bytes)
        node = _decode(get_node(slot[1:], ks[lo][:d]))  # type: ignore[arg-type]
    else:
        node = _decode(slot)  # type: ignore[arg-type]
    if node is None:
        return _build_range(ks, vs, lo, hi, d, store)
    kind = node[0]

    if kind == 0:
        path = node[1]
        if hi - lo == 1 and ks[lo][d:] == path:
            v = vs[lo]
            return (0, path, v) if v else None
        # Fold the existing leaf into the change set and rebuild the range.
        full = ks[lo][:d] + path
        sub_k = ks[lo:hi]
        sub_v = vs[lo:hi]
        pos = bisect_left(sub_k, full)
        if pos == len(sub_k) or sub_k[pos] != full:
            sub_k.insert(pos, full)
            sub_v.insert(pos, node[2])
        return _build_range(sub_k, sub_v, 0, len(sub_k), d, store)

    if kind == 1:
        path = node[1]
        e = d + len(path)
        if ks[lo][d:e] == path and ks[hi - 1][d:e] == path:
            child = _update(node[2], e, ks, vs, lo, hi, get_node, store)
            if child is None:
                return None
            if child[0] == 2:
                return (1, path, _ref(child, store))
            return (child[0], path + child[1], child[2])
        # Changes leave the extension's path: split it into a one-child
        # branch (the shortened extension kept unencoded) and update that.
        children: list[_Slot] = [_EMPTY] * 16
        rest = path[1:]
        children[_NIB[path[0]]] = (1, rest, node[2]) if rest else node[2]
        return _update_branch(children, None, d, ks, vs, lo, hi, get_node, store, True)

    return _update_branch(list(node[1]), node[2], d, ks, vs, lo, hi, get_node, store, False)


def _update_branch(
    children: list[_Slot],
    value: Optional[bytes],
    d: int,
    ks: list[str],
    vs: list[Optional[bytes]],
    lo: int,
    hi: int,
    get_node: PathNodeGetter,
    store: dict[bytes, bytes],
    split: bool,
) -> Optional[_Node]:
    """Branch case of _update: recurse per nibble group, then either keep the
    branch (encoding changed children) or collapse it if one child is left.
    `split`: the branch came from splitting an extension, so one child may be
    a still-unencoded tuple that no change touched."""
    touched = []
    i = lo
    while i < hi:
        k = ks[i]
        c = k[d]
        if i + 1 == hi or ks[i + 1][d] != c:
            j = i + 1
        else:
            j = bisect_left(ks, k[:d] + chr(ord(c) + 1), i + 2, hi)
        n = _NIB[c]
        new = _update(children[n], d + 1, ks, vs, i, j, get_node, store)
        if new is None:
            children[n] = _EMPTY
        else:
            children[n] = new
            touched.append(n)
        i = j

    nlive = 16 - children.count(_EMPTY)  # tuples never compare equal to bytes
    if nlive > 1 or (nlive and value):
        for n in touched:
            children[n] = _ref(children[n], store)  # type: ignore[arg-type]
        for n in range(16) if split else ():
            ch = children[n]
            if type(ch) is tuple:
                children[n] = _ref(ch, store)
        return (2, children, value)
    if not nlive:
        return (0, "", value) if value else None
    # One child left and no value: the branch collapses into its child,
    # which may have to be fetched to learn whether it is a leaf/extension.
    n = next(n for n in range(16) if children[n] != _EMPTY)
    slot = children[n]
    if type(slot) is tuple:
        child: _Node = slot
    elif len(slot) == 33:  # type: ignore[arg-type]
        child = _decode(get_node(slot[1:], ks[lo][:d] + _HEX[n]))  # type: ignore[arg-type, index]
    else:
        child = _decode(slot)  # type: ignore[arg-type]
    if child[0] == 2:
        ref = _ref(child, store) if type(slot) is tuple else slot
        return (1, _HEX[n], ref)
    return (child[0], _HEX[n] + child[1], child[2])


def update_root(
    get_node: Union[NodeGetter, PathNodeGetter],
    root: bytes,
    changes: Mapping[bytes, Optional[bytes]],
    *,
    paths: bool = False,
) -> tuple[bytes, dict[bytes, bytes]]:
    """Apply a batch of changes (key -> new value, None/b"" to delete) to the
    trie with root `root`, reading its nodes through get_node (by hash; with
    `paths`, by hash and the nibble path where the node sits).

    Returns (new_root, new_nodes): new_nodes maps hash -> encoding for every
    hashed node this update created, plus the root node even when its
    encoding is shorter than 32 bytes (a later update must be able to read it
    by hash).  Keys are 32-byte hashed keys.
    """
    store: dict[bytes, bytes] = {}
    if not changes:
        return root, store
    keys = sorted(changes)
    ks = [k.hex() for k in keys]
    vs = [changes[k] for k in keys]
    if paths:
        get: PathNodeGetter = get_node  # type: ignore[assignment]
    else:
        by_hash: NodeGetter = get_node  # type: ignore[assignment]

        def get(node_hash: bytes, path: str) -> bytes:
            return by_hash(node_hash)

    node = None if root == BLANK_ROOT else _decode(get(root, ""))
    new = _update(node, 0, ks, vs, 0, len(ks), get, store)
    if new is None:
        return BLANK_ROOT, store
    enc = _encode(new)
    h = _keccak(enc)
    store[h] = enc
    return h, store
