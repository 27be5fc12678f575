"""`auto`'s rule for blocks of plain transfers, by the header's gas and the workers.

The workload tests show the choices on real files with two workers; this checks
the boundaries of the rule without starting a pool."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from execution.strategies import AUTO_LIGHT_GAS_PER_TX, AUTO_LIGHT_MIN_WORKERS, AutoStrategy


@pytest.mark.parametrize(
    ("workers", "gas_per_tx", "light"),
    [
        (2, 21_000, True),  # plain transfers, two workers: sequential
        (AUTO_LIGHT_MIN_WORKERS - 1, AUTO_LIGHT_GAS_PER_TX - 1, True),
        (AUTO_LIGHT_MIN_WORKERS, 21_000, False),  # enough workers to try in parallel
        (2, AUTO_LIGHT_GAS_PER_TX, False),  # contract calls: worth a round trip
        (2, 45_000, False),
    ],
)
def test_light_blocks(workers: int, gas_per_tx: int, light: bool) -> None:
    auto = AutoStrategy(SimpleNamespace(size=workers))  # type: ignore[arg-type]
    assert auto._light(SimpleNamespace(gas_used=250 * gas_per_tx), 250) is light  # type: ignore[arg-type]
