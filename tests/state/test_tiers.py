"""Read tiers, cold runs, memory bounds and layouts over a small generated state."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evmpipe.gen.genstate import build_state
from evmpipe.gen.overstate import generate_over_state
from evmpipe.gen.shape import StateShape
from state.layout import LayoutStats, read_account, read_slot
from state.store import StateStore
from state.tiers import advise_random, evict, proc_io

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def state_and_blocks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiers")
    build_state(folder / "d", StateShape(accounts=4000, seed=5), progress=False)
    generate_over_state(folder / "d", "mixed", 3, 40, 1, folder / "mixed.blocks")
    return folder / "d", folder / "mixed.blocks"


def test_layouts_read_the_same(state_and_blocks: tuple[Path, Path]) -> None:
    datadir, _ = state_and_blocks
    store = StateStore(datadir / "state.sqlite", readonly=True)
    import sqlite3

    db = sqlite3.connect(datadir / "state.sqlite")
    addresses = [r[0] for r in db.execute("SELECT address FROM accounts LIMIT 300")] + [b"\x42" * 20]
    slots = [(a, int.from_bytes(s, "big")) for a, s in db.execute("SELECT address, slot FROM storage LIMIT 300")] + [(addresses[0], 7)]
    flat_accounts, flat_slots = store.read_accounts(addresses), store.read_storage(slots)
    assert store.layout.as_dict()["lookups_per_account_read"] == 1.0
    root = store.head().state_root  # type: ignore[union-attr]
    for layout in ("trie", "trie-pinned"):
        stats = LayoutStats(layout)
        assert {a: read_account(store.get_trie_node, root, a, stats) for a in addresses} == flat_accounts
        assert {k: read_slot(store.get_trie_node, root, *k, stats) for k in slots} == flat_slots
        assert stats.as_dict()["lookups_per_account_read"] > 1
    store.close()


@pytest.mark.parametrize("flags", [["--layout", "trie"], ["--layout", "trie-pinned"], ["--cold", "--cache-mb", "1", "--mmap-mb", "0"]])
def test_replay_reports_tiers(state_and_blocks: tuple[Path, Path], tmp_path: Path, flags: list[str]) -> None:
    datadir, blocks = state_and_blocks
    copy = tmp_path / "d"
    shutil.copytree(datadir, copy)
    out = tmp_path / "summary.json"
    result = subprocess.run([sys.executable, "-m", "evmpipe", "replay", str(blocks), "--datadir", str(copy), "--json", str(out), *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["last_block"] == 3  # every sealed root reached
    reads = summary["state_reads"]
    assert reads["reads"]["account"]["db"] > 0 and reads["reads"]["slot"]["db"] > 0
    assert len(summary["state_reads_per_block"]) == 3
    assert "state reads" in result.stderr
    if "--layout" in flags:
        assert reads["layout"]["layout"] == flags[1]
        assert reads["layout"]["lookups_per_account_read"] > 1


def test_evict_and_proc_io(state_and_blocks: tuple[Path, Path]) -> None:
    datadir, _ = state_and_blocks
    assert evict(datadir) >= (datadir / "state.sqlite").stat().st_size
    assert "read_bytes" in proc_io()
    store = StateStore(datadir / "state.sqlite", readonly=True)
    store.get_account(b"\x01" * 20)
    assert advise_random(datadir) >= 1  # the store's own descriptor
    store.close()


def test_cache_mb_bounds_the_caches(state_and_blocks: tuple[Path, Path]) -> None:
    datadir, _ = state_and_blocks
    store = StateStore(datadir / "state.sqlite", readonly=True)
    store.set_memory(cache_mb=2, mmap_mb=0)
    assert store.accounts.capacity + store.slots.capacity + store.codes.capacity + store.nodes.capacity <= (1 << 20) // 256 + 4 * 64
    assert store._db.execute("PRAGMA mmap_size").fetchone()[0] == 0
    assert store.page_stats() is not None
    store.close()


def test_bench_over_state(state_and_blocks: tuple[Path, Path], tmp_path: Path) -> None:
    """bench --state leaves D untouched, runs each layout/temperature, reports the columns."""
    datadir, blocks = state_and_blocks
    before = (datadir / "state.sqlite").read_bytes()
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "evmpipe", "bench", "--state", str(datadir), str(blocks), "--layouts", "flat,trie", "--temps", "cold", "--scratch", str(tmp_path), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [(r["layout"], r["temp"]) for r in runs] == [("flat", "cold"), ("trie", "cold")]
    assert all(r["blocks"] == 3 for r in runs)  # the unwind between runs brought the copy back to genesis
    assert runs[0]["lookups"]["lookups_per_account_read"] == 1.0 and runs[1]["lookups"]["lookups_per_account_read"] > 1
    assert (datadir / "state.sqlite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # the copy is gone


def test_node_cold_layout_and_metrics(state_and_blocks: tuple[Path, Path], tmp_path: Path) -> None:
    """node takes --cold, --cache-mb, --layout; /metrics carries the read tiers."""
    from tests.node.helpers import start_node, wait_until

    datadir, blocks = state_and_blocks
    copy = tmp_path / "d"
    shutil.copytree(datadir, copy)
    node = start_node(copy, str(blocks), tmp_path / "node.log", "--cold", "--cache-mb", "4", "--layout", "trie")
    try:
        wait_until(lambda: node.head() == 3, what="the node at block 3")
        metrics = node.get("/metrics")[1].decode()
        assert 'evmpipe_state_reads_total{kind="account",tier="db"}' in metrics
        assert "evmpipe_disk_read_bytes_total" in metrics
    finally:
        assert node.stop() == 0
