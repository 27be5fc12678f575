"""The slow conformance tests, for pytest's ``slow`` marker.

The list lives in the package (``evmpipe/blocktest/slow.py``), where
``evmpipe blocktest --skip-slow`` reads it; the package never imports from tests/.
"""

from evmpipe.blocktest.slow import SLOW_TESTS, slow_seconds

__all__ = ["SLOW_TESTS", "slow_seconds"]
