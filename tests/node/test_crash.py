"""scripts/crash_test.py, CI-sized: a few kill -9s of a replay of the bundled sample."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.node.helpers import ROOT, SAMPLE


def test_kill_nine_loses_nothing_committed(tmp_path) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "crash_test.py"), "--workload", str(SAMPLE), "--kills", "5", "--seed", "3", "--workdir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^5 kills in", result.stdout, re.M), result.stdout
    assert "mismatches: 0" in result.stdout
