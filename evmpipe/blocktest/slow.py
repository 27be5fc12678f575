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
    # Seconds with the pipeline engine, measured 2026-11-25 on the 2-core machine with
    # `evmpipe blocktest ARCHIVE -j 2 -k loopMul -k CALLBlake2f_MaxRounds` (two at a
    # time, beside other work). py-evm's own engine in the full -j 2 run: loopMul d1
    # 1,544 s, d0 744 s (517 s alone), d2 128 s, CALLBlake2f_MaxRounds 52 s. Every
    # other test of the archive takes under 15 s on either engine (Create2Recursive,
    # 29-55 s on py-evm, takes 3 s on the pipeline engine and is not listed).
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d1g0v0_Cancun": 1645.9,
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d0g0v0_Cancun": 587.7,
    "GeneralStateTests/VMTests/vmPerformance/loopMul.json::loopMul_d2g0v0_Cancun": 234.2,
    "GeneralStateTests/stTimeConsuming/CALLBlake2f_MaxRounds.json::CALLBlake2f_MaxRounds_d0g0v0_Cancun": 106.7,
}


def slow_seconds(test_id: str) -> float | None:
    """The measured seconds of the slow test ``test_id`` (``path::name``), or None if it is not slow."""
    for key, seconds in SLOW_TESTS.items():
        if key in test_id:
            return seconds
    return None
