"""The generator's two contracts: an ERC-20 `Token` and a constant-product `Pair`.

Both are written in Vyper (sources in `evmpipe/gen/contracts/*.vy`) and compiled with
Vyper 0.4.3 for Cancun without the CBOR metadata trailer; the runtime bytecode is
committed next to the sources (`*.runtime.hex`) so that generating workloads does not
need the compiler. `python -m evmpipe.gen.contracts` recompiles them (vyper must be
installed); the tests check that a recompilation reproduces the committed hex.

Contracts are not deployed by transactions: the generator writes their runtime code
and initial storage straight into the genesis allocation. This module therefore also
knows their storage layout (from `vyper -f layout`), their ABI and the pool's swap
arithmetic, so the planner can predict every transaction's outcome exactly.

Vyper's storage layout: a `HashMap` at slot `p` keeps `m[k]` at
`keccak256(p ++ k)` (both as 32-byte words; note the order, the reverse of
Solidity's), nested maps hash again: `m[a][b]` at `keccak256(keccak256(p ++ a) ++ b)`.
"""
from __future__ import annotations

import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path

from eth_hash.auto import keccak

SOURCE_DIR = Path(__file__).with_name("contracts")
CONTRACTS = ("Token", "Pair")
VYPER_VERSION = "0.4.3"
EVM_VERSION = "cancun"
COMPILER_FLAGS = ("--evm-version", EVM_VERSION, "--no-bytecode-metadata")

# -- storage layout ---------------------------------------------------------------

TOKEN_BALANCES_SLOT = 0  # balanceOf: HashMap[address, uint256]
TOKEN_ALLOWANCES_SLOT = 1  # allowance: HashMap[address, HashMap[address, uint256]]
TOKEN_TOTAL_SUPPLY_SLOT = 2  # totalSupply: uint256

PAIR_TOKEN0_SLOT = 0
PAIR_TOKEN1_SLOT = 1
PAIR_RESERVES_SLOT = 2  # reserve0 | reserve1 << 112 | blockTimestampLast << 224
PAIR_PRICE0_SLOT = 3
PAIR_PRICE1_SLOT = 4

MAX_UINT256 = 2**256 - 1
MASK112 = 2**112 - 1
FEE_NUM = 997
FEE_DEN = 1000

# -- ABI ----------------------------------------------------------------------------


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


SEL_TRANSFER = selector("transfer(address,uint256)")
SEL_TRANSFER_FROM = selector("transferFrom(address,address,uint256)")
SEL_APPROVE = selector("approve(address,uint256)")
SEL_BALANCE_OF = selector("balanceOf(address)")
SEL_ALLOWANCE = selector("allowance(address,address)")
SEL_TOTAL_SUPPLY = selector("totalSupply()")
SEL_SWAP = selector("swap(bool,uint256,uint256,address)")
SEL_GET_RESERVES = selector("getReserves()")
SEL_GET_AMOUNT_OUT = selector("getAmountOut(bool,uint256)")

TOPIC_TRANSFER = keccak(b"Transfer(address,address,uint256)")
TOPIC_SYNC = keccak(b"Sync(uint256,uint256)")
TOPIC_SWAP = keccak(b"Swap(address,uint256,uint256,uint256,uint256,address)")


def word(value: int | bytes | bool) -> bytes:
    """One ABI word: an unsigned int, a bool or an address (left-padded)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).rjust(32, b"\0")
    return int(value).to_bytes(32, "big")


def encode_call(sel: bytes, *args: int | bytes | bool) -> bytes:
    return sel + b"".join(word(a) for a in args)


def transfer_data(receiver: bytes, amount: int) -> bytes:
    return encode_call(SEL_TRANSFER, receiver, amount)


def swap_data(zero_for_one: bool, amount_in: int, min_out: int, to: bytes) -> bytes:
    return encode_call(SEL_SWAP, zero_for_one, amount_in, min_out, to)


# -- storage slots --------------------------------------------------------------------


def map_slot(base: int, key: int | bytes) -> int:
    """Vyper's HashMap slot: keccak256(base ++ key)."""
    return int.from_bytes(keccak(word(base) + word(key)), "big")


def balance_slot(holder: bytes) -> int:
    return map_slot(TOKEN_BALANCES_SLOT, holder)


def allowance_slot(owner: bytes, spender: bytes) -> int:
    return map_slot(map_slot(TOKEN_ALLOWANCES_SLOT, owner), spender)


def pack_reserves(reserve0: int, reserve1: int, timestamp: int) -> int:
    assert 0 <= reserve0 <= MASK112 and 0 <= reserve1 <= MASK112
    return reserve0 | (reserve1 << 112) | ((timestamp % 2**32) << 224)


def unpack_reserves(packed: int) -> tuple[int, int, int]:
    return packed & MASK112, (packed >> 112) & MASK112, packed >> 224


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """The pool's output for `amount_in` (0.3% fee), exactly as `Pair._amount_out`."""
    with_fee = amount_in * FEE_NUM
    return with_fee * reserve_out // (reserve_in * FEE_DEN + with_fee)


def price_accumulator_step(reserve_a: int, reserve_b: int, elapsed: int) -> int:
    """What one update adds to price{0,1}CumulativeLast (UQ112x112, wraps)."""
    return ((reserve_b << 112) // reserve_a * elapsed) % 2**256


# -- bytecode -------------------------------------------------------------------------


def source_path(name: str) -> Path:
    return SOURCE_DIR / f"{name}.vy"


def hex_path(name: str) -> Path:
    return SOURCE_DIR / f"{name}.runtime.hex"


@lru_cache(maxsize=None)
def runtime_code(name: str) -> bytes:
    """The committed runtime bytecode of `name` ("Token" or "Pair")."""
    text = hex_path(name).read_text().strip()
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def source_sha256(name: str) -> str:
    return hashlib.sha256(source_path(name).read_bytes()).hexdigest()


def build_info() -> dict:
    """How the committed bytecode was made (recorded in every generated file)."""
    return {
        "language": "vyper",
        "vyper": VYPER_VERSION,
        "flags": list(COMPILER_FLAGS),
        "source_sha256": {name: source_sha256(name) for name in CONTRACTS},
        "code_sha256": {name: hashlib.sha256(runtime_code(name)).hexdigest() for name in CONTRACTS},
    }


def compile_runtime(name: str) -> bytes:
    """Compile `name` with the installed vyper (ImportError if it is absent)."""
    from vyper.compiler import compile_code  # type: ignore[import-not-found]
    from vyper.compiler.settings import Settings  # type: ignore[import-not-found]

    path = source_path(name)
    out = compile_code(
        path.read_text(),
        contract_path=path.name,
        output_formats=["bytecode_runtime"],
        settings=Settings(evm_version=EVM_VERSION),
        no_bytecode_metadata=True,
    )
    text = out["bytecode_runtime"]
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def installed_vyper_version() -> str | None:
    try:
        import vyper  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(getattr(vyper, "__version__", "unknown"))


def main(argv: list[str] | None = None) -> int:
    """Recompile the sources and rewrite the committed `*.runtime.hex` files."""
    version = installed_vyper_version()
    if version is None:
        print("vyper is not installed: pip install vyper==" + VYPER_VERSION, file=sys.stderr)
        return 2
    if not version.startswith(VYPER_VERSION):
        print(f"warning: vyper {version} installed, the committed code is from {VYPER_VERSION}", file=sys.stderr)
    for name in CONTRACTS:
        code = compile_runtime(name)
        hex_path(name).write_text(code.hex() + "\n")
        print(f"{name}: {len(code)} bytes, sha256 {hashlib.sha256(code).hexdigest()}")
    print(json.dumps(build_info(), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
