"""Fixes to py-evm's precompiles, installed once at import.

MODEXP ([EIP-198]): py-evm 0.12.1b1 returns 0 when the base is empty, but an empty
base is the number 0 and 0**0 mod m is 1 (for m > 1). The fixture vectors of
`eip198_modexp_precompile` check exactly this. We replace py-evm's inner function
`_modexp` (every fork's MODEXP precompile calls it), leaving gas pricing untouched.

POINT_EVALUATION ([EIP-4844]): py-evm loads the KZG trusted setup from disk on every
call (about 3 s each here); we load it once per process and keep it.

[EIP-198]: https://eips.ethereum.org/EIPS/eip-198
[EIP-4844]: https://eips.ethereum.org/EIPS/eip-4844
"""
from __future__ import annotations

import functools
import importlib

_pyevm_modexp = importlib.import_module("eth.precompiles.modexp")


def modexp_result(data: bytes) -> int:
    """base ** exponent % modulus, each read big-endian from the call data."""
    base_length, exponent_length, modulus_length = _pyevm_modexp.extract_lengths(data)
    if modulus_length == 0:
        return 0
    base_end = 96 + base_length
    exponent_end = base_end + exponent_length
    modulus_end = exponent_end + modulus_length
    modulus = int.from_bytes(data[exponent_end:modulus_end].ljust(modulus_length, b"\x00"), "big")
    if modulus == 0:
        return 0
    base = int.from_bytes(data[96:base_end].ljust(base_length, b"\x00"), "big")
    exponent = int.from_bytes(data[base_end:exponent_end].ljust(exponent_length, b"\x00"), "big")
    return pow(base, exponent, modulus)


def install() -> None:
    _pyevm_modexp._modexp = modexp_result
    point_evaluation = importlib.import_module("eth.precompiles.point_evaluation")
    point_evaluation.load_trusted_setup = functools.lru_cache(maxsize=2)(point_evaluation.load_trusted_setup)


install()
