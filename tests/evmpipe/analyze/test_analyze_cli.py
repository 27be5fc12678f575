"""`evmpipe analyze` end to end on a small generated mix, and its HTML page in a real
headless browser (skipped when no Chromium is installed)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evmpipe.analyze.html import render_html
from evmpipe.analyze.schedule import STRATEGIES, WORKER_COUNTS
from evmpipe.cli import main

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two blocks of 60: ETH and ERC-20 transfers, swaps, hot wallets, repeat senders."""
    path = tmp_path_factory.mktemp("analyze") / "mixed.json"
    assert main(["gen", "mixed", "--blocks", "2", "--txs", "60", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def analyzed(mixed: Path) -> tuple[dict, Path]:
    out = mixed.parent / "analysis.json"
    html = mixed.parent / "analysis.html"
    assert main(["analyze", str(mixed), "--runs", "1", "--json", str(out), "--html", str(html)]) == 0
    return json.loads(out.read_text()), html


def test_json_has_the_documented_keys(analyzed: tuple[dict, Path]) -> None:
    result, _ = analyzed
    assert result["format_version"] == 1
    assert set(result["predicted"]) == set(STRATEGIES)
    for strategy in STRATEGIES:
        assert list(result["predicted"][strategy]) == [str(w) for w in WORKER_COUNTS]
        assert all(v > 0 for v in result["predicted"][strategy].values())
    assert set(result["this_machine"]["predicted"]["optimistic"]) == {"1", "2"}
    assert result["critical_path_bound"] >= 1.0
    assert [b["number"] for b in result["blocks"]] == [1, 2]
    for block in result["blocks"]:
        assert block["txs"] == 60
        assert 0 < block["critical_path_seconds"] <= block["total_work_seconds"]
        assert block["critical_path_txs"] == sorted(block["critical_path_txs"])
        assert block["reexecuted"]["optimistic"] == block["dependent_txs"]
        txs = block["transactions"]
        assert [t["index"] for t in txs] == list(range(60))
        assert sum(t["seconds"] for t in txs) == pytest.approx(block["total_work_seconds"])
        assert [t["index"] for t in txs if t["on_critical_path"]] == block["critical_path_txs"]
        assert sum(1 for t in txs if t["depends_on"]) == block["dependent_txs"]
        assert all(max(t["depends_on"], default=-1) < t["index"] for t in txs)
    assert set(result["overheads"]) == {"optimistic", "declared"}
    for overheads in result["overheads"].values():
        assert overheads["message"] > 0 and overheads["validate_per_tx"] > 0 and overheads["worker_per_tx"] > 0
    assert result["overheads"]["declared"]["predict_per_tx"] > 0


def test_ideal_never_beats_its_bounds(analyzed: tuple[dict, Path]) -> None:
    result, _ = analyzed
    ideal = result["predicted"]["ideal"]
    assert all(v <= result["amdahl_bound"] + 1e-9 for v in ideal.values())
    # list scheduling may lose a little with more workers (Graham's anomalies), never much
    values = [ideal[str(w)] for w in WORKER_COUNTS]
    assert all(later >= 0.98 * earlier for earlier, later in zip(values, values[1:]))
    assert values[-1] > values[0]


def test_the_mix_names_its_conflicts(analyzed: tuple[dict, Path]) -> None:
    result, _ = analyzed
    kinds = {c["kind"] for b in result["blocks"] for c in b["top_conflicts"]} | {c["kind"] for c in result["top_conflicts"]}
    # swaps on the busiest pool: its reserves and its token balances serialise them
    assert "pool-reserves" in kinds
    assert "erc20-balance" in kinds
    top = result["top_conflicts"][0]
    assert top["serial_seconds"] > 0 and top["txs"] >= 2 and top["description"]


def test_html_is_self_contained(analyzed: tuple[dict, Path]) -> None:
    _, html = analyzed
    text = html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text)
    assert "<link" not in text and "@import" not in text
    assert text.count('<svg class="chart"') == 2
    assert "simulations" in text


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def test_html_renders_in_a_headless_browser(analyzed: tuple[dict, Path], tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    _, html = analyzed
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    # the page's own check ran after layout: both charts drawn, every line and bar sized
    assert re.search(r'<body[^>]*data-rendered="ok"', dom), dom[:500]
    assert 'data-charts="2"' in dom
    assert 'id="conflict-table"' in dom and "reserves of pool" in dom
    assert dom.count("<polyline") == len(STRATEGIES)


def test_a_broken_chart_is_reported_by_the_page(analyzed: tuple[dict, Path], tmp_path: Path) -> None:
    """The check in the page is not a constant: a page whose curves have no points
    says so."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine")
    result, _ = analyzed
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'points="[^"]*"', 'points=""', render_html(result)))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", broken.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert re.search(r'<body[^>]*data-rendered="broken"', dom), dom[:500]


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err


def test_unreadable_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x01\x02 not a block file")
    assert main(["analyze", str(junk)]) == 2
    assert "junk.bin" in capsys.readouterr().err


def test_bad_overheads_file_is_named(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "overheads.json"
    bad.write_text(json.dumps({"overheads": {"messages": 1}}))
    assert main(["analyze", str(mixed), "--overheads", str(bad)]) == 2
    assert "unknown keys ['messages']" in capsys.readouterr().err


def test_given_overheads_skip_calibration(mixed: Path, analyzed: tuple[dict, Path], tmp_path: Path) -> None:
    result, _ = analyzed
    saved = tmp_path / "previous.json"
    saved.write_text(json.dumps(result))
    out = tmp_path / "again.json"
    assert main(["analyze", str(mixed), "--runs", "1", "--limit", "1", "--overheads", str(saved), "--json", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["overheads"] == result["overheads"]
    assert again["overheads_source"].startswith("given")
    assert [b["number"] for b in again["blocks"]] == [1]
    # the graph does not depend on timing: same dependencies as the first run
    assert again["blocks"][0]["dependent_txs"] == result["blocks"][0]["dependent_txs"]


def test_state_runs_on_a_datadir_without_changing_it(mixed: Path, analyzed: tuple[dict, Path], tmp_path: Path) -> None:
    result, _ = analyzed
    native, datadir = tmp_path / "mixed.blocks", tmp_path / "node"
    assert main(["convert", str(mixed), "-o", str(native)]) == 0
    assert main(["replay", str(native), "--datadir", str(datadir), "--limit", "1"]) == 0
    saved = tmp_path / "previous.json"
    saved.write_text(json.dumps(result))
    out = tmp_path / "rest.json"
    assert main(["analyze", str(native), "--state", str(datadir), "--runs", "1", "--overheads", str(saved), "--json", str(out)]) == 0
    rest = json.loads(out.read_text())
    assert [b["number"] for b in rest["blocks"]] == [2]
    assert rest["blocks"][0]["hash"] == result["blocks"][1]["hash"]
    assert rest["blocks"][0]["dependent_txs"] == result["blocks"][1]["dependent_txs"]

    from state.store import StateStore

    store = StateStore(datadir / "state.sqlite")
    try:
        head = store.head()
    finally:
        store.close()
    assert head is not None and head.number == 1  # nothing written


def test_bench_comparison(mixed: Path, analyzed: tuple[dict, Path], tmp_path: Path) -> None:
    """`--bench`: the prediction for the bench's worker count against what it measured,
    and again at the load its sequential run's CPU share implies."""
    result, _ = analyzed
    saved = tmp_path / "previous.json"
    saved.write_text(json.dumps(result))

    def run(engine: str, wall: float, cpu_over_wall: float) -> dict:
        return {"file": str(mixed), "engine": engine, "wall_median": wall, "cpu_over_wall": cpu_over_wall}

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"machine": {"cores": 2}, "workers": 2, "results": [run("evmpipe sequential", 1.0, 0.5), run("evmpipe optimistic", 0.8, 0.9)]}))
    out = tmp_path / "compared.json"
    assert main(["analyze", str(mixed), "--runs", "1", "--overheads", str(saved), "--bench", str(bench), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["bench"]
    assert [(r["strategy"], r["workers"]) for r in rows] == [("optimistic", 2)]
    row = rows[0]
    assert row["measured"] == pytest.approx(1.25)
    assert row["error"] == pytest.approx(row["predicted"] / 1.25 - 1)
    assert row["load"] == pytest.approx(3.0)  # half a core for one process on two: three others busy
    assert row["error_at_bench_load"] == pytest.approx(row["predicted_at_bench_load"] / 1.25 - 1)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"machine": {"cores": 2}, "workers": 2, "results": [{"file": "elsewhere.json", "engine": "evmpipe sequential", "wall_median": 1.0, "cpu_over_wall": 1.0}]}))
    assert main(["analyze", str(mixed), "--runs", "1", "--overheads", str(saved), "--bench", str(other)]) == 2


def test_one_set_of_overheads_serves_both_strategies(tmp_path: Path) -> None:
    from evmpipe.analyze import load_overheads

    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"message": 0.001, "validate_per_tx": 0.0001}))
    loaded = load_overheads(str(flat))
    assert set(loaded) == {"optimistic", "declared"} and loaded["optimistic"] == loaded["declared"]
    assert loaded["declared"].message == 0.001


def test_a_file_of_several_tests_asks_for_one(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(mixed.read_text())
    name = next(iter(k for k in data if not k.startswith("_")))
    data[name + "_copy"] = data[name]
    two = tmp_path / "two.json"
    two.write_text(json.dumps(data))
    assert main(["analyze", str(two)]) == 2
    err = capsys.readouterr().err
    assert "--test" in err and err.count(str(two)) == 1
