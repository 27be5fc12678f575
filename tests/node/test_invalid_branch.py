"""The node fed an invalid block with a child behind it, then the valid chain, from
a drop directory (the reproduction of the issue that found the bug): both
rejections logged, the valid chain's head reached, the node still up.

Before runner-level unwind the optimistic node exited 1 with a KeyError (the child
was merkleized from its invalid parent's claimed root) in 7 runs of 7."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.node.helpers import sample, start_node, wait_until, with_bad_state_root, write_chain
from tests.pipeline.test_unwind import child_of


@pytest.mark.parametrize("strategy", ["sequential", "optimistic"])
def test_node_survives_an_invalid_block_with_a_child(tmp_path: Path, strategy: str) -> None:
    header, records = sample()
    drop = tmp_path / "drop"
    drop.mkdir()
    bad2 = with_bad_state_root(records[1])
    write_chain(drop / "a.blocks", header, [records[0], bad2, child_of(records[2], bad2.hash)])
    write_chain(drop / "b.blocks", header, records)
    node = start_node(tmp_path / "data", str(drop) + "/", tmp_path / "node.log", "--strategy", strategy, "--workers", "2")
    try:
        wait_until(lambda: node.head() == records[-1].number, what="the valid chain's head")
        rejected = {(line["number"], line["code"]) for line in node.logged("invalid_block")}
        assert rejected == {(2, "BlockException.INVALID_STATE_ROOT"), (3, "BlockException.UNKNOWN_PARENT")}
        descendant = next(line for line in node.logged("invalid_block") if line["number"] == 3)
        assert "descends from invalid block 2" in descendant["reason"]
        assert node.health()["ok"] and node.process.poll() is None
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill()
    assert [line["number"] for line in node.logged("committed")] == [1, 2, 3, 4]
