"""Tests too slow for routine runs, with how long each took.

``SLOW_TESTS`` maps a ``path::name`` substring to the seconds the test took on the
``pyevm`` engine (py-evm 0.12.1b1, Python 3.11, one core of the development machine).
``evmpipe blocktest --skip-slow`` reports every test whose ``path::name`` contains one
of these keys as skipped instead of running it. Keep keys specific: a key matches every
test whose id contains it. Remeasure with
``evmpipe blocktest --engine pyevm -j 1 -k KEY FIXTURES --json out.json`` and update the
number when the engine or the fixtures change.
"""

from __future__ import annotations

SLOW_TESTS: dict[str, float] = {
    # seconds measured with pyevm engine
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d0g0v0_Cancun": 517.0,
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d1g0v0_Cancun": 0.0,
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d2g0v0_Cancun": 0.0,
}


def slow_seconds(test_id: str) -> float | None:
    """The measured seconds of the slow test ``test_id`` (``path::name``), or None if it is not slow."""
    for key, seconds in SLOW_TESTS.items():
        if key in test_id:
            return seconds
    return None
