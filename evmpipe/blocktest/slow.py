"""Tests too slow for routine runs, with how long each took.

``SLOW_TESTS`` maps a ``path::name`` substring to the seconds the test took on the
``pyevm`` engine (py-evm 0.12.1b1, Python 3.11). ``evmpipe blocktest --skip-slow``
reports every test whose ``path::name`` contains one of these keys as skipped instead of
running it. Without ``--skip-slow`` the runner starts these tests first, each as its own
task, slowest first, so that they overlap the rest of the run. Keep keys specific: a key
matches every test whose id contains it. Remeasure with
``evmpipe blocktest --engine pyevm -k KEY FIXTURES --json out.json`` (each result has its
``seconds``) and update the numbers when the engine or the fixtures change.
"""

from __future__ import annotations

SLOW_TESTS: dict[str, float] = {
    # seconds measured with pyevm engine: the full run of blockchain-tests-dev.tar.gz with
    # -j 2 on a 2-core machine (2026-11-25), where every other test took under 15 s and
    # all 12,080 tests 3,365 s together. loopMul_d0 took 517 s when run alone.
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d1g0v0_Cancun": 1544.3,
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d0g0v0_Cancun": 743.9,
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d2g0v0_Cancun": 128.0,
    "GeneralStateTests/stCreate2/Create2Recursive.json::Create2Recursive_d0g2v0_Cancun": 54.6,
    "GeneralStateTests/stTimeConsuming/CALLBlake2f_MaxRounds.json::CALLBlake2f_MaxRounds_d0g0v0_Cancun": 51.7,
    "GeneralStateTests/stCreate2/Create2Recursive.json::Create2Recursive_d0g1v0_Cancun": 39.1,
    "GeneralStateTests/stCreate2/Create2Recursive.json::Create2Recursive_d0g0v0_Cancun": 28.6,
}


def slow_seconds(test_id: str) -> float | None:
    """The measured seconds of the slow test ``test_id`` (``path::name``), or None if it is not slow."""
    for key, seconds in SLOW_TESTS.items():
        if key in test_id:
            return seconds
    return None
